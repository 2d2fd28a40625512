// Chat under a faulty network: two users (Ada and Bob) in one room, each
// page's WebSocket going through its own fault proxy (tests/support/
// fault_proxy.mjs: chunks delayed, directions stalled, connections cut, some
// mid-frame, earlier message frames written again after a reconnect), while
// both send 500 messages between them, interleaved and a few at a time.
// Their HTTP (sign-in, history, sends, channel auth) goes straight to the
// server. Once the faults stop, each side must have heard every message
// exactly once, in seq order, the same list as the other side, and every
// send must have ended `sent`.
// 1. The embedded server: broker and backend in one process.
// 2. Backend-only mode: domvia-server publishing through a fault proxy to a
//    second, embedded broker node (the outbox retries what a cut lost, and
//    sends again what a cut answer hid: the broker then delivers it twice).
//
// The seed (printed with every failure and as a diagnostic) decides the
// faults; DOMVIA_FAULT_SEED=n replays a run's faults (their kinds and rates:
// timing still varies). Real pages of the server's origin, in Chromium or
// Firefox per DOMVIA_BROWSER.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { eventually } from "../support/chat.mjs";
import { startEmbeddedNode } from "../support/brokers.mjs";
import { deriveSeed, faultSeed, startFaultProxy } from "../support/fault_proxy.mjs";
import { browserEngine, devApp, launchBrowser, startServer } from "../support/harness.mjs";
import { openSdkUser, postSentinel, sentinelHeard, unexpectedErrors } from "../support/sdk_pages.mjs";

const SEED = faultSeed();
const TOTAL = 500;
/** The longest pause between two of a page's batches of sends (ms). */
const PAUSE_MAX_MS = 160;
/** Every send resolves within this, faults or not (sends are HTTP, straight to the server). */
const SENDING_LIMIT_MS = 40_000;
/** After the faults stop, each page has caught up within this (its reconnect backoff is reset by a connection). */
const CATCH_UP_LIMIT_MS = 20_000;
/** Each page proxy cuts at least this many connections (the lifetime fault guarantees it over the sending time). */
const MIN_CUTS_PER_PAGE = 2;

/** Between a page and the broker: every fault, the cuts mostly by connection age. */
const SOCKET_FAULTS = {
  delay: { probability: 0.25, maxMs: 40 },
  stall: { probability: 0.02, minMs: 300, maxMs: 4_000 },
  cut: { probability: 0.004 },
  lifetimeMs: [300, 2_000],
  midChunk: 0.5,
  replay: { probability: 0.85, maxFrames: 5 },
};
/**
 * Between the backend and the broker's REST API: short stalls (a publish
 * times out after 5 s), lost requests and lost answers.
 */
const PUBLISH_FAULTS = {
  delay: { probability: 0.3, maxMs: 80 },
  stall: { probability: 0.03, minMs: 200, maxMs: 1_500 },
  cut: { probability: 0.05 },
  midChunk: 0.5,
  cutResponse: { probability: 0.1 },
};

let browser;
const contexts = [];
const stops = [];

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  for (const context of contexts) await context.close().catch(() => {});
  await browser?.close();
  for (const stop of stops.reverse()) await stop().catch(() => {});
});

/** Runs `body`; a failure names the seed, the engine and what the proxies did. */
async function withSeed(t, scenario, body) {
  t.diagnostic(`fault seed ${SEED} (DOMVIA_FAULT_SEED=${SEED} DOMVIA_BROWSER=${browserEngine})`);
  const proxies = [];
  const started = Date.now();
  try {
    await body(proxies);
  } catch (error) {
    const replay = `DOMVIA_FAULT_SEED=${SEED} DOMVIA_BROWSER=${browserEngine} node --test tests/faults/`;
    const faults = proxies.map((proxy) => proxy.describe()).join("\n");
    error.message = `${error.message}\n[${scenario}, seed ${SEED}; replay: ${replay}]\n${faults}`;
    throw error;
  } finally {
    for (const proxy of proxies) t.diagnostic(proxy.describe());
    t.diagnostic(`${scenario}: ${Date.now() - started} ms`);
  }
}

/** A fault proxy to `targetPort`, stopped after the file's tests. */
async function faultProxy(proxies, targetPort, name, faults) {
  const proxy = await startFaultProxy(targetPort, { name, seed: deriveSeed(SEED, name), faults });
  stops.push(() => proxy.stop());
  proxies.push(proxy);
  return proxy;
}

/**
 * Opens `window.room` for `roomId` in `who`'s page with its WebSocket to
 * 127.0.0.1:`port` (the user's proxy), pinging after 2 s of silence and
 * giving up on a socket 1.5 s later (so long stalls end in a reconnect too);
 * every onMessage call goes to `window.log.messages`, and the seq of every
 * `message.created` the socket delivered to `window.delivered`.
 */
function openRoomThrough(who, port, roomId) {
  return who.page.evaluate(
    async ({ port, key, roomId }) => {
      const { DomViaRealtime, ready } = await import("@domvia/realtime");
      const chat = await import("@domvia/realtime-chat");
      await ready();
      window.realtime = DomViaRealtime.create({
        key,
        host: "127.0.0.1",
        port,
        forceTLS: false,
        authEndpoint: "/realtime/auth",
        activityTimeoutMs: 2_000,
        pongTimeoutMs: 1_500,
      });
      window.states = [];
      window.realtime.connection.onStateChange((change) => window.states.push(change.current));
      window.log = { messages: [] };
      window.room = chat.createChatRoom(window.realtime, { roomId, channelName: chat.buildChatChannelName(roomId) });
      window.room.onMessage((message) => window.log.messages.push(message));
      let timer;
      const limit = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("the room was not ready within 15 s")), 15_000);
      });
      try {
        await Promise.race([window.room.waitUntilReady(), limit]);
        // The seqs of every message.created the socket delivered, duplicates included.
        window.delivered = [];
        window.realtime
          .channel(chat.buildChatChannelName(roomId))
          .bind("message.created", (data) => window.delivered.push(data.seq));
        return { ok: true };
      } catch (error) {
        return { ok: false, code: error.code, message: error.message };
      } finally {
        clearTimeout(timer);
      }
    },
    { port, key: devApp.key, roomId },
  );
}

/**
 * Sends `count` messages `label 0` .. in `who`'s page, in batches of 1..6 at
 * once with pauses of up to PAUSE_MAX_MS between batches (both drawn from
 * `seed`); resolves with each send's outcome: its text, and the status, seq
 * and client_id it resolved with, or the code it rejected with.
 */
function sendShare(who, label, count, seed) {
  return who.page.evaluate(
    async ({ label, count, seed, pauseMaxMs }) => {
      // mulberry32, as in fault_proxy.mjs (a page cannot import it).
      let state = seed >>> 0;
      const random = () => {
        state = (state + 0x6d2b79f5) >>> 0;
        let t = state;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
      const outcomes = [];
      let next = 0;
      while (next < count) {
        const batch = [];
        for (let size = 1 + Math.floor(random() * 6); size > 0 && next < count; size--, next++) {
          const text = `${label} ${next}`;
          batch.push(
            window.room.sendMessage({ text }).then(
              (message) => ({ text, status: message.status, seq: message.seq, client_id: message.client_id }),
              (error) => ({ text, status: "rejected", code: error.code, message: error.message }),
            ),
          );
        }
        outcomes.push(...(await Promise.all(batch)));
        await new Promise((resolve) => setTimeout(resolve, random() * pauseMaxMs));
      }
      return outcomes;
    },
    { label, count, seed, pauseMaxMs: PAUSE_MAX_MS },
  );
}

/** What both sides must agree on about a message. */
const essence = (message) => ({
  seq: message.seq,
  message_id: message.message_id,
  client_id: message.client_id,
  user_id: message.user_id,
  text: message.text,
  status: message.status,
});

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/**
 * The scenario both setups run: Ada and Bob open a room on calm proxies,
 * the page proxies' faults start, both send TOTAL/2 at once, the faults
 * stop, and then everything is checked on both sides.
 */
async function chatUnderFaults(t, { serverUrl, brokerPort, proxies, alsoFaulty = [] }) {
  const ada = await openSdkUser(browser, contexts, serverUrl, "Ada");
  const bob = await openSdkUser(browser, contexts, serverUrl, "Bob");
  const created = await ada.api("POST", "/api/rooms", {
    kind: "group",
    name: "under faults",
    member_ids: [bob.user.id],
  });
  assert.equal(created.status, 201, JSON.stringify(created));
  const roomId = created.body.room_id;
  const users = [ada, bob];
  for (const who of users) {
    who.proxy = await faultProxy(proxies, brokerPort, `${who.name.split("-")[0]}'s socket`, SOCKET_FAULTS);
    assert.deepEqual(await openRoomThrough(who, who.proxy.port, roomId), { ok: true }, `${who.name} opens the room`);
  }

  const faulty = [...users.map((who) => who.proxy), ...alsoFaulty];
  for (const proxy of faulty) proxy.unleash();
  const sendingStarted = Date.now();
  let outcomes;
  let timer;
  try {
    outcomes = await Promise.race([
      Promise.all([
        sendShare(ada, "ada", TOTAL / 2, deriveSeed(SEED, "ada sends")),
        sendShare(bob, "bob", TOTAL / 2, deriveSeed(SEED, "bob sends")),
      ]),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the ${TOTAL} sends did not all settle within ${SENDING_LIMIT_MS} ms`)),
          SENDING_LIMIT_MS,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    for (const proxy of faulty) proxy.calm();
  }
  t.diagnostic(`sending under faults: ${Date.now() - sendingStarted} ms`);

  // Every send ended 'sent', with a seq of its own.
  const sends = outcomes.flat();
  const notSent = sends.filter((outcome) => outcome.status !== "sent");
  assert.deepEqual(notSent, [], "every send resolves 'sent'");
  const seqs = sends.map((outcome) => outcome.seq).sort((a, b) => a - b);
  assert.deepEqual(seqs, range(1, TOTAL), "the sends were stored as seqs 1..TOTAL");

  // The faults really happened: each page's socket was cut (and came back).
  for (const who of users) {
    const counters = who.proxy.counters();
    assert.ok(counters.cuts >= MIN_CUTS_PER_PAGE, `${who.proxy.describe()}: at least ${MIN_CUTS_PER_PAGE} cuts`);
    assert.ok(counters.delays > 0, `${who.proxy.describe()}: some chunks delayed`);
  }

  // Once calm, both catch up to all of them.
  for (const who of users) {
    await eventually(
      `${who.name} to hear all ${TOTAL} messages`,
      async () => (await who.page.evaluate(() => window.log.messages.length)) >= TOTAL,
      CATCH_UP_LIMIT_MS,
    ).catch(async (error) => {
      const heard = new Set(await who.page.evaluate(() => window.log.messages.map((message) => message.seq)));
      const missing = range(1, TOTAL).filter((seq) => !heard.has(seq));
      const states = await who.page.evaluate(() => window.states);
      const first = missing.slice(0, 20).join(",");
      throw new Error(`${error.message}; missing seqs ${first} (${missing.length}); states ${states.join(">")}`);
    });
  }
  // Nothing more on its way: a sentinel posted now, once heard, is the last.
  const sentinel = await postSentinel(ada, roomId);
  for (const who of users) await sentinelHeard(who, sentinel);

  const expected = range(1, TOTAL + 1);
  const bySeq = new Map(sends.map((outcome) => [outcome.seq, outcome]));
  const lists = [];
  let duplicates = 0;
  let caughtUp = 0;
  for (const who of users) {
    const { heard, shown, room, states, delivered } = await who.page.evaluate(() => {
      const snapshot = window.room.getSnapshot();
      return {
        delivered: window.delivered,
        heard: window.log.messages,
        shown: snapshot.messages,
        room: { status: snapshot.status, connection: snapshot.connection },
        states: window.states,
      };
    });
    assert.deepEqual(
      heard.map((message) => message.seq),
      expected,
      `${who.name}: onMessage once per seq, ascending`,
    );
    const ids = new Set(heard.map((message) => message.message_id));
    assert.equal(ids.size, heard.length, `${who.name}: no message_id twice`);
    assert.deepEqual(
      shown.map((message) => [message.seq, message.status]),
      expected.map((seq) => [seq, "sent"]),
      `${who.name}'s view: each seq once, ascending, none sending or failed`,
    );
    assert.deepEqual(shown.map(essence), heard.map(essence), `${who.name}: the view holds what onMessage reported`);
    for (const message of heard.slice(0, TOTAL)) {
      const sent = bySeq.get(message.seq);
      assert.deepEqual(
        [message.text, message.client_id],
        [sent.text, sent.client_id],
        `${who.name}: seq ${message.seq} is the send that got it`,
      );
    }
    assert.deepEqual(room, { status: "ready", connection: "connected" }, `${who.name}'s room`);
    const connects = states.filter((state) => state === "connected").length;
    assert.ok(connects >= 2, `${who.name} reconnected (${states.join(">")})`);
    assert.deepEqual(unexpectedErrors(who), [], `${who.name}'s page errors`);
    lists.push(heard.map(essence));
    duplicates += delivered.length - new Set(delivered).size;
    const live = new Set(delivered);
    // (Only the other's: a sender's own may skip its socket, stored by the send's answer.)
    caughtUp += heard.filter((message) => message.user_id !== who.user.id && !live.has(message.seq)).length;
  }
  // Messages lost with a cut socket reached the rooms from the history instead.
  t.diagnostic(`the other's messages a room fetched because its socket lost them: ${caughtUp}`);
  // And the sockets did deliver some messages twice, which the rooms dropped.
  t.diagnostic(`message.created events delivered twice (and dropped by the rooms): ${duplicates}`);
  assert.ok(duplicates > 0, "the sockets delivered some message twice");
  assert.deepEqual(lists[0], lists[1], "Ada and Bob hold the same list");
}

test(`embedded server: ${TOTAL} messages between two pages whose sockets are delayed, stalled and cut`, async (t) => {
  await withSeed(t, "embedded", async (proxies) => {
    const server = await startServer();
    stops.push(() => server.stop());
    await chatUnderFaults(t, { serverUrl: server.url, brokerPort: server.port, proxies });
  });
});

test(`backend-only mode: ${TOTAL} messages while the backend's publishes and both sockets see faults`, async (t) => {
  await withSeed(t, "backend-only", async (proxies) => {
    const node = await startEmbeddedNode();
    stops.push(() => node.stop());
    const publishes = await faultProxy(proxies, node.port, "publishes", PUBLISH_FAULTS);
    const backend = await startServer({ DOMVIA_BROKER_URL: publishes.url });
    stops.push(() => backend.stop());
    await chatUnderFaults(t, { serverUrl: backend.url, brokerPort: node.port, proxies, alsoFaulty: [publishes] });
    const counters = publishes.counters();
    assert.ok(counters.cuts >= 1, `${publishes.describe()}: some publishes cut`);
    assert.ok(counters.connections > counters.cuts, `${publishes.describe()}: the outbox published again after cuts`);
  });
});
