// The same end-to-end chat suite on every broker setup the README's
// compatibility table lists: the embedded broker, sockudo 5.2 on one node,
// and sockudo on three nodes over Redis (the two users' browsers on
// different nodes, the backend publishing to the third). In each, the
// reference backend runs in backend-only mode (domvia-server --broker)
// publishing through a proxy that can answer 429 like a rate-limiting broker.
// Real pages (the release build), real WebSockets, real SQLite.
//
// DOMVIA_BROKERS=embedded,sockudo picks setups (default: all three).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createRealtimeClient } from "../../packages/realtime-server/dist/index.js";
import { eventually } from "../support/chat.mjs";
import { BROKER_SETUPS, startBrokerSetup } from "../support/brokers.mjs";
import { devApp, launchBrowser } from "../support/harness.mjs";
import { openChatRoom, openSdkUser, sendInRoom, unexpectedErrors } from "../support/sdk_pages.mjs";

const SETUPS = process.env.DOMVIA_BROKERS ? process.env.DOMVIA_BROKERS.split(",") : BROKER_SETUPS;
const SENDS = 40;
/** A restarted node is back within this; the clients' backoff is at most 30 s. */
const RECONNECT_LIMIT_MS = 45_000;

/** Whether the setup's broker stamps `user_id` on presence-channel client events. */
const STAMPS_CLIENT_EVENTS = { embedded: true, sockudo: false, "sockudo-cluster": false };

for (const setup of SETUPS) {
  describe(`chat on ${setup}`, () => {
    let deployment;
    let browser;
    const contexts = [];

    before(async () => {
      deployment = await startBrokerSetup(setup);
      browser = await launchBrowser();
    });

    after(async () => {
      for (const context of contexts) await context.close().catch(() => {});
      await browser?.close();
      await deployment?.stop();
    });

    /** Two users on (in the cluster) different nodes, and a group room of both. */
    async function pair(options = {}) {
      const ada = await openSdkUser(browser, contexts, deployment.url, "Ada");
      const bob = await openSdkUser(browser, contexts, deployment.url, "Bob");
      ada.port = deployment.userPort(0);
      bob.port = deployment.userPort(1);
      const created = await ada.api("POST", "/api/rooms", {
        kind: "group",
        name: `on ${setup}`,
        member_ids: [bob.user.id],
        ...(options.encrypted ? { encrypted: true } : {}),
      });
      assert.equal(created.status, 201, JSON.stringify(created));
      const roomId = created.body.room_id;
      for (const who of [ada, bob]) {
        assert.deepEqual(await openChatRoom(who, who.port, roomId, options), { ok: true }, `${who.name} opens the room`);
      }
      return { ada, bob, roomId };
    }

    const logOf = (who) => who.page.evaluate(() => window.log);
    const seqsOf = async (who) => (await logOf(who)).messages.map((message) => message.seq);

    /** Sends `count` messages at once from `who`'s page; resolves with their delivery states. */
    const sendAtOnce = (who, label, count) =>
      who.page.evaluate(
        async ({ label, count }) => {
          const sends = Array.from({ length: count }, (_, i) => window.room.sendMessage({ text: `${label} ${i}` }));
          return (await Promise.all(sends)).map((message) => message.status);
        },
        { label, count },
      );

    /** Both users send SENDS/2 at once; each side's onMessage reports 1..SENDS once, in order. */
    async function concurrentSendsArriveInOrder(ada, bob, firstSeq = 1) {
      const [fromAda, fromBob] = await Promise.all([sendAtOnce(ada, "ada", SENDS / 2), sendAtOnce(bob, "bob", SENDS / 2)]);
      assert.deepEqual([...fromAda, ...fromBob], Array(SENDS).fill("sent"));
      const expected = Array.from({ length: SENDS }, (_, i) => firstSeq + i);
      for (const who of [ada, bob]) {
        await eventually(`${who.name} to hear all ${SENDS}`, async () => (await seqsOf(who)).length >= SENDS, 30_000);
        assert.deepEqual(await seqsOf(who), expected, `${who.name}: each seq once, ascending`);
        const shown = await who.page.evaluate(() => window.room.getSnapshot().messages.map((m) => [m.seq, m.text !== null]));
        assert.deepEqual(shown, expected.map((seq) => [seq, true]), `${who.name}'s view: each message once, readable`);
      }
    }

    test("members connect and subscribe through /realtime/auth (private and presence); a non-member is refused", async () => {
      const { ada, roomId } = await pair({ presence: true });
      const states = await ada.page.evaluate(() => window.states.map((change) => change.current));
      assert.ok(states.includes("connected"), JSON.stringify(states));
      const carol = await openSdkUser(browser, contexts, deployment.url, "Carol");
      const refused = await openChatRoom(carol, deployment.userPort(0), roomId, { presence: true });
      assert.equal(refused.ok, false);
      assert.equal(refused.code, "room_access_denied", JSON.stringify(refused));
      assert.deepEqual(unexpectedErrors(ada), []);
    });

    test(`messages both ways: ${SENDS} concurrent sends, each reported once and in order on both sides`, async () => {
      const { ada, bob } = await pair();
      await concurrentSendsArriveInOrder(ada, bob);
    });

    test("typing on a presence room arrives; verified exactly when the broker stamps the sender", async () => {
      const { ada, bob } = await pair({ presence: true });
      await ada.page.evaluate(() => window.room.sendTyping());
      const typing = await eventually("Bob to see Ada typing", async () => (await logOf(bob)).typing.find((t) => t.is_typing));
      assert.equal(typing.user_id, ada.user.id);
      assert.equal(typing.verified, STAMPS_CLIENT_EVENTS[setup], JSON.stringify(typing));
      assert.deepEqual(await bob.page.evaluate(() => window.room.getSnapshot().typingUserIds), [ada.user.id]);
    });

    test("presence: a member joining and leaving is seen by the other", async () => {
      const { ada, bob } = await pair({ presence: true });
      await eventually("Ada to see Bob online", async () =>
        (await logOf(ada)).presence.some((e) => e.type === "joined" && e.user_id === bob.user.id) ||
        (await ada.page.evaluate(() => window.room.getSnapshot().members.map((m) => m.user_id))).includes(bob.user.id),
      );
      await bob.page.evaluate(() => window.room.leave());
      const left = await eventually("Ada to see Bob leave", async () =>
        (await logOf(ada)).presence.find((e) => e.type === "left" && e.user_id === bob.user.id),
      );
      assert.equal(left.user_id, bob.user.id);
    });

    test("read receipts: the reader's position reaches the sender", async () => {
      const { ada, bob } = await pair();
      const sent = await sendInRoom(ada, "read me");
      assert.equal(sent.ok, true, JSON.stringify(sent));
      await eventually("Bob to get the message", async () => (await seqsOf(bob)).includes(1));
      await bob.page.evaluate((id) => window.room.markRead(id), sent.message.message_id);
      const receipt = await eventually("Ada to get Bob's receipt", async () =>
        (await logOf(ada)).receipts.find((r) => r.user_id === bob.user.id),
      );
      assert.deepEqual(receipt, { user_id: bob.user.id, message_id: sent.message.message_id, seq: 1 });
    });

    test(`a broker that answers 429 to every second publish: an encrypted room still gets all ${SENDS} messages, once, in order`, async () => {
      const { ada, bob } = await pair({ encrypted: true });
      const refusedBefore = deployment.proxy.refused();
      deployment.proxy.rateLimitEverySecond(true);
      try {
        await concurrentSendsArriveInOrder(ada, bob);
      } finally {
        deployment.proxy.rateLimitEverySecond(false);
      }
      assert.ok(deployment.proxy.refused() > refusedBefore, "the proxy refused some publishes");
    });

    test("a publish the broker accepted and lost: a quiet room still shows the message within tailCheckMs", async () => {
      const tailCheckMs = 2_000;
      const { ada, bob } = await pair({ tailCheckMs });
      const first = await sendInRoom(bob, "heard");
      assert.equal(first.ok, true, JSON.stringify(first));
      await eventually("Ada to hear the first message", async () => (await seqsOf(ada)).includes(1));
      deployment.proxy.dropNextPublish();
      const sentAt = Date.now();
      const lost = await sendInRoom(bob, "accepted, then lost by the broker");
      assert.equal(lost.ok, true, JSON.stringify(lost));
      // Nothing else happens in the room: only the tail check can find it.
      await eventually("Ada to fetch the lost message", async () => (await seqsOf(ada)).includes(2), 3 * tailCheckMs);
      const delay = Date.now() - sentAt;
      assert.deepEqual(await seqsOf(ada), [1, 2]);
      // The bound is tailCheckMs after the last message heard, plus one request.
      assert.ok(delay <= tailCheckMs + 1_500, `shown after ${delay} ms`);
    });

    test("a removed member loses the room at once: room_access_denied, their socket closed and reopened, out of presence, no later message", async () => {
      const { ada, bob, roomId } = await pair();
      const statesBefore = await bob.page.evaluate(() => window.states.length);
      const removed = await ada.api("DELETE", `/api/rooms/${roomId}/members/${bob.user.id}`);
      assert.equal(removed.status, 200, JSON.stringify(removed));
      await eventually("Bob's room to fail", async () => (await bob.page.evaluate(() => window.room.getSnapshot().status)) === "error");
      assert.equal(await bob.page.evaluate(() => window.room.getSnapshot().error.code), "room_access_denied");
      // The broker closed his signed-in socket (4009) and the SDK came back:
      // every channel is authorized again, and this room's are refused.
      await eventually(
        "Bob's connection to be terminated and come back",
        async () => {
          const states = (await bob.page.evaluate(() => window.states)).slice(statesBefore).map((change) => change.current);
          return states.includes("connecting") && states.at(-1) === "connected";
        },
        RECONNECT_LIMIT_MS,
      );
      // The broker no longer lists him in the room's presence channel.
      const rest = createRealtimeClient({ appId: devApp.id, key: devApp.key, secret: devApp.secret, host: "127.0.0.1", port: bob.port, useTLS: false });
      const presence = `presence-chat.room.${roomId}`;
      await eventually("Bob to leave presence", async () => !(await rest.users(presence)).users.some((user) => user.id === bob.user.id));
      const after = await sendInRoom(ada, "after Bob left");
      assert.equal(after.ok, true, JSON.stringify(after));
      const seq = after.message.seq;
      await eventually("Ada's message to be stored", async () => (await seqsOf(ada)).includes(seq));
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.ok(!(await seqsOf(bob)).includes(seq), "Bob got a message after his removal");
    });

    test("a broker node restarts: its clients reconnect and catch up, nothing lost or duplicated", async () => {
      const { ada, bob } = await pair();
      const first = await sendInRoom(bob, "before the restart");
      assert.equal(first.ok, true, JSON.stringify(first));
      await eventually("Ada to hear the first message", async () => (await seqsOf(ada)).includes(1));
      // Ada's node goes down (sockudo: killed, no close frame; the embedded
      // broker: stopped, closing with 4200); Bob sends meanwhile.
      const statesBefore = await ada.page.evaluate(() => window.states.length);
      const node = deployment.nodes.find((candidate) => candidate.port === ada.port);
      const restarted = node.restart();
      // Bob sends only once Ada has seen her node go: the embedded broker
      // shuts down gracefully, and sends that beat the shutdown would reach
      // Ada live and prove nothing about catching up.
      await eventually(
        "Ada to see her node go down",
        async () => (await ada.page.evaluate(() => window.states.length)) > statesBefore,
        RECONNECT_LIMIT_MS,
      );
      for (let i = 0; i < 5; i++) {
        const sent = await sendInRoom(bob, `during the restart ${i}`);
        assert.equal(sent.ok, true, JSON.stringify(sent));
      }
      await restarted;
      await eventually(
        "Ada to reconnect and catch up",
        async () => (await seqsOf(ada)).length >= 6,
        RECONNECT_LIMIT_MS,
      );
      assert.deepEqual(await seqsOf(ada), [1, 2, 3, 4, 5, 6], "Ada: each once, in order");
      const states = (await ada.page.evaluate(() => window.states)).slice(statesBefore).map((change) => change.current);
      assert.ok(states.includes("connecting") && states.at(-1) === "connected", `Ada reconnected: ${states}`);
      await eventually("Bob to have all six", async () => (await seqsOf(bob)).length >= 6, RECONNECT_LIMIT_MS);
      assert.deepEqual(await seqsOf(bob), [1, 2, 3, 4, 5, 6]);
      for (const who of [ada, bob]) {
        const view = await who.page.evaluate(() => window.room.getSnapshot().messages.map((m) => m.seq));
        assert.deepEqual(view, [1, 2, 3, 4, 5, 6], `${who.name}'s view`);
      }
      // And the room is live again after the restart.
      const after = await sendInRoom(bob, "after the restart");
      assert.equal(after.ok, true);
      await eventually("Ada to hear a message after the restart", async () => (await seqsOf(ada)).includes(7), RECONNECT_LIMIT_MS);
    });
  });
}
