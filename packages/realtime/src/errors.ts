/**
 * Stable error codes. They never change meaning; match on `error.code`, not on
 * the message, which is for people.
 *
 * The codes from the Rust core cross the wasm boundary unchanged.
 */
export type DomViaErrorCode =
  | "not_ready"
  | "wasm_load_failed"
  | "invalid_config"
  | "missing_provider"
  | "disposed"
  | "not_subscribed"
  | "client_events_disabled"
  | "invalid_event_name"
  | "payload_too_large"
  | "invalid_channel_name"
  | "invalid_room_id"
  | "wrong_channel_kind"
  | "invalid_socket_id"
  | "malformed_frame"
  | "invalid_event_data"
  | "invalid_user_data"
  | "auth_key_mismatch"
  | "invalid_signature"
  | "missing_auth_param"
  | "unsupported_auth_version"
  | "auth_timestamp_expired"
  | "body_md5_mismatch"
  | "invalid_auth_response"
  | "invalid_message"
  | "invalid_text"
  | "text_too_large"
  | "invalid_client_id"
  | "unknown_client_id"
  | "internal";

/** Every error the SDK throws or rejects with. */
export class DomViaError extends Error {
  override readonly name = "DomViaError";

  constructor(
    readonly code: DomViaErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Re-throws what a wasm call threw as a {@link DomViaError}: the core throws
 * plain `Error`s that carry a `code`; anything else is a bug, reported as
 * `internal` with the original as its cause.
 */
export function toDomViaError(thrown: unknown): DomViaError {
  if (thrown instanceof DomViaError) return thrown;
  if (thrown instanceof Error) {
    const code = (thrown as Error & { code?: unknown }).code;
    if (typeof code === "string") {
      return new DomViaError(code as DomViaErrorCode, thrown.message, { cause: thrown });
    }
    return new DomViaError("internal", `internal error: ${thrown.message}`, { cause: thrown });
  }
  return new DomViaError("internal", `internal error: ${String(thrown)}`, { cause: thrown });
}
