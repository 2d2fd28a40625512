/**
 * `@domvia/realtime-chat`: private chat rooms over a `DomViaRealtime`
 * connection and the reference backend's HTTP API. Messages arrive in order
 * and exactly once, your own show at once and survive reconnects, with typing,
 * read receipts and presence.
 *
 * The room's rules run in the DomVia wasm core (`ChatRoomSession`, reached through
 * `@domvia/realtime/core`), so both packages share one wasm module.
 *
 * @packageDocumentation
 */
export { buildChatChannelName, DomViaError } from "@domvia/realtime";
export { createChatRoom } from "./create.js";
export { ChatRoomRegistry, loadingSnapshot, roomActions, roomOptionsKey, watchRoom } from "./registry.js";
export type { ChatRoomActions, ChatRoomLease, ChatRoomRegistryOptions, SharedRoomOptions } from "./registry.js";
export type {
  ChatApiOptions,
  ChatErrorCode,
  ChatMember,
  ChatMessage,
  ChatRoom,
  ChatRoomEncryption,
  ChatRoomOptions,
  ChatRoomSnapshot,
  ChatRoomStatus,
  DeliveryStatus,
  DeviceKeyChangeEvent,
  OpenResult,
  PresenceEvent,
  ReadReceiptEvent,
  RoomEncryption,
  RoomEncryptionContext,
  RoomEncryptionModule,
  StaleEpoch,
  TypingEvent,
  Unsubscribe,
} from "./types.js";
