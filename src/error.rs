//! The one error type of the SDK core (protocol, connection, chat, e2ee), and
//! the registry of its stable codes, [`ALL_CODES`].

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
    /// An E2EE object (device record, key share, envelope) carries a format
    /// version `"v"` this build does not know.
    E2eeUnsupportedVersion { what: &'static str, version: String },
    /// An E2EE object is not well formed: not a JSON object, a missing, unknown
    /// or mistyped field, bad base64url, a wrong length, an invalid id or padding.
    E2eeMalformed { reason: String },
    /// An Ed25519 signature over a device record, key share or envelope does
    /// not verify.
    E2eeBadSignature { what: &'static str },
    /// AES-256-GCM authentication failed: the key, nonce, associated data or
    /// ciphertext is not the one sealed.
    E2eeDecryptFailed,
    /// A key share or envelope names another room than the one opening it.
    E2eeWrongRoom { expected: String, actual: String },
    /// An envelope uses an epoch whose key this device does not hold.
    E2eeUnknownEpoch { epoch: u64 },
    /// A device that is not a member of the epoch sent, created or was asked to
    /// use it.
    E2eeNotAMember {
        user_id: String,
        device_id: String,
        epoch: u64,
    },
    /// A message id of this sender was already opened in this room.
    E2eeReplay { user_id: String, message_id: String },
    /// A known device now presents other public keys.
    E2eeDeviceKeyChanged { user_id: String, device_id: String },
    /// A message of an older epoch arrived after the late-message window.
    E2eeEpochExpired { epoch: u64 },
    /// A key share is addressed to another device.
    E2eeWrongRecipient { device_id: String },
    /// A key share was checked against the record of another device than the
    /// one that it names as its sender.
    E2eeWrongSender { user_id: String, device_id: String },
    /// The member devices given for an epoch are not the set its creator
    /// committed to.
    E2eeMembersMismatch { epoch: u64 },
    /// Message content is larger than an envelope holds.
    E2eeContentTooLarge { size: usize, limit: usize },
    /// A public key is invalid or of small order (no shared secret).
    E2eeInvalidKey { reason: String },
    /// A room has no epoch yet: one must be created before sending.
    E2eeNoEpoch { room_id: String },
}

/// Declares the code of every variant once, and from that one table both
/// [`Error::code`] and [`ALL_CODES`].
///
/// Why this is exhaustive: the generated `code()` is a `match` without a
/// wildcard arm, so a variant missing from the table is a compile error
/// (E0004, non-exhaustive patterns; `#[non_exhaustive]` does not relax matches
/// inside this crate). `ALL_CODES` is expanded from the very same rows, so it
/// cannot list a code that `code()` does not return or miss one that it does.
/// A variant listed twice is an unreachable-pattern warning (an error under
/// clippy's `-D warnings`); a code listed twice is caught by the
/// `codes_are_distinct_snake_case` test.
macro_rules! error_codes {
    ($($variant:ident => $code:literal,)+) => {
        impl Error {
            /// The stable, snake_case code of this error.
            pub fn code(&self) -> &'static str {
                match self {
                    // `{ .. }` also matches unit variants.
                    $(Error::$variant { .. } => $code,)+
                }
            }
        }

        /// Every code an [`Error`] can have, in declaration order: the contract
        /// that the TypeScript `CoreErrorCode` union in
        /// `packages/realtime/src/errors.ts` mirrors (checked by
        /// `tests/error_codes.rs`).
        pub const ALL_CODES: &[&str] = &[$($code),+];
    };
}

error_codes! {
    InvalidChannelName => "invalid_channel_name",
    InvalidRoomId => "invalid_room_id",
    WrongChannelKind => "wrong_channel_kind",
    InvalidSocketId => "invalid_socket_id",
    MalformedFrame => "malformed_frame",
    InvalidEventData => "invalid_event_data",
    InvalidUserData => "invalid_user_data",
    AuthKeyMismatch => "auth_key_mismatch",
    InvalidSignature => "invalid_signature",
    MissingAuthParam => "missing_auth_param",
    UnsupportedAuthVersion => "unsupported_auth_version",
    TimestampOutOfWindow => "auth_timestamp_expired",
    BodyMd5Mismatch => "body_md5_mismatch",
    InvalidAuthResponse => "invalid_auth_response",
    ClientEventsDisabled => "client_events_disabled",
    InvalidEventName => "invalid_event_name",
    NotSubscribed => "not_subscribed",
    PayloadTooLarge => "payload_too_large",
    InvalidConfig => "invalid_config",
    InvalidMessage => "invalid_message",
    InvalidText => "invalid_text",
    TextTooLarge => "text_too_large",
    InvalidClientId => "invalid_client_id",
    UnknownClientId => "unknown_client_id",
    E2eeUnsupportedVersion => "e2ee_unsupported_version",
    E2eeMalformed => "e2ee_malformed",
    E2eeBadSignature => "e2ee_bad_signature",
    E2eeDecryptFailed => "e2ee_decrypt_failed",
    E2eeWrongRoom => "e2ee_wrong_room",
    E2eeUnknownEpoch => "e2ee_unknown_epoch",
    E2eeNotAMember => "e2ee_not_a_member",
    E2eeReplay => "e2ee_replay",
    E2eeDeviceKeyChanged => "e2ee_device_key_changed",
    E2eeEpochExpired => "e2ee_epoch_expired",
    E2eeWrongRecipient => "e2ee_wrong_recipient",
    E2eeWrongSender => "e2ee_wrong_sender",
    E2eeMembersMismatch => "e2ee_members_mismatch",
    E2eeContentTooLarge => "e2ee_content_too_large",
    E2eeInvalidKey => "e2ee_invalid_key",
    E2eeNoEpoch => "e2ee_no_epoch",
}

/// A `Display` arm's message, written in full by every build that can
/// construct the error: native builds, and the wasm module built with
/// `$feature`. One `match` links the arms of every variant into each wasm
/// module, but each module constructs only its own errors: the base module
/// (`connection`) never an E2EE one, the E2EE module (`e2ee`) never a
/// protocol, connection or chat one, and neither of them one of the REST
/// request checks that only servers make (`native`). There the other arms
/// write the code alone, which keeps 0.7 KB gzip out of each module
/// (bench/RESULTS.md).
macro_rules! message_in {
    (native, $error:ident, $f:ident, $message:expr) => {{
        #[cfg(not(target_arch = "wasm32"))]
        let written = $message;
        #[cfg(target_arch = "wasm32")]
        let written = $error.code_only($f);
        written
    }};
    ($feature:literal, $error:ident, $f:ident, $message:expr) => {{
        #[cfg(any(feature = $feature, not(target_arch = "wasm32")))]
        let written = $message;
        #[cfg(not(any(feature = $feature, not(target_arch = "wasm32"))))]
        let written = $error.code_only($f);
        written
    }};
}

impl Error {
    /// The code as the whole message (see `message_in!`). Not inlined, so
    /// the arms that call it merge into one block instead of a copy of
    /// `code()` each.
    #[cfg(target_arch = "wasm32")]
    #[inline(never)]
    fn code_only(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Error {
    // A module's code-only arms leave their fields unread.
    #[cfg_attr(target_arch = "wasm32", allow(unused_variables))]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidChannelName { name, reason } => message_in!("connection", self, f, {
                write!(f, "unable to use channel name {}; {reason}", quoted(name))
            }),
            Error::InvalidRoomId { room_id, reason } => message_in!("connection", self, f, {
                write!(
                    f,
                    "unable to build a channel name for room id {}; {reason}",
                    quoted(room_id)
                )
            }),
            Error::WrongChannelKind { channel, expected } => message_in!("connection", self, f, {
                write!(
                    f,
                    "unable to authorize channel {channel_q}; it is not a {expected} channel",
                    channel_q = quoted(channel)
                )
            }),
            Error::InvalidSocketId => message_in!("connection", self, f, {
                f.write_str("unable to authorize; the socket id is not of the form \"1234.5678\"")
            }),
            Error::MalformedFrame { reason } => message_in!("connection", self, f, {
                write!(f, "unable to decode frame; {reason}")
            }),
            Error::InvalidEventData { event, reason } => message_in!("connection", self, f, {
                write!(
                    f,
                    "unable to read event {event_q}; {reason}",
                    event_q = quoted(event)
                )
            }),
            Error::InvalidUserData => message_in!("connection", self, f, {
                f.write_str("unable to authorize the user; the user id must be a non-empty string")
            }),
            Error::AuthKeyMismatch => message_in!("connection", self, f, {
                f.write_str("unable to accept the signature; it was signed with another app key (check that client and server use the same key)")
            }),
            Error::InvalidSignature => message_in!("connection", self, f, {
                f.write_str("unable to verify the signature; it is malformed or does not match")
            }),
            Error::MissingAuthParam { name } => message_in!(native, self, f, {
                write!(
                    f,
                    "unable to verify the request; the {name} parameter is missing"
                )
            }),
            Error::UnsupportedAuthVersion => message_in!(native, self, f, {
                f.write_str("unable to verify the request; only auth_version 1.0 is supported")
            }),
            Error::TimestampOutOfWindow => message_in!(native, self, f, {
                write!(f, "unable to verify the request; auth_timestamp is more than {} seconds away from the server clock", crate::protocol::AUTH_TIMESTAMP_WINDOW_SECS)
            }),
            Error::BodyMd5Mismatch => message_in!(native, self, f, {
                f.write_str("unable to verify the request; body_md5 does not match the body")
            }),
            Error::InvalidAuthResponse { reason } => message_in!("connection", self, f, {
                write!(f, "unable to use the auth endpoint's response; {reason}")
            }),
            Error::ClientEventsDisabled { event } => {
                message_in!("connection", self, f, {
                    write!(f, "unable to trigger event {event_q}; client events are disabled in the options", event_q = quoted(event))
                })
            }
            Error::InvalidEventName { event, reason } => message_in!("connection", self, f, {
                write!(
                    f,
                    "unable to trigger event {event_q}; {reason}",
                    event_q = quoted(event)
                )
            }),
            Error::NotSubscribed { channel, event } => message_in!("connection", self, f, {
                write!(f, "unable to trigger event {event_q} on channel {channel_q}; the channel is not subscribed (or the broker has not acknowledged the subscription yet)", event_q = quoted(event), channel_q = quoted(channel))
            }),
            Error::InvalidConfig { reason } => message_in!("connection", self, f, {
                write!(f, "unable to create the connection; {reason}")
            }),
            Error::PayloadTooLarge { event, size, limit } => message_in!("connection", self, f, {
                write!(f, "unable to trigger event {event_q}; data has {size} bytes, more than the limit of {limit}", event_q = quoted(event))
            }),
            Error::InvalidMessage { reason } => message_in!("connection", self, f, {
                write!(f, "unable to read the message; {reason}")
            }),
            Error::InvalidText { reason } => message_in!("connection", self, f, {
                write!(f, "unable to send the message; {reason}")
            }),
            Error::TextTooLarge { size, limit } => message_in!("connection", self, f, {
                write!(f, "unable to send the message; the text has {size} UTF-8 bytes, more than the limit of {limit}")
            }),
            Error::InvalidClientId { client_id, reason } => message_in!("connection", self, f, {
                write!(
                    f,
                    "unable to send message {client_id_q}; {reason}",
                    client_id_q = quoted(client_id)
                )
            }),
            Error::UnknownClientId { client_id } => message_in!("connection", self, f, {
                write!(f, "unable to retry message {client_id_q}; no failed message of this room has that client id", client_id_q = quoted(client_id))
            }),
            Error::E2eeUnsupportedVersion { what, version } => {
                message_in!("e2ee", self, f, {
                    write!(f, "unable to read the {what}; format version {version} is not supported (only 1)")
                })
            }
            Error::E2eeMalformed { reason } => message_in!("e2ee", self, f, {
                write!(f, "unable to read the encrypted object; {reason}")
            }),
            Error::E2eeBadSignature { what } => message_in!("e2ee", self, f, {
                write!(
                    f,
                    "unable to verify the {what}; the signature does not match"
                )
            }),
            Error::E2eeDecryptFailed => message_in!("e2ee", self, f, {
                f.write_str("unable to decrypt; the ciphertext, nonce or associated data was altered or the key is wrong")
            }),
            Error::E2eeWrongRoom { expected, actual } => message_in!("e2ee", self, f, {
                write!(f, "unable to open the encrypted object in room {expected_q}; it belongs to room {actual_q}", expected_q = quoted(expected), actual_q = quoted(actual))
            }),
            Error::E2eeUnknownEpoch { epoch } => message_in!("e2ee", self, f, {
                write!(
                    f,
                    "unable to decrypt; this device holds no key for epoch {epoch}"
                )
            }),
            Error::E2eeNotAMember {
                user_id,
                device_id,
                epoch,
            } => message_in!("e2ee", self, f, {
                write!(f, "unable to accept device {device_id_q} of user {user_id_q}; it is not a member of epoch {epoch}", device_id_q = quoted(device_id), user_id_q = quoted(user_id))
            }),
            Error::E2eeReplay {
                user_id,
                message_id,
            } => message_in!("e2ee", self, f, {
                write!(f, "unable to accept message {message_id_q} of user {user_id_q}; it was already opened (replay)", message_id_q = quoted(message_id), user_id_q = quoted(user_id))
            }),
            Error::E2eeDeviceKeyChanged { user_id, device_id } => message_in!("e2ee", self, f, {
                write!(f, "unable to trust device {device_id_q} of user {user_id_q}; its keys changed since it was first seen", device_id_q = quoted(device_id), user_id_q = quoted(user_id))
            }),
            Error::E2eeEpochExpired { epoch } => message_in!("e2ee", self, f, {
                write!(f, "unable to accept a message of epoch {epoch}; it arrived after the late-message window of a newer epoch")
            }),
            Error::E2eeWrongRecipient { device_id } => message_in!("e2ee", self, f, {
                write!(
                    f,
                    "unable to open the key share; it is addressed to device {device_id_q}",
                    device_id_q = quoted(device_id)
                )
            }),
            Error::E2eeWrongSender { user_id, device_id } => message_in!("e2ee", self, f, {
                write!(f, "unable to open the key share; it names sender device {device_id_q} of user {user_id_q}, not the record given", device_id_q = quoted(device_id), user_id_q = quoted(user_id))
            }),
            Error::E2eeMembersMismatch { epoch } => message_in!("e2ee", self, f, {
                write!(f, "unable to install epoch {epoch}; the member devices differ from those its creator shared it with")
            }),
            Error::E2eeContentTooLarge { size, limit } => message_in!("e2ee", self, f, {
                write!(f, "unable to encrypt the message; the content has {size} bytes, more than the limit of {limit}")
            }),
            Error::E2eeInvalidKey { reason } => message_in!("e2ee", self, f, {
                write!(f, "unable to use the public key; {reason}")
            }),
            Error::E2eeNoEpoch { room_id } => message_in!("e2ee", self, f, {
                write!(f, "unable to encrypt for room {room_id_q}; it has no epoch yet (create one first)", room_id_q = quoted(room_id))
            }),
        }
    }
}

impl std::error::Error for Error {}

/// `text` as a JSON string literal: the quoting of the names in the channel
/// errors, chosen because TypeScript's `JSON.stringify` gives the same bytes
/// for every string, so the TS copies of the channel rules can word their
/// errors exactly as the core does (tests/vectors/channels.json). Rust's `{:?}`
/// escapes differently (`'\u{7f}'`, zero-width characters), which no TS
/// code can follow without Unicode tables.
pub(crate) fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    crate::protocol::push_json_string(&mut out, text);
    out
}

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
            Error::E2eeUnsupportedVersion {
                what: "envelope",
                version: "2".into(),
            },
            Error::E2eeMalformed { reason: s() },
            Error::E2eeBadSignature { what: "envelope" },
            Error::E2eeDecryptFailed,
            Error::E2eeWrongRoom {
                expected: s(),
                actual: s(),
            },
            Error::E2eeUnknownEpoch { epoch: 2 },
            Error::E2eeNotAMember {
                user_id: s(),
                device_id: s(),
                epoch: 1,
            },
            Error::E2eeReplay {
                user_id: s(),
                message_id: s(),
            },
            Error::E2eeDeviceKeyChanged {
                user_id: s(),
                device_id: s(),
            },
            Error::E2eeEpochExpired { epoch: 1 },
            Error::E2eeWrongRecipient { device_id: s() },
            Error::E2eeWrongSender {
                user_id: s(),
                device_id: s(),
            },
            Error::E2eeMembersMismatch { epoch: 1 },
            Error::E2eeContentTooLarge {
                size: 4096,
                limit: 4095,
            },
            Error::E2eeInvalidKey { reason: s() },
            Error::E2eeNoEpoch { room_id: s() },
        ]
    }

    #[test]
    fn codes_are_distinct_snake_case() {
        let codes: HashSet<&str> = ALL_CODES.iter().copied().collect();
        assert_eq!(codes.len(), ALL_CODES.len(), "a code is listed twice");
        for code in codes {
            assert!(
                code.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{code}"
            );
        }
    }

    /// The message test below runs over `all()`; this keeps that list complete.
    #[test]
    fn the_examples_cover_every_code() {
        let examples: Vec<&str> = all().iter().map(Error::code).collect();
        assert_eq!(examples, ALL_CODES);
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
            reason: "\"#\" is not allowed".into(),
        };
        assert_eq!(
            error.to_string(),
            "unable to use channel name \"bad#name\"; \"#\" is not allowed"
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
