// Hostile and nosy clients for the soak bench, written on raw TCP sockets so
// that nothing in between (an HTTP or WebSocket library) hides what the
// server does with them:
// - slowLoris: connections that send a request header one byte at a time and
//   never finish it;
// - idleWebSockets: WebSockets that complete the handshake and then never
//   subscribe or send anything (they answer WebSocket-level pings, as any
//   WebSocket library would, but never the protocol's pusher:ping);
// - healthProber: a fresh connection every few hundred milliseconds asking a
//   health endpoint, timed, as a load balancer's probe would.
import { randomBytes } from "node:crypto";
import { request } from "node:http";
import { connect } from "node:net";

/**
 * `count` connections to `host`:`port` from `localAddress`, each sending a
 * never-ending request header (`GET /healthz HTTP/1.1`, a Host, then an
 * endless `X-Slow: aaaa...`), one byte every `byteEveryMs`, starting at a
 * random offset so the bytes are spread over time. Call `stop()` to close them.
 */
export function slowLoris({ host = "127.0.0.1", port, count, byteEveryMs = 2000, localAddress }) {
  const header = `GET /healthz HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: soak-slow-loris\r\nX-Slow: `;
  const connections = [];
  const startedAt = performance.now();
  for (let i = 0; i < count; i++) {
    const c = { connectedAt: null, closedAt: null, sent: 0, answer: null, error: null, timer: null, socket: null };
    connections.push(c);
    const socket = connect({ host, port, localAddress });
    c.socket = socket;
    socket.setNoDelay(true);
    const sendByte = () => {
      if (socket.destroyed || !socket.writable) return;
      const byte = c.sent < header.length ? header[c.sent] : "a";
      c.sent++;
      socket.write(byte);
    };
    socket.once("connect", () => {
      c.connectedAt = performance.now();
      const first = setTimeout(
        () => {
          sendByte();
          c.timer = setInterval(sendByte, byteEveryMs);
        },
        Math.floor(Math.random() * byteEveryMs),
      );
      c.timer = first;
    });
    socket.on("data", (chunk) => {
      c.answer ??= chunk.toString("latin1").split("\r\n")[0];
    });
    socket.on("error", (error) => {
      c.error ??= error.code ?? error.message;
    });
    socket.once("close", () => {
      c.closedAt = performance.now();
      clearTimeout(c.timer);
      clearInterval(c.timer);
    });
  }
  const connected = () => connections.filter((c) => c.connectedAt !== null).length;
  return {
    count,
    /** Resolves once every connection connected or failed, or after `ms`. */
    async settled(ms = 10_000) {
      const deadline = performance.now() + ms;
      while (performance.now() < deadline) {
        if (connections.every((c) => c.connectedAt !== null || c.closedAt !== null)) return;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    connected,
    /** Connections that connected and the server has not closed. */
    held: () => connections.filter((c) => c.connectedAt !== null && c.closedAt === null).length,
    stats() {
      const closedAfter = connections
        .filter((c) => c.connectedAt !== null && c.closedAt !== null)
        .map((c) => c.closedAt - c.connectedAt);
      const answers = {};
      for (const c of connections) if (c.answer) answers[c.answer] = (answers[c.answer] ?? 0) + 1;
      const errors = {};
      for (const c of connections) if (c.error) errors[c.error] = (errors[c.error] ?? 0) + 1;
      return {
        count,
        connected: connected(),
        neverConnected: connections.filter((c) => c.connectedAt === null).length,
        held: this.held(),
        closedByServer: closedAfter.length,
        closedAfterMs: closedAfter.sort((a, b) => a - b),
        bytesSentMax: Math.max(0, ...connections.map((c) => c.sent)),
        answers,
        errors,
        ranForMs: performance.now() - startedAt,
      };
    },
    stop() {
      for (const c of connections) {
        clearTimeout(c.timer);
        clearInterval(c.timer);
        c.socket.destroy();
      }
    },
  };
}

/** A masked client frame (the server requires masking) with `opcode` and `payload`. */
function clientFrame(opcode, payload) {
  const mask = randomBytes(4);
  const head = Buffer.from([0x80 | opcode, 0x80 | payload.length]);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i % 4];
  return Buffer.concat([head, mask, body]);
}

/** One raw WebSocket that completes the handshake and then idles. */
function idleWebSocket({ host, port, path, localAddress, timeoutMs }) {
  const s = {
    openedAt: null,
    closedAt: null,
    status: null,
    closeCode: null,
    messages: 0,
    pusherPings: 0,
    wsPings: 0,
    error: null,
    socket: null,
  };
  const socket = connect({ host, port, localAddress });
  s.socket = socket;
  const key = randomBytes(16).toString("base64");
  let buffer = Buffer.alloc(0);
  let upgraded = false;
  const handshake = new Promise((resolve) => {
    const timer = setTimeout(() => {
      s.error ??= "handshake timeout";
      socket.destroy();
      resolve();
    }, timeoutMs);
    socket.once("connect", () =>
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: soak-idle\r\n\r\n`,
      ),
    );
    const frames = () => {
      // Server frames are unmasked; lengths up to 64 bits.
      for (;;) {
        if (buffer.length < 2) return;
        const opcode = buffer[0] & 0x0f;
        let length = buffer[1] & 0x7f;
        let offset = 2;
        if (length === 126) {
          if (buffer.length < 4) return;
          length = buffer.readUInt16BE(2);
          offset = 4;
        } else if (length === 127) {
          if (buffer.length < 10) return;
          length = Number(buffer.readBigUInt64BE(2));
          offset = 10;
        }
        if (buffer.length < offset + length) return;
        const payload = buffer.subarray(offset, offset + length);
        buffer = buffer.subarray(offset + length);
        if (opcode === 0x1) {
          s.messages++;
          if (payload.includes("pusher:ping")) s.pusherPings++;
        } else if (opcode === 0x8) {
          s.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        } else if (opcode === 0x9) {
          s.wsPings++;
          if (payload.length <= 125) socket.write(clientFrame(0xa, payload));
        }
      }
    };
    socket.on("data", (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (!upgraded) {
        const end = buffer.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buffer.subarray(0, end).toString("latin1");
        buffer = buffer.subarray(end + 4);
        s.status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
        upgraded = true;
        clearTimeout(timer);
        if (s.status === 101) s.openedAt = performance.now();
        else socket.destroy();
        resolve();
      }
      frames();
    });
    socket.on("error", (error) => {
      s.error ??= error.code ?? error.message;
    });
    socket.once("close", () => {
      s.closedAt = performance.now();
      clearTimeout(timer);
      resolve();
    });
  });
  return { state: s, handshake };
}

/**
 * `count` raw WebSockets to the broker's `/app/{key}` from `localAddress`,
 * opened `concurrency` at a time; resolves once every handshake finished
 * (101, refused or failed). Call `stop()` to close them.
 */
export async function idleWebSockets({
  host = "127.0.0.1",
  port,
  key,
  count,
  localAddress,
  concurrency = 100,
  timeoutMs = 10_000,
}) {
  const path = `/app/${key}?protocol=7&client=soak-idle&version=1`;
  const sockets = [];
  for (let i = 0; i < count; i += concurrency) {
    const batch = [];
    for (let j = i; j < Math.min(count, i + concurrency); j++) {
      const one = idleWebSocket({ host, port, path, localAddress, timeoutMs });
      sockets.push(one.state);
      batch.push(one.handshake);
    }
    await Promise.all(batch);
  }
  const open = () => sockets.filter((s) => s.openedAt !== null && s.closedAt === null).length;
  return {
    count,
    open,
    stats() {
      const statuses = {};
      for (const s of sockets) if (s.status !== 101) statuses[s.status ?? s.error] = (statuses[s.status ?? s.error] ?? 0) + 1;
      const closeCodes = {};
      for (const s of sockets) if (s.closeCode !== null) closeCodes[s.closeCode] = (closeCodes[s.closeCode] ?? 0) + 1;
      return {
        count,
        opened: sockets.filter((s) => s.openedAt !== null).length,
        refusedOrFailed: statuses,
        open: open(),
        closedByServer: sockets.filter((s) => s.openedAt !== null && s.closedAt !== null).length,
        closeCodes,
        pusherPings: sockets.reduce((sum, s) => sum + s.pusherPings, 0),
        wsPings: sockets.reduce((sum, s) => sum + s.wsPings, 0),
      };
    },
    stop() {
      for (const s of sockets) s.socket.destroy();
    },
  };
}

/**
 * GETs `path` on a fresh connection every `everyMs` (never more than
 * `maxInFlight` at once) and reports each answer to `onSample(startedAt,
 * ms, ok)`, with a time-out of `timeoutMs` counted as not ok. Call `stop()`.
 */
export function healthProber({
  host = "127.0.0.1",
  port,
  path,
  everyMs = 200,
  timeoutMs = 5000,
  maxInFlight = 20,
  onSample,
}) {
  let inFlight = 0;
  let skipped = 0;
  const requests = new Set();
  const probe = () => {
    if (inFlight >= maxInFlight) {
      skipped++;
      return;
    }
    inFlight++;
    const startedAt = performance.now();
    let done = false;
    const finish = (ok) => {
      if (done) return;
      done = true;
      inFlight--;
      requests.delete(req);
      onSample(startedAt, performance.now() - startedAt, ok);
    };
    const req = request({ host, port, path, agent: false, timeout: timeoutMs }, (response) => {
      response.resume();
      response.once("end", () => finish(response.statusCode === 200));
      response.once("error", () => finish(false));
    });
    requests.add(req);
    req.once("timeout", () => {
      req.destroy();
      finish(false);
    });
    req.once("error", () => finish(false));
    req.end();
  };
  const timer = setInterval(probe, everyMs);
  probe();
  return {
    skipped: () => skipped,
    stop() {
      clearInterval(timer);
      for (const req of requests) req.destroy();
    },
  };
}
