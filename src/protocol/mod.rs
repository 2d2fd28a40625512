//! The Pusher Channels protocol 7, as pure functions and data: frames, events,
//! close codes, channel names and the HMAC signatures of channel auth, user
//! sign-in, webhooks and the REST API.
//!
//! Nothing here does I/O or reads a clock: time is a parameter. Every function
//! that reads input from the network returns a [`Error`] instead of panicking.
//! The browser SDK (through `src/wasm`) and the embedded server share this
//! module, so both sides of the wire agree byte for byte.

mod app;
mod auth;
mod channel;
mod close;
pub mod event;
mod frame;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod hex;
mod mac;
mod rest;

/// The error type lives in `crate::error`; this path stays for existing imports.
pub use crate::error::Error;
pub use app::AppCredentials;
pub use auth::{
    authenticate_user, authorize_presence_channel, authorize_private_channel,
    parse_channel_auth_response, parse_presence_channel_data, validate_socket_id,
    verify_channel_auth, verify_user_auth, verify_webhook, webhook_signature, ChannelAuth,
    PresenceMember, UserAuth,
};
pub use channel::{
    build_chat_channel_name, chat_room_id, validate_channel_name, ChannelKind,
    CHAT_PRESENCE_CHANNEL_PREFIX, CHAT_PRIVATE_CHANNEL_PREFIX, MAX_CHANNEL_NAME_LEN,
};
pub use close::{close_action, CloseAction};
pub use event::{Event, PresenceSnapshot, WatchlistEvent};
pub(crate) use frame::{data_json, is_json, push_json_string, write_frame, RawFrame};
pub use frame::{Frame, CLIENT_EVENT_PREFIX};
pub use rest::{md5_hex, sign_query, verify_query, AUTH_TIMESTAMP_WINDOW_SECS, AUTH_VERSION};
