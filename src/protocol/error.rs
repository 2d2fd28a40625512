//! The one error type of the protocol core.

use std::fmt;

/// Everything that can go wrong in the protocol core.
///
/// Each variant has a stable snake_case [`code`](Error::code) that crosses into
/// JavaScript as the `code` property of a real `Error`, and a message that reads
/// `unable to <operation>; <reason>`. Messages never contain secrets or
/// signatures: at most a channel name, room id or event name, which are public.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A channel name breaks the naming rules (characters, length, empty suffix).
    InvalidChannelName { name: String, reason: String },
    /// A room id cannot form a chat channel name.
    InvalidRoomId { room_id: String, reason: String },
    /// The channel exists but is of the wrong kind for the operation, such as
    /// signing presence data for a private channel.
    WrongChannelKind {
        channel: String,
        expected: &'static str,
    },
    /// A socket id is not of the form `123.456`.
    InvalidSocketId,
    /// A WebSocket frame is not a JSON object with a string `event`.
    MalformedFrame { reason: String },
    /// A known protocol event carries data of the wrong shape.
    InvalidEventData { event: String, reason: String },
    /// User data for presence or sign-in lacks a non-empty user id.
    InvalidUserData,
    /// A signature was made with another app key.
    AuthKeyMismatch,
    /// A signature is malformed or does not match.
    InvalidSignature,
    /// A signed REST request lacks one of its auth parameters.
    MissingAuthParam { name: &'static str },
    /// A signed REST request uses an `auth_version` other than 1.0.
    UnsupportedAuthVersion,
    /// A signed REST request's `auth_timestamp` is outside the accepted window.
    TimestampOutOfWindow,
    /// A signed REST request's `body_md5` does not match its body.
    BodyMd5Mismatch,
    /// A channel auth endpoint returned something other than a valid auth.
    InvalidAuthResponse { reason: String },
    /// A client event was triggered while client events are disabled in the options.
    ClientEventsDisabled { event: String },
    /// A client event name lacks the `client-` prefix or is too long.
    InvalidEventName { event: String, reason: String },
    /// A client event was triggered on a channel whose subscription the broker
    /// has not acknowledged (or that is not subscribed at all).
    NotSubscribed { channel: String, event: String },
    /// Connection options are missing or of the wrong type.
    InvalidConfig { reason: String },
    /// Event data is larger than the protocol allows.
    PayloadTooLarge {
        event: String,
        size: usize,
        limit: usize,
    },
    /// A chat message object (from the history API, a `message.created` event
    /// or a send response) lacks a field, has one of the wrong type, or
    /// belongs to another room.
    InvalidMessage { reason: String },
    /// Message text is empty or has control characters other than tab, CR and LF.
    InvalidText { reason: String },
    /// Message text is longer than the backend accepts.
    TextTooLarge { size: usize, limit: usize },
    /// A send's `client_id` is malformed or already used in this room.
    InvalidClientId { client_id: String, reason: String },
    /// `retry` named a client id that is not a failed send of this room.
    UnknownClientId { client_id: String },
}

impl Error {
    /// The stable, snake_case code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidChannelName { .. } => "invalid_channel_name",
            Error::InvalidRoomId { .. } => "invalid_room_id",
            Error::WrongChannelKind { .. } => "wrong_channel_kind",
            Error::InvalidSocketId => "invalid_socket_id",
            Error::MalformedFrame { .. } => "malformed_frame",
            Error::InvalidEventData { .. } => "invalid_event_data",
            Error::InvalidUserData => "invalid_user_data",
            Error::AuthKeyMismatch => "auth_key_mismatch",
            Error::InvalidSignature => "invalid_signature",
            Error::MissingAuthParam { .. } => "missing_auth_param",
            Error::UnsupportedAuthVersion => "unsupported_auth_version",
            Error::TimestampOutOfWindow => "auth_timestamp_expired",
            Error::BodyMd5Mismatch => "body_md5_mismatch",
            Error::InvalidAuthResponse { .. } => "invalid_auth_response",
            Error::ClientEventsDisabled { .. } => "client_events_disabled",
            Error::InvalidEventName { .. } => "invalid_event_name",
            Error::NotSubscribed { .. } => "not_subscribed",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::InvalidConfig { .. } => "invalid_config",
            Error::InvalidMessage { .. } => "invalid_message",
            Error::InvalidText { .. } => "invalid_text",
            Error::TextTooLarge { .. } => "text_too_large",
            Error::InvalidClientId { .. } => "invalid_client_id",
            Error::UnknownClientId { .. } => "unknown_client_id",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidChannelName { name, reason } => {
                write!(f, "unable to use channel name {name:?}; {reason}")
            }
            Error::InvalidRoomId { room_id, reason } => {
                write!(f, "unable to build a channel name for room id {room_id:?}; {reason}")
            }
            Error::WrongChannelKind { channel, expected } => write!(
                f,
                "unable to authorize channel {channel:?}; it is not a {expected} channel"
            ),
            Error::InvalidSocketId => f.write_str(
                "unable to authorize; the socket id is not of the form \"1234.5678\"",
            ),
            Error::MalformedFrame { reason } => write!(f, "unable to decode frame; {reason}"),
            Error::InvalidEventData { event, reason } => {
                write!(f, "unable to read event {event:?}; {reason}")
            }
            Error::InvalidUserData => {
                f.write_str("unable to authorize the user; the user id must be a non-empty string")
            }
            Error::AuthKeyMismatch => f.write_str(
                "unable to accept the signature; it was signed with another app key (check that client and server use the same key)",
            ),
            Error::InvalidSignature => {
                f.write_str("unable to verify the signature; it is malformed or does not match")
            }
            Error::MissingAuthParam { name } => {
                write!(f, "unable to verify the request; the {name} parameter is missing")
            }
            Error::UnsupportedAuthVersion => {
                f.write_str("unable to verify the request; only auth_version 1.0 is supported")
            }
            Error::TimestampOutOfWindow => write!(
                f,
                "unable to verify the request; auth_timestamp is more than {} seconds away from the server clock",
                super::AUTH_TIMESTAMP_WINDOW_SECS
            ),
            Error::BodyMd5Mismatch => {
                f.write_str("unable to verify the request; body_md5 does not match the body")
            }
            Error::InvalidAuthResponse { reason } => {
                write!(f, "unable to use the auth endpoint's response; {reason}")
            }
            Error::ClientEventsDisabled { event } => write!(
                f,
                "unable to trigger event {event:?}; client events are disabled in the options"
            ),
            Error::InvalidEventName { event, reason } => {
                write!(f, "unable to trigger event {event:?}; {reason}")
            }
            Error::NotSubscribed { channel, event } => write!(
                f,
                "unable to trigger event {event:?} on channel {channel:?}; the channel is not subscribed (or the broker has not acknowledged the subscription yet)"
            ),
            Error::InvalidConfig { reason } => {
                write!(f, "unable to create the connection; {reason}")
            }
            Error::PayloadTooLarge { event, size, limit } => write!(
                f,
                "unable to trigger event {event:?}; data has {size} bytes, more than the limit of {limit}"
            ),
            Error::InvalidMessage { reason } => write!(f, "unable to read the message; {reason}"),
            Error::InvalidText { reason } => write!(f, "unable to send the message; {reason}"),
            Error::TextTooLarge { size, limit } => write!(
                f,
                "unable to send the message; the text has {size} UTF-8 bytes, more than the limit of {limit}"
            ),
            Error::InvalidClientId { client_id, reason } => {
                write!(f, "unable to send message {client_id:?}; {reason}")
            }
            Error::UnknownClientId { client_id } => write!(
                f,
                "unable to retry message {client_id:?}; no failed message of this room has that client id"
            ),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn all() -> Vec<Error> {
        let s = String::new;
        vec![
            Error::InvalidChannelName {
                name: s(),
                reason: s(),
            },
            Error::InvalidRoomId {
                room_id: s(),
                reason: s(),
            },
            Error::WrongChannelKind {
                channel: s(),
                expected: "presence",
            },
            Error::InvalidSocketId,
            Error::MalformedFrame { reason: s() },
            Error::InvalidEventData {
                event: s(),
                reason: s(),
            },
            Error::InvalidUserData,
            Error::AuthKeyMismatch,
            Error::InvalidSignature,
            Error::MissingAuthParam { name: "auth_key" },
            Error::UnsupportedAuthVersion,
            Error::TimestampOutOfWindow,
            Error::BodyMd5Mismatch,
            Error::InvalidAuthResponse { reason: s() },
            Error::ClientEventsDisabled { event: s() },
            Error::InvalidEventName {
                event: s(),
                reason: s(),
            },
            Error::NotSubscribed {
                channel: s(),
                event: s(),
            },
            Error::PayloadTooLarge {
                event: s(),
                size: 10_241,
                limit: 10_240,
            },
            Error::InvalidConfig { reason: s() },
            Error::InvalidMessage { reason: s() },
            Error::InvalidText { reason: s() },
            Error::TextTooLarge {
                size: 4001,
                limit: 4000,
            },
            Error::InvalidClientId {
                client_id: s(),
                reason: s(),
            },
            Error::UnknownClientId { client_id: s() },
        ]
    }

    #[test]
    fn codes_are_distinct_snake_case() {
        let errors = all();
        let codes: HashSet<&str> = errors.iter().map(Error::code).collect();
        assert_eq!(codes.len(), errors.len());
        for code in codes {
            assert!(
                code.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{code}"
            );
        }
    }

    #[test]
    fn messages_read_unable_to() {
        for error in all() {
            let message = error.to_string();
            assert!(message.starts_with("unable to "), "{message}");
            assert!(message.contains("; "), "{message}");
        }
    }

    #[test]
    fn messages_name_the_subject() {
        let error = Error::InvalidChannelName {
            name: "bad#name".into(),
            reason: "'#' is not allowed".into(),
        };
        assert_eq!(
            error.to_string(),
            "unable to use channel name \"bad#name\"; '#' is not allowed"
        );
        assert_eq!(
            Error::MissingAuthParam {
                name: "auth_signature"
            }
            .to_string(),
            "unable to verify the request; the auth_signature parameter is missing"
        );
    }
}
