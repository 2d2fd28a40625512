// Soak + load: N minutes of steady chat traffic through a Pusher-compatible
// broker, with a window of hostile clients in the middle, on the embedded
// broker (domvia-server) and then on sockudo 5.2 under the same load.
//
//   node bench/soak.mjs [--minutes 2] [--clients 1000] [--rooms 10]
//                       [--rate 20] [--client-rate 10] [--brokers embedded,sockudo]
//
// Needs the optimised server: `cargo build --profile server -p domvia-server`
// (DOMVIA_SERVER_BIN overrides the binary), and sockudo from scripts/setup for
// the side-by-side run (skipped with a message if it is not installed).
//
// The load, per broker: `--clients` pusher-js clients in one Node process,
// spread over `--rooms` private channels (signed in-process, as
// bench/broker.mjs does); `--rate` REST triggers a second (the `pusher`
// library, keep-alive), round-robin over the rooms; `--client-rate` client
// events a second from one member of each room in turn. Every payload carries
// its send time, so each receiver's latency is receipt - send in the same
// process, and a sequence number, so every receiver's losses and duplicates
// are counted. The soak has three phases: calm (the first half), hostile (to
// five sixths: 500 raw WebSockets that open and never subscribe, then 200
// slow-loris connections sending a request header a byte every 2 s, both from
// 127.0.0.2), and after (the hostile sockets closed). Throughout, the health
// endpoint (/healthz; sockudo: /up) is asked on a fresh connection every
// 200 ms, and the broker's VmRSS and CPU time are read from /proc every 5 s.
// Every process and socket it opens is closed when it ends, fails, is
// interrupted, or overruns its time limit.
import { existsSync } from "node:fs";
import { Agent } from "node:http";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import Pusher from "pusher";
import { SOCKUDO_VERSION, sockudoBinary, sockudoInstalled, startSockudo } from "../tests/support/brokers.mjs";
import { connectPusher, subscribed } from "../tests/support/chat.mjs";
import { devApp, repoRoot, startServer } from "../tests/support/harness.mjs";
import { healthProber, idleWebSockets, slowLoris } from "./support/hostile.mjs";
import { cpuSeconds, processListeningOn, rssKiB, threads } from "./support/proc.mjs";

const { values: args } = parseArgs({
  options: {
    minutes: { type: "string", default: "2" },
    clients: { type: "string", default: "1000" },
    rooms: { type: "string", default: "10" },
    rate: { type: "string", default: "20" },
    "client-rate": { type: "string", default: "10" },
    brokers: { type: "string", default: "embedded,sockudo" },
  },
  strict: true,
});
const positive = (name, integer = false) => {
  const value = Number(args[name]);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value)))
    throw new Error(`--${name} must be a positive ${integer ? "integer" : "number"}, not ${args[name]}`);
  return value;
};
const MINUTES = positive("minutes");
const CLIENTS = positive("clients", true);
const ROOMS = positive("rooms", true);
const REST_RATE = positive("rate");
const CLIENT_RATE = positive("client-rate");
const BROKER_NAMES = args.brokers.split(",").map((name) => name.trim());
for (const name of BROKER_NAMES)
  if (!["embedded", "sockudo"].includes(name)) throw new Error(`--brokers: unknown broker ${name}`);
if (CLIENTS < ROOMS * 2) throw new Error(`--clients must be at least twice --rooms (${ROOMS * 2})`);
if (MINUTES * 60 < 30) throw new Error("--minutes must be at least 0.5");

const HOST = "127.0.0.1";
/** Where the hostile sockets come from: another loopback address, as another client would. */
const HOSTILE_FROM = "127.0.0.2";
const IDLE_SOCKETS = 500;
const SLOW_LORIS = 200;
const SLOW_LORIS_BYTE_MS = 2000;
const HEALTH_EVERY_MS = 200;
const RSS_EVERY_MS = 5000;
const WARMUP_MS = 15_000;
const DRAIN_MS = 15_000;
const CONNECT_CONCURRENCY = 25;
const SOAK_MS = MINUTES * 60_000;
const CALM_END = SOAK_MS / 2;
const HOSTILE_END = (SOAK_MS * 5) / 6;
const PHASES = ["calm", "hostile", "after"];
const phaseOf = (ms) => (ms < CALM_END ? 0 : ms < HOSTILE_END ? 1 : 2);
/** Filler so a payload is the size of a short chat message (~150 B of JSON). */
const TEXT = "the quick brown fox jumps over the lazy dog, ".repeat(2);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
const sleepUntil = (at) => sleep(at - performance.now());

function summary(samples) {
  if (samples.length === 0) return null;
  const sorted = Float64Array.from(samples).sort();
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  let sum = 0;
  for (const x of sorted) sum += x;
  return { n: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1], mean: sum / sorted.length };
}

/** Least-squares slope of `points` ([x, y]) in y per x, or null with fewer than 3 points. */
function slope(points) {
  if (points.length < 3) return null;
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? null : num / den;
}

/** Stops for everything running, run in reverse on the way out (also on a signal or the time limit). */
const stops = [];
async function stopAll() {
  while (stops.length > 0) {
    const stop = stops.pop();
    try {
      await stop();
    } catch {
      // Best effort on the way out.
    }
  }
}
const limitMs = BROKER_NAMES.length * (SOAK_MS + DRAIN_MS + 180_000) + 60_000;
const limitTimer = setTimeout(async () => {
  console.error(`soak: over its time limit of ${Math.round(limitMs / 1000)} s, stopping`);
  await stopAll();
  process.exit(2);
}, limitMs);
for (const signal of ["SIGINT", "SIGTERM"])
  process.once(signal, async () => {
    console.error(`soak: ${signal}, stopping`);
    await stopAll();
    process.exit(130);
  });

/**
 * The soak on one running broker: `port` for WebSockets, REST and health,
 * `pid` its process. Everything it opens is closed when it returns or throws.
 */
async function soak({ name, port, pid, healthPath }) {
  const log = (message) => console.error(`# ${name}: ${message}`);
  const local = [];
  const track = (stop) => {
    local.push(stop);
    stops.push(stop);
  };
  const agent = new Agent({ keepAlive: true, maxSockets: 32 });
  track(() => agent.destroy());
  const rest = new Pusher({
    appId: devApp.id,
    key: devApp.key,
    secret: devApp.secret,
    host: HOST,
    port: String(port),
    useTLS: false,
    agent,
  });
  const channelAuthorization = {
    customHandler: ({ socketId, channelName }, callback) => callback(null, rest.authorizeChannel(socketId, channelName)),
  };
  const target = { port, url: `http://${HOST}:${port}` };
  const channelOf = (room) => `private-soak-${room}`;

  const restTotal = Math.floor((REST_RATE * SOAK_MS) / 1000);
  const clientTotal = Math.floor((CLIENT_RATE * SOAK_MS) / 1000);
  const members = new Array(ROOMS).fill(0);
  for (let i = 0; i < CLIENTS; i++) members[i % ROOMS]++;

  // Per event: 0 not sent, 1 sent, 2 the send failed; the send time; receivers still to get it.
  const sent = [new Uint8Array(restTotal), new Uint8Array(clientTotal)];
  const sentAt = [new Float64Array(restTotal), new Float64Array(clientTotal)];
  const remaining = [new Int32Array(restTotal), new Int32Array(clientTotal)];
  const byPhase = PHASES.map(() => []);
  const lastByPhase = PHASES.map(() => []);
  const byMinute = Array.from({ length: Math.ceil(MINUTES) }, () => []);
  let t0 = Number.POSITIVE_INFINITY;
  let delivered = 0;
  let misrouted = 0;
  let measuring = false;
  let reconnects = 0;
  let pusherErrors = 0;

  try {
    const health = await fetch(`http://${HOST}:${port}${healthPath}`);
    if (health.status !== 200) throw new Error(`${healthPath} answered ${health.status}`);
    await health.arrayBuffer();
    const rssEmpty = rssKiB(pid);

    // 1. The receivers, CONNECT_CONCURRENCY at a time.
    log(`connecting ${CLIENTS} pusher-js clients to ${ROOMS} rooms ...`);
    const connectStart = performance.now();
    const clients = new Array(CLIENTS);
    track(() => {
      for (const client of clients) client?.pusher.disconnect();
    });
    const deliver = (client, kind, data) => {
      const now = performance.now();
      const seq = data.s;
      if (data.r !== client.room) {
        misrouted++;
        return;
      }
      const seen = client.seen[kind];
      if (seen[seq] < 255) seen[seq]++;
      if (seen[seq] > 1) return;
      delivered++;
      const latency = now - data.t;
      const at = data.t - t0;
      byPhase[phaseOf(at)].push(latency);
      byMinute[Math.min(byMinute.length - 1, Math.floor(at / 60_000))].push(latency);
      if (--remaining[kind][seq] === 0) lastByPhase[phaseOf(at)].push(latency);
    };
    const open = async (index) => {
      const room = index % ROOMS;
      const pusher = await connectPusher(target, devApp, null, { wsHost: HOST, channelAuthorization });
      const client = { index, room, pusher, channel: null, seen: [new Uint8Array(restTotal), new Uint8Array(clientTotal)] };
      clients[index] = client;
      client.channel = await subscribed(pusher, channelOf(room));
      client.channel.bind("soak-rest", (data) => deliver(client, 0, data));
      client.channel.bind("client-soak", (data) => deliver(client, 1, data));
      pusher.connection.bind("state_change", ({ previous, current }) => {
        if (measuring && previous === "connected" && current !== "connected") reconnects++;
      });
      pusher.connection.bind("error", () => {
        if (measuring) pusherErrors++;
      });
    };
    for (let i = 0; i < CLIENTS; i += CONNECT_CONCURRENCY) {
      const batch = [];
      for (let j = i; j < Math.min(CLIENTS, i + CONNECT_CONCURRENCY); j++) batch.push(open(j));
      await Promise.all(batch);
    }
    const connectSeconds = (performance.now() - connectStart) / 1000;
    await sleep(2000);
    const rssStart = rssKiB(pid);
    log(`connected in ${connectSeconds.toFixed(1)} s; RSS ${rssEmpty} KiB empty, ${rssStart} KiB with the clients`);

    // 2. The soak.
    measuring = true;
    t0 = performance.now();
    const cpu0 = cpuSeconds(pid);
    const nodeCpu0 = process.cpuUsage();
    const rss = [{ at: 0, kib: rssStart, cpu: cpu0 }];
    const rssTimer = setInterval(() => {
      rss.push({ at: performance.now() - t0, kib: rssKiB(pid), cpu: cpuSeconds(pid) });
    }, RSS_EVERY_MS);
    track(() => clearInterval(rssTimer));

    const healthByPhase = PHASES.map(() => []);
    const healthFailures = [0, 0, 0];
    const healthByMinute = Array.from({ length: Math.ceil(MINUTES) }, () => []);
    const prober = healthProber({
      host: HOST,
      port,
      path: healthPath,
      everyMs: HEALTH_EVERY_MS,
      onSample: (startedAt, ms, ok) => {
        const at = startedAt - t0;
        if (at >= SOAK_MS) return;
        if (!ok) healthFailures[phaseOf(at)]++;
        else {
          healthByPhase[phaseOf(at)].push(ms);
          healthByMinute[Math.min(healthByMinute.length - 1, Math.floor(at / 60_000))].push(ms);
        }
      },
    });
    track(() => prober.stop());

    let restErrors = 0;
    let clientErrors = 0;
    const sendRest = (seq) => {
      const room = seq % ROOMS;
      remaining[0][seq] = members[room];
      const t = performance.now();
      sentAt[0][seq] = t;
      rest.trigger(channelOf(room), "soak-rest", { s: seq, r: room, t, text: TEXT }).then(
        () => {
          sent[0][seq] = 1;
        },
        () => {
          sent[0][seq] = 2;
          restErrors++;
        },
      );
    };
    const sendClientEvent = (seq) => {
      const room = seq % ROOMS;
      remaining[1][seq] = members[room] - 1;
      const t = performance.now();
      sentAt[1][seq] = t;
      // Client `room` is the first member of room `room`: the room's sender.
      const ok = clients[room].channel.trigger("client-soak", { s: seq, r: room, t, text: TEXT });
      sent[1][seq] = ok ? 1 : 2;
      if (!ok) clientErrors++;
    };
    const paced = async (rate, total, send) => {
      for (let i = 0; i < total; i++) {
        await sleepUntil(t0 + (i * 1000) / rate);
        send(i);
      }
    };

    const hostile = async () => {
      await sleepUntil(t0 + CALM_END);
      const cpuCalmEnd = cpuSeconds(pid);
      const rssBefore = rssKiB(pid);
      log(`hostile window: ${IDLE_SOCKETS} idle WebSockets, then ${SLOW_LORIS} slow-loris connections`);
      const idle = await idleWebSockets({ host: HOST, port, key: devApp.key, count: IDLE_SOCKETS, localAddress: HOSTILE_FROM });
      track(() => idle.stop());
      const idleOpenedIn = performance.now() - t0 - CALM_END;
      await sleep(2000);
      const rssIdle = rssKiB(pid);
      const idleOpenAt2s = idle.open();
      const loris = slowLoris({ host: HOST, port, count: SLOW_LORIS, byteEveryMs: SLOW_LORIS_BYTE_MS, localAddress: HOSTILE_FROM });
      track(() => loris.stop());
      const lorisStart = performance.now();
      await loris.settled();
      await sleep(2000);
      const rssLoris = rssKiB(pid);
      const held = {};
      for (const seconds of [5, 15, 30]) {
        const at = lorisStart + seconds * 1000;
        if (at < t0 + HOSTILE_END) {
          await sleepUntil(at);
          held[`${seconds}s`] = loris.held();
        }
      }
      await sleepUntil(t0 + HOSTILE_END);
      held.end = loris.held();
      const cpuHostileEnd = cpuSeconds(pid);
      const rssHostileEnd = rssKiB(pid);
      const result = {
        windowSeconds: (HOSTILE_END - CALM_END) / 1000,
        slowLorisSeconds: (t0 + HOSTILE_END - lorisStart) / 1000,
        idleOpenedInMs: idleOpenedIn,
        idleOpenAfter2s: idleOpenAt2s,
        idle: idle.stats(),
        slowLoris: { ...loris.stats(), held },
        rssKiB: { before: rssBefore, idleOpen: rssIdle, slowLorisOpen: rssLoris, end: rssHostileEnd },
        cpu: { calmEnd: cpuCalmEnd, hostileEnd: cpuHostileEnd },
      };
      result.slowLoris.closedAfterMs = summary(result.slowLoris.closedAfterMs);
      idle.stop();
      loris.stop();
      return result;
    };

    log(`soaking for ${MINUTES} min: ${REST_RATE} REST triggers/s, ${CLIENT_RATE} client events/s ...`);
    const [, , hostileResult] = await Promise.all([
      paced(REST_RATE, restTotal, sendRest),
      paced(CLIENT_RATE, clientTotal, sendClientEvent),
      hostile(),
    ]);
    await sleepUntil(t0 + SOAK_MS);
    prober.stop();
    const cpuEnd = cpuSeconds(pid);
    const nodeCpu = process.cpuUsage(nodeCpu0);

    // 3. Drain: every sent event to every receiver, or DRAIN_MS.
    const expectedOf = (kind, seq) => members[seq % ROOMS] - kind;
    const expected = () => {
      let sum = 0;
      for (let kind = 0; kind < 2; kind++)
        for (let seq = 0; seq < sent[kind].length; seq++) if (sent[kind][seq] === 1) sum += expectedOf(kind, seq);
      return sum;
    };
    const drainDeadline = performance.now() + DRAIN_MS;
    while (performance.now() < drainDeadline) {
      if (delivered >= expected()) break;
      await sleep(100);
    }
    const expectedDeliveries = expected();
    measuring = false;
    clearInterval(rssTimer);
    const rssEnd = rssKiB(pid);
    rss.push({ at: performance.now() - t0, kib: rssEnd, cpu: cpuSeconds(pid) });

    // 4. Losses and duplicates, receiver by receiver.
    const lost = [0, 0];
    const lostByPhase = [0, 0, 0];
    const lostByMinute = new Array(byMinute.length).fill(0);
    const duplicates = [0, 0];
    for (const client of clients) {
      for (let kind = 0; kind < 2; kind++) {
        const seen = client.seen[kind];
        for (let seq = client.room; seq < seen.length; seq += ROOMS) {
          if (sent[kind][seq] !== 1) continue;
          if (kind === 1 && client.index === client.room) continue; // its own client event: never echoed
          if (seen[seq] === 0) {
            lost[kind]++;
            const at = sentAt[kind][seq] - t0;
            lostByPhase[phaseOf(at)]++;
            lostByMinute[Math.min(lostByMinute.length - 1, Math.floor(at / 60_000))]++;
          } else if (seen[seq] > 1) duplicates[kind] += seen[seq] - 1;
        }
      }
    }
    const count = (kind, value) => sent[kind].reduce((n, x) => n + (x === value ? 1 : 0), 0);

    const cpuPercent = (from, to, ms) => (from === null || to === null ? null : ((to - from) / (ms / 1000)) * 100);
    const warm = rss.filter((s) => s.at >= WARMUP_MS && s.at <= CALM_END && s.kib !== null);
    const slopePerMs = slope(warm.map((s) => [s.at, s.kib]));
    const rssValues = rss.map((s) => s.kib).filter((x) => x !== null);
    const idleOpened = hostileResult.idle.opened;
    const lorisConnected = hostileResult.slowLoris.connected;
    const rssMinute = byMinute.map((_, m) => {
      const inMinute = rss.filter((s) => s.at <= (m + 1) * 60_000 + 1000 && s.kib !== null);
      return inMinute.length ? inMinute[inMinute.length - 1].kib : null;
    });
    return {
      broker: name,
      pid,
      threads: threads(pid),
      clients: CLIENTS,
      rooms: ROOMS,
      connectSeconds,
      sent: {
        rest: count(0, 1),
        restErrors,
        clientEvents: count(1, 1),
        clientEventErrors: clientErrors,
      },
      deliveries: {
        expected: expectedDeliveries,
        delivered,
        lost: lost[0] + lost[1],
        lostRest: lost[0],
        lostClientEvents: lost[1],
        lostByPhase,
        duplicates: duplicates[0] + duplicates[1],
        misrouted,
        reconnects,
        pusherErrors,
      },
      latency: {
        byPhase: byPhase.map(summary),
        all: summary(byPhase.flat()),
        lastReceiverByPhase: lastByPhase.map(summary),
        lastReceiverAll: summary(lastByPhase.flat()),
        byMinute: byMinute.map(summary),
        lostByMinute,
      },
      health: {
        path: healthPath,
        byPhase: healthByPhase.map(summary),
        failuresByPhase: healthFailures,
        byMinute: healthByMinute.map(summary),
        skipped: prober.skipped(),
      },
      rssKiB: {
        empty: rssEmpty,
        start: rssStart,
        max: Math.max(...rssValues),
        end: rssEnd,
        slopeCalmKiBPerMinute: slopePerMs === null ? null : slopePerMs * 60_000,
        slopeWindowSeconds: [WARMUP_MS / 1000, CALM_END / 1000],
        perClient: (rssStart - rssEmpty) / CLIENTS,
        perIdleSocket:
          idleOpened > 0 ? (hostileResult.rssKiB.idleOpen - hostileResult.rssKiB.before) / idleOpened : null,
        perSlowLoris:
          lorisConnected > 0
            ? (hostileResult.rssKiB.slowLorisOpen - hostileResult.rssKiB.idleOpen) / lorisConnected
            : null,
        byMinute: rssMinute,
        samples: rss.map((s) => [Math.round(s.at / 1000), s.kib]),
      },
      cpuPercent: {
        calm: cpuPercent(cpu0, hostileResult.cpu.calmEnd, CALM_END),
        hostile: cpuPercent(hostileResult.cpu.calmEnd, hostileResult.cpu.hostileEnd, HOSTILE_END - CALM_END),
        after: cpuPercent(hostileResult.cpu.hostileEnd, cpuEnd, SOAK_MS - HOSTILE_END),
        loadGenerator: ((nodeCpu.user + nodeCpu.system) / 1000 / SOAK_MS) * 100,
      },
      hostile: hostileResult,
    };
  } finally {
    measuring = false;
    while (local.length > 0) {
      const stop = local.pop();
      if (stops.includes(stop)) stops.splice(stops.indexOf(stop), 1);
      try {
        await stop();
      } catch {
        // Best effort.
      }
    }
  }
}

// The optimised build of the embedded broker, as bench/broker.mjs uses.
process.env.DOMVIA_SERVER_BIN ??= `${repoRoot}target/server/domvia-server`;

const BROKERS = {
  embedded: {
    describe: `domvia-server ${process.env.DOMVIA_SERVER_BIN} (in-memory DB, default limits: client events 10/s per connection; DOMVIA_MAX_CONNECTIONS_PER_IP=0)`,
    available: () => existsSync(process.env.DOMVIA_SERVER_BIN),
    missing: `no server binary at ${process.env.DOMVIA_SERVER_BIN}: cargo build --profile server -p domvia-server`,
    required: true,
    healthPath: "/healthz",
    // No per-IP cap for the bench's own 1,000 loopback clients (the variable is
    // ignored by servers that have no cap).
    async start() {
      const server = await startServer({ DOMVIA_MAX_CONNECTIONS_PER_IP: "0" });
      return { port: server.port, stop: () => server.stop() };
    },
  },
  sockudo: {
    describe: `sockudo ${SOCKUDO_VERSION}, one node, ${sockudoBinary}, rate limiter off, no connection cap, client-event limit off`,
    available: sockudoInstalled,
    missing: `not installed at ${sockudoBinary} (bash scripts/setup installs it)`,
    required: false,
    healthPath: "/up",
    // As bench/broker.mjs: its HTTP/WebSocket rate limiter (100 requests a
    // minute) and the app's 100-connection cap off.
    async start() {
      const node = await startSockudo({
        env: { RATE_LIMITER_ENABLED: "false", SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS: "0" },
      });
      return { port: node.port, stop: () => node.stop() };
    },
  },
};

const loadStart = os.loadavg();
const started = new Date();
const measured = [];
const notes = [];
try {
  for (const name of BROKER_NAMES) {
    const broker = BROKERS[name];
    if (!broker.available()) {
      if (broker.required) throw new Error(`${name}: ${broker.missing}`);
      const note = `${name}: ${broker.missing}, not measured`;
      notes.push(note);
      console.error(`# ${note}`);
      continue;
    }
    console.error(`# starting ${name} ...`);
    const running = await broker.start();
    stops.push(running.stop);
    try {
      const { pid, exe } = processListeningOn(running.port);
      const results = await soak({ name, port: running.port, pid, healthPath: broker.healthPath });
      measured.push({ name, describe: broker.describe, exe, results });
    } finally {
      if (stops.includes(running.stop)) stops.splice(stops.indexOf(running.stop), 1);
      await running.stop();
    }
  }
} catch (error) {
  console.error(`soak failed: ${error.stack ?? error}`);
  await stopAll();
  process.exit(1);
}
clearTimeout(limitTimer);
const loadEnd = os.loadavg();
const elapsed = (Date.now() - started.getTime()) / 1000;

// The report.
const f1 = (x) => (x === null || x === undefined ? "-" : x.toFixed(1));
const f2 = (x) => (x === null || x === undefined ? "-" : x.toFixed(2));
const mib = (kib) => (kib === null || kib === undefined ? "-" : (kib / 1024).toFixed(1));
const lat = (s) => (s ? `${f2(s.p50)} / ${f2(s.p99)}` : "-");
const ratio = (a, b) => (a === null || b === null || a === undefined || b === undefined || b === 0 ? "-" : f2(a / b));
const latRatio = (a, b) => (a && b ? `${ratio(a.p50, b.p50)} / ${ratio(a.p99, b.p99)}` : "-");
const both = measured.length === 2;
const [A, B] = measured.map((m) => m.results);

const command = `node bench/soak.mjs ${process.argv.slice(2).join(" ")}`.trim();
console.log(`# soak: \`${command}\`, ${started.toISOString()}, ${Math.round(elapsed)} s in all`);
console.log(
  `# machine: ${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}), ${Math.round(os.totalmem() / 2 ** 30)} GiB, ` +
    `Node ${process.version}; load average ${loadStart.map(f2).join(" ")} at the start, ${loadEnd.map(f2).join(" ")} at the end ` +
    `(shared machine: other load ${loadStart[0] > 0.5 ? "present" : "low"} at the start)`,
);
console.log(
  `# load: ${CLIENTS} pusher-js 8.6 clients in one Node process, ${ROOMS} private rooms x ${Math.floor(CLIENTS / ROOMS)}` +
    `; ${REST_RATE} REST triggers/s (pusher 5.3, keep-alive) round-robin over the rooms + ${CLIENT_RATE} client events/s` +
    ` (one sender per room in turn); ~150 B payloads carrying their send time`,
);
console.log(
  `# phases: calm 0-${CALM_END / 1000} s; hostile ${CALM_END / 1000}-${HOSTILE_END / 1000} s (${IDLE_SOCKETS} idle raw WebSockets, ` +
    `then ${SLOW_LORIS} slow-loris connections sending a header byte every ${SLOW_LORIS_BYTE_MS / 1000} s, from ${HOSTILE_FROM}); ` +
    `after ${HOSTILE_END / 1000}-${SOAK_MS / 1000} s (hostile sockets closed). Health probed on a fresh connection every ` +
    `${HEALTH_EVERY_MS} ms; VmRSS every ${RSS_EVERY_MS / 1000} s`,
);
for (const m of measured) console.log(`# ${m.name}: ${m.describe}; pid ${m.results.pid} (${m.exe})`);
for (const note of notes) console.log(`# ${note}`);
console.log("# latency: ms from the send (REST call / client trigger) to each receiver's handler, p50 / p99");
console.log();

const header = ["measure", ...measured.map((m) => m.name)];
if (both) header.push(`${measured[0].name} / ${measured[1].name}`);
console.log(`| ${header.join(" | ")} |\n| --- |${" ---: |".repeat(header.length - 1)}`);
const row = (label, format, compare) => {
  const cells = [label, ...measured.map((m) => format(m.results))];
  if (both) cells.push(compare ? compare(A, B) : "");
  console.log(`| ${cells.join(" | ")} |`);
};
for (let p = 0; p < 3; p++)
  row(
    `fan-out latency, ${PHASES[p]} (ms)`,
    (r) => lat(r.latency.byPhase[p]),
    (a, b) => latRatio(a.latency.byPhase[p], b.latency.byPhase[p]),
  );
row(
  "fan-out latency, whole soak (ms)",
  (r) => lat(r.latency.all),
  (a, b) => latRatio(a.latency.all, b.latency.all),
);
row(
  "fan-out latency, whole soak, max (ms)",
  (r) => f1(r.latency.all?.max),
  (a, b) => ratio(a.latency.all?.max, b.latency.all?.max),
);
row(
  "last receiver of an event, whole soak (ms)",
  (r) => lat(r.latency.lastReceiverAll),
  (a, b) => latRatio(a.latency.lastReceiverAll, b.latency.lastReceiverAll),
);
row("deliveries: delivered / expected", (r) => `${r.deliveries.delivered} / ${r.deliveries.expected}`);
row(
  "lost / duplicated / misrouted deliveries",
  (r) => `${r.deliveries.lost} / ${r.deliveries.duplicates} / ${r.deliveries.misrouted}`,
);
row(
  "send errors (REST / client event), reconnects, pusher:error",
  (r) => `${r.sent.restErrors} / ${r.sent.clientEventErrors}, ${r.deliveries.reconnects}, ${r.deliveries.pusherErrors}`,
);
for (let p = 0; p < 2; p++)
  row(
    `health (${measured.map((m) => m.results.health.path).join(", ")}), ${PHASES[p]} (ms; failures)`,
    (r) => `${lat(r.health.byPhase[p])}; ${r.health.failuresByPhase[p]}`,
    (a, b) => latRatio(a.health.byPhase[p], b.health.byPhase[p]),
  );
row(
  "RSS empty / with the clients (MiB)",
  (r) => `${mib(r.rssKiB.empty)} / ${mib(r.rssKiB.start)}`,
  (a, b) => `${ratio(a.rssKiB.empty, b.rssKiB.empty)} / ${ratio(a.rssKiB.start, b.rssKiB.start)}`,
);
row(
  "RSS max / end (MiB)",
  (r) => `${mib(r.rssKiB.max)} / ${mib(r.rssKiB.end)}`,
  (a, b) => `${ratio(a.rssKiB.max, b.rssKiB.max)} / ${ratio(a.rssKiB.end, b.rssKiB.end)}`,
);
row(
  `RSS slope, calm after ${WARMUP_MS / 1000} s warm-up (KiB/min)`,
  (r) => f1(r.rssKiB.slopeCalmKiBPerMinute),
);
row(
  "RSS per subscribed client (KiB)",
  (r) => f1(r.rssKiB.perClient),
  (a, b) => ratio(a.rssKiB.perClient, b.rssKiB.perClient),
);
row(
  "RSS per idle WebSocket (KiB)",
  (r) => f1(r.rssKiB.perIdleSocket),
  (a, b) => ratio(a.rssKiB.perIdleSocket, b.rssKiB.perIdleSocket),
);
row("RSS per slow-loris connection (KiB)", (r) => f1(r.rssKiB.perSlowLoris));
row(
  `slow-loris held at +5 s / +15 s / +30 s / window end (of ${SLOW_LORIS})`,
  (r) => {
    const s = r.hostile.slowLoris;
    return `${s.held["5s"] ?? "-"} / ${s.held["15s"] ?? "-"} / ${s.held["30s"] ?? "-"} / ${s.held.end} (${Math.round(r.hostile.slowLorisSeconds)} s)`;
  },
);
row("slow-loris closed by the server after (ms, p50 / max)", (r) => {
  const s = r.hostile.slowLoris.closedAfterMs;
  return s ? `${Math.round(s.p50)} / ${Math.round(s.max)} (${s.n})` : "none closed";
});
row(`idle WebSockets opened / open at window end (of ${IDLE_SOCKETS})`, (r) => {
  const s = r.hostile.idle;
  return `${s.opened} / ${s.open}`;
});
row(
  "server CPU, % of one core: calm / hostile / after",
  (r) => `${f1(r.cpuPercent.calm)} / ${f1(r.cpuPercent.hostile)} / ${f1(r.cpuPercent.after)}`,
  (a, b) => ratio(a.cpuPercent.calm, b.cpuPercent.calm),
);
row("load generator (this Node process) CPU, % of one core", (r) => f1(r.cpuPercent.loadGenerator));
console.log();

for (const m of measured) {
  const r = m.results;
  console.log(`${m.name}, minute by minute (by send time):\n`);
  console.log("| minute | deliveries | p50 / p99 / max (ms) | lost | health p50 / p99 (ms) | RSS at the minute's end (MiB) |");
  console.log("| ---: | ---: | ---: | ---: | ---: | ---: |");
  r.latency.byMinute.forEach((s, i) => {
    const cells = [
      i + 1,
      s?.n ?? 0,
      s ? `${f2(s.p50)} / ${f2(s.p99)} / ${f1(s.max)}` : "-",
      r.latency.lostByMinute[i],
      lat(r.health.byMinute[i]),
      mib(r.rssKiB.byMinute[i]),
    ];
    console.log(`| ${cells.join(" | ")} |`);
  });
  console.log(`\nRSS samples (s, MiB): ${r.rssKiB.samples.map(([s, k]) => `${s}:${mib(k)}`).join(" ")}\n`);
}

console.log("## results as JSON");
console.log(
  JSON.stringify(
    {
      command,
      started: started.toISOString(),
      seconds: elapsed,
      node: process.version,
      cores: os.cpus().length,
      loadAverage: { start: loadStart, end: loadEnd },
      options: { minutes: MINUTES, clients: CLIENTS, rooms: ROOMS, rate: REST_RATE, clientRate: CLIENT_RATE },
      brokers: Object.fromEntries(measured.map((m) => [m.name, { describe: m.describe, exe: m.exe, ...m.results }])),
      notMeasured: notes,
    },
    (key, value) => (key === "samples" ? undefined : value),
    2,
  ),
);
process.exit(0);
