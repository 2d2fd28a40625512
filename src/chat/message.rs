//! Messages as the backend stores them, as the room shows them, and the checks
//! a send passes before it costs a request.

use crate::json::Value;
use serde::{Serialize, Serializer};

use crate::protocol::{hex, Error};

/// The most UTF-8 bytes of text the backend stores (`text_too_large` above).
pub const MAX_TEXT_BYTES: usize = 4000;

/// The most characters of a `client_id` the backend accepts.
pub const MAX_CLIENT_ID_LEN: usize = 64;

/// A message the backend stored: the Message object of `server/backend/API.md`,
/// as history pages, `message.created` events and send responses carry it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredMessage {
    pub message_id: String,
    pub room_id: String,
    /// Per room: 1, 2, 3, ... without gaps, never reused.
    pub seq: u64,
    /// The sender, stamped by the backend from the session.
    pub user_id: String,
    /// Exactly one of `text` and `ciphertext` is set.
    pub text: Option<String>,
    /// An opaque JSON object (end-to-end encrypted rooms) as its compact JSON
    /// text: never looked into here, so it is kept as text, copied and
    /// written out as is (the room hands its messages out often).
    #[serde(serialize_with = "json_text")]
    pub ciphertext: Option<String>,
    /// Server time, milliseconds since the Unix epoch.
    pub sent_at: u64,
    /// The sender's idempotency key: how a pending send finds its stored self.
    pub client_id: String,
}

impl StoredMessage {
    /// Reads a backend Message object. Anything else (a missing field, a wrong
    /// type, a seq of 0, both or neither of text and ciphertext) is
    /// `invalid_message`: the data crossed a network, so it is never trusted
    /// enough to panic on. A missing field reads as null; unknown ones are
    /// ignored.
    pub fn from_json(value: Value) -> Result<StoredMessage, Error> {
        // Fields are taken out of the map one by one rather than through a
        // derived Deserialize: in wasm that saves a generic deserializer.
        let Value::Object(mut map) = value else {
            return Err(invalid("it is not an object"));
        };
        let mut take = |field: &str| map.remove(field).unwrap_or(Value::Null);
        let message = StoredMessage {
            message_id: non_empty_string(take("message_id"), "message_id")?,
            room_id: non_empty_string(take("room_id"), "room_id")?,
            seq: integer(&take("seq"), "seq")?,
            user_id: non_empty_string(take("user_id"), "user_id")?,
            text: match take("text") {
                Value::Null => None,
                Value::String(text) => Some(text),
                _ => return Err(invalid("text is not a string")),
            },
            ciphertext: match take("ciphertext") {
                Value::Null => None,
                object @ Value::Object(_) => Some(object.to_string()),
                _ => return Err(invalid("ciphertext is not an object")),
            },
            sent_at: integer(&take("sent_at"), "sent_at")?,
            client_id: non_empty_string(take("client_id"), "client_id")?,
        };
        if message.seq == 0 {
            return Err(invalid("seq is 0 (seqs start at 1)"));
        }
        if message.text.is_some() == message.ciphertext.is_some() {
            return Err(invalid("it must have exactly one of text and ciphertext"));
        }
        Ok(message)
    }
}

fn invalid(reason: &str) -> Error {
    Error::InvalidMessage {
        reason: reason.to_owned(),
    }
}

fn non_empty_string(value: Value, field: &str) -> Result<String, Error> {
    match value {
        Value::String(s) if !s.is_empty() => Ok(s),
        _ => Err(invalid(&format!("{field} is not a non-empty string"))),
    }
}

/// A non-negative integer within 2^53, the range a JS number holds exactly.
/// JS numbers may arrive as floats (`7.0`); whole ones are accepted.
fn integer(value: &Value, field: &str) -> Result<u64, Error> {
    const MAX_SAFE: u64 = (1 << 53) - 1;
    let whole = match value {
        Value::Number(n) => n.as_whole_u64(),
        _ => None,
    };
    whole
        // Beyond 2^53 a JS number is inexact, and the message could not be
        // handed back to JS: refused here rather than failing later.
        .filter(|n| *n <= MAX_SAFE)
        .ok_or_else(|| invalid(&format!("{field} is not an integer from 0 to 2^53 - 1")))
}

/// Where a message is on its way to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Sent (or being re-sent) and not yet confirmed.
    Sending,
    /// Stored by the backend. Final: a sent message never goes back.
    Sent,
    /// Refused by the backend (a 4xx); `retry` makes it `Sending` again.
    Failed,
}

/// A message as the room shows it: a stored one (`status` Sent) or one of my
/// pending sends (`message_id` and `seq` None until the backend stores it).
///
/// Serialized with snake_case fields: `message_id` and `seq` are null for a
/// pending message, `ciphertext` is left out when absent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatMessage {
    pub message_id: Option<String>,
    pub room_id: String,
    pub seq: Option<u64>,
    pub user_id: String,
    pub text: Option<String>,
    /// The compact JSON text of the object (see [`StoredMessage::ciphertext`]).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "json_text")]
    pub ciphertext: Option<String>,
    /// Server time when stored; the local send time while pending.
    pub sent_at: u64,
    pub client_id: String,
    pub status: DeliveryStatus,
}

impl From<&StoredMessage> for ChatMessage {
    fn from(m: &StoredMessage) -> ChatMessage {
        ChatMessage {
            message_id: Some(m.message_id.clone()),
            room_id: m.room_id.clone(),
            seq: Some(m.seq),
            user_id: m.user_id.clone(),
            text: m.text.clone(),
            ciphertext: m.ciphertext.clone(),
            sent_at: m.sent_at,
            client_id: m.client_id.clone(),
            status: DeliveryStatus::Sent,
        }
    }
}

/// Checks text as the backend does (1 to 4000 UTF-8 bytes; tab, CR and LF
/// are the only control characters allowed), so a message the backend would
/// refuse fails at once, without a request and without a 'failed' bubble.
pub fn validate_text(text: &str) -> Result<(), Error> {
    if text.is_empty() {
        return Err(Error::InvalidText {
            reason: "the text is empty".into(),
        });
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(Error::TextTooLarge {
            size: text.len(),
            limit: MAX_TEXT_BYTES,
        });
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        // A control character is at most U+009F, so its code point is one
        // byte: written from the hex table rather than with `{:04X}`, whose
        // formatting code would be in the wasm for this message alone.
        let code = hex::encode(&[u8::try_from(c).unwrap_or(u8::MAX)]).to_ascii_uppercase();
        return Err(Error::InvalidText {
            reason: format!(
                "the text contains the control character U+00{code} (only tab, CR and LF are allowed)"
            ),
        });
    }
    Ok(())
}

/// Checks a client id as the backend does: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn validate_client_id(client_id: &str) -> Result<(), Error> {
    let reason = if client_id.is_empty() {
        "the client id is empty"
    } else if client_id.len() > MAX_CLIENT_ID_LEN {
        "the client id is longer than 64 characters"
    } else if !client_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        "the client id may only contain A-Z, a-z, 0-9, '_' and '-'"
    } else {
        return Ok(());
    };
    Err(Error::InvalidClientId {
        client_id: client_id.to_owned(),
        reason: reason.to_owned(),
    })
}

/// Serializes JSON text held as a string as the JSON value it is (the
/// `Serialize` impls are the reference the hand-written writer is tested
/// against, chat/json.rs).
fn json_text<S: Serializer>(text: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    let value: Option<Value> = text
        .as_deref()
        .map(crate::json::from_str)
        .transpose()
        .map_err(serde::ser::Error::custom)?;
    value.serialize(serializer)
}
