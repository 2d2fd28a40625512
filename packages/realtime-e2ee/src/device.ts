/**
 * This browser profile's device for one user: its keys (created on first use,
 * kept encrypted in IndexedDB) and its registration. One per user per page,
 * shared by every encrypted room of the page. The pinned devices and key
 * changes are each room session's (stored as `known_devices`, room.ts).
 */
import { callCore, E2eeDevice, ready } from "./runtime.js";
import { e2eeError } from "./errors.js";
import { withLock } from "./lock.js";
import { deleteStored, KeyStore } from "./store.js";
import type { RoomEncryptionContext } from "./types.js";

/** A device record as the backend lists it (`record` of a Device): a signed JSON object. */
export type DeviceRecord = Readonly<Record<string, unknown>>;

interface StoredDevice {
  device_id: string;
  /** The 64 secret bytes, base64. */
  secret: string;
}

const DEVICE_ENTRY = "device";

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

const devices = new Map<string, Promise<LocalDevice>>();

/** The device of one user in this browser profile. */
export class LocalDevice {
  readonly userId: string;
  readonly store: KeyStore;
  readonly #keys: E2eeDevice;
  #registration: Promise<void> | undefined;
  #freed = false;

  private constructor(userId: string, store: KeyStore, keys: E2eeDevice) {
    this.userId = userId;
    this.store = store;
    this.#keys = keys;
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
      return new LocalDevice(userId, store, keys);
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

  #free(): void {
    if (this.#freed) return;
    this.#freed = true;
    this.#keys.free();
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
