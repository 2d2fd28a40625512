// DomVia Chat, the demo app: sign-in, the room list, the people picker and
// the connection banner. The open conversation is conversation.js. Plain ES
// modules against the built SDK (see the import map in index.html).
import { api, describeError } from "./api.js";
import { Conversation } from "./conversation.js";
import { avatar, encryptedMark, formatListTime, h, icon, keptItems, placeChildren } from "./ui.js";

/** The room list has no realtime feed of its own (events are per room): refresh it this often. */
const ROOMS_REFRESH_MS = 15_000;
/** A first connection usually takes a blink: only show "Connecting…" if it lasts longer. */
const CONNECTING_GRACE_MS = 800;
/** Where the member list fits beside the timeline (open by default there). */
const WIDE = "(min-width: 1100px)";

const $ = (id) => document.getElementById(id);
const els = Object.fromEntries([
  "splash", "splash-text", "sign-in", "sign-in-form", "sign-in-name", "sign-in-error", "app", "me", "sign-out",
  "new-chat", "room-list", "rooms-empty", "connection-banner", "error-area", "error-text", "error-dismiss",
  "placeholder", "conversation", "back", "room-avatar", "room-title", "room-lock", "room-subtitle", "add-member",
  "leave-room", "toggle-members", "messages", "load-older", "conversation-state", "message-list", "jump", "key-changes",
  "typing", "composer", "composer-input", "composer-send", "presence-list", "verification", "fingerprint",
  "safety-numbers", "announcer", "people-dialog", "people-form", "people-title", "people-close", "mode-switch",
  "encrypted-field", "encrypted-toggle", "group-fields", "group-name", "picked", "people-search", "people-results",
  "people-error", "group-footer", "create-group",
].map((id) => [id.replace(/-(\w)/g, (_, c) => c.toUpperCase()), $(id)]));

let sdk = null;
let me = null;
let realtime = null;
let rooms = [];
let conversation = null;
/** The open room's live unread count and last message, from its snapshot. */
let live = null;
let openToken = 0;
let refreshTimer = 0;
let bannerTimer = 0;
let everConnected = false;

els.newChat.append(icon("plus"), h("span", {}, "New chat"));
els.back.append(icon("back"));
els.toggleMembers.append(icon("people"));
els.composerSend.append(icon("send"));
els.errorDismiss.append(icon("close"));
els.peopleClose.append(icon("close"));
els.jump.prepend(icon("down"));
els.roomLock.append(icon("lock"));

boot();

async function boot() {
  try {
    const [realtimeModule, chatModule] = await Promise.all([import("@domvia/realtime"), import("@domvia/realtime-chat")]);
    // buildChatChannelName is synchronous and needs the wasm core loaded.
    await realtimeModule.ready();
    sdk = { DomViaRealtime: realtimeModule.DomViaRealtime, ...chatModule };
  } catch (error) {
    els.splashText.textContent = `DomVia Chat couldn't start. ${describeError(error)}`;
    return;
  }
  try {
    const { user } = await api("GET", "/api/session");
    await enter(user);
  } catch (error) {
    showSignIn(error.code === "not_signed_in" ? "" : describeError(error));
  }
}

// ---------------------------------------------------------------- session

function showSignIn(message = "") {
  els.splash.hidden = true;
  els.app.hidden = true;
  els.signIn.hidden = false;
  els.signInError.textContent = message;
  els.signInName.focus();
}

els.signInForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = els.signInName.value.trim();
  if (name === "") {
    els.signInError.textContent = "Enter a name to continue.";
    return;
  }
  const submit = els.signInForm.querySelector("button[type=submit]");
  submit.disabled = true;
  try {
    const { user } = await api("POST", "/api/session", { name });
    await enter(user);
  } catch (error) {
    els.signInError.textContent = describeError(error);
  } finally {
    submit.disabled = false;
  }
});

async function enter(user) {
  me = user;
  els.me.replaceChildren(avatar(me.id, me.name), h("span", { class: "me-name", "data-testid": "me" }, me.name));
  els.splash.hidden = true;
  els.signIn.hidden = true;
  els.app.hidden = false;
  els.signInError.textContent = "";
  try {
    startRealtime(await api("GET", "/api/config"));
  } catch (error) {
    showError(error, "Realtime is unavailable");
  }
  await loadRooms({ quiet: false });
  route();
  refreshTimer = setInterval(() => {
    if (document.visibilityState === "visible") loadRooms();
  }, ROOMS_REFRESH_MS);
}

els.signOut.addEventListener("click", async () => {
  try {
    await api("DELETE", "/api/session");
  } catch (error) {
    showError(error, "Couldn't sign out");
    return;
  }
  leaveApp();
});

/** Tears everything down: after sign-out, or when the session turned out to be gone. */
function leaveApp(message = "") {
  closeRoom();
  realtime?.dispose();
  realtime = null;
  clearInterval(refreshTimer);
  clearTimeout(bannerTimer);
  rooms = [];
  me = null;
  everConnected = false;
  els.connectionBanner.hidden = true;
  clearError();
  history.replaceState(null, "", location.pathname);
  showSignIn(message);
}

// ------------------------------------------------------------- connection

function startRealtime(config) {
  realtime = sdk.DomViaRealtime.create({
    key: config.key,
    host: config.host,
    port: config.port,
    forceTLS: config.forceTLS,
    authEndpoint: "/realtime/auth",
    userAuthentication: { endpoint: "/realtime/user-auth" },
    clientEvents: true,
  });
  realtime.connection.onStateChange(({ current }) => renderBanner(current));
  renderBanner(realtime.connection.state);
}

function renderBanner(state) {
  const banner = els.connectionBanner;
  clearTimeout(bannerTimer);
  if (state === "connected") {
    // Back after an outage: the open room catches up by itself; the list does not.
    if (everConnected && !banner.hidden) loadRooms();
    everConnected = true;
    banner.hidden = true;
    banner.dataset.state = state;
    return;
  }
  const text =
    !navigator.onLine ? "You're offline. Messages you send will go out when you're back online."
    : state === "unavailable" ? "Connection lost. Reconnecting… Messages you send will go out once it's back."
    : state === "failed" ? "Can't connect to the chat server. Reload the page to try again."
    : state === "disconnected" ? "Offline."
    : everConnected ? "Reconnecting…" : "Connecting…";
  const show = () => {
    banner.dataset.state = state;
    banner.textContent = text;
    banner.hidden = false;
  };
  if (!everConnected && (state === "connecting" || state === "initialized")) bannerTimer = setTimeout(show, CONNECTING_GRACE_MS);
  else show();
}

window.addEventListener("online", () => realtime && renderBanner(realtime.connection.state));
window.addEventListener("offline", () => realtime && renderBanner(realtime.connection.state));

// ------------------------------------------------------------------ errors

function showError(error, context) {
  if (error?.code === "not_signed_in" && me) {
    leaveApp(describeError(error));
    return;
  }
  const sentence = describeError(error);
  els.errorText.textContent = context ? `${context}. ${sentence}` : sentence;
  els.errorArea.dataset.code = error?.code ?? "";
  els.errorArea.hidden = false;
}

function clearError() {
  els.errorArea.hidden = true;
  els.errorText.textContent = "";
}

els.errorDismiss.addEventListener("click", clearError);

// ------------------------------------------------------------------- rooms

const otherMember = (room) => room.members.find((member) => member.id !== me.id);
const roomTitle = (room) => (room.kind === "group" ? room.name : otherMember(room)?.name ?? "Just you");
const roomAvatar = (room, size) => (room.kind === "group" ? avatar(room.room_id, room.name, size) : avatar(otherMember(room)?.id ?? room.room_id, roomTitle(room), size));
const currentInfo = () => rooms.find((room) => room.room_id === conversation?.roomId);

/** Polls are quiet about failures: the banner already says when the server is away. */
async function loadRooms({ quiet = true } = {}) {
  let answer;
  try {
    answer = await api("GET", "/api/rooms");
  } catch (error) {
    if (!quiet || error.code === "not_signed_in") showError(error, "Couldn't load your conversations");
    return;
  }
  if (!me) return;
  rooms = answer.rooms;
  const info = currentInfo();
  if (info) {
    conversation.setInfo(info);
    renderHeader(info);
  }
  renderRooms();
}

function upsertRoom(room) {
  rooms = [room, ...rooms.filter((other) => other.room_id !== room.room_id)];
  renderRooms();
}

function renderRooms() {
  const focused = document.activeElement?.closest?.("[data-room-id]")?.dataset.roomId;
  placeChildren(els.roomList, keptItems(roomRows, rooms.map((room) => [room.room_id, roomButton(room)])));
  els.roomsEmpty.hidden = rooms.length > 0;
  // A room moved up (a new message) was taken out and put back, which drops focus.
  if (focused) els.roomList.querySelector(`[data-room-id="${CSS.escape(focused)}"]`)?.focus();
}

// The rooms poll redraws the list while the user may be clicking it: rows are kept (keptItems).
const roomRows = new Map();

function roomButton(room) {
  const open = conversation?.roomId === room.room_id;
  const unread = open && live ? live.unreadCount : room.unread_count;
  const last = (open && live?.lastMessage) || room.last_message;
  const from = !last ? "" : last.status === "failed" ? "Not sent: " : last.user_id === me.id ? "You: "
    : room.kind === "group" ? `${room.members.find((member) => member.id === last.user_id)?.name ?? "Someone"}: ` : "";
  const preview = last ? `${from}${last.text ?? "Encrypted message"}` : room.kind === "group" ? "New group" : "Say hello";
  return h("button", {
    type: "button",
    class: "room-item",
    "data-testid": "room-item",
    dataset: { roomId: room.room_id, unread: String(unread), encrypted: String(room.encrypted === true) },
    "aria-current": open ? "page" : undefined,
    onclick: () => navigate(room.room_id),
  },
  roomAvatar(room, "md"),
  h("span", { class: "room-main" },
    h("span", { class: "room-top" },
      room.encrypted ? encryptedMark() : null,
      h("span", { class: "room-name" }, roomTitle(room)),
      last ? h("time", { class: "room-time", datetime: new Date(last.sent_at).toISOString() }, formatListTime(last.sent_at)) : null),
    h("span", { class: "room-bottom" },
      h("span", { class: "room-preview" }, preview),
      unread > 0
        ? h("span", { class: "badge", "data-testid": "unread-badge", dataset: { count: String(unread) } },
          h("span", { "aria-hidden": "true" }, unread > 99 ? "99+" : String(unread)),
          h("span", { class: "visually-hidden" }, `, ${unread} unread`))
        : null)));
}

/** From the open room's snapshot: redraw the list only when what it shows changed. */
function onRoomChange(roomId, change) {
  if (conversation?.roomId !== roomId) return;
  const last = change.lastMessage;
  const before = live;
  live = change;
  const newMessage = before?.lastMessage?.client_id !== last?.client_id;
  if (before && !newMessage && before.unreadCount === change.unreadCount && before.lastMessage?.status === last?.status) return;
  // The list is most recently active first: a new message moves its room up.
  const index = rooms.findIndex((room) => room.room_id === roomId);
  if (before && newMessage && index > 0) rooms = [rooms[index], ...rooms.slice(0, index), ...rooms.slice(index + 1)];
  renderRooms();
}

// ---------------------------------------------------------- the open room

function navigate(roomId) {
  if (location.hash !== `#${roomId}`) location.hash = roomId;
  else route();
}

window.addEventListener("hashchange", route);

function route() {
  if (!me) return;
  const roomId = decodeURIComponent(location.hash.slice(1));
  if (roomId) openRoom(roomId);
  else closeRoom();
}

async function openRoom(roomId) {
  if (conversation?.roomId === roomId) {
    showConversation();
    return;
  }
  const token = ++openToken;
  closeRoom();
  let info = rooms.find((room) => room.room_id === roomId);
  if (!info) {
    // A link to a room that is not in the list yet (just created by someone else).
    try {
      info = await api("GET", `/api/rooms/${encodeURIComponent(roomId)}`);
    } catch (error) {
      if (token !== openToken) return;
      showError(error, "Couldn't open the conversation");
      history.replaceState(null, "", location.pathname);
      return;
    }
    if (token !== openToken) return;
    upsertRoom(info);
  }
  if (!realtime) {
    showError(new Error("unable to open the conversation; the realtime connection is not set up"));
    return;
  }
  const channelName = sdk.buildChatChannelName(roomId);
  let room;
  try {
    room = sdk.createChatRoom(realtime, {
      roomId,
      channelName,
      presence: true,
      userId: me.id,
      // Must match the backend's room, or the room fails with room_encryption_mismatch.
      encrypted: info.encrypted === true,
    });
  } catch (error) {
    showError(error, "Couldn't open the conversation");
    return;
  }
  // The snapshot's status and error show a failure inside the conversation itself.
  room.waitUntilReady().catch(() => {});
  clearError();
  live = null;
  conversation = new Conversation({
    room,
    me,
    info,
    els: {
      scroller: els.messages, messageList: els.messageList, loadOlder: els.loadOlder, state: els.conversationState,
      jump: els.jump, typing: els.typing, composer: els.composer, composerInput: els.composerInput,
      composerSend: els.composerSend, presenceList: els.presenceList, subtitle: els.roomSubtitle, announcer: els.announcer,
      keyChanges: els.keyChanges, verification: els.verification, fingerprint: els.fingerprint,
      safetyNumbers: els.safetyNumbers,
    },
    onError: showError,
    onChange: (change) => onRoomChange(roomId, change),
    onDevicesChange: (listener) => onDevicesChange(channelName, listener),
  });
  renderHeader(info);
  membersOpen(matchMedia(WIDE).matches);
  showConversation();
  renderRooms();
  // On a phone, focusing would pop the keyboard over the history: only on wide screens.
  if (matchMedia("(min-width: 720px)").matches) conversation.focusComposer();
}

/**
 * Calls `listener` when the room's member devices may have changed (a new key
 * epoch, a member added or removed): the SDK has no event of its own for it,
 * so this listens on the room's channel, which the open room has subscribed.
 */
function onDevicesChange(channelName, listener) {
  const channel = realtime?.channel(channelName);
  const unbinds = ["epoch.created", "member.added", "member.removed"].map((name) => channel?.bind(name, () => listener()));
  return () => {
    for (const unbind of unbinds) unbind?.();
  };
}

function closeRoom() {
  if (!conversation) return;
  // Keep what the open room learnt (its last message, unread count) until the next poll.
  const index = rooms.findIndex((room) => room.room_id === conversation.roomId);
  if (index >= 0 && live) {
    rooms[index] = { ...rooms[index], unread_count: live.unreadCount, last_message: live.lastMessage ?? rooms[index].last_message };
  }
  conversation.destroy();
  conversation = null;
  live = null;
  els.conversation.hidden = true;
  els.placeholder.hidden = false;
  els.app.dataset.view = "list";
  renderRooms();
}

function showConversation() {
  els.placeholder.hidden = true;
  els.conversation.hidden = false;
  els.app.dataset.view = "room";
}

function renderHeader(info) {
  els.roomTitle.textContent = roomTitle(info);
  els.roomAvatar.replaceChildren(roomAvatar(info, "md"));
  els.roomLock.hidden = info.encrypted !== true;
  els.addMember.hidden = info.kind !== "group";
  els.leaveRoom.hidden = info.kind !== "group";
}

els.back.addEventListener("click", () => {
  location.hash = "";
});

function membersOpen(open) {
  els.conversation.classList.toggle("members-open", open);
  els.toggleMembers.setAttribute("aria-expanded", String(open));
}
els.toggleMembers.addEventListener("click", () => membersOpen(!els.conversation.classList.contains("members-open")));

els.leaveRoom.addEventListener("click", async () => {
  const info = currentInfo();
  if (!info || !confirm(`Leave “${roomTitle(info)}”? You'll stop receiving its messages.`)) return;
  try {
    await api("DELETE", `/api/rooms/${encodeURIComponent(info.room_id)}/members/${encodeURIComponent(me.id)}`);
  } catch (error) {
    showError(error, "Couldn't leave the group");
    return;
  }
  rooms = rooms.filter((room) => room.room_id !== info.room_id);
  location.hash = "";
  closeRoom();
});

// ---------------------------------------------------- people: new chat, add

let peopleMode = "direct";
let results = [];
const picked = new Map();
let searchSeq = 0;
let searchTimer = 0;

els.newChat.addEventListener("click", () => openPeople("direct"));
els.addMember.addEventListener("click", () => openPeople("add"));
els.peopleClose.addEventListener("click", () => els.peopleDialog.close());
for (const button of els.modeSwitch.querySelectorAll("button")) {
  button.addEventListener("click", () => setMode(button.dataset.mode));
}
els.peopleSearch.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(search, 150);
});

function openPeople(mode) {
  picked.clear();
  results = [];
  delete els.peopleResults.dataset.query;
  els.groupName.value = "";
  els.peopleSearch.value = "";
  els.peopleError.textContent = "";
  els.modeSwitch.hidden = mode === "add";
  els.encryptedField.hidden = mode === "add";
  els.encryptedToggle.checked = false;
  els.peopleTitle.textContent = mode === "add" ? `Add people to ${roomTitle(currentInfo())}` : "New chat";
  setMode(mode);
  els.peopleDialog.showModal();
  els.peopleSearch.focus();
  search();
}

function setMode(mode) {
  peopleMode = mode;
  for (const button of els.modeSwitch.querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
  }
  els.groupFields.hidden = mode !== "group";
  els.groupFooter.hidden = mode !== "group";
  renderPicked();
  renderResults();
}

async function search() {
  const seq = ++searchSeq;
  const query = els.peopleSearch.value.trim();
  try {
    const answer = await api("GET", `/api/users?query=${encodeURIComponent(query)}`);
    if (seq !== searchSeq) return; // an older answer arriving after a newer one
    results = answer.users;
    // Which query the list answers: the list reflows when it arrives, so a
    // script (or a test) clicks a row only once the list is the one it asked for.
    els.peopleResults.dataset.query = query;
    els.peopleError.textContent = "";
    renderResults();
  } catch (error) {
    if (seq === searchSeq) els.peopleError.textContent = describeError(error);
  }
}

// A newer search answers while the user may be clicking a row of the older one: rows are kept (keptItems).
const resultRows = new Map();

function renderResults() {
  const members = new Set(peopleMode === "add" ? currentInfo()?.members.map((member) => member.id) : []);
  const action = { direct: "Message", group: "Add", add: "Add" }[peopleMode];
  const items = keptItems(resultRows, results.map((user) => {
    const member = members.has(user.id);
    const chosen = picked.has(user.id);
    return [user.id, h("button", {
      type: "button",
      class: "person-result",
      "data-testid": "user-result",
      dataset: { userId: user.id },
      disabled: member,
      "aria-pressed": peopleMode === "group" ? String(chosen) : undefined,
      // A kept row keeps its first listener: it looks the person up by id.
      onclick: () => choose(results.find((other) => other.id === user.id) ?? user),
    },
    avatar(user.id, user.name, "sm"),
    h("span", { class: "person-name" }, user.name),
    h("span", { class: "result-action" }, member ? "Member" : chosen ? "Added ✓" : action))];
  }));
  if (results.length === 0) {
    const query = els.peopleSearch.value.trim();
    items.push(h("li", { class: "muted small empty-result" }, query ? `No one named “${query}…” yet.` : "No one else has signed in yet."));
  }
  placeChildren(els.peopleResults, items);
}

function renderPicked() {
  els.picked.replaceChildren(...[...picked.values()].map((user) =>
    h("li", { class: "chip" }, user.name,
      h("button", { type: "button", class: "chip-remove", "aria-label": `Remove ${user.name}`, onclick: () => choose(user) }, icon("close")))));
}

async function choose(user) {
  if (peopleMode === "group") {
    if (picked.has(user.id)) picked.delete(user.id);
    else picked.set(user.id, user);
    renderPicked();
    renderResults();
    return;
  }
  els.peopleError.textContent = "";
  try {
    if (peopleMode === "direct") {
      const room = await api("POST", "/api/rooms", { kind: "direct", member_ids: [user.id], encrypted: els.encryptedToggle.checked });
      upsertRoom(room);
      els.peopleDialog.close();
      navigate(room.room_id);
    } else {
      const room = await api("POST", `/api/rooms/${encodeURIComponent(currentInfo().room_id)}/members`, { user_id: user.id });
      upsertRoom(room);
      conversation?.setInfo(room);
      els.peopleDialog.close();
    }
  } catch (error) {
    els.peopleError.textContent = describeError(error);
  }
}

// Enter in the search picks the first person found; elsewhere in group mode it creates the group.
els.peopleForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (peopleMode !== "group" || document.activeElement === els.peopleSearch) {
    if (results[0]) choose(results[0]);
    return;
  }
  const name = els.groupName.value.trim();
  if (name === "") {
    els.peopleError.textContent = "Give the group a name.";
    els.groupName.focus();
    return;
  }
  els.createGroup.disabled = true;
  try {
    const room = await api("POST", "/api/rooms", { kind: "group", name, member_ids: [...picked.keys()], encrypted: els.encryptedToggle.checked });
    upsertRoom(room);
    els.peopleDialog.close();
    navigate(room.room_id);
  } catch (error) {
    els.peopleError.textContent = describeError(error);
  } finally {
    els.createGroup.disabled = false;
  }
});
