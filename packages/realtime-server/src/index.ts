/**
 * `@domvia/realtime-server`: DomVia Realtime for an app's trusted Node server.
 *
 * - Authorize subscriptions: {@link authorizePrivateChannel},
 *   {@link authorizePresenceChannel}, and user sign-in with {@link authenticateUser}.
 * - Name chat rooms safely: {@link buildChatChannelName} and its strict inverse
 *   {@link chatRoomIdFromChannel}.
 * - Publish through the broker's signed REST API: {@link createRealtimeClient}.
 * - Verify webhooks: {@link verifyWebhook}.
 *
 * Everything speaks the Pusher Channels protocol 7, so any Pusher-compatible
 * broker works. Only `node:crypto` and the global `fetch` are used; no wasm.
 *
 * @packageDocumentation
 */
export { DomViaServerError } from "./errors.js";
export type { DomViaServerErrorCode, DomViaServerErrorDetails } from "./errors.js";

export {
  CHAT_PRESENCE_CHANNEL_PREFIX,
  CHAT_PRIVATE_CHANNEL_PREFIX,
  MAX_CHANNEL_NAME_LENGTH,
  buildChatChannelName,
  channelKind,
  chatRoomIdFromChannel,
  validateChannelName,
} from "./channels.js";
export type { ChannelKind, ChatRoomChannel } from "./channels.js";

export {
  authenticateUser,
  authorizePresenceChannel,
  authorizePrivateChannel,
  md5Hex,
  signRestRequest,
  validateSocketId,
  verifyChannelAuth,
  verifyUserAuth,
} from "./signing.js";
export type {
  AppCredentials,
  ChannelAuthToVerify,
  PresenceChannelAuth,
  PresenceChannelRequest,
  PresenceUser,
  PresenceUserInfo,
  PrivateChannelAuth,
  PrivateChannelRequest,
  RestRequestToSign,
  SignInUser,
  UserAuth,
  UserAuthToVerify,
  UserSignInRequest,
} from "./signing.js";

export {
  DEFAULT_TIMEOUT_MS,
  MAX_BATCH_EVENTS,
  MAX_EVENT_DATA_BYTES,
  MAX_EVENT_NAME_LENGTH,
  MAX_USER_ID_LENGTH,
  MAX_TRIGGER_CHANNELS,
  createRealtimeClient,
} from "./rest.js";
export type {
  BatchEvent,
  BatchResult,
  ChannelAttribute,
  ChannelInfo,
  ChannelList,
  ChannelListOptions,
  ChannelOptions,
  ChannelState,
  EventData,
  PresenceUserList,
  RealtimeClient,
  RealtimeClientOptions,
  TriggerOptions,
  TriggerResult,
} from "./rest.js";

export { verifyWebhook } from "./webhook.js";
export type {
  WebhookEvent,
  WebhookEventName,
  WebhookHeaders,
  WebhookPayload,
  WebhookRequest,
} from "./webhook.js";
