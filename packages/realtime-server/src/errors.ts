/**
 * Stable error codes. They never change meaning; match on `error.code`, not on
 * the message, which is for people.
 *
 * The codes shared with `@domvia/realtime` (`invalid_channel_name`,
 * `invalid_room_id`, `wrong_channel_kind`, `invalid_socket_id`,
 * `invalid_user_data`, `auth_key_mismatch`, `invalid_signature`) mean the same
 * thing in both packages.
 */
export type DomViaServerErrorCode =
  /** `key`, `secret`, `appId`, `host`, `port` or `timeoutMs` is missing or malformed. */
  | "invalid_config"
  /** A socket id is not of the form `1234.5678`. */
  | "invalid_socket_id"
  /** A channel name is empty, longer than 200, or has a character outside `A-Z a-z 0-9 _ - = @ , . ;`. */
  | "invalid_channel_name"
  /** A channel has the wrong prefix for the operation (e.g. `presence-` given to `authorizePrivateChannel`). */
  | "wrong_channel_kind"
  /** A room id cannot make a chat channel name. */
  | "invalid_room_id"
  /** Presence or sign-in user data has no non-empty string id, or is not JSON-serializable. */
  | "invalid_user_data"
  /** A REST request is malformed before sending: event name, channel count, batch size, query parameters. */
  | "invalid_request"
  /** Event `data` is over 10,240 bytes once serialized; nothing was sent. */
  | "payload_too_large"
  /** The broker answered a REST request with a non-2xx status; see `status` and `body`. */
  | "rest_error"
  /** The broker answered 2xx but the body is not the JSON the API describes. */
  | "invalid_response"
  /** A REST request got no complete answer within `timeoutMs`. */
  | "timeout"
  /** A REST request failed before any answer: DNS, refused connection, TLS. */
  | "network_error"
  /** A signature or webhook names another app key. */
  | "auth_key_mismatch"
  /** A signature is missing, malformed, or does not match. */
  | "invalid_signature"
  /** A webhook's signed body is not the JSON object `{ time_ms, events }`. */
  | "invalid_webhook_body";

/** Extra facts some errors carry. */
export interface DomViaServerErrorDetails {
  /** The original error, when this one wraps another. */
  cause?: unknown;
  /** For `rest_error`: the HTTP status the broker answered with. */
  status?: number;
  /** For `rest_error` and `invalid_response`: the response body text. */
  body?: string;
}

/**
 * Every error this package throws or rejects with: a real `Error` with a stable
 * {@link DomViaServerErrorCode} in `code`. Messages read "unable to <op>; <reason>"
 * and never contain the app secret.
 */
export class DomViaServerError extends Error {
  override readonly name = "DomViaServerError";

  /** For `rest_error`: the HTTP status the broker answered with. */
  readonly status: number | undefined;

  /** For `rest_error` and `invalid_response`: the response body text. */
  readonly body: string | undefined;

  /**
   * @param code the stable code to match on
   * @param message "unable to <op>; <reason>"
   * @param details the cause, and for REST failures the status and body
   */
  constructor(
    readonly code: DomViaServerErrorCode,
    message: string,
    details: DomViaServerErrorDetails = {},
  ) {
    super(message, "cause" in details ? { cause: details.cause } : undefined);
    this.status = details.status;
    this.body = details.body;
  }
}
