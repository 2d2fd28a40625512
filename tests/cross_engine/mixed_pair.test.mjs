// A Chromium user and a Firefox user in the same rooms, against the real
// embedded server: what one engine's SDK writes (frames, HTTP bodies, E2EE
// device records, epochs and envelopes sealed by its wasm and stored in its
// IndexedDB) the other engine's SDK reads. Runs once (it needs both engines),
// after the per-engine runs of tests/browser/.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { launchBrowser, startServer } from "../support/harness.mjs";
import { eventually } from "../support/chat.mjs";
import {
  openChatRoom,
  openSdkUser,
  postSentinel,
  prepareSdkPage,
  sendInRoom as send,
  sentinelHeard,
  unexpectedErrors,
} from "../support/sdk_pages.mjs";

let dataDir;
let dbFile;
let server;
const browsers = {};
const contexts = [];

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "domvia-cross-engine-"));
  dbFile = join(dataDir, "cross.sqlite");
  server = await startServer({ DOMVIA_DB: dbFile });
  browsers.chromium = await launchBrowser("chromium");
  browsers.firefox = await launchBrowser("firefox");
});

after(async () => {
  for (const context of contexts) await context.close().catch(() => {});
  for (const browser of Object.values(browsers)) await browser.close();
  await server?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

/** A fresh user signed in through a page of `engine`. */
async function openUser(engine, label) {
  const user = await openSdkUser(browsers[engine], contexts, server.url, label);
  const userAgent = await user.page.evaluate(() => navigator.userAgent);
  assert.match(userAgent, engine === "firefox" ? /Firefox\// : /Chrome\//, `${label} runs in ${engine}`);
  return user;
}

async function createRoom(a, b, encrypted) {
  const created = await a.api("POST", "/api/rooms", { kind: "direct", member_ids: [b.user.id], encrypted });
  assert.equal(created.status, 201, JSON.stringify(created));
  return created.body.room_id;
}

const openRoom = (who, roomId, options) => openChatRoom(who, server.port, roomId, options);
const snapshot = (who) => who.page.evaluate(() => window.room.getSnapshot());
const logOf = (who) => who.page.evaluate(() => window.log);

/** The texts of `who`'s onMessage calls, in the order they fired. */
const heard = async (who) => (await logOf(who)).messages.map((message) => message.text);

test("plain room: messages both ways exactly once and in order, typing, read receipts and presence across engines", async () => {
  const ada = await openUser("chromium", "Ada");
  const bob = await openUser("firefox", "Bob");
  const roomId = await createRoom(ada, bob, false);
  assert.deepEqual(await openRoom(ada, roomId), { ok: true });
  assert.deepEqual(await openRoom(bob, roomId), { ok: true });
  await eventually("each to see both online", async () =>
    (await snapshot(ada)).members.length === 2 && (await snapshot(bob)).members.length === 2);

  // Five each, concurrently from both sides.
  const fromAda = ["a1", "a2", "a3", "a4", "a5"];
  const fromBob = ["b1", "b2", "b3", "b4", "b5"];
  const results = await Promise.all([
    ada.page.evaluate((texts) => Promise.all(texts.map((text) => window.room.sendMessage({ text }))), fromAda),
    bob.page.evaluate((texts) => Promise.all(texts.map((text) => window.room.sendMessage({ text }))), fromBob),
  ]);
  assert.ok(results.flat().every((message) => message.status === "sent"));
  const stored = (await ada.api("GET", `/api/rooms/${roomId}/messages`)).body.messages;
  assert.equal(stored.length, 10);
  for (const who of [ada, bob]) {
    await eventually(`${who.name} to hold all ten`, async () =>
      (await snapshot(who)).messages.filter((message) => message.status === "sent").length === 10);
  }
  // A sentinel after the ten: once heard, no late duplicate can still be on its way.
  const sentinel = await postSentinel(ada, roomId);
  const inSeqOrder = [...stored.sort((a, b) => a.seq - b.seq), sentinel].map((message) => message.text);
  for (const who of [ada, bob]) {
    await sentinelHeard(who, sentinel);
    const shown = (await snapshot(who)).messages.map((message) => message.text);
    assert.deepEqual(shown, inSeqOrder, `${who.name} shows every message once, in seq order`);
    const once = await heard(who);
    assert.deepEqual([...once].sort(), [...inSeqOrder].sort(), `${who.name}'s onMessage fired once per message`);
  }

  // Typing from each engine reaches the other, stamped with the sender's id.
  const typingAt = (who) => who.page.evaluate(() => window.room.getSnapshot().typingUserIds);
  await ada.page.evaluate(() => window.room.sendTyping());
  await eventually("Bob (Firefox) to see Ada typing", async () => (await typingAt(bob)).includes(ada.user.id));
  await bob.page.evaluate(() => window.room.sendTyping());
  await eventually("Ada (Chromium) to see Bob typing", async () => (await typingAt(ada)).includes(bob.user.id));

  // Read receipts both ways.
  const last = stored.at(-1);
  await bob.page.evaluate((messageId) => window.room.markRead(messageId), last.message_id);
  await eventually("Ada to get Bob's receipt", async () =>
    (await logOf(ada)).receipts.some((receipt) => receipt.user_id === bob.user.id && receipt.seq === last.seq));
  await ada.page.evaluate((messageId) => window.room.markRead(messageId), last.message_id);
  await eventually("Bob to get Ada's receipt", async () =>
    (await logOf(bob)).receipts.some((receipt) => receipt.user_id === ada.user.id && receipt.seq === last.seq));

  // Presence: Bob leaves, Ada sees it.
  await bob.page.evaluate(() => window.room.leave());
  await eventually("Ada to see Bob leave", async () => (await snapshot(ada)).members.length === 1);
  assert.deepEqual((await logOf(ada)).presence.at(-1), { type: "left", user_id: bob.user.id, name: bob.name });
  assert.deepEqual(unexpectedErrors(ada), []);
  assert.deepEqual(unexpectedErrors(bob), []);
});

test("encrypted room: each engine opens what the other sealed, safety numbers match, and each reload restores its own keys", async () => {
  const ada = await openUser("chromium", "Ada");
  const bob = await openUser("firefox", "Bob");
  const roomId = await createRoom(ada, bob, true);
  assert.deepEqual(await openRoom(bob, roomId, { encrypted: true }), { ok: true });
  assert.deepEqual(await openRoom(ada, roomId, { encrypted: true }), { ok: true });

  // Firefox creates the first epoch (wrapping its secret for Ada's Chromium device) and seals the first message.
  const fromBob = `from Firefox ${randomBytes(8).toString("hex")}`;
  const bobSent = await send(bob, fromBob);
  assert.equal(bobSent.ok, true, JSON.stringify(bobSent));
  const epoch = bobSent.message.ciphertext.epoch;
  const fromAda = `from Chromium ${randomBytes(8).toString("hex")}`;
  await eventually("Ada (Chromium) to open Bob's envelope", async () => (await heard(ada)).includes(fromBob), 15_000);
  const adaSent = await send(ada, fromAda);
  assert.equal(adaSent.ok, true, JSON.stringify(adaSent));
  assert.equal(adaSent.message.ciphertext.epoch, epoch, "Chromium seals in the epoch Firefox created");
  await eventually("Bob (Firefox) to open Ada's envelope", async () => (await heard(bob)).includes(fromAda), 15_000);

  // Servers hold ciphertext only.
  const database = await readFile(dbFile);
  assert.ok(!database.includes(fromBob) && !database.includes(fromAda), "no plaintext in the database file");

  // Both engines compute the same safety number for the pair, and each shows its own fingerprint.
  const verification = (who, peerId) => who.page.evaluate(async (peerId) => ({
    fingerprint: window.room.encryption.fingerprint,
    numbers: await window.room.encryption.safetyNumber(peerId),
  }), peerId);
  const adaView = await verification(ada, bob.user.id);
  const bobView = await verification(bob, ada.user.id);
  assert.notEqual(adaView.fingerprint, bobView.fingerprint);
  assert.equal(adaView.numbers.length, 1);
  assert.match(adaView.numbers[0].safety_number, /^\d{5}( \d{5}){5}$/);
  assert.equal(adaView.numbers[0].safety_number, bobView.numbers[0].safety_number);

  // A reload in each engine: the device keys come back from that engine's
  // IndexedDB (same fingerprint), and both messages open again.
  for (const [who, peer] of [[ada, bob], [bob, ada]]) {
    await who.page.reload();
    await prepareSdkPage(who.page, server.url);
    assert.deepEqual(await openRoom(who, roomId, { encrypted: true }), { ok: true });
    const reloaded = await verification(who, peer.user.id);
    assert.equal(reloaded.fingerprint, (who === ada ? adaView : bobView).fingerprint, `${who.name}'s device survived the reload`);
    await eventually(`${who.name} to reopen both messages after the reload`, async () => {
      const texts = (await snapshot(who)).messages.map((message) => message.text);
      return texts.includes(fromAda) && texts.includes(fromBob);
    }, 15_000);
  }

  // And a new message after both reloads still crosses.
  const afterReload = `after the reloads ${randomBytes(8).toString("hex")}`;
  assert.equal((await send(bob, afterReload)).ok, true);
  await eventually("Ada to open the message sent after the reloads", async () => (await heard(ada)).includes(afterReload), 15_000);
  assert.deepEqual(unexpectedErrors(ada), []);
  assert.deepEqual(unexpectedErrors(bob), []);
});
