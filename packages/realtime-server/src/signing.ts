/**
 * Signatures the app server makes for the broker: private and presence channel
 * authorization, user sign-in, and signed REST requests; and the matching
 * checks a broker (or a test) makes.
 *
 * A channel auth is `"{key}:" + hex(HMAC-SHA256(secret, message))`, where the
 * message is `socket_id:channel_name` for a private channel and
 * `socket_id:channel_name:channel_data` for a presence channel. A user sign-in
 * signs `socket_id::user::user_data`. All pure computation over `node:crypto`.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";

import { describe, validateChannelName } from "./channels.js";
import { DomViaServerError } from "./errors.js";

/**
 * The app credentials. `undefined` is accepted so that `process.env.X` can be
 * passed as it is; a missing or empty value rejects with `invalid_config`.
 */
export interface AppCredentials {
  /** The app key (public; it is also in the browser config). */
  key: string | undefined;
  /** The app secret. Never send it to a browser. */
  secret: string | undefined;
}

/** What a channel auth endpoint returns for a private channel. */
export interface PrivateChannelAuth {
  /** `key:signature`. */
  auth: string;
}

/** What a channel auth endpoint returns for a presence channel. */
export interface PresenceChannelAuth {
  /** `key:signature`, over the socket id, channel name and `channel_data`. */
  auth: string;
  /** The signed member data: JSON text of `{ user_id, user_info? }`. */
  channel_data: string;
}

/** What a user authentication (`pusher:signin`) endpoint returns. */
export interface UserAuth {
  /** `key:signature`, over the socket id and `user_data`. */
  auth: string;
  /** The signed user data: JSON text of the user object as given. */
  user_data: string;
}

/** Public information about a presence member: any JSON value. */
export type PresenceUserInfo = string | number | boolean | null | object;

/** The presence member the app server vouches for. */
export interface PresenceUser {
  /** The user's id: a non-empty string, stamped by the broker on client events. */
  id: string;
  /** Public information other members see (name, avatar); omitted when undefined. */
  info?: PresenceUserInfo | undefined;
}

/**
 * The signed-in user for Pusher user authentication. `id` is required; the
 * other fields (`user_info`, `watchlist`, ...) are serialized as given.
 */
export interface SignInUser {
  /** The user's id: a non-empty string. */
  id: string;
  /** Public information about the user. */
  user_info?: object | undefined;
  /** Ids of users whose online status this user may watch. */
  watchlist?: readonly string[] | undefined;
  /** Any further JSON-serializable fields. */
  [field: string]: unknown;
}

/** What {@link authorizePrivateChannel} signs. */
export interface PrivateChannelRequest extends AppCredentials {
  /** The `socket_id` the browser posted. */
  socketId: string;
  /** The `channel_name` the browser posted: `private-...`. */
  channelName: string;
}

/** What {@link authorizePresenceChannel} signs. */
export interface PresenceChannelRequest extends AppCredentials {
  /** The `socket_id` the browser posted. */
  socketId: string;
  /** The `channel_name` the browser posted: `presence-...`. */
  channelName: string;
  /** The member, from your session (never from the request body). */
  user: PresenceUser;
}

/** What {@link authenticateUser} signs. */
export interface UserSignInRequest extends AppCredentials {
  /** The `socket_id` the browser posted. */
  socketId: string;
  /** The signed-in user, from your session. */
  user: SignInUser;
}

/** What {@link verifyChannelAuth} checks. */
export interface ChannelAuthToVerify extends AppCredentials {
  /** The subscribing socket. */
  socketId: string;
  /** The channel subscribed to. */
  channelName: string;
  /** The `auth` the client sent: `key:signature`. */
  auth: string;
  /** The `channel_data` the client sent (required for presence channels). */
  channelData?: string | undefined;
}

/** What {@link verifyUserAuth} checks. */
export interface UserAuthToVerify extends AppCredentials {
  /** The signing-in socket. */
  socketId: string;
  /** The `auth` the client sent: `key:signature`. */
  auth: string;
  /** The `user_data` the client sent (JSON text). */
  userData: string;
}

/** A socket id as the brokers issue it: ASCII digits, a dot, ASCII digits. */
const SOCKET_ID = /^[0-9]+\.[0-9]+$/;

/** Lowercase hex HMAC-SHA256 of `message` (UTF-8) under `secret` (UTF-8). */
function hmacHex(secret: string, message: string | Uint8Array): string {
  return createHmac("sha256", secret).update(message).digest("hex");
}

/** Checks the credentials and returns them as strings. */
export function checkCredentials(
  operation: string,
  credentials: AppCredentials,
): { key: string; secret: string } {
  const { key, secret } = credentials;
  if (typeof key !== "string" || key.length === 0) {
    throw new DomViaServerError(
      "invalid_config",
      `unable to ${operation}; the app key is missing or empty (is the environment variable set?)`,
    );
  }
  if (key.includes(":")) {
    throw new DomViaServerError(
      "invalid_config",
      `unable to ${operation}; the app key must not contain ":"`,
    );
  }
  if (typeof secret !== "string" || secret.length === 0) {
    throw new DomViaServerError(
      "invalid_config",
      `unable to ${operation}; the app secret is missing or empty (is the environment variable set?)`,
    );
  }
  return { key, secret };
}

/**
 * Checks a socket id has the form the brokers issue (`1234.5678`).
 *
 * @throws {DomViaServerError} `invalid_socket_id`
 */
export function validateSocketId(socketId: string, operation = "authorize"): void {
  if (typeof socketId !== "string" || !SOCKET_ID.test(socketId)) {
    throw new DomViaServerError(
      "invalid_socket_id",
      `unable to ${operation}; the socket id ${describe(socketId)} is not of the form "1234.5678"`,
    );
  }
}

/** Validates a channel name and checks that it has the expected kind. */
function requireChannelKind(
  channelName: string,
  expected: "private" | "presence",
  operation: string,
): void {
  const kind = validateChannelName(channelName);
  if (kind !== expected) {
    const hint =
      kind === "private-encrypted"
        ? " (private-encrypted- channels need a shared secret this package does not issue)"
        : "";
    throw new DomViaServerError(
      "wrong_channel_kind",
      `unable to ${operation} channel ${describe(channelName)}; it is not a ${expected} channel${hint}`,
    );
  }
}

/** JSON text of `value`, or `invalid_user_data` when it has none. */
function serializeUserData(value: unknown, operation: string): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new DomViaServerError(
      "invalid_user_data",
      `unable to ${operation}; the user data cannot be serialized as JSON: ${reason}`,
      { cause },
    );
  }
  if (typeof text !== "string") {
    throw new DomViaServerError(
      "invalid_user_data",
      `unable to ${operation}; the user data cannot be serialized as JSON`,
    );
  }
  return text;
}

/** Checks that a user id is a non-empty string. */
function requireUserId(id: unknown, operation: string, field = "the user id"): void {
  if (typeof id !== "string" || id.length === 0) {
    throw new DomViaServerError(
      "invalid_user_data",
      `unable to ${operation}; ${field} must be a non-empty string`,
    );
  }
}

/**
 * Signs a browser's subscription to a private channel. Call it only after
 * checking that the signed-in user may read the channel (for chat rooms, use
 * {@link chatRoomIdFromChannel} to find the room).
 *
 * @returns `{ auth }`, the JSON body the auth endpoint sends back
 * @throws {DomViaServerError} (as a rejection) `invalid_config`,
 * `invalid_socket_id`, `invalid_channel_name`, `wrong_channel_kind`
 */
export async function authorizePrivateChannel(
  params: PrivateChannelRequest,
): Promise<PrivateChannelAuth> {
  const operation = "authorize the private channel";
  const { key, secret } = checkCredentials(operation, params);
  validateSocketId(params.socketId, operation);
  requireChannelKind(params.channelName, "private", "authorize");
  return { auth: `${key}:${hmacHex(secret, `${params.socketId}:${params.channelName}`)}` };
}

/**
 * Signs a browser's subscription to a presence channel as `user`, who becomes
 * a member other subscribers see. Check membership before calling.
 *
 * `channel_data` is `JSON.stringify({ user_id: user.id, user_info: user.info })`
 * (`user_info` left out when undefined), exactly what Pusher's libraries send.
 *
 * @returns `{ auth, channel_data }`, the JSON body the auth endpoint sends back
 * @throws {DomViaServerError} (as a rejection) `invalid_config`,
 * `invalid_socket_id`, `invalid_channel_name`, `wrong_channel_kind`,
 * `invalid_user_data`
 */
export async function authorizePresenceChannel(
  params: PresenceChannelRequest,
): Promise<PresenceChannelAuth> {
  const operation = "authorize the presence channel";
  const { key, secret } = checkCredentials(operation, params);
  validateSocketId(params.socketId, operation);
  requireChannelKind(params.channelName, "presence", "authorize");
  const user: unknown = params.user;
  if (typeof user !== "object" || user === null) {
    throw new DomViaServerError(
      "invalid_user_data",
      `unable to ${operation}; the user must be an object with an id`,
    );
  }
  const { id, info } = user as PresenceUser;
  requireUserId(id, operation);
  const channelData = serializeUserData({ user_id: id, user_info: info }, operation);
  const message = `${params.socketId}:${params.channelName}:${channelData}`;
  return { auth: `${key}:${hmacHex(secret, message)}`, channel_data: channelData };
}

/**
 * Signs a browser's user sign-in (`pusher:signin`, Pusher user authentication).
 *
 * `user_data` is `JSON.stringify(user)`, fields in the order given.
 *
 * @returns `{ auth, user_data }`, the JSON body the endpoint sends back
 * @throws {DomViaServerError} (as a rejection) `invalid_config`,
 * `invalid_socket_id`, `invalid_user_data`
 */
export async function authenticateUser(
  params: UserSignInRequest,
): Promise<UserAuth> {
  const operation = "authenticate the user";
  const { key, secret } = checkCredentials(operation, params);
  validateSocketId(params.socketId, operation);
  const user: unknown = params.user;
  if (typeof user !== "object" || user === null || Array.isArray(user)) {
    throw new DomViaServerError(
      "invalid_user_data",
      `unable to ${operation}; the user must be an object with an id`,
    );
  }
  requireUserId((user as SignInUser).id, operation);
  const userData = serializeUserData(user, operation);
  const message = `${params.socketId}::user::${userData}`;
  return { auth: `${key}:${hmacHex(secret, message)}`, user_data: userData };
}

/**
 * Compares a `key:signature` auth string with the expected signature of
 * `message`, in constant time over the signature bytes.
 */
function verifyAuthString(
  key: string,
  secret: string,
  auth: unknown,
  message: string,
  operation: string,
): void {
  if (typeof auth !== "string") {
    throw new DomViaServerError("invalid_signature", `unable to ${operation}; the auth is missing`);
  }
  const colon = auth.lastIndexOf(":");
  if (colon < 0) {
    throw new DomViaServerError(
      "invalid_signature",
      `unable to ${operation}; the auth is not of the form "key:signature"`,
    );
  }
  if (auth.slice(0, colon) !== key) {
    throw new DomViaServerError(
      "auth_key_mismatch",
      `unable to ${operation}; it was signed with another app key (check that client and server use the same key)`,
    );
  }
  if (!verifyHexSignature(secret, message, auth.slice(colon + 1))) {
    throw new DomViaServerError(
      "invalid_signature",
      `unable to ${operation}; the signature is malformed or does not match`,
    );
  }
}

/**
 * True when `signatureHex` is the hex HMAC-SHA256 of `message` under `secret`
 * (either hex case), compared with `crypto.timingSafeEqual` after a length check.
 */
export function verifyHexSignature(
  secret: string,
  message: string | Uint8Array,
  signatureHex: string,
): boolean {
  if (typeof signatureHex !== "string" || !/^[0-9a-fA-F]{64}$/.test(signatureHex)) return false;
  const expected = createHmac("sha256", secret).update(message).digest();
  const given = Buffer.from(signatureHex, "hex");
  if (given.length !== expected.length) return false;
  return timingSafeEqual(given, expected);
}

/**
 * Checks a channel auth as a broker does before accepting a subscription:
 * the key must be this app's and the signature must match (constant time).
 * For a presence channel, `channelData` is required and must name a user id.
 *
 * @throws {DomViaServerError} `invalid_config`, `invalid_socket_id`,
 * `invalid_channel_name`, `wrong_channel_kind` (a public channel needs no auth),
 * `invalid_user_data`, `auth_key_mismatch`, `invalid_signature`
 */
export function verifyChannelAuth(
  params: ChannelAuthToVerify,
): void {
  const operation = "verify the channel auth";
  const { key, secret } = checkCredentials(operation, params);
  validateSocketId(params.socketId, operation);
  const kind = validateChannelName(params.channelName);
  if (kind === "public") {
    throw new DomViaServerError(
      "wrong_channel_kind",
      `unable to verify the channel auth for ${describe(params.channelName)}; a public channel takes no auth`,
    );
  }
  const { channelData } = params;
  if (kind === "presence") {
    let member: unknown;
    try {
      member = typeof channelData === "string" ? JSON.parse(channelData) : undefined;
    } catch {
      member = undefined;
    }
    const userId =
      typeof member === "object" && member !== null
        ? (member as { user_id?: unknown }).user_id
        : undefined;
    requireUserId(userId, operation, "the user_id in the presence channel_data");
  }
  const message =
    channelData === undefined
      ? `${params.socketId}:${params.channelName}`
      : `${params.socketId}:${params.channelName}:${channelData}`;
  verifyAuthString(key, secret, params.auth, message, operation);
}

/**
 * Checks a user sign-in as a broker does before accepting `pusher:signin`:
 * the key must be this app's, the signature must match (constant time), and
 * `user_data` must be a JSON object with a non-empty string `id`.
 *
 * @throws {DomViaServerError} `invalid_config`, `invalid_socket_id`,
 * `invalid_user_data`, `auth_key_mismatch`, `invalid_signature`
 */
export function verifyUserAuth(
  params: UserAuthToVerify,
): void {
  const operation = "verify the user auth";
  const { key, secret } = checkCredentials(operation, params);
  validateSocketId(params.socketId, operation);
  let user: unknown;
  try {
    user = typeof params.userData === "string" ? JSON.parse(params.userData) : undefined;
  } catch {
    user = undefined;
  }
  const id =
    typeof user === "object" && user !== null && !Array.isArray(user)
      ? (user as { id?: unknown }).id
      : undefined;
  requireUserId(id, operation, "the id in user_data");
  verifyAuthString(key, secret, params.auth, `${params.socketId}::user::${params.userData}`, operation);
}

/** The query parameters the signature scheme owns. */
const RESERVED_PARAMS = new Set([
  "auth_key",
  "auth_timestamp",
  "auth_version",
  "auth_signature",
  "body_md5",
]);

/** Lowercase hex MD5 of `body` (UTF-8), the `body_md5` parameter. */
export function md5Hex(body: string): string {
  return createHash("md5").update(body, "utf8").digest("hex");
}

/**
 * Percent-encodes all but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`),
 * so ordinary values appear exactly as the Pusher libraries write them.
 */
function percentEncode(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (character) => `%${character.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** What {@link signRestRequest} signs. */
export interface RestRequestToSign extends AppCredentials {
  /** The HTTP method; uppercased for signing. */
  method: string;
  /** The request path exactly as sent, e.g. `/apps/3/events`. */
  path: string;
  /**
   * The request's own query parameters (e.g. `info`). Keys are lowercased;
   * the scheme's own keys (`auth_*`, `body_md5`) are refused.
   */
  params?: Readonly<Record<string, string | number>> | undefined;
  /** The exact body text sent, if any; a non-empty body adds `body_md5`. */
  body?: string | undefined;
  /** `auth_timestamp`: whole seconds since the Unix epoch. */
  timestamp: number;
}

/**
 * Signs a REST API request exactly as Pusher's server libraries do and returns
 * its query string (without `?`).
 *
 * The parameters are `auth_key`, `auth_timestamp`, `auth_version=1.0`,
 * `body_md5` (hex MD5 of a non-empty body) and `params`, sorted by key; the
 * string to sign is `METHOD\npath\nk=v&k=v` with the values unescaped; its hex
 * HMAC-SHA256 goes last as `auth_signature`. In the returned query, keys and
 * values are percent-encoded where they need it (nothing in the common case).
 *
 * @throws {DomViaServerError} `invalid_config`, `invalid_request`
 */
export function signRestRequest(request: RestRequestToSign): string {
  const operation = "sign the REST request";
  const { key, secret } = checkCredentials(operation, request);
  const invalid = (reason: string): DomViaServerError =>
    new DomViaServerError("invalid_request", `unable to ${operation}; ${reason}`);
  const { method, path, body, timestamp } = request;
  if (typeof method !== "string" || !/^[A-Za-z]+$/.test(method)) {
    throw invalid(`the method ${describe(method)} is not an HTTP method`);
  }
  if (typeof path !== "string" || !path.startsWith("/")) {
    throw invalid(`the path ${describe(path)} does not start with "/"`);
  }
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw invalid("the timestamp must be whole seconds since the Unix epoch");
  }
  if (body !== undefined && typeof body !== "string") {
    throw invalid("the body must be the exact text sent");
  }

  const params = new Map<string, string>([
    ["auth_key", key],
    ["auth_timestamp", String(timestamp)],
    ["auth_version", "1.0"],
  ]);
  if (body !== undefined && body.length > 0) params.set("body_md5", md5Hex(body));
  for (const [name, value] of Object.entries(request.params ?? {})) {
    const lower = name.toLowerCase();
    if (lower.length === 0) throw invalid("a query parameter has an empty name");
    if (RESERVED_PARAMS.has(lower)) {
      throw invalid(`the query parameter ${describe(name)} belongs to the signature scheme`);
    }
    if (params.has(lower)) {
      throw invalid(`the query parameter ${describe(name)} is given twice`);
    }
    if (typeof value !== "string" && !(typeof value === "number" && Number.isFinite(value))) {
      throw invalid(`the query parameter ${describe(name)} must be a string or a number`);
    }
    params.set(lower, String(value));
  }

  // Sort by the UTF-8 bytes of the key, as the brokers do.
  const sorted = [...params].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const stringToSign = `${method.toUpperCase()}\n${path}\n${sorted
    .map(([name, value]) => `${name}=${value}`)
    .join("&")}`;
  let query: string;
  try {
    query = sorted.map(([name, value]) => `${percentEncode(name)}=${percentEncode(value)}`).join("&");
  } catch (cause) {
    throw new DomViaServerError(
      "invalid_request",
      `unable to ${operation}; a query parameter is not valid Unicode text`,
      { cause },
    );
  }
  return `${query}&auth_signature=${hmacHex(secret, stringToSign)}`;
}
