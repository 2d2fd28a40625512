/**
 * Loading this package's own wasm module (the E2EE classes), once, and calling
 * into it with coded errors. A separate module from `@domvia/realtime`'s, so
 * apps without encrypted rooms never download the encryption code.
 *
 * Nothing here runs at import time, so importing the package is safe during
 * server-side rendering.
 */
import initWasm from "../wasm/domvia_e2ee.js";
import { DomViaError, toDomViaError } from "@domvia/realtime/core";

export { E2eeDevice, E2eeKnownDevices, E2eeRoom } from "../wasm/domvia_e2ee.js";
import { safetyNumber as wasmSafetyNumber } from "../wasm/domvia_e2ee.js";
export type { E2eeNewEpoch, E2eeOpenedMessage } from "../wasm/domvia_e2ee.js";

/** Where to load the `.wasm` from, when not beside this module (the default). */
export type WasmSource = string | URL | Request | Response | BufferSource | WebAssembly.Module;

let loading: Promise<void> | undefined;
let loaded = false;

/**
 * Loads and instantiates the E2EE wasm module once; later calls return the
 * same promise. A failed load rejects with `wasm_load_failed` and may be retried.
 */
export function ready(source?: WasmSource): Promise<void> {
  loading ??= initWasm(source === undefined ? undefined : { module_or_path: source }).then(
    () => {
      loaded = true;
    },
    (cause: unknown) => {
      loading = undefined;
      const reason = cause instanceof Error ? cause.message : String(cause);
      throw new DomViaError("wasm_load_failed", `unable to load the DomVia E2EE wasm module; ${reason}`, {
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

/** Runs a wasm call after checking the E2EE module is loaded, converting its errors. */
export function callCore<T>(operation: string, call: () => T): T {
  if (!loaded) {
    throw new DomViaError(
      "not_ready",
      `unable to ${operation}; the DomVia E2EE wasm module is not loaded yet (await ready() first)`,
    );
  }
  try {
    return call();
  } catch (thrown) {
    throw toDomViaError(thrown);
  }
}

/**
 * The safety number of two device records (JSON objects): the wasm export,
 * with a coded `not_ready` error instead of a trap before the module loads.
 */
export const safetyNumber: typeof wasmSafetyNumber = (...args) =>
  callCore("compute a safety number", () => wasmSafetyNumber(...args));
