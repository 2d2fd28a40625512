/**
 * The bridge between an encrypted room's session and `@domvia/realtime-e2ee`:
 * loads that package on demand, and carries the session's `prepare_encryption`,
 * `seal` and `open` requests to it and its answers back. No policy: what to
 * seal, when to reseal, what an opening means for the room are the session's.
 */
import type { WasmSource } from "@domvia/realtime";
import type { ChatRoomSession, ChatRoomSessionAction } from "@domvia/realtime/core";
import { Listeners, toDomViaError } from "@domvia/realtime/core";
import { type BackendClient, chatError, RequestFailure } from "./backend.js";
import type { ChatRoomEncryption, DeviceKeyChangeEvent, RoomEncryption, RoomEncryptionModule } from "./types.js";

/** Feeds the room's session one input and carries out what it asks for. */
export type Feed = (input: (session: ChatRoomSession) => void) => void;

/** The room events that may change an encrypted room's member devices. */
export const ENCRYPTION_EVENTS = ["epoch.created", "member.added", "member.removed"] as const;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Loads `@domvia/realtime-e2ee` on demand: a bare dynamic import, so bundlers
 * split it out and apps that never encrypt never load it.
 */
async function loadEncryption(): Promise<RoomEncryptionModule> {
  let loaded: unknown;
  try {
    // Not ts-expect-error: that fails once @domvia/realtime-e2ee's dist/ exists (the build order makes it so); the types this package uses are in types.ts.
    // biome-ignore lint/suspicious/noTsIgnore: resolved at run time only, and present or not at compile time depending on the build order.
    // @ts-ignore -- resolved at run time only
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

export class EncryptionBridge {
  readonly #roomId: string;
  readonly #wasm: WasmSource | undefined;
  readonly #backend: BackendClient;
  readonly #feed: Feed;
  #encryption: RoomEncryption | undefined;
  #closed = false;
  readonly #keyChangeListeners = new Listeners<[DeviceKeyChangeEvent]>();
  #unbindKeyChange: (() => void) | undefined;

  constructor(roomId: string, wasm: WasmSource | undefined, backend: BackendClient, feed: Feed) {
    this.#roomId = roomId;
    this.#wasm = wasm;
    this.#backend = backend;
    this.#feed = feed;
  }

  /** `room.encryption`: usable before the room is ready (`awaitReady` rejects once the room is left). */
  api(awaitReady: (operation: string) => Promise<void>): ChatRoomEncryption {
    const bridge = this;
    const opened = async (operation: string): Promise<RoomEncryption> => {
      await awaitReady(operation);
      if (bridge.#encryption === undefined) throw chatError("room_left", `unable to ${operation}; the room was left`);
      return bridge.#encryption;
    };
    return Object.freeze({
      get fingerprint(): string | undefined {
        return bridge.#encryption?.fingerprint;
      },
      onKeyChange: (listener: (event: DeviceKeyChangeEvent) => void) => this.#keyChangeListeners.add(listener),
      acceptDeviceChange: async (userId: string, deviceId: string) =>
        (await opened("accept a device change")).acceptDeviceChange(userId, deviceId),
      safetyNumber: async (userId: string) => (await opened("compute safety numbers")).safetyNumber(userId),
    });
  }

  /** Carries out one of the session's encryption actions. */
  perform(action: Extract<ChatRoomSessionAction, { type: "prepare_encryption" | "seal" | "open" }>): void {
    if (action.type === "prepare_encryption") void this.#prepare(action.user_id);
    else if (action.type === "seal") void this.#seal(action.client_id, action.text, action.stale);
    else void this.#open(action.message);
  }

  /** A room event that may change the member devices. */
  roomEvent(event: (typeof ENCRYPTION_EVENTS)[number], data: unknown): void {
    this.#encryption?.roomEvent(event, data);
  }

  /** Loads @domvia/realtime-e2ee once, then this device and the room's keys. */
  async #prepare(userId: string): Promise<void> {
    try {
      if (this.#encryption === undefined) {
        const module = await loadEncryption();
        if (this.#closed) return;
        const encryption = module.openRoomEncryption({
          roomId: this.#roomId,
          userId,
          wasm: this.#wasm,
          request: (operation, method, path, body) => this.#request(operation, method, path, body),
        });
        this.#encryption = encryption;
        this.#unbindKeyChange = encryption.onKeyChange((change) => this.#keyChangeListeners.emit(change));
      }
      await this.#encryption.prepare();
      this.#feed((session) => session.encryptionPrepared());
    } catch (thrown) {
      const error = toDomViaError(thrown);
      this.#feed((session) => session.encryptionFailed(error.code, error.message));
    }
  }

  /** The room's backend client for the encryption: a refusal is the backend's code, an outage `network_error`. */
  async #request<T>(
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
      throw thrown instanceof RequestFailure ? thrown.error : toDomViaError(thrown);
    }
  }

  async #seal(clientId: string, text: string, stale: { current_epoch: number; needs_new_epoch: boolean } | undefined): Promise<void> {
    const encryption = this.#encryption;
    if (encryption === undefined) return;
    try {
      const envelope = stale === undefined ? await encryption.seal(clientId, text) : await encryption.reseal(clientId, text, stale);
      this.#feed((session) => session.sealed(clientId, JSON.stringify(envelope)));
    } catch (thrown) {
      const error = toDomViaError(thrown);
      this.#feed((session) => session.sealFailed(clientId, error.code, error.message));
    }
  }

  async #open(message: Extract<ChatRoomSessionAction, { type: "open" }>["message"]): Promise<void> {
    const encryption = this.#encryption;
    if (encryption === undefined) return;
    const result = await encryption.open(message).catch((thrown: unknown) => {
      const error = toDomViaError(thrown);
      return { ok: false as const, code: error.code, message: error.message };
    });
    this.#feed((session) =>
      result.ok
        ? session.opened(message.message_id, result.text, "", "", Date.now())
        : session.opened(message.message_id, undefined, result.code, result.message, Date.now()),
    );
  }

  close(): void {
    this.#closed = true;
    this.#unbindKeyChange?.();
    this.#encryption?.close();
    this.#encryption = undefined;
    this.#keyChangeListeners.clear();
  }
}
