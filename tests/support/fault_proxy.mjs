// A TCP proxy on a free loopback port in front of a target port that injects
// faults into what it forwards, decided by a seeded generator: chunks
// delayed, a direction stalled for a while, connections cut (both sockets
// destroyed, sometimes after writing only part of a chunk: a cut mid-frame),
// and, for WebSocket connections, the broker's earlier `message.created`
// frames written again into a reconnected socket right after it subscribed
// (what a broker or a relay that delivers at least once does after a
// reconnect). It only pipes bytes, so HTTP requests and WebSocket upgrades
// pass through unchanged; it reads the broker's frames (unmasked, and the
// embedded broker negotiates no compression) but never rewrites them.
//
// The seed decides every fault; timing still interleaves with the page and
// the servers, so one seed replays the same kinds and rates of faults, not
// the same byte positions. DOMVIA_FAULT_SEED picks the seed (see faultSeed).
import { createServer, connect } from "node:net";
import { once } from "node:events";

/** A small seeded generator (mulberry32): uniform floats in [0, 1). */
export function mulberry32(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The run's seed: DOMVIA_FAULT_SEED, else a fresh one (print it with any failure). */
export function faultSeed() {
  const given = process.env.DOMVIA_FAULT_SEED;
  if (given === undefined || given === "") return Math.floor(Math.random() * 2 ** 31);
  const seed = Number(given);
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`DOMVIA_FAULT_SEED must be a whole number, not ${given}`);
  return seed;
}

/** A seed of its own for each proxy of a run: the run's seed mixed with the proxy's name. */
export function deriveSeed(seed, name) {
  let hash = seed >>> 0;
  for (const char of name) hash = Math.imul(hash ^ char.charCodeAt(0), 0x01000193) >>> 0;
  return hash;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Chunks buffered per direction before the proxy stops reading that side. */
const HIGH_WATER_CHUNKS = 64;
/** A cut that is due happens at the next chunk, or after this long without one. */
const CUT_GRACE_MS = 300;
/** Earlier `message.created` frames kept for replay. */
const REPLAY_MEMORY = 32;

/**
 * The faults, each off unless given. Probabilities are per chunk forwarded
 * (either direction), except `lifetimeMs` (per connection) and `replay` (per
 * reconnected WebSocket).
 * - delay: { probability, maxMs }: hold the chunk 1..maxMs (order kept).
 * - stall: { probability, minMs, maxMs }: stop this direction that long.
 * - cut: { probability }: cut the connection at this chunk.
 * - lifetimeMs: [min, max]: cut each connection once it is that old.
 * - midChunk: the share of cuts at a chunk that first write part of it.
 * - cutResponse: { probability }: cut before forwarding the first chunk the
 *   target answers (an HTTP request the target handled, answer lost).
 * - replay: { probability, maxFrames }: on a reconnected WebSocket, after
 *   the broker's subscription_succeeded, write 1..maxFrames earlier
 *   `message.created` frames again.
 * @typedef {object} Faults
 */

/**
 * Starts a proxy to 127.0.0.1:`targetPort`. Faults are off until
 * `unleash()`; `calm()` turns them off again (connections stay up, held
 * chunks go on at once). `stop()` closes the listener and every connection.
 */
export async function startFaultProxy(targetPort, { name, seed, faults = {} }) {
  const random = mulberry32(seed);
  const chance = (probability) => probability !== undefined && random() < probability;
  const between = (min, max) => min + Math.floor(random() * (max - min + 1));
  let active = false;
  const connections = new Set();
  // Delays and stalls in progress: calm() and stop() end them at once.
  const naps = new Set();
  const nap = (ms) =>
    new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        naps.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      naps.add(wake);
    });
  const wakeAll = () => {
    for (const wake of [...naps]) wake();
  };
  const replayable = [];
  const counters = {
    connections: 0,
    cuts: 0,
    midChunkCuts: 0,
    responseCuts: 0,
    delays: 0,
    stalls: 0,
    replayedFrames: 0,
    bytes: 0,
  };

  const server = createServer((client) => {
    counters.connections++;
    const index = counters.connections;
    const target = connect(targetPort, "127.0.0.1");
    const connection = { client, target, closed: false, cutDue: false, timers: new Set() };
    connections.add(connection);
    client.setNoDelay(true);
    target.setNoDelay(true);

    const close = () => {
      if (connection.closed) return;
      connection.closed = true;
      for (const timer of connection.timers) clearTimeout(timer);
      connections.delete(connection);
      client.destroy();
      target.destroy();
    };
    const cut = () => {
      if (connection.closed) return;
      counters.cuts++;
      close();
    };
    const later = (ms, run) => {
      const timer = setTimeout(() => {
        connection.timers.delete(timer);
        run();
      }, ms);
      connection.timers.add(timer);
    };
    connection.arm = () => {
      if (faults.lifetimeMs === undefined) return;
      later(between(...faults.lifetimeMs), () => {
        if (!active) return;
        connection.cutDue = true;
        later(CUT_GRACE_MS, () => active && connection.cutDue && cut());
      });
    };
    if (active) connection.arm();

    const frames = frameReader();
    const pipe = (from, to, toClient) => {
      const queue = [];
      let pumping = false;
      let firstAnswer = toClient;
      const pump = async () => {
        pumping = true;
        while (queue.length > 0 && !connection.closed) {
          const chunk = queue.shift();
          if (queue.length < HIGH_WATER_CHUNKS / 2) from.resume();
          if (active) {
            if (firstAnswer && chance(faults.cutResponse?.probability)) {
              counters.responseCuts++;
              cut();
              break;
            }
            if (connection.cutDue || chance(faults.cut?.probability)) {
              if (chunk.length > 1 && chance(faults.midChunk)) {
                counters.midChunkCuts++;
                to.write(chunk.subarray(0, between(1, chunk.length - 1)));
              }
              cut();
              break;
            }
            if (chance(faults.stall?.probability)) {
              counters.stalls++;
              await nap(between(faults.stall.minMs, faults.stall.maxMs));
            } else if (chance(faults.delay?.probability)) {
              counters.delays++;
              await nap(between(1, faults.delay.maxMs));
            }
            if (connection.closed) break;
          }
          firstAnswer = false;
          counters.bytes += chunk.length;
          to.write(chunk);
          if (toClient) {
            const replay = frames.read(chunk);
            if (replay.subscribed && index > 1 && active && chance(faults.replay?.probability)) {
              const count = Math.min(replayable.length, between(1, faults.replay.maxFrames));
              for (const frame of replayable.slice(replayable.length - count)) {
                if (frames.atBoundary()) {
                  to.write(frame);
                  counters.replayedFrames++;
                }
              }
            }
            for (const frame of replay.messages) {
              replayable.push(frame);
              if (replayable.length > REPLAY_MEMORY) replayable.shift();
            }
          }
        }
        pumping = false;
      };
      from.on("data", (chunk) => {
        queue.push(chunk);
        if (queue.length >= HIGH_WATER_CHUNKS) from.pause();
        if (!pumping) pump();
      });
      const forwarded = async () => {
        while ((pumping || queue.length > 0) && !connection.closed) await sleep(5);
      };
      // A side that ended ends the other once what it sent is through (a
      // delayed last chunk is delivered, not lost by the proxy).
      from.on("end", async () => {
        await forwarded();
        if (!connection.closed) to.end();
      });
      from.on("close", async () => {
        await forwarded();
        close();
      });
      from.on("error", close);
    };
    pipe(client, target, false);
    pipe(target, client, true);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  return {
    name,
    seed,
    port,
    url: `http://127.0.0.1:${port}`,
    /** Starts injecting faults. */
    unleash() {
      active = true;
      for (const connection of connections) connection.arm();
    },
    /** Stops injecting faults; what is held goes on at once. */
    calm() {
      active = false;
      for (const connection of connections) connection.cutDue = false;
      wakeAll();
    },
    counters: () => ({ ...counters }),
    describe: () => `${name} (seed ${seed}): ${JSON.stringify(counters)}`,
    async stop() {
      active = false;
      wakeAll();
      for (const connection of [...connections]) {
        connection.closed = true;
        for (const timer of connection.timers) clearTimeout(timer);
        connection.client.destroy();
        connection.target.destroy();
      }
      connections.clear();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * Reads a WebSocket server's side of a connection: the HTTP answer, then
 * frames. `read(chunk)` tells whether a subscription_succeeded passed and
 * hands back the complete `message.created` text frames (raw bytes);
 * `atBoundary()` whether the bytes so far end at a frame's end. A connection
 * whose answer is not `101` is left alone.
 */
function frameReader() {
  let head = Buffer.alloc(0);
  let upgraded = null;
  let pending = Buffer.alloc(0);
  return {
    atBoundary: () => upgraded === true && pending.length === 0,
    read(chunk) {
      const out = { subscribed: false, messages: [] };
      if (upgraded === false) return out;
      if (upgraded === null) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) {
          if (head.length > 16_384) upgraded = false;
          return out;
        }
        upgraded = head.subarray(0, 12).toString("latin1") === "HTTP/1.1 101";
        if (!upgraded) return out;
        chunk = head.subarray(end + 4);
        head = Buffer.alloc(0);
      }
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        if (pending.length < 2) break;
        const opcode = pending[0] & 0x0f;
        let length = pending[1] & 0x7f;
        let offset = 2;
        if (length === 126) {
          if (pending.length < 4) break;
          length = pending.readUInt16BE(2);
          offset = 4;
        } else if (length === 127) {
          if (pending.length < 10) break;
          length = Number(pending.readBigUInt64BE(2));
          offset = 10;
        }
        if (pending[1] & 0x80) offset += 4;
        if (pending.length < offset + length) break;
        const frame = pending.subarray(0, offset + length);
        if (opcode === 1 && (pending[0] & 0x80) !== 0) {
          const text = frame.subarray(offset).toString("utf8");
          if (text.includes("pusher_internal:subscription_succeeded")) out.subscribed = true;
          if (text.includes('"message.created"')) out.messages.push(Buffer.from(frame));
        }
        pending = pending.subarray(offset + length);
      }
      return out;
    },
  };
}
