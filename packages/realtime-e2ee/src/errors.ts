import type { DomViaErrorCode } from "@domvia/realtime/core";
import { DomViaError, toDomViaError } from "@domvia/realtime/core";

/** A `DomViaError` with one of the registered codes ({@link DomViaErrorCode}: the core's `e2ee_*` codes, this package's, the backend's). */
export function e2eeError(code: DomViaErrorCode, message: string, options?: { cause?: unknown }): DomViaError {
  return new DomViaError(code, message, options);
}

/**
 * A failure the room's E2EE session reported: its code is the core's, one of
 * the session's `e2ee_*` codes, or a backend's passed through from a refused
 * request, which no type can know in advance. The one unchecked code here.
 */
export function sessionError(code: string, message: string): DomViaError {
  return new DomViaError(code as DomViaErrorCode, message);
}

/** Whatever was thrown, as a `DomViaError` (core errors keep their `e2ee_*` code). */
export function asError(thrown: unknown): DomViaError {
  return toDomViaError(thrown);
}

export { DomViaError };

/** The code of whatever was thrown, as a plain string (a backend of the app's own may answer codes outside `DomViaErrorCode`). */
export function codeOf(thrown: unknown): string {
  return asError(thrown).code;
}
