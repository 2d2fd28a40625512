// @domvia/realtime in real browser pages (playwright-core; Chromium or Firefox, per DOMVIA_BROWSER) against the real
// embedded server: connect, private and presence channels through the real
// /realtime/auth, client events between two users, a server restart the
// client survives by itself, auth failures as events, and dispose.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import Pusher from "pusher";
import { devApp, launchBrowser, recordPageErrors, startServer } from "../support/harness.mjs";
import { eventually, signIn } from "../support/chat.mjs";

let dataDir;
let server;
let browser;
let port;
let env;

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "domvia-realtime-test-"));
  env = { DOMVIA_DB: join(dataDir, "chat.sqlite") };
  server = await startServer(env);
  port = server.port;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

/**
 * A page signed in as `name` (the session cookie is set by the real sign-in
 * route), with the SDK imported as `window.sdk` and a `window.log` of events.
 */
async function userPage(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  // The blank same-origin page has no icon; keep its 404 out of the error log.
  const errors = recordPageErrors(page);
  await page.goto(`${server.url}/healthz`);
  const user = await page.evaluate(async ({ name, sdkUrl }) => {
    window.sdk = await import(sdkUrl);
    window.log = [];
    const response = await fetch("/api/session", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name }),
    });
    return (await response.json()).user;
  }, { name, sdkUrl: `${server.url}/sdk/realtime/dist/index.js` });
  return { context, page, errors, user };
}

/** Creates `window.realtime` in the page, connected to the test server. */
async function connect(page, extra = {}) {
  await page.evaluate(async ({ port, key, extra }) => {
    window.realtime = window.sdk.DomViaRealtime.create({
      key,
      host: "127.0.0.1",
      port,
      forceTLS: false,
      authEndpoint: "/realtime/auth",
      clientEvents: true,
      ...extra,
    });
    window.realtime.connection.onStateChange((change) => window.log.push(["state", change.current, change.reason ?? null]));
    await window.realtime.attached;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("not connected within 10 s")), 10_000);
      if (window.realtime.connection.state === "connected") resolve();
      window.realtime.connection.onStateChange(({ current }) => {
        if (current === "connected") {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }, { port, key: devApp.key, extra });
}

/** Subscribes in the page; resolves with "ok" or the subscription error. */
function subscribe(page, channelName) {
  return page.evaluate((channelName) => new Promise((resolve) => {
    const channel = window.realtime.subscribe(channelName);
    channel.bind("pusher:subscription_succeeded", () => resolve("ok"));
    channel.bind("pusher:subscription_error", (error) => resolve(error));
    channel.bindGlobal((event, data, metadata) => window.log.push(["event", channelName, event, data, metadata]));
  }), channelName);
}

function eventsIn(page, channelName, eventName) {
  return page.evaluate(({ channelName, eventName }) =>
    window.log.filter((entry) => entry[0] === "event" && entry[1] === channelName && entry[2] === eventName), { channelName, eventName });
}

test("connect, subscribe through the real auth endpoint, client events between two users, presence members", async () => {
  const ada = await userPage("Ada");
  const bob = await userPage("Bob");
  const adaApi = await signIn(server.url, "Ada");
  const room = (await adaApi.api("POST", "/api/rooms", { kind: "direct", member_ids: [bob.user.id] })).body;

  await connect(ada.page);
  await connect(bob.page);
  const socketId = await ada.page.evaluate(() => window.realtime.connection.socketId);
  assert.match(socketId, /^\d+\.\d+$/);

  assert.equal(await subscribe(ada.page, room.presence_channel_name), "ok");
  assert.equal(await subscribe(bob.page, room.presence_channel_name), "ok");
  assert.equal(await subscribe(ada.page, room.channel_name), "ok");
  assert.equal(await subscribe(bob.page, room.channel_name), "ok");

  const members = await ada.page.evaluate((name) => {
    const { members } = window.realtime.channel(name);
    const all = [];
    members.each((member) => all.push(member));
    return { me: members.me, count: members.count, all };
  }, room.presence_channel_name);
  assert.deepEqual(members.me, { id: ada.user.id, info: { name: "Ada" } });
  await eventually("Bob in Ada's member list", () =>
    ada.page.evaluate((name) => window.realtime.channel(name).members.count === 2, room.presence_channel_name));

  // A client event: delivered to Bob with the broker's stamp, never echoed to Ada.
  await ada.page.evaluate((name) => window.realtime.channel(name).trigger("client-typing", { is_typing: true, user_id: "forged" }), room.presence_channel_name);
  await eventually("Bob to get client-typing", async () => (await eventsIn(bob.page, room.presence_channel_name, "client-typing")).length === 1);
  const [typing] = await eventsIn(bob.page, room.presence_channel_name, "client-typing");
  assert.deepEqual(typing[3], { is_typing: true, user_id: "forged" });
  assert.deepEqual(typing[4], { user_id: ada.user.id }, "the broker's stamp, not the payload, names the sender");
  // Bob's answer on the same channel is the sentinel: an echo to Ada would have come before it.
  await bob.page.evaluate((name) => window.realtime.channel(name).trigger("client-sentinel", {}), room.presence_channel_name);
  await eventually("Ada to get Bob's client-sentinel", async () => (await eventsIn(ada.page, room.presence_channel_name, "client-sentinel")).length === 1);
  assert.equal((await eventsIn(ada.page, room.presence_channel_name, "client-typing")).length, 0);

  // A message sent over HTTP arrives on the private channel.
  const sent = await adaApi.api("POST", `/api/rooms/${room.room_id}/messages`, { client_id: "c-1", text: "hello" });
  assert.equal(sent.status, 201);
  await eventually("Bob to get message.created", async () => (await eventsIn(bob.page, room.channel_name, "message.created")).length === 1);

  // The client-event rules reject with coded errors.
  const rejections = await ada.page.evaluate(async ({ presence, priv }) => {
    const codeOf = (promise) => promise.then(() => "resolved", (error) => error.code);
    const publicChannel = window.realtime.subscribe("lobby");
    return {
      noPrefix: await codeOf(window.realtime.channel(priv).trigger("typing", {})),
      publicChannel: await codeOf(publicChannel.trigger("client-x", {})),
      tooLarge: await codeOf(window.realtime.channel(presence).trigger("client-big", { text: "x".repeat(11_000) })),
    };
  }, { presence: room.presence_channel_name, priv: room.channel_name });
  assert.deepEqual(rejections, { noPrefix: "invalid_event_name", publicChannel: "wrong_channel_kind", tooLarge: "payload_too_large" });

  // Bob leaves: Ada sees the member removed.
  await bob.page.evaluate((name) => window.realtime.unsubscribe(name), room.presence_channel_name);
  await eventually("member_removed at Ada", async () => (await eventsIn(ada.page, room.presence_channel_name, "pusher:member_removed")).length === 1);

  assert.deepEqual(ada.errors, []);
  assert.deepEqual(bob.errors, []);
  await ada.context.close();
  await bob.context.close();
});

test("an auth failure surfaces as a subscription error event, not a reconnect loop", async () => {
  const eve = await userPage("Eve");
  const adaApi = await signIn(server.url, "Ada");
  const other = await signIn(server.url, "Zed");
  const room = (await adaApi.api("POST", "/api/rooms", { kind: "direct", member_ids: [other.id] })).body;
  await connect(eve.page);
  const refused = await subscribe(eve.page, room.channel_name);
  assert.equal(refused.status, 403);
  assert.equal(refused.code, "subscription_refused");
  const state = await eve.page.evaluate((name) => ({
    connection: window.realtime.connection.state,
    channel: window.realtime.channel(name).state,
  }), room.channel_name);
  assert.deepEqual(state, { connection: "connected", channel: "failed" });
  await eve.context.close();
});

test("a listener that throws is reported and the SDK keeps working", async () => {
  const cy = await userPage("Cy");
  await connect(cy.page);
  await subscribe(cy.page, "news");
  await cy.page.evaluate(() => {
    window.realtime.channel("news").bind("story", () => {
      throw new Error("app bug");
    });
  });
  const rest = new Pusher({ appId: devApp.id, key: devApp.key, secret: devApp.secret, host: "127.0.0.1", port: String(port), useTLS: false });
  await rest.trigger("news", "story", { n: 1 });
  await rest.trigger("news", "story", { n: 2 });
  await eventually("both stories logged", async () => (await eventsIn(cy.page, "news", "story")).length === 2);
  assert.ok(cy.errors.some((error) => error.includes("app bug")), "the throw is reported");
  assert.equal(await cy.page.evaluate(() => window.realtime.connection.state), "connected");
  await cy.context.close();
});

test("stop and restart the server: the client reconnects and resubscribes by itself, then receives again", async () => {
  const dee = await userPage("Dee");
  const deeApi = await signIn(server.url, "Dee");
  const friend = await signIn(server.url, "Fay");
  const room = (await deeApi.api("POST", "/api/rooms", { kind: "direct", member_ids: [friend.id] })).body;
  await connect(dee.page);
  assert.equal(await subscribe(dee.page, room.channel_name), "ok");
  const firstSocket = await dee.page.evaluate(() => window.realtime.connection.socketId);

  assert.equal(await server.stop(), 0);
  await eventually("the client to notice", async () =>
    (await dee.page.evaluate(() => window.realtime.connection.state)) !== "connected");
  server = await startServer(env, { port });

  await eventually("reconnected", async () =>
    (await dee.page.evaluate(() => window.realtime.connection.state)) === "connected", 20_000);
  await eventually("resubscribed", async () =>
    (await dee.page.evaluate((name) => window.realtime.channel(name).state, room.channel_name)) === "subscribed", 10_000);
  const secondSocket = await dee.page.evaluate(() => window.realtime.connection.socketId);
  assert.notEqual(secondSocket, firstSocket, "a new connection, freshly authorized");

  const sent = await friend.api("POST", `/api/rooms/${room.room_id}/messages`, { client_id: "after-restart", text: "welcome back" });
  assert.equal(sent.status, 201);
  await eventually("the message after the restart", async () =>
    (await eventsIn(dee.page, room.channel_name, "message.created")).some((entry) => entry[3].text === "welcome back"));
  const states = await dee.page.evaluate(() => window.log.filter((entry) => entry[0] === "state").map((entry) => entry[1]));
  assert.ok(states.includes("connecting"), states.join(","));
  assert.equal(states.at(-1), "connected");
  await dee.context.close();
});

test("dispose leaves no open socket", async () => {
  const gus = await userPage("Gus");
  await connect(gus.page);
  assert.equal(await subscribe(gus.page, "dispose-check"), "ok");
  const rest = new Pusher({ appId: devApp.id, key: devApp.key, secret: devApp.secret, host: "127.0.0.1", port: String(port), useTLS: false });
  const occupied = async () => (await (await rest.get({ path: "/channels/dispose-check", params: { info: "subscription_count" } })).json());
  assert.equal((await occupied()).occupied, true);
  await gus.page.evaluate(() => window.realtime.dispose());
  await eventually("the broker to see the socket closed", async () => (await occupied()).occupied === false);
  const after = await gus.page.evaluate(() => ({ state: window.realtime.connection.state, channel: window.realtime.channel("dispose-check") }));
  assert.deepEqual(after, { state: "initialized", channel: undefined });
  await gus.context.close();
});

test("headersProvider supplies a bearer token per auth request, and userAuthentication signs the connection in", async () => {
  // A page with no session cookie: the token comes only from headersProvider.
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${server.url}/healthz`);
  const hal = await signIn(server.url, "Hal");
  const ivy = await signIn(server.url, "Ivy");
  const room = (await hal.api("POST", "/api/rooms", { kind: "direct", member_ids: [ivy.id] })).body;
  const result = await page.evaluate(async ({ sdkUrl, port, key, token, channelName }) => {
    const sdk = await import(sdkUrl);
    let provided = 0;
    const realtime = sdk.DomViaRealtime.create({
      key,
      host: "127.0.0.1",
      port,
      forceTLS: false,
      authEndpoint: "/realtime/auth",
      headersProvider: async () => {
        provided++;
        return { Authorization: `Bearer ${token}` };
      },
      userAuthentication: { endpoint: "/realtime/user-auth" },
    });
    const signedIn = new Promise((resolve) => realtime.onSignedIn(resolve));
    const channel = realtime.subscribe(channelName);
    const outcome = await new Promise((resolve) => {
      channel.bind("pusher:subscription_succeeded", () => resolve("ok"));
      channel.bind("pusher:subscription_error", (error) => resolve(error));
    });
    const user = await signedIn;
    realtime.dispose();
    return { outcome, provided, user };
  }, { sdkUrl: `${server.url}/sdk/realtime/dist/index.js`, port, key: devApp.key, token: hal.token, channelName: room.channel_name });
  assert.equal(result.outcome, "ok");
  assert.ok(result.provided >= 2, "called for the channel auth and the user auth");
  assert.deepEqual(result.user, { id: hal.id, user_info: { name: "Hal" } });
  await context.close();
});
