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
export type { BackendErrorCode, CoreErrorCode, DomViaErrorCode, SdkErrorCode } from "./errors.js";
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

/** The characters a channel name (and so a room id) may hold (Pusher's rule). */
const NAME_CHARACTER = /^[A-Za-z0-9_\-=@,.;]$/;
const MAX_CHANNEL_NAME_LENGTH = 200;

/**
 * The core's rule (src/protocol/channel.rs), word for word, for the one call
 * that must work before the wasm loads. tests/vectors/channels.json, generated
 * from the core, holds both to the same names and messages
 * (test/channels.test.mjs). Names are quoted with `JSON.stringify`, as the core
 * quotes them, and positions count code points, as the core counts chars.
 */
function chatChannelNameBeforeLoad(roomId: string, presence: boolean): string {
  const invalid = (reason: string) =>
    new DomViaError(
      "invalid_room_id",
      `unable to build a channel name for room id ${typeof roomId === "string" ? JSON.stringify(roomId) : `(${typeof roomId})`}; ${reason}`,
    );
  if (typeof roomId !== "string") throw invalid("it is not a string");
  if (roomId.length === 0) throw invalid("it is empty");
  let position = 0;
  for (const character of roomId) {
    if (!NAME_CHARACTER.test(character)) {
      throw invalid(
        `${JSON.stringify(character)} at position ${position} is not allowed (only A-Z a-z 0-9 _ - = @ , . ;)`,
      );
    }
    position += 1;
  }
  const prefix = presence ? "presence-chat.room." : "private-chat.room.";
  // Only ASCII is left, so UTF-16 units are characters.
  const max = MAX_CHANNEL_NAME_LENGTH - prefix.length;
  if (roomId.length > max) {
    throw invalid(
      `it has ${roomId.length} characters, more than the ${max} that fit in a ${presence ? "presence" : "private"} channel name`,
    );
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
