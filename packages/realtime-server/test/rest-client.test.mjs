// The REST client against a real HTTP endpoint: a node:http server on
// 127.0.0.1 (port 0) that verifies every signature independently, with the
// algorithm Pusher's libraries use (sorted params, METHOD\npath\nquery,
// HMAC-SHA256), and records what it received.
import assert from "node:assert/strict";
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import test from "node:test";

import { DomViaServerError, createRealtimeClient } from "../dist/index.js";

const APP_ID = "3";
const KEY = "278d425bdf160c739803";
const SECRET = "7ad3773142a6692b25b8";

/** Verifies a signed request like a broker; returns the reason it is bad, or null. */
function checkSignature({ method, url, body, nowSeconds }) {
  const [path, rawQuery = ""] = url.split("?");
  const params = new Map();
  for (const pair of rawQuery.split("&").filter(Boolean)) {
    const at = pair.indexOf("=");
    const name = decodeURIComponent(at < 0 ? pair : pair.slice(0, at)).toLowerCase();
    const value = at < 0 ? "" : decodeURIComponent(pair.slice(at + 1));
    if (params.has(name)) return `repeated ${name}`;
    params.set(name, value);
  }
  if (params.get("auth_key") !== KEY) return "auth_key";
  if (params.get("auth_version") !== "1.0") return "auth_version";
  const timestamp = Number(params.get("auth_timestamp"));
  if (!/^\d+$/.test(params.get("auth_timestamp") ?? "") || Math.abs(timestamp - nowSeconds) > 600) return "auth_timestamp";
  const md5 = createHash("md5").update(body).digest("hex");
  if (body.length > 0 && params.get("body_md5") !== md5) return "body_md5";
  if (body.length === 0 && params.has("body_md5")) return "unexpected body_md5";
  const signature = params.get("auth_signature");
  if (signature === undefined) return "auth_signature missing";
  params.delete("auth_signature");
  const sorted = [...params].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const toSign = `${method}\n${path}\n${sorted.map(([k, v]) => `${k}=${v}`).join("&")}`;
  const expected = createHmac("sha256", SECRET).update(toSign).digest();
  const given = Buffer.from(signature, "hex");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return "auth_signature";
  return null;
}

/**
 * Starts the verifying broker. `respond(request)` may return `{ status, body }`
 * or `"hang"`; by default signed requests get a broker-like 200.
 */
async function startBroker(t, respond = () => undefined) {
  const requests = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const raw = Buffer.concat(chunks);
      const request = {
        method: req.method,
        url: req.url,
        path: req.url.split("?")[0],
        query: new URLSearchParams(req.url.split("?")[1] ?? ""),
        headers: req.headers,
        body: raw.toString("utf8"),
        json: raw.length > 0 ? JSON.parse(raw.toString("utf8")) : undefined,
      };
      request.signatureProblem = checkSignature({ method: req.method, url: req.url, body: raw, nowSeconds: Date.now() / 1000 });
      requests.push(request);
      const custom = respond(request);
      if (custom === "hang") return; // never answer
      if (custom !== undefined) {
        res.writeHead(custom.status, { "content-type": "text/plain", ...custom.headers }).end(custom.body);
        return;
      }
      if (request.signatureProblem !== null) {
        res.writeHead(401, { "content-type": "text/plain" }).end(`Invalid signature: ${request.signatureProblem}`);
        return;
      }
      let answer = {};
      if (request.path === `/apps/${APP_ID}/channels`) {
        answer = { channels: { "presence-chat.room.a": { user_count: 2 }, "private-chat.room.b": {} } };
      } else if (request.path.endsWith("/users")) {
        answer = { users: [{ id: "user-1" }, { id: "user-2" }] };
      } else if (request.path.startsWith(`/apps/${APP_ID}/channels/`)) {
        answer = { occupied: true, subscription_count: 3 };
      }
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(answer));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  });
  return { port: server.address().port, requests };
}

function clientFor(port, options = {}) {
  return createRealtimeClient({
    appId: APP_ID,
    key: KEY,
    secret: SECRET,
    host: "127.0.0.1",
    port,
    useTLS: false,
    timeoutMs: 3000,
    ...options,
  });
}

/** Asserts a rejection with a DomViaServerError of `code`; returns the error. */
async function rejection(promise, code) {
  let caught;
  await assert.rejects(promise, (error) => {
    caught = error;
    assert.ok(error instanceof DomViaServerError, String(error));
    assert.equal(error.code, code, error.message);
    return true;
  });
  return caught;
}

const T = { timeout: 10_000 };

test("trigger publishes one signed event", T, async (t) => {
  const broker = await startBroker(t);
  const client = clientFor(broker.port);
  const result = await client.trigger("private-chat.room.room-42", "message.created", { message_id: "m_1", seq: 1, text: "hi ✓" });
  assert.deepEqual(result, {});
  assert.equal(broker.requests.length, 1);
  const [request] = broker.requests;
  assert.equal(request.signatureProblem, null);
  assert.equal(request.method, "POST");
  assert.equal(request.path, "/apps/3/events");
  assert.equal(request.headers["content-type"], "application/json");
  assert.deepEqual(request.json, {
    name: "message.created",
    data: '{"message_id":"m_1","seq":1,"text":"hi ✓"}',
    channels: ["private-chat.room.room-42"],
  });
  assert.deepEqual([...request.query.keys()], ["auth_key", "auth_timestamp", "auth_version", "body_md5", "auth_signature"]);
});

test("trigger sends string data as it is, to many channels", T, async (t) => {
  const broker = await startBroker(t);
  const client = clientFor(broker.port);
  const channels = Array.from({ length: 100 }, (_, i) => `private-chat.room.r${i}`);
  await client.trigger(channels, "typing", '{"already":"json"}');
  const [request] = broker.requests;
  assert.equal(request.signatureProblem, null);
  assert.equal(request.json.data, '{"already":"json"}');
  assert.deepEqual(request.json.channels, channels);
});

test("trigger with socketId sends socket_id so the sender is excluded", T, async (t) => {
  const broker = await startBroker(t);
  const client = clientFor(broker.port);
  await client.trigger("presence-chat.room.a", "receipt.read", { user_id: "user-1" }, { socketId: "1234.5678" });
  await client.trigger("presence-chat.room.a", "receipt.read", { user_id: "user-1" }, {});
  assert.equal(broker.requests[0].signatureProblem, null);
  assert.equal(broker.requests[0].json.socket_id, "1234.5678");
  assert.equal("socket_id" in broker.requests[1].json, false);
});

test("triggerBatch publishes several events in one signed request", T, async (t) => {
  const broker = await startBroker(t);
  const client = clientFor(broker.port);
  const result = await client.triggerBatch([
    { channel: "private-chat.room.a", name: "message.created", data: { message_id: "m_1" } },
    { channel: "private-chat.room.b", name: "message.created", data: "raw", socketId: "1.2" },
  ]);
  assert.deepEqual(result, {});
  const [request] = broker.requests;
  assert.equal(request.signatureProblem, null);
  assert.equal(request.path, "/apps/3/batch_events");
  assert.deepEqual(request.json, {
    batch: [
      { channel: "private-chat.room.a", name: "message.created", data: '{"message_id":"m_1"}' },
      { channel: "private-chat.room.b", name: "message.created", data: "raw", socket_id: "1.2" },
    ],
  });
});

test("channels, channel and users make signed GETs and return the answers", T, async (t) => {
  const broker = await startBroker(t);
  const client = clientFor(broker.port);
  const list = await client.channels({ prefix: "presence-chat.room.", info: ["user_count"] });
  assert.deepEqual(list.channels["presence-chat.room.a"], { user_count: 2 });
  const state = await client.channel("private-chat.room.a_b-c=d@e,f.g;h", { info: ["user_count", "subscription_count"] });
  assert.deepEqual(state, { occupied: true, subscription_count: 3 });
  const users = await client.users("presence-chat.room.a");
  assert.deepEqual(users.users.map((user) => user.id), ["user-1", "user-2"]);
  await client.channels();

  assert.equal(broker.requests.length, 4);
  for (const request of broker.requests) {
    assert.equal(request.method, "GET");
    assert.equal(request.signatureProblem, null, request.url);
    assert.equal(request.body, "");
    assert.equal(request.query.has("body_md5"), false);
  }
  assert.equal(broker.requests[0].path, "/apps/3/channels");
  assert.equal(broker.requests[0].query.get("filter_by_prefix"), "presence-chat.room.");
  assert.equal(broker.requests[0].query.get("info"), "user_count");
  assert.equal(broker.requests[1].path, "/apps/3/channels/private-chat.room.a_b-c=d@e,f.g;h");
  assert.match(broker.requests[1].url, /info=user_count%2Csubscription_count/);
  assert.equal(broker.requests[2].path, "/apps/3/channels/presence-chat.room.a/users");
  assert.deepEqual([...broker.requests[3].query.keys()], ["auth_key", "auth_timestamp", "auth_version", "auth_signature"]);
});

test("the injected clock sets auth_timestamp", T, async (t) => {
  const broker = await startBroker(t);
  const nowMs = Date.now() - 100_000; // within the broker's 600 s window
  await clientFor(broker.port, { now: () => nowMs }).channels();
  assert.equal(broker.requests[0].query.get("auth_timestamp"), String(Math.floor(nowMs / 1000)));
  assert.equal(broker.requests[0].signatureProblem, null);
});

test("a wrong secret is caught by the broker's independent check: rest_error 401", T, async (t) => {
  const broker = await startBroker(t);
  const error = await rejection(clientFor(broker.port, { secret: "not-the-secret" }).trigger("c", "e", {}), "rest_error");
  assert.equal(error.status, 401);
  assert.equal(error.body, "Invalid signature: auth_signature");
  assert.equal(broker.requests[0].signatureProblem, "auth_signature");
  const stale = await rejection(clientFor(broker.port, { now: () => Date.now() - 3_600_000 }).channels(), "rest_error");
  assert.equal(stale.body, "Invalid signature: auth_timestamp");
});

test("payloads over 10,240 bytes are rejected before sending; exactly 10,240 is sent", T, async (t) => {
  const broker = await startBroker(t);
  const client = clientFor(broker.port);
  await rejection(client.trigger("c", "e", "x".repeat(10_241)), "payload_too_large");
  await rejection(client.trigger("c", "e", "é".repeat(5_121)), "payload_too_large"); // 10,242 UTF-8 bytes
  await rejection(client.trigger("c", "e", { text: "x".repeat(10_240) }), "payload_too_large"); // after JSON encoding
  await rejection(
    client.triggerBatch([
      { channel: "c", name: "e", data: "small" },
      { channel: "c", name: "e", data: "x".repeat(10_241) },
    ]),
    "payload_too_large",
  );
  assert.equal(broker.requests.length, 0, "nothing reached the broker");
  await client.trigger("c", "e", "x".repeat(10_240));
  await client.trigger("c", "e", "é".repeat(5_120));
  assert.equal(broker.requests.length, 2);
  assert.ok(broker.requests.every((request) => request.signatureProblem === null));
});

test("a broker's 413 and other non-2xx answers reject with rest_error, status and body", T, async (t) => {
  const answers = [
    { status: 413, body: "Payload too large" },
    { status: 400, body: '{"error":"Unknown app"}' },
    { status: 500, body: "" },
    { status: 302, body: "moved", headers: { location: "/elsewhere" } }, // not followed
  ];
  let next = 0;
  const broker = await startBroker(t, () => answers[next++]);
  const client = clientFor(broker.port);
  for (const answer of answers) {
    const error = await rejection(client.trigger("c", "e", "x"), "rest_error");
    assert.equal(error.status, answer.status);
    assert.equal(error.body, answer.body);
    assert.match(error.message, new RegExp(`^unable to trigger the event; the broker answered ${answer.status}`));
  }
  assert.equal(broker.requests.length, answers.length);
});

test("a 2xx answer that is not the documented JSON rejects with invalid_response", T, async (t) => {
  const answers = [{ status: 200, body: "<html>" }, { status: 200, body: '{"nope":1}' }];
  let next = 0;
  const broker = await startBroker(t, () => answers[next++]);
  const client = clientFor(broker.port);
  const error = await rejection(client.trigger("c", "e", "x"), "invalid_response");
  assert.equal(error.body, "<html>");
  await rejection(client.channels(), "invalid_response");
});

test("no answer within timeoutMs rejects with timeout", T, async (t) => {
  const broker = await startBroker(t, () => "hang");
  const client = clientFor(broker.port, { timeoutMs: 200 });
  const started = Date.now();
  const error = await rejection(client.trigger("c", "e", "x"), "timeout");
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 150 && elapsed < 3000, `took ${elapsed} ms`);
  assert.match(error.message, /within 200 ms/);
  assert.equal(broker.requests.length, 1);
});

test("a refused connection rejects with network_error", T, async () => {
  const closed = createServer();
  await new Promise((resolve) => closed.listen(0, "127.0.0.1", resolve));
  const { port } = closed.address();
  await new Promise((resolve) => closed.close(resolve));
  await rejection(clientFor(port).trigger("c", "e", "x"), "network_error");
});

test("terminateUserConnections makes a signed POST with an empty object body, and checks the user id first", T, async (t) => {
  const broker = await startBroker(t);
  const client = clientFor(broker.port);
  assert.equal(await client.terminateUserConnections("u_bob"), undefined);
  const [request] = broker.requests;
  assert.equal(request.method, "POST");
  assert.equal(request.path, "/apps/3/users/u_bob/terminate_connections");
  assert.equal(request.signatureProblem, null);
  assert.equal(request.body, "{}");
  for (const bad of ["", "x".repeat(201), 42]) {
    await assert.rejects(client.terminateUserConnections(bad), (error) => error instanceof DomViaServerError && error.code === "invalid_request");
  }
  assert.equal(broker.requests.length, 1, "nothing sent for a bad id");
});
