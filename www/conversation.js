// The open conversation: everything on screen is drawn from the room's
// snapshot (`room.subscribe` + `room.getSnapshot()`), the way a React or Vue
// app would use it with useSyncExternalStore; the DOM only sends intents
// (send, retry, typing, markRead, loadOlder) back to the room. Encrypted
// rooms add the verification in the members panel and key-change notices.
import { describeError } from "./api.js";
import { avatar, formatDay, formatTime, h, icon, listNames } from "./ui.js";

/** Messages from one sender closer than this share a bubble group. */
const GROUP_GAP_MS = 5 * 60_000;
/** "At the bottom" tolerates a little slack, so a half-pixel scroll still counts as read. */
const BOTTOM_SLACK_PX = 40;

const STATUS_LABEL = { sending: "Sending", sent: "Sent", failed: "Not sent" };
const STATUS_ICON = { sending: "clock", sent: "check", failed: "alert" };

/** What an encrypted message that could not be opened shows instead of its text (by `decryption_error.code`). */
const UNREADABLE = {
  share_not_found: "Can't be read on this device: it was sent while this device wasn't in the conversation.",
  e2ee_unknown_epoch: "Can't be read on this device: it was sent while this device wasn't in the conversation.",
  e2ee_bad_signature: "Hidden: this message failed verification.",
  e2ee_wrong_sender: "Hidden: this message failed verification.",
  e2ee_not_encrypted: "Hidden: this message wasn't encrypted.",
};
const UNREADABLE_OTHER = "This message couldn't be decrypted.";

export class Conversation {
  #room;
  #me;
  #info;
  #els;
  #onError;
  #onChange;
  #onDevicesChange;
  #names = new Map();
  #rows = new Map();
  #snapshot = null;
  #abort = new AbortController();
  #unsubscribe;
  #lastMarked = null;
  #announcedSeq = null;
  #stickToBottom = true;
  #frame = 0;
  /** Encrypted rooms: safety numbers by user id (`{ devices }` or `{ error }`), and unaccepted key changes. */
  #numbers = new Map();
  #numbersSeq = 0;
  #verifiedFor = "";
  #keyChanges = new Map();
  #unbindDevices = null;
  #unbindKeyChange = null;

  /**
   * `info` is the backend's Room object (members and their names); `els` the
   * conversation's fixed elements in index.html; `onError(error, context)`
   * shows an error; `onChange({ unreadCount, lastMessage })` feeds the sidebar;
   * `onDevicesChange(listener)` calls back when the member devices may have
   * changed (encrypted rooms, once ready) and returns its unsubscribe.
   */
  constructor({ room, me, info, els, onError, onChange, onDevicesChange }) {
    this.#room = room;
    this.#me = me;
    this.#els = els;
    this.#onError = onError;
    this.#onChange = onChange;
    this.#onDevicesChange = onDevicesChange;
    this.setInfo(info);
    this.#bindDom();
    els.messageList.replaceChildren();
    els.composerInput.value = "";
    this.#autoGrow();
    els.keyChanges.replaceChildren();
    els.verification.hidden = true; // shown once the room is ready and has keys
    this.#unbindKeyChange = room.encryption?.onKeyChange((change) => this.#keyChanged(change)) ?? null;
    this.#unsubscribe = room.subscribe(() => this.#render());
    this.#render();
  }

  get roomId() {
    return this.#room.roomId;
  }

  /** A newer Room object (after a poll or an added member): names and the member list. */
  setInfo(info) {
    this.#info = info;
    for (const member of info.members) this.#names.set(member.id, member.name);
    this.#names.set(this.#me.id, this.#me.name);
    if (this.#snapshot) {
      this.#renderPeople(this.#snapshot);
      this.#verify(this.#snapshot);
    }
  }

  /** Stops listening and leaves the room (its channels are unsubscribed). */
  destroy() {
    this.#abort.abort();
    this.#unsubscribe();
    this.#unbindKeyChange?.();
    this.#unbindDevices?.();
    cancelAnimationFrame(this.#frame);
    try {
      this.#room.stopTyping();
    } catch {
      // Best effort: typing expires on the other side anyway.
    }
    this.#room.leave();
    this.#els.messageList.replaceChildren();
    this.#els.presenceList.replaceChildren();
    this.#els.typing.textContent = "";
    this.#els.keyChanges.replaceChildren();
    this.#els.safetyNumbers.replaceChildren();
    this.#els.fingerprint.textContent = "";
    this.#els.verification.hidden = true;
  }

  focusComposer() {
    this.#els.composerInput.focus();
  }

  #nameOf(userId) {
    return userId === this.#me.id ? "You" : this.#names.get(userId) ?? "Someone";
  }

  #bindDom() {
    const { signal } = this.#abort;
    const { composer, composerInput: input, scroller, loadOlder, jump } = this.#els;
    composer.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#send();
    }, { signal });
    input.addEventListener("keydown", (event) => {
      // Enter sends, Shift+Enter is a newline; never while an IME is composing.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.#send();
      }
    }, { signal });
    input.addEventListener("input", () => {
      this.#autoGrow();
      this.#typing(input.value.trim() !== "");
    }, { signal });
    input.addEventListener("blur", () => this.#typing(false), { signal });
    loadOlder.addEventListener("click", () => this.#loadOlder(), { signal });
    jump.addEventListener("click", () => {
      scroller.scrollTo({ top: scroller.scrollHeight, behavior: "smooth" });
    }, { signal });
    // Retry buttons live inside message rows that are re-created: one delegated listener.
    this.#els.messageList.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-retry]");
      if (button) this.#retry(button.dataset.retry);
    }, { signal });
    scroller.addEventListener("scroll", () => {
      cancelAnimationFrame(this.#frame);
      this.#frame = requestAnimationFrame(() => this.#afterScroll());
    }, { signal, passive: true });
    document.addEventListener("visibilitychange", () => this.#markRead(), { signal });
    window.addEventListener("focus", () => this.#markRead(), { signal });
  }

  #typing(active) {
    // Typing is a hint: a failure to send it must never interrupt writing.
    try {
      if (active) this.#room.sendTyping();
      else this.#room.stopTyping();
    } catch (error) {
      console.warn("typing signal not sent", error);
    }
  }

  #send() {
    const input = this.#els.composerInput;
    const text = input.value;
    if (text.trim() === "") return;
    input.value = "";
    this.#autoGrow();
    this.#stickToBottom = true;
    let sent;
    try {
      sent = this.#room.sendMessage({ text });
    } catch (error) {
      sent = Promise.reject(error);
    }
    sent.catch((error) => {
      // Bad text fails before anything is shown: give the draft back to fix it.
      // Other failures leave a red message with a Retry button in the list.
      if ((error?.code === "invalid_text" || error?.code === "text_too_large") && input.value === "") {
        input.value = text;
        this.#autoGrow();
      }
      this.#onError(error, "Message not sent");
    });
  }

  #retry(clientId) {
    this.#stickToBottom = true;
    let retried;
    try {
      retried = this.#room.retry(clientId);
    } catch (error) {
      retried = Promise.reject(error);
    }
    retried.catch((error) => this.#onError(error, "Message not sent"));
  }

  async #loadOlder() {
    const button = this.#els.loadOlder;
    button.disabled = true;
    button.textContent = "Loading…";
    try {
      await this.#room.loadOlder();
    } catch (error) {
      this.#onError(error, "Couldn't load older messages");
    } finally {
      button.disabled = false;
      button.textContent = "Load older messages";
    }
  }

  #autoGrow() {
    // Grow with the text up to 160px; empty (or not laid out yet) is one row from CSS.
    const input = this.#els.composerInput;
    input.style.height = "";
    if (input.value && input.scrollHeight > input.clientHeight) {
      input.style.height = `${Math.min(input.scrollHeight + input.offsetHeight - input.clientHeight, 160)}px`;
    }
  }

  #isAtBottom() {
    const { scroller } = this.#els;
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight <= BOTTOM_SLACK_PX;
  }

  #afterScroll() {
    this.#updateJump();
    this.#markRead();
  }

  #updateJump() {
    const unread = this.#snapshot?.unreadCount ?? 0;
    const { jump } = this.#els;
    jump.hidden = this.#isAtBottom();
    jump.lastChild.textContent = unread > 0 ? `${unread} new` : "Latest";
  }

  /** Read up to the last stored message, only when someone can actually see it. */
  #markRead() {
    const snapshot = this.#snapshot;
    if (snapshot?.status !== "ready" || document.visibilityState !== "visible") return;
    // On narrow screens the conversation may be laid out but hidden behind the room list.
    if (!this.#els.scroller.checkVisibility() || !this.#isAtBottom()) return;
    const last = snapshot.messages.findLast((message) => message.message_id !== null);
    if (!last || last.message_id === this.#lastMarked) return;
    this.#lastMarked = last.message_id;
    try {
      this.#room.markRead(last.message_id);
    } catch (error) {
      this.#onError(error, "Couldn't mark the conversation read");
    }
  }

  #render() {
    const snapshot = this.#room.getSnapshot();
    if (snapshot === this.#snapshot) return;
    this.#snapshot = snapshot;
    const place = this.#captureScroll();
    const { scroller, loadOlder, composerInput, composerSend, state } = this.#els;
    scroller.setAttribute("aria-busy", String(snapshot.status === "loading"));
    state.hidden = snapshot.status === "ready" && snapshot.messages.length > 0;
    state.dataset.status = snapshot.status;
    state.textContent =
      snapshot.status === "loading" ? "Loading messages…"
      : snapshot.status === "error" ? describeError(snapshot.error)
      : snapshot.status === "left" ? "You left this conversation."
      : "No messages yet. Say hello!";
    const usable = snapshot.status !== "error" && snapshot.status !== "left";
    composerInput.disabled = !usable;
    composerSend.disabled = !usable;
    loadOlder.hidden = !snapshot.hasOlder || snapshot.status !== "ready";
    this.#renderMessages(snapshot);
    this.#restoreScroll(place);
    this.#renderTyping(snapshot);
    this.#renderPeople(snapshot);
    this.#verify(snapshot);
    this.#announce(snapshot);
    this.#updateJump();
    this.#markRead();
    const lastMessage = snapshot.messages.at(-1) ?? null;
    this.#onChange({ unreadCount: snapshot.unreadCount, lastMessage });
  }

  /**
   * Where the reader is, before the DOM changes: at the bottom (stay there),
   * or the first visible message and its offset (so "Load older" and the
   * "Load older" button itself disappearing do not move what they read).
   */
  #captureScroll() {
    const { messageList: list, scroller } = this.#els;
    const stick = this.#stickToBottom || this.#isAtBottom();
    this.#stickToBottom = false;
    if (stick) return { stick };
    const top = scroller.getBoundingClientRect().top;
    // A message, not a day divider: the divider moves up when older messages arrive.
    const anchor = [...list.querySelectorAll(":scope > .message")].find((row) => row.getBoundingClientRect().bottom > top);
    if (!anchor) return { stick };
    // By key: the row itself may be rebuilt (it stops being the first of its group).
    return { stick, key: `m:${anchor.dataset.userId}:${anchor.dataset.clientId}`, top: anchor.getBoundingClientRect().top };
  }

  #restoreScroll({ stick, key, top }) {
    const { scroller } = this.#els;
    if (stick) scroller.scrollTop = scroller.scrollHeight;
    else if (key && this.#rows.has(key)) scroller.scrollTop += this.#rows.get(key).element.getBoundingClientRect().top - top;
  }

  #renderMessages(snapshot) {
    const list = this.#els.messageList;
    const seen = this.#seenBy(snapshot);
    const group = this.#info.kind === "group";
    const messages = snapshot.messages;
    const wanted = [];
    const days = new Set();
    messages.forEach((message, index) => {
      const previous = messages[index - 1];
      const next = messages[index + 1];
      // One divider per day, even if a local clock puts a pending message out of order.
      const day = formatDay(message.sent_at);
      if (!days.has(day)) {
        days.add(day);
        wanted.push(this.#row(`day:${day}`, "day", () => h("li", { class: "day", role: "separator" }, h("span", {}, day))));
      }
      const joins = (a, b) => a && b && a.user_id === b.user_id && Math.abs(b.sent_at - a.sent_at) < GROUP_GAP_MS &&
        formatDay(a.sent_at) === formatDay(b.sent_at);
      const first = !joins(previous, message);
      const last = !joins(message, next);
      const seenBy = seen.get(message.message_id) ?? [];
      const key = `m:${message.user_id}:${message.client_id}`;
      const signature = JSON.stringify([message.status, message.seq, message.text, message.decryption_error?.code, first, last, seenBy, group, this.#nameOf(message.user_id)]);
      wanted.push(this.#row(key, signature, () => this.#messageRow(message, { first, last, seenBy, group })));
    });

    // Reuse rows by key and move only what moved: a pending message keeps its
    // element when it becomes 'sent', and old rows are not re-announced.
    wanted.forEach((row, index) => {
      if (list.children[index] !== row) list.insertBefore(row, list.children[index] ?? null);
    });
    while (list.children.length > wanted.length) list.lastElementChild.remove();
    const live = new Set(wanted);
    for (const [key, entry] of this.#rows) if (!live.has(entry.element)) this.#rows.delete(key);
  }

  /** The cached row for `key`, rebuilt only when its signature changed. */
  #row(key, signature, build) {
    const cached = this.#rows.get(key);
    if (cached && cached.signature === signature) return cached.element;
    const element = build();
    // Replace in place so the list keeps its order and focus stays near.
    cached?.element.replaceWith(element);
    this.#rows.set(key, { signature, element });
    return element;
  }

  #messageRow(message, { first, last, seenBy, group }) {
    const mine = message.user_id === this.#me.id;
    const sender = this.#nameOf(message.user_id);
    const classes = ["message", mine ? "mine" : "theirs", message.status];
    if (first) classes.push("first");
    if (last) classes.push("last");
    const text = message.text ?? null;
    return h("li", {
      class: classes.join(" "),
      "data-testid": "message",
      dataset: {
        clientId: message.client_id,
        status: message.status,
        seq: message.seq ?? "",
        messageId: message.message_id ?? "",
        userId: message.user_id,
      },
    },
    group && !mine && first ? h("div", { class: "sender", "aria-hidden": "true" }, sender) : null,
    h("div", { class: "line" },
      group && !mine ? (last ? avatar(message.user_id, sender, "sm") : h("span", { class: "avatar-gap" })) : null,
      h("div", { class: "bubble" },
        h("span", { class: "visually-hidden" }, `${sender}: `),
        text !== null ? h("p", { class: "text" }, text)
        : message.decryption_error
          ? h("p", { class: "text encrypted", "data-testid": "undecryptable", title: message.decryption_error.message, dataset: { code: message.decryption_error.code } },
            icon("lock"), UNREADABLE[message.decryption_error.code] ?? UNREADABLE_OTHER)
          : h("p", { class: "text encrypted" }, "Encrypted message"),
        h("span", { class: "meta" },
          h("time", { datetime: new Date(message.sent_at).toISOString() }, formatTime(message.sent_at)),
          mine ? h("span", { class: `status status-${message.status}`, role: "img", "aria-label": STATUS_LABEL[message.status], title: STATUS_LABEL[message.status] }, icon(STATUS_ICON[message.status])) : null))),
    message.status === "failed"
      ? h("div", { class: "failed-note" }, "Not sent.",
        h("button", { type: "button", class: "link-button", "data-testid": "retry", dataset: { retry: message.client_id } }, "Retry"))
      : null,
    seenBy.length > 0
      ? h("div", { class: "seen", "data-testid": "seen-by" }, `Seen by ${listNames(seenBy)}`)
      : null);
  }

  /**
   * For each other member, the last message written by someone else at or
   * before their read position: that is where "Seen by <name>" goes.
   */
  #seenBy(snapshot) {
    const byMessage = new Map();
    const stored = snapshot.messages.filter((message) => message.seq !== null);
    for (const [userId, position] of Object.entries(snapshot.readPositions ?? {})) {
      if (userId === this.#me.id || !position) continue;
      let target = null;
      for (const message of stored) {
        if (message.seq > position) break;
        if (message.user_id !== userId) target = message;
      }
      if (!target) continue;
      const names = byMessage.get(target.message_id) ?? [];
      names.push(this.#nameOf(userId));
      byMessage.set(target.message_id, names.sort());
    }
    return byMessage;
  }

  #renderTyping(snapshot) {
    const names = snapshot.typingUserIds.filter((id) => id !== this.#me.id).map((id) => this.#nameOf(id));
    const text = names.length === 0 ? ""
      : names.length === 1 ? `${names[0]} is typing…`
      : names.length <= 3 ? `${listNames(names)} are typing…`
      : "Several people are typing…";
    // Only touch the live region on a change, so it is announced once.
    if (this.#els.typing.textContent !== text) this.#els.typing.textContent = text;
  }

  /** The member list with online dots, and the header's subtitle. */
  #renderPeople(snapshot) {
    const online = new Set();
    for (const member of snapshot.members) {
      online.add(member.user_id);
      if (member.name && !this.#names.has(member.user_id)) this.#names.set(member.user_id, member.name);
    }
    const ids = new Set([...this.#info.members.map((member) => member.id), ...online]);
    const people = [...ids].map((id) => ({ id, name: this.#names.get(id) ?? "Someone", online: online.has(id) }))
      .sort((a, b) => Number(b.online) - Number(a.online) || a.name.localeCompare(b.name));
    this.#els.presenceList.replaceChildren(...people.map((person) =>
      h("li", { class: "person", "data-testid": "presence-item", dataset: { userId: person.id, online: String(person.online) } },
        h("span", { class: "avatar-wrap" }, avatar(person.id, person.name, "sm"),
          h("span", { class: `dot ${person.online ? "online" : "offline"}`, "aria-hidden": "true" })),
        h("span", { class: "person-name" }, person.id === this.#me.id ? `${person.name} (you)` : person.name),
        h("span", { class: "visually-hidden" }, person.online ? ", active now" : ", away"))));

    let subtitle;
    if (this.#info.kind === "direct") {
      const other = this.#info.members.find((member) => member.id !== this.#me.id);
      // Presence is per room: "online" means "has this conversation open".
      subtitle = other && online.has(other.id) ? "Active now" : "Away";
    } else {
      const othersOnline = [...online].filter((id) => id !== this.#me.id && ids.has(id)).length;
      subtitle = `${ids.size} members${othersOnline ? `, ${othersOnline} active now` : ""}`;
    }
    this.#els.subtitle.textContent = subtitle;
    this.#els.subtitle.dataset.online = String(subtitle === "Active now");
  }

  // ------------------------------------------------ encrypted rooms

  /**
   * Asks for the safety numbers again when the room becomes ready or its
   * members or who is online change (someone opening the room may bring a
   * new device); the channel's epoch and member events also ask (bound once ready).
   */
  #verify(snapshot) {
    if (!this.#room.encryption || snapshot.status !== "ready") return;
    if (!this.#unbindDevices && this.#onDevicesChange) this.#unbindDevices = this.#onDevicesChange(() => this.#refreshNumbers());
    const members = this.#info.members.map((member) => member.id).sort();
    const online = snapshot.members.map((member) => member.user_id).sort();
    const key = JSON.stringify([members, online]);
    if (key === this.#verifiedFor) return;
    this.#verifiedFor = key;
    this.#renderVerification();
    this.#refreshNumbers();
  }

  async #refreshNumbers() {
    const encryption = this.#room.encryption;
    if (!encryption || this.#snapshot?.status !== "ready") return;
    const seq = ++this.#numbersSeq;
    const others = this.#info.members.map((member) => member.id).filter((id) => id !== this.#me.id);
    const results = await Promise.all(others.map((id) =>
      encryption.safetyNumber(id).then((devices) => ({ devices }), (error) => ({ error }))));
    if (seq !== this.#numbersSeq || this.#abort.signal.aborted) return; // a newer answer is coming, or the room closed
    this.#numbers = new Map(others.map((id, index) => [id, results[index]]));
    this.#renderVerification();
  }

  /** "Your device" and, per other member, the safety number of each of their devices. */
  #renderVerification() {
    const { verification, fingerprint, safetyNumbers } = this.#els;
    verification.hidden = false;
    fingerprint.textContent = this.#room.encryption?.fingerprint ?? "…";
    const others = this.#info.members.filter((member) => member.id !== this.#me.id);
    safetyNumbers.replaceChildren(...others.map((member) => {
      const name = this.#nameOf(member.id);
      const result = this.#numbers.get(member.id);
      const numbers =
        !result ? h("p", { class: "muted small" }, "Checking…")
        : result.error ? h("p", { class: "muted small" }, `Couldn't get the safety number. ${describeError(result.error)}`)
        : result.devices.length === 0 ? h("p", { class: "muted small" }, "No device yet: they haven't opened this conversation.")
        : result.devices.flatMap((device) => [
          result.devices.length > 1 ? h("p", { class: "muted small" }, `Device ${device.device_id}`) : null,
          h("p", { class: "key-number", "data-testid": "safety-number", dataset: { userId: member.id, deviceId: device.device_id } }, device.safety_number),
        ]);
      return h("li", { class: "safety", dataset: { userId: member.id } }, h("p", { class: "safety-name" }, name), numbers);
    }));
  }

  #keyChanged(change) {
    this.#keyChanges.set(`${change.user_id}\u0000${change.device_id}`, change);
    this.#renderKeyChanges();
    this.#refreshNumbers();
  }

  #renderKeyChanges() {
    this.#els.keyChanges.replaceChildren(...[...this.#keyChanges].map(([key, change]) => {
      const whose = change.user_id === this.#me.id ? "Your other device's" : `${this.#nameOf(change.user_id)}'s`;
      const accept = h("button", { type: "button", class: "ghost small", onclick: () => this.#accept(key, change, accept) }, "Accept");
      return h("li", { class: "key-change", "data-testid": "key-change", dataset: { userId: change.user_id, deviceId: change.device_id } },
        icon("alert"), h("p", {}, `${whose} device key changed — compare the safety number, then accept.`), accept);
    }));
  }

  /** Trusts the new key; messages that failed meanwhile keep their Retry button. */
  async #accept(key, change, button) {
    button.disabled = true;
    try {
      await this.#room.encryption.acceptDeviceChange(change.user_id, change.device_id);
    } catch (error) {
      button.disabled = false;
      this.#onError(error, "Couldn't accept the new key");
      return;
    }
    this.#keyChanges.delete(key);
    this.#renderKeyChanges();
    this.#refreshNumbers();
  }

  /** New messages from others, said once to screen readers (the list itself is not live). */
  #announce(snapshot) {
    if (snapshot.status !== "ready") return;
    const stored = snapshot.messages.filter((message) => message.seq !== null);
    const highest = stored.at(-1)?.seq ?? 0;
    if (this.#announcedSeq === null) {
      // The history on opening is not news.
      this.#announcedSeq = highest;
      return;
    }
    const fresh = stored.filter((message) => message.seq > this.#announcedSeq && message.user_id !== this.#me.id);
    this.#announcedSeq = Math.max(this.#announcedSeq, highest);
    if (fresh.length === 0) return;
    const latest = fresh.at(-1);
    this.#els.announcer.textContent = `${this.#nameOf(latest.user_id)}: ${latest.text ?? "Encrypted message"}`;
  }
}
