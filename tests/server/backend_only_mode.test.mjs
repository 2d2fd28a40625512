// Backend-only mode: one server runs just the reference backend and publishes
// to another process's broker over its signed REST API, as it would to any
// Pusher-compatible broker. The browser side (pusher-js) talks to that broker
// and authorizes through the backend.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createRealtimeClient } from "../../packages/realtime-server/dist/index.js";
import { call, connectPusher, signIn, subscribed, within } from "../support/chat.mjs";
import { devApp, startServer } from "../support/harness.mjs";

const app = { id: "ext-app", key: "ext-key", secret: "ext-secret-0123456789" };
const appEnv = { DOMVIA_APP_ID: app.id, DOMVIA_APP_KEY: app.key, DOMVIA_APP_SECRET: app.secret };
let broker;
let backend;

before(async () => {
  broker = await startServer(appEnv);
  backend = await startServer({ ...appEnv, DOMVIA_BROKER_URL: broker.url });
});

after(async () => {
  assert.equal(await backend.stop(), 0);
  assert.equal(await broker.stop(), 0);
});

test("the backend publishes message.created to the external broker, and runs no broker itself", async () => {
  const ada = await signIn(backend.url, "Ada");
  const bob = await signIn(backend.url, "Bob");
  const room = (await ada.api("POST", "/api/rooms", { kind: "direct", member_ids: [bob.id] })).body;

  // pusher-js connects to the broker and authorizes through the backend.
  const bobClient = await connectPusher(broker, app, null, {
    channelAuthorization: {
      endpoint: `${backend.url}/realtime/auth`,
      transport: "ajax",
      headers: { Authorization: `Bearer ${bob.token}` },
    },
  });
  try {
    const channel = await subscribed(bobClient, room.channel_name);
    const created = within("message.created via the external broker", (resolve) => channel.bind("message.created", resolve));
    const sent = await ada.api("POST", `/api/rooms/${room.room_id}/messages`, { client_id: "c-ext", text: "through the wire" });
    assert.equal(sent.status, 201);
    const event = await created;
    assert.equal(event.message_id, sent.body.message_id);
    assert.equal(event.text, "through the wire");
  } finally {
    bobClient.disconnect();
  }

  // No broker routes on the backend-only server: only the static files answer
  // there, which have no POST (405) and no such file (404).
  const rest = await call(backend.url, null, "POST", `/apps/${app.id}/events`, { name: "x", channel: "y", data: "{}" });
  assert.equal(rest.status, 405);
  const socket = await call(backend.url, null, "GET", `/app/${app.key}?protocol=7`);
  assert.equal(socket.status, 404);
});

test("@domvia/realtime-server's REST client publishes to our broker and pusher-js receives it", async () => {
  const client = createRealtimeClient({ appId: app.id, key: app.key, secret: app.secret, host: "127.0.0.1", port: broker.port, useTLS: false });
  const listener = await connectPusher(broker, app, null);
  try {
    const channel = await subscribed(listener, "news");
    const single = within("a trigger", (resolve) => channel.bind("story", resolve));
    await client.trigger("news", "story", { title: "one" });
    assert.deepEqual(await single, { title: "one" });

    const batch = [];
    const both = within("two batch events", (resolve) => channel.bind("batched", (data) => {
      batch.push(data.n);
      if (batch.length === 2) resolve();
    }));
    await client.triggerBatch([
      { channel: "news", name: "batched", data: { n: 1 } },
      { channel: "news", name: "batched", data: { n: 2 } },
    ]);
    await both;
    assert.deepEqual(batch, [1, 2]);

    const info = await client.channels({ prefix: "new" });
    assert.ok(info.channels && "news" in info.channels, JSON.stringify(info));

    // The broker refuses a request signed with the wrong secret.
    const forger = createRealtimeClient({ appId: app.id, key: app.key, secret: devApp.secret, host: "127.0.0.1", port: broker.port, useTLS: false });
    await assert.rejects(forger.trigger("news", "story", {}), (error) => error.code === "rest_error" && error.status === 401);
  } finally {
    listener.disconnect();
  }
});

test("GET /api/config tells a page where its broker is, and never a secret", async () => {
  const external = await (await fetch(`${backend.url}/api/config`)).json();
  assert.deepEqual(external, { key: app.key, host: "127.0.0.1", port: broker.port, forceTLS: false });

  // The embedded broker answers on whatever host and port the page used.
  const embedded = await (await fetch(`${broker.url}/api/config`)).json();
  assert.deepEqual(embedded, { key: app.key, host: "127.0.0.1", port: broker.port, forceTLS: false });
  const viaLocalhost = await (await fetch(`http://localhost:${broker.port}/api/config`)).json();
  assert.equal(viaLocalhost.host, "localhost");
  // (The exact answers above hold no secret: key, host, port and TLS only.)
});
