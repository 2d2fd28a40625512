// Differential tests against the official `pusher` server library (5.3.4),
// used only as an oracle: for many generated inputs, both must give identical
// output. The inputs come from a seeded generator, so every run is the same.
import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { createServer } from "node:http";
import test from "node:test";

import Pusher from "pusher";

import {
  authenticateUser,
  authorizePresenceChannel,
  authorizePrivateChannel,
  createRealtimeClient,
  signRestRequest,
  verifyChannelAuth,
  verifyUserAuth,
  verifyWebhook,
} from "../dist/index.js";

const APP_ID = "3";
const KEY = "278d425bdf160c739803";
const SECRET = "7ad3773142a6692b25b8";
const ROUNDS = 400;

/** mulberry32: a small seeded PRNG, so failures reproduce. */
function generator(seed) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (min, max) => min + Math.floor(next() * (max - min + 1));
  const pick = (items) => items[int(0, items.length - 1)];
  return { next, int, pick };
}

const CHANNEL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-=@,.;";

/** Pieces of text that stress JSON and UTF-8: quotes, escapes, controls, astral, lone surrogates. */
const TEXT_PIECES = [
  "a", "Z", "0", " ", '"', "\\", "/", "\n", "\t", "\u0000", "\u001f", "\u007f", "é", "ß", "ñ",
  "\u00a0", "中", "文", "字", "한", "ع", "ש", "😀", "👩‍💻", "🇫🇷", "\u2028", "\u2029", "\ufeff",
  "\ud800", "\udfff", "<script>", "&", "=", "%", "+", "?", "#", "}", "{", "[", "]", ":", ",",
];

function text(random, maxPieces = 12) {
  let out = "";
  const count = random.int(0, maxPieces);
  for (let i = 0; i < count; i += 1) out += random.pick(TEXT_PIECES);
  return out;
}

function socketId(random) {
  const digits = (n) => Array.from({ length: n }, () => random.int(0, 9)).join("");
  return `${digits(random.int(1, 12))}.${digits(random.int(1, 12))}`;
}

function channelName(random, prefix) {
  const max = 200 - prefix.length;
  const length = random.next() < 0.1 ? max : random.int(1, Math.min(max, 60));
  let rest = "";
  for (let i = 0; i < length; i += 1) rest += random.pick([...CHANNEL_ALPHABET]);
  return prefix + rest;
}

/** A JSON value with unicode strings, nested a little. */
function jsonValue(random, depth = 0) {
  const roll = random.int(0, depth > 2 ? 4 : 7);
  switch (roll) {
    case 0: return text(random);
    case 1: return random.int(-1e6, 1e6);
    case 2: return random.next() < 0.5;
    case 3: return null;
    case 4: return random.next() * 1e3;
    case 5: return Array.from({ length: random.int(0, 3) }, () => jsonValue(random, depth + 1));
    default: {
      const object = {};
      for (let i = random.int(0, 4); i > 0; i -= 1) object[text(random, 4)] = jsonValue(random, depth + 1);
      return object;
    }
  }
}

const pusher = new Pusher({ appId: APP_ID, key: KEY, secret: SECRET, host: "127.0.0.1", useTLS: false });

test("private channel auth equals pusher.authorizeChannel", async () => {
  const random = generator(1);
  let compared = 0;
  for (let i = 0; i < ROUNDS; i += 1) {
    const socket = socketId(random);
    const channel = channelName(random, "private-");
    const ours = await authorizePrivateChannel({ key: KEY, secret: SECRET, socketId: socket, channelName: channel });
    assert.deepEqual(ours, pusher.authorizeChannel(socket, channel), `${socket} ${channel}`);
    verifyChannelAuth({ key: KEY, secret: SECRET, socketId: socket, channelName: channel, auth: ours.auth });
    compared += 1;
  }
  assert.equal(compared, ROUNDS);
});

test("presence channel auth equals pusher.authorizeChannel with presence data", async () => {
  const random = generator(2);
  for (let i = 0; i < ROUNDS; i += 1) {
    const socket = socketId(random);
    const channel = channelName(random, "presence-");
    const id = text(random, 6) || "u";
    const info = random.next() < 0.2 ? undefined : jsonValue(random);
    const presenceData = info === undefined ? { user_id: id } : { user_id: id, user_info: info };
    const ours = await authorizePresenceChannel({
      key: KEY,
      secret: SECRET,
      socketId: socket,
      channelName: channel,
      user: { id, info },
    });
    const theirs = pusher.authorizeChannel(socket, channel, presenceData);
    assert.equal(ours.channel_data, theirs.channel_data, `channel_data for ${JSON.stringify(presenceData)}`);
    assert.equal(ours.auth, theirs.auth);
    assert.deepEqual(ours, theirs);
    verifyChannelAuth({
      key: KEY,
      secret: SECRET,
      socketId: socket,
      channelName: channel,
      auth: theirs.auth,
      channelData: theirs.channel_data,
    });
  }
});

test("user authentication equals pusher.authenticateUser", async () => {
  const random = generator(3);
  for (let i = 0; i < ROUNDS; i += 1) {
    const socket = socketId(random);
    const user = { id: text(random, 6) || "u" };
    if (random.next() < 0.7) user.user_info = { name: text(random), extra: jsonValue(random) };
    if (random.next() < 0.5) user.watchlist = Array.from({ length: random.int(0, 4) }, () => text(random, 3) || "w");
    if (random.next() < 0.3) user[text(random, 3) || "k"] = jsonValue(random);
    const ours = await authenticateUser({ key: KEY, secret: SECRET, socketId: socket, user });
    const theirs = pusher.authenticateUser(socket, user);
    assert.deepEqual(ours, theirs, JSON.stringify(user));
    verifyUserAuth({ key: KEY, secret: SECRET, socketId: socket, auth: theirs.auth, userData: theirs.user_data });
  }
});

/** Runs `body` with `Date.now` frozen at `ms`, for both libraries. */
function withFrozenClock(t, ms) {
  t.mock.method(Date, "now", () => ms);
}

test("signRestRequest equals pusher.createSignedQueryString at a frozen clock", (t) => {
  const random = generator(4);
  const KEY_CHARS = "abcdefghijklmnopqrstuvwxyz_";
  const SAFE = "ABCxyz019-._~";
  const RESERVED = new Set(["auth_key", "auth_timestamp", "auth_version", "auth_signature", "body_md5"]);
  let byteEqual = 0;
  let decodedEqual = 0;
  for (let i = 0; i < ROUNDS; i += 1) {
    const timestamp = random.int(1_000_000_000, 2_000_000_000);
    withFrozenClock(t, timestamp * 1000 + random.int(0, 999));
    const method = random.pick(["GET", "POST", "post", "Get"]);
    const path = random.pick(["/apps/3/events", "/apps/3/batch_events", "/apps/3/channels", "/apps/3/channels/presence-x/users"]);
    const params = {};
    for (let n = random.int(0, 4); n > 0; n -= 1) {
      let name = "";
      for (let c = random.int(1, 10); c > 0; c -= 1) name += random.pick([...KEY_CHARS]);
      if (RESERVED.has(name)) continue;
      const special = random.next() < 0.4;
      let value = "";
      for (let c = random.int(0, 12); c > 0; c -= 1) {
        value += special ? random.pick([...SAFE, ",", " ", "/", "+", "%", "é", "中", "😀", "&", "="]) : random.pick([...SAFE]);
      }
      params[name] = value;
    }
    const body = method.toUpperCase() === "POST" && random.next() < 0.9 ? JSON.stringify(jsonValue(random)) : undefined;
    const request = { method, path, params, body };
    const theirs = pusher.createSignedQueryString(request);
    const ours = signRestRequest({ key: KEY, secret: SECRET, ...request, timestamp: Math.floor(Date.now() / 1000) });
    if (Object.values(params).every((value) => /^[A-Za-z0-9._~-]*$/.test(value))) {
      assert.equal(ours, theirs, JSON.stringify(request));
      byteEqual += 1;
    } else {
      // Pusher's library puts values in the URL unescaped (not a valid URL for
      // these); ours percent-encodes them. The signatures must still agree, and
      // decoding ours must give back exactly the signed parameters.
      const signature = (query) => query.slice(query.lastIndexOf("&auth_signature=") + 16);
      assert.equal(signature(ours), signature(theirs), JSON.stringify(request));
      const decoded = ours.split("&").map((pair) => pair.split("=").map(decodeURIComponent));
      const expected = Object.entries({
        auth_key: KEY,
        auth_timestamp: String(timestamp),
        auth_version: "1.0",
        ...(body ? { body_md5: createHash("md5").update(body).digest("hex") } : {}),
        ...params,
      }).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      assert.deepEqual(decoded.slice(0, -1), expected);
      decodedEqual += 1;
    }
  }
  assert.ok(byteEqual > 100, `byte-equal comparisons: ${byteEqual}`);
  assert.ok(decodedEqual > 50, `decoded comparisons: ${decodedEqual}`);
});

/** An HTTP server that records each request and answers like a broker. */
async function startRecorder(t) {
  const requests = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      requests.push({ method: req.method, url: req.url, body: Buffer.concat(chunks).toString("utf8"), contentType: req.headers["content-type"] });
      const path = req.url.split("?")[0];
      let answer = {};
      if (path.endsWith("/users")) answer = { users: [{ id: "u1" }] };
      else if (path.startsWith("/apps/3/channels/")) answer = { occupied: true, user_count: 1 };
      else if (path === "/apps/3/channels") answer = { channels: { "presence-a": { user_count: 1 } } };
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(answer));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { port: server.address().port, requests };
}

test("whole REST requests are byte-identical to the pusher library's (method, URL, body)", { timeout: 20_000 }, async (t) => {
  const { port, requests } = await startRecorder(t);
  withFrozenClock(t, 1_700_000_000_456);
  const theirs = new Pusher({ appId: APP_ID, key: KEY, secret: SECRET, host: "127.0.0.1", port, useTLS: false, timeout: 5000 });
  const ours = createRealtimeClient({ appId: APP_ID, key: KEY, secret: SECRET, host: "127.0.0.1", port, useTLS: false, timeoutMs: 5000 });
  const data = { message_id: "m_1", seq: 1, text: "héllo 😀 \"quoted\"" };
  const pairs = [
    [() => theirs.trigger("private-chat.room.room-42", "message.created", data),
     () => ours.trigger("private-chat.room.room-42", "message.created", data)],
    [() => theirs.trigger(["private-chat.room.a", "presence-chat.room.b"], "typing", "already a string"),
     () => ours.trigger(["private-chat.room.a", "presence-chat.room.b"], "typing", "already a string")],
    [() => theirs.trigger("private-chat.room.room-42", "message.created", data, { socket_id: "123.456" }),
     () => ours.trigger("private-chat.room.room-42", "message.created", data, { socketId: "123.456" })],
    [() => theirs.triggerBatch([
        { channel: "private-chat.room.a", name: "message.created", data },
        { channel: "private-chat.room.b", name: "receipt.read", data: "s", socket_id: "1.2" },
      ]),
     () => ours.triggerBatch([
        { channel: "private-chat.room.a", name: "message.created", data },
        { channel: "private-chat.room.b", name: "receipt.read", data: "s", socketId: "1.2" },
      ])],
    [() => theirs.get({ path: "/channels", params: { filter_by_prefix: "presence-", info: "user_count" } }),
     () => ours.channels({ prefix: "presence-", info: ["user_count"] })],
    [() => theirs.get({ path: "/channels" }), () => ours.channels()],
    [() => theirs.get({ path: "/channels/presence-chat.room.a_b-c=d@e,f.g;h", params: { info: "user_count" } }),
     () => ours.channel("presence-chat.room.a_b-c=d@e,f.g;h", { info: ["user_count"] })],
    [() => theirs.get({ path: "/channels/presence-chat.room.room-42/users" }),
     () => ours.users("presence-chat.room.room-42")],
  ];
  for (const [theirCall, ourCall] of pairs) {
    requests.length = 0;
    await theirCall();
    await ourCall();
    assert.equal(requests.length, 2);
    const [a, b] = requests;
    assert.equal(b.method, a.method);
    assert.equal(b.url, a.url);
    assert.equal(b.body, a.body);
    assert.equal(b.contentType, a.contentType);
  }
});

test("verifyWebhook agrees with pusher.webhook().isValid() on valid and tampered webhooks", () => {
  const random = generator(5);
  const sign = (body, secret = SECRET) => createHmac("sha256", secret).update(body).digest("hex");
  const outcomes = { valid: 0, invalid: 0 };
  for (let i = 0; i < ROUNDS; i += 1) {
    const events = Array.from({ length: random.int(0, 3) }, () => ({
      name: random.pick(["channel_occupied", "channel_vacated", "member_added", "client_event"]),
      channel: channelName(random, random.pick(["private-", "presence-"])),
      ...(random.next() < 0.5 ? { user_id: text(random, 4) } : {}),
      ...(random.next() < 0.3 ? { data: text(random) } : {}),
    }));
    let body = JSON.stringify({ time_ms: random.int(0, 2e12), events });
    let key = KEY;
    let signature = sign(body);
    switch (random.int(0, 5)) {
      case 0: break; // untouched
      case 1: body = body.replace(/\d/, (d) => String((Number(d) + 1) % 10)); break; // tampered body
      case 2: body += " "; break; // appended byte
      case 3: signature = signature.slice(0, -1) + (signature.endsWith("0") ? "1" : "0"); break; // tampered signature
      case 4: signature = sign(body, "another-secret"); break; // signed by someone else
      default: key = "another-key"; break; // another app
    }
    const headers = { "x-pusher-key": key, "x-pusher-signature": signature, "content-type": "application/json" };
    const theirs = pusher.webhook({ headers, rawBody: body }).isValid();
    let ours;
    try {
      verifyWebhook({ key: KEY, secret: SECRET, headers, body });
      ours = true;
    } catch (error) {
      assert.ok(["auth_key_mismatch", "invalid_signature"].includes(error.code), error.code);
      ours = false;
    }
    assert.equal(ours, theirs, `case ${i}: ${body}`);
    outcomes[ours ? "valid" : "invalid"] += 1;
  }
  assert.ok(outcomes.valid > 20 && outcomes.invalid > 100, JSON.stringify(outcomes));
});
