/**
 * `DomViaRealtime`: one connection to a Pusher-protocol broker, its channels,
 * presence members and client events. The state machine (reconnection,
 * keep-alive, resubscription, auth) runs in the wasm core; this layer owns
 * ergonomics: typed options, channel objects, listener bookkeeping.
 */
import { RealtimeConnection as CoreConnection } from "../wasm/domvia_realtime.js";
import type { ChatRoomSession } from "../wasm/domvia_realtime.js";
import { postAuth } from "./auth.js";
import { DomViaError, toDomViaError } from "./errors.js";
import { Listeners } from "./listeners.js";
import { ready, reportListenerError } from "./runtime.js";
import type { WasmSource } from "./runtime.js";

/** The connection's state, as pusher-js names them. */
export type ConnectionState =
  | "initialized"
  | "connecting"
  | "connected"
  | "unavailable"
  | "failed"
  | "disconnected";

/** One change of {@link ConnectionState}. */
export interface StateChange {
  previous: ConnectionState;
  current: ConnectionState;
  /** Why, when the change has a reason (a close code, a timeout, an error). */
  reason?: string;
}

/** A channel's subscription state. */
export type ChannelState = "subscribing" | "subscribed" | "failed" | "unsubscribed";

/** Calling it removes the listener it came from. Calling it twice is harmless. */
export type Unsubscribe = () => void;

/** What the broker says about an event besides its data. */
export interface EventMetadata {
  /** The sender's user id, stamped by the broker on client events in presence channels. */
  user_id?: string;
}

/** Receives one event's data. */
export type ChannelEventCallback = (data: unknown, metadata: EventMetadata) => void;

/** Receives every event of a channel. */
export type GlobalEventCallback = (event: string, data: unknown, metadata: EventMetadata) => void;

/** Why a subscription was refused: the auth endpoint's or the broker's status. */
export interface SubscriptionError {
  code: "subscription_refused";
  /** 401/403 from the auth endpoint or the broker; undefined when unreachable. */
  status?: number;
  message: string;
}

/** A presence member: the user id the app server signed, and its public info. */
export interface Member {
  id: string;
  info: unknown;
}

/** The members of a presence channel, kept current by the broker's events. */
export interface PresenceMembers {
  /** This connection's own member, once subscribed. */
  readonly me: Member | null;
  readonly count: number;
  each(callback: (member: Member) => void): void;
  get(id: string): Member | null;
}

/** Options of {@link DomViaRealtime.create}. */
export interface DomViaRealtimeOptions {
  /** The app's public key (never the secret). */
  key: string;
  /** The broker's host name, for example `ws.domvia.net` or `127.0.0.1`. */
  host: string;
  /** The broker's port; the scheme's default when omitted. */
  port?: number;
  /** `wss://` instead of `ws://`. Defaults to true unless the page itself is `http:`. */
  forceTLS?: boolean;
  /** The app server's channel auth endpoint, called with POST `socket_id` and `channel_name`. */
  authEndpoint: string;
  /** Extra headers and form params sent with every auth request. */
  auth?: { headers?: Record<string, string>; params?: Record<string, string> };
  /** Called before every auth request, for tokens that expire. */
  headersProvider?: () => Promise<Record<string, string>>;
  /** Allows `channel.trigger` of `client-` events. Off by default. */
  clientEvents?: boolean;
  /** Signs the connection in as the app server's user (`pusher:signin`). */
  userAuthentication?: { endpoint: string };
  /** Ping after this much silence, if shorter than the broker's activity timeout. */
  activityTimeoutMs?: number;
  /** How long to wait for a pong before reconnecting. Default 30 s. */
  pongTimeoutMs?: number;
  /** How long to keep trying before the state says `unavailable`. Default 10 s. */
  unavailableTimeoutMs?: number;
  /** Connect as soon as the SDK is loaded. Default true. */
  autoConnect?: boolean;
  /**
   * Where to load the `.wasm` from. By default it is the file beside this
   * package (`wasm/domvia_realtime_bg.wasm`), found through
   * `new URL(…, import.meta.url)`, which Vite, webpack and Turbopack follow.
   * Set it for a toolchain that does not (Angular CLI's esbuild builder: copy
   * the file with an `assets` entry and give its URL here). The first
   * connection's choice wins; a wrong URL fails with `wasm_load_failed` naming it.
   */
  wasm?: WasmSource;
}

/** The connection of a {@link DomViaRealtime}. */
export interface RealtimeConnection {
  readonly state: ConnectionState;
  /** The broker's id for this connection, once connected. */
  readonly socketId: string | undefined;
  /** Calls `listener` on every state change; returns the function that stops it. */
  onStateChange(listener: (change: StateChange) => void): Unsubscribe;
  /** Calls `listener` on every `pusher:error` the broker sends (for example 4301, rate limited). */
  onError(listener: (error: { code?: number; message: string }) => void): Unsubscribe;
  connect(): void;
  disconnect(): void;
}

/** A subscribed (or subscribing) channel. */
export interface Channel {
  readonly name: string;
  readonly state: ChannelState;
  /** Present on `presence-` channels. */
  readonly members: PresenceMembers | undefined;
  /**
   * Calls `callback` for each `event` on this channel. The SDK's own events are
   * `pusher:subscription_succeeded`, `pusher:subscription_error`
   * ({@link SubscriptionError}), `pusher:member_added` and `pusher:member_removed` ({@link Member}).
   */
  bind(event: string, callback: ChannelEventCallback): Unsubscribe;
  /** Calls `callback` for every event on this channel. */
  bindGlobal(callback: GlobalEventCallback): Unsubscribe;
  /**
   * Sends a client event to the channel's other subscribers, synchronously on
   * the socket. Rejects with `client_events_disabled`, `invalid_event_name`
   * (no `client-` prefix), `wrong_channel_kind` (public channel),
   * `not_subscribed` or `payload_too_large`.
   */
  trigger(event: string, data: unknown): Promise<void>;
  unsubscribe(): void;
}

/** The core's notices other than channel messages, as the wasm boundary hands them over (JSON text). */
type Notice =
  | { type: "state_change"; previous: ConnectionState; current: ConnectionState; reason?: string }
  | { type: "subscribed"; channel: string }
  | { type: "subscription_error"; channel: string; status?: number; message: string }
  | { type: "member_added" | "member_removed"; channel: string; userId: string; userInfo?: unknown }
  | { type: "error"; code?: number; message: string }
  | { type: "signed_in"; userDataJson: string };

function parseJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

class PresenceMemberList implements PresenceMembers {
  readonly #core: () => CoreConnection | undefined;
  readonly #channel: string;

  constructor(core: () => CoreConnection | undefined, channel: string) {
    this.#core = core;
    this.#channel = channel;
  }

  #snapshot(): { me: string | null; members: Record<string, unknown> } {
    const json = this.#core()?.membersJson(this.#channel);
    if (json === undefined) return { me: null, members: {} };
    return JSON.parse(json) as { me: string | null; members: Record<string, unknown> };
  }

  get me(): Member | null {
    const { me, members } = this.#snapshot();
    return me === null || !(me in members) ? null : { id: me, info: members[me] };
  }

  get count(): number {
    return Object.keys(this.#snapshot().members).length;
  }

  each(callback: (member: Member) => void): void {
    for (const [id, info] of Object.entries(this.#snapshot().members)) callback({ id, info });
  }

  get(id: string): Member | null {
    const { members } = this.#snapshot();
    return id in members ? { id, info: members[id] } : null;
  }
}

/** `routeToSession` kinds: the room's own events on its private channel. */
export const ROOM_EVENTS = 1;
/** `routeToSession` kinds: `client-typing`. */
export const TYPING_EVENTS = 2;

class RealtimeChannel implements Channel {
  readonly name: string;
  readonly members: PresenceMembers | undefined;
  readonly #owner: DomViaRealtime;
  readonly #byEvent = new Map<string, Listeners<[unknown, EventMetadata]>>();
  readonly #global = new Listeners<[string, unknown, EventMetadata]>();

  constructor(owner: DomViaRealtime, name: string, core: () => CoreConnection | undefined) {
    this.#owner = owner;
    this.name = name;
    this.members = name.startsWith("presence-") ? new PresenceMemberList(core, name) : undefined;
  }

  get state(): ChannelState {
    return (this.#owner._core()?.channelState(this.name) as ChannelState | undefined) ?? "subscribing";
  }

  bind(event: string, callback: ChannelEventCallback): Unsubscribe {
    let listeners = this.#byEvent.get(event);
    if (listeners === undefined) {
      listeners = new Listeners();
      this.#byEvent.set(event, listeners);
    }
    return listeners.add(callback);
  }

  bindGlobal(callback: GlobalEventCallback): Unsubscribe {
    return this.#global.add(callback);
  }

  /**
   * @internal Feeds the channel's chat events (`kinds`) to `session` inside
   * the wasm, calling `wake` after each (see `routeToSession`).
   */
  _route(session: ChatRoomSession, kinds: number, wake: () => void): Unsubscribe {
    const core = this.#owner._core();
    // Not attached (disposed meanwhile): no events will arrive.
    if (core === undefined) return () => undefined;
    // The answer: whether the app listens to the event too, so that only then
    // does the event cross to JS (the session needs no JS copy of it).
    const id = core.routeToSession(this.name, session, kinds, (event) => {
      wake();
      return this.#listens(event);
    });
    return () => this.#owner._core()?.unroute(id);
  }

  trigger(event: string, data: unknown): Promise<void> {
    const core = this.#owner._core();
    if (core === undefined) {
      return Promise.reject(
        new DomViaError("not_subscribed", `unable to trigger ${event}; the channel ${this.name} is not subscribed yet`),
      );
    }
    try {
      core.trigger(this.name, event, JSON.stringify(data ?? null));
      return Promise.resolve();
    } catch (thrown) {
      return Promise.reject(toDomViaError(thrown));
    }
  }

  unsubscribe(): void {
    this.#owner.unsubscribe(this.name);
  }

  /** @internal An event off the socket: the app's listeners get its value, parsed once and only when someone listens. */
  _emitText(event: string, dataJson: string | undefined, metadata: EventMetadata): void {
    if (this.#listens(event)) this._emit(event, parseJson(dataJson), metadata);
  }

  /** Whether the app has a listener for `event` here. */
  #listens(event: string): boolean {
    return (this.#byEvent.get(event)?.size ?? 0) > 0 || this.#global.size > 0;
  }

  /** @internal */
  _emit(event: string, data: unknown, metadata: EventMetadata): void {
    this.#byEvent.get(event)?.emit(data, metadata);
    this.#global.emit(event, data, metadata);
  }

  /** @internal */
  _clear(): void {
    this.#byEvent.clear();
    this.#global.clear();
  }
}

class Connection implements RealtimeConnection {
  readonly #owner: DomViaRealtime;
  /** @internal */
  readonly _stateListeners = new Listeners<[StateChange]>();
  /** @internal */
  readonly _errorListeners = new Listeners<[{ code?: number; message: string }]>();

  constructor(owner: DomViaRealtime) {
    this.#owner = owner;
  }

  get state(): ConnectionState {
    return (this.#owner._core()?.state as ConnectionState | undefined) ?? "initialized";
  }

  get socketId(): string | undefined {
    return this.#owner._core()?.socketId;
  }

  onStateChange(listener: (change: StateChange) => void): Unsubscribe {
    return this._stateListeners.add(listener);
  }

  onError(listener: (error: { code?: number; message: string }) => void): Unsubscribe {
    return this._errorListeners.add(listener);
  }

  connect(): void {
    this.#owner._connect();
  }

  disconnect(): void {
    this.#owner._disconnect();
  }
}

/**
 * Feeds `channel`'s chat events to `session` inside the wasm, where the
 * connection and the session both live: `kinds` {@link ROOM_EVENTS} is the
 * room's own events (`message.created`, `receipt.updated`, `member.removed`),
 * {@link TYPING_EVENTS} `client-typing` (stamped with the sender's `user_id`).
 * `wake` runs after each event fed, to carry out the session's actions. The
 * app's own listeners on the channel still get these events.
 *
 * @throws {DomViaError} `invalid_config` for a channel of another copy of
 * `@domvia/realtime` (another wasm module, which cannot take this session).
 */
export function routeToSession(channel: Channel, session: ChatRoomSession, kinds: number, wake: () => void): Unsubscribe {
  if (!(channel instanceof RealtimeChannel)) {
    throw new DomViaError(
      "invalid_config",
      `unable to open the room on ${channel.name}; its connection is from another copy of @domvia/realtime (install one copy)`,
    );
  }
  return channel._route(session, kinds, wake);
}

/**
 * A realtime connection with its channels. Create it with
 * {@link DomViaRealtime.create}; release it with {@link DomViaRealtime.dispose}.
 */
export class DomViaRealtime {
  readonly connection: RealtimeConnection;
  readonly #connection: Connection;
  readonly #options: DomViaRealtimeOptions;
  readonly #channels = new Map<string, RealtimeChannel>();
  readonly #signedIn = new Listeners<[unknown]>();
  #core: CoreConnection | undefined;
  #wantConnected: boolean;
  #disposed = false;
  /** Resolves when the wasm core is loaded and this connection is attached to it. */
  readonly attached: Promise<void>;

  /**
   * Creates the connection. It loads the wasm core if needed and, unless
   * `autoConnect` is false, connects as soon as it is loaded. Channels
   * subscribed meanwhile are subscribed then.
   *
   * @throws {DomViaError} `invalid_config` for a missing key, host or authEndpoint, or auth headers or params that are not strings.
   */
  static create(options: DomViaRealtimeOptions): DomViaRealtime {
    for (const field of ["key", "host", "authEndpoint"] as const) {
      if (typeof options[field] !== "string" || options[field].length === 0) {
        throw new DomViaError("invalid_config", `unable to create the connection; ${field} must be a non-empty string`);
      }
    }
    for (const field of ["headers", "params"] as const) {
      const value: unknown = options.auth?.[field];
      if (value !== undefined && (typeof value !== "object" || value === null || Object.values(value).some((v) => typeof v !== "string"))) {
        throw new DomViaError("invalid_config", `unable to create the connection; auth.${field} must be an object of strings`);
      }
    }
    return new DomViaRealtime(options);
  }

  private constructor(options: DomViaRealtimeOptions) {
    this.#options = options;
    this.#connection = new Connection(this);
    this.connection = this.#connection;
    this.#wantConnected = options.autoConnect !== false;
    this.attached = ready(options.wasm).then(() => this.#attach());
    // The promise is also exposed; an unobserved failure is reported once here.
    this.attached.catch((error: unknown) => reportListenerError(error));
  }

  #attach(): void {
    if (this.#disposed) return;
    const options = this.#options;
    const pageIsPlainHttp = typeof location !== "undefined" && location.protocol === "http:";
    const core = new CoreConnection({
      key: options.key,
      host: options.host,
      port: options.port,
      forceTLS: options.forceTLS ?? !pageIsPlainHttp,
      // Absent, the core's default applies (off; `Options` in src/connection/mod.rs).
      clientEvents: options.clientEvents,
      userAuthentication: options.userAuthentication !== undefined,
      activityTimeoutMs: options.activityTimeoutMs,
      pongTimeoutMs: options.pongTimeoutMs,
      unavailableTimeoutMs: options.unavailableTimeoutMs,
    });
    this.#core = core;
    core.setListener({
      message: (channel, event, dataJson, userId) => this.#deliver(channel, event, dataJson, userId),
      notice: (noticeJson) => this.#dispatch(JSON.parse(noticeJson) as Notice),
      authorize: (socketId, channel) => void this.#authorize(core, socketId, channel),
    });
    for (const name of this.#channels.keys()) core.subscribe(name);
    if (this.#wantConnected) core.connect();
  }

  /** Makes the auth request the core asked for and hands it the answer. */
  async #authorize(core: CoreConnection, socketId: string, channel: string | undefined): Promise<void> {
    const options = this.#options;
    const endpoint = channel === undefined ? options.userAuthentication?.endpoint : options.authEndpoint;
    if (endpoint === undefined) return;
    const answer = await postAuth(endpoint, socketId, channel, { ...options.auth, headersProvider: options.headersProvider });
    // Disposed meanwhile: the core is freed, and nobody waits for the answer.
    if (this.#core !== core) return;
    if (channel === undefined) core.userAuthenticated(socketId, answer.status, answer.body);
    else core.channelAuthorized(channel, socketId, answer.status, answer.body);
  }

  /** @internal The wasm connection, once attached. */
  _core(): CoreConnection | undefined {
    return this.#core;
  }

  /** @internal */
  _connect(): void {
    this.#wantConnected = true;
    this.#core?.connect();
  }

  /** @internal */
  _disconnect(): void {
    this.#wantConnected = false;
    this.#core?.disconnect();
  }

  /**
   * Subscribes to a channel (or returns the existing one). Private and
   * presence channels are authorized through `authEndpoint`.
   *
   * @throws {DomViaError} `invalid_channel_name`
   */
  subscribe(name: string): Channel {
    if (this.#disposed) throw new DomViaError("disposed", `unable to subscribe to ${name}; the connection was disposed`);
    const existing = this.#channels.get(name);
    if (existing !== undefined) return existing;
    if (this.#core !== undefined) {
      try {
        this.#core.subscribe(name);
      } catch (thrown) {
        throw toDomViaError(thrown);
      }
    } else if (!/^[A-Za-z0-9_\-=@,.;]{1,200}$/.test(name)) {
      // Before the core is loaded, check the name here so the error is not deferred.
      throw new DomViaError("invalid_channel_name", `unable to subscribe; ${JSON.stringify(name)} is not a valid channel name`);
    }
    const channel = new RealtimeChannel(this, name, () => this.#core);
    this.#channels.set(name, channel);
    return channel;
  }

  /** The channel named `name`, if subscribed. */
  channel(name: string): Channel | undefined {
    return this.#channels.get(name);
  }

  /** Unsubscribes and forgets the channel's listeners. */
  unsubscribe(name: string): void {
    const channel = this.#channels.get(name);
    if (channel === undefined) return;
    this.#channels.delete(name);
    this.#core?.unsubscribe(name);
    channel._clear();
  }

  /** Calls `listener` with the user data once `pusher:signin` succeeded. */
  onSignedIn(listener: (userData: unknown) => void): Unsubscribe {
    return this.#signedIn.add(listener);
  }

  /** Closes the socket and releases timers, closures and listeners. Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const core = this.#core;
    this.#core = undefined;
    if (core !== undefined) {
      core.dispose();
      core.free();
    }
    for (const channel of this.#channels.values()) channel._clear();
    this.#channels.clear();
    this.#connection._stateListeners.clear();
    this.#connection._errorListeners.clear();
    this.#signedIn.clear();
  }

  /** A channel event: the hot path, called with plain arguments by the core. */
  #deliver(channel: string | undefined, event: string, dataJson: string | undefined, userId: string | undefined): void {
    if (channel === undefined) return;
    const target = this.#channels.get(channel);
    if (target === undefined) return;
    const metadata: EventMetadata = {};
    if (userId !== undefined) metadata.user_id = userId;
    target._emitText(event, dataJson, metadata);
  }

  #dispatch(notice: Notice): void {
    switch (notice.type) {
      case "state_change": {
        const change: StateChange = { previous: notice.previous, current: notice.current };
        if (notice.reason !== undefined) change.reason = notice.reason;
        this.#connection._stateListeners.emit(change);
        return;
      }
      case "subscribed":
        this.#channels.get(notice.channel)?._emit("pusher:subscription_succeeded", undefined, {});
        return;
      case "subscription_error": {
        const error: SubscriptionError = { code: "subscription_refused", message: notice.message };
        if (notice.status !== undefined) error.status = notice.status;
        this.#channels.get(notice.channel)?._emit("pusher:subscription_error", error, {});
        return;
      }
      case "member_added":
      case "member_removed": {
        const member: Member = { id: notice.userId, info: notice.userInfo ?? null };
        const event = notice.type === "member_added" ? "pusher:member_added" : "pusher:member_removed";
        this.#channels.get(notice.channel)?._emit(event, member, {});
        return;
      }
      case "error": {
        const error: { code?: number; message: string } = { message: notice.message };
        if (notice.code !== undefined) error.code = notice.code;
        this.#connection._errorListeners.emit(error);
        return;
      }
      case "signed_in":
        this.#signedIn.emit(parseJson(notice.userDataJson));
        return;
    }
  }
}
