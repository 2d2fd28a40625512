// End-to-end encrypted chat rooms (`encrypted: true`) end to end: the built
// packages (@domvia/realtime-chat loading @domvia/realtime-e2ee on demand) in
// real browser pages (Chromium or Firefox, per DOMVIA_BROWSER), one browser context per user (its own IndexedDB and
// session cookie), against the real embedded server with a database file.
// Both users read each other's plaintext, while the SQLite file and every
// frame the broker sends a member's socket hold only ciphertext; a removed
// member cannot read what is sent after (the backend refuses an envelope in
// the epoch from before the removal); a reload restores the keys from
// IndexedDB; a member added later reads from their epoch on; a device that
// missed an epoch reads it with that epoch's devices (after a membership
// change, or its creator's removal); an open that failed while the backend
// was unreachable is retried after a reconnect.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { devApp, launchBrowser, recordPageErrors, startServer } from "../support/harness.mjs";
import { connectPusher, eventually, subscribed } from "../support/chat.mjs";
import { openSdkUser, prepareSdkPage, recordPosts, SDK_IMPORTS, sendInRoom as send, unexpectedErrors } from "../support/sdk_pages.mjs";

let dataDir;
let dbFile;
let server;
let browser;
const contexts = [];
const pusherClients = [];
/** Every plaintext any test sent: none may appear in the database file or the broker's frames. */
const plaintexts = [];
/** Every frame the broker sent to the recording clients (members' sockets in Node). */
const frames = [];

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "domvia-e2ee-test-"));
  dbFile = join(dataDir, "e2ee.sqlite");
  server = await startServer({ DOMVIA_DB: dbFile });
  browser = await launchBrowser();
});

after(async () => {
  for (const client of pusherClients) client.disconnect();
  for (const context of contexts) await context.close().catch(() => {});
  await browser?.close();
  await server?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

/** A distinctive plaintext, remembered for the storage and traffic checks. */
function secret(label) {
  const text = `${label} ${randomBytes(8).toString("hex")}`;
  plaintexts.push(text);
  return text;
}

/** A page of the server's origin with the SDK import map (again after a reload). */
const preparePage = (page) => prepareSdkPage(page, server.url);

/** A browser context signed in as a fresh user, plus a bearer-token API client for the same user. */
const openUser = (label) => openSdkUser(browser, contexts, server.url, label);

/**
 * Creates `window.realtime` (once per page) and an encrypted `window.room`,
 * logging its messages, key changes and the channel's epoch/member events in
 * `window.log`; resolves with how waitUntilReady ended.
 */
function openRoom(who, roomId) {
  return who.page.evaluate(
    async ({ port, key, roomId }) => {
      const { DomViaRealtime, ready } = await import("@domvia/realtime");
      const chat = await import("@domvia/realtime-chat");
      await ready();
      if (window.realtime === undefined) {
        window.realtime = DomViaRealtime.create({
          key,
          host: "127.0.0.1",
          port,
          forceTLS: false,
          authEndpoint: "/realtime/auth",
          clientEvents: true,
        });
      }
      const log = { messages: [], keyChanges: [], events: [] };
      window.log = log;
      const channelName = chat.buildChatChannelName(roomId);
      const room = chat.createChatRoom(window.realtime, { roomId, channelName, encrypted: true });
      window.room = room;
      room.onMessage((message) => log.messages.push(message));
      room.encryption.onKeyChange((event) => log.keyChanges.push(event));
      let timer;
      const limit = new Promise((_, reject) => {
        timer = setTimeout(() => reject(Object.assign(new Error("not ready within 15 s"), { code: "test_timeout" })), 15_000);
      });
      try {
        await Promise.race([room.waitUntilReady(), limit]);
        const channel = window.realtime.channel(channelName);
        for (const name of ["epoch.created", "member.added", "member.removed"]) {
          channel.bind(name, (data) => log.events.push({ name, data }));
        }
        return { ok: true };
      } catch (error) {
        return { ok: false, code: error.code, name: error.name, message: error.message };
      } finally {
        clearTimeout(timer);
      }
    },
    { port: server.port, key: devApp.key, roomId },
  );
}

const snapshot = (who) => who.page.evaluate(() => window.room.getSnapshot());
const logOf = (who) => who.page.evaluate(() => window.log);

/** The texts `who` shows for the stored messages, by client_id. */
async function shownTexts(who) {
  const { messages } = await snapshot(who);
  return messages.filter((message) => message.status === "sent");
}

async function waitForText(who, text, what) {
  return eventually(what, async () => (await shownTexts(who)).find((message) => message.text === text), 15_000);
}

/**
 * For "nothing else arrived" checks: `sender` sends one more message, and
 * each of `receivers` shows it (opened or not, by client_id). A room applies
 * its messages in arrival order, so whatever was sent before it has been
 * applied by then (tests/support/sdk_pages.mjs says why the order holds).
 */
async function sendSentinel(sender, receivers) {
  const sent = await send(sender, secret("sentinel"));
  assert.equal(sent.ok, true, JSON.stringify(sent));
  for (const who of receivers) {
    await eventually(`${who.name} to show the sentinel`, async () =>
      (await snapshot(who)).messages.some((message) => message.client_id === sent.message.client_id), 15_000);
  }
  return sent.message;
}

/** Records every frame the broker sends to a member's socket on the room's private channel. */
async function recordBroker(member, roomId) {
  const client = await connectPusher(server, devApp, member.session);
  pusherClients.push(client);
  client.connection.bind("message", (message) => frames.push(JSON.stringify(message)));
  await subscribed(client, `private-chat.room.${roomId}`);
  return client;
}

/** An encrypted direct room of `a` and `b`; returns its id. */
async function directRoom(a, b) {
  const created = await a.api("POST", "/api/rooms", { kind: "direct", member_ids: [b.user.id], encrypted: true });
  assert.equal(created.status, 201, JSON.stringify(created));
  return created.body.room_id;
}

async function groupRoom(creator, members) {
  const created = await creator.api("POST", "/api/rooms", {
    kind: "group",
    name: "Secret team",
    member_ids: members.map((member) => member.user.id),
    encrypted: true,
  });
  assert.equal(created.status, 201, JSON.stringify(created));
  return created.body.room_id;
}

test("two users exchange encrypted messages: both read the plaintext, the backend stores only ciphertext", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const roomId = await directRoom(ada, bob);
  await recordBroker(ada, roomId);
  assert.deepEqual(await openRoom(ada, roomId), { ok: true });
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });

  const hello = secret("hello Bob, this is secret");
  const sent = await send(ada, hello);
  assert.equal(sent.ok, true, JSON.stringify(sent));
  assert.equal(sent.message.text, hello);
  assert.equal(sent.message.status, "sent");
  assert.equal(typeof sent.message.ciphertext, "object");
  assert.equal(sent.message.ciphertext.message_id, sent.message.client_id, "the envelope's message_id is the client_id");
  assert.equal(sent.message.decryption_error, undefined);

  const atBob = await waitForText(bob, hello, "Bob to read Ada's message");
  assert.equal(atBob.user_id, ada.user.id);
  assert.equal(atBob.decryption_error, undefined);
  await eventually("Bob's onMessage with the plaintext", async () =>
    (await logOf(bob)).messages.some((message) => message.text === hello));

  const reply = secret("hi Ada, also secret");
  const replied = await send(bob, reply);
  assert.equal(replied.ok, true, JSON.stringify(replied));
  await waitForText(ada, reply, "Ada to read Bob's reply");
  // onMessage: Ada's own once stored, then Bob's reply after it was opened.
  assert.deepEqual((await logOf(ada)).messages.map((message) => message.text), [hello, reply]);

  // The backend holds only the envelope: no text, and the plaintext nowhere in its answer.
  const stored = await ada.api("GET", `/api/rooms/${roomId}/messages`);
  assert.equal(stored.status, 200);
  assert.equal(stored.body.messages.length, 2);
  for (const message of stored.body.messages) {
    assert.equal(message.text, undefined);
    assert.equal(typeof message.ciphertext, "object");
  }
  const answer = JSON.stringify(stored.body);
  assert.ok(!answer.includes(hello) && !answer.includes(reply), "the backend's answer has no plaintext");

  // Verification: fingerprints are shown, safety numbers agree on both sides.
  const adaView = await ada.page.evaluate(async (bobId) => ({
    fingerprint: window.room.encryption.fingerprint,
    numbers: await window.room.encryption.safetyNumber(bobId),
  }), bob.user.id);
  const bobView = await bob.page.evaluate(async (adaId) => ({
    fingerprint: window.room.encryption.fingerprint,
    numbers: await window.room.encryption.safetyNumber(adaId),
  }), ada.user.id);
  assert.match(adaView.fingerprint, /^[0-9a-f]{4}( [0-9a-f]{4}){4}$/);
  assert.notEqual(adaView.fingerprint, bobView.fingerprint);
  assert.equal(adaView.numbers.length, 1);
  assert.match(adaView.numbers[0].safety_number, /^\d{5}( \d{5}){5}$/);
  assert.equal(adaView.numbers[0].safety_number, bobView.numbers[0].safety_number);

  // The broker carried the message events, ciphertext only (checked with every frame at the end).
  await eventually("the recorder to see both messages", () =>
    frames.filter((frame) => frame.includes("message.created") && frame.includes(roomId)).length >= 2);
  assert.deepEqual(unexpectedErrors(ada), []);
  assert.deepEqual(unexpectedErrors(bob), []);
});

test("a removed member cannot read what is sent after the removal", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const carol = await openUser("Carol");
  const roomId = await groupRoom(ada, [bob, carol]);
  // A socket Carol subscribes without signing in: the broker cannot tie it
  // to her, so it is not terminated at the removal (as on Pusher).
  await recordBroker(carol, roomId);
  for (const who of [ada, bob, carol]) assert.deepEqual(await openRoom(who, roomId), { ok: true });

  const before = secret("before Carol leaves");
  assert.equal((await send(ada, before)).ok, true);
  await waitForText(carol, before, "Carol to read the message sent while a member");
  await waitForText(bob, before, "Bob to read it");
  const devices = await ada.api("GET", `/api/rooms/${roomId}/devices`);
  const carolDevice = devices.body.find((device) => device.user_id === carol.user.id);
  assert.ok(carolDevice, "Carol's device is listed");
  const epochBefore = (await ada.api("GET", `/api/rooms/${roomId}/epoch`)).body.epoch;

  const removed = await ada.api("DELETE", `/api/rooms/${roomId}/members/${carol.user.id}`);
  assert.equal(removed.body.removed, true);
  await eventually("Ada's page to hear member.removed", async () =>
    (await logOf(ada)).events.some((event) => event.name === "member.removed"));

  const afterText = secret("after Carol left");
  const sent = await send(ada, afterText);
  assert.equal(sent.ok, true, JSON.stringify(sent));
  assert.ok(sent.message.ciphertext.epoch > epochBefore, "the send rotated the epoch");
  await waitForText(bob, afterText, "Bob to read the message after the removal");

  // Carol's page closes the room at once: member.removed names her, and the
  // broker terminates her signed-in socket.
  await eventually("Carol's room to fail", async () => (await snapshot(carol)).status === "error");
  assert.equal((await snapshot(carol)).error.code, "room_access_denied");
  await sendSentinel(ada, [bob]);
  assert.ok(!JSON.stringify([await snapshot(carol), await logOf(carol)]).includes(afterText), "Carol's page never shows the text");
  // Her unsigned socket still gets the event, but only as ciphertext.
  await eventually("Carol's unsigned socket to get the message", async () =>
    frames.some((frame) => frame.includes("message.created") && frame.includes(sent.message.client_id)));
  assert.ok(!frames.some((frame) => frame.includes(afterText)), "no frame carries the text");
  // Nor can her device get a share of the new epoch.
  const share = await carol.api(
    "GET",
    `/api/rooms/${roomId}/epochs/${sent.message.ciphertext.epoch}/shares?device_id=${carolDevice.device_id}`,
  );
  assert.ok(share.status === 403 || share.status === 404, JSON.stringify(share));
  assert.deepEqual(unexpectedErrors(ada), []);
});

test("the backend refuses a message in the epoch from before a removal; the page reseals it in a new epoch the removed member cannot open", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const carol = await openUser("Carol");
  const roomId = await groupRoom(ada, [bob, carol]);
  for (const who of [ada, bob, carol]) assert.deepEqual(await openRoom(who, roomId), { ok: true });

  const before = secret("sealed before Carol's removal");
  const early = await send(ada, before);
  assert.equal(early.ok, true, JSON.stringify(early));
  const oldEpoch = early.message.ciphertext.epoch;
  await waitForText(carol, before, "Carol to read the message sent while a member");
  const devicesBefore = (await ada.api("GET", `/api/rooms/${roomId}/devices`)).body;
  const carolDevice = devicesBefore.find((device) => device.user_id === carol.user.id);
  assert.ok(carolDevice, "Carol's device is listed");

  const removed = await ada.api("DELETE", `/api/rooms/${roomId}/members/${carol.user.id}`);
  assert.equal(removed.body.removed, true);

  // An envelope sealed before the removal, posted afterwards (a client that
  // has not heard of it yet, or does not care): refused, nothing stored.
  const replayed = await ada.api("POST", `/api/rooms/${roomId}/messages`, {
    client_id: "c-sealed-before-the-removal",
    ciphertext: early.message.ciphertext,
  });
  assert.equal(replayed.status, 409, JSON.stringify(replayed.body));
  assert.equal(replayed.body.error.code, "epoch_stale");
  assert.equal(replayed.body.error.current_epoch, oldEpoch);
  assert.equal(replayed.body.error.needs_new_epoch, true);
  // The replay of the stored message itself is still idempotent.
  const again = await ada.api("POST", `/api/rooms/${roomId}/messages`, {
    client_id: early.message.client_id,
    ciphertext: early.message.ciphertext,
  });
  assert.equal(again.status, 200);

  // Ada's page learns of the removal too late: its fresh read of the member
  // devices answers (once) with the list from before the removal, so it seals
  // in the old epoch. The backend refuses it; the page reseals the same
  // client_id in a new epoch and sends again.
  let staleAnswers = 1;
  await ada.page.route(`**/api/rooms/${roomId}/devices`, (route) => {
    if (staleAnswers === 0) return route.continue();
    staleAnswers -= 1;
    return route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify(devicesBefore) });
  });
  const postsOf = await recordPosts(ada.page, `/api/rooms/${roomId}/messages`);
  const afterText = secret("after Carol's removal");
  const sent = await send(ada, afterText);
  assert.equal(sent.ok, true, JSON.stringify(sent));
  const posts = await postsOf();
  assert.equal(staleAnswers, 0, "the page read the stale device list");
  assert.deepEqual(posts.map((post) => post.status), [409, 201]);
  assert.equal(posts[0].answer.error.code, "epoch_stale");
  assert.equal(posts[0].body.ciphertext.epoch, oldEpoch, "the first envelope was sealed in the old epoch");
  assert.equal(posts[1].body.client_id, posts[0].body.client_id, "the same message");
  assert.notDeepEqual(posts[1].body.ciphertext, posts[0].body.ciphertext, "a new envelope");
  const newEpoch = sent.message.ciphertext.epoch;
  assert.ok(newEpoch > oldEpoch, "resealed in a new epoch");
  assert.equal(posts[1].body.ciphertext.epoch, newEpoch);
  await waitForText(bob, afterText, "Bob to read the resealed message");

  // Carol cannot open it: no share of the new epoch for her device, no plaintext anywhere in her page.
  const share = await carol.api("GET", `/api/rooms/${roomId}/epochs/${newEpoch}/shares?device_id=${carolDevice.device_id}`);
  assert.ok(share.status === 403 || share.status === 404, JSON.stringify(share));
  await eventually("Carol's room to fail", async () => (await snapshot(carol)).status === "error");
  assert.equal((await snapshot(carol)).error.code, "room_access_denied");
  const sentinel = await sendSentinel(ada, [bob]);
  const carolView = JSON.stringify([await snapshot(carol), await logOf(carol)]);
  assert.ok(!carolView.includes(afterText), "Carol's page never shows the text");
  const history = (await ada.api("GET", `/api/rooms/${roomId}/messages`)).body.messages;
  assert.deepEqual(history.map((message) => message.client_id), [early.message.client_id, sent.message.client_id, sentinel.client_id]);
  assert.deepEqual(unexpectedErrors(ada), []);
});

test("a reload restores the device and keys from IndexedDB: old messages still decrypt, no new device or epoch", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const roomId = await directRoom(ada, bob);
  assert.deepEqual(await openRoom(ada, roomId), { ok: true });
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });
  const first = secret("before the reload");
  assert.equal((await send(ada, first)).ok, true);
  const mine = secret("Bob's own before the reload");
  assert.equal((await send(bob, mine)).ok, true);
  await waitForText(bob, first, "Bob to read it");
  const fingerprint = await bob.page.evaluate(() => window.room.encryption.fingerprint);
  const devicesBefore = (await bob.api("GET", `/api/users/${bob.user.id}/devices`)).body;
  const epochBefore = (await bob.api("GET", `/api/rooms/${roomId}/epoch`)).body.epoch;
  assert.equal(devicesBefore.length, 1);

  await bob.page.reload();
  await preparePage(bob.page);
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });
  const texts = (await shownTexts(bob)).map((message) => message.text);
  assert.deepEqual(texts, [first, mine], "history (including Bob's own message) decrypts after the reload");
  assert.equal(await bob.page.evaluate(() => window.room.encryption.fingerprint), fingerprint);
  assert.deepEqual(
    (await bob.api("GET", `/api/users/${bob.user.id}/devices`)).body.map((device) => device.device_id),
    devicesBefore.map((device) => device.device_id),
    "the same device, restored",
  );

  const later = secret("after the reload");
  assert.equal((await send(ada, later)).ok, true);
  await waitForText(bob, later, "Bob to read a new message");
  assert.equal((await bob.api("GET", `/api/rooms/${roomId}/epoch`)).body.epoch, epochBefore, "no new epoch was needed");
  assert.deepEqual(unexpectedErrors(bob), []);
});

test("a genuine envelope stored again under another message id (a hostile backend) is refused as e2ee_replay, after a reload too", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const roomId = await directRoom(ada, bob);
  assert.deepEqual(await openRoom(ada, roomId), { ok: true });
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });
  const original = secret("said once");
  const sent = await send(ada, original);
  assert.equal(sent.ok, true);
  await waitForText(bob, original, "Bob to read it");

  // After a reload (nothing in the page's memory), the backend answers the
  // history with the same envelope under a new message id instead of the original.
  const copyId = `m_${randomBytes(16).toString("hex")}`;
  await bob.page.route(`**/api/rooms/${roomId}/messages?*`, async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    body.messages = body.messages.map((message) =>
      message.message_id === sent.message.message_id ? { ...message, message_id: copyId } : message);
    await route.fulfill({ response, json: body });
  });
  await bob.page.reload();
  await preparePage(bob.page);
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });
  const copy = await eventually("the copy to be refused", async () =>
    (await snapshot(bob)).messages.find((message) => message.message_id === copyId && message.decryption_error));
  assert.equal(copy.decryption_error.code, "e2ee_replay");
  assert.ok(!copy.text, "a refused copy shows no text");
  assert.ok(!(await shownTexts(bob)).some((message) => message.text === original));

  // The original, under its own id, still opens.
  await bob.page.unroute(`**/api/rooms/${roomId}/messages?*`);
  await bob.page.reload();
  await preparePage(bob.page);
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });
  await waitForText(bob, original, "Bob to read the original again");
});

test("a member added later reads from their epoch on, not before", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const dave = await openUser("Dave");
  const roomId = await groupRoom(ada, [bob]);
  assert.deepEqual(await openRoom(ada, roomId), { ok: true });
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });
  const early = secret("before Dave joined");
  const earlySent = await send(ada, early);
  assert.equal(earlySent.ok, true);
  await waitForText(bob, early, "Bob to read the early message");

  const added = await ada.api("POST", `/api/rooms/${roomId}/members`, { user_id: dave.user.id });
  assert.equal(added.status, 201);
  assert.deepEqual(await openRoom(dave, roomId), { ok: true });
  await eventually("Ada's page to hear member.added", async () =>
    (await logOf(ada)).events.some((event) => event.name === "member.added"));

  // History from before Dave joined is shown, but cannot be decrypted by him.
  const atDave = (await snapshot(dave)).messages.find((message) => message.client_id === earlySent.message.client_id);
  assert.ok(atDave, "the early message is in Dave's history");
  assert.equal(atDave.text, null);
  assert.equal(typeof atDave.decryption_error.code, "string");

  const welcome = secret("welcome Dave");
  const sent = await send(ada, welcome);
  assert.equal(sent.ok, true, JSON.stringify(sent));
  assert.ok(sent.message.ciphertext.epoch > earlySent.message.ciphertext.epoch);
  await waitForText(dave, welcome, "Dave to read the message sent after he joined");
  await waitForText(bob, welcome, "Bob to read it too");

  const fromDave = secret("thanks, from Dave");
  assert.equal((await send(dave, fromDave)).ok, true);
  await waitForText(ada, fromDave, "Ada to read Dave's message");
  await waitForText(bob, fromDave, "Bob to read Dave's message");
  assert.deepEqual(unexpectedErrors(dave), []);
});

/** Closes `who`'s page (its IndexedDB stays, in the context) and opens a fresh one of the server's origin. */
async function reopenPage(who) {
  await who.page.close();
  who.page = await who.context.newPage();
  who.errors = recordPageErrors(who.page);
  await preparePage(who.page);
}

test("a device that missed an epoch across a later membership change still reads that epoch's messages", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const carol = await openUser("Carol");
  const roomId = await groupRoom(ada, [bob]);
  assert.deepEqual(await openRoom(ada, roomId), { ok: true });
  // Bob's device is registered, then his page closes before any epoch exists.
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });
  await bob.page.close();

  const missed = secret("in the epoch Bob never installed");
  const missedSent = await send(ada, missed);
  assert.equal(missedSent.ok, true, JSON.stringify(missedSent));
  const missedEpoch = missedSent.message.ciphertext.epoch;

  // Carol joins: her device is in the next epoch, not in the one Bob missed.
  assert.equal((await ada.api("POST", `/api/rooms/${roomId}/members`, { user_id: carol.user.id })).status, 201);
  assert.deepEqual(await openRoom(carol, roomId), { ok: true });
  const later = secret("after Carol joined");
  const laterSent = await send(ada, later);
  assert.equal(laterSent.ok, true, JSON.stringify(laterSent));
  assert.ok(laterSent.message.ciphertext.epoch > missedEpoch, "a new epoch for Carol");
  await waitForText(carol, later, "Carol to read the message sent after she joined");
  const missedDevices = (await ada.api("GET", `/api/rooms/${roomId}/epochs/${missedEpoch}/devices`)).body;
  const currentDevices = (await ada.api("GET", `/api/rooms/${roomId}/devices`)).body;
  assert.equal(missedDevices.length + 1, currentDevices.length, "the missed epoch's devices differ from the current ones");

  await reopenPage(bob);
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });
  await waitForText(bob, later, "Bob to read the message of the current epoch");
  await waitForText(bob, missed, "Bob to read the message of the epoch he missed");
  const { messages } = await snapshot(bob);
  assert.deepEqual(messages.filter((message) => message.decryption_error !== undefined), [], "no message failed to open");
  assert.deepEqual(unexpectedErrors(bob), []);
});

test("an epoch whose creator was removed before a device installed it still opens there", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const carol = await openUser("Carol");
  const roomId = await groupRoom(ada, [bob, carol]);
  // Bob's device is registered, then his page closes before any epoch exists.
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });
  await bob.page.close();
  assert.deepEqual(await openRoom(carol, roomId), { ok: true });
  const fromCarol = secret("from Carol before her removal");
  const sent = await send(carol, fromCarol);
  assert.equal(sent.ok, true, JSON.stringify(sent));
  const epoch = sent.message.ciphertext.epoch;

  const removed = await ada.api("DELETE", `/api/rooms/${roomId}/members/${carol.user.id}`);
  assert.equal(removed.body.removed, true);
  const current = (await ada.api("GET", `/api/rooms/${roomId}/devices`)).body;
  assert.ok(!current.some((device) => device.user_id === carol.user.id), "Carol's device is no longer listed");
  const atEpoch = (await ada.api("GET", `/api/rooms/${roomId}/epochs/${epoch}/devices`)).body;
  assert.ok(atEpoch.some((device) => device.user_id === carol.user.id), "the epoch's devices still include its creator's");

  await reopenPage(bob);
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });
  const shown = await waitForText(bob, fromCarol, "Bob to read the message of the removed creator's epoch");
  assert.equal(shown.decryption_error, undefined);
  assert.deepEqual(unexpectedErrors(bob), []);
});

test("a message that failed to open while the backend was unreachable opens after a reconnect", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const roomId = await directRoom(ada, bob);
  assert.deepEqual(await openRoom(ada, roomId), { ok: true });
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });
  // Bob's page cannot reach the backend's key shares for a while.
  const sharesOfRoom = `**/api/rooms/${roomId}/epochs/*/shares*`;
  await bob.page.route(sharesOfRoom, (route) => route.abort("connectionrefused"));
  const text = secret("sent while Bob could not fetch his share");
  const sent = await send(ada, text);
  assert.equal(sent.ok, true, JSON.stringify(sent));
  const failed = await eventually("Bob's page to fail to open it", async () =>
    (await snapshot(bob)).messages.find((message) => message.client_id === sent.message.client_id && message.decryption_error));
  assert.equal(failed.decryption_error.code, "network_error");

  await bob.page.unroute(sharesOfRoom);
  await bob.page.evaluate(async () => {
    window.realtime.connection.disconnect();
    await new Promise((resolve) => setTimeout(resolve, 200));
    window.realtime.connection.connect();
  });
  const shown = await waitForText(bob, text, "Bob to open it after the reconnect");
  assert.equal(shown.decryption_error, undefined);
});

test("a message whose reopening fails for another reason shows the new reason, not the old network_error", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const roomId = await directRoom(ada, bob);
  assert.deepEqual(await openRoom(ada, roomId), { ok: true });
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });
  const sharesOfRoom = `**/api/rooms/${roomId}/epochs/*/shares*`;
  await bob.page.route(sharesOfRoom, (route) => route.abort("connectionrefused"));
  const sent = await send(ada, secret("its share goes missing"));
  assert.equal(sent.ok, true, JSON.stringify(sent));
  const failedFirst = await eventually("Bob's page to fail to open it", async () =>
    (await snapshot(bob)).messages.find((message) => message.client_id === sent.message.client_id && message.decryption_error));
  assert.equal(failedFirst.decryption_error.code, "network_error");

  // Back online, the backend now has no share for Bob's device.
  await bob.page.unroute(sharesOfRoom);
  await bob.page.route(sharesOfRoom, (route) =>
    route.fulfill({ status: 404, json: { error: { code: "share_not_found", message: "no key share for that device and epoch" } } }));
  await bob.page.evaluate(async () => {
    window.realtime.connection.disconnect();
    await new Promise((resolve) => setTimeout(resolve, 200));
    window.realtime.connection.connect();
  });
  const failedAgain = await eventually("Bob's page to show the new reason", async () =>
    (await snapshot(bob)).messages.find((message) =>
      message.client_id === sent.message.client_id && message.decryption_error?.code === "share_not_found"));
  assert.equal(failedAgain.text, null);
});

test("the documented example with encrypted: true runs as written", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const roomId = await directRoom(ada, bob);
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });
  // The docs page's client example, with this server's address: no ready(), no extra encryption call.
  await ada.page.evaluate(async ({ port, key, roomId }) => {
    const { DomViaRealtime } = await import("@domvia/realtime");
    const { buildChatChannelName, createChatRoom } = await import("@domvia/realtime-chat");
    const realtime = DomViaRealtime.create({ key, host: "127.0.0.1", port, forceTLS: false, authEndpoint: "/realtime/auth", clientEvents: true });
    const room = createChatRoom(realtime, { roomId, channelName: buildChatChannelName(roomId), encrypted: true });
    await room.waitUntilReady();
    window.seen = [];
    room.onMessage((event) => window.seen.push(event.text));
    room.sendTyping({ user_id: "user-1" });
    window.room = room;
  }, { port: server.port, key: devApp.key, roomId });
  const text = secret("from the docs, encrypted");
  assert.equal((await send(bob, text)).ok, true);
  await eventually("the example's onMessage with the plaintext", async () =>
    (await ada.page.evaluate(() => window.seen)).includes(text));
  assert.deepEqual(unexpectedErrors(ada), []);
});

test("two tabs of one user share one device and one epoch (Web Locks)", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const roomId = await directRoom(ada, bob);
  const secondPage = await ada.context.newPage();
  await preparePage(secondPage);
  const adaTab2 = { ...ada, page: secondPage, errors: recordPageErrors(secondPage) };
  // Both tabs create the device on first use at the same time: the lock lets one create it.
  const opened = await Promise.all([openRoom(ada, roomId), openRoom(adaTab2, roomId), openRoom(bob, roomId)]);
  assert.deepEqual(opened, [{ ok: true }, { ok: true }, { ok: true }]);
  assert.equal(
    await ada.page.evaluate(() => window.room.encryption.fingerprint),
    await secondPage.evaluate(() => window.room.encryption.fingerprint),
  );
  assert.equal((await ada.api("GET", `/api/users/${ada.user.id}/devices`)).body.length, 1);

  // Both tabs send the first message at once: one creates epoch 1, the other uses it.
  const [one, two] = [secret("from tab one"), secret("from tab two")];
  const results = await Promise.all([send(ada, one), send(adaTab2, two)]);
  assert.deepEqual(results.map((result) => result.ok), [true, true], JSON.stringify(results));
  assert.deepEqual(results.map((result) => result.message.ciphertext.epoch), [1, 1]);
  await waitForText(bob, one, "Bob to read tab one");
  await waitForText(bob, two, "Bob to read tab two");
  await waitForText(ada, two, "tab one to read tab two");
  assert.equal((await ada.api("GET", `/api/rooms/${roomId}/epoch`)).body.epoch, 1);
  assert.deepEqual(unexpectedErrors(adaTab2), []);
});

test("without Web Locks (some web views) a page falls back to its in-page mutex: concurrent first sends share one device and one epoch, and a reload reads them", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  // Hide navigator.locks from every new document of Ada's context, then load the page again.
  await ada.context.addInitScript(() => {
    Object.defineProperty(Navigator.prototype, "locks", { get: () => undefined, configurable: true });
  });
  await preparePage(ada.page);
  assert.equal(await ada.page.evaluate(() => navigator.locks), undefined);
  const roomId = await directRoom(ada, bob);
  assert.deepEqual(await openRoom(ada, roomId), { ok: true });
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });

  // Three sends at once, before any epoch exists: one creates epoch 1, the others wait for it and use it.
  const texts = [secret("no locks one"), secret("no locks two"), secret("no locks three")];
  const results = await ada.page.evaluate((texts) => Promise.all(texts.map((text) =>
    window.room.sendMessage({ text }).then(
      (message) => ({ ok: true, epoch: message.ciphertext.epoch }),
      (error) => ({ ok: false, code: error.code, message: error.message }),
    ))), texts);
  assert.deepEqual(results, texts.map(() => ({ ok: true, epoch: 1 })), JSON.stringify(results));
  for (const text of texts) await waitForText(bob, text, `Bob to read "${text}"`);
  assert.equal((await ada.api("GET", `/api/rooms/${roomId}/epoch`)).body.epoch, 1);
  assert.equal((await ada.api("GET", `/api/users/${ada.user.id}/devices`)).body.length, 1);
  // The page's state was stored: a reload (still without locks) reads everything again.
  await preparePage(ada.page);
  assert.deepEqual(await openRoom(ada, roomId), { ok: true });
  for (const text of texts) await waitForText(ada, text, `Ada to read "${text}" after the reload`);
  assert.equal((await ada.api("GET", `/api/users/${ada.user.id}/devices`)).body.length, 1);
  assert.deepEqual(unexpectedErrors(ada), []);
});

test("without @domvia/realtime-e2ee the encrypted room fails with encryption_unavailable; plaintext rooms never load it", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const plainRoom = await ada.api("POST", "/api/rooms", { kind: "direct", member_ids: [bob.user.id] });
  const sealedRoom = await ada.api("POST", "/api/rooms", { kind: "direct", member_ids: [bob.user.id], encrypted: true });
  const page = await ada.context.newPage();
  const requested = [];
  page.on("request", (request) => requested.push(request.url()));
  // An app that never mapped (installed) the package.
  const { "@domvia/realtime-e2ee": _omitted, ...withoutE2ee } = SDK_IMPORTS;
  await prepareSdkPage(page, server.url, withoutE2ee);
  const outcome = await page.evaluate(async ({ port, key, plainId, sealedId }) => {
    const { DomViaRealtime } = await import("@domvia/realtime");
    const { buildChatChannelName, createChatRoom } = await import("@domvia/realtime-chat");
    const realtime = DomViaRealtime.create({ key, host: "127.0.0.1", port, forceTLS: false, authEndpoint: "/realtime/auth" });
    const plain = createChatRoom(realtime, { roomId: plainId, channelName: buildChatChannelName(plainId) });
    await plain.waitUntilReady();
    plain.leave();
    const room = createChatRoom(realtime, { roomId: sealedId, channelName: buildChatChannelName(sealedId), encrypted: true });
    return room.waitUntilReady().then(
      () => ({ ok: true }),
      (error) => ({ ok: false, code: error.code, status: room.getSnapshot().status }),
    );
  }, { port: server.port, key: devApp.key, plainId: plainRoom.body.room_id, sealedId: sealedRoom.body.room_id });
  assert.deepEqual(outcome, { ok: false, code: "encryption_unavailable", status: "error" });
  assert.ok(!requested.some((url) => url.includes("/sdk/realtime-e2ee/")), "the e2ee package was never fetched");
});

test("a room opens only as the backend keeps it: the wrong `encrypted` fails with room_encryption_mismatch, and the backend refuses text in an encrypted room", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const plainRoom = (await ada.api("POST", "/api/rooms", { kind: "direct", member_ids: [bob.user.id] })).body;
  const sealedRoom = (await ada.api("POST", "/api/rooms", { kind: "direct", member_ids: [bob.user.id], encrypted: true })).body;
  assert.deepEqual([plainRoom.encrypted, sealedRoom.encrypted], [false, true]);
  assert.notEqual(plainRoom.room_id, sealedRoom.room_id, "a pair has one room of each kind");

  const outcomes = await ada.page.evaluate(async ({ port, key, plainId, sealedId }) => {
    const { DomViaRealtime } = await import("@domvia/realtime");
    const { buildChatChannelName, createChatRoom } = await import("@domvia/realtime-chat");
    const realtime = DomViaRealtime.create({ key, host: "127.0.0.1", port, forceTLS: false, authEndpoint: "/realtime/auth" });
    const open = (roomId, encrypted) => {
      const room = createChatRoom(realtime, { roomId, channelName: buildChatChannelName(roomId), encrypted });
      return room.waitUntilReady().then(
        () => ({ ok: true }),
        (error) => ({ ok: false, code: error.code, status: room.getSnapshot().status, message: error.message }),
      ).finally(() => room.leave());
    };
    const result = [await open(sealedId, false), await open(plainId, true)];
    realtime.dispose();
    return result;
  }, { port: server.port, key: devApp.key, plainId: plainRoom.room_id, sealedId: sealedRoom.room_id });
  assert.deepEqual(outcomes.map(({ message: _message, ...rest }) => rest), [
    { ok: false, code: "room_encryption_mismatch", status: "error" },
    { ok: false, code: "room_encryption_mismatch", status: "error" },
  ]);
  assert.match(outcomes[0].message, /open it with `encrypted: true`/);

  // A client that forgot to encrypt cannot put text in clear into the encrypted room.
  const leaked = secret("this must never be stored in clear");
  const refused = await ada.api("POST", `/api/rooms/${sealedRoom.room_id}/messages`, { client_id: "c-clear", text: leaked });
  assert.equal(refused.status, 400);
  assert.equal(refused.body.error.code, "encryption_required");
  const refusedCiphertext = await ada.api("POST", `/api/rooms/${plainRoom.room_id}/messages`, { client_id: "c-sealed", ciphertext: { epoch: 1 } });
  assert.equal(refusedCiphertext.body.error.code, "room_not_encrypted");
  assert.equal((await ada.api("GET", `/api/rooms/${sealedRoom.room_id}/messages`)).body.messages.length, 0);
  assert.deepEqual(unexpectedErrors(ada), []);
});

test("a send retried after a server error re-posts the same envelope and arrives once", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const roomId = await directRoom(ada, bob);
  assert.deepEqual(await openRoom(ada, roomId), { ok: true });
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });
  // The first attempt "fails" after the server stored it: the retry must carry the same content.
  const postsOf = await recordPosts(ada.page, `/api/rooms/${roomId}/messages`, { failFirst: 1 });
  const text = secret("retried but once");
  const sent = await send(ada, text);
  assert.equal(sent.ok, true, JSON.stringify(sent));
  const bodies = (await postsOf()).map((post) => post.body);
  assert.equal(bodies.length, 2);
  assert.deepEqual(bodies[1], bodies[0], "the same client_id and envelope on the retry");
  assert.equal(bodies[0].text, undefined);
  await waitForText(bob, text, "Bob to read it");
  await sendSentinel(ada, [bob]);
  assert.equal((await shownTexts(bob)).filter((message) => message.text === text).length, 1);
  assert.equal((await ada.api("GET", `/api/rooms/${roomId}/messages`)).body.messages.length, 2);
});

test("a known device with new keys: onKeyChange, sends fail with e2ee_device_key_changed until accepted", async () => {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const roomId = await directRoom(ada, bob);
  assert.deepEqual(await openRoom(ada, roomId), { ok: true });
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });
  assert.equal((await send(ada, secret("pinned Bob's keys"))).ok, true);
  const [bobDevice] = (await bob.api("GET", `/api/users/${bob.user.id}/devices`)).body;

  // Bob's device id re-registered with other keys (what a server swapping keys would do).
  const status = await bob.page.evaluate(async ({ userId, deviceId }) => {
    // The room's package already loaded its E2EE wasm module: the same glue instance.
    const { E2eeDevice } = await import("/sdk/realtime-e2ee/wasm/domvia_e2ee.js");
    const other = E2eeDevice.generate(userId, deviceId);
    const response = await fetch(`/api/devices/${deviceId}`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ record: other.record() }),
    });
    other.free();
    return response.status;
  }, { userId: bob.user.id, deviceId: bobDevice.device_id });
  assert.equal(status, 200);

  // A fresh room object fetches the member devices before its first send.
  await ada.page.evaluate(() => window.room.leave());
  assert.deepEqual(await openRoom(ada, roomId), { ok: true });
  const refused = await send(ada, secret("not to the new keys"));
  assert.equal(refused.ok, false);
  assert.equal(refused.code, "e2ee_device_key_changed");
  assert.deepEqual((await logOf(ada)).keyChanges, [{ user_id: bob.user.id, device_id: bobDevice.device_id }]);

  const retried = await ada.page.evaluate(async ({ userId, deviceId }) => {
    await window.room.encryption.acceptDeviceChange(userId, deviceId);
    const failed = window.room.getSnapshot().messages.at(-1);
    const message = await window.room.retry(failed.client_id);
    return { status: message.status, epoch: message.ciphertext.epoch };
  }, { userId: bob.user.id, deviceId: bobDevice.device_id });
  assert.deepEqual(retried, { status: "sent", epoch: 2 }, "accepted: a new epoch for the new keys");
});

test("the database file and the broker's frames never contain a plaintext", async () => {
  assert.ok(plaintexts.length >= 8);
  assert.ok(frames.length > 0, "the recorders saw frames");
  const traffic = frames.join("\n");
  for (const text of plaintexts) assert.ok(!traffic.includes(text), `the broker carried "${text}"`);
  assert.ok(traffic.includes("ciphertext"), "the broker carried the envelopes");

  // Stopping the server checkpoints the WAL into the main file; read whatever exists of both.
  assert.equal(await server.stop(), 0);
  const bytes = [];
  for (const file of [dbFile, `${dbFile}-wal`]) {
    const content = await readFile(file).catch(() => undefined);
    if (content !== undefined) bytes.push(content);
  }
  const database = Buffer.concat(bytes);
  assert.ok(database.length > 0);
  assert.ok(database.includes("ciphertext") || database.includes("\"nonce\""), "the envelopes are stored");
  for (const text of plaintexts) assert.ok(!database.includes(text), `the database file holds "${text}"`);
});
