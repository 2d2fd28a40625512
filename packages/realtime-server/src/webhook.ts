/**
 * Webhooks: the broker POSTs `{ time_ms, events }` to the app server, signed
 * with the app secret in `X-Pusher-Signature` (hex HMAC-SHA256 of the raw body)
 * and naming the app in `X-Pusher-Key`.
 */
import { describe } from "./channels.js";
import { DomViaServerError } from "./errors.js";
import { checkCredentials, verifyHexSignature, type AppCredentials } from "./signing.js";

/** The event names Pusher-compatible brokers send; others pass through. */
export type WebhookEventName =
  | "channel_occupied"
  | "channel_vacated"
  | "member_added"
  | "member_removed"
  | "client_event"
  | "subscription_count"
  | "cache_miss"
  | (string & {});

/** One webhook event. Which fields are present depends on `name`. */
export interface WebhookEvent {
  /** What happened, e.g. `channel_occupied`, `member_added`, `client_event`. */
  name: WebhookEventName;
  /** The channel it happened on. */
  channel?: string;
  /** `member_added`, `member_removed`, and presence `client_event`: the user. */
  user_id?: string;
  /** `client_event`: the client event's name. */
  event?: string;
  /** `client_event`: the event data (JSON text, as the client sent it). */
  data?: string;
  /** `client_event`: the sender's socket id. */
  socket_id?: string;
  /** `subscription_count`: the channel's subscriber count. */
  subscription_count?: number;
  /** Any other field the broker sends. */
  [field: string]: unknown;
}

/** A verified webhook body. */
export interface WebhookPayload {
  /** When the broker produced the events, in milliseconds since the Unix epoch. */
  time_ms: number;
  /** The events, in the order the broker sent them. */
  events: WebhookEvent[];
}

/** Request headers as Node (`req.headers`) or fetch (`Headers`) gives them. */
export type WebhookHeaders =
  | { get(name: string): string | null }
  | Readonly<Record<string, string | readonly string[] | undefined>>;

/** What {@link verifyWebhook} checks. */
export interface WebhookRequest extends AppCredentials {
  /** The request headers; names are matched case-insensitively. */
  headers: WebhookHeaders;
  /** The raw request body, exactly as received. */
  body: string | Uint8Array;
}

/**
 * One header's value, by case-insensitive name. A header given more than once
 * is ambiguous, so it counts as absent.
 */
function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof (headers as { get?: unknown }).get === "function") {
    const value = (headers as { get(name: string): string | null }).get(name);
    return value === null || value.includes(",") ? undefined : value;
  }
  let found: string | undefined;
  let count = 0;
  for (const [field, value] of Object.entries(
    headers as Readonly<Record<string, string | readonly string[] | undefined>>,
  )) {
    if (field.toLowerCase() !== name || value === undefined) continue;
    const values: readonly string[] = typeof value === "string" ? [value] : value;
    count += values.length;
    found = values[0];
  }
  return count === 1 ? found : undefined;
}

/**
 * Verifies a webhook request and returns its parsed body.
 *
 * Checks, in order: `X-Pusher-Key` is this app's key (`auth_key_mismatch`);
 * `X-Pusher-Signature` is the hex HMAC-SHA256 of the raw body under the secret,
 * compared in constant time after a length check (`invalid_signature`); the
 * body is a JSON object with a numeric `time_ms` and an `events` array of
 * objects with a string `name` (`invalid_webhook_body`).
 *
 * Pass the raw body exactly as received (with Express, `express.raw({ type:
 * "application/json" })`): a re-serialized object will not match the signature.
 * Unlike Pusher's library, the `Content-Type` header is not checked.
 *
 * @throws {DomViaServerError} `invalid_config`, `auth_key_mismatch`,
 * `invalid_signature`, `invalid_webhook_body`
 */
export function verifyWebhook(
  params: WebhookRequest,
): WebhookPayload {
  const operation = "verify the webhook";
  const { key, secret } = checkCredentials(operation, params);
  const { headers, body } = params;
  if (typeof headers !== "object" || headers === null) {
    throw new DomViaServerError("auth_key_mismatch", `unable to ${operation}; there are no headers`);
  }
  const headerKey = header(headers, "x-pusher-key");
  if (headerKey !== key) {
    throw new DomViaServerError(
      "auth_key_mismatch",
      headerKey === undefined
        ? `unable to ${operation}; the X-Pusher-Key header is missing`
        : `unable to ${operation}; X-Pusher-Key ${describe(headerKey)} is not this app's key`,
    );
  }
  if (typeof body !== "string" && !(body instanceof Uint8Array)) {
    throw new DomViaServerError(
      "invalid_webhook_body",
      `unable to ${operation}; the body must be the raw request body (a string or bytes)`,
    );
  }
  const signature = header(headers, "x-pusher-signature");
  if (signature === undefined || !verifyHexSignature(secret, body, signature)) {
    throw new DomViaServerError(
      "invalid_signature",
      signature === undefined
        ? `unable to ${operation}; the X-Pusher-Signature header is missing`
        : `unable to ${operation}; X-Pusher-Signature does not match the body`,
    );
  }
  return parseWebhookBody(body, operation);
}

/** Parses and shape-checks a signed webhook body. */
function parseWebhookBody(body: string | Uint8Array, operation: string): WebhookPayload {
  const invalid = (reason: string, cause?: unknown): DomViaServerError =>
    new DomViaServerError(
      "invalid_webhook_body",
      `unable to ${operation}; ${reason}`,
      cause === undefined ? {} : { cause },
    );
  let parsed: unknown;
  try {
    const text = typeof body === "string" ? body : new TextDecoder("utf-8", { fatal: true }).decode(body);
    parsed = JSON.parse(text);
  } catch (cause) {
    throw invalid("the body is not JSON", cause);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw invalid("the body is not a JSON object");
  }
  const { time_ms: timeMs, events } = parsed as { time_ms?: unknown; events?: unknown };
  if (typeof timeMs !== "number" || !Number.isFinite(timeMs)) {
    throw invalid("time_ms is not a number");
  }
  if (!Array.isArray(events)) throw invalid("events is not an array");
  events.forEach((event: unknown, index) => {
    if (typeof event !== "object" || event === null || Array.isArray(event)) {
      throw invalid(`events[${index}] is not an object`);
    }
    if (typeof (event as { name?: unknown }).name !== "string") {
      throw invalid(`events[${index}].name is not a string`);
    }
  });
  return { time_ms: timeMs, events: events as WebhookEvent[] };
}
