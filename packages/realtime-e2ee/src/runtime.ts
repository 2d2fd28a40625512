/**
 * Loading this package's own wasm module (the E2EE classes), once, and calling
 * into it with coded errors. A separate module from `@domvia/realtime`'s, so
 * apps without encrypted rooms never download the encryption code.
 *
 * Nothing here runs at import time, so importing the package is safe during
 * server-side rendering.
 */
import initWasm from "../wasm/domvia_e2ee.js";
import { wasmRuntime } from "@domvia/realtime/core";
import type { WasmRuntime } from "@domvia/realtime/core";

export { E2eeDevice, E2eeRoomSession } from "../wasm/domvia_e2ee.js";
import { safetyNumber as wasmSafetyNumber } from "../wasm/domvia_e2ee.js";
export type { E2eeSessionAction } from "../wasm/domvia_e2ee.js";
export type { WasmSource } from "@domvia/realtime/core";

const runtime = wasmRuntime(
  initWasm,
  "DomVia E2EE wasm module",
  () => new URL("../wasm/domvia_e2ee_bg.wasm", import.meta.url),
);

/** Loads and instantiates the E2EE wasm module once; a failed load rejects with `wasm_load_failed` and may be retried. */
export const ready: WasmRuntime["ready"] = runtime.ready;
/** Runs a call into the E2EE module after checking it is loaded (else `not_ready`), converting its errors. */
export const callCore: WasmRuntime["callCore"] = runtime.callCore;

/**
 * The safety number of two device records (JSON objects): the wasm export,
 * with a coded `not_ready` error instead of a trap before the module loads.
 */
export const safetyNumber: typeof wasmSafetyNumber = (...args) =>
  callCore("compute a safety number", () => wasmSafetyNumber(...args));
