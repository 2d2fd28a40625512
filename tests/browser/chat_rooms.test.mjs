// @domvia/realtime-chat end to end: the built packages in real browser pages
// (Chromium or Firefox, per DOMVIA_BROWSER; one browser context per user, each signed in with its own session cookie)
// against the real embedded server (broker + backend): messages both ways,
// exactly-once delivery, typing, read receipts, presence, a server restart in
// the middle of a send, a non-member refused, and paging through history.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { devApp, launchBrowser, startServer } from "../support/harness.mjs";
import { eventually, signIn } from "../support/chat.mjs";
import {
  newSdkPage,
  openChatRoom,
  openSdkUser,
  postSentinel,
  sentinelHeard,
  socketSentinel,
  unexpectedErrors,
} from "../support/sdk_pages.mjs";

const MESSAGE_FIELDS = ["client_id", "message_id", "room_id", "sent_at", "seq", "status", "text", "user_id"];

let dataDir;
let server;
let browser;
let port;
let env;
const contexts = [];

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "domvia-chat-test-"));
  // A database file, so a restarted server has the same rooms and messages.
  env = { DOMVIA_DB: join(dataDir, "chat.sqlite") };
  server = await startServer(env);
  port = server.port;
  browser = await launchBrowser();
});

after(async () => {
  for (const context of contexts) await context.close().catch(() => {});
  await browser?.close();
  await server?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

/** A browser context signed in as a fresh user, plus a bearer-token API client for the same user. */
const openUser = (label) => openSdkUser(browser, contexts, server.url, label);

/** Opens `window.room` for `roomId` in `who`'s page (see openChatRoom). */
const openRoom = (who, roomId, options = {}) => openChatRoom(who, port, roomId, options);

const snapshot = (who) => who.page.evaluate(() => window.room.getSnapshot());
const logOf = (who) => who.page.evaluate(() => window.log);

/** Sends in the page; resolves with the outcome and what the snapshot showed right after the call. */
function send(who, text) {
  return who.page.evaluate(async (text) => {
    const promise = window.room.sendMessage({ text });
    const shownAtOnce = window.room.getSnapshot().messages.at(-1);
    try {
      return { ok: true, message: await promise, shownAtOnce };
    } catch (error) {
      return { ok: false, code: error.code, name: error.name, shownAtOnce };
    }
  }, text);
}

async function directRoom(a, b) {
  const created = await a.api("POST", "/api/rooms", { kind: "direct", member_ids: [b.user.id] });
  assert.ok(created.status === 200 || created.status === 201, JSON.stringify(created));
  return created.body;
}

test("messages both ways end 'sent' with the exact fields; onMessage once per message_id; a throwing listener is reported", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const room = await directRoom(ada, bob);
  assert.deepEqual(await openRoom(ada, room.room_id), { ok: true });
  assert.deepEqual(await openRoom(bob, room.room_id), { ok: true });
  // One of Bob's listeners is buggy: it is reported, the others and the room go on.
  await bob.page.evaluate(() => window.room.onMessage(() => {
    throw new Error("app bug in onMessage");
  }));

  const first = await send(ada, "hello Bob");
  assert.equal(first.ok, true, JSON.stringify(first));
  assert.equal(first.shownAtOnce.status, "sending", "the message is shown at once, 'sending'");
  assert.equal(first.shownAtOnce.message_id, null);
  assert.equal(first.shownAtOnce.seq, null);
  assert.equal(first.shownAtOnce.text, "hello Bob");
  const sent = first.message;
  assert.deepEqual(Object.keys(sent).sort(), MESSAGE_FIELDS);
  assert.match(sent.client_id, /^c-[0-9a-f]{32}$/);
  assert.equal(sent.client_id, first.shownAtOnce.client_id);
  assert.match(sent.message_id, /^m_[0-9a-f]{32}$/);
  assert.equal(sent.room_id, room.room_id);
  assert.equal(sent.seq, 1);
  assert.equal(sent.user_id, ada.user.id);
  assert.equal(sent.text, "hello Bob");
  assert.equal(sent.status, "sent");
  assert.equal(typeof sent.sent_at, "number");

  await eventually("Bob to get Ada's message", async () => (await logOf(bob)).messages.length === 1);
  const reply = await send(bob, "hi Ada");
  assert.equal(reply.ok, true, JSON.stringify(reply));
  assert.equal(reply.message.seq, 2);
  await eventually("Ada to get Bob's reply", async () => (await logOf(ada)).messages.length === 2);

  // Each side: its own message once confirmed, the other's once, in order, all 'sent'.
  const adaLog = await logOf(ada);
  const bobLog = await logOf(bob);
  assert.deepEqual(adaLog.messages, [sent, reply.message]);
  assert.deepEqual(bobLog.messages, [sent, reply.message]);
  for (const message of [...adaLog.messages, ...bobLog.messages]) {
    assert.deepEqual(Object.keys(message).sort(), MESSAGE_FIELDS);
  }
  const adaView = await snapshot(ada);
  const bobView = await snapshot(bob);
  assert.deepEqual(adaView.messages, [sent, reply.message]);
  assert.deepEqual(bobView.messages, [sent, reply.message]);
  assert.equal(adaView.status, "ready");
  assert.equal(adaView.connection, "connected");
  assert.ok(adaLog.notifications > 0, "subscribe() listeners were notified");

  // Nothing more arrives later (no echo of one's own event, no duplicate):
  // a sentinel posted after both, once heard, is the third and last message.
  const sentinel = await postSentinel(ada, room.room_id);
  for (const who of [ada, bob]) {
    await sentinelHeard(who, sentinel);
    assert.deepEqual((await logOf(who)).messages, [sent, reply.message, { ...sentinel, status: "sent" }], `${who.name}'s onMessage calls`);
  }

  // The snapshot is the same object until something changes, then a new one, notified once per batch.
  const stability = await ada.page.evaluate(async () => {
    const room = window.room;
    const before = room.getSnapshot();
    const same = before === room.getSnapshot() && before.messages === room.getSnapshot().messages;
    let calls = 0;
    const stop = room.subscribe(() => calls++);
    const pending = [room.sendMessage({ text: "one" }), room.sendMessage({ text: "two" })];
    const afterSend = room.getSnapshot();
    await Promise.resolve();
    const callsAfterOneMicrotask = calls;
    await Promise.all(pending);
    stop();
    return {
      same,
      changed: afterSend !== before,
      frozen: Object.isFrozen(afterSend) && Object.isFrozen(afterSend.messages),
      rowKept: afterSend.messages[0] === before.messages[0],
      callsAfterOneMicrotask,
    };
  });
  assert.deepEqual(stability, { same: true, changed: true, frozen: true, rowKept: true, callsAfterOneMicrotask: 1 });

  // Text the backend would refuse fails fast, without a request; the message never shows.
  const tooLarge = await send(ada, "x".repeat(4001));
  assert.equal(tooLarge.ok, false);
  assert.equal(tooLarge.code, "text_too_large");
  assert.equal(tooLarge.name, "DomViaError");
  const empty = await send(ada, "");
  assert.equal(empty.code, "invalid_text");
  assert.ok((await snapshot(ada)).messages.every((message) => message.status === "sent"));

  await eventually("Bob to get all five", async () => (await logOf(bob)).messages.length === 5);
  assert.ok(bob.errors.some((line) => line.includes("app bug in onMessage")), "the listener's throw is reported");
  assert.equal((await snapshot(bob)).status, "ready");
  assert.deepEqual(unexpectedErrors(ada), []);
});

test("the documented example runs as written: no await ready() before buildChatChannelName and createChatRoom", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const room = await directRoom(ada, bob);
  // Both sides of a room agree on presence; the docs example uses none.
  assert.deepEqual(await openRoom(bob, room.room_id, { presence: false }), { ok: true });
  // The docs page's client example, with this server's address and without
  // `encrypted: true` (tests/browser/e2ee_chat.test.mjs runs it encrypted).
  const result = await ada.page.evaluate(async ({ port, key, roomId }) => {
    const { DomViaRealtime } = await import("@domvia/realtime");
    const { buildChatChannelName, createChatRoom } = await import("@domvia/realtime-chat");
    const realtime = DomViaRealtime.create({ key, host: "127.0.0.1", port, forceTLS: false, authEndpoint: "/realtime/auth", clientEvents: true });
    const room = createChatRoom(realtime, { roomId, channelName: buildChatChannelName(roomId) });
    await room.waitUntilReady();
    const seen = [];
    room.onMessage((event) => seen.push(event.message_id));
    room.sendTyping({ user_id: "user-1" });
    window.room = room;
    return { channelName: buildChatChannelName(roomId), seen };
  }, { port, key: devApp.key, roomId: room.room_id });
  assert.equal(result.channelName, `private-chat.room.${room.room_id}`);
  // Bob hears the typing (a private room: the payload's id, as documented) and Ada hears Bob's message.
  await eventually("Bob sees typing", async () => (await logOf(bob)).typing.some((event) => event.is_typing));
  const reply = await send(bob, "from the docs");
  assert.equal(reply.ok, true, JSON.stringify(reply));
  await eventually("Ada's onMessage from the example", async () =>
    (await ada.page.evaluate(() => window.room.getSnapshot().messages.map((m) => m.text))).includes("from the docs"));
  assert.deepEqual(unexpectedErrors(ada), []);
});

test("typing: shown and gone on stopTyping, on expiry, and when the typist's message arrives; own typing never shown", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const room = await directRoom(ada, bob);
  assert.deepEqual(await openRoom(ada, room.room_id, { typing: { throttleMs: 100 } }), { ok: true });
  assert.deepEqual(await openRoom(bob, room.room_id, { typing: { timeoutMs: 1500 } }), { ok: true });
  await eventually("both online", async () => (await snapshot(bob)).members.length === 2);

  const typingAt = (who) => who.page.evaluate(() => window.room.getSnapshot().typingUserIds);

  // Explicit stop. Presence rooms take the typist from the broker's stamp, not the argument.
  await ada.page.evaluate(() => window.room.sendTyping({ user_id: "someone-else" }));
  await eventually("Bob to see Ada typing", async () => (await typingAt(bob)).includes(ada.user.id));
  assert.deepEqual(await typingAt(bob), [ada.user.id]);
  assert.deepEqual(await typingAt(ada), [], "own typing is never listed");
  await ada.page.evaluate(() => window.room.stopTyping());
  await eventually("Ada's typing to end at Bob", async () => (await typingAt(bob)).length === 0);
  // The embedded broker stamps the sender: the signal is verified, and the stamp wins over the claim.
  assert.deepEqual(
    (await logOf(bob)).typing.map(({ user_id, is_typing, verified }) => ({ user_id, is_typing, verified })),
    [
      { user_id: ada.user.id, is_typing: true, verified: true },
      { user_id: ada.user.id, is_typing: false, verified: true },
    ],
  );

  // Expiry: no more signals, and Bob's 1.5 s timeout ends it by itself.
  await ada.page.evaluate(() => window.room.sendTyping());
  await eventually("Bob to see Ada typing again", async () => (await typingAt(bob)).includes(ada.user.id));
  const shownAt = Date.now();
  await eventually("the typing to expire", async () => (await typingAt(bob)).length === 0, 5000);
  const expiredAfter = Date.now() - shownAt;
  assert.ok(expiredAfter >= 1000 && expiredAfter < 4000, `expired after ${expiredAfter} ms`);
  const events = (await logOf(bob)).typing;
  assert.equal(events.length, 4);
  assert.deepEqual(
    { user_id: events[3].user_id, is_typing: events[3].is_typing },
    { user_id: ada.user.id, is_typing: false },
  );

  // Typing, then the message: the message ends the typing at Bob (sending also sends false).
  await ada.page.evaluate(() => window.room.sendTyping());
  await eventually("Bob to see Ada typing a third time", async () => (await typingAt(bob)).includes(ada.user.id));
  assert.equal((await send(ada, "done typing")).ok, true);
  await eventually("the message to end the typing", async () => (await typingAt(bob)).length === 0, 1000);
  assert.deepEqual(unexpectedErrors(ada), []);
  assert.deepEqual(unexpectedErrors(bob), []);
});

test("the room's events go to its session inside the wasm; the app's own bind and bindGlobal on the room's channels still get them, until unbound", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const room = await directRoom(ada, bob);
  assert.deepEqual(await openRoom(ada, room.room_id), { ok: true });
  assert.deepEqual(await openRoom(bob, room.room_id), { ok: true });
  await eventually("both online", async () => (await snapshot(bob)).members.length === 2);

  // Bob's app listens on the room's two channels itself: message.created on
  // the private one, everything (typing included) on the presence one.
  const listen = () =>
    bob.page.evaluate(async (roomId) => {
      const chat = await import("@domvia/realtime-chat");
      const privateChannel = window.realtime.channel(chat.buildChatChannelName(roomId));
      const presenceChannel = window.realtime.channel(chat.buildChatChannelName(roomId, { presence: true }));
      window.appHeard ??= [];
      const offBind = privateChannel.bind("message.created", (data) => window.appHeard.push(`bind ${data.text}`));
      const offGlobal = presenceChannel.bindGlobal((event, _data, metadata) => {
        if (event === "client-typing") window.appHeard.push(`global typing ${metadata.user_id}`);
      });
      window.unlisten = () => {
        offBind();
        offGlobal();
      };
    }, room.room_id);
  const appHeard = () => bob.page.evaluate(() => window.appHeard);
  const bobGot = (count) => eventually(`Bob's room to have ${count} messages`, async () => (await logOf(bob)).messages.length === count);

  // (The session has no JS entry point for these events: the connection
  // feeds it in the wasm, so the room hearing them at all is the routing.)
  await listen();
  assert.equal((await send(ada, "one")).ok, true);
  await bobGot(1);
  await ada.page.evaluate(() => window.room.sendTyping());
  await eventually("Bob to see Ada typing", async () => (await snapshot(bob)).typingUserIds.includes(ada.user.id));
  assert.deepEqual(await appHeard(), ["bind one", `global typing ${ada.user.id}`]);

  // Unbound: the room still gets everything, the app's listeners nothing
  // (they would run in the same task as the room's, before the log grows).
  await bob.page.evaluate(() => window.unlisten());
  assert.equal((await send(ada, "two")).ok, true);
  await bobGot(2);
  await ada.page.evaluate(() => window.room.sendTyping());
  await eventually("Bob to see Ada typing again", async () => (await logOf(bob)).typing.filter((e) => e.is_typing).length === 2);
  assert.deepEqual(await appHeard(), ["bind one", `global typing ${ada.user.id}`]);

  // Bound again: heard again.
  await listen();
  assert.equal((await send(ada, "three")).ok, true);
  await bobGot(3);
  // (Ada's send also ends her typing: a client-typing false may come first.)
  const heard = await appHeard();
  assert.deepEqual(heard.slice(0, 2), ["bind one", `global typing ${ada.user.id}`]);
  assert.deepEqual(heard.slice(2).filter((entry) => entry !== `global typing ${ada.user.id}`), ["bind three"]);
  assert.deepEqual((await logOf(bob)).messages.map((m) => m.text), ["one", "two", "three"]);
  assert.deepEqual(unexpectedErrors(ada), []);
  assert.deepEqual(unexpectedErrors(bob), []);
});

test("unread count and read receipts: markRead moves Bob's position at once, Ada gets the receipt", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const room = await directRoom(ada, bob);
  // Two messages before Bob opens the room: unread from the Room object.
  for (const text of ["one", "two"]) {
    const posted = await ada.api("POST", `/api/rooms/${room.room_id}/messages`, { client_id: `c-pre-${text}`, text });
    assert.equal(posted.status, 201);
  }
  assert.deepEqual(await openRoom(ada, room.room_id), { ok: true });
  assert.deepEqual(await openRoom(bob, room.room_id), { ok: true });
  assert.equal((await snapshot(bob)).unreadCount, 2);
  assert.equal((await snapshot(ada)).unreadCount, 0, "own messages are never unread");

  const third = await send(ada, "three");
  await eventually("Bob to get the third", async () => (await snapshot(bob)).unreadCount === 3);

  const marked = await bob.page.evaluate((messageId) => {
    window.room.markRead(messageId);
    return window.room.getSnapshot().unreadCount;
  }, third.message.message_id);
  assert.equal(marked, 0, "the position moves locally at once");

  await eventually("Ada to get Bob's receipt", async () => (await logOf(ada)).receipts.length > 0);
  assert.deepEqual((await logOf(ada)).receipts, [{ user_id: bob.user.id, message_id: third.message.message_id, seq: 3 }]);
  assert.equal((await snapshot(ada)).readPositions[bob.user.id], 3);
  assert.equal((await snapshot(bob)).readPositions[bob.user.id], 3);
  const stored = await bob.api("GET", `/api/rooms/${room.room_id}`);
  assert.equal(stored.body.last_read_seq, 3);
  assert.equal(stored.body.unread_count, 0);
  assert.deepEqual((await logOf(bob)).receipts, [], "no receipt for one's own read");
  assert.deepEqual(unexpectedErrors(ada), []);
  assert.deepEqual(unexpectedErrors(bob), []);
});

test("a read position marked just before leaving reaches the backend though the tab closes at once (keepalive)", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const room = await directRoom(ada, bob);
  for (const text of ["one", "two"]) {
    const posted = await ada.api("POST", `/api/rooms/${room.room_id}/messages`, { client_id: `c-keep-${text}`, text });
    assert.equal(posted.status, 201);
  }
  assert.deepEqual(await openRoom(bob, room.room_id), { ok: true });
  const last = (await snapshot(bob)).messages.at(-1);
  assert.equal(last.seq, 2);
  // markRead waits a moment before it writes; leave() sends it at once, and the tab goes away right after.
  await bob.page.evaluate((messageId) => {
    window.room.markRead(messageId);
    window.room.leave();
  }, last.message_id);
  await bob.page.close();
  await eventually("the read position to be stored", async () =>
    (await bob.api("GET", `/api/rooms/${room.room_id}`)).body.last_read_seq === 2);
  assert.equal((await bob.api("GET", `/api/rooms/${room.room_id}`)).body.unread_count, 0);
});

test("presence: members update when one leaves the room", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const room = await directRoom(ada, bob);
  assert.deepEqual(await openRoom(ada, room.room_id), { ok: true });
  assert.deepEqual(await openRoom(bob, room.room_id), { ok: true });
  const sorted = (members) => [...members].sort((a, b) => a.user_id.localeCompare(b.user_id));
  const both = sorted([
    { user_id: ada.user.id, name: ada.name },
    { user_id: bob.user.id, name: bob.name },
  ]);
  await eventually("Ada to see both online", async () => (await snapshot(ada)).members.length === 2);
  assert.deepEqual(sorted((await snapshot(ada)).members), both);
  assert.deepEqual(sorted((await snapshot(bob)).members), both);
  assert.deepEqual((await logOf(ada)).presence, [{ type: "joined", user_id: bob.user.id, name: bob.name }]);

  const afterLeave = await bob.page.evaluate(() => {
    window.room.leave();
    window.room.leave(); // idempotent
    return { status: window.room.getSnapshot().status };
  });
  assert.equal(afterLeave.status, "left");
  await eventually("Ada to see Bob leave", async () => (await snapshot(ada)).members.length === 1);
  assert.deepEqual((await snapshot(ada)).members, [{ user_id: ada.user.id, name: ada.name }]);
  assert.deepEqual((await logOf(ada)).presence.at(-1), { type: "left", user_id: bob.user.id, name: bob.name });

  // After leave: Bob's page gets nothing more and its calls reject with room_left.
  const leftSend = await send(bob, "after leaving");
  assert.deepEqual({ ok: leftSend.ok, code: leftSend.code }, { ok: false, code: "room_left" });
  const sentinelArrived = await socketSentinel(bob);
  const bobMessages = (await logOf(bob)).messages.length;
  assert.equal((await send(ada, "are you there?")).ok, true);
  await sentinelArrived();
  assert.equal((await logOf(bob)).messages.length, bobMessages);
  const channels = await bob.page.evaluate((id) => [
    window.realtime.channel(`private-chat.room.${id}`),
    window.realtime.channel(`presence-chat.room.${id}`),
  ], room.room_id);
  assert.deepEqual(channels, [undefined, undefined], "leave() unsubscribed its channels");
  assert.deepEqual(unexpectedErrors(ada), []);
  assert.deepEqual(unexpectedErrors(bob), []);
});

test("a non-member is refused with room_access_denied and receives nothing", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const eve = await openUser("Eve");
  const room = await directRoom(ada, bob);
  assert.deepEqual(await openRoom(bob, room.room_id), { ok: true });
  const refused = await openRoom(eve, room.room_id);
  assert.equal(refused.ok, false);
  assert.equal(refused.code, "room_access_denied");
  assert.equal(refused.name, "DomViaError");
  const view = await snapshot(eve);
  assert.equal(view.status, "error");
  assert.equal(view.error.code, "room_access_denied");
  assert.deepEqual(view.messages, []);

  const sentinelArrived = await socketSentinel(eve);
  const posted = await ada.api("POST", `/api/rooms/${room.room_id}/messages`, { client_id: "c-secret", text: "members only" });
  assert.equal(posted.status, 201);
  await eventually("Bob to get it", async () => (await logOf(bob)).messages.length === 1);
  await sentinelArrived();
  assert.deepEqual((await logOf(eve)).messages, []);
  assert.deepEqual((await snapshot(eve)).messages, []);
  const eveSend = await send(eve, "let me in");
  assert.equal(eveSend.ok, false);
  assert.equal(eveSend.code, "room_access_denied");
});

test("a member removed from a group: the room fails with room_access_denied at once, sends and retry() fail with it, the backend refuses with not_a_member", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const created = await ada.api("POST", "/api/rooms", { kind: "group", name: "Team", member_ids: [bob.user.id] });
  assert.equal(created.status, 201);
  const roomId = created.body.room_id;
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });
  const removed = await ada.api("DELETE", `/api/rooms/${roomId}/members/${bob.user.id}`);
  assert.equal(removed.body.removed, true);

  // member.removed names Bob: his room fails without waiting for a request.
  await eventually("Bob's room to fail", async () => (await snapshot(bob)).status === "error");
  assert.equal((await snapshot(bob)).error.code, "room_access_denied");
  const failed = await send(bob, "still here?");
  assert.deepEqual({ ok: failed.ok, code: failed.code, name: failed.name }, { ok: false, code: "room_access_denied", name: "DomViaError" });
  const retried = await bob.page.evaluate(() => window.room.retry("c-unknown").then(() => "resolved", (error) => error.code));
  assert.equal(retried, "room_access_denied");
  // A client that never heard of the removal is refused by the backend itself.
  const posted = await bob.api("POST", `/api/rooms/${roomId}/messages`, { client_id: "c-not-heard", text: "still here?" });
  assert.equal(posted.status, 403);
  assert.equal(posted.body.error.code, "not_a_member");
});

test("loadOlder pages through the history without duplicates; onMessage is not called for history", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const room = await directRoom(ada, bob);
  for (let i = 1; i <= 25; i++) {
    const posted = await ada.api("POST", `/api/rooms/${room.room_id}/messages`, { client_id: `c-history-${i}`, text: `message ${i}` });
    assert.equal(posted.status, 201);
  }
  assert.deepEqual(await openRoom(bob, room.room_id, { historyPageSize: 10 }), { ok: true });
  const seqs = async () => (await snapshot(bob)).messages.map((message) => message.seq);
  const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
  assert.deepEqual(await seqs(), range(16, 25));
  assert.equal((await snapshot(bob)).hasOlder, true);

  const loadOlder = () => bob.page.evaluate(() => window.room.loadOlder());
  assert.deepEqual(await loadOlder(), { added: 10, hasMore: true });
  assert.deepEqual(await seqs(), range(6, 25));
  // Two calls at once share one request.
  const [a, b] = await bob.page.evaluate(() => Promise.all([window.room.loadOlder(), window.room.loadOlder()]));
  assert.deepEqual(a, { added: 5, hasMore: false });
  assert.deepEqual(b, a);
  assert.deepEqual(await loadOlder(), { added: 0, hasMore: false });
  const view = await snapshot(bob);
  assert.deepEqual(view.messages.map((message) => message.seq), range(1, 25));
  assert.equal(new Set(view.messages.map((message) => message.message_id)).size, 25);
  assert.deepEqual(view.messages.map((message) => message.text), range(1, 25).map((i) => `message ${i}`));
  assert.equal(view.hasOlder, false);
  assert.deepEqual((await logOf(bob)).messages, [], "history pages are not onMessage events");
  assert.deepEqual(unexpectedErrors(bob), []);
});

test("stop the server while a user sends, restart it: the message arrives exactly once on both sides, and missed ones are caught up", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const room = await directRoom(ada, bob);
  assert.deepEqual(await openRoom(ada, room.room_id), { ok: true });
  assert.deepEqual(await openRoom(bob, room.room_id), { ok: true });
  assert.equal((await send(ada, "before")).ok, true);
  await eventually("Bob to get 'before'", async () => (await logOf(bob)).messages.length === 1);

  assert.equal(await server.stop(), 0);
  await eventually("both to notice", async () =>
    (await snapshot(ada)).connection !== "connected" && (await snapshot(bob)).connection !== "connected");

  // Ada sends while the server is down: shown 'sending', retried, not failed.
  // The second attempt is the sentinel: the first one's failure was handled by then.
  await ada.page.evaluate(() => {
    window.sendAttempts = 0;
    const fetchBefore = window.fetch;
    window.fetch = (input, init = {}) => {
      // Read the method and URL without new Request(input), which would take a Request's body.
      const method = init.method ?? (input instanceof Request ? input.method : "GET");
      const url = new URL(input instanceof Request ? input.url : String(input), location.href);
      if (method === "POST" && url.pathname.endsWith("/messages")) window.sendAttempts++;
      return fetchBefore(input, init);
    };
    window.outageSend = window.room.sendMessage({ text: "during the outage" }).then(
      (message) => ({ ok: true, message }),
      (error) => ({ ok: false, code: error.code }),
    );
  });
  await eventually("Ada's page to retry the send", async () => (await ada.page.evaluate(() => window.sendAttempts)) >= 2);
  const pending = (await snapshot(ada)).messages.filter((message) => message.text === "during the outage");
  assert.equal(pending.length, 1);
  assert.equal(pending[0].status, "sending");

  server = await startServer(env, { port });
  // A message Bob misses while his connection is still down is caught up after his reconnect.
  const missed = await bob.api("POST", `/api/rooms/${room.room_id}/messages`, { client_id: "c-while-away", text: "sent while away" });
  assert.equal(missed.status, 201);

  const outcome = await eventually("Ada's send to resolve", () => ada.page.evaluate(() =>
    Promise.race([window.outageSend, new Promise((resolve) => setTimeout(() => resolve(null), 200))])), 30_000);
  assert.equal(outcome.ok, true, JSON.stringify(outcome));
  assert.equal(outcome.message.status, "sent");
  const clientId = outcome.message.client_id;
  assert.equal(clientId, pending[0].client_id, "the same client id across the retries");

  for (const who of [ada, bob]) {
    await eventually(`${who.name} to hold all three`, async () => (await snapshot(who)).messages.length === 3, 20_000);
  }
  for (const who of [ada, bob]) {
    await eventually(`${who.name} connected`, async () => (await snapshot(who)).connection === "connected", 20_000)
      .catch(async (error) => {
        throw new Error(`${error.message}: ${JSON.stringify(await who.page.evaluate(() => window.states))}`);
      });
  }
  // No late duplicate: a sentinel posted once both are subscribed again is heard after anything still on its way.
  for (const who of [ada, bob]) {
    await eventually(`${who.name} subscribed again`, () =>
      who.page.evaluate((name) => window.realtime.channel(name)?.state === "subscribed", `private-chat.room.${room.room_id}`));
  }
  const sentinel = await postSentinel(bob, room.room_id);
  for (const who of [ada, bob]) await sentinelHeard(who, sentinel);
  const expected = ["before", "sent while away", "during the outage", sentinel.text];
  const views = [await snapshot(ada), await snapshot(bob)];
  for (const view of views) {
    assert.deepEqual(view.messages.map((message) => message.seq), [1, 2, 3, 4]);
    assert.equal(view.messages.filter((message) => message.client_id === clientId).length, 1);
    assert.ok(view.messages.every((message) => message.status === "sent"));
    assert.deepEqual(view.messages.map((message) => message.text).sort(), [...expected].sort());
  }
  assert.deepEqual(views[0].messages, views[1].messages);
  const outageSeq = views[0].messages.find((message) => message.client_id === clientId).seq;
  for (const who of [ada, bob]) {
    const received = (await logOf(who)).messages.filter((message) => message.client_id === clientId);
    assert.equal(received.length, 1, `${who.name}: onMessage once for the outage message`);
    assert.equal(received[0].seq, outageSeq);
    const ids = (await logOf(who)).messages.map((message) => message.message_id);
    assert.equal(new Set(ids).size, ids.length, `${who.name}: no message twice`);
  }
  const history = await ada.api("GET", `/api/rooms/${room.room_id}/messages`);
  assert.equal(history.body.messages.filter((message) => message.client_id === clientId).length, 1, "stored once");
});

test("bearer tokens: a page without a session cookie uses api.headersProvider for the backend and the channel auth", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const room = await directRoom(ada, bob);
  // A fresh context: no cookie, only Bob's token, handed to both packages.
  const { page, errors } = await newSdkPage(browser, contexts, server.url);
  const token = (await signIn(server.url, bob.name)).token;
  const result = await page.evaluate(async ({ port, key, roomId, token }) => {
    const { DomViaRealtime, ready } = await import("@domvia/realtime");
    const chat = await import("@domvia/realtime-chat");
    await ready();
    let provided = 0;
    const headersProvider = async () => {
      provided++;
      return { Authorization: `Bearer ${token}` };
    };
    const realtime = DomViaRealtime.create({
      key, host: "127.0.0.1", port, forceTLS: false, authEndpoint: "/realtime/auth", clientEvents: true, headersProvider,
    });
    const room = chat.createChatRoom(realtime, { roomId, channelName: chat.buildChatChannelName(roomId), api: { headersProvider } });
    await Promise.race([room.waitUntilReady(), new Promise((_, reject) => setTimeout(() => reject(new Error("not ready within 10 s")), 10_000))]);
    const sent = await room.sendMessage({ text: "from a token" });
    const view = room.getSnapshot();
    room.leave();
    realtime.dispose();
    return { sent, provided, members: view.members, count: view.messages.length };
  }, { port, key: devApp.key, roomId: room.room_id, token });
  assert.equal(result.sent.user_id, bob.user.id);
  assert.equal(result.sent.status, "sent");
  assert.equal(result.count, 1);
  assert.deepEqual(result.members, [], "no presence channel unless presence: true");
  assert.ok(result.provided >= 4, `headersProvider called for the session, room, history, send and channel auth (${result.provided})`);
  assert.deepEqual(errors, []);
});

test("the room registry (what the framework bindings share): one room per id by lease, left after the last release and its delay", async () => {
  const ada = await openUser("ada");
  const created = await ada.api("POST", "/api/rooms", { kind: "group", name: "Shared", member_ids: [] });
  assert.equal(created.status, 201);
  const roomId = created.body.room_id;
  const result = await ada.page.evaluate(
    async ({ port, key, roomId }) => {
      const { DomViaRealtime } = await import("@domvia/realtime");
      const { ChatRoomRegistry, loadingSnapshot } = await import("@domvia/realtime-chat");
      const realtime = DomViaRealtime.create({ key, host: "127.0.0.1", port, forceTLS: false, authEndpoint: "/realtime/auth" });
      const rooms = new ChatRoomRegistry(realtime, { releaseDelayMs: 200 });
      const channel = `private-chat.room.${roomId}`;
      const codeOf = (call) => {
        try {
          call();
          return "none";
        } catch (error) {
          return error.code;
        }
      };
      const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
      const out = {};
      // Options equal by value share the room; a third lease with other options is refused while held.
      const first = rooms.acquire(roomId, { historyPageSize: 20, api: {} });
      const second = rooms.acquire(roomId, { api: {}, historyPageSize: 20 });
      out.shared = first.room === second.room;
      out.otherOptions = codeOf(() => rooms.acquire(roomId, { historyPageSize: 30 }));
      out.badId = codeOf(() => rooms.acquire("room 42"));
      await first.room.waitUntilReady();
      // One release: still open. Both (and a second release call, harmless): left after the delay, not before.
      first.release();
      first.release();
      out.afterOneRelease = { leases: rooms.openRooms, subscribed: realtime.channel(channel) !== undefined };
      second.release();
      await sleep(50);
      out.withinDelay = { status: first.room.getSnapshot().status, subscribed: realtime.channel(channel) !== undefined };
      // A lease taken within the delay (a StrictMode remount, a v-if flicker) keeps the same room.
      const third = rooms.acquire(roomId, { historyPageSize: 20, api: {} });
      out.keptWithinDelay = third.room === first.room;
      third.release();
      await sleep(400);
      out.afterDelay = { status: first.room.getSnapshot().status, subscribed: realtime.channel(channel) !== undefined, open: rooms.openRooms };
      // Unheld, other options replace the room at once.
      const fourth = rooms.acquire(roomId, { historyPageSize: 30 });
      out.fresh = fourth.room !== first.room;
      rooms.close();
      out.closed = { status: fourth.room.getSnapshot().status, acquire: codeOf(() => rooms.acquire(roomId)) };
      // The placeholder of a room not open yet: loading, empty, the same object each time.
      const placeholder = loadingSnapshot("r_x");
      out.placeholder = placeholder === loadingSnapshot("r_x") && placeholder.status === "loading";
      realtime.dispose();
      return out;
    },
    { port, key: devApp.key, roomId },
  );
  assert.deepEqual(result, {
    shared: true,
    otherOptions: "invalid_config",
    badId: "invalid_room_id",
    afterOneRelease: { leases: [{ roomId, leases: 1 }], subscribed: true },
    withinDelay: { status: "ready", subscribed: true },
    keptWithinDelay: true,
    afterDelay: { status: "left", subscribed: false, open: [] },
    fresh: true,
    closed: { status: "left", acquire: "disposed" },
    placeholder: true,
  });
  assert.deepEqual(unexpectedErrors(ada), []);
});
