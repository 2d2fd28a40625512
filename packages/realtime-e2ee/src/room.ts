/**
 * One room's end-to-end encryption: a pump for the wasm `E2eeRoomSession`,
 * which holds the room's policy (src/e2ee/session.rs: when to read the member
 * devices, when to install or create an epoch and how often to retry, what
 * `epoch_stale` requires, sender binding, replay verdicts, key changes).
 *
 * This class only carries out what the session asks for and feeds back the
 * outcome: HTTP requests through the chat room's backend client, the user's
 * cross-tab lock (lock.ts), the stored room state and pinned devices and the
 * replay ledger in IndexedDB (store.ts). Each user call is an operation of
 * the session; its outcome arrives as an action with the operation's id.
 */
import { Listeners } from "@domvia/realtime/core";
import { callCore, E2eeRoomSession, ready } from "./runtime.js";
import type { E2eeSessionAction } from "./runtime.js";
import { LocalDevice } from "./device.js";
import { asError, e2eeError, sessionError } from "./errors.js";
import { acquireLock } from "./lock.js";
import type {
  DeviceKeyChange,
  DeviceSafetyNumber,
  EncryptedMessage,
  OpenResult,
  RoomEncryption,
  RoomEncryptionContext,
  StaleEpoch,
  Unsubscribe,
} from "./types.js";

/** The stored pinned devices of the user (shared by the user's rooms). */
const KNOWN_ENTRY = "known_devices";

/** The action that ends an operation. */
type Outcome = Extract<E2eeSessionAction, { op: number }>;

function closedError(operation: string): Error {
  return e2eeError("e2ee_closed", `unable to ${operation}; the room was left or prepare() has not finished`);
}

/** The default {@link RoomEncryption}. */
export class DefaultRoomEncryption implements RoomEncryption {
  readonly #context: RoomEncryptionContext;
  readonly #entry: string;
  #device: LocalDevice | undefined;
  #session: E2eeRoomSession | undefined;
  /** The write counters of the stored entries the session matches (0: none stored). */
  #roomRev = 0;
  #knownRev = 0;
  /** The lock while the session holds it (or is taking it): resolves with its release. */
  #lock: Promise<() => void> | undefined;
  readonly #outcomes = new Map<number, (outcome: Outcome) => void>();
  readonly #keyListeners = new Listeners<[DeviceKeyChange]>();
  #pumping = false;
  #closed = false;

  constructor(context: RoomEncryptionContext) {
    this.#context = context;
    this.#entry = `room:${context.roomId}`;
  }

  async prepare(): Promise<void> {
    await ready(this.#context.wasm);
    const device = await LocalDevice.load(this.#context.userId);
    this.#device = device;
    await device.register(this.#context.request);
    if (this.#closed) throw closedError("prepare the room's keys");
    this.#session = callCore("start the room's encryption", () => new E2eeRoomSession(this.#context.roomId, device.keys));
    const joined = await this.#run((session, now) => session.join(now));
    if (joined.type === "failed") throw sessionError(joined.code, joined.message);
  }

  get fingerprint(): string | undefined {
    return this.#device?.fingerprint;
  }

  // ---- Operations ---------------------------------------------------------------

  /** Starts an operation of the session and resolves with its outcome. */
  #run(start: (session: E2eeRoomSession, now: number) => number): Promise<Outcome> {
    const session = this.#session;
    if (session === undefined || this.#closed) return Promise.reject(closedError("use the room's keys"));
    // Throws e2ee_closed once clearEncryptionState() forgot the device.
    void this.#device?.keys;
    const op = start(session, Date.now());
    const outcome = new Promise<Outcome>((resolve) => this.#outcomes.set(op, resolve));
    this.#pump();
    return outcome;
  }

  static #sealed(outcome: Outcome): object {
    if (outcome.type === "sealed") return outcome.envelope;
    if (outcome.type === "failed") throw sessionError(outcome.code, outcome.message);
    throw e2eeError("e2ee_malformed", `unable to encrypt the message; unexpected outcome ${outcome.type}`);
  }

  async seal(clientId: string, text: string): Promise<object> {
    return DefaultRoomEncryption.#sealed(await this.#run((session, now) => session.seal(now, clientId, text)));
  }

  async reseal(clientId: string, text: string, stale: StaleEpoch): Promise<object> {
    const current = Number.isSafeInteger(stale.current_epoch) ? Math.max(0, stale.current_epoch) : 0;
    const needsNew = stale.needs_new_epoch;
    return DefaultRoomEncryption.#sealed(
      await this.#run((session, now) => session.reseal(now, clientId, text, current, needsNew)),
    );
  }

  async open(message: EncryptedMessage): Promise<OpenResult> {
    let outcome: Outcome;
    try {
      outcome = await this.#run((session, now) =>
        session.open(now, message.message_id, message.user_id, message.client_id, message.sent_at, message.ciphertext),
      );
    } catch (thrown) {
      const error = asError(thrown);
      return { ok: false, code: error.code, message: error.message };
    }
    if (outcome.type === "opened") {
      return outcome.ok ? { ok: true, text: outcome.text } : { ok: false, code: outcome.code, message: outcome.message };
    }
    const [code, reason] = outcome.type === "failed" ? [outcome.code, outcome.message] : ["e2ee_malformed", outcome.type];
    return { ok: false, code, message: reason };
  }

  roomEvent(event: "epoch.created" | "member.added" | "member.removed", data: unknown): void {
    this.#session?.roomEvent(Date.now(), event, data ?? null);
  }

  onKeyChange(listener: (change: DeviceKeyChange) => void): Unsubscribe {
    return this.#keyListeners.add(listener);
  }

  async acceptDeviceChange(userId: string, deviceId: string): Promise<void> {
    const outcome = await this.#run((session, now) => session.acceptDeviceChange(now, userId, deviceId));
    if (outcome.type === "failed") throw sessionError(outcome.code, outcome.message);
  }

  async safetyNumber(userId: string): Promise<DeviceSafetyNumber[]> {
    const outcome = await this.#run((session, now) => session.safetyNumbers(now, userId));
    if (outcome.type === "failed") throw sessionError(outcome.code, outcome.message);
    return outcome.type === "safety_numbers" ? outcome.numbers : [];
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#keyListeners.clear();
    // The session fails what waits, persists what changed and asks to release the lock.
    this.#session?.close();
    this.#pump();
  }

  // ---- The pump -------------------------------------------------------------------

  /** Carries out the session's actions until it has none; one pump at a time. */
  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    this.#drain().catch((error: unknown) => {
      this.#pumping = false;
      console.warn("domvia-realtime-e2ee: the room's session failed", error);
    });
  }

  async #drain(): Promise<void> {
    for (;;) {
      const session = this.#session;
      if (session === undefined) {
        this.#pumping = false;
        return;
      }
      const actions = session.poll();
      if (actions.length === 0) {
        // In the same turn as the empty poll: an input fed after it pumps again.
        this.#pumping = false;
        if (this.#closed) {
          this.#session = undefined;
          session.free();
        }
        return;
      }
      for (const action of actions) await this.#perform(session, action);
    }
  }

  /** Feeds an outcome to the session (ignored once it is gone) and pumps. */
  #feed(input: (session: E2eeRoomSession, now: number) => void): void {
    const session = this.#session;
    if (session === undefined) return;
    input(session, Date.now());
    this.#pump();
  }

  async #perform(session: E2eeRoomSession, action: E2eeSessionAction): Promise<void> {
    const device = this.#device;
    switch (action.type) {
      case "request":
        void this.#request(action);
        return;
      case "lock":
        await this.#locked(session, action.id);
        return;
      case "unlock": {
        const lock = this.#lock;
        this.#lock = undefined;
        void lock?.then(
          (release) => release(),
          () => undefined,
        );
        return;
      }
      case "persist":
        await this.#storage(session, action.id, async () => {
          if (device === undefined) throw closedError("store the room's keys");
          if (action.room_state !== undefined) {
            await device.store.write(this.#entry, action.room_state, this.#roomRev + 1);
            this.#roomRev += 1;
          }
          if (action.known_devices !== undefined) {
            await device.store.write(KNOWN_ENTRY, action.known_devices, this.#knownRev + 1);
            this.#knownRev += 1;
          }
          session.stored(Date.now(), action.id);
        });
        return;
      case "ledger_check":
        await this.#storage(session, action.id, async () => {
          if (device === undefined) throw closedError("read the seen message ids");
          const keys = action.keys.map((key) => ({ senderUserId: key.sender_user_id, messageId: key.message_id }));
          const found = await device.store.seenIds(this.#context.roomId, keys);
          session.ledgerResult(Date.now(), action.id, found);
        });
        return;
      case "ledger_record":
        await this.#storage(session, action.id, async () => {
          if (device === undefined) throw closedError("record the seen message ids");
          const entries = action.entries.map((entry) => ({
            senderUserId: entry.sender_user_id,
            messageId: entry.message_id,
            backendMessageId: entry.backend_message_id,
          }));
          await device.store.recordSeen(this.#context.roomId, entries);
          session.stored(Date.now(), action.id);
        });
        return;
      case "key_change":
        this.#keyListeners.emit(Object.freeze({ user_id: action.user_id, device_id: action.device_id }));
        return;
      default: {
        const resolve = this.#outcomes.get(action.op);
        this.#outcomes.delete(action.op);
        resolve?.(action);
      }
    }
  }

  async #request(action: Extract<E2eeSessionAction, { type: "request" }>): Promise<void> {
    try {
      const answer = await this.#context.request<unknown>(action.operation, action.method, action.path, action.body);
      this.#feed((session, now) => session.response(now, action.id, answer.status, answer.body ?? null));
    } catch (thrown) {
      const error = asError(thrown);
      this.#feed((session, now) => session.requestFailed(now, action.id, error.code, error.message));
    }
  }

  /** Takes the lock, then hands the session the stored entries another tab wrote since. */
  async #locked(session: E2eeRoomSession, id: number): Promise<void> {
    const device = this.#device;
    await this.#storage(session, id, async () => {
      if (device === undefined) throw closedError("take the lock");
      this.#lock = acquireLock(device.userId);
      await this.#lock;
      const room = await this.#changed(device, this.#entry, this.#roomRev);
      const known = await this.#changed(device, KNOWN_ENTRY, this.#knownRev);
      if (room !== undefined) this.#roomRev = room.rev;
      if (known !== undefined) this.#knownRev = known.rev;
      session.locked(Date.now(), id, room?.value, known?.value);
    });
  }

  /** An entry when its write counter is not `rev` (another tab wrote it), decrypted. */
  async #changed(device: LocalDevice, name: string, rev: number): Promise<{ rev: number; value: string } | undefined> {
    if ((await device.store.revision(name)) === rev) return undefined;
    const entry = await device.store.read<string>(name);
    return entry === undefined || entry.rev === rev ? undefined : entry;
  }

  /** Runs a storage step; a failure is the session's `storageFailed`. */
  async #storage(session: E2eeRoomSession, id: number, step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (thrown) {
      const error = asError(thrown);
      if (this.#session === session) session.storageFailed(Date.now(), id, error.code, error.message);
    }
  }
}
