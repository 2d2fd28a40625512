/**
 * Loading the wasm core, once, and calling into it with coded errors.
 *
 * Nothing here touches a browser global at import time, so importing the SDK is safe during
 * server-side rendering.
 */
import initWasm from "../wasm/domvia_realtime.js";
import { DomViaError, toDomViaError } from "./errors.js";

/**
 * Where to load a `.wasm` from, when not from beside the package (the default):
 * its URL, a fetch `Request` or `Response`, its bytes, or a compiled module.
 */
export type WasmSource = string | URL | Request | Response | BufferSource | WebAssembly.Module;

/** Loading one wasm module, once, and calling into it with coded errors. */
export interface WasmRuntime {
  /**
   * Loads and instantiates the module once; later calls return the same
   * promise (and ignore their `source`). A failed load rejects with
   * `wasm_load_failed`, naming the URL it tried and what the server answered,
   * and may be retried.
   */
  ready(source?: WasmSource): Promise<void>;
  /** Whether {@link ready} has finished, so the synchronous functions can run. */
  isReady(): boolean;
  /** Runs a wasm call after checking the module is loaded (else `not_ready`), converting its errors. */
  callCore<T>(operation: string, call: () => T): T;
}

/** The first bytes of every WebAssembly binary (`\0asm`). */
const WASM_MAGIC = [0x00, 0x61, 0x73, 0x6d];

function describe(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}

/**
 * Fetches a `.wasm` by URL and checks what came back before instantiating it,
 * so a wrong URL fails with the URL and the server's answer rather than the
 * engine's "expected magic word" (a bundler or dev server that does not know
 * the file usually answers 404, or 200 with its HTML page).
 */
async function fetchWasm(url: string | URL, name: string): Promise<Response | ArrayBuffer> {
  const shown = String(url);
  const failed = (why: string, cause?: unknown): DomViaError =>
    new DomViaError("wasm_load_failed", `unable to load the ${name} from ${shown}; ${why}`, { cause });
  let response: Response;
  try {
    response = await fetch(url);
  } catch (cause) {
    throw failed(`the request failed (${describe(cause)})`, cause);
  }
  if (!response.ok) throw failed(`the server answered ${response.status} ${response.statusText}`.trimEnd());
  const type = response.headers.get("content-type") ?? "";
  // The one type instantiateStreaming accepts: hand the stream over as it is.
  if (type.split(";")[0]?.trim().toLowerCase() === "application/wasm") return response;
  const bytes = await response.arrayBuffer();
  const head = new Uint8Array(bytes, 0, Math.min(4, bytes.byteLength));
  if (!WASM_MAGIC.every((byte, i) => head[i] === byte)) {
    throw failed(
      `the server answered ${type || "without a Content-Type"}, not WebAssembly ` +
        "(a page in place of the .wasm file: pass the file's URL in the `wasm` option, see the README's bundler notes)",
    );
  }
  return bytes;
}

/**
 * The {@link WasmRuntime} of a wasm-bindgen module: `init` is its glue's
 * default export, `name` how messages call it ("DomVia wasm module"), and
 * `defaultUrl` where its `.wasm` lies beside the package (a
 * `new URL("…", import.meta.url)` that bundlers follow and copy the file for).
 * `@domvia/realtime-e2ee` makes one for its own module.
 */
export function wasmRuntime(
  init: (options: { module_or_path: WasmSource }) => Promise<unknown>,
  name: string,
  defaultUrl: () => URL,
): WasmRuntime {
  let loading: Promise<void> | undefined;
  let loaded = false;
  const load = async (source: WasmSource | undefined): Promise<void> => {
    const chosen = source ?? defaultUrl();
    const byUrl = typeof chosen === "string" || chosen instanceof URL;
    const shown = byUrl ? ` from ${String(chosen)}` : "";
    const module = byUrl ? await fetchWasm(chosen, name) : chosen;
    try {
      await init({ module_or_path: module });
    } catch (cause) {
      throw new DomViaError("wasm_load_failed", `unable to load the ${name}${shown}; ${describe(cause)}`, { cause });
    }
  };
  return {
    ready(source) {
      loading ??= load(source).then(
        () => {
          loaded = true;
        },
        (cause: unknown) => {
          loading = undefined;
          throw cause instanceof DomViaError
            ? cause
            : new DomViaError("wasm_load_failed", `unable to load the ${name}; ${describe(cause)}`, { cause });
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

// Written here, not left to the glue (whose own default the build removes), so
// that the one place bundlers see the file is also the URL errors name.
const runtime = wasmRuntime(
  initWasm,
  "DomVia wasm module",
  () => new URL("../wasm/domvia_realtime_bg.wasm", import.meta.url),
);

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
