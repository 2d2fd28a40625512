/**
 * `@domvia/realtime-e2ee`: end-to-end encryption of message content for
 * `@domvia/realtime-chat` rooms. Apps do not call it directly: a room created
 * with `encrypted: true` loads this package with a dynamic `import()` and
 * drives it. Apps use `room.encryption` (fingerprint, key changes) and, from
 * here, `clearEncryptionState` at sign-out and `safetyNumber`.
 *
 * The design, byte format and threat model: docs/e2ee.md.
 *
 * @packageDocumentation
 */
import { LocalDevice } from "./device.js";
import { DefaultRoomEncryption } from "./room.js";
import type { RoomEncryption, RoomEncryptionContext } from "./types.js";

export { ready, safetyNumber } from "./runtime.js";
export type { WasmSource } from "./runtime.js";
export type {
  DeviceKeyChange,
  DeviceSafetyNumber,
  E2eeErrorCode,
  EncryptedMessage,
  OpenResult,
  RoomEncryption,
  RoomEncryptionContext,
  StaleEpoch,
} from "./types.js";

/**
 * One room's encryption for a chat room (called by `@domvia/realtime-chat`).
 * Call `prepare()` before anything else.
 */
export function openRoomEncryption(context: RoomEncryptionContext): RoomEncryption {
  return new DefaultRoomEncryption(context);
}

/**
 * Deletes this browser profile's device and every room key of `userId` from
 * IndexedDB (and forgets them in this page): for sign-out on a shared
 * computer, and for tests. Messages sent to the old device can no longer be
 * read here; the next encrypted room creates a new device.
 */
export function clearEncryptionState(userId: string): Promise<void> {
  return LocalDevice.clear(userId);
}
