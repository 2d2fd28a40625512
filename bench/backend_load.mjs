// HTTP load on the chat backend of the embedded server (domvia-server): is it
// held back by its one SQLite connection? Concurrent history reads and message
// sends against a real SQLite file (WAL, synchronous=FULL), with a reads-only
// and a writes-only run for reference.
//
//   node bench/backend_load.mjs [--seconds 20] [--readers 16] [--writers 4]
//                               [--repeat 1] [--history 500]
//                               [--bin PATH | --bin LABEL=PATH ...]
//
// Needs the optimised server: `cargo build --profile server -p domvia-server`
// (target/server/domvia-server; DOMVIA_SERVER_BIN or --bin override it). Give
// --bin more than once to compare binaries side by side on the same data: each
// repeat runs every binary, in a rotating order, so drift in the machine's
// load falls on all of them alike.
//
// Setup, once: a server on a free 127.0.0.1 port with an SQLite file in a
// temporary directory, rate limits off (DOMVIA_RATE_LIMITS=off) and no
// per-IP connection cap; 20 users signed in (bearer tokens), 10 group rooms
// with all 20 as members, each with --history messages sent through the API.
// The server is then stopped (which checkpoints the WAL) and the file kept as
// a template: every measured server starts on a fresh copy of it.
//
// Per server, three phases of --seconds each (the first second of each is a
// warm-up and not counted): mixed (--readers and --writers at once),
// reads-only, writes-only. A reader loops `GET /api/rooms/{id}/messages?limit=50`
// over the rooms, every tenth request `GET /api/rooms` instead; a writer loops
// `POST /api/rooms/{id}/messages` (JSON, a fresh client_id each). Each worker
// is one request at a time on a keep-alive agent. Reported per phase:
// requests/s and p50/p99 latency for reads and writes apart, non-2xx and
// failed requests, the server's CPU (user + system from /proc, 100% = one
// core) and this client's. With --repeat N the table gives the median of the
// N runs of each figure. The client shares the machine with the server, so
// its CPU is reported too: near 100% it, not the server, sets the pace.
//
// Exits non-zero if setup fails or any request fails; every server and the
// temporary directory are removed when it ends, fails or is interrupted.
import { copyFileSync, existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { Agent, request as httpRequest } from "node:http";
import os from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { repoRoot, startServer } from "../tests/support/harness.mjs";
import { cpuSeconds, processListeningOn } from "./support/proc.mjs";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "20" },
    readers: { type: "string", default: "16" },
    writers: { type: "string", default: "4" },
    repeat: { type: "string", default: "1" },
    history: { type: "string", default: "500" },
    bin: { type: "string", multiple: true },
  },
  strict: true,
});
const count = (name, { min = 1, integer = true } = {}) => {
  const value = Number(args[name]);
  if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value)))
    throw new Error(`--${name} must be ${integer ? "an integer" : "a number"} >= ${min}, not ${args[name]}`);
  return value;
};
const SECONDS = count("seconds", { min: 2, integer: false });
const READERS = count("readers", { min: 0 });
const WRITERS = count("writers", { min: 0 });
const REPEAT = count("repeat");
const HISTORY = count("history", { min: 0 });
if (READERS + WRITERS === 0) throw new Error("--readers and --writers cannot both be 0");

const USERS = 20;
const ROOMS = 10;
const PAGE = 50;
const WARMUP_S = 1;
const REQUEST_TIMEOUT_MS = 15_000;
const SEED_CONCURRENCY = 8;

const BINARIES = (args.bin ?? [process.env.DOMVIA_SERVER_BIN ?? `${repoRoot}target/server/domvia-server`]).map(
  (spec, index) => {
    const at = spec.indexOf("=");
    const path = at > 0 ? spec.slice(at + 1) : spec;
    const label = at > 0 ? spec.slice(0, at) : args.bin?.length > 1 ? `bin${index + 1}` : "server";
    return { label, path };
  },
);
for (const { path } of BINARIES)
  if (!existsSync(path))
    throw new Error(`no server binary at ${path}: run cargo build --profile server -p domvia-server`);

const PHASES = [
  { name: "mixed", readers: READERS, writers: WRITERS },
  { name: "reads only", readers: READERS, writers: 0 },
  { name: "writes only", readers: 0, writers: WRITERS },
].filter((phase) => phase.readers + phase.writers > 0);

// Setup, then (3 phases + a start) per server, with room to spare.
const TIME_LIMIT_MS = 180_000 + REPEAT * BINARIES.length * (PHASES.length * SECONDS + 30) * 1000;

// ---------------------------------------------------------------------------
// HTTP

/**
 * One request to the server at `target` (`{host, port, agent}`), resolving
 * with `{status, body}` (the body as text). Rejects on a network failure or
 * after REQUEST_TIMEOUT_MS.
 */
function call(target, method, path, { token, body } = {}) {
  const data = body === undefined ? undefined : JSON.stringify(body);
  const headers = { accept: "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  if (data !== undefined) {
    headers["content-type"] = "application/json";
    headers["content-length"] = Buffer.byteLength(data);
  }
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: target.host, port: target.port, method, path, headers, agent: target.agent, timeout: REQUEST_TIMEOUT_MS },
      (res) => {
        const chunks = [];
        res.on("data", (chunk) => chunks.push(chunk));
        res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on("error", reject);
    req.end(data);
  });
}

/** `call`, expecting `status`; resolves with the parsed JSON body. */
async function expectJson(target, method, path, status, options) {
  const res = await call(target, method, path, options);
  if (res.status !== status) throw new Error(`${method} ${path}: expected ${status}, got ${res.status}: ${res.body}`);
  return JSON.parse(res.body);
}

function targetOf(server, maxSockets) {
  return {
    host: "127.0.0.1",
    port: server.port,
    agent: new Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets }),
  };
}

// ---------------------------------------------------------------------------
// Servers and cleanup

const running = new Set();
let workDir = null;

async function start(binary, database) {
  const previous = process.env.DOMVIA_SERVER_BIN;
  process.env.DOMVIA_SERVER_BIN = binary;
  let server;
  try {
    server = await startServer({
      DOMVIA_DB: database,
      DOMVIA_RATE_LIMITS: "off",
      DOMVIA_MAX_CONNECTIONS_PER_IP: "0",
    });
  } finally {
    if (previous === undefined) delete process.env.DOMVIA_SERVER_BIN;
    else process.env.DOMVIA_SERVER_BIN = previous;
  }
  running.add(server);
  try {
    server.pid = processListeningOn(server.port).pid;
  } catch (error) {
    await stop(server);
    throw error;
  }
  return server;
}

async function stop(server) {
  running.delete(server);
  const code = await server.stop();
  if (code !== 0) throw new Error(`domvia-server exited with ${code}:\n${server.stderr()}`);
}

async function cleanup() {
  await Promise.allSettled([...running].map((server) => server.stop()));
  running.clear();
  if (workDir) rmSync(workDir, { recursive: true, force: true });
  workDir = null;
}

for (const signal of ["SIGINT", "SIGTERM"])
  process.once(signal, () => {
    console.error(`\n${signal}: stopping`);
    cleanup().finally(() => process.exit(130));
  });

// ---------------------------------------------------------------------------
// Setup: users, rooms, history

/** Runs `jobs` (functions returning promises) `concurrency` at a time. */
async function pool(jobs, concurrency) {
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) await jobs[next++]();
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, jobs.length) }, worker));
}

/** Seeds the template database with `binary`; resolves with the users' tokens and the room ids. */
async function seed(binary, database) {
  const server = await start(binary, database);
  const target = targetOf(server, SEED_CONCURRENCY);
  try {
    const users = [];
    for (let i = 0; i < USERS; i++) {
      const name = `load-${String(i).padStart(2, "0")}`;
      const { user, token } = await expectJson(target, "POST", "/api/session", 200, { body: { name } });
      users.push({ id: user.id, token });
    }
    const rooms = [];
    for (let i = 0; i < ROOMS; i++) {
      const creator = users[i % USERS];
      const room = await expectJson(target, "POST", "/api/rooms", 201, {
        token: creator.token,
        body: { kind: "group", name: `load room ${i}`, member_ids: users.map((user) => user.id) },
      });
      if (room.members.length !== USERS) throw new Error(`room ${i} has ${room.members.length} members`);
      rooms.push(room.room_id);
    }
    const jobs = [];
    for (let n = 0; n < HISTORY; n++)
      for (let r = 0; r < ROOMS; r++) {
        const sender = users[(n + r) % USERS];
        jobs.push(() =>
          expectJson(target, "POST", `/api/rooms/${rooms[r]}/messages`, 201, {
            token: sender.token,
            body: { client_id: `seed-${r}-${n}`, text: `history message ${n} of room ${r}: ${"lorem ipsum ".repeat(4)}` },
          }),
        );
      }
    await pool(jobs, SEED_CONCURRENCY);
    const page = await expectJson(target, "GET", `/api/rooms/${rooms[0]}/messages?limit=${PAGE}`, 200, {
      token: users[0].token,
    });
    if (page.messages.length !== Math.min(PAGE, HISTORY)) throw new Error(`a history page has ${page.messages.length} messages`);
    return { users, rooms };
  } finally {
    target.agent.destroy();
    await stop(server);
  }
}

// ---------------------------------------------------------------------------
// Load

function summary(samples) {
  if (samples.length === 0) return { n: 0, p50: null, p99: null };
  const sorted = Float64Array.from(samples).sort();
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { n: sorted.length, p50: at(0.5), p99: at(0.99) };
}

/**
 * One phase against `server`: `readers` and `writers` workers for SECONDS.
 * Requests that start after the warm-up and before the end are counted.
 */
async function phase(server, data, { readers, writers }, runTag) {
  const target = targetOf(server, readers + writers);
  const begin = performance.now();
  const measureFrom = begin + WARMUP_S * 1000;
  const end = begin + SECONDS * 1000;
  const reads = [];
  const writes = [];
  const rooms = [];
  const failures = { non2xx: 0, errors: 0, first: null };
  let cpuAt = null;
  let clientAt = null;
  const sample = () => ({ at: performance.now(), server: cpuSeconds(server.pid), client: process.cpuUsage() });
  const warmup = setTimeout(() => {
    cpuAt = sample();
    clientAt = cpuAt.client;
  }, WARMUP_S * 1000);

  const timed = async (list, method, path, token, body) => {
    const t0 = performance.now();
    try {
      const res = await call(target, method, path, { token, body });
      const t1 = performance.now();
      if (res.status < 200 || res.status > 299) {
        failures.non2xx++;
        failures.first ??= `${method} ${path}: ${res.status} ${res.body.slice(0, 200)}`;
      } else if (t0 >= measureFrom) list.push(t1 - t0);
    } catch (error) {
      failures.errors++;
      failures.first ??= `${method} ${path}: ${error.message}`;
    }
  };
  const reader = async (i) => {
    const { token } = data.users[i % USERS];
    for (let n = 0; performance.now() < end; n++) {
      if (n % 10 === 9) await timed(rooms, "GET", "/api/rooms", token);
      else {
        const room = data.rooms[(i + n) % ROOMS];
        await timed(reads, "GET", `/api/rooms/${room}/messages?limit=${PAGE}`, token);
      }
    }
  };
  const writer = async (j) => {
    const user = data.users[(j * 7 + 3) % USERS];
    for (let n = 0; performance.now() < end; n++) {
      const room = data.rooms[(j + n) % ROOMS];
      await timed(writes, "POST", `/api/rooms/${room}/messages`, user.token, {
        client_id: `${runTag}-w${j}-${n}`,
        text: `load message ${n} from writer ${j}`,
      });
    }
  };
  try {
    await Promise.all([
      ...Array.from({ length: readers }, (_, i) => reader(i)),
      ...Array.from({ length: writers }, (_, j) => writer(j)),
    ]);
  } finally {
    clearTimeout(warmup);
    target.agent.destroy();
  }
  const last = sample();
  const seconds = cpuAt ? (last.at - cpuAt.at) / 1000 : Number.NaN;
  const client = cpuAt
    ? (last.client.user + last.client.system - clientAt.user - clientAt.system) / 1e6 / seconds
    : Number.NaN;
  // Reads are history pages and room lists together; each kind is also kept apart.
  const allReads = reads.concat(rooms);
  const window = SECONDS - WARMUP_S;
  return {
    reads: { ...summary(allReads), rate: allReads.length / window },
    history: { ...summary(reads), rate: reads.length / window },
    roomList: { ...summary(rooms), rate: rooms.length / window },
    writes: { ...summary(writes), rate: writes.length / window },
    serverCpu: cpuAt && last.server !== null ? (last.server - cpuAt.server) / seconds : Number.NaN,
    clientCpu: client,
    failures,
  };
}

// ---------------------------------------------------------------------------
// Report

const median = (values) => {
  const finite = values.filter((value) => value !== null && Number.isFinite(value)).sort((a, b) => a - b);
  if (finite.length === 0) return null;
  const mid = finite.length >> 1;
  return finite.length % 2 ? finite[mid] : (finite[mid - 1] + finite[mid]) / 2;
};
const rate = (value) => (value === null ? "-" : Math.round(value).toLocaleString("en-US"));
const ms = (value) => (value === null ? "-" : value < 10 ? value.toFixed(2) : value.toFixed(1));
const percent = (value) => (value === null ? "-" : `${Math.round(value * 100)}%`);

function row(label, phaseName, runs) {
  const pick = (fn) => median(runs.map(fn));
  const failed = runs.reduce((sum, run) => sum + run.failures.non2xx + run.failures.errors, 0);
  return `| ${label} | ${phaseName} | ${rate(pick((r) => (r.reads.n ? r.reads.rate : null)))} | ${ms(pick((r) => r.reads.p50))} | ${ms(pick((r) => r.reads.p99))} | ${ms(pick((r) => r.roomList.p99))} | ${rate(pick((r) => (r.writes.n ? r.writes.rate : null)))} | ${ms(pick((r) => r.writes.p50))} | ${ms(pick((r) => r.writes.p99))} | ${percent(pick((r) => r.serverCpu))} | ${percent(pick((r) => r.clientCpu))} | ${failed} |`;
}

// ---------------------------------------------------------------------------

async function main() {
  const command = `node bench/backend_load.mjs ${process.argv.slice(2).join(" ")}`.trim();
  const loadBefore = os.loadavg();
  workDir = mkdtempSync(join(os.tmpdir(), "domvia-backend-load-"));
  const template = join(workDir, "template.sqlite3");
  console.error(
    `${command}\n${os.cpus().length} cores, load average ${loadBefore.map((x) => x.toFixed(2)).join(" ")}; ` +
      `seeding ${USERS} users, ${ROOMS} rooms x ${HISTORY} messages with ${BINARIES[0].label}`,
  );
  const seedStart = performance.now();
  const data = await seed(BINARIES[0].path, template);
  const bytes = statSync(template).size + (existsSync(`${template}-wal`) ? statSync(`${template}-wal`).size : 0);
  console.error(`seeded in ${((performance.now() - seedStart) / 1000).toFixed(1)} s (${(bytes / 1024).toFixed(0)} KiB)`);

  const results = new Map(BINARIES.map(({ label }) => [label, new Map(PHASES.map(({ name }) => [name, []]))]));
  for (let r = 0; r < REPEAT; r++) {
    for (let b = 0; b < BINARIES.length; b++) {
      const binary = BINARIES[(b + r) % BINARIES.length];
      const database = join(workDir, `run-${r}-${binary.label}.sqlite3`);
      copyFileSync(template, database);
      if (existsSync(`${template}-wal`)) copyFileSync(`${template}-wal`, `${database}-wal`);
      const server = await start(binary.path, database);
      try {
        for (const p of PHASES) {
          const result = await phase(server, data, p, `r${r}-${binary.label}-${p.name.replace(/ /g, "")}`);
          results.get(binary.label).get(p.name).push(result);
          const f = result.failures;
          console.error(
            `run ${r + 1}/${REPEAT} ${binary.label} ${p.name}: reads ${rate(result.reads.rate)}/s p50 ${ms(result.reads.p50)} p99 ${ms(result.reads.p99)} ms; ` +
              `writes ${rate(result.writes.rate)}/s p50 ${ms(result.writes.p50)} p99 ${ms(result.writes.p99)} ms; ` +
              `server CPU ${percent(result.serverCpu)}, client ${percent(result.clientCpu)}` +
              (f.non2xx + f.errors ? `; FAILED ${f.non2xx} non-2xx, ${f.errors} errors (first: ${f.first})` : ""),
          );
        }
      } finally {
        await stop(server);
        rmSync(database, { force: true });
        rmSync(`${database}-wal`, { force: true });
        rmSync(`${database}-shm`, { force: true });
      }
    }
  }

  const loadAfter = os.loadavg();
  const lines = [
    `\`${command}\` (${BINARIES.map(({ label, path }) => `${label}: ${path}`).join("; ")})`,
    "",
    `${os.cpus().length} cores (${os.cpus()[0]?.model ?? "?"}), Node ${process.version}; load average ${loadBefore.map((x) => x.toFixed(2)).join(" ")} before, ` +
      `${loadAfter.map((x) => x.toFixed(2)).join(" ")} after. ${USERS} users, ${ROOMS} rooms x ${HISTORY} messages, ` +
      `${READERS} readers and ${WRITERS} writers, ${SECONDS} s a phase (${WARMUP_S} s warm-up), ` +
      (REPEAT > 1 ? `medians of ${REPEAT} runs.` : "one run."),
    "",
    "| server | phase | reads/s | read p50 ms | read p99 ms | room list p99 ms | writes/s | write p50 ms | write p99 ms | server CPU | client CPU | failed |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const { label } of BINARIES)
    for (const { name } of PHASES) lines.push(row(label, name, results.get(label).get(name)));
  console.log(lines.join("\n"));
  const failed = [...results.values()].some((phases) =>
    [...phases.values()].some((runs) => runs.some((run) => run.failures.non2xx + run.failures.errors > 0)),
  );
  if (failed) {
    console.error("some requests failed (see above)");
    process.exitCode = 1;
  }
}

const overrun = setTimeout(() => {
  console.error(`backend_load: over its time limit of ${Math.round(TIME_LIMIT_MS / 1000)} s, stopping`);
  cleanup().finally(() => process.exit(1));
}, TIME_LIMIT_MS);
overrun.unref();

try {
  await main();
} catch (error) {
  console.error(`backend_load: ${error.stack ?? error}`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
