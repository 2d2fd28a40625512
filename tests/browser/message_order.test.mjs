// onMessage reports strictly in seq order, each message once, under concurrent
// sends: the broker delivers message.created events in the order the
// backend's requests finish, not in seq order (observed: 1,2,3,5,4,...), and
// the room holds a message that arrives ahead of a hole until the hole fills.
// Real pages, the real embedded server, plaintext and encrypted rooms.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { launchBrowser, startServer } from "../support/harness.mjs";
import { eventually } from "../support/chat.mjs";
import { openChatRoom, openSdkUser } from "../support/sdk_pages.mjs";

const SENDS = 40;

let server;
let browser;
const contexts = [];

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  for (const context of contexts) await context.close().catch(() => {});
  await browser?.close();
  await server?.stop();
});

const openUser = (label) => openSdkUser(browser, contexts, server.url, label);
const seqsOf = async (who) => (await who.page.evaluate(() => window.log.messages)).map((message) => message.seq);

/** Sends `count` messages at once from `who`'s page; resolves when all are stored. */
function sendAtOnce(who, label, count) {
  return who.page.evaluate(
    async ({ label, count }) => {
      const sends = Array.from({ length: count }, (_, i) => window.room.sendMessage({ text: `${label} ${i}` }));
      return (await Promise.all(sends)).map((message) => message.status);
    },
    { label, count },
  );
}

async function concurrentSendsArriveInOrder(encrypted) {
  const ada = await openUser("Ada");
  const bob = await openUser("Bob");
  const created = await ada.api("POST", "/api/rooms", {
    kind: "group",
    name: "order",
    member_ids: [bob.user.id],
    ...(encrypted ? { encrypted: true } : {}),
  });
  assert.ok(created.status === 200 || created.status === 201, JSON.stringify(created));
  const roomId = created.body.room_id;
  const options = encrypted ? { encrypted: true } : {};
  assert.deepEqual(await openChatRoom(ada, server.port, roomId, options), { ok: true });
  assert.deepEqual(await openChatRoom(bob, server.port, roomId, options), { ok: true });

  // Both send at once: each side sees its own and the other's messages interleave.
  const [adaStatuses, bobStatuses] = await Promise.all([
    sendAtOnce(ada, "ada", SENDS / 2),
    sendAtOnce(bob, "bob", SENDS / 2),
  ]);
  assert.deepEqual([...adaStatuses, ...bobStatuses], Array(SENDS).fill("sent"));

  const all = Array.from({ length: SENDS }, (_, i) => i + 1);
  for (const who of [ada, bob]) {
    await eventually("every message reported", async () => (await seqsOf(who)).length >= SENDS);
    assert.deepEqual(await seqsOf(who), all, "onMessage: each seq once, ascending");
    const shown = await who.page.evaluate(() => window.room.getSnapshot().messages.map((m) => [m.seq, m.text !== null]));
    assert.deepEqual(shown, all.map((seq) => [seq, true]), "the view: each seq once, with its text");
  }
}

test(`${SENDS} concurrent sends from two users: onMessage reports every seq once, in order, on both sides`, async () => {
  await concurrentSendsArriveInOrder(false);
});

test(`${SENDS} concurrent sends in an end-to-end encrypted room: in order once opened, on both sides`, async () => {
  await concurrentSendsArriveInOrder(true);
});
