/**
 * The contract between `@domvia/realtime-chat` and this package. The chat
 * package declares the same shapes in its own types (it never imports this
 * package at compile time: it loads it with a dynamic `import()` only for
 * encrypted rooms), so the two must stay structurally equal.
 */
import type { Unsubscribe, WasmSource } from "@domvia/realtime";

export type { Unsubscribe } from "@domvia/realtime";

/** What a chat room gives its encryption: who, where, and its backend client. */
export interface RoomEncryptionContext {
  readonly roomId: string;
  /** The signed-in user (the backend's `u_...` id). */
  readonly userId: string;
  /** Where to load the E2EE `.wasm` from (the room's `encryptionWasm`); undefined: beside this package. */
  readonly wasm?: WasmSource | undefined;
  /**
   * The chat room's backend client (same base URL, headers and credentials).
   * Rejects with a `DomViaError` whose `code` is the backend's
   * (`epoch_conflict`, `share_not_found`, ...) or `network_error` when the
   * backend is unreachable or failing (a 5xx or 429).
   */
  request<T>(
    operation: string,
    method: "GET" | "POST" | "PUT",
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: T }>;
}

/** A stored message as the chat room hands it over to be opened. */
export interface EncryptedMessage {
  /** The backend's id (`m_...`). */
  readonly message_id: string;
  /** The sender, stamped by the backend from the session. */
  readonly user_id: string;
  /** The sender's idempotency key: the envelope's `message_id`. */
  readonly client_id: string;
  /** Server time, ms. */
  readonly sent_at: number;
  /** The envelope. */
  readonly ciphertext: object;
}

/** The outcome of opening one message: its text, or why it could not be read. */
export type OpenResult = { ok: true; text: string } | { ok: false; code: string; message: string };

/**
 * The backend's `409 epoch_stale` answer to a send (API.md): the room's
 * current epoch, and whether it predates the current member devices (so a new
 * epoch must be created) or only the refused envelope's epoch was not it.
 */
export interface StaleEpoch {
  readonly current_epoch: number;
  readonly needs_new_epoch: boolean;
}

/** A known device presented new keys: sends fail with `e2ee_device_key_changed` until accepted. */
export interface DeviceKeyChange {
  user_id: string;
  device_id: string;
}

/** The safety number of this device with one of another user's devices. */
export interface DeviceSafetyNumber {
  device_id: string;
  /** 30 digits in six groups, the same on both devices. */
  safety_number: string;
}

/** One room's end-to-end encryption, as a chat room drives it. */
export interface RoomEncryption {
  /** Loads or creates this browser's device (IndexedDB), registers its record, loads the room's keys. */
  prepare(): Promise<void>;
  /**
   * Seals text as the envelope of the message `clientId`, first creating an
   * epoch when the room's member devices changed. Rejects with
   * `e2ee_device_key_changed` while a member device's key change is not
   * accepted, `network_error` when the backend is unreachable (retry later),
   * or another `e2ee_*` or backend code.
   */
  seal(clientId: string, text: string): Promise<object>;
  /**
   * Seals text anew as the envelope of the message `clientId` after the
   * backend refused its envelope with `409 epoch_stale` (nothing was stored):
   * re-reads the member devices and uses an epoch at least as new as the
   * answer requires, creating one when `needs_new_epoch`. Rejects like `seal`.
   */
  reseal(clientId: string, text: string, stale: StaleEpoch): Promise<object>;
  /** Opens a stored message's envelope; never rejects. */
  open(message: EncryptedMessage): Promise<OpenResult>;
  /** A room event from the private channel that may change the member devices. */
  roomEvent(event: "epoch.created" | "member.added" | "member.removed", data: unknown): void;
  /** This device's fingerprint (20 hex digits in groups of four), once prepared. */
  readonly fingerprint: string | undefined;
  /** Calls `listener` when a known device of a room member presents new keys. */
  onKeyChange(listener: (change: DeviceKeyChange) => void): Unsubscribe;
  /** Accepts (pins) the new keys of a device reported by `onKeyChange`. */
  acceptDeviceChange(userId: string, deviceId: string): Promise<void>;
  /** The safety numbers of this device with each of `userId`'s devices in the room. */
  safetyNumber(userId: string): Promise<DeviceSafetyNumber[]>;
  /** Stops using the room's keys (in memory; the stored state stays). Idempotent. */
  close(): void;
}

/**
 * Codes this package adds: besides these, the wasm core's `e2ee_*` codes
 * (docs/e2ee.md) and the backend's codes pass through.
 */
export type E2eeErrorCode =
  | "e2ee_storage_unavailable"
  | "e2ee_epoch_failed"
  | "e2ee_share_unavailable"
  | "e2ee_not_encrypted"
  | "e2ee_wrong_sender"
  | "e2ee_device_key_changed"
  | "e2ee_closed";
