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
import initWasm, * as core from "../wasm/domvia_realtime.js";
import { DomViaError, toDomViaError } from "./errors.js";

export { DomViaError } from "./errors.js";
export type { DomViaErrorCode } from "./errors.js";

/** The kinds of Pusher channel, from the name's prefix. */
export type ChannelKind = "public" | "private" | "presence" | "private-encrypted";

/**
 * What a client does when the broker closes the socket with a code:
 * 4000-4099 `fail` (same settings will not work), 4100-4199 `backoff`,
 * 4200-4299 `reconnect_now`, 4300-4399 `keep_socket`; other codes `backoff`.
 */
export type CloseAction = "fail" | "backoff" | "reconnect_now" | "keep_socket";

/** Where to load the `.wasm` from, when not beside this module (the default). */
export type WasmSource = string | URL | Request | Response | BufferSource | WebAssembly.Module;

let loading: Promise<void> | undefined;
let loaded = false;

/**
 * Loads and instantiates the wasm module once; later calls return the same
 * promise. A failed load rejects with `wasm_load_failed` and may be retried.
 */
export function ready(source?: WasmSource): Promise<void> {
  loading ??= initWasm(source === undefined ? undefined : { module_or_path: source }).then(
    () => {
      loaded = true;
    },
    (cause: unknown) => {
      loading = undefined;
      const reason = cause instanceof Error ? cause.message : String(cause);
      throw new DomViaError("wasm_load_failed", `unable to load the DomVia wasm module; ${reason}`, {
        cause,
      });
    },
  );
  return loading;
}

/** Whether {@link ready} has finished, so the synchronous functions can run. */
export function isReady(): boolean {
  return loaded;
}

/** Runs a wasm call after checking the module is loaded, converting its errors. */
function callCore<T>(operation: string, call: () => T): T {
  if (!loaded) {
    throw new DomViaError(
      "not_ready",
      `unable to ${operation}; the DomVia wasm module is not loaded yet (await ready() first)`,
    );
  }
  try {
    return call();
  } catch (thrown) {
    throw toDomViaError(thrown);
  }
}

/** The SDK version, as reported by the wasm core. */
export function version(): string {
  return callCore("read the version", () => core.version());
}

/**
 * The channel for a chat room: `private-chat.room.{roomId}`, or
 * `presence-chat.room.{roomId}` with `{ presence: true }`.
 *
 * @throws {DomViaError} `invalid_room_id` when the id is empty, has a character
 * outside `A-Z a-z 0-9 _ - = @ , . ;`, or makes the name longer than 200.
 */
export function buildChatChannelName(roomId: string, options: { presence?: boolean } = {}): string {
  return callCore("build a chat channel name", () =>
    core.buildChatChannelName(roomId, options.presence === true),
  );
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
