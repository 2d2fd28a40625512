// Talking to the reference backend and the broker from Node the way an app
// would: HTTP JSON with a bearer session, and pusher-js (the reference client,
// written by others) over a real WebSocket.
import Pusher from "pusher-js";

const WAIT_LIMIT_MS = 10_000;

/** Resolves with what `register(resolve)` resolves with, or rejects after `ms`. */
export function within(what, register, ms = WAIT_LIMIT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    register((value) => {
      clearTimeout(timer);
      resolve(value);
    }, reject);
  });
}

/** Polls `check` until it returns a truthy value, within `ms`. */
export async function eventually(what, check, ms = WAIT_LIMIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A signed-in user of the reference backend at `baseUrl`. */
export async function signIn(baseUrl, name) {
  const response = await fetch(`${baseUrl}/api/session`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  if (!response.ok) throw new Error(`sign-in as ${name} failed: ${response.status} ${await response.text()}`);
  const { user, token } = await response.json();
  return { ...user, token, api: (method, path, body) => call(baseUrl, token, method, path, body) };
}

/** One JSON request; resolves with `{ status, body }` whatever the status. */
export async function call(baseUrl, token, method, path, body) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // Leave non-JSON bodies as text; tests assert on them.
  }
  return { status: response.status, body: parsed };
}

/** A pusher-js client for `user` (or anonymous), connected to the server's broker. */
export async function connectPusher(server, app, user, options = {}) {
  const headers = user ? { Authorization: `Bearer ${user.token}` } : {};
  const client = new Pusher(app.key, {
    wsHost: "127.0.0.1",
    wsPort: server.port,
    forceTLS: false,
    enabledTransports: ["ws"],
    disableStats: true,
    cluster: "local",
    channelAuthorization: { endpoint: `${server.url}/realtime/auth`, transport: "ajax", headers },
    ...options,
  });
  await within("pusher-js to connect", (resolve, reject) => {
    client.connection.bind("connected", resolve);
    client.connection.bind("failed", () => reject(new Error("pusher-js connection failed")));
  });
  return client;
}

/** Subscribes and resolves with the channel once the broker acknowledged it. */
export function subscribed(client, channelName) {
  const channel = client.subscribe(channelName);
  return within(`subscription to ${channelName}`, (resolve, reject) => {
    channel.bind("pusher:subscription_succeeded", () => resolve(channel));
    channel.bind("pusher:subscription_error", (error) =>
      reject(Object.assign(new Error(`subscription to ${channelName} refused`), { status: error.status, error })),
    );
  });
}

/** Subscribes and resolves with the subscription error pusher-js reports. */
export function refused(client, channelName) {
  const channel = client.subscribe(channelName);
  return within(`refusal of ${channelName}`, (resolve, reject) => {
    channel.bind("pusher:subscription_succeeded", () => reject(new Error(`${channelName} was accepted`)));
    channel.bind("pusher:subscription_error", resolve);
  });
}

/** Collects every `event` on `channel` into an array. */
export function collect(channel, event) {
  const received = [];
  channel.bind(event, (data, metadata) => received.push({ data, metadata }));
  return received;
}
