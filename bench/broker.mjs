// pusher-js against two Pusher-compatible brokers, the same load on each, one
// broker after the other: the embedded broker (domvia-server) and sockudo 5.2
// on one node. REST trigger -> receive latency, client-event round trip
// (pusher-js, and two raw WebSockets as the floor), and fan-out to 1,000
// subscribers of one channel.
// A benchmark, not a test: run `node --experimental-websocket bench/broker.mjs`
// after `cargo build --profile server -p domvia-server` (npm run bench:broker
// does both, after scripts/setup, which installs sockudo). Without sockudo the
// bench says so and measures the embedded broker alone. The raw-WebSocket
// baseline needs Node's WebSocket (the flag on Node 20, built in from 22).
// Figures are medians and tails over the stated counts, on this machine.
// BENCH_TRIGGERS, BENCH_ROUND_TRIPS, BENCH_FANOUT_CLIENTS, BENCH_FANOUT_EVENTS
// change the counts.
import Pusher from "pusher";
import { performance } from "node:perf_hooks";
import { devApp, startServer, repoRoot } from "../tests/support/harness.mjs";
import { SOCKUDO_VERSION, sockudoBinary, sockudoInstalled, startSockudo } from "../tests/support/brokers.mjs";
import { connectPusher, subscribed, within } from "../tests/support/chat.mjs";

const ROUND_TRIPS = Number(process.env.BENCH_ROUND_TRIPS ?? 1000);
const TRIGGERS = Number(process.env.BENCH_TRIGGERS ?? 500);
const FANOUT_CLIENTS = Number(process.env.BENCH_FANOUT_CLIENTS ?? 1000);
const FANOUT_EVENTS = Number(process.env.BENCH_FANOUT_EVENTS ?? 50);

function summary(samples) {
  if (samples.length === 0) return null;
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  const mean = sorted.reduce((sum, x) => sum + x, 0) / sorted.length;
  return { n: sorted.length, p50: at(0.5), p99: at(0.99), mean };
}

/** A frame's `data`: JSON text by the protocol; taken as it is should a broker send the object itself. */
const payload = (data) => (typeof data === "string" ? JSON.parse(data) : data);

/**
 * Every measure against one broker: its WebSocket endpoint on `host`:`wsPort`
 * and its REST API on `host`:`restPort`. Every client it opens is closed by
 * the time it returns or throws. Resolves with the results.
 */
async function measure({ host = "127.0.0.1", wsPort, restPort = wsPort }) {
  const rest = new Pusher({
    appId: devApp.id,
    key: devApp.key,
    secret: devApp.secret,
    host,
    port: String(restPort),
    useTLS: false,
  });
  // What connectPusher connects to. Its channel-auth endpoint is not used: the
  // private channels below are signed in-process.
  const target = { port: wsPort, url: `http://${host}:${restPort}` };
  const open = new Set();
  const connect = async (options = {}) => {
    const client = await connectPusher(target, devApp, null, { wsHost: host, ...options });
    open.add(client);
    return client;
  };
  const disconnect = (client) => {
    open.delete(client);
    client.disconnect();
  };
  const results = {};
  try {
    // 1. REST trigger -> receive, one at a time.
    {
      const client = await connect();
      const channel = await subscribed(client, "bench-rest");
      const samples = [];
      for (let i = 0; i < TRIGGERS; i++) {
        const start = performance.now();
        const received = within("a triggered event", (resolve) =>
          channel.bind("tick", function once(data) {
            if (data.i === i) {
              channel.unbind("tick", once);
              resolve();
            }
          }),
        );
        await rest.trigger("bench-rest", "tick", { i });
        await received;
        samples.push(performance.now() - start);
      }
      results.restTriggerToReceive = summary(samples);
      disconnect(client);
    }

    // 2. Client-event round trip between two pusher-js clients. Client events need
    // a private channel; the bench signs with the app secret in-process, so it
    // measures the broker, not the backend's auth endpoint.
    {
      const channelAuthorization = {
        customHandler: ({ socketId, channelName }, callback) =>
          callback(null, rest.authorizeChannel(socketId, channelName)),
      };
      const a = await connect({ channelAuthorization });
      const b = await connect({ channelAuthorization });
      const channelA = await subscribed(a, "private-bench-rtt");
      const channelB = await subscribed(b, "private-bench-rtt");
      channelB.bind("client-ping", (data) => channelB.trigger("client-pong", data));
      const samples = [];
      for (let i = 0; i < ROUND_TRIPS; i++) {
        const start = performance.now();
        await within("a pong", (resolve) => {
          channelA.bind("client-pong", function once(data) {
            if (data.i === i) {
              channelA.unbind("client-pong", once);
              resolve();
            }
          });
          channelA.trigger("client-ping", { i });
        });
        samples.push(performance.now() - start);
      }
      results.clientEventRoundTrip = summary(samples);
      disconnect(a);
      disconnect(b);
    }

    // 2b. The same exchange over two raw WebSockets speaking the protocol by hand:
    // the floor that the broker and the loopback network allow, without pusher-js.
    if (typeof WebSocket === "function") {
      const sockets = [];
      const openRaw = async () => {
        const socket = new WebSocket(`ws://${host}:${wsPort}/app/${devApp.key}?protocol=7&client=bench&version=1`);
        sockets.push(socket);
        open.add({ disconnect: () => socket.close() });
        const established = await within("connection_established", (resolve) =>
          socket.addEventListener("message", function first(message) {
            const frame = JSON.parse(message.data);
            if (frame.event === "pusher:connection_established") {
              socket.removeEventListener("message", first);
              resolve(payload(frame.data));
            }
          }),
        );
        const channel = "private-bench-raw";
        const { auth } = rest.authorizeChannel(established.socket_id, channel);
        const ok = within("raw subscription", (resolve) =>
          socket.addEventListener("message", function acked(message) {
            if (JSON.parse(message.data).event === "pusher_internal:subscription_succeeded") {
              socket.removeEventListener("message", acked);
              resolve();
            }
          }),
        );
        socket.send(JSON.stringify({ event: "pusher:subscribe", data: { channel, auth } }));
        await ok;
        return socket;
      };
      const a = await openRaw();
      const b = await openRaw();
      b.addEventListener("message", (message) => {
        const frame = JSON.parse(message.data);
        if (frame.event === "client-ping")
          b.send(JSON.stringify({ event: "client-pong", channel: frame.channel, data: payload(frame.data) }));
      });
      const samples = [];
      let pending = null;
      a.addEventListener("message", (message) => {
        const frame = JSON.parse(message.data);
        if (frame.event === "client-pong" && pending && payload(frame.data).i === pending.i) pending.resolve();
      });
      for (let i = 0; i < ROUND_TRIPS; i++) {
        const start = performance.now();
        await within("a raw pong", (resolve) => {
          pending = { i, resolve };
          a.send(JSON.stringify({ event: "client-ping", channel: "private-bench-raw", data: { i } }));
        });
        samples.push(performance.now() - start);
      }
      results.rawClientEventRoundTrip = summary(samples);
      for (const socket of sockets) socket.close();
    }

    // 3. Fan-out: FANOUT_CLIENTS subscribers of one channel, FANOUT_EVENTS triggers.
    {
      const clients = [];
      let delivered = 0;
      let lastDelivery = 0;
      const perEventRemaining = new Map();
      const perEventStart = new Map();
      const perEventDone = [];
      for (let i = 0; i < FANOUT_CLIENTS; i++) {
        const client = await connect();
        const channel = await subscribed(client, "bench-fanout");
        channel.bind("fan", (data) => {
          delivered++;
          lastDelivery = performance.now();
          const left = perEventRemaining.get(data.i) - 1;
          perEventRemaining.set(data.i, left);
          if (left === 0) perEventDone.push(lastDelivery - perEventStart.get(data.i));
        });
        clients.push(client);
      }
      const expected = FANOUT_CLIENTS * FANOUT_EVENTS;
      const start = performance.now();
      for (let i = 0; i < FANOUT_EVENTS; i++) {
        perEventRemaining.set(i, FANOUT_CLIENTS);
        perEventStart.set(i, performance.now());
        await rest.trigger("bench-fanout", "fan", { i });
      }
      const deadline = Date.now() + 60_000;
      while (delivered < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      const seconds = (lastDelivery - start) / 1000;
      results.fanout = {
        clients: FANOUT_CLIENTS,
        events: FANOUT_EVENTS,
        delivered,
        expected,
        deliveriesPerSecond: delivered > 0 ? Math.round(delivered / seconds) : 0,
        lastReceiverLatency: summary(perEventDone),
      };
      for (const client of clients) disconnect(client);
    }
    return results;
  } finally {
    for (const client of open) client.disconnect();
  }
}

// The optimised build of the embedded broker.
process.env.DOMVIA_SERVER_BIN ??= `${repoRoot}target/server/domvia-server`;

/** The brokers measured, in this order, each started alone and stopped before the next. */
const BROKERS = [
  {
    name: "embedded",
    describe: `domvia-server ${process.env.DOMVIA_SERVER_BIN}, client-event and per-address connection limits off`,
    available: true,
    // The client-event limit off, or the round trips would be rate limited;
    // the per-address connection cap (256) off, for the 1,000 fan-out sockets
    // that all come from 127.0.0.1.
    async start() {
      const server = await startServer({ DOMVIA_CLIENT_EVENTS_PER_SECOND: "0", DOMVIA_MAX_CONNECTIONS_PER_IP: "0" });
      return { wsPort: server.port, restPort: server.port, stop: () => server.stop() };
    },
  },
  {
    name: "sockudo",
    describe: `sockudo ${SOCKUDO_VERSION}, one node, ${sockudoBinary}, client-event limit and rate limiter off, no connection cap`,
    available: sockudoInstalled(),
    missing: `not installed at ${sockudoBinary} (bash scripts/setup installs it)`,
    // startSockudo turns client events on without a per-connection limit. Off as
    // well: the rate limiter (HTTP API and WebSocket; 100 requests a minute by
    // default would throttle the triggers) and the app's connection cap (100 by
    // default, below the fan-out's subscribers).
    async start() {
      const node = await startSockudo({
        env: { RATE_LIMITER_ENABLED: "false", SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS: "0" },
      });
      return { wsPort: node.port, restPort: node.port, stop: () => node.stop() };
    },
  },
];

const measured = [];
const notes = [];
for (const broker of BROKERS) {
  if (!broker.available) {
    const note = `${broker.name}: ${broker.missing}, not measured`;
    notes.push(note);
    console.error(`# ${note}`);
    continue;
  }
  console.error(`# measuring ${broker.name} ...`);
  const running = await broker.start();
  try {
    measured.push({ name: broker.name, describe: broker.describe, results: await measure(running) });
  } finally {
    await running.stop();
  }
}

const ms = (x) => x.toFixed(3);
const cell = (s) => (s ? `${ms(s.p50)} / ${ms(s.p99)} ms` : "-");
const both = measured.length === 2;
const rows = [
  ["REST trigger -> receive", (r) => r.restTriggerToReceive],
  ["client-event round trip, pusher-js", (r) => r.clientEventRoundTrip],
  ["client-event round trip, raw WebSockets", (r) => r.rawClientEventRoundTrip],
  [`fan-out: last of ${FANOUT_CLIENTS} receivers`, (r) => r.fanout?.lastReceiverLatency],
];

console.log(`# broker benchmark: pusher-js 8.6 clients in Node ${process.version}, the same load on each broker in turn`);
for (const m of measured) console.log(`# ${m.name}: ${m.describe}`);
for (const note of notes) console.log(`# ${note}`);
if (both) console.log(`# ratio: ${measured[0].name} / ${measured[1].name} at p50 (below 1: ${measured[0].name} is faster)`);
console.log();
const header = ["measure", "n", ...measured.map((m) => `${m.name} p50 / p99`)];
if (both) header.push(`${measured[0].name} / ${measured[1].name} (p50)`);
console.log(`| ${header.join(" | ")} |\n| --- |${" ---: |".repeat(header.length - 1)}`);
for (const [name, pick] of rows) {
  const stats = measured.map((m) => pick(m.results));
  if (stats.every((s) => !s)) continue;
  const counts = [...new Set(stats.map((s) => s?.n ?? 0))].join(" / ");
  const row = [name, counts, ...stats.map(cell)];
  if (both) row.push(stats[0] && stats[1] ? (stats[0].p50 / stats[1].p50).toFixed(2) : "-");
  console.log(`| ${row.join(" | ")} |`);
}
console.log();
for (const m of measured) {
  const f = m.results.fanout;
  console.log(`fan-out, ${m.name}: ${f.delivered}/${f.expected} deliveries, ${f.deliveriesPerSecond} deliveries/s`);
}
if (both) {
  const [a, b] = measured.map((m) => m.results.fanout.deliveriesPerSecond);
  console.log(`fan-out throughput ratio ${measured[0].name} / ${measured[1].name}: ${b ? (a / b).toFixed(2) : "-"} (above 1: ${measured[0].name} delivers more per second)`);
}

console.log("\n## results as JSON");
console.log(
  JSON.stringify(
    {
      node: process.version,
      counts: {
        triggers: TRIGGERS,
        roundTrips: ROUND_TRIPS,
        fanoutClients: FANOUT_CLIENTS,
        fanoutEvents: FANOUT_EVENTS,
      },
      brokers: Object.fromEntries(measured.map((m) => [m.name, { describe: m.describe, ...m.results }])),
      notMeasured: notes,
    },
    null,
    2,
  ),
);
