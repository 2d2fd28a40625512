//! Channel names: kinds, validation, and the chat room naming scheme.

use super::Error;
use crate::error::quoted;

/// The longest channel name the protocol allows, in characters.
pub const MAX_CHANNEL_NAME_LEN: usize = 200;

/// The prefix of a private chat room channel: `private-chat.room.{roomId}`.
pub const CHAT_PRIVATE_CHANNEL_PREFIX: &str = "private-chat.room.";

/// The prefix of a presence chat room channel: `presence-chat.room.{roomId}`.
pub const CHAT_PRESENCE_CHANNEL_PREFIX: &str = "presence-chat.room.";

const PRIVATE_ENCRYPTED_PREFIX: &str = "private-encrypted-";
const PRIVATE_PREFIX: &str = "private-";
const PRESENCE_PREFIX: &str = "presence-";

/// The kind of a channel, given by the prefix of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// No prefix: anyone may subscribe, no auth.
    Public,
    /// `private-`: subscribing needs a signature from the app server.
    Private,
    /// `presence-`: private, plus a member list with user ids stamped by the broker.
    Presence,
    /// `private-encrypted-`: Pusher's end-to-end encrypted channels.
    PrivateEncrypted,
}

impl ChannelKind {
    /// The kind of channel `name`, by prefix alone (the name is not validated).
    pub fn of(name: &str) -> ChannelKind {
        // `private-encrypted-` also starts with `private-`, so it goes first.
        if name.starts_with(PRIVATE_ENCRYPTED_PREFIX) {
            ChannelKind::PrivateEncrypted
        } else if name.starts_with(PRIVATE_PREFIX) {
            ChannelKind::Private
        } else if name.starts_with(PRESENCE_PREFIX) {
            ChannelKind::Presence
        } else {
            ChannelKind::Public
        }
    }

    /// The kind as a lowercase word: `public`, `private`, `presence`, `private-encrypted`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Public => "public",
            ChannelKind::Private => "private",
            ChannelKind::Presence => "presence",
            ChannelKind::PrivateEncrypted => "private-encrypted",
        }
    }

    /// The name prefix of this kind (empty for public channels).
    pub fn prefix(self) -> &'static str {
        match self {
            ChannelKind::Public => "",
            ChannelKind::Private => PRIVATE_PREFIX,
            ChannelKind::Presence => PRESENCE_PREFIX,
            ChannelKind::PrivateEncrypted => PRIVATE_ENCRYPTED_PREFIX,
        }
    }

    /// True for every kind that needs a signature to subscribe.
    pub fn requires_auth(self) -> bool {
        self != ChannelKind::Public
    }
}

/// True for the characters a channel name may contain: `[A-Za-z0-9_\-=@,.;]`.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | '@' | ',' | '.' | ';')
}

/// Describes the first character outside the allowed set, if any (quoted as
/// JSON, and counted in Unicode scalar values as JavaScript's `for..of` does).
fn first_bad_char(text: &str) -> Option<String> {
    text.chars()
        .enumerate()
        .find(|(_, c)| !is_name_char(*c))
        .map(|(i, c)| {
            format!(
                "{} at position {i} is not allowed (only A-Z a-z 0-9 _ - = @ , . ;)",
                quoted(c.encode_utf8(&mut [0; 4]))
            )
        })
}

/// Checks a channel name against the protocol's rules and returns its kind.
///
/// A valid name has 1 to 200 characters from `[A-Za-z0-9_\-=@,.;]`, and a name
/// with a kind prefix has something after the prefix (`private-` alone is not a
/// channel).
pub fn validate_channel_name(name: &str) -> Result<ChannelKind, Error> {
    let invalid = |reason: String| Error::InvalidChannelName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    if let Some(reason) = first_bad_char(name) {
        return Err(invalid(reason));
    }
    // Only ASCII is left, so bytes are characters.
    if name.len() > MAX_CHANNEL_NAME_LEN {
        return Err(invalid(format!(
            "it has {} characters, more than {MAX_CHANNEL_NAME_LEN}",
            name.len()
        )));
    }
    let kind = ChannelKind::of(name);
    if name.len() == kind.prefix().len() {
        return Err(invalid(format!(
            "nothing follows the {} prefix",
            crate::error::quoted(kind.prefix())
        )));
    }
    Ok(kind)
}

/// Builds the channel name of a chat room: `private-chat.room.{room_id}`, or
/// `presence-chat.room.{room_id}` when `presence` is true.
///
/// The room id is validated first, so the result is always a valid channel name
/// and [`chat_room_id`] gives the room id back.
pub fn build_chat_channel_name(room_id: &str, presence: bool) -> Result<String, Error> {
    let invalid = |reason: String| Error::InvalidRoomId {
        room_id: room_id.to_owned(),
        reason,
    };
    if room_id.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    if let Some(reason) = first_bad_char(room_id) {
        return Err(invalid(reason));
    }
    let prefix = if presence {
        CHAT_PRESENCE_CHANNEL_PREFIX
    } else {
        CHAT_PRIVATE_CHANNEL_PREFIX
    };
    let max = MAX_CHANNEL_NAME_LEN - prefix.len();
    if room_id.len() > max {
        return Err(invalid(format!(
            "it has {} characters, more than the {max} that fit in a {} channel name",
            room_id.len(),
            if presence { "presence" } else { "private" }
        )));
    }
    Ok(format!("{prefix}{room_id}"))
}

/// The room id and kind of a chat room channel name: the inverse of
/// [`build_chat_channel_name`].
///
/// Strict on purpose: the app server uses it to find the room whose membership
/// to check before signing a subscription. It answers only for a valid channel
/// name that starts with exactly `private-chat.room.` or `presence-chat.room.`
/// followed by a non-empty id; the id is the whole rest of the name, so two
/// different channel names of one kind never map to the same room id.
pub fn chat_room_id(channel: &str) -> Option<(&str, ChannelKind)> {
    let kind = validate_channel_name(channel).ok()?;
    let prefix = match kind {
        ChannelKind::Private => CHAT_PRIVATE_CHANNEL_PREFIX,
        ChannelKind::Presence => CHAT_PRESENCE_CHANNEL_PREFIX,
        ChannelKind::Public | ChannelKind::PrivateEncrypted => return None,
    };
    let room_id = channel.strip_prefix(prefix)?;
    if room_id.is_empty() {
        return None;
    }
    Some((room_id, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_by_prefix() {
        assert_eq!(ChannelKind::of("chat"), ChannelKind::Public);
        assert_eq!(ChannelKind::of("private-a"), ChannelKind::Private);
        assert_eq!(ChannelKind::of("presence-a"), ChannelKind::Presence);
        assert_eq!(
            ChannelKind::of("private-encrypted-a"),
            ChannelKind::PrivateEncrypted
        );
        assert_eq!(ChannelKind::of("private-encrypted"), ChannelKind::Private);
        assert_eq!(ChannelKind::of("Private-a"), ChannelKind::Public);
        assert_eq!(ChannelKind::of("privatea"), ChannelKind::Public);
        assert_eq!(ChannelKind::PrivateEncrypted.as_str(), "private-encrypted");
        assert_eq!(ChannelKind::Public.as_str(), "public");
        assert!(!ChannelKind::Public.requires_auth());
        assert!(ChannelKind::Presence.requires_auth());
    }

    #[test]
    fn validates_names() {
        assert_eq!(validate_channel_name("a"), Ok(ChannelKind::Public));
        assert_eq!(
            validate_channel_name("private-chat.room.a_b-c=d@e,f.g;h"),
            Ok(ChannelKind::Private)
        );
        assert_eq!(
            validate_channel_name("presence-x"),
            Ok(ChannelKind::Presence)
        );
        assert_eq!(
            validate_channel_name("private-encrypted-x"),
            Ok(ChannelKind::PrivateEncrypted)
        );
        for bad in [
            "",
            "private-",
            "presence-",
            "private-encrypted-",
            "a b",
            "a#",
            "é",
            "a/b",
            "a:b",
        ] {
            let err = validate_channel_name(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_channel_name", "{bad:?}");
        }
    }

    #[test]
    fn length_limit_is_200_characters() {
        let max = "a".repeat(200);
        assert_eq!(validate_channel_name(&max), Ok(ChannelKind::Public));
        assert!(validate_channel_name(&"a".repeat(201)).is_err());
        // 200 multi-byte characters are rejected for the characters, not counted as bytes.
        assert!(validate_channel_name(&"é".repeat(100)).is_err());
    }

    #[test]
    fn builds_chat_names() {
        assert_eq!(
            build_chat_channel_name("room-42", false).as_deref(),
            Ok("private-chat.room.room-42")
        );
        assert_eq!(
            build_chat_channel_name("room-42", true).as_deref(),
            Ok("presence-chat.room.room-42")
        );
        for bad in ["", "room 42", "room/42", "röom", "a\"b"] {
            let err = build_chat_channel_name(bad, false).unwrap_err();
            assert_eq!(err.code(), "invalid_room_id", "{bad:?}");
        }
    }

    #[test]
    fn room_id_length_limit_depends_on_prefix() {
        let private_max = 200 - CHAT_PRIVATE_CHANNEL_PREFIX.len();
        let presence_max = 200 - CHAT_PRESENCE_CHANNEL_PREFIX.len();
        let id = "r".repeat(private_max);
        let name = build_chat_channel_name(&id, false).unwrap();
        assert_eq!(name.len(), 200);
        assert!(build_chat_channel_name(&format!("{id}r"), false).is_err());
        assert!(build_chat_channel_name(&"r".repeat(presence_max), true).is_ok());
        assert!(build_chat_channel_name(&"r".repeat(presence_max + 1), true).is_err());
    }

    #[test]
    fn reads_room_ids_strictly() {
        assert_eq!(
            chat_room_id("private-chat.room.room-42"),
            Some(("room-42", ChannelKind::Private))
        );
        assert_eq!(
            chat_room_id("presence-chat.room.a.b"),
            Some(("a.b", ChannelKind::Presence))
        );
        for not_a_room in [
            "private-chat.room.",
            "presence-chat.room.",
            "private-chat.rooms.x",
            "private-chat.roomx",
            "chat.room.x",
            "private-encrypted-chat.room.x",
            "private-chat.room.x y",
            "Private-chat.room.x",
            "private-Chat.room.x",
        ] {
            assert_eq!(chat_room_id(not_a_room), None, "{not_a_room:?}");
        }
        let long = format!("private-chat.room.{}", "r".repeat(183));
        assert_eq!(chat_room_id(&long), None);
    }
}
