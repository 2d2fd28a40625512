/**
 * `@domvia/realtime/core`: the pieces of `@domvia/realtime` that companion
 * packages (such as `@domvia/realtime-chat`) build on, so every package shares
 * the one instantiated wasm module. (`@domvia/realtime-e2ee` loads its own
 * E2EE module, with {@link wasmRuntime}, and uses the errors and listeners from here.)
 *
 * Not meant for apps: the classes here are the thin wasm boundary, with loose
 * types; the companion packages wrap them in typed APIs.
 *
 * @packageDocumentation
 */
export { ChatRoomSession } from "../wasm/domvia_realtime.js";
export type { ChatRoomSessionAction, ChatRoomSessionEvent, ChatRoomViewMessage } from "../wasm/domvia_realtime.js";
export { callCore, wasmRuntime } from "./runtime.js";
export type { WasmRuntime, WasmSource } from "./runtime.js";
export { Listeners } from "./listeners.js";
export { ROOM_EVENTS, routeToSession, TYPING_EVENTS } from "./realtime.js";
export { DomViaError, toDomViaError } from "./errors.js";
export type { BackendErrorCode, CoreErrorCode, DomViaErrorCode, SdkErrorCode } from "./errors.js";
