/**
 * This browser profile's device for one user: its keys (created on first use,
 * kept encrypted in IndexedDB), the devices it has pinned, and the key
 * changes waiting for the user's acceptance. One per user per page, shared by
 * every encrypted room of the page.
 */
import { callCore, E2eeDevice, E2eeKnownDevices, ready } from "./runtime.js";
import { codeOf, e2eeError } from "./errors.js";
import { withLock } from "./lock.js";
import { deleteStored, KeyStore } from "./store.js";
import type { DeviceKeyChange, RoomEncryptionContext } from "./types.js";

/** A device record as the backend lists it (`record` of a Device): a signed JSON object. */
export type DeviceRecord = Readonly<Record<string, unknown>>;

/** The backend's Device object. */
export interface DeviceJson {
  device_id: string;
  user_id: string;
  record: DeviceRecord;
}

interface StoredDevice {
  device_id: string;
  /** The 64 secret bytes, base64. */
  secret: string;
}

const DEVICE_ENTRY = "device";
const KNOWN_ENTRY = "known_devices";

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (char) => char.charCodeAt(0));
}

/** `d-` and 32 random hex digits. */
function newDeviceId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `d-${Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("")}`;
}

function changeKey(userId: string, deviceId: string): string {
  return `${userId}\u0000${deviceId}`;
}

const devices = new Map<string, Promise<LocalDevice>>();

/** The device of one user in this browser profile. */
export class LocalDevice {
  readonly userId: string;
  readonly store: KeyStore;
  readonly #keys: E2eeDevice;
  #known: E2eeKnownDevices;
  #knownRev: number;
  /** Devices whose keys changed, with their new record, until accepted. */
  readonly #changes = new Map<string, DeviceRecord>();
  #registration: Promise<void> | undefined;
  #freed = false;

  private constructor(userId: string, store: KeyStore, keys: E2eeDevice, known: E2eeKnownDevices, knownRev: number) {
    this.userId = userId;
    this.store = store;
    this.#keys = keys;
    this.#known = known;
    this.#knownRev = knownRev;
  }

  /** The user's device, loaded (or created) once per page. */
  static load(userId: string): Promise<LocalDevice> {
    let loading = devices.get(userId);
    if (loading === undefined) {
      loading = LocalDevice.#loadOrCreate(userId);
      devices.set(userId, loading);
      loading.catch(() => {
        if (devices.get(userId) === loading) devices.delete(userId);
      });
    }
    return loading;
  }

  static async #loadOrCreate(userId: string): Promise<LocalDevice> {
    await ready();
    return withLock(userId, async () => {
      const store = await KeyStore.open(userId);
      const stored = await store.read<StoredDevice>(DEVICE_ENTRY);
      let keys: E2eeDevice;
      if (stored !== undefined) {
        const { device_id, secret } = stored.value;
        keys = callCore("restore this device's keys", () => E2eeDevice.restore(userId, device_id, fromBase64(secret)));
      } else {
        const deviceId = newDeviceId();
        keys = callCore("create this device's keys", () => E2eeDevice.generate(userId, deviceId));
        const entry: StoredDevice = { device_id: deviceId, secret: toBase64(keys.exportSecret()) };
        await store.write(DEVICE_ENTRY, entry, 1);
      }
      const knownEntry = await store.read<string>(KNOWN_ENTRY);
      const known =
        knownEntry === undefined
          ? new E2eeKnownDevices()
          : callCore("restore the known devices", () => E2eeKnownDevices.restore(knownEntry.value));
      return new LocalDevice(userId, store, keys, known, knownEntry?.rev ?? 0);
    });
  }

  /** The wasm device keys (never freed while a room may use them). */
  get keys(): E2eeDevice {
    if (this.#freed) throw e2eeError("e2ee_closed", "unable to use this device; its encryption state was cleared");
    return this.#keys;
  }

  get deviceId(): string {
    return this.#keys.deviceId;
  }

  get fingerprint(): string {
    return this.#keys.fingerprint;
  }

  /** This device's signed record. */
  record(): DeviceRecord {
    return callCore("read this device's record", () => this.#keys.record() as DeviceRecord);
  }

  /** Publishes the device record (`PUT /api/devices/{id}`), once per page while it succeeds. */
  register(request: RoomEncryptionContext["request"]): Promise<void> {
    this.#registration ??= request<unknown>(
      "register this device",
      "PUT",
      `/api/devices/${encodeURIComponent(this.deviceId)}`,
      { record: this.record() },
    ).then(
      () => undefined,
      (error: unknown) => {
        this.#registration = undefined;
        throw error;
      },
    );
    return this.#registration;
  }

  /**
   * Pins new devices among `records` and notes known ones whose keys changed.
   * Hold the user's lock. Returns the pending changes among `records`.
   */
  async checkRecordsLocked(records: readonly DeviceRecord[]): Promise<DeviceKeyChange[]> {
    const changes: DeviceKeyChange[] = [];
    await this.#pinLocked(records, (differing, device) => {
      const key = changeKey(device.user_id, device.device_id);
      if (differing === undefined) {
        this.#changes.delete(key);
      } else {
        this.#changes.set(key, differing);
        changes.push(device);
      }
    });
    return changes;
  }

  /**
   * Pins new devices among an epoch's `records` (as they were when the epoch
   * was created) and returns those whose keys differ from the pinned ones, as
   * `user_id\u0000device_id`. Unlike {@link checkRecordsLocked} it notes no
   * pending change: an old record offers no new keys to accept. Hold the user's lock.
   */
  async checkEpochRecordsLocked(records: readonly DeviceRecord[]): Promise<Set<string>> {
    const differing = new Set<string>();
    await this.#pinLocked(records, (changed, device) => {
      if (changed !== undefined) differing.add(changeKey(device.user_id, device.device_id));
    });
    return differing;
  }

  /**
   * Checks each of `records` against the pinned keys, pinning new devices
   * (saved once), and tells `seen` about each: with the record when its keys
   * differ from the pinned ones, without when they match (or it is new).
   */
  async #pinLocked(
    records: readonly DeviceRecord[],
    seen: (differing: DeviceRecord | undefined, device: DeviceKeyChange) => void,
  ): Promise<void> {
    await this.#syncKnownLocked();
    let pinned = false;
    for (const record of records) {
      const device = {
        user_id: typeof record.user_id === "string" ? record.user_id : "",
        device_id: typeof record.device_id === "string" ? record.device_id : "",
      };
      try {
        if (callCore("check a device", () => this.#known.check(record)) === "new") pinned = true;
      } catch (thrown) {
        if (codeOf(thrown) !== "e2ee_device_key_changed") throw thrown;
        seen(record, device);
        continue;
      }
      seen(undefined, device);
    }
    if (pinned) await this.#saveKnownLocked();
  }

  /** Whether this device's keys changed and the change is not accepted yet. */
  hasChange(userId: string, deviceId: string): boolean {
    return this.#changes.has(changeKey(userId, deviceId));
  }

  /** Pins the new keys of a changed device. Hold the user's lock. False when no change is pending. */
  async acceptLocked(userId: string, deviceId: string): Promise<boolean> {
    const record = this.#changes.get(changeKey(userId, deviceId));
    if (record === undefined) return false;
    await this.#syncKnownLocked();
    callCore("accept a device's new keys", () => this.#known.acceptChange(record));
    this.#changes.delete(changeKey(userId, deviceId));
    await this.#saveKnownLocked();
    return true;
  }

  async #syncKnownLocked(): Promise<void> {
    if ((await this.store.revision(KNOWN_ENTRY)) === this.#knownRev) return;
    const entry = await this.store.read<string>(KNOWN_ENTRY);
    if (entry === undefined || entry.rev === this.#knownRev) return;
    const known = callCore("restore the known devices", () => E2eeKnownDevices.restore(entry.value));
    this.#known.free();
    this.#known = known;
    this.#knownRev = entry.rev;
  }

  async #saveKnownLocked(): Promise<void> {
    const rev = this.#knownRev + 1;
    await this.store.write(KNOWN_ENTRY, this.#known.exportState(), rev);
    this.#knownRev = rev;
  }

  #free(): void {
    if (this.#freed) return;
    this.#freed = true;
    this.#keys.free();
    this.#known.free();
  }

  /** Forgets the user's device in this page and deletes everything stored for the user. */
  static async clear(userId: string): Promise<void> {
    const loading = devices.get(userId);
    devices.delete(userId);
    const device = await loading?.catch(() => undefined);
    await withLock(userId, () => deleteStored(userId));
    if (device !== undefined) device.#free();
  }
}
