/**
 * A chat room over a `DomViaRealtime` connection and the backend's HTTP API.
 *
 * Every decision is the wasm `ChatRoomSession`'s (the Rust core's
 * `chat::RoomSession`): what to fetch and when to retry, the order `onMessage`
 * reports in, delivery states, catch-up, the read debounce, typing expiry.
 * This class is its pump: it feeds the session what the channels, HTTP and
 * timers deliver, carries out the actions it returns (a request, a timer, a
 * seal or an open for the E2EE package, a typing signal) and tells the app
 * about the events among them.
 */
import type { Channel, ConnectionState, DomViaRealtime, Unsubscribe } from "@domvia/realtime";
import { buildChatChannelName } from "@domvia/realtime";
import type { ChatRoomSessionAction, ChatRoomSessionEvent, DomViaError } from "@domvia/realtime/core";
import {
  ChatRoomSession,
  callCore,
  Listeners,
  ROOM_EVENTS,
  routeToSession,
  toDomViaError,
  TYPING_EVENTS,
} from "@domvia/realtime/core";
import { BackendClient, backendError, chatError } from "./backend.js";
import type {
  ChatMember,
  ChatMessage,
  ChatRoom,
  ChatRoomEncryption,
  ChatRoomOptions,
  ChatRoomSnapshot,
  ChatRoomStatus,
  PresenceEvent,
  ReadReceiptEvent,
  TypingEvent,
} from "./types.js";
import { ENCRYPTION_EVENTS, EncryptionBridge } from "./encryption.js";
import { PresenceMembers } from "./presence.js";
import { MessageRows, type ViewDeltaJson, type ViewMessageJson } from "./view.js";

/** `c-` and 32 random hex digits: the idempotency key of one message. */
function newClientId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `c-${Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("")}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A 52-bit seed for the session's retry jitter. */
function jitterSeed(): number {
  const [high, low] = crypto.getRandomValues(new Uint32Array(2));
  return ((high ?? 0) & 0xfffff) * 2 ** 32 + (low ?? 0);
}

type Waiter<T> = { resolve: (value: T) => void; reject: (error: DomViaError) => void };

const EMPTY: readonly never[] = Object.freeze([]);
const NO_POSITIONS: Readonly<Record<string, number>> = Object.freeze({});

/** The default {@link ChatRoom}. */
export class DefaultChatRoom implements ChatRoom {
  readonly roomId: string;
  readonly #realtime: DomViaRealtime;
  readonly #options: ChatRoomOptions;
  readonly #presence: boolean;
  readonly #backend: BackendClient;

  #session: ChatRoomSession | undefined;
  #status: ChatRoomStatus = "loading";
  #error: { code: string; message: string } | undefined;
  readonly #ready: Promise<void>;
  #settleReady: Waiter<void> | undefined;
  #left = false;

  readonly #timers = new Map<string, ReturnType<typeof setTimeout>>();
  readonly #cleanups: Unsubscribe[] = [];
  readonly #ownedChannels: string[] = [];
  #privateChannel: Channel | undefined;
  #presenceChannel: Channel | undefined;
  #hadConnected: boolean;
  #warnedTyping = false;

  /** The promises of sends on their way, by client id. */
  readonly #deliveries = new Map<string, Waiter<ChatMessage>[]>();
  #olderLoad: { promise: Promise<{ added: number; hasMore: boolean }>; waiter: Waiter<{ added: number; hasMore: boolean }> } | undefined;

  // End-to-end encryption (encrypted rooms only).
  readonly encryption: ChatRoomEncryption | undefined;
  readonly #encryption: EncryptionBridge | undefined;

  readonly #messageListeners = new Listeners<[ChatMessage]>();
  readonly #typingListeners = new Listeners<[TypingEvent]>();
  readonly #receiptListeners = new Listeners<[ReadReceiptEvent]>();
  readonly #storeListeners = new Listeners<[]>();

  // The view: rebuilt from the session only when it reported a change.
  #snapshot: ChatRoomSnapshot | undefined;
  #viewDirty = true;
  #notifyScheduled = false;
  readonly #rows = new MessageRows();
  #viewUnread = 0;
  #viewHasOlder = false;
  #viewReadPositions: Readonly<Record<string, number>> = NO_POSITIONS;
  #typingUserIds: readonly string[] = EMPTY;
  readonly #presenceMembers = new PresenceMembers(() => this.#changed(false));

  constructor(realtime: DomViaRealtime, options: ChatRoomOptions) {
    this.roomId = options.roomId;
    this.#realtime = realtime;
    this.#options = options;
    this.#presence = options.presence === true;
    this.#backend = new BackendClient(options.api);
    this.#ready = new Promise<void>((resolve, reject) => {
      this.#settleReady = { resolve, reject };
    });
    // The app may never call waitUntilReady(); the failure is in the snapshot too.
    this.#ready.catch(() => undefined);
    if (options.encrypted === true) {
      this.#encryption = new EncryptionBridge(options.roomId, options.encryptionWasm, this.#backend, (input) => this.#feed(input));
      this.encryption = this.#encryption.api((operation) => this.#awaitReady(operation));
    } else {
      this.encryption = undefined;
    }
    this.#hadConnected = realtime.connection.state === "connected";
    this.#cleanups.push(
      realtime.connection.onStateChange(({ current }) => {
        if (current === "connected") {
          if (this.#hadConnected) this.#feed((session) => session.reconnected());
          this.#hadConnected = true;
        }
        this.#changed(false);
      }),
    );
    void this.#start();
  }

  // ---- The pump ---------------------------------------------------------

  async #start(): Promise<void> {
    try {
      await this.#realtime.attached;
    } catch (thrown) {
      if (!this.#left) this.#fail(toDomViaError(thrown));
      return;
    }
    if (this.#left) return;
    const options = this.#options;
    try {
      this.#session = callCore(
        "create the chat room session",
        () =>
          new ChatRoomSession({
            room_id: options.roomId,
            user_id: options.userId,
            encrypted: options.encrypted === true,
            presence: this.#presence,
            page_size: options.historyPageSize,
            typing_throttle_ms: options.typing?.throttleMs,
            typing_timeout_ms: options.typing?.timeoutMs,
            tail_check_ms: options.tailCheckMs,
            jitter_seed: jitterSeed(),
          }),
      );
    } catch (thrown) {
      this.#fail(toDomViaError(thrown));
      return;
    }
    this.#syncMessageReports();
    try {
      this.#join(options.channelName, "private");
      if (this.#presence) this.#join(buildChatChannelName(this.roomId, { presence: true }), "presence");
    } catch (thrown) {
      // A channel name the connection refuses, or a connection from another copy of the SDK.
      this.#fail(toDomViaError(thrown));
      return;
    }
    this.#feed((session) => session.start());
  }

  /** Feeds the session one input, then carries out what it asks for. */
  #feed(input: (session: ChatRoomSession) => void): void {
    const session = this.#session;
    if (session === undefined) return;
    input(session);
    this.#pump(session);
  }

  #pump(session: ChatRoomSession): void {
    // Until the session has nothing more to ask, or the room was left (and
    // the session freed) by a listener of one of these actions.
    while (this.#session === session && session.hasActions) {
      for (const action of session.takeActions()) this.#perform(action);
    }
  }

  #perform(action: ChatRoomSessionAction): void {
    switch (action.type) {
      case "request":
        void this.#request(action);
        return;
      case "timer": {
        clearTimeout(this.#timers.get(action.name));
        const timer = setTimeout(() => {
          this.#timers.delete(action.name);
          this.#feed((session) => session.timerFired(action.name, Date.now()));
        }, action.delay_ms);
        this.#timers.set(action.name, timer);
        return;
      }
      case "prepare_encryption":
      case "seal":
      case "open":
        this.#encryption?.perform(action);
        return;
      case "typing":
        this.#triggerTyping(action.data);
        return;
      case "event":
        this.#onEvent(action.event);
        return;
    }
  }

  /** Makes one request and hands the session its status and body (status 0: no answer). */
  async #request(action: Extract<ChatRoomSessionAction, { type: "request" }>): Promise<void> {
    const answer = await this.#backend.exchange(action.method, action.path, {
      body: action.body,
      socketId: action.with_socket_id ? this.#realtime.connection.socketId : undefined,
      keepalive: action.keepalive,
    });
    this.#feed((session) => session.response(action.id, answer.status, answer.body, Date.now()));
  }

  #onEvent(event: ChatRoomSessionEvent): void {
    switch (event.type) {
      case "ready":
        this.#status = "ready";
        this.#settleReady?.resolve();
        this.#settleReady = undefined;
        this.#changed(true);
        return;
      case "failed":
        this.#fail(backendError(event.code, event.message));
        return;
      case "changed":
        this.#changed(true);
        return;
      case "message":
        // The session reports these only while someone listens (#syncMessageReports);
        // the last listener may have gone since.
        if (this.#messageListeners.size > 0) this.#messageListeners.emit(this.#rows.row(event.message as ViewMessageJson));
        return;
      case "typing":
        // The session reports every change of its typing list as one event,
        // stops before starts, starts in the order they began (checked by
        // tests/chat_session.rs), so the list follows from the events alone:
        // no copy of the whole list out of the wasm per signal.
        // (A start names someone not listed, a stop someone listed.)
        this.#typingUserIds = Object.freeze(
          event.is_typing ? [...this.#typingUserIds, event.user_id] : this.#typingUserIds.filter((id) => id !== event.user_id),
        );
        this.#changed(false);
        if (this.#typingListeners.size > 0) {
          this.#typingListeners.emit({ user_id: event.user_id, is_typing: event.is_typing, verified: event.verified });
        }
        return;
      case "receipt":
        this.#receiptListeners.emit({ user_id: event.user_id, message_id: event.message_id, seq: event.seq });
        return;
      case "delivered": {
        const row = this.#rows.row(event.message as ViewMessageJson);
        for (const waiter of this.#takeDelivery(event.client_id)) waiter.resolve(row);
        return;
      }
      case "send_failed": {
        const error = backendError(event.code, event.message);
        for (const waiter of this.#takeDelivery(event.client_id)) waiter.reject(error);
        return;
      }
      case "older_loaded":
        this.#olderLoad?.waiter.resolve({ added: event.added, hasMore: event.has_more });
        this.#olderLoad = undefined;
        return;
      case "older_failed":
        this.#olderLoad?.waiter.reject(backendError(event.code, event.message));
        this.#olderLoad = undefined;
        return;
      case "ignored":
        console.warn(`domvia-realtime-chat: ${event.message}`);
        return;
    }
  }

  #takeDelivery(clientId: string): Waiter<ChatMessage>[] {
    const waiters = this.#deliveries.get(clientId) ?? [];
    this.#deliveries.delete(clientId);
    return waiters;
  }

  #fail(error: DomViaError): void {
    this.#status = "error";
    this.#error = { code: error.code, message: error.message };
    this.#settleReady?.reject(error);
    this.#settleReady = undefined;
    this.#changed(false);
  }

  /** Subscribes to one of the room's channels and binds its events to the session. */
  #join(name: string, role: "private" | "presence"): void {
    const existed = this.#realtime.channel(name) !== undefined;
    const channel = this.#realtime.subscribe(name);
    if (!existed) this.#ownedChannels.push(name);
    if (role === "private") this.#privateChannel = channel;
    else this.#presenceChannel = channel;

    // The private channel carries the room's own events; typing goes on the
    // presence channel of a presence room.
    const kinds = (role === "private" ? ROOM_EVENTS : 0) | (role === (this.#presence ? "presence" : "private") ? TYPING_EVENTS : 0);
    // The connection feeds them to the session inside the wasm (it lives in
    // the same module): no strings cross per event; only the pump runs here.
    const session = this.#session;
    if (session !== undefined && kinds !== 0) {
      this.#cleanups.push(routeToSession(channel, session, kinds, () => this.#pump(session)));
    }
    if (role === "private" && this.#options.encrypted === true) {
      for (const event of ENCRYPTION_EVENTS) {
        this.#cleanups.push(channel.bind(event, (data) => this.#encryption?.roomEvent(event, data)));
      }
    }
    if (role === "presence") {
      this.#cleanups.push(...this.#presenceMembers.bind(channel));
    }
    let first = true;
    const succeeded = (): void => {
      if (role === "presence" && !this.#left) this.#presenceMembers.refresh(channel, !first);
      first = false;
      this.#feed((session) => session.subscribed(role === "presence"));
    };
    this.#cleanups.push(
      channel.bind("pusher:subscription_succeeded", succeeded),
      channel.bind("pusher:subscription_error", (error) => {
        const status = isObject(error) && typeof error.status === "number" ? error.status : undefined;
        this.#feed((session) => session.subscriptionRefused(name, status));
      }),
    );
    if (channel.state === "subscribed") succeeded();
  }

  // ---- Sending ------------------------------------------------------------

  sendMessage(input: { text: string }): Promise<ChatMessage> {
    const text = typeof input?.text === "string" ? input.text : "";
    // When ready, the 'sending' message is in the snapshot before this returns.
    if (this.#status === "ready") return this.#deliver(newClientId(), (session, clientId) => session.send(clientId, text, Date.now()));
    return this.#awaitReady("send a message").then(() =>
      this.#deliver(newClientId(), (session, clientId) => session.send(clientId, text, Date.now())),
    );
  }

  retry(clientId: string): Promise<ChatMessage> {
    const start = (): Promise<ChatMessage> => this.#deliver(clientId, (session, id) => session.retry(id));
    if (this.#status === "ready") return start();
    return this.#awaitReady("retry a message").then(start);
  }

  /** Starts a send in the session; the promise settles with its `delivered` or `send_failed` event. */
  #deliver(clientId: string, begin: (session: ChatRoomSession, clientId: string) => void): Promise<ChatMessage> {
    const session = this.#session;
    if (session === undefined || this.#left) return Promise.reject(this.#leftError("send a message"));
    try {
      callCore("send a message", () => begin(session, clientId));
    } catch (thrown) {
      return Promise.reject(toDomViaError(thrown));
    }
    const promise = new Promise<ChatMessage>((resolve, reject) => {
      const waiters = this.#deliveries.get(clientId) ?? [];
      waiters.push({ resolve, reject });
      this.#deliveries.set(clientId, waiters);
    });
    this.#pump(session);
    return promise;
  }

  async #awaitReady(operation: string): Promise<void> {
    if (this.#left) throw this.#leftError(operation);
    await this.#ready;
    if (this.#left || this.#session === undefined) throw this.#leftError(operation);
  }

  #leftError(operation: string): DomViaError {
    return chatError("room_left", `unable to ${operation}; the room was left`);
  }

  // ---- History ------------------------------------------------------------

  loadOlder(): Promise<{ added: number; hasMore: boolean }> {
    if (this.#olderLoad !== undefined) return this.#olderLoad.promise;
    return this.#awaitReady("load older messages").then(() => {
      if (this.#olderLoad !== undefined) return this.#olderLoad.promise;
      let waiter: Waiter<{ added: number; hasMore: boolean }> | undefined;
      const promise = new Promise<{ added: number; hasMore: boolean }>((resolve, reject) => {
        waiter = { resolve, reject };
      });
      if (waiter !== undefined) this.#olderLoad = { promise, waiter };
      this.#feed((session) => session.loadOlder());
      return promise;
    });
  }

  get messages(): readonly ChatMessage[] {
    return this.getSnapshot().messages;
  }

  onMessage(listener: (message: ChatMessage) => void): Unsubscribe {
    const unsubscribe = this.#messageListeners.add(listener);
    this.#syncMessageReports();
    return () => {
      unsubscribe();
      this.#syncMessageReports();
    };
  }

  /** The session writes `message` events out only while someone listens (no JSON per message for nobody). */
  #syncMessageReports(): void {
    if (this.#session !== undefined) this.#session.reportsMessages = this.#messageListeners.size > 0;
  }

  // ---- Typing -------------------------------------------------------------

  sendTyping(input?: { user_id?: string }): void {
    if (this.#left || this.#status !== "ready") return;
    this.#feed((session) => session.typingInput(input?.user_id, Date.now()));
  }

  stopTyping(): void {
    if (this.#left || this.#status !== "ready") return;
    this.#feed((session) => session.stopTyping());
  }

  #triggerTyping(data: object): void {
    const channel = this.#presence ? this.#presenceChannel : this.#privateChannel;
    if (channel === undefined) return;
    // Best effort: a lost typing signal expires on its own at the others.
    channel.trigger("client-typing", data).catch((error: unknown) => {
      if (this.#warnedTyping) return;
      this.#warnedTyping = true;
      console.warn("domvia-realtime-chat: unable to send typing (is clientEvents enabled?)", error);
    });
  }

  onTyping(listener: (event: TypingEvent) => void): Unsubscribe {
    return this.#typingListeners.add(listener);
  }

  // ---- Reads --------------------------------------------------------------

  markRead(messageId: string): void {
    if (this.#left || this.#status !== "ready") return;
    this.#feed((session) => session.markRead(messageId));
  }

  onReadReceipt(listener: (event: ReadReceiptEvent) => void): Unsubscribe {
    return this.#receiptListeners.add(listener);
  }

  get unreadCount(): number {
    return this.getSnapshot().unreadCount;
  }

  // ---- Presence (the presence channel's member list, mirrored) ---------------

  get members(): readonly ChatMember[] {
    return this.getSnapshot().members;
  }

  onPresence(listener: (event: PresenceEvent) => void): Unsubscribe {
    return this.#presenceMembers.onPresence(listener);
  }

  // ---- The store ------------------------------------------------------------

  subscribe(listener: () => void): Unsubscribe {
    return this.#storeListeners.add(listener);
  }

  getSnapshot(): ChatRoomSnapshot {
    if (this.#snapshot !== undefined) return this.#snapshot;
    this.#refreshView();
    const snapshot: ChatRoomSnapshot = {
      roomId: this.roomId,
      status: this.#status,
      ...(this.#error === undefined ? {} : { error: Object.freeze({ ...this.#error }) }),
      connection: this.#connectionState(),
      messages: this.#rows.list,
      hasOlder: this.#viewHasOlder,
      typingUserIds: this.#typingUserIds,
      members: this.#presenceMembers.list,
      unreadCount: this.#viewUnread,
      readPositions: this.#viewReadPositions,
    };
    this.#snapshot = Object.freeze(snapshot);
    return this.#snapshot;
  }

  #connectionState(): ConnectionState {
    return this.#realtime.connection.state;
  }

  /** Reads the session's view after a change; unchanged rows keep their objects. */
  #refreshView(): void {
    const session = this.#session;
    if (!this.#viewDirty || session === undefined) return;
    this.#viewDirty = false;
    this.#rows.apply(session.viewSince(this.#rows.epoch, this.#rows.cursor) as ViewDeltaJson);
    this.#viewUnread = session.unreadCount;
    this.#viewHasOlder = session.hasOlder;
    this.#viewReadPositions = Object.freeze(session.readPositions());
  }

  /** Something changed: a new snapshot on the next read, and one notification per microtask. */
  #changed(viewChanged: boolean): void {
    if (viewChanged) this.#viewDirty = true;
    this.#snapshot = undefined;
    if (this.#notifyScheduled) return;
    this.#notifyScheduled = true;
    queueMicrotask(() => {
      this.#notifyScheduled = false;
      this.#storeListeners.emit();
    });
  }

  waitUntilReady(): Promise<void> {
    return this.#ready;
  }

  // ---- Leaving --------------------------------------------------------------

  leave(): void {
    if (this.#left) return;
    // The session stops typing, posts the last read position (keepalive: it
    // outlives the page) and fails the sends on their way.
    this.#feed((session) => session.leave());
    // Keep the last view for the final snapshot before the session is freed.
    this.#refreshView();
    this.#left = true;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#backend.close();
    this.#encryption?.close();

    for (const cleanup of this.#cleanups.splice(0)) cleanup();
    for (const name of this.#ownedChannels.splice(0)) this.#realtime.unsubscribe(name);
    this.#privateChannel = this.#presenceChannel = undefined;

    const left = this.#leftError("finish");
    for (const clientId of [...this.#deliveries.keys()]) {
      for (const waiter of this.#takeDelivery(clientId)) waiter.reject(left);
    }
    this.#olderLoad?.waiter.reject(this.#leftError("load older messages"));
    this.#olderLoad = undefined;
    this.#settleReady?.reject(chatError("room_left", "unable to get the room ready; the room was left"));
    this.#settleReady = undefined;

    const session = this.#session;
    this.#session = undefined;
    session?.free();
    this.#status = "left";
    this.#typingUserIds = EMPTY;
    this.#messageListeners.clear();
    this.#typingListeners.clear();
    this.#receiptListeners.clear();
    this.#presenceMembers.close();
    this.#changed(false);
  }
}
