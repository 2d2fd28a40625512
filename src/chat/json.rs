//! The JSON text of what the room hands out, written directly: the same text
//! serde_json writes for the `Serialize` impls (tested below), without a
//! generic serializer per type in the wasm build.

use crate::vec_map::VecMap;
use std::fmt::Write;

use super::room::{Applied, OutgoingSend};
use super::{ChatMessage, DeliveryStatus};
use crate::protocol::push_json_string;

pub(crate) fn push_u64(out: &mut String, n: u64) {
    // Writing to a String cannot fail.
    write!(out, "{n}").ok();
}

fn push_optional_string(out: &mut String, text: Option<&str>) {
    match text {
        Some(text) => push_json_string(out, text),
        None => out.push_str("null"),
    }
}

/// `[item, item, ...]`, each written by `write`.
pub(crate) fn push_array<T>(
    out: &mut String,
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut String, T),
) {
    out.push('[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(out, item);
    }
    out.push(']');
}

fn push_strings(out: &mut String, items: &[String]) {
    push_array(out, items, |out, item| push_json_string(out, item));
}

impl DeliveryStatus {
    /// The JSON (and JS) name: `sending`, `sent` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
        }
    }
}

impl ChatMessage {
    /// Appends the message as a JSON object (`ciphertext` left out when absent).
    pub fn push_json(&self, out: &mut String) {
        out.push_str("{\"message_id\":");
        push_optional_string(out, self.message_id.as_deref());
        out.push_str(",\"room_id\":");
        push_json_string(out, &self.room_id);
        out.push_str(",\"seq\":");
        match self.seq {
            Some(seq) => push_u64(out, seq),
            None => out.push_str("null"),
        }
        out.push_str(",\"user_id\":");
        push_json_string(out, &self.user_id);
        out.push_str(",\"text\":");
        push_optional_string(out, self.text.as_deref());
        if let Some(ciphertext) = &self.ciphertext {
            out.push_str(",\"ciphertext\":");
            out.push_str(ciphertext);
        }
        out.push_str(",\"sent_at\":");
        push_u64(out, self.sent_at);
        out.push_str(",\"client_id\":");
        push_json_string(out, &self.client_id);
        out.push_str(",\"status\":\"");
        out.push_str(self.status.as_str());
        out.push_str("\"}");
    }

    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.push_json(&mut out);
        out
    }

    /// A list of messages as a JSON array.
    pub fn list_to_json(messages: &[ChatMessage]) -> String {
        let mut out = String::new();
        push_array(&mut out, messages, |out, m| m.push_json(out));
        out
    }
}

impl Applied {
    /// The result as a JSON object (`catch_up_after` left out when None).
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"added\":");
        push_array(&mut out, &self.added, |out, m| m.push_json(out));
        if let Some(seq) = self.catch_up_after {
            out.push_str(",\"catch_up_after\":");
            push_u64(&mut out, seq);
        }
        out.push_str(",\"typing_stopped\":");
        push_strings(&mut out, &self.typing_stopped);
        out.push('}');
        out
    }
}

impl OutgoingSend {
    /// A list of sends as a JSON array of `{client_id, text}`.
    pub fn list_to_json(sends: &[OutgoingSend]) -> String {
        let mut out = String::new();
        push_array(&mut out, sends, |out, send| {
            out.push_str("{\"client_id\":");
            push_json_string(out, &send.client_id);
            out.push_str(",\"text\":");
            push_json_string(out, &send.text);
            out.push('}');
        });
        out
    }
}

/// Read positions as a JSON object `{user_id: seq}`.
pub fn read_positions_to_json(positions: &VecMap<String, u64>) -> String {
    let mut out = String::from("{");
    for (i, (user_id, seq)) in positions.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(&mut out, user_id);
        out.push(':');
        push_u64(&mut out, *seq);
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(seq: Option<u64>, ciphertext: bool) -> ChatMessage {
        ChatMessage {
            message_id: seq.map(|seq| format!("m_{seq}")),
            room_id: "r \"quoted\"\n".into(),
            seq,
            user_id: "u_ada".into(),
            text: (!ciphertext).then(|| "tab\there \u{1} é 😀 \\".into()),
            ciphertext: ciphertext
                .then(|| json!({"v": 1, "ct": "A\"A", "n": [1.5, null]}).to_string()),
            sent_at: (1 << 53) - 1,
            client_id: "c-1".into(),
            status: if seq.is_some() {
                DeliveryStatus::Sent
            } else {
                DeliveryStatus::Failed
            },
        }
    }

    #[test]
    fn writes_what_serde_json_writes() {
        let messages = vec![
            message(Some(7), false),
            message(None, false),
            message(Some(8), true),
        ];
        for m in &messages {
            assert_eq!(m.to_json(), serde_json::to_string(m).unwrap());
        }
        assert_eq!(
            ChatMessage::list_to_json(&messages),
            serde_json::to_string(&messages).unwrap()
        );
        assert_eq!(ChatMessage::list_to_json(&[]), "[]");
        for catch_up_after in [None, Some(3)] {
            let applied = Applied {
                added: messages.clone(),
                catch_up_after,
                typing_stopped: vec!["u_bob".into(), "u_\"c\"".into()],
            };
            assert_eq!(applied.to_json(), serde_json::to_string(&applied).unwrap());
        }
        let empty = Applied::default();
        assert_eq!(empty.to_json(), serde_json::to_string(&empty).unwrap());
        let sends = vec![
            OutgoingSend {
                client_id: "c-1".into(),
                text: "hi\r\n".into(),
            },
            OutgoingSend {
                client_id: "c-2".into(),
                text: "\u{7f}".into(),
            },
        ];
        assert_eq!(
            OutgoingSend::list_to_json(&sends),
            serde_json::to_string(&sends).unwrap()
        );
        let positions: VecMap<String, u64> = [("u_ada".to_owned(), 9), ("u_\u{0}".to_owned(), 0)]
            .into_iter()
            .collect();
        let model: std::collections::BTreeMap<_, _> = positions.iter().collect();
        assert_eq!(
            read_positions_to_json(&positions),
            serde_json::to_string(&model).unwrap()
        );
        assert_eq!(read_positions_to_json(&VecMap::new()), "{}");
        for status in [
            DeliveryStatus::Sending,
            DeliveryStatus::Sent,
            DeliveryStatus::Failed,
        ] {
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{}\"", status.as_str())
            );
        }
    }
}
