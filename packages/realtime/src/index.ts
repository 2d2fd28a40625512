/**
 * `@domvia/realtime`: the connection to a Pusher-protocol broker, backed by the
 * DomVia Rust core compiled to WebAssembly.
 *
 * Importing this module does nothing else: it touches no `window`, starts no
 * download, so it is safe in server-side rendering. Call {@link ready} once in
 * the browser before the synchronous functions.
 *
 * @packageDocumentation
 */
import * as core from "../wasm/domvia_realtime.js";
import { DomViaError } from "./errors.js";
import { callCore, isReady } from "./runtime.js";

export { DomViaError } from "./errors.js";
export type { DomViaErrorCode } from "./errors.js";
export { ready, isReady } from "./runtime.js";
export type { WasmSource } from "./runtime.js";
export { DomViaRealtime } from "./realtime.js";
export type {
  Channel,
  ChannelEventCallback,
  ChannelState,
  ConnectionState,
  DomViaRealtimeOptions,
  EventMetadata,
  GlobalEventCallback,
  Member,
  PresenceMembers,
  RealtimeConnection,
  StateChange,
  SubscriptionError,
  Unsubscribe,
} from "./realtime.js";

/** The kinds of Pusher channel, from the name's prefix. */
export type ChannelKind = "public" | "private" | "presence" | "private-encrypted";

/**
 * What a client does when the broker closes the socket with a code:
 * 4000-4099 `fail` (same settings will not work), 4100-4199 `backoff`,
 * 4200-4299 `reconnect_now`, 4300-4399 `keep_socket`; other codes `backoff`.
 */
export type CloseAction = "fail" | "backoff" | "reconnect_now" | "keep_socket";

/** The SDK version, as reported by the wasm core. */
export function version(): string {
  return callCore("read the version", () => core.version());
}

/**
 * The channel for a chat room: `private-chat.room.{roomId}`, or
 * `presence-chat.room.{roomId}` with `{ presence: true }`.
 *
 * Works before {@link ready} too, because the documented pattern builds the
 * name in the same synchronous breath as `DomViaRealtime.create`.
 *
 * @throws {DomViaError} `invalid_room_id` when the id is empty, has a character
 * outside `A-Z a-z 0-9 _ - = @ , . ;`, or makes the name longer than 200.
 */
export function buildChatChannelName(roomId: string, options: { presence?: boolean } = {}): string {
  const presence = options.presence === true;
  if (!isReady()) return chatChannelNameBeforeLoad(roomId, presence);
  return callCore("build a chat channel name", () => core.buildChatChannelName(roomId, presence));
}

/** Channel names are at most 200 characters of these (Pusher's rule). */
const ROOM_ID_PATTERN = /^[A-Za-z0-9_\-=@,.;]+$/;
const MAX_CHANNEL_NAME_LENGTH = 200;

/**
 * The core's rule, for the one call that must work before the wasm loads; the
 * browser suite checks that both give the same answers.
 */
function chatChannelNameBeforeLoad(roomId: string, presence: boolean): string {
  const prefix = presence ? "presence-chat.room." : "private-chat.room.";
  const invalid = (reason: string) =>
    new DomViaError("invalid_room_id", `invalid room id ${JSON.stringify(roomId)}: ${reason}`);
  if (typeof roomId !== "string" || roomId.length === 0) throw invalid("it is empty");
  if (!ROOM_ID_PATTERN.test(roomId)) {
    throw invalid("it has a character outside A-Z a-z 0-9 _ - = @ , . ;");
  }
  if (prefix.length + roomId.length > MAX_CHANNEL_NAME_LENGTH) {
    throw invalid(`it makes the channel name longer than ${MAX_CHANNEL_NAME_LENGTH} characters`);
  }
  return prefix + roomId;
}

/**
 * Checks a channel name (1-200 characters of `A-Z a-z 0-9 _ - = @ , . ;`) and
 * returns its kind.
 *
 * @throws {DomViaError} `invalid_channel_name`
 */
export function validateChannelName(name: string): ChannelKind {
  return callCore("validate a channel name", () => core.validateChannelName(name) as ChannelKind);
}

/** What to do when the socket closes with `code`; see {@link CloseAction}. */
export function closeAction(code: number): CloseAction {
  if (!Number.isInteger(code) || code < 0 || code > 65535) return "backoff";
  return callCore("map a close code", () => core.closeAction(code) as CloseAction);
}
