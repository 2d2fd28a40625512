/**
 * The public types of `@domvia/realtime-chat`. Event and message fields are
 * snake_case, exactly as the backend's JSON and the documented events name them.
 */
import type { ConnectionState, Unsubscribe, WasmSource } from "@domvia/realtime";

export type { Unsubscribe } from "@domvia/realtime";

/** Where a message is on its way: yours start `sending`; stored ones are `sent`. */
export type DeliveryStatus = "sending" | "sent" | "failed";

/**
 * One message of a room. A stored message has its `message_id` and `seq`; your
 * own pending one (`sending` or `failed`) has `null` for both and `sent_at` is
 * the local send time.
 */
export interface ChatMessage {
  readonly message_id: string | null;
  readonly room_id: string;
  readonly seq: number | null;
  readonly user_id: string;
  readonly text: string | null;
  /** An end-to-end encrypted message's opaque payload (encrypted rooms only). */
  readonly ciphertext?: Readonly<Record<string, unknown>>;
  /**
   * Encrypted rooms: why this message could not be decrypted (`text` is then
   * null), for example `e2ee_unknown_epoch` or `share_not_found` (no key for
   * this device: sent before it joined, or after it was removed),
   * `e2ee_bad_signature`, `e2ee_wrong_sender`, or `e2ee_not_encrypted` (a
   * plaintext message in an encrypted room: not shown, it cannot be authenticated).
   */
  readonly decryption_error?: { readonly code: string; readonly message: string };
  readonly sent_at: number;
  /** The sender's idempotency key (`c-` + 32 hex for messages sent by this SDK). */
  readonly client_id: string;
  readonly status: DeliveryStatus;
}

/** A user online in the room (presence rooms only). */
export interface ChatMember {
  readonly user_id: string;
  /** The name the app server put in the presence `user_info`, if any. */
  readonly name: string | null;
}

/** A user started or stopped typing (including when their typing expired). */
export interface TypingEvent {
  user_id: string;
  is_typing: boolean;
  /**
   * The broker stamped who sent it (presence rooms on a broker that stamps
   * client events, such as the embedded one and Pusher). False when only
   * the signal's own `user_id` says who typed: private rooms, and presence
   * rooms on brokers that do not stamp (sockudo 5.2); any member of the
   * room could have sent such a signal in another member's name.
   */
  verified: boolean;
}

/** Another member's read position moved forward. */
export interface ReadReceiptEvent {
  user_id: string;
  message_id: string;
  seq: number;
}

/** Someone came online in, or left, a presence room. */
export interface PresenceEvent {
  type: "joined" | "left";
  user_id: string;
  name: string | null;
}

/** How the room reaches the backend's HTTP API. */
export interface ChatApiOptions {
  /** Prefix of every request, for example `https://api.example.com`. Default `""` (same origin). */
  baseUrl?: string;
  /** Extra headers of every request. */
  headers?: Record<string, string>;
  /** Called before every request, for tokens that expire (for example `Authorization: Bearer ...`). */
  headersProvider?: () => Promise<Record<string, string>>;
  /** `fetch`'s credentials mode. Default `same-origin` (the session cookie on the same origin only). */
  credentials?: RequestCredentials;
}

/** Options of {@link createChatRoom}. */
export interface ChatRoomOptions {
  /** The backend's room id. */
  roomId: string;
  /** The room's private channel, `buildChatChannelName(roomId)`. */
  channelName: string;
  /** Also join the presence channel: online members, and typing stamped by the broker. Default false. */
  presence?: boolean;
  /**
   * End-to-end encrypt message content (docs/e2ee.md). The room loads
   * `@domvia/realtime-e2ee` on demand (install it; the room fails with
   * `encryption_unavailable` when it cannot be loaded). Must match the room:
   * a backend that says whether a room is encrypted (the reference backend's
   * Room `encrypted`) makes a mismatch fail with `room_encryption_mismatch`.
   * Default false.
   */
  encrypted?: boolean;
  /**
   * Encrypted rooms: where to load the E2EE `.wasm` from, when the bundler
   * does not copy `@domvia/realtime-e2ee/wasm/domvia_e2ee_bg.wasm` by itself
   * (see `wasm` of `DomViaRealtime.create`).
   */
  encryptionWasm?: WasmSource;
  api?: ChatApiOptions;
  typing?: {
    /** Send `is_typing: true` at most once per this many ms while typing. Default 3000. */
    throttleMs?: number;
    /** Others count as typing for this long after their last signal. Default 5000. */
    timeoutMs?: number;
  };
  /** Messages per history request (1-100). Default 50. */
  historyPageSize?: number;
  /**
   * A room that heard no message for this many ms asks the backend whether
   * it missed one (a broker can drop an event without dropping the
   * connection; nothing else would reveal it in a quiet room). A missed
   * message shows at most this long after it was sent. One request per quiet
   * period; a busy room never asks. Default 60000; 0 turns it off.
   */
  tailCheckMs?: number;
  /** Your user id; default: asked from `GET /api/session`. */
  userId?: string;
}

/** What a room is doing. */
export type ChatRoomStatus = "loading" | "ready" | "error" | "left";

/**
 * Everything a view needs, as one immutable object: the same object until
 * something changed, so it works with React's `useSyncExternalStore`.
 */
export interface ChatRoomSnapshot {
  readonly roomId: string;
  readonly status: ChatRoomStatus;
  /** Why the room is in `error`. */
  readonly error?: { readonly code: string; readonly message: string };
  readonly connection: ConnectionState;
  /** Stored messages ascending by seq, then your pending ones in send order. */
  readonly messages: readonly ChatMessage[];
  /** Older history can be loaded with `loadOlder()`. */
  readonly hasOlder: boolean;
  /** Who is typing now, never yourself. */
  readonly typingUserIds: readonly string[];
  /** Who is online (presence rooms). */
  readonly members: readonly ChatMember[];
  /** Messages after your read position that others sent. */
  readonly unreadCount: number;
  /** Every member's read position (seq), by user id. */
  readonly readPositions: Readonly<Record<string, number>>;
}

/** One chat room: create it with {@link createChatRoom}; release it with `leave()`. */
export interface ChatRoom {
  readonly roomId: string;
  /**
   * Resolves once the room is subscribed and its latest history is loaded.
   * Rejects with `room_access_denied` when you may not access the room (the
   * backend answered 403/404 or the broker refused the subscription), with
   * `room_encryption_mismatch` when `encrypted` does not match the room, or
   * with the backend's code (for example `not_signed_in`).
   */
  waitUntilReady(): Promise<void>;
  /**
   * Calls `listener` once per stored message new to this room after it is ready:
   * live, caught up after a reconnect or gap, and your own once stored. Not for
   * the initial history page or `loadOlder()` pages (they are in `messages`).
   */
  onMessage(listener: (message: ChatMessage) => void): Unsubscribe;
  /**
   * Sends a message: it appears at once as `sending`, and the promise resolves
   * with the stored message (`sent`). Network failures are retried (same
   * `client_id`, so it arrives once) until it is stored. Rejects only when it
   * ends `failed`: `invalid_text`, `text_too_large` at once, or the backend's
   * code for a refused request (for example `not_a_member`); or `room_left`.
   */
  sendMessage(input: { text: string }): Promise<ChatMessage>;
  /** Sends a `failed` message again. Rejects with `unknown_client_id` unless it failed. */
  retry(clientId: string): Promise<ChatMessage>;
  /** Loads the page of history before the oldest message loaded. */
  loadOlder(): Promise<{ added: number; hasMore: boolean }>;
  readonly messages: readonly ChatMessage[];
  /**
   * Signals that you are typing (throttled: call it on every keystroke). On
   * presence rooms your identity comes from the broker and `user_id` is ignored.
   */
  sendTyping(input?: { user_id?: string }): void;
  /** Signals that you stopped typing, if you had signalled typing. */
  stopTyping(): void;
  onTyping(listener: (event: TypingEvent) => void): Unsubscribe;
  /** Moves your read position to this message (the backend is told, debounced). */
  markRead(messageId: string): void;
  onReadReceipt(listener: (event: ReadReceiptEvent) => void): Unsubscribe;
  readonly unreadCount: number;
  /** Who is online (presence rooms; empty otherwise). */
  readonly members: readonly ChatMember[];
  onPresence(listener: (event: PresenceEvent) => void): Unsubscribe;
  /** Calls `listener` after changes, at most once per microtask (for `useSyncExternalStore`). */
  subscribe(listener: () => void): Unsubscribe;
  getSnapshot(): ChatRoomSnapshot;
  /** Unsubscribes, stops every timer and request. Idempotent. */
  leave(): void;
  /** End-to-end encryption of an `encrypted: true` room; undefined otherwise. */
  readonly encryption: ChatRoomEncryption | undefined;
}

/** A known device of a room member presented new keys. */
export interface DeviceKeyChangeEvent {
  user_id: string;
  device_id: string;
}

/** Verification and key changes of an encrypted room (`room.encryption`). */
export interface ChatRoomEncryption {
  /** This device's fingerprint (`6bed 5f2b 16e6 f6ae 9362`), once the room is ready. */
  readonly fingerprint: string | undefined;
  /**
   * Called when a known device of a member presents new keys. Sends then fail
   * with `e2ee_device_key_changed` until you accept the change (after
   * comparing the safety number out of band).
   */
  onKeyChange(listener: (event: DeviceKeyChangeEvent) => void): Unsubscribe;
  /** Accepts the new keys of a device reported by `onKeyChange`; then `retry()` the failed sends. */
  acceptDeviceChange(userId: string, deviceId: string): Promise<void>;
  /** The safety number of this device with each of `userId`'s devices in the room (the same on both sides). */
  safetyNumber(userId: string): Promise<{ device_id: string; safety_number: string }[]>;
}

/**
 * The contract with `@domvia/realtime-e2ee` (which implements it): declared
 * here so this package never depends on it at compile time; it is loaded with
 * a dynamic `import()` only for encrypted rooms.
 */
export interface RoomEncryptionContext {
  readonly roomId: string;
  readonly userId: string;
  /** Where to load the E2EE `.wasm` from (`ChatRoomOptions.encryptionWasm`); undefined: beside the package. */
  readonly wasm?: WasmSource | undefined;
  /** The room's backend client; rejects with a `DomViaError` with the backend's code, or `network_error`. */
  request<T>(
    operation: string,
    method: "GET" | "POST" | "PUT",
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: T }>;
}

/** The outcome of opening one stored message. */
export type OpenResult = { ok: true; text: string } | { ok: false; code: string; message: string };

/** The backend's `409 epoch_stale` answer to an encrypted send: the room's current epoch, and whether it must be replaced. */
export interface StaleEpoch {
  readonly current_epoch: number;
  readonly needs_new_epoch: boolean;
}

/** One room's encryption, as `@domvia/realtime-e2ee` implements it. */
export interface RoomEncryption {
  prepare(): Promise<void>;
  seal(clientId: string, text: string): Promise<object>;
  /** Seals `clientId` anew after its envelope was refused with `epoch_stale` (a new epoch when `needs_new_epoch`). */
  reseal(clientId: string, text: string, stale: StaleEpoch): Promise<object>;
  open(message: {
    message_id: string;
    user_id: string;
    client_id: string;
    sent_at: number;
    ciphertext: object;
  }): Promise<OpenResult>;
  roomEvent(event: "epoch.created" | "member.added" | "member.removed", data: unknown): void;
  readonly fingerprint: string | undefined;
  onKeyChange(listener: (change: DeviceKeyChangeEvent) => void): Unsubscribe;
  acceptDeviceChange(userId: string, deviceId: string): Promise<void>;
  safetyNumber(userId: string): Promise<{ device_id: string; safety_number: string }[]>;
  close(): void;
}

/** What `import("@domvia/realtime-e2ee")` provides. */
export interface RoomEncryptionModule {
  openRoomEncryption(context: RoomEncryptionContext): RoomEncryption;
}

/**
 * The codes `@domvia/realtime-chat` adds to the core's: besides these, a
 * refused backend request rejects with the backend's own code (API.md).
 */
export type ChatErrorCode =
  | "room_access_denied"
  | "room_encryption_mismatch"
  | "room_left"
  | "encryption_unavailable"
  | "network_error"
  | "invalid_response"
  | "invalid_text"
  | "text_too_large"
  | "unknown_client_id"
  | "epoch_stale";
