/**
 * Loading the wasm core, once, and calling into it with coded errors.
 *
 * Nothing here runs at import time, so importing the SDK is safe during
 * server-side rendering.
 */
import initWasm from "../wasm/domvia_realtime.js";
import { DomViaError, toDomViaError } from "./errors.js";

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
export function callCore<T>(operation: string, call: () => T): T {
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

/**
 * Reports an error thrown by an app's listener without letting it break the
 * SDK: the browser's `reportError` (shown like an uncaught error), else the console.
 */
export function reportListenerError(error: unknown): void {
  const report = (globalThis as { reportError?: (error: unknown) => void }).reportError;
  if (typeof report === "function") report(error);
  else console.error("domvia-realtime: a listener threw; the SDK goes on", error);
}
