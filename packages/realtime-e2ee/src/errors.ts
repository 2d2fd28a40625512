import type { DomViaErrorCode } from "@domvia/realtime/core";
import { DomViaError, toDomViaError } from "@domvia/realtime/core";
import type { E2eeErrorCode } from "./types.js";

/** A `DomViaError` with an e2ee, core or backend code (the core's union does not list them). */
export function e2eeError(code: E2eeErrorCode | string, message: string, options?: { cause?: unknown }): DomViaError {
  return new DomViaError(code as DomViaErrorCode, message, options);
}

/** Whatever was thrown, as a `DomViaError` (core errors keep their `e2ee_*` code). */
export function asError(thrown: unknown): DomViaError {
  return toDomViaError(thrown);
}

export { DomViaError };

/** The code of whatever was thrown, as a plain string (backend codes are not in the core's union). */
export function codeOf(thrown: unknown): string {
  return asError(thrown).code;
}
