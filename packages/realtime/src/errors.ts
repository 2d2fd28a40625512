/**
 * The codes of the Rust core's errors, in its order: a copy of `ALL_CODES` in
 * `src/error.rs`, which `tests/error_codes.rs` checks this list against (edit
 * both together; the Rust list is generated from the one table of the core's
 * error codes, so it cannot miss a variant). They cross the wasm boundary
 * unchanged.
 */
export type CoreErrorCode =
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
  | "client_events_disabled"
  | "invalid_event_name"
  | "not_subscribed"
  | "payload_too_large"
  | "invalid_config"
  | "invalid_message"
  | "invalid_text"
  | "text_too_large"
  | "invalid_client_id"
  | "unknown_client_id"
  | "e2ee_unsupported_version"
  | "e2ee_malformed"
  | "e2ee_bad_signature"
  | "e2ee_decrypt_failed"
  | "e2ee_wrong_room"
  | "e2ee_unknown_epoch"
  | "e2ee_not_a_member"
  | "e2ee_replay"
  | "e2ee_device_key_changed"
  | "e2ee_epoch_expired"
  | "e2ee_wrong_recipient"
  | "e2ee_wrong_sender"
  | "e2ee_members_mismatch"
  | "e2ee_content_too_large"
  | "e2ee_invalid_key"
  | "e2ee_no_epoch";

/**
 * The registry of codes raised only by the TypeScript packages, never by the
 * core. Every code a `DomViaError` is made with in the packages' sources is
 * here, in {@link CoreErrorCode} or in {@link BackendErrorCode}
 * (`tests/error_codes.rs` reads the sources to check it).
 */
export type SdkErrorCode =
  // @domvia/realtime
  /** A synchronous call before `ready()` resolved, or a room action before the room opened. */
  | "not_ready"
  /** The `.wasm` could not be fetched, compiled or instantiated. */
  | "wasm_load_failed"
  /** A connection, or a room registry, was used after it was disposed or closed. */
  | "disposed"
  /** A bug: something other than a coded error was thrown; the original is the `cause`. */
  | "internal"
  /** Not thrown: the code of the `SubscriptionError` given to `onSubscriptionError`. */
  | "subscription_refused"
  // the bindings (@domvia/realtime-react, -vue, -angular)
  /** A hook, composable or injection used outside its provider. */
  | "missing_provider"
  // @domvia/realtime-chat
  /** The backend refused the room, or the broker refused its subscription. */
  | "room_access_denied"
  /** The room's `encrypted` option differs from the room the backend has. */
  | "room_encryption_mismatch"
  /** The room was left. */
  | "room_left"
  /** An encrypted room, but @domvia/realtime-e2ee could not be loaded. */
  | "encryption_unavailable"
  /** The backend could not be reached (or answered 5xx/429 without a code). */
  | "network_error"
  /** The backend answered with something other than the JSON its API describes. */
  | "invalid_response"
  // @domvia/realtime-e2ee
  /** IndexedDB or the WebCrypto key that wraps the stored keys failed. */
  | "e2ee_storage_unavailable"
  /** An epoch could not be created after several attempts. */
  | "e2ee_epoch_failed"
  /** This device has no key share for an epoch, and none can be fetched. */
  | "e2ee_share_unavailable"
  /** A message of an encrypted room came without ciphertext. */
  | "e2ee_not_encrypted"
  /** The room's or device's encryption state was used after it was closed or cleared. */
  | "e2ee_closed";

/**
 * The codes of the reference app backend (`server/backend/API.md`, "Error
 * codes"), which `@domvia/realtime-chat` and `@domvia/realtime-e2ee` pass
 * through when the backend refuses a request; `tests/error_codes.rs` checks
 * this list against that table. A backend of your own that implements the API
 * may answer others, which reach you unchanged.
 */
export type BackendErrorCode =
  | "invalid_body"
  | "invalid_path"
  | "invalid_query"
  | "invalid_name"
  | "invalid_kind"
  | "invalid_member_ids"
  | "invalid_room_name"
  | "invalid_encrypted"
  | "encryption_required"
  | "room_not_encrypted"
  | "invalid_user_id"
  | "unknown_user"
  | "invalid_client_id"
  | "invalid_message"
  | "invalid_text"
  | "invalid_ciphertext"
  | "invalid_seq"
  | "invalid_socket_id"
  | "invalid_device_id"
  | "invalid_record"
  | "invalid_epoch"
  | "invalid_shares"
  | "not_signed_in"
  | "not_a_member"
  | "forbidden"
  | "direct_room"
  | "not_room_creator"
  | "device_not_owned"
  | "room_not_found"
  | "share_not_found"
  | "epoch_not_found"
  | "epoch_devices_unknown"
  | "client_id_conflict"
  | "epoch_conflict"
  | "epoch_stale"
  | "shares_incomplete"
  | "body_too_large"
  | "text_too_large"
  | "ciphertext_too_large"
  | "record_too_large"
  | "share_too_large"
  | "json_required"
  | "cross_origin_form"
  | "rate_limited"
  | "internal";

/**
 * Stable error codes. They never change meaning; match on `error.code`, not on
 * the message, which is for people.
 */
export type DomViaErrorCode = CoreErrorCode | SdkErrorCode | BackendErrorCode;

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
 * plain `Error`s that carry a `code` (one of {@link CoreErrorCode}, taken as
 * such without a runtime check); anything else is a bug, reported as
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
