// pusher-js against the embedded broker: REST trigger -> receive latency,
// client-event round trip, and fan-out to 1,000 subscribers of one channel.
// A benchmark, not a test: run `node --experimental-websocket bench/broker.mjs`
// after `cargo build --profile server -p domvia-server` (npm run bench:broker
// does both). The raw-WebSocket baseline needs Node's WebSocket (the flag on
// Node 20, built in from 22).
// Figures are medians and tails over the stated counts, on this machine.
import Pusher from "pusher";
import { performance } from "node:perf_hooks";
import { devApp, startServer, repoRoot } from "../tests/support/harness.mjs";
import { connectPusher, subscribed, within } from "../tests/support/chat.mjs";

const ROUND_TRIPS = Number(process.env.BENCH_ROUND_TRIPS ?? 1000);
const TRIGGERS = Number(process.env.BENCH_TRIGGERS ?? 500);
const FANOUT_CLIENTS = Number(process.env.BENCH_FANOUT_CLIENTS ?? 1000);
const FANOUT_EVENTS = Number(process.env.BENCH_FANOUT_EVENTS ?? 50);

function summary(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  const mean = sorted.reduce((sum, x) => sum + x, 0) / sorted.length;
  return { n: sorted.length, p50: at(0.5), p99: at(0.99), mean };
}

const ms = (x) => `${x.toFixed(3)} ms`;

// The optimised build; the client-event limit off, or the round trips would be rate limited.
process.env.DOMVIA_SERVER_BIN ??= `${repoRoot}target/server/domvia-server`;
const server = await startServer({ DOMVIA_CLIENT_EVENTS_PER_SECOND: "0" });
const rest = new Pusher({
  appId: devApp.id,
  key: devApp.key,
  secret: devApp.secret,
  host: "127.0.0.1",
  port: String(server.port),
  useTLS: false,
});
const results = {};
try {
  // 1. REST trigger -> receive, one at a time.
  {
    const client = await connectPusher(server, devApp, null);
    const channel = await subscribed(client, "bench-rest");
    const samples = [];
    for (let i = 0; i < TRIGGERS; i++) {
      const start = performance.now();
      const received = within("a triggered event", (resolve) => channel.bind("tick", function once(data) {
        if (data.i === i) {
          channel.unbind("tick", once);
          resolve();
        }
      }));
      await rest.trigger("bench-rest", "tick", { i });
      await received;
      samples.push(performance.now() - start);
    }
    results.restTriggerToReceive = summary(samples);
    client.disconnect();
  }

  // 2. Client-event round trip between two pusher-js clients. Client events need
  // a private channel; the bench signs with the app secret in-process, so it
  // measures the broker, not the backend's auth endpoint.
  {
    const channelAuthorization = {
      customHandler: ({ socketId, channelName }, callback) =>
        callback(null, rest.authorizeChannel(socketId, channelName)),
    };
    const a = await connectPusher(server, devApp, null, { channelAuthorization });
    const b = await connectPusher(server, devApp, null, { channelAuthorization });
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
    a.disconnect();
    b.disconnect();
  }

  // 2b. The same exchange over two raw WebSockets speaking the protocol by hand:
  // the floor that the broker and the loopback network allow, without pusher-js.
  if (typeof WebSocket === "function") {
    const open = async () => {
      const socket = new WebSocket(`ws://127.0.0.1:${server.port}/app/${devApp.key}?protocol=7&client=bench&version=1`);
      const established = await within("connection_established", (resolve) =>
        socket.addEventListener("message", function first(message) {
          const frame = JSON.parse(message.data);
          if (frame.event === "pusher:connection_established") {
            socket.removeEventListener("message", first);
            resolve(JSON.parse(frame.data));
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
    const a = await open();
    const b = await open();
    b.addEventListener("message", (message) => {
      const frame = JSON.parse(message.data);
      if (frame.event === "client-ping") b.send(JSON.stringify({ event: "client-pong", channel: frame.channel, data: JSON.parse(frame.data) }));
    });
    const samples = [];
    let pending = null;
    a.addEventListener("message", (message) => {
      const frame = JSON.parse(message.data);
      if (frame.event === "client-pong" && pending && JSON.parse(frame.data).i === pending.i) pending.resolve();
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
    a.close();
    b.close();
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
      const client = await connectPusher(server, devApp, null);
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
      deliveriesPerSecond: Math.round(delivered / seconds),
      lastReceiverLatency: summary(perEventDone),
    };
    for (const client of clients) client.disconnect();
  }
} finally {
  await server.stop();
}

console.log(`# broker benchmark: pusher-js 8.6 clients in Node ${process.version}, ${process.env.DOMVIA_SERVER_BIN}`);
const table = [
  ["REST trigger -> receive", results.restTriggerToReceive],
  ["client-event round trip, pusher-js", results.clientEventRoundTrip],
  ["client-event round trip, raw WebSockets", results.rawClientEventRoundTrip],
  [`fan-out: last of ${FANOUT_CLIENTS} receivers`, results.fanout?.lastReceiverLatency],
];
console.log("| measure | n | p50 | p99 | mean |\n| --- | --- | --- | --- | --- |");
for (const [name, s] of table) if (s) console.log(`| ${name} | ${s.n} | ${ms(s.p50)} | ${ms(s.p99)} | ${ms(s.mean)} |`);
if (results.fanout) {
  const f = results.fanout;
  console.log(`\nfan-out: ${f.delivered}/${f.expected} deliveries, ${f.deliveriesPerSecond} deliveries/s`);
}
