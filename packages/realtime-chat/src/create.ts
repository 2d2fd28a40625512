/** Opening one chat room: the options checked, then the room. */
import type { DomViaRealtime } from "@domvia/realtime";
import { chatError } from "./backend.js";
import { DefaultChatRoom } from "./room.js";
import type { ChatRoom, ChatRoomOptions } from "./types.js";

function isPositiveInteger(value: unknown, max: number): boolean {
  return typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= max;
}

function isDuration(value: unknown): boolean {
  return typeof value === "number" && Number.isFinite(value) && value >= 0;
}

/**
 * Opens a chat room: subscribes to its private channel (and its presence
 * channel with `presence: true`), loads the latest history and keeps it
 * current. Await `room.waitUntilReady()`; call `room.leave()` when done.
 *
 * ```ts
 * const room = createChatRoom(realtime, { roomId, channelName: buildChatChannelName(roomId), presence: true });
 * await room.waitUntilReady();
 * room.onMessage((message) => console.log(message.user_id, message.text));
 * await room.sendMessage({ text: "hello" });
 * ```
 *
 * With `encrypted: true` the room loads `@domvia/realtime-e2ee` on demand and
 * encrypts message content end to end; `waitUntilReady()` rejects with
 * `encryption_unavailable` when that package cannot be loaded.
 *
 * @throws {DomViaError} `invalid_config` for a missing room id or channel name
 * or an out-of-range option.
 */
export function createChatRoom(realtime: DomViaRealtime, options: ChatRoomOptions): ChatRoom {
  if (typeof realtime !== "object" || realtime === null || typeof realtime.subscribe !== "function") {
    throw chatError("invalid_config", "unable to create the chat room; the first argument must be a DomViaRealtime");
  }
  for (const field of ["roomId", "channelName"] as const) {
    if (typeof options?.[field] !== "string" || options[field].length === 0) {
      throw chatError("invalid_config", `unable to create the chat room; ${field} must be a non-empty string`);
    }
  }
  if (options.historyPageSize !== undefined && !isPositiveInteger(options.historyPageSize, 100)) {
    throw chatError("invalid_config", "unable to create the chat room; historyPageSize must be an integer from 1 to 100");
  }
  for (const field of ["throttleMs", "timeoutMs"] as const) {
    const value = options.typing?.[field];
    if (value !== undefined && !isDuration(value)) {
      throw chatError("invalid_config", `unable to create the chat room; typing.${field} must be a number of ms >= 0`);
    }
  }
  if (options.userId !== undefined && (typeof options.userId !== "string" || options.userId.length === 0)) {
    throw chatError("invalid_config", "unable to create the chat room; userId must be a non-empty string");
  }
  return new DefaultChatRoom(realtime, options);
}
