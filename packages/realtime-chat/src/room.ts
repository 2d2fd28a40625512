/**
 * A chat room over a `DomViaRealtime` connection and the backend's HTTP API.
 *
 * The room's rules (ordering by seq, dedup by message id, gap detection and
 * cursors, delivery states, the typing throttle and expiry, unread counting,
 * read positions) live in the wasm `ChatRoomState`. This layer moves data: it
 * feeds the state what the channels and HTTP deliver, performs the requests
 * and timers the state asks for, and tells the app.
 */
import type { Channel, ConnectionState, DomViaRealtime, EventMetadata, Member, Unsubscribe, WasmSource } from "@domvia/realtime";
import { buildChatChannelName } from "@domvia/realtime";
import type { DomViaError } from "@domvia/realtime/core";
import { Listeners, toDomViaError } from "@domvia/realtime/core";
import { BackendClient, chatError, RequestFailure } from "./backend.js";
import { type Applied, RoomState, type StoredMessageJson } from "./state.js";
import type {
  ChatMember,
  ChatMessage,
  ChatRoom,
  ChatRoomEncryption,
  ChatRoomOptions,
  ChatRoomSnapshot,
  ChatRoomStatus,
  DeviceKeyChangeEvent,
  OpenResult,
  PresenceEvent,
  ReadReceiptEvent,
  RoomEncryption,
  RoomEncryptionModule,
  StaleEpoch,
  TypingEvent,
} from "./types.js";

const DEFAULT_THROTTLE_MS = 3000;
const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_PAGE_SIZE = 50;
const CATCH_UP_PAGE_SIZE = 100;
const READ_DEBOUNCE_MS = 300;
const RETRY_BASE_MS = 500;
const RETRY_MAX_MS = 30_000;

/** The backend's Room object, the fields the room reads. */
interface RoomJson {
  /** Whether the backend keeps the room end-to-end encrypted (absent: the backend does not say). */
  encrypted?: boolean;
  last_read_seq?: number;
  unread_count?: number;
  latest_seq?: number;
  members?: { id: string; last_read_seq?: number }[];
}

interface PageJson {
  messages: StoredMessageJson[];
  has_more: boolean;
}

/** An event that arrived while the room was still loading its history. */
type ChannelEvent =
  | { kind: "created"; data: unknown }
  | { kind: "receipt"; data: unknown }
  | { kind: "typing"; userId: string | undefined; isTyping: boolean };

/** One of your messages on its way to the backend. */
interface Delivery {
  attempt: number;
  /** Sends refused with `epoch_stale` (each then resealed in a newer epoch). */
  staleRefusals: number;
  timer: ReturnType<typeof setTimeout> | undefined;
  inFlight: boolean;
  waiters: { resolve: (message: ChatMessage) => void; reject: (error: DomViaError) => void }[];
}

/** Sends of one message refused with `epoch_stale` before it fails with that code. */
const EPOCH_STALE_ATTEMPTS = 3;

/** The `epoch_stale` details of a refused send, if that is what it was. */
function staleEpochOf(thrown: unknown): StaleEpoch | undefined {
  if (!(thrown instanceof RequestFailure) || (thrown.error.code as string) !== "epoch_stale") return undefined;
  const current = thrown.details.current_epoch;
  return {
    current_epoch: typeof current === "number" && Number.isSafeInteger(current) ? current : 0,
    needs_new_epoch: thrown.details.needs_new_epoch !== false,
  };
}

function backoffMs(attempt: number): number {
  const base = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/** `c-` and 32 random hex digits: the idempotency key of one message. */
function newClientId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `c-${Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("")}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The room events that may change an encrypted room's member devices. */
const ENCRYPTION_EVENTS = ["epoch.created", "member.added", "member.removed"] as const;

/**
 * Loads `@domvia/realtime-e2ee` on demand: a bare dynamic import, so bundlers
 * split it out and apps that never encrypt never load it.
 */
async function loadEncryption(): Promise<RoomEncryptionModule> {
  let loaded: unknown;
  try {
    // @ts-ignore -- an optional peer: this package never depends on it at compile time (its types are in types.ts).
    loaded = await import("@domvia/realtime-e2ee");
  } catch (cause) {
    throw chatError(
      "encryption_unavailable",
      "unable to open the encrypted room; @domvia/realtime-e2ee could not be loaded (install it, and map it for the browser)",
      { cause },
    );
  }
  if (!isObject(loaded) || typeof loaded.openRoomEncryption !== "function") {
    throw chatError("encryption_unavailable", "unable to open the encrypted room; @domvia/realtime-e2ee has no openRoomEncryption");
  }
  return loaded as unknown as RoomEncryptionModule;
}

/** The text a message shows: its own, or what opening it gave (null when it did not open). */
function textOf(message: ChatMessage, opened?: OpenResult): string | null {
  return opened === undefined ? (message.text ?? null) : opened.ok ? opened.text : null;
}

/** Whether `row`, made by {@link toChatMessage} earlier, still shows `message` as opened now (error code included). */
function showsSame(row: ChatMessage, message: ChatMessage, opened?: OpenResult): boolean {
  return (
    row.status === message.status &&
    row.seq === message.seq &&
    row.text === textOf(message, opened) &&
    row.decryption_error?.code === (opened?.ok === false ? opened.code : undefined)
  );
}

/** A message with exactly the documented fields, frozen; `opened` decrypts an encrypted one. */
function toChatMessage(message: ChatMessage, opened?: OpenResult): ChatMessage {
  const result: {
    -readonly [K in keyof ChatMessage]: ChatMessage[K];
  } = {
    message_id: message.message_id ?? null,
    room_id: message.room_id,
    seq: message.seq ?? null,
    user_id: message.user_id,
    text: textOf(message, opened),
    sent_at: message.sent_at,
    client_id: message.client_id,
    status: message.status ?? "sent",
  };
  if (isObject(message.ciphertext)) result.ciphertext = message.ciphertext;
  if (opened !== undefined && !opened.ok) {
    result.decryption_error = Object.freeze({ code: opened.code, message: opened.message });
  }
  return Object.freeze(result);
}

function toMember(member: Member): ChatMember {
  const name = isObject(member.info) && typeof member.info.name === "string" ? member.info.name : null;
  return Object.freeze({ user_id: member.id, name });
}

function failureOf(thrown: unknown): DomViaError {
  return thrown instanceof RequestFailure ? thrown.error : toDomViaError(thrown);
}

const EMPTY: readonly never[] = Object.freeze([]);
const NO_POSITIONS: Readonly<Record<string, number>> = Object.freeze({});

/** The default {@link ChatRoom}. */
export class DefaultChatRoom implements ChatRoom {
  readonly roomId: string;
  readonly #realtime: DomViaRealtime;
  readonly #channelName: string;
  readonly #presence: boolean;
  readonly #userIdOption: string | undefined;
  readonly #encryptionWasm: WasmSource | undefined;
  readonly #throttleMs: number;
  readonly #timeoutMs: number;
  readonly #pageSize: number;
  readonly #backend: BackendClient;
  readonly #path: string;

  #state: RoomState | undefined;
  #myUserId: string | undefined;
  #status: ChatRoomStatus = "loading";
  #error: { code: string; message: string } | undefined;
  readonly #ready: Promise<void>;
  #settleReady: { resolve: () => void; reject: (error: DomViaError) => void } | undefined;
  #left = false;

  /** Events that arrive before the latest history page is applied; undefined once ready. */
  #buffer: ChannelEvent[] | undefined = [];
  readonly #cleanups: Unsubscribe[] = [];
  readonly #ownedChannels: string[] = [];
  #privateChannel: Channel | undefined;
  #presenceChannel: Channel | undefined;
  #hadConnected: boolean;
  #reconnectedWhileLoading = false;

  readonly #deliveries = new Map<string, Delivery>();
  #typingTimer: ReturnType<typeof setTimeout> | undefined;
  /** When the armed typing timer fires (ms since the epoch). */
  #typingTimerAt: number | undefined;
  #readTimer: ReturnType<typeof setTimeout> | undefined;
  #pendingReadSeq: number | undefined;
  #readInFlight = false;
  #readAttempt = 0;
  #catchingUp = false;
  #catchUpAgain = false;
  #catchUpAttempt = 0;
  #catchUpTimer: ReturnType<typeof setTimeout> | undefined;
  #olderLoad: Promise<{ added: number; hasMore: boolean }> | undefined;
  #warnedTyping = false;
  #loadTimer: ReturnType<typeof setTimeout> | undefined;

  // End-to-end encryption (encrypted rooms only).
  readonly #encrypted: boolean;
  readonly encryption: ChatRoomEncryption | undefined;
  #encryption: RoomEncryption | undefined;
  readonly #keyChangeListeners = new Listeners<[DeviceKeyChangeEvent]>();
  /** Every stored encrypted message, opened, by backend message_id: opened once, before it is shown. */
  readonly #opened = new Map<string, OpenResult>();
  /** Sealed envelopes by client_id: sealed once, and the same content on every retry. */
  readonly #sealed = new Map<string, object>();
  /** Sends whose envelope the backend refused with `epoch_stale`: sealed anew before the next attempt. */
  readonly #stale = new Map<string, StaleEpoch>();
  /** Live encrypted messages are applied in arrival order, each after its opening. */
  #applyChain: Promise<void> = Promise.resolve();

  readonly #messageListeners = new Listeners<[ChatMessage]>();
  readonly #typingListeners = new Listeners<[TypingEvent]>();
  readonly #receiptListeners = new Listeners<[ReadReceiptEvent]>();
  readonly #presenceListeners = new Listeners<[PresenceEvent]>();
  readonly #storeListeners = new Listeners<[]>();

  // The view: rebuilt from the state only when something changed.
  #snapshot: ChatRoomSnapshot | undefined;
  #viewDirty = true;
  #notifyScheduled = false;
  #rows = new Map<string, ChatMessage>();
  #viewMessages: readonly ChatMessage[] = EMPTY;
  #viewUnread = 0;
  #viewHasOlder = false;
  #viewReadPositions: Readonly<Record<string, number>> = NO_POSITIONS;
  #typingUserIds: readonly string[] = EMPTY;
  #members: readonly ChatMember[] = EMPTY;

  constructor(realtime: DomViaRealtime, options: ChatRoomOptions) {
    this.roomId = options.roomId;
    this.#realtime = realtime;
    this.#channelName = options.channelName;
    this.#presence = options.presence === true;
    this.#userIdOption = options.userId;
    this.#encryptionWasm = options.encryptionWasm;
    this.#throttleMs = options.typing?.throttleMs ?? DEFAULT_THROTTLE_MS;
    this.#timeoutMs = options.typing?.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#pageSize = options.historyPageSize ?? DEFAULT_PAGE_SIZE;
    this.#backend = new BackendClient(options.api);
    this.#path = `/api/rooms/${encodeURIComponent(options.roomId)}`;
    this.#ready = new Promise<void>((resolve, reject) => {
      this.#settleReady = { resolve, reject };
    });
    // The app may never call waitUntilReady(); the failure is in the snapshot too.
    this.#ready.catch(() => undefined);
    this.#encrypted = options.encrypted === true;
    this.encryption = this.#encrypted ? this.#encryptionApi() : undefined;
    this.#hadConnected = realtime.connection.state === "connected";
    this.#cleanups.push(
      realtime.connection.onStateChange(({ current }) => {
        if (current === "connected") {
          if (this.#hadConnected) this.#onReconnected();
          this.#hadConnected = true;
        }
        this.#changed(false);
      }),
    );
    void this.#start();
  }

  // ---- Loading ----------------------------------------------------------

  async #start(): Promise<void> {
    try {
      await this.#realtime.attached;
      if (this.#left) return;
      const subscribed: Promise<void>[] = [this.#join(this.#channelName, "private")];
      if (this.#presence) {
        subscribed.push(this.#join(buildChatChannelName(this.roomId, { presence: true }), "presence"));
      }
      const [userId, room] = await Promise.all([
        this.#userIdOption ?? this.#loading(() => this.#fetchUserId()),
        this.#loading(() => this.#fetchRoom()),
        ...subscribed,
      ]);
      if (this.#left) return;
      this.#myUserId = userId;
      if (this.#encrypted) {
        await this.#startEncryption(userId);
        if (this.#left) return;
      }
      const state = new RoomState(this.roomId, userId, this.#throttleMs, this.#timeoutMs);
      this.#state = state;

      // Subscribed first, then the history: nothing published in between is lost.
      const page = await this.#loading(() =>
        this.#backend.request<PageJson>("load the room's messages", "GET", `${this.#path}/messages?limit=${this.#pageSize}`),
      );
      if (this.#left) return;
      await this.#openAll(page.body.messages);
      if (this.#left) return;
      const applied = state.applyLatestPage(page.body.messages, page.body.has_more, Date.now());
      state.setReadState(room.last_read_seq ?? 0, room.unread_count ?? 0, room.latest_seq ?? 0);
      for (const member of room.members ?? []) {
        if (member.id !== userId) state.receiptReceived(member.id, member.last_read_seq ?? 0);
      }

      this.#status = "ready";
      const buffered = this.#buffer ?? [];
      this.#buffer = undefined;
      this.#settleReady?.resolve();
      this.#settleReady = undefined;
      this.#changed(true);
      for (const event of buffered) this.#dispatch(event);
      if (applied.catch_up_after !== undefined || this.#reconnectedWhileLoading) this.#catchUp();
    } catch (thrown) {
      if (this.#left) return;
      this.#fail(failureOf(thrown));
    }
  }

  /**
   * A step of the loading phase: retried with backoff while `retryable` says
   * the failure is passing (by default: the backend is unreachable or failing).
   */
  async #loading<T>(
    request: () => Promise<T>,
    retryable: (thrown: unknown) => boolean = (thrown) => thrown instanceof RequestFailure && thrown.retryable,
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await request();
      } catch (thrown) {
        if (!retryable(thrown) || this.#left) throw thrown;
      }
      await new Promise<void>((resolve) => {
        this.#loadTimer = setTimeout(resolve, backoffMs(attempt));
      });
      if (this.#left) throw this.#leftError("load the room");
    }
  }

  #fail(error: DomViaError): void {
    this.#status = "error";
    this.#error = { code: error.code, message: error.message };
    this.#settleReady?.reject(error);
    this.#settleReady = undefined;
    this.#changed(false);
  }

  async #fetchUserId(): Promise<string> {
    const answer = await this.#backend.request<{ user?: { id?: unknown } }>("read the session", "GET", "/api/session");
    const id = answer.body?.user?.id;
    if (typeof id !== "string") throw chatError("invalid_response", "unable to read the session; the answer has no user id");
    return id;
  }

  async #fetchRoom(): Promise<RoomJson> {
    try {
      const answer = await this.#backend.request<RoomJson>("open the room", "GET", this.#path);
      const room = answer.body ?? {};
      // Opened as the backend keeps it, or not at all: a plaintext client in
      // an encrypted room would show nothing and could send nothing, an
      // encrypted one in a plaintext room the reverse.
      if (typeof room.encrypted === "boolean" && room.encrypted !== this.#encrypted) {
        throw chatError(
          "room_encryption_mismatch",
          room.encrypted
            ? "unable to open the room; it is end-to-end encrypted, so open it with `encrypted: true`"
            : "unable to open the room; it is not end-to-end encrypted, so open it without `encrypted: true`",
        );
      }
      return room;
    } catch (thrown) {
      if (thrown instanceof RequestFailure && (thrown.status === 403 || thrown.status === 404)) {
        throw chatError("room_access_denied", `unable to open the room; ${thrown.error.message} (${thrown.error.code})`, {
          cause: thrown.error,
        });
      }
      throw thrown;
    }
  }

  /** Subscribes to one of the room's channels; resolves once the broker accepted it. */
  #join(name: string, role: "private" | "presence"): Promise<void> {
    const existed = this.#realtime.channel(name) !== undefined;
    const channel = this.#realtime.subscribe(name);
    if (!existed) this.#ownedChannels.push(name);
    if (role === "private") this.#privateChannel = channel;
    else this.#presenceChannel = channel;

    const typingChannel = this.#presence ? "presence" : "private";
    if (role === "private") {
      this.#cleanups.push(
        channel.bind("message.created", (data) => this.#receive({ kind: "created", data })),
        channel.bind("receipt.updated", (data) => this.#receive({ kind: "receipt", data })),
      );
      if (this.#encrypted) {
        for (const name of ENCRYPTION_EVENTS) {
          this.#cleanups.push(channel.bind(name, (data) => this.#encryption?.roomEvent(name, data)));
        }
      }
    }
    if (role === typingChannel) {
      this.#cleanups.push(
        channel.bind("client-typing", (data, metadata) => this.#receive(this.#typingEvent(data, metadata))),
      );
    }
    if (role === "presence") {
      this.#cleanups.push(
        channel.bind("pusher:member_added", (member) => this.#memberChanged("joined", member as Member)),
        channel.bind("pusher:member_removed", (member) => this.#memberChanged("left", member as Member)),
      );
    }

    return new Promise<void>((resolve, reject) => {
      let first = true;
      const succeeded = (): void => {
        if (role === "presence") this.#refreshMembers(!first);
        // A later success is a resubscription after a reconnect: catch up.
        if (!first && role === "private") this.#catchUp();
        first = false;
        resolve();
      };
      this.#cleanups.push(
        channel.bind("pusher:subscription_succeeded", succeeded),
        channel.bind("pusher:subscription_error", (error) => {
          const status = isObject(error) && typeof error.status === "number" ? ` (${error.status})` : "";
          const refused = chatError(
            "room_access_denied",
            `unable to join the room; the subscription to ${name} was refused${status}`,
            { cause: error },
          );
          if (this.#status === "ready") this.#fail(refused);
          reject(refused);
        }),
      );
      if (channel.state === "subscribed") succeeded();
    });
  }

  #typingEvent(data: unknown, metadata: EventMetadata): ChannelEvent {
    const isTyping = isObject(data) && data.is_typing === true;
    // On presence channels the broker stamps who sent it; the payload cannot lie.
    const userId = this.#presence
      ? metadata.user_id
      : isObject(data) && typeof data.user_id === "string"
        ? data.user_id
        : undefined;
    return { kind: "typing", userId, isTyping };
  }

  // ---- End-to-end encryption (encrypted rooms) ---------------------------------

  /** `room.encryption`: usable before the room is ready (listeners wait, calls await readiness). */
  #encryptionApi(): ChatRoomEncryption {
    const room = this;
    return Object.freeze({
      get fingerprint(): string | undefined {
        return room.#encryption?.fingerprint;
      },
      onKeyChange: (listener: (event: DeviceKeyChangeEvent) => void) => this.#keyChangeListeners.add(listener),
      acceptDeviceChange: async (userId: string, deviceId: string) => {
        await this.#readyState("accept a device change");
        const encryption = this.#encryption;
        if (encryption === undefined) throw this.#leftError("accept a device change");
        await encryption.acceptDeviceChange(userId, deviceId);
      },
      safetyNumber: async (userId: string) => {
        await this.#readyState("compute safety numbers");
        const encryption = this.#encryption;
        if (encryption === undefined) throw this.#leftError("compute safety numbers");
        return encryption.safetyNumber(userId);
      },
    });
  }

  /** Loads @domvia/realtime-e2ee, then this device and the room's keys (retried while the backend is unreachable). */
  async #startEncryption(userId: string): Promise<void> {
    const module = await loadEncryption();
    if (this.#left) return;
    const encryption = module.openRoomEncryption({
      roomId: this.roomId,
      userId,
      wasm: this.#encryptionWasm,
      request: (operation, method, path, body) => this.#encryptionRequest(operation, method, path, body),
    });
    this.#encryption = encryption;
    this.#cleanups.push(encryption.onKeyChange((change) => this.#keyChangeListeners.emit(change)));
    // The caller (#start) reports any other failure with its code.
    await this.#loading(
      () => encryption.prepare(),
      (thrown) => (toDomViaError(thrown).code as string) === "network_error",
    );
  }

  /** The room's backend client for the encryption: a refusal is the backend's code, an outage `network_error`. */
  async #encryptionRequest<T>(
    operation: string,
    method: "GET" | "POST" | "PUT",
    path: string,
    body: unknown,
  ): Promise<{ status: number; body: T }> {
    try {
      return await this.#backend.request<T>(operation, method, path, body === undefined ? {} : { body });
    } catch (thrown) {
      if (thrown instanceof RequestFailure && thrown.retryable) {
        throw chatError("network_error", thrown.error.message, { cause: thrown.error });
      }
      throw failureOf(thrown);
    }
  }

  /**
   * Opens the encrypted messages among `messages` not opened yet, so they are
   * shown (and reported) with their text. A plaintext message in an encrypted
   * room is not shown: nothing authenticates it.
   */
  async #openAll(messages: readonly StoredMessageJson[], again = false): Promise<void> {
    const encryption = this.#encryption;
    if (encryption === undefined || !Array.isArray(messages)) return;
    await Promise.all(
      messages.map(async (message) => {
        const id = isObject(message) ? message.message_id : undefined;
        if (typeof id !== "string" || (!again && this.#opened.has(id))) return;
        const { user_id: userId, client_id: clientId, sent_at: sentAt, ciphertext } = message;
        if (!isObject(ciphertext)) {
          if (typeof message.text === "string") {
            this.#opened.set(id, {
              ok: false,
              code: "e2ee_not_encrypted",
              message: "this message was not end-to-end encrypted in an encrypted room",
            });
          }
          return;
        }
        // A malformed message: the room's state refuses it anyway.
        if (typeof userId !== "string" || typeof clientId !== "string" || typeof sentAt !== "number") return;
        const result = await encryption.open({ message_id: id, user_id: userId, client_id: clientId, sent_at: sentAt, ciphertext });
        this.#opened.set(id, result);
      }),
    );
  }

  /**
   * Opens again the encrypted messages whose opening failed only because the
   * backend was unreachable (`network_error`); after a reconnect.
   */
  async #reopenUnreachable(): Promise<void> {
    const state = this.#state;
    if (this.#encryption === undefined || state === undefined) return;
    const failed = state.messages().filter((message) => {
      const opened = message.message_id === null ? undefined : this.#opened.get(message.message_id);
      return opened !== undefined && !opened.ok && opened.code === "network_error";
    });
    if (failed.length === 0) return;
    await this.#openAll(
      failed.map((message) => ({ ...message })),
      true,
    );
    if (!this.#left) this.#changed(true);
  }

  /** A live message of an encrypted room: applied after it is opened, in arrival order. */
  #applyCreatedEncrypted(data: StoredMessageJson): void {
    const opening = this.#openAll([data]);
    this.#applyChain = this.#applyChain
      .then(() => opening)
      .then(() => {
        const state = this.#state;
        if (state === undefined || this.#left) return;
        this.#afterApply(state.applyCreated(data, Date.now()), true);
      })
      .catch((error: unknown) => {
        console.warn("domvia-realtime-chat: ignored an event the room could not apply", error);
      });
  }

  /**
   * The envelope of a send: sealed once per client_id, the same one on every
   * retry; sealed anew (in a newer epoch) only after the backend refused it
   * with `epoch_stale`, which stored nothing, so idempotency is not at stake.
   */
  async #seal(clientId: string, text: string): Promise<object> {
    const known = this.#sealed.get(clientId);
    if (known !== undefined) return known;
    const encryption = this.#encryption;
    if (encryption === undefined) throw new RequestFailure(this.#leftError("send the message"), false, undefined);
    const stale = this.#stale.get(clientId);
    let envelope: object;
    try {
      envelope = stale === undefined ? await encryption.seal(clientId, text) : await encryption.reseal(clientId, text, stale);
      this.#stale.delete(clientId);
    } catch (thrown) {
      const error = toDomViaError(thrown);
      // Unreachable backend (devices, epochs): retried like the send itself; anything else fails the send.
      throw new RequestFailure(error, (error.code as string) === "network_error", undefined);
    }
    this.#sealed.set(clientId, envelope);
    return envelope;
  }

  /** How an encrypted message opened; undefined for plaintext rooms and pending sends. */
  #openedOf(message: ChatMessage): OpenResult | undefined {
    if (!this.#encrypted || message.message_id === null) return undefined;
    return this.#opened.get(message.message_id);
  }

  /** A message of the state as the app sees it (decrypted in encrypted rooms). */
  #toRow(message: ChatMessage): ChatMessage {
    return toChatMessage(message, this.#openedOf(message));
  }

  // ---- Live events --------------------------------------------------------

  #receive(event: ChannelEvent): void {
    if (this.#left || this.#status === "error") return;
    if (this.#buffer !== undefined) this.#buffer.push(event);
    else this.#dispatch(event);
  }

  #dispatch(event: ChannelEvent): void {
    const state = this.#state;
    if (state === undefined || this.#left) return;
    try {
      switch (event.kind) {
        case "created":
          if (!isObject(event.data)) return;
          if (this.#encryption !== undefined) this.#applyCreatedEncrypted(event.data);
          else this.#afterApply(state.applyCreated(event.data, Date.now()), true);
          return;
        case "receipt": {
          const data = event.data;
          if (!isObject(data) || typeof data.user_id !== "string" || typeof data.seq !== "number") return;
          if (!state.receiptReceived(data.user_id, data.seq)) return;
          this.#changed(true);
          if (data.user_id !== this.#myUserId) {
            const messageId = typeof data.message_id === "string" ? data.message_id : "";
            this.#receiptListeners.emit({ user_id: data.user_id, message_id: messageId, seq: data.seq });
          }
          return;
        }
        case "typing":
          if (event.userId === undefined || event.userId === this.#myUserId) return;
          state.typingReceived(event.userId, event.isTyping, Date.now());
          this.#syncTyping();
          return;
      }
    } catch (error) {
      // A malformed event the core refused: never break the room over it.
      console.warn("domvia-realtime-chat: ignored an event the room could not apply", error);
    }
  }

  /** Emits and schedules what applying messages changed. */
  #afterApply(applied: Applied, emit: boolean, followGap = true): void {
    if (applied.added.length > 0) this.#changed(true);
    if (emit) for (const message of applied.added) this.#messageListeners.emit(this.#toRow(message));
    // A message from someone typing ends their typing.
    if (applied.typing_stopped.length > 0) this.#syncTyping();
    this.#settleDeliveries();
    if (followGap && applied.catch_up_after !== undefined) this.#catchUp();
  }

  #onReconnected(): void {
    if (this.#left) return;
    if (this.#status === "loading") {
      this.#reconnectedWhileLoading = true;
      return;
    }
    if (this.#status !== "ready") return;
    // Re-send what is still on its way, now, with the same client ids.
    for (const clientId of this.#deliveries.keys()) void this.#attempt(clientId);
    if (this.#pendingReadSeq !== undefined) void this.#flushRead();
    this.#catchUp();
    void this.#reopenUnreachable().catch((error: unknown) => {
      console.warn("domvia-realtime-chat: unable to open the messages again", error);
    });
  }

  /** Fetches `after=<highest contiguous seq>` until `has_more` is false; one run at a time. */
  #catchUp(): void {
    if (this.#left || this.#status !== "ready") return;
    if (this.#catchingUp) {
      this.#catchUpAgain = true;
      return;
    }
    this.#catchingUp = true;
    clearTimeout(this.#catchUpTimer);
    this.#catchUpTimer = undefined;
    void this.#runCatchUp().finally(() => {
      this.#catchingUp = false;
    });
  }

  async #runCatchUp(): Promise<void> {
    try {
      do {
        this.#catchUpAgain = false;
        for (;;) {
          const state = this.#state;
          if (state === undefined || this.#left) return;
          const cursor = state.catchUpCursor;
          const page = await this.#backend.request<PageJson>(
            "catch up on messages",
            "GET",
            `${this.#path}/messages?after=${cursor}&limit=${CATCH_UP_PAGE_SIZE}`,
          );
          if (this.#left || this.#state === undefined) return;
          await this.#openAll(page.body.messages);
          if (this.#left || this.#state === undefined) return;
          this.#afterApply(this.#state.applyCatchUpPage(page.body.messages, page.body.has_more, Date.now()), true, false);
          if (!page.body.has_more || this.#state.catchUpCursor <= cursor) break;
        }
      } while (this.#catchUpAgain);
      this.#catchUpAttempt = 0;
    } catch (thrown) {
      if (this.#left) return;
      const failure = thrown instanceof RequestFailure ? thrown : undefined;
      if (failure?.retryable === true) {
        // Also retried at the next reconnect, whichever comes first.
        this.#catchUpAttempt += 1;
        this.#catchUpTimer = setTimeout(() => this.#catchUp(), backoffMs(this.#catchUpAttempt));
      } else {
        console.warn("domvia-realtime-chat: unable to catch up on messages", failureOf(thrown));
      }
    }
  }

  // ---- Sending ------------------------------------------------------------

  sendMessage(input: { text: string }): Promise<ChatMessage> {
    const text = typeof input?.text === "string" ? input.text : "";
    // When ready, the 'sending' message is in the snapshot before this returns.
    if (this.#status === "ready") return this.#beginSend(text);
    return this.#readyState("send a message").then(() => this.#beginSend(text));
  }

  #beginSend(text: string): Promise<ChatMessage> {
    const state = this.#state;
    if (state === undefined || this.#left) return Promise.reject(this.#leftError("send a message"));
    const clientId = newClientId();
    try {
      state.beginSend(clientId, text, Date.now());
    } catch (thrown) {
      return Promise.reject(toDomViaError(thrown));
    }
    this.#changed(true);
    // Sending a message ends typing.
    if (state.typingStop()) this.#triggerTyping(false, undefined);
    return this.#deliver(clientId);
  }

  retry(clientId: string): Promise<ChatMessage> {
    if (this.#status === "ready") return this.#beginRetry(clientId);
    return this.#readyState("retry a message").then(() => this.#beginRetry(clientId));
  }

  #beginRetry(clientId: string): Promise<ChatMessage> {
    const state = this.#state;
    if (state === undefined || this.#left) return Promise.reject(this.#leftError("retry a message"));
    try {
      state.retry(clientId);
    } catch (thrown) {
      return Promise.reject(toDomViaError(thrown));
    }
    this.#changed(true);
    return this.#deliver(clientId);
  }

  async #readyState(operation: string): Promise<RoomState> {
    if (this.#left) throw this.#leftError(operation);
    await this.#ready;
    if (this.#left || this.#state === undefined) throw this.#leftError(operation);
    return this.#state;
  }

  #leftError(operation: string): DomViaError {
    return chatError("room_left", `unable to ${operation}; the room was left`);
  }

  #deliver(clientId: string): Promise<ChatMessage> {
    let delivery = this.#deliveries.get(clientId);
    if (delivery === undefined) {
      delivery = { attempt: 0, staleRefusals: 0, timer: undefined, inFlight: false, waiters: [] };
      this.#deliveries.set(clientId, delivery);
    }
    const entry = delivery;
    const promise = new Promise<ChatMessage>((resolve, reject) => entry.waiters.push({ resolve, reject }));
    void this.#attempt(clientId);
    return promise;
  }

  #isPending(clientId: string): { client_id: string; text: string } | undefined {
    return this.#state?.pendingSends().find((pending) => pending.client_id === clientId);
  }

  async #attempt(clientId: string): Promise<void> {
    const delivery = this.#deliveries.get(clientId);
    if (delivery === undefined || delivery.inFlight || this.#left) return;
    clearTimeout(delivery.timer);
    delivery.timer = undefined;
    const pending = this.#isPending(clientId);
    if (pending === undefined) {
      this.#settleDeliveries();
      return;
    }
    delivery.inFlight = true;
    let stored: StoredMessageJson;
    try {
      const content =
        this.#encryption === undefined
          ? { text: pending.text }
          : { ciphertext: await this.#seal(clientId, pending.text) };
      if (this.#left) return;
      const answer = await this.#backend.request<StoredMessageJson>("send the message", "POST", `${this.#path}/messages`, {
        body: { client_id: clientId, ...content },
        socketId: this.#realtime.connection.socketId,
      });
      stored = answer.body;
    } catch (thrown) {
      delivery.inFlight = false;
      if (this.#left) return;
      if (thrown instanceof RequestFailure && thrown.retryable) {
        // Offline or the server failed: the same client id again later (and at the next reconnect).
        delivery.attempt += 1;
        delivery.timer = setTimeout(() => void this.#attempt(clientId), backoffMs(delivery.attempt));
        return;
      }
      const stale = this.#encryption === undefined ? undefined : staleEpochOf(thrown);
      if (stale !== undefined) {
        // The member devices changed since the envelope's epoch (or another
        // epoch is current): nothing was stored, so seal anew and send again.
        delivery.staleRefusals += 1;
        this.#sealed.delete(clientId);
        if (delivery.staleRefusals < EPOCH_STALE_ATTEMPTS) {
          this.#stale.set(clientId, stale);
          void this.#attempt(clientId);
          return;
        }
        this.#stale.delete(clientId);
      }
      this.#refuse(clientId, failureOf(thrown));
      return;
    }
    delivery.inFlight = false;
    if (this.#left || this.#state === undefined) return;
    // A catch-up or the live event may have confirmed it meanwhile; the state then has it already.
    if (this.#isPending(clientId) === undefined) {
      this.#settleDeliveries();
      return;
    }
    // My own message: its text is known, no need to open it.
    if (this.#encryption !== undefined && isObject(stored) && typeof stored.message_id === "string") {
      if (!this.#opened.has(stored.message_id)) this.#opened.set(stored.message_id, { ok: true, text: pending.text });
      this.#sealed.delete(clientId);
    }
    let applied: Applied;
    try {
      applied = this.#state.sendSucceeded(clientId, stored, Date.now());
    } catch (thrown) {
      // The core refused the answer (not this message, or malformed).
      this.#refuse(clientId, toDomViaError(thrown));
      return;
    }
    this.#afterApply(applied, true);
  }

  /** The send ends 'failed' (unless it was stored meanwhile) and its promises reject. */
  #refuse(clientId: string, error: DomViaError): void {
    const delivery = this.#deliveries.get(clientId);
    if (delivery === undefined) return;
    if (this.#isPending(clientId) === undefined) {
      // Stored meanwhile (by a catch-up or the live event): that wins.
      this.#settleDeliveries();
      if (!this.#deliveries.has(clientId)) return;
    } else {
      this.#state?.sendFailed(clientId);
      this.#changed(true);
    }
    clearTimeout(delivery.timer);
    this.#deliveries.delete(clientId);
    for (const waiter of delivery.waiters) waiter.reject(error);
  }

  /** Resolves the sends whose message the state now holds as stored. */
  #settleDeliveries(): void {
    if (this.#deliveries.size === 0 || this.#state === undefined) return;
    const pending = new Set(this.#state.pendingSends().map((entry) => entry.client_id));
    for (const [clientId, delivery] of this.#deliveries) {
      if (pending.has(clientId) || delivery.inFlight) continue;
      const message = this.#view().messages.find(
        (entry) => entry.client_id === clientId && entry.user_id === this.#myUserId && entry.status === "sent",
      );
      if (message === undefined) continue;
      clearTimeout(delivery.timer);
      this.#deliveries.delete(clientId);
      this.#sealed.delete(clientId);
      for (const waiter of delivery.waiters) waiter.resolve(message);
    }
  }

  // ---- History ------------------------------------------------------------

  loadOlder(): Promise<{ added: number; hasMore: boolean }> {
    this.#olderLoad ??= this.#loadOlder().finally(() => {
      this.#olderLoad = undefined;
    });
    return this.#olderLoad;
  }

  async #loadOlder(): Promise<{ added: number; hasMore: boolean }> {
    const state = await this.#readyState("load older messages");
    const before = state.olderCursor;
    if (before === undefined) return { added: 0, hasMore: false };
    let page: PageJson;
    try {
      page = (
        await this.#backend.request<PageJson>(
          "load older messages",
          "GET",
          `${this.#path}/messages?before=${before}&limit=${this.#pageSize}`,
        )
      ).body;
    } catch (thrown) {
      throw this.#left ? this.#leftError("load older messages") : failureOf(thrown);
    }
    if (this.#left || this.#state === undefined) throw this.#leftError("load older messages");
    await this.#openAll(page.messages);
    if (this.#left || this.#state === undefined) throw this.#leftError("load older messages");
    const applied = this.#state.applyOlderPage(page.messages, page.has_more, Date.now());
    this.#afterApply(applied, false);
    this.#changed(true);
    return { added: applied.added.length, hasMore: this.#state.olderCursor !== undefined };
  }

  get messages(): readonly ChatMessage[] {
    return this.getSnapshot().messages;
  }

  onMessage(listener: (message: ChatMessage) => void): Unsubscribe {
    return this.#messageListeners.add(listener);
  }

  // ---- Typing -------------------------------------------------------------

  sendTyping(input?: { user_id?: string }): void {
    const state = this.#state;
    if (state === undefined || this.#left || this.#status !== "ready") return;
    if (state.typingInput(Date.now())) this.#triggerTyping(true, input?.user_id);
  }

  stopTyping(): void {
    const state = this.#state;
    if (state === undefined || this.#left || this.#status !== "ready") return;
    if (state.typingStop()) this.#triggerTyping(false, undefined);
  }

  #triggerTyping(isTyping: boolean, userId: string | undefined): void {
    const channel = this.#presence ? this.#presenceChannel : this.#privateChannel;
    if (channel === undefined) return;
    const data = this.#presence
      ? { is_typing: isTyping }
      : { user_id: userId ?? this.#myUserId, is_typing: isTyping };
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

  /** Emits the difference between who was typing and who is, and arms the expiry timer. */
  #syncTyping(): void {
    const state = this.#state;
    if (state === undefined) return;
    const now = state.typingUsers();
    const before = this.#typingUserIds;
    const stopped = before.filter((id) => !now.includes(id));
    const started = now.filter((id) => !before.includes(id));
    if (stopped.length > 0 || started.length > 0) {
      this.#typingUserIds = Object.freeze([...now]);
      this.#changed(false);
      for (const id of stopped) this.#typingListeners.emit({ user_id: id, is_typing: false });
      for (const id of started) this.#typingListeners.emit({ user_id: id, is_typing: true });
    }
    this.#armTypingExpiry();
  }

  /**
   * Keeps one timer at the earliest typing deadline. A typist's deadline only
   * moves later, so most events leave the armed timer alone (re-arming on
   * every event made setTimeout the biggest cost of a busy room); a timer that
   * fires early finds nothing expired and arms for the next deadline.
   */
  #armTypingExpiry(): void {
    const deadline = this.#left ? undefined : this.#state?.nextTypingDeadline;
    if (deadline === undefined) {
      clearTimeout(this.#typingTimer);
      this.#typingTimer = this.#typingTimerAt = undefined;
      return;
    }
    if (this.#typingTimer !== undefined && this.#typingTimerAt !== undefined && this.#typingTimerAt <= deadline) return;
    clearTimeout(this.#typingTimer);
    this.#typingTimerAt = deadline;
    this.#typingTimer = setTimeout(() => {
      this.#typingTimer = this.#typingTimerAt = undefined;
      if (this.#left || this.#state === undefined) return;
      this.#state.expireTyping(Date.now());
      this.#syncTyping();
    }, Math.max(0, deadline - Date.now()) + 1);
  }

  // ---- Reads --------------------------------------------------------------

  markRead(messageId: string): void {
    const state = this.#state;
    if (state === undefined || this.#left || this.#status !== "ready") return;
    const seq = state.markRead(messageId);
    if (seq === undefined) return;
    this.#changed(true);
    this.#pendingReadSeq = Math.max(this.#pendingReadSeq ?? 0, seq);
    clearTimeout(this.#readTimer);
    this.#readTimer = setTimeout(() => {
      this.#readTimer = undefined;
      void this.#flushRead();
    }, READ_DEBOUNCE_MS);
  }

  async #flushRead(keepalive = false): Promise<void> {
    const seq = this.#pendingReadSeq;
    if (seq === undefined || this.#readInFlight) return;
    this.#readInFlight = true;
    try {
      await this.#backend.request("mark the room read", "POST", `${this.#path}/read`, {
        body: { seq },
        socketId: this.#realtime.connection.socketId,
        keepalive,
      });
      this.#readAttempt = 0;
      if (this.#pendingReadSeq === seq) this.#pendingReadSeq = undefined;
    } catch (thrown) {
      if (thrown instanceof RequestFailure && thrown.retryable && !this.#left) {
        this.#readAttempt += 1;
        clearTimeout(this.#readTimer);
        this.#readTimer = setTimeout(() => void this.#flushRead(), backoffMs(this.#readAttempt));
      } else if (this.#pendingReadSeq === seq) {
        this.#pendingReadSeq = undefined;
      }
    } finally {
      this.#readInFlight = false;
    }
    // A newer position arrived while this one was on its way.
    if (!this.#left && this.#pendingReadSeq !== undefined && this.#pendingReadSeq > seq && this.#readTimer === undefined) {
      void this.#flushRead();
    }
  }

  onReadReceipt(listener: (event: ReadReceiptEvent) => void): Unsubscribe {
    return this.#receiptListeners.add(listener);
  }

  get unreadCount(): number {
    return this.getSnapshot().unreadCount;
  }

  // ---- Presence -----------------------------------------------------------

  get members(): readonly ChatMember[] {
    return this.getSnapshot().members;
  }

  onPresence(listener: (event: PresenceEvent) => void): Unsubscribe {
    return this.#presenceListeners.add(listener);
  }

  #memberChanged(type: "joined" | "left", member: Member): void {
    if (this.#left || !isObject(member) || typeof member.id !== "string") return;
    const entry = toMember(member);
    const present = this.#members.some((known) => known.user_id === entry.user_id);
    if (type === "joined" && !present) this.#members = Object.freeze([...this.#members, entry]);
    else if (type === "left" && present) this.#members = Object.freeze(this.#members.filter((known) => known.user_id !== entry.user_id));
    else return;
    this.#changed(false);
    this.#presenceListeners.emit({ type, user_id: entry.user_id, name: entry.name });
  }

  /** Reads the member list after a (re)subscription; `emit` reports who came and went meanwhile. */
  #refreshMembers(emit: boolean): void {
    const members = this.#presenceChannel?.members;
    if (members === undefined || this.#left) return;
    const next: ChatMember[] = [];
    members.each((member) => next.push(toMember(member)));
    const before = this.#members;
    const left = before.filter((known) => !next.some((entry) => entry.user_id === known.user_id));
    const joined = next.filter((entry) => !before.some((known) => known.user_id === entry.user_id));
    if (left.length === 0 && joined.length === 0) return;
    this.#members = Object.freeze(next);
    this.#changed(false);
    if (!emit) return;
    for (const entry of left) this.#presenceListeners.emit({ type: "left", user_id: entry.user_id, name: entry.name });
    for (const entry of joined) this.#presenceListeners.emit({ type: "joined", user_id: entry.user_id, name: entry.name });
  }

  // ---- The store ------------------------------------------------------------

  subscribe(listener: () => void): Unsubscribe {
    return this.#storeListeners.add(listener);
  }

  getSnapshot(): ChatRoomSnapshot {
    if (this.#snapshot !== undefined) return this.#snapshot;
    const view = this.#view();
    const snapshot: ChatRoomSnapshot = {
      roomId: this.roomId,
      status: this.#status,
      ...(this.#error === undefined ? {} : { error: Object.freeze({ ...this.#error }) }),
      connection: this.#connectionState(),
      messages: view.messages,
      hasOlder: view.hasOlder,
      typingUserIds: this.#typingUserIds,
      members: this.#members,
      unreadCount: view.unread,
      readPositions: view.readPositions,
    };
    this.#snapshot = Object.freeze(snapshot);
    return this.#snapshot;
  }

  #connectionState(): ConnectionState {
    return this.#realtime.connection.state;
  }

  /** The state-derived part of the view, recomputed only after a change; unchanged rows keep their objects. */
  #view(): {
    messages: readonly ChatMessage[];
    unread: number;
    hasOlder: boolean;
    readPositions: Readonly<Record<string, number>>;
  } {
    const state = this.#state;
    if (this.#viewDirty && state !== undefined) {
      this.#viewDirty = false;
      const rows = new Map<string, ChatMessage>();
      const messages: ChatMessage[] = [];
      for (const message of state.messages()) {
        const key = message.message_id ?? `pending:${message.client_id}`;
        const known = this.#rows.get(key);
        const opened = this.#openedOf(message);
        const row = known !== undefined && showsSame(known, message, opened) ? known : toChatMessage(message, opened);
        rows.set(key, row);
        messages.push(row);
      }
      this.#rows = rows;
      this.#viewMessages = Object.freeze(messages);
      this.#viewUnread = state.unreadCount;
      this.#viewHasOlder = state.olderCursor !== undefined;
      this.#viewReadPositions = Object.freeze(state.readPositions());
    }
    return {
      messages: this.#viewMessages,
      unread: this.#viewUnread,
      hasOlder: this.#viewHasOlder,
      readPositions: this.#viewReadPositions,
    };
  }

  /** Something changed: a new snapshot on the next read, and one notification per microtask. */
  #changed(stateChanged: boolean): void {
    if (stateChanged) this.#viewDirty = true;
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
    const state = this.#state;
    if (state !== undefined && this.#status === "ready") {
      try {
        if (state.typingStop()) this.#triggerTyping(false, undefined);
      } catch {
        // Leaving goes on.
      }
    }
    // Keep the last view for the final snapshot before the state is freed.
    this.#view();
    this.#left = true;
    clearTimeout(this.#typingTimer);
    clearTimeout(this.#readTimer);
    clearTimeout(this.#catchUpTimer);
    clearTimeout(this.#loadTimer);
    this.#typingTimer = this.#typingTimerAt = this.#readTimer = this.#catchUpTimer = this.#loadTimer = undefined;
    // The last read position still reaches the backend, even as the page goes away.
    if (this.#pendingReadSeq !== undefined && !this.#readInFlight) void this.#flushRead(true);
    this.#backend.close();
    this.#encryption?.close();
    this.#encryption = undefined;
    this.#sealed.clear();
    this.#stale.clear();
    this.#keyChangeListeners.clear();

    for (const cleanup of this.#cleanups.splice(0)) cleanup();
    for (const name of this.#ownedChannels.splice(0)) this.#realtime.unsubscribe(name);
    this.#privateChannel = this.#presenceChannel = undefined;

    const left = this.#leftError("finish");
    for (const delivery of this.#deliveries.values()) {
      clearTimeout(delivery.timer);
      for (const waiter of delivery.waiters) waiter.reject(left);
    }
    this.#deliveries.clear();
    this.#settleReady?.reject(chatError("room_left", "unable to get the room ready; the room was left"));
    this.#settleReady = undefined;

    this.#state = undefined;
    state?.free();
    this.#buffer = undefined;
    this.#status = "left";
    this.#typingUserIds = EMPTY;
    this.#messageListeners.clear();
    this.#typingListeners.clear();
    this.#receiptListeners.clear();
    this.#presenceListeners.clear();
    this.#changed(false);
  }
}
