/**
 * Loading the wasm core, once, and calling into it with coded errors.
 *
 * Nothing here touches a browser global at import time, so importing the SDK is safe during
 * server-side rendering.
 */
import initWasm from "../wasm/domvia_realtime.js";
import { DomViaError, toDomViaError } from "./errors.js";

/** Where to load the `.wasm` from, when not beside this module (the default). */
export type WasmSource = string | URL | Request | Response | BufferSource | WebAssembly.Module;

/** Loading one wasm module, once, and calling into it with coded errors. */
export interface WasmRuntime {
  /**
   * Loads and instantiates the module once; later calls return the same
   * promise. A failed load rejects with `wasm_load_failed` and may be retried.
   */
  ready(source?: WasmSource): Promise<void>;
  /** Whether {@link ready} has finished, so the synchronous functions can run. */
  isReady(): boolean;
  /** Runs a wasm call after checking the module is loaded (else `not_ready`), converting its errors. */
  callCore<T>(operation: string, call: () => T): T;
}

/**
 * The {@link WasmRuntime} of a wasm-bindgen module: `init` is its glue's
 * default export, `name` how messages call it ("DomVia wasm module").
 * `@domvia/realtime-e2ee` makes one for its own module.
 */
export function wasmRuntime(
  init: (options: { module_or_path: WasmSource } | undefined) => Promise<unknown>,
  name: string,
): WasmRuntime {
  let loading: Promise<void> | undefined;
  let loaded = false;
  return {
    ready(source) {
      loading ??= init(source === undefined ? undefined : { module_or_path: source }).then(
        () => {
          loaded = true;
        },
        (cause: unknown) => {
          loading = undefined;
          const reason = cause instanceof Error ? cause.message : String(cause);
          throw new DomViaError("wasm_load_failed", `unable to load the ${name}; ${reason}`, { cause });
        },
      );
      return loading;
    },
    isReady: () => loaded,
    callCore(operation, call) {
      if (!loaded) {
        throw new DomViaError("not_ready", `unable to ${operation}; the ${name} is not loaded yet (await ready() first)`);
      }
      try {
        return call();
      } catch (thrown) {
        throw toDomViaError(thrown);
      }
    },
  };
}

const runtime = wasmRuntime(initWasm, "DomVia wasm module");

/** Loads and instantiates the wasm module once (see {@link WasmRuntime.ready}). */
export const ready: WasmRuntime["ready"] = runtime.ready;
/** Whether {@link ready} has finished, so the synchronous functions can run. */
export const isReady: WasmRuntime["isReady"] = runtime.isReady;
/** Runs a wasm call after checking the module is loaded, converting its errors. */
export const callCore: WasmRuntime["callCore"] = runtime.callCore;

/**
 * Reports an error thrown by an app's listener without letting it break the
 * SDK: the browser's `reportError` (shown like an uncaught error), else the console.
 */
export function reportListenerError(error: unknown): void {
  const report = (globalThis as { reportError?: (error: unknown) => void }).reportError;
  if (typeof report === "function") report(error);
  else console.error("domvia-realtime: a listener threw; the SDK goes on", error);
}
