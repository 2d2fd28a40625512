// Pages that load the built SDK packages the way an app does: a real page of
// the server's origin (a page fulfilled by the test itself would have no
// address space, and Chromium's local-network checks would block its
// WebSocket) given an import map to the server's /sdk/ paths.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { CONNECTION_FAILURE_REPORTS, devApp, recordPageErrors } from "./harness.mjs";
import { eventually, signIn } from "./chat.mjs";

/** The bare specifiers of the four browser packages, mapped to the dev server's /sdk/ paths. */
export const SDK_IMPORTS = {
  "@domvia/realtime": "/sdk/realtime/dist/index.js",
  "@domvia/realtime/core": "/sdk/realtime/dist/core.js",
  "@domvia/realtime-chat": "/sdk/realtime-chat/dist/index.js",
  "@domvia/realtime-e2ee": "/sdk/realtime-e2ee/dist/index.js",
};

/** Loads a page of `serverUrl` and gives it an import map of `imports` (again after a reload). */
export async function prepareSdkPage(page, serverUrl, imports = SDK_IMPORTS) {
  await page.goto(`${serverUrl}/healthz`);
  await page.evaluate((map) => {
    const script = document.createElement("script");
    script.type = "importmap";
    script.textContent = map;
    document.head.append(script);
  }, JSON.stringify({ imports }));
}

/** A fresh page in a new context of `browser` (pushed on `contexts` for cleanup), its errors recorded. */
export async function newSdkPage(browser, contexts, serverUrl, imports = SDK_IMPORTS) {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  const errors = recordPageErrors(page);
  await prepareSdkPage(page, serverUrl, imports);
  return { context, page, errors };
}

let userCount = 0;

/**
 * A browser context signed in as a fresh user `label-N-pid` (the real sign-in
 * route sets its cookie), plus a bearer-token API client for the same user.
 */
export async function openSdkUser(browser, contexts, serverUrl, label) {
  const name = `${label}-${++userCount}-${process.pid}`;
  const { context, page, errors } = await newSdkPage(browser, contexts, serverUrl);
  const user = await page.evaluate(async (name) => {
    const response = await fetch("/api/session", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name }),
    });
    if (!response.ok) throw new Error(`sign-in failed: ${response.status}`);
    return (await response.json()).user;
  }, name);
  const session = await signIn(serverUrl, name);
  assert.equal(session.id, user.id);
  return { name, context, page, errors, user, session, api: session.api };
}

/** Page errors except the browser's own lines about failed connections (expected in some tests). */
export function unexpectedErrors(who) {
  return who.errors.filter((line) => !CONNECTION_FAILURE_REPORTS.test(line));
}

/**
 * Creates `window.realtime` (once per page, on the broker at `port`) and
 * `window.room` for `roomId` (presence on unless `options` say otherwise), with
 * every room event logged in `window.log`; resolves with how waitUntilReady ended.
 */
export function openChatRoom(who, port, roomId, options = {}) {
  return who.page.evaluate(
    async ({ port, key, roomId, options }) => {
      const { DomViaRealtime, ready } = await import("@domvia/realtime");
      const chat = await import("@domvia/realtime-chat");
      // buildChatChannelName runs in the wasm core: load it first.
      await ready();
      if (window.realtime === undefined) {
        window.realtime = DomViaRealtime.create({
          key,
          host: "127.0.0.1",
          port,
          forceTLS: false,
          authEndpoint: "/realtime/auth",
          // Signed in, the backend can have the broker close this user's
          // sockets when it revokes access (removal, sign-out).
          userAuthentication: { endpoint: "/realtime/user-auth" },
          clientEvents: true,
        });
        window.states = [];
        window.realtime.connection.onStateChange((change) => window.states.push(change));
      }
      const log = { messages: [], typing: [], receipts: [], presence: [], notifications: 0 };
      window.log = log;
      const room = chat.createChatRoom(window.realtime, {
        roomId,
        channelName: chat.buildChatChannelName(roomId),
        presence: true,
        ...options,
      });
      window.room = room;
      room.onMessage((message) => log.messages.push(message));
      room.onTyping((event) => log.typing.push({ ...event, at: Date.now() }));
      room.onReadReceipt((event) => log.receipts.push(event));
      room.onPresence((event) => log.presence.push(event));
      room.subscribe(() => log.notifications++);
      let timer;
      const limit = new Promise((_, reject) => {
        timer = setTimeout(() => reject(Object.assign(new Error("not ready within 10 s"), { code: "test_timeout" })), 10_000);
      });
      try {
        await Promise.race([room.waitUntilReady(), limit]);
        return { ok: true };
      } catch (error) {
        return { ok: false, code: error.code, name: error.name, message: error.message };
      } finally {
        clearTimeout(timer);
      }
    },
    { port, key: devApp.key, roomId, options },
  );
}

/**
 * Records every POST the page makes to `path` (its JSON body, the status and
 * the JSON answer) by wrapping the page's `fetch`, which the SDK calls at call
 * time; resolves with a function that reads the records. The request always
 * reaches the server; the page sees a 503 instead of the first `failFirst`
 * answers (a send that "failed" after the server stored it).
 *
 * Why not Playwright's `route.fetch()`: over WebDriver BiDi (Firefox 153 ESR,
 * playwright-core 1.64) an intercepted request's body is not available, so
 * `request.postData()` is null and `route.fetch()` forwards the headers
 * without the body and hangs. Wrapping fetch in the page works alike in both
 * engines.
 */
export async function recordPosts(page, path, { failFirst = 0 } = {}) {
  await page.evaluate(
    ({ path, failFirst }) => {
      const records = [];
      window.recordedPosts ??= {};
      window.recordedPosts[path] = records;
      const fetchBefore = window.fetch;
      window.fetch = async (input, init = {}) => {
        // Other requests pass untouched: new Request(input) would take the body of a Request input.
        const method = init.method ?? (input instanceof Request ? input.method : "GET");
        const url = new URL(input instanceof Request ? input.url : String(input), location.href);
        if (method !== "POST" || url.pathname !== path) return fetchBefore(input, init);
        const request = new Request(input, init);
        const body = JSON.parse(await request.clone().text());
        const response = await fetchBefore(request);
        const answer = await response.clone().json().catch(() => null);
        records.push({ body, status: response.status, answer });
        if (records.length > failFirst) return response;
        return new Response("{}", { status: 503, headers: { "content-type": "application/json" } });
      };
    },
    { path, failFirst },
  );
  return () => page.evaluate((path) => window.recordedPosts[path], path);
}

/** Sends `text` in `who`'s `window.room`; resolves with `{ ok: true, message }` or `{ ok: false, code, message }`. */
export function sendInRoom(who, text) {
  return who.page.evaluate(async (text) => {
    try {
      return { ok: true, message: await window.room.sendMessage({ text }) };
    } catch (error) {
      return { ok: false, code: error.code, message: error.message };
    }
  }, text);
}

// "Nothing else arrived" checks await a sentinel instead of sleeping: an
// event sent after the thing that must not arrive, to the same socket. The
// backend publishes before it answers the POST, the broker writes a socket's
// frames in the order it was given them, and a room applies its events in
// arrival order: once the sentinel is there, anything sent before it is too.

/** Posts a plaintext sentinel message to `roomId` as `poster` (its bearer API client); resolves with the stored message. */
export async function postSentinel(poster, roomId) {
  const clientId = `c-sentinel-${randomBytes(8).toString("hex")}`;
  const posted = await poster.api("POST", `/api/rooms/${roomId}/messages`, { client_id: clientId, text: `sentinel ${clientId}` });
  assert.equal(posted.status, 201, JSON.stringify(posted));
  return posted.body;
}

/** Resolves once `message` reached `who`'s onMessage log (`window.log`, see openChatRoom). */
export function sentinelHeard(who, message) {
  return eventually(`${who.name} to hear the sentinel ${message.client_id}`, () =>
    who.page.evaluate((id) => window.log.messages.some((heard) => heard.client_id === id), message.client_id));
}

/**
 * A sentinel for a page whose room cannot hear one (it left, or was refused):
 * a second channel on the page's socket (`window.realtime`), the private
 * channel of a fresh group room of `who` alone. Resolves with `arrived()`,
 * which posts a message there and resolves once the page received it.
 */
export async function socketSentinel(who) {
  const created = await who.api("POST", "/api/rooms", { kind: "group", name: "Sentinel", member_ids: [] });
  assert.equal(created.status, 201, JSON.stringify(created));
  const { room_id: roomId, channel_name: channelName } = created.body;
  const subscribed = await who.page.evaluate(
    (channelName) =>
      new Promise((resolve) => {
        window.sentinels = [];
        const channel = window.realtime.subscribe(channelName);
        channel.bind("message.created", (data) => window.sentinels.push(data.client_id));
        channel.bind("pusher:subscription_succeeded", () => resolve("ok"));
        channel.bind("pusher:subscription_error", (error) => resolve(error));
      }),
    channelName,
  );
  assert.equal(subscribed, "ok", `${who.name}'s page could not subscribe to the sentinel channel`);
  return async function arrived() {
    const message = await postSentinel(who, roomId);
    await eventually(`${who.name}'s page to receive the sentinel ${message.client_id}`, () =>
      who.page.evaluate((id) => window.sentinels.includes(id), message.client_id));
  };
}
