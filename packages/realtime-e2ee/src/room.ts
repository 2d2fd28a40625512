/**
 * One room's end-to-end encryption: the wasm `E2eeRoom` (epochs, members,
 * the ids it opened) kept in step with the backend's epochs and member
 * devices, and with the other tabs through the stored state and the replay
 * ledger (store.ts).
 *
 * Every use of the room's keys runs under the user's lock (lock.ts): it first
 * reloads the stored state if another tab wrote it since, then works, then
 * writes the state back if it changed. Epoch creation (a network round trip)
 * also runs under it, so two tabs of one device never create competing epochs.
 */
import { Listeners } from "@domvia/realtime/core";
import { callCore, E2eeRoom, ready, safetyNumber } from "./runtime.js";
import { type DeviceJson, type DeviceRecord, LocalDevice } from "./device.js";
import { asError, codeOf, e2eeError } from "./errors.js";
import { withLock } from "./lock.js";
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

/** Attempts of epoch creation before a send fails (each after a 409). */
const EPOCH_ATTEMPTS = 5;
/** Opening messages reuses the member device list for this long (sends always refetch it). */
const DEVICES_MAX_AGE_MS = 30_000;

interface QueuedOpen {
  message: EncryptedMessage;
  resolve: (result: OpenResult) => void;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function failure(thrown: unknown): { ok: false; code: string; message: string } {
  const error = asError(thrown);
  return { ok: false, code: error.code, message: error.message };
}

/** The default {@link RoomEncryption}. */
export class DefaultRoomEncryption implements RoomEncryption {
  readonly #context: RoomEncryptionContext;
  readonly #path: string;
  readonly #entry: string;
  #device: LocalDevice | undefined;
  #room: E2eeRoom | undefined;
  /** The write counter of the stored room state this tab's `#room` matches (0: none stored). */
  #rev = 0;
  #savedState: string | undefined;
  #devices: DeviceJson[] | undefined;
  #devicesAt = 0;
  /**
   * The member devices each epoch was created for (`GET .../epochs/{epoch}/devices`;
   * they never change), `null` for an epoch the backend has none for (created before it recorded them).
   */
  readonly #epochDevices = new Map<number, DeviceJson[] | null>();
  /** The newest epoch the backend is known to have (from `GET .../epoch` and `epoch.created`). */
  #latestEpoch = 0;
  /** Epochs whose share this device cannot get, with the reason; cleared when the room changes. */
  readonly #unavailable = new Map<number, { ok: false; code: string; message: string }>();
  readonly #reportedChanges = new Set<string>();
  readonly #keyListeners = new Listeners<[DeviceKeyChange]>();
  readonly #opens: QueuedOpen[] = [];
  #draining = false;
  #busy = 0;
  #closed = false;

  constructor(context: RoomEncryptionContext) {
    this.#context = context;
    this.#path = `/api/rooms/${encodeURIComponent(context.roomId)}`;
    this.#entry = `room:${context.roomId}`;
  }

  // ---- Preparing ---------------------------------------------------------------

  async prepare(): Promise<void> {
    await ready(this.#context.wasm);
    const device = await LocalDevice.load(this.#context.userId);
    this.#device = device;
    await device.register(this.#context.request);
    await this.#locked(async () => undefined);
    // A device that joins a room with epochs (a new member, or a new device
    // of a member) is in none of them yet: it creates one that includes it,
    // so the others encrypt to it from now on. Best effort: the next send tries again.
    try {
      await this.#joinCurrentEpoch();
    } catch {
      // Not fatal: reported by the next send if it persists.
    }
  }

  async #joinCurrentEpoch(): Promise<void> {
    const answer = await this.#context.request<{ epoch?: unknown }>("read the room's epoch", "GET", `${this.#path}/epoch`);
    const current = typeof answer.body?.epoch === "number" ? answer.body.epoch : 0;
    this.#latestEpoch = Math.max(this.#latestEpoch, current);
    if (current === 0) return;
    await this.#locked(async (room) => {
      if (room.hasEpoch(current)) return;
      try {
        await this.#installEpochLocked(room, current);
      } catch (thrown) {
        if (codeOf(thrown) !== "share_not_found") throw thrown;
        await this.#ensureEpochLocked(room);
      }
    });
  }

  get fingerprint(): string | undefined {
    return this.#device?.fingerprint;
  }

  // ---- The room state under the lock -------------------------------------------

  /** Runs `task` with the room's current keys while holding the user's lock. */
  async #locked<T>(task: (room: E2eeRoom, device: LocalDevice) => Promise<T>): Promise<T> {
    const device = this.#device;
    if (device === undefined) throw e2eeError("e2ee_closed", "unable to use the room's keys; prepare() has not finished");
    if (this.#closed) throw e2eeError("e2ee_closed", "unable to use the room's keys; the room was left");
    this.#busy += 1;
    try {
      return await withLock(device.userId, async () => {
        if (this.#closed) throw e2eeError("e2ee_closed", "unable to use the room's keys; the room was left");
        const room = await this.#syncLocked(device);
        try {
          return await task(room, device);
        } finally {
          await this.#saveLocked(device, room);
        }
      });
    } finally {
      this.#busy -= 1;
      if (this.#closed && this.#busy === 0) this.#free();
    }
  }

  /** The room's keys as stored (another tab may have written them since). */
  async #syncLocked(device: LocalDevice): Promise<E2eeRoom> {
    if (this.#room !== undefined && (await device.store.revision(this.#entry)) === this.#rev) return this.#room;
    const entry = await device.store.read<string>(this.#entry);
    const roomId = this.#context.roomId;
    if (entry !== undefined && (this.#room === undefined || entry.rev !== this.#rev)) {
      const restored = callCore("restore the room's keys", () => E2eeRoom.restore(roomId, entry.value));
      this.#room?.free();
      this.#room = restored;
      this.#rev = entry.rev;
      this.#savedState = entry.value;
    }
    this.#room ??= callCore("create the room's keys", () => new E2eeRoom(roomId));
    return this.#room;
  }

  async #saveLocked(device: LocalDevice, room: E2eeRoom): Promise<void> {
    const state = room.exportState();
    if (state === this.#savedState) return;
    const rev = this.#rev + 1;
    await device.store.write(this.#entry, state, rev);
    this.#rev = rev;
    this.#savedState = state;
  }

  // ---- Member devices -------------------------------------------------------

  /** The room's member devices, refetched when `force`, invalidated, or stale. */
  async #devicesLocked(device: LocalDevice, force: boolean): Promise<DeviceJson[]> {
    if (!force && this.#devices !== undefined && Date.now() - this.#devicesAt < DEVICES_MAX_AGE_MS) return this.#devices;
    const [list, epoch] = await Promise.all([
      this.#context.request<DeviceJson[]>("list the room's devices", "GET", `${this.#path}/devices`),
      this.#context.request<{ epoch?: unknown }>("read the room's epoch", "GET", `${this.#path}/epoch`),
    ]);
    const devices = Array.isArray(list.body) ? list.body.filter((entry) => isObject(entry) && isObject(entry.record)) : [];
    if (typeof epoch.body?.epoch === "number") this.#latestEpoch = Math.max(this.#latestEpoch, epoch.body.epoch);
    const changes = await device.checkRecordsLocked(devices.map((entry) => entry.record));
    this.#devices = devices;
    this.#devicesAt = Date.now();
    for (const change of changes) this.#reportChange(change);
    return devices;
  }

  /**
   * The member devices `epoch` was created for, as they were then; `undefined`
   * when the backend does not know them (`404 epoch_devices_unknown`: use the current list).
   */
  async #epochDevicesLocked(epoch: number): Promise<DeviceJson[] | undefined> {
    const known = this.#epochDevices.get(epoch);
    if (known !== undefined) return known ?? undefined;
    let devices: DeviceJson[] | null;
    try {
      const list = await this.#context.request<DeviceJson[]>(
        "list the epoch's devices",
        "GET",
        `${this.#path}/epochs/${epoch}/devices`,
      );
      devices = Array.isArray(list.body) ? list.body.filter((entry) => isObject(entry) && isObject(entry.record)) : [];
    } catch (thrown) {
      if (codeOf(thrown) !== "epoch_devices_unknown") throw thrown;
      devices = null;
    }
    this.#epochDevices.set(epoch, devices);
    return devices ?? undefined;
  }

  #reportChange(change: DeviceKeyChange): void {
    const key = `${change.user_id}\u0000${change.device_id}`;
    if (this.#reportedChanges.has(key)) return;
    this.#reportedChanges.add(key);
    this.#keyListeners.emit(Object.freeze({ ...change }));
  }

  #invalidate(): void {
    this.#devices = undefined;
    this.#unavailable.clear();
  }

  // ---- Epochs ---------------------------------------------------------------

  /**
   * Makes the room's newest epoch cover exactly the current member devices:
   * installs a newer epoch someone else created, or creates one (a
   * compare-and-set at the backend; on a 409 refetch and try again). With
   * `minEpoch`, the epoch used is at least that one, created even when the
   * member devices look unchanged (the backend said the current one is stale).
   */
  async #ensureEpochLocked(room: E2eeRoom, minEpoch = 0): Promise<void> {
    const device = this.#device;
    if (device === undefined) throw e2eeError("e2ee_closed", "unable to create an epoch; prepare() has not finished");
    // Every send reads the member devices afresh: a cached list would let a
    // send made before this client heard of a removal use the old epoch,
    // which the removed member can still open. (A removal between this read
    // and the POST is closed by the backend refusing stale epochs with
    // 409 epoch_stale; the chat room then calls reseal().)
    let force = true;
    let lastError: unknown;
    for (let attempt = 1; attempt <= EPOCH_ATTEMPTS; attempt++) {
      const devices = await this.#devicesLocked(device, force);
      force = true;
      const records = devices.map((entry) => entry.record);
      const changed = devices.find((entry) => device.hasChange(entry.user_id, entry.device_id));
      if (changed !== undefined) {
        throw e2eeError(
          "e2ee_device_key_changed",
          `unable to encrypt; the keys of device ${changed.device_id} of user ${changed.user_id} changed (accept with acceptDeviceChange)`,
        );
      }
      // Someone created a newer epoch: use it if it covers the members now.
      const current = room.currentEpoch ?? 0;
      if (this.#latestEpoch > current && !this.#unavailable.has(this.#latestEpoch)) {
        try {
          await this.#installEpochLocked(room, this.#latestEpoch);
        } catch (thrown) {
          if (codeOf(thrown) === "network_error") throw thrown;
          this.#unavailable.set(this.#latestEpoch, failure(thrown));
        }
      }
      const covered = (room.currentEpoch ?? 0) >= minEpoch;
      if (covered && !callCore("check the room's epoch", () => room.needsNewEpoch(records))) return;

      const next = Math.max(room.currentEpoch ?? 0, this.#latestEpoch) + 1;
      const created = callCore("create an epoch", () => room.createEpoch(device.keys, next, Date.now(), records));
      try {
        await this.#context.request("create an epoch", "POST", `${this.#path}/epochs`, created);
      } catch (thrown) {
        room.discardEpoch();
        const code = codeOf(thrown);
        if (code !== "epoch_conflict" && code !== "shares_incomplete") throw thrown;
        lastError = thrown;
        // epoch_conflict: the next pass reads the newer epoch and installs it when it is ours;
        // shares_incomplete: the next pass refetches the member devices.
        continue;
      }
      callCore("install the new epoch", () => room.commitEpoch(next, records));
      this.#latestEpoch = Math.max(this.#latestEpoch, next);
      return;
    }
    const reason = lastError instanceof Error ? lastError.message : "the member devices kept changing";
    throw e2eeError("e2ee_epoch_failed", `unable to create an epoch after ${EPOCH_ATTEMPTS} attempts; ${reason}`, {
      cause: lastError,
    });
  }

  /** Fetches this device's share of `epoch` and installs the epoch. */
  async #installEpochLocked(room: E2eeRoom, epoch: number): Promise<void> {
    const device = this.#device;
    if (device === undefined) throw e2eeError("e2ee_closed", "unable to install an epoch; prepare() has not finished");
    const answer = await this.#context.request<{ share?: unknown }>(
      "fetch a key share",
      "GET",
      `${this.#path}/epochs/${epoch}/shares?device_id=${encodeURIComponent(device.deviceId)}`,
    );
    const share = answer.body?.share;
    if (!isObject(share)) throw e2eeError("e2ee_malformed", `unable to install epoch ${epoch}; the answer has no share`);
    const creatorOf = (devices: DeviceJson[]): DeviceJson | undefined =>
      devices.find((entry) => entry.user_id === share.sender_user_id && entry.device_id === share.sender_device_id);
    // The devices the epoch was created for, even when members (or its creator) changed since.
    const snapshot = await this.#epochDevicesLocked(epoch);
    if (snapshot !== undefined) {
      const sender = creatorOf(snapshot);
      if (sender === undefined) {
        throw e2eeError(
          "e2ee_share_unavailable",
          `unable to install epoch ${epoch}; its creator's device is not among the epoch's devices`,
        );
      }
      const differing = await device.checkEpochRecordsLocked(snapshot.map((entry) => entry.record));
      if (differing.has(`${sender.user_id}\u0000${sender.device_id}`)) {
        throw e2eeError(
          "e2ee_device_key_changed",
          `unable to install epoch ${epoch}; the keys of its creator's device ${sender.device_id} differ from the pinned ones`,
        );
      }
      callCore("install an epoch", () =>
        room.openShare(device.keys, share, sender.record, snapshot.map((entry) => entry.record)),
      );
      return;
    }
    // An epoch from before the backend recorded its devices. The cached member list first; when the creator is missing or the members differ, once more fetched afresh.
    for (const force of [false, true]) {
      const devices = await this.#devicesLocked(device, force);
      const sender = creatorOf(devices);
      if (sender === undefined) {
        if (!force) continue;
        throw e2eeError(
          "e2ee_share_unavailable",
          `unable to install epoch ${epoch}; its creator's device is not among the room's devices`,
        );
      }
      if (device.hasChange(sender.user_id, sender.device_id)) {
        throw e2eeError(
          "e2ee_device_key_changed",
          `unable to install epoch ${epoch}; the keys of its creator's device ${sender.device_id} changed`,
        );
      }
      try {
        callCore("install an epoch", () =>
          room.openShare(device.keys, share, sender.record, devices.map((entry) => entry.record)),
        );
        return;
      } catch (thrown) {
        // The members changed since the epoch was created: this device waits for the next one.
        if (codeOf(thrown) !== "e2ee_members_mismatch" || force) throw thrown;
      }
    }
  }

  // ---- Sealing and opening ----------------------------------------------------

  seal(clientId: string, text: string): Promise<object> {
    return this.#locked(async (room, device) => {
      await this.#ensureEpochLocked(room);
      return callCore("encrypt the message", () => room.seal(device.keys, clientId, text));
    });
  }

  reseal(clientId: string, text: string, stale: StaleEpoch): Promise<object> {
    return this.#locked(async (room, device) => {
      const current = Number.isSafeInteger(stale.current_epoch) ? Math.max(0, stale.current_epoch) : 0;
      this.#latestEpoch = Math.max(this.#latestEpoch, current);
      // A stale current epoch is replaced; else the current one (created by someone else) is used.
      await this.#ensureEpochLocked(room, stale.needs_new_epoch ? current + 1 : current);
      return callCore("encrypt the message", () => room.seal(device.keys, clientId, text));
    });
  }

  open(message: EncryptedMessage): Promise<OpenResult> {
    if (this.#closed) return Promise.resolve(failure(e2eeError("e2ee_closed", "unable to open the message; the room was left")));
    return new Promise<OpenResult>((resolve) => {
      this.#opens.push({ message, resolve });
      if (!this.#draining) void this.#drainOpens();
    });
  }

  /** Opens the queued messages, many per lock (a history page takes one lock and one write). */
  async #drainOpens(): Promise<void> {
    this.#draining = true;
    try {
      while (this.#opens.length > 0) {
        const batch = this.#opens.splice(0);
        try {
          await this.#locked(async (room, device) => {
            const results: OpenResult[] = [];
            for (const item of batch) results.push(await this.#openLocked(room, item.message));
            await this.#checkReplaysLocked(device, batch, results);
            batch.forEach((item, i) => item.resolve(results[i]!));
          });
        } catch (thrown) {
          // The lock, the store or leaving failed the whole batch; resolving twice is harmless.
          for (const item of batch) item.resolve(failure(thrown));
        }
      }
    } finally {
      this.#draining = false;
    }
  }

  /**
   * The replay check across page loads and tabs: the wasm room remembers what
   * this page opened, the ledger in IndexedDB what any page of this user
   * opened. A genuine envelope (it opened) under a backend message id other
   * than the one it was first opened under is a copy stored again: refused
   * with `e2ee_replay`. Runs after opening, so a forged copy cannot block the
   * real one; new ids are recorded in one write per batch.
   */
  async #checkReplaysLocked(device: LocalDevice, batch: readonly QueuedOpen[], results: OpenResult[]): Promise<void> {
    const opened = batch.flatMap(({ message }, index) =>
      results[index]!.ok ? [{ index, message, key: { senderUserId: message.user_id, messageId: message.client_id } }] : [],
    );
    const known = await device.store.seenIds(this.#context.roomId, opened.map(({ key }) => key));
    const firstIds = new Map<string, string>();
    const fresh: { senderUserId: string; messageId: string; backendMessageId: string }[] = [];
    opened.forEach(({ index, message, key }, i) => {
      const name = `${key.senderUserId}\u0000${key.messageId}`;
      const first = known[i] ?? firstIds.get(name);
      if (first === undefined) {
        firstIds.set(name, message.message_id);
        fresh.push({ ...key, backendMessageId: message.message_id });
      } else if (first !== message.message_id) {
        results[index] = {
          ok: false,
          code: "e2ee_replay",
          message: `unable to open the message; this envelope was already opened as message ${first}`,
        };
      }
    });
    await device.store.recordSeen(this.#context.roomId, fresh);
  }

  async #openLocked(room: E2eeRoom, message: EncryptedMessage): Promise<OpenResult> {
    const envelope = message.ciphertext;
    const open = () => callCore("open the message", () => room.open(envelope, message.sent_at, message.message_id));
    try {
      // Most messages are in an installed epoch: one read of the envelope.
      // Only an unknown epoch fetches its key share, then opens again.
      let opened: ReturnType<typeof open>;
      try {
        opened = open();
      } catch (thrown) {
        if (codeOf(thrown) !== "e2ee_unknown_epoch") throw thrown;
        const epoch = callCore("read the message's epoch", () => room.epochOf(envelope));
        const known = this.#unavailable.get(epoch);
        if (known !== undefined) return known;
        try {
          await this.#installEpochLocked(room, epoch);
        } catch (thrown) {
          const result = failure(thrown);
          if (result.code !== "network_error") this.#unavailable.set(epoch, result);
          return result;
        }
        opened = open();
      }
      if (opened.user_id !== message.user_id || opened.message_id !== message.client_id) {
        return {
          ok: false,
          code: "e2ee_wrong_sender",
          message: "unable to open the message; its sender or message id differs from the backend's",
        };
      }
      return { ok: true, text: opened.text };
    } catch (thrown) {
      return failure(thrown);
    }
  }

  // ---- Events, verification, leaving ---------------------------------------------

  roomEvent(event: "epoch.created" | "member.added" | "member.removed", data: unknown): void {
    if (isObject(data) && data.room_id !== undefined && data.room_id !== this.#context.roomId) return;
    if (event === "epoch.created" && isObject(data) && typeof data.epoch === "number") {
      this.#latestEpoch = Math.max(this.#latestEpoch, data.epoch);
    }
    this.#invalidate();
  }

  onKeyChange(listener: (change: DeviceKeyChange) => void): Unsubscribe {
    return this.#keyListeners.add(listener);
  }

  async acceptDeviceChange(userId: string, deviceId: string): Promise<void> {
    await this.#locked(async (_room, device) => {
      if (!device.hasChange(userId, deviceId)) await this.#devicesLocked(device, true);
      await device.acceptLocked(userId, deviceId);
    });
    this.#reportedChanges.delete(`${userId}\u0000${deviceId}`);
  }

  async safetyNumber(userId: string): Promise<DeviceSafetyNumber[]> {
    return this.#locked(async (_room, device) => {
      const mine: DeviceRecord = device.record();
      const devices = await this.#devicesLocked(device, false);
      return devices
        .filter((entry) => entry.user_id === userId && entry.device_id !== device.deviceId)
        .map((entry) => ({
          device_id: entry.device_id,
          safety_number: safetyNumber(mine, entry.record),
        }));
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#keyListeners.clear();
    for (const item of this.#opens.splice(0)) {
      item.resolve(failure(e2eeError("e2ee_closed", "unable to open the message; the room was left")));
    }
    if (this.#busy === 0) this.#free();
  }

  #free(): void {
    this.#room?.free();
    this.#room = undefined;
  }
}
