//! The broker channels of a room, named by the protocol core so that the
//! backend, the SDK and the broker agree on them.

use domvia_realtime::protocol::build_chat_channel_name;

use crate::error::ApiError;

/// The private channel of a room, `private-chat.room.{room_id}`: where the
/// backend publishes what changed.
pub(crate) fn room_channel(room_id: &str) -> Result<String, ApiError> {
    build_chat_channel_name(room_id, false).map_err(ApiError::internal)
}

/// The presence channel of a room, `presence-chat.room.{room_id}`.
pub(crate) fn room_presence_channel(room_id: &str) -> Result<String, ApiError> {
    build_chat_channel_name(room_id, true).map_err(ApiError::internal)
}
