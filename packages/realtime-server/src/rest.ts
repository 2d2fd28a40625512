/**
 * The broker's REST API, signed like Pusher's: publish events (`trigger`,
 * `triggerBatch`) and query channels (`channels`, `channel`, `users`).
 *
 * Works with any Pusher-compatible broker: the DomVia development server,
 * sockudo, soketi, Laravel Reverb, Pusher itself.
 */
import { describe, validateChannelName } from "./channels.js";
import { DomViaServerError } from "./errors.js";
import { checkCredentials, signRestRequest, validateSocketId } from "./signing.js";

/** The largest event `data` a broker accepts, in bytes of UTF-8 (Pusher's 10 KB). */
export const MAX_EVENT_DATA_BYTES = 10_240;

/** The most channels one `trigger` may name (Pusher's limit). */
export const MAX_TRIGGER_CHANNELS = 100;

/** The most events one `triggerBatch` may carry (Pusher's limit). */
export const MAX_BATCH_EVENTS = 10;

/** The longest user id `terminateUserConnections` takes (Pusher's limit). */
export const MAX_USER_ID_LENGTH = 200;

/** The longest event name, in characters. */
export const MAX_EVENT_NAME_LENGTH = 200;

/** How long a REST request may take when `timeoutMs` is not given. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** Where the broker's REST API is and how to sign for it. */
export interface RealtimeClientOptions {
  /** The app id: the `{appId}` in `/apps/{appId}/...`. */
  appId: string | number;
  /** The app key; `undefined` (an unset environment variable) rejects with `invalid_config`. */
  key: string | undefined;
  /** The app secret; `undefined` (an unset environment variable) rejects with `invalid_config`. */
  secret: string | undefined;
  /** The broker's REST host name, without scheme or port, e.g. `api.example.com` or `127.0.0.1`. */
  host: string;
  /** The port; default 443 with TLS, 80 without. */
  port?: number | undefined;
  /** Whether to use HTTPS. Default `true`; set `false` for a local development broker. */
  useTLS?: boolean | undefined;
  /** How long one request may take, headers and body, in milliseconds. Default 10,000. */
  timeoutMs?: number | undefined;
  /** The clock for `auth_timestamp`, in milliseconds since the Unix epoch. Default `Date.now`. */
  now?: (() => number) | undefined;
}

/** Event data: a string is sent as it is, anything else as its JSON text. */
export type EventData = string | number | boolean | null | object;

/** Options for {@link RealtimeClient.trigger}. */
export interface TriggerOptions {
  /** A socket that should not receive the event: usually the sender's own. */
  socketId?: string | undefined;
}

/** One event of a {@link RealtimeClient.triggerBatch}. */
export interface BatchEvent {
  /** The channel to publish on. */
  channel: string;
  /** The event name. */
  name: string;
  /** The event data; not a string means JSON-encoded. */
  data: EventData;
  /** A socket that should not receive the event. */
  socketId?: string | undefined;
}

/** The channel attributes a broker can report. */
export type ChannelAttribute = "user_count" | "subscription_count" | (string & {});

/** What the broker reports about one channel. */
export interface ChannelInfo {
  /** Members of a presence channel (asked for with `info: ["user_count"]`). */
  user_count?: number;
  /** Subscribed connections (asked for with `info: ["subscription_count"]`, if enabled). */
  subscription_count?: number;
  /** Any other attribute the broker reports. */
  [attribute: string]: unknown;
}

/** The answer to {@link RealtimeClient.channel}. */
export interface ChannelState extends ChannelInfo {
  /** Whether anyone is subscribed. */
  occupied: boolean;
}

/** The answer to {@link RealtimeClient.trigger}: usually `{}`. */
export interface TriggerResult {
  /** Per-channel attributes, when the broker reports them. */
  channels?: Record<string, ChannelInfo>;
  /** Any other field the broker reports. */
  [field: string]: unknown;
}

/** The answer to {@link RealtimeClient.triggerBatch}: usually `{}`. */
export interface BatchResult {
  /** Per-event attributes, when the broker reports them. */
  batch?: ChannelInfo[];
  /** Any other field the broker reports. */
  [field: string]: unknown;
}

/** Options for {@link RealtimeClient.channels}. */
export interface ChannelListOptions {
  /** Only channels whose name starts with this, e.g. `presence-chat.room.` (sent as `filter_by_prefix`). */
  prefix?: string | undefined;
  /** Attributes to report per channel (`user_count` needs a `presence-` prefix). */
  info?: readonly ChannelAttribute[] | undefined;
}

/** Options for {@link RealtimeClient.channel}. */
export interface ChannelOptions {
  /** Attributes to report (`user_count` for presence channels, `subscription_count`). */
  info?: readonly ChannelAttribute[] | undefined;
}

/** The answer to {@link RealtimeClient.channels}. */
export interface ChannelList {
  /** Occupied channels by name, with the attributes asked for. */
  channels: Record<string, ChannelInfo>;
}

/** The answer to {@link RealtimeClient.users}. */
export interface PresenceUserList {
  /** The members of the presence channel. */
  users: { id: string }[];
}

/** A signed REST client for one app on one broker. */
export interface RealtimeClient {
  /**
   * Publishes `event` with `data` on one channel or up to 100 (`POST /events`).
   * Non-string data is JSON-encoded; over 10,240 bytes rejects with
   * `payload_too_large` without sending anything.
   */
  trigger(
    channels: string | readonly string[],
    event: string,
    data: EventData,
    options?: TriggerOptions,
  ): Promise<TriggerResult>;
  /** Publishes up to 10 events in one request (`POST /batch_events`). */
  triggerBatch(events: readonly BatchEvent[]): Promise<BatchResult>;
  /** Lists occupied channels (`GET /channels`), optionally by name prefix. */
  channels(options?: ChannelListOptions): Promise<ChannelList>;
  /** Reports one channel (`GET /channels/{name}`). */
  channel(name: string, options?: ChannelOptions): Promise<ChannelState>;
  /** Lists the members of a presence channel (`GET /channels/{name}/users`). */
  users(channelName: string): Promise<PresenceUserList>;
  /**
   * Closes every connection signed in as `userId` (`pusher:signin`) with 4009
   * (`POST /users/{id}/terminate_connections`). Call it after revoking access
   * (a member removed from a room, a sign-out), once the change is stored: the
   * SDK reconnects, is authorized again, and is refused what was revoked.
   */
  terminateUserConnections(userId: string): Promise<void>;
}

/** What one request needs. */
interface RestCall {
  operation: string;
  method: "GET" | "POST";
  /** The path under `/apps/{appId}`. */
  path: string;
  params?: Record<string, string>;
  body?: string;
}

/** Checks the options and returns the base URL and the timeout. */
function checkOptions(options: RealtimeClientOptions): {
  baseUrl: string;
  appPath: string;
  timeoutMs: number;
} {
  const invalid = (reason: string): DomViaServerError =>
    new DomViaServerError("invalid_config", `unable to create the realtime client; ${reason}`);
  if (typeof options !== "object" || options === null) throw invalid("options are missing");
  const appId = typeof options.appId === "number" ? String(options.appId) : options.appId;
  if (typeof appId !== "string" || !/^[A-Za-z0-9_-]+$/.test(appId)) {
    throw invalid(`the app id ${describe(appId)} must be letters, digits, "_" or "-"`);
  }
  const { host } = options;
  if (typeof host !== "string" || host.length === 0) throw invalid("the host is missing");
  if (/[/?#@\s]/.test(host)) {
    throw invalid(`the host ${describe(host)} must be a bare host name, without scheme, path or port`);
  }
  const colons = host.split(":").length - 1;
  if (colons === 1) throw invalid(`the host ${describe(host)} has a port; give it as \`port\``);
  const hostForUrl = colons > 1 && !host.startsWith("[") ? `[${host}]` : host;
  const { port } = options;
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
    throw invalid(`the port ${String(port)} is not a port number`);
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    throw invalid(`timeoutMs ${String(timeoutMs)} must be a positive number`);
  }
  const scheme = options.useTLS === false ? "http" : "https";
  return {
    baseUrl: `${scheme}://${hostForUrl}${port === undefined ? "" : `:${port}`}`,
    appPath: `/apps/${appId}`,
    timeoutMs,
  };
}

/** Serializes event data and checks its size. */
function encodeData(data: EventData, operation: string): string {
  let text: string | undefined;
  try {
    text = typeof data === "string" ? data : JSON.stringify(data);
  } catch (cause) {
    throw new DomViaServerError(
      "invalid_request",
      `unable to ${operation}; the data cannot be serialized as JSON`,
      { cause },
    );
  }
  if (typeof text !== "string") {
    throw new DomViaServerError(
      "invalid_request",
      `unable to ${operation}; the data cannot be serialized as JSON`,
    );
  }
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > MAX_EVENT_DATA_BYTES) {
    throw new DomViaServerError(
      "payload_too_large",
      `unable to ${operation}; the data is ${bytes} bytes, more than ${MAX_EVENT_DATA_BYTES}`,
    );
  }
  return text;
}

/** Checks an event name. */
function checkEventName(event: string, operation: string): void {
  if (typeof event !== "string" || event.length === 0 || event.length > MAX_EVENT_NAME_LENGTH) {
    throw new DomViaServerError(
      "invalid_request",
      `unable to ${operation}; the event name must have 1 to ${MAX_EVENT_NAME_LENGTH} characters`,
    );
  }
}

/** Joins attribute names for the `info` parameter. */
function infoParam(info: readonly ChannelAttribute[] | undefined, operation: string): Record<string, string> {
  if (info === undefined || info.length === 0) return {};
  for (const attribute of info) {
    if (typeof attribute !== "string" || !/^[a-z_]+$/.test(attribute)) {
      throw new DomViaServerError(
        "invalid_request",
        `unable to ${operation}; the attribute ${describe(attribute)} is not a lowercase name`,
      );
    }
  }
  return { info: info.join(",") };
}

/** True for a plain JSON object. */
function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Creates a REST client for the broker. Nothing is sent until a method is
 * called; each call is one signed request with its own timeout.
 *
 * @throws {DomViaServerError} `invalid_config` for missing or malformed options
 */
export function createRealtimeClient(options: RealtimeClientOptions): RealtimeClient {
  const { baseUrl, appPath, timeoutMs } = checkOptions(options);
  const { key, secret } = checkCredentials("create the realtime client", options);
  const now = options.now ?? Date.now;

  async function send(call: RestCall): Promise<unknown> {
    const path = `${appPath}${call.path}`;
    const query = signRestRequest({
      key,
      secret,
      method: call.method,
      path,
      params: call.params,
      body: call.body,
      timestamp: Math.floor(now() / 1000),
    });
    const url = `${baseUrl}${path}?${query}`;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    let status: number;
    let text: string;
    try {
      const response = await fetch(url, {
        method: call.method,
        headers: call.body === undefined ? {} : { "content-type": "application/json" },
        ...(call.body === undefined ? {} : { body: call.body }),
        // A signed request is for this broker only: a redirect is an answer, not a hop.
        redirect: "manual",
        signal: controller.signal,
      });
      status = response.status;
      text = await response.text();
    } catch (cause) {
      if (controller.signal.aborted) {
        throw new DomViaServerError(
          "timeout",
          `unable to ${call.operation}; the broker did not answer within ${timeoutMs} ms`,
          { cause },
        );
      }
      const reason = cause instanceof Error ? cause.message : String(cause);
      throw new DomViaServerError(
        "network_error",
        `unable to ${call.operation}; the request to ${baseUrl} failed: ${reason}`,
        { cause },
      );
    } finally {
      clearTimeout(timer);
    }
    if (status < 200 || status > 299) {
      const shown = text.length > 200 ? `${text.slice(0, 200)}...` : text;
      throw new DomViaServerError(
        "rest_error",
        `unable to ${call.operation}; the broker answered ${status}${shown === "" ? "" : `: ${shown}`}`,
        { status, body: text },
      );
    }
    if (text.trim() === "") return {};
    try {
      return JSON.parse(text) as unknown;
    } catch (cause) {
      throw new DomViaServerError(
        "invalid_response",
        `unable to ${call.operation}; the broker's answer is not JSON`,
        { cause, status, body: text },
      );
    }
  }

  /** Checks that a 2xx answer has the expected shape. */
  function expect<T>(
    answer: unknown,
    operation: string,
    check: (value: Record<string, unknown>) => boolean,
  ): T {
    if (!isObject(answer) || !check(answer)) {
      throw new DomViaServerError(
        "invalid_response",
        `unable to ${operation}; the broker's answer does not have the documented shape`,
        { body: JSON.stringify(answer) },
      );
    }
    return answer as T;
  }

  return {
    async trigger(channels, event, data, triggerOptions = {}) {
      const operation = "trigger the event";
      const list: readonly string[] = typeof channels === "string" ? [channels] : channels;
      if (!Array.isArray(list) || list.length === 0 || list.length > MAX_TRIGGER_CHANNELS) {
        throw new DomViaServerError(
          "invalid_request",
          `unable to ${operation}; give 1 to ${MAX_TRIGGER_CHANNELS} channels`,
        );
      }
      for (const channel of list) validateChannelName(channel);
      checkEventName(event, operation);
      const { socketId } = triggerOptions;
      if (socketId !== undefined) validateSocketId(socketId, operation);
      // Field order as Pusher's own library writes it, so requests are byte-identical.
      const body: Record<string, unknown> = {
        name: event,
        data: encodeData(data, operation),
        channels: [...list],
      };
      if (socketId !== undefined) body.socket_id = socketId;
      const answer = await send({ operation, method: "POST", path: "/events", body: JSON.stringify(body) });
      return expect<TriggerResult>(answer, operation, (value) =>
        value.channels === undefined || isObject(value.channels),
      );
    },

    async triggerBatch(events) {
      const operation = "trigger the batch";
      if (!Array.isArray(events) || events.length === 0 || events.length > MAX_BATCH_EVENTS) {
        throw new DomViaServerError(
          "invalid_request",
          `unable to ${operation}; give 1 to ${MAX_BATCH_EVENTS} events`,
        );
      }
      const batch = events.map((event: BatchEvent) => {
        if (!isObject(event)) {
          throw new DomViaServerError("invalid_request", `unable to ${operation}; an event is not an object`);
        }
        validateChannelName(event.channel);
        checkEventName(event.name, operation);
        const entry: Record<string, unknown> = {
          channel: event.channel,
          name: event.name,
          data: encodeData(event.data, operation),
        };
        if (event.socketId !== undefined) {
          validateSocketId(event.socketId, operation);
          entry.socket_id = event.socketId;
        }
        return entry;
      });
      const answer = await send({
        operation,
        method: "POST",
        path: "/batch_events",
        body: JSON.stringify({ batch }),
      });
      return expect<BatchResult>(answer, operation, (value) =>
        value.batch === undefined || Array.isArray(value.batch),
      );
    },

    async channels(listOptions = {}) {
      const operation = "list the channels";
      const params = infoParam(listOptions.info, operation);
      const { prefix } = listOptions;
      if (prefix !== undefined) {
        if (
          typeof prefix !== "string" ||
          !/^[A-Za-z0-9_\-=@,.;]+$/.test(prefix) ||
          prefix.length > 200
        ) {
          throw new DomViaServerError(
            "invalid_channel_name",
            `unable to ${operation}; the prefix ${describe(prefix)} cannot start a channel name`,
          );
        }
        params.filter_by_prefix = prefix;
      }
      const answer = await send({ operation, method: "GET", path: "/channels", params });
      return expect<ChannelList>(answer, operation, (value) => isObject(value.channels));
    },

    async channel(name, channelOptions = {}) {
      const operation = "read the channel";
      validateChannelName(name);
      const params = infoParam(channelOptions.info, operation);
      const answer = await send({ operation, method: "GET", path: `/channels/${name}`, params });
      return expect<ChannelState>(answer, operation, (value) => typeof value.occupied === "boolean");
    },

    async users(channelName) {
      const operation = "list the presence members";
      if (validateChannelName(channelName) !== "presence") {
        throw new DomViaServerError(
          "wrong_channel_kind",
          `unable to ${operation} of ${describe(channelName)}; it is not a presence channel`,
        );
      }
      const answer = await send({ operation, method: "GET", path: `/channels/${channelName}/users` });
      return expect<PresenceUserList>(answer, operation, (value) => Array.isArray(value.users));
    },

    async terminateUserConnections(userId) {
      const operation = "terminate the user's connections";
      if (typeof userId !== "string" || userId.length === 0 || userId.length > MAX_USER_ID_LENGTH) {
        throw new DomViaServerError(
          "invalid_request",
          `unable to ${operation}; the user id must be a string of 1 to ${MAX_USER_ID_LENGTH} characters`,
        );
      }
      await send({
        operation,
        method: "POST",
        path: `/users/${encodeURIComponent(userId)}/terminate_connections`,
        body: "{}",
      });
    },
  };
}
