//! Envelope and key share opening past the JSON layer, with fixed keys (the
//! known-answer vectors'): a message sealed by a room member from fuzzed
//! content, kind, message id and nonce, or one of the vectors' key shares,
//! then edited as text. Unedited, it opens to exactly what was sealed;
//! edited, it never panics, and whatever still opens is exactly the
//! original (the signature covers every field).
#![no_main]

#[path = "common/vectors.rs"]
mod vectors;

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use domvia_realtime::e2ee::{Envelope, KeyShare};
use libfuzzer_sys::fuzz_target;

fn fixed() -> &'static vectors::Vectors {
    static VECTORS: OnceLock<vectors::Vectors> = OnceLock::new();
    VECTORS.get_or_init(vectors::load)
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Set { at: u16, byte: u8 },
    Insert { at: u16, text: String },
    Remove { at: u16, len: u8 },
}

#[derive(Arbitrary, Debug)]
enum Sealed {
    Message {
        sender: u8,
        message_id: String,
        kind: String,
        content: Vec<u8>,
        nonce: [u8; 12],
    },
    Share {
        recipient: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    sealed: Sealed,
    edits: Vec<Edit>,
    sent_at_ms: u64,
}

fn edit(text: &str, edits: &[Edit]) -> Option<String> {
    let mut bytes = text.as_bytes().to_vec();
    for edit in edits.iter().take(8) {
        let at = |at: u16| usize::from(at) % (bytes.len() + 1);
        match edit {
            Edit::Set { at: i, byte } => {
                let i = at(*i);
                if i < bytes.len() {
                    bytes[i] = *byte;
                }
            }
            Edit::Insert { at: i, text } => {
                let i = at(*i);
                bytes.splice(i..i, text.bytes());
            }
            Edit::Remove { at: i, len } => {
                let i = at(*i);
                let end = (i + usize::from(*len)).min(bytes.len());
                bytes.drain(i..end);
            }
        }
    }
    String::from_utf8(bytes).ok()
}

fuzz_target!(|input: Input| {
    let v = fixed();
    match &input.sealed {
        Sealed::Message {
            sender,
            message_id,
            kind,
            content,
            nonce,
        } => {
            let sender = &v.devices[usize::from(*sender) % v.devices.len()];
            let Ok(envelope) =
                Envelope::seal_with_nonce(&v.epoch, sender, message_id, kind, content, *nonce)
            else {
                return;
            };
            let text = envelope.to_json_string();
            let Some(edited) = edit(&text, &input.edits) else {
                return;
            };
            let Ok(read) = Envelope::from_json_str(&edited) else {
                assert!(edited != text, "a sealed envelope does not read back");
                return;
            };
            let mut room = v.bob_room.clone();
            match room.open(&read, input.sent_at_ms, "m1") {
                Ok(opened) => {
                    assert_eq!(read, envelope, "an edited envelope opened");
                    assert_eq!(opened.content, *content);
                    assert_eq!(opened.kind, *kind);
                    assert_eq!(opened.message_id, *message_id);
                    assert_eq!(opened.sender_user_id, sender.user_id());
                    assert_eq!(opened.sender_device_id, sender.device_id());
                }
                Err(err) => assert!(read != envelope, "a sealed envelope does not open: {err}"),
            }
        }
        Sealed::Share { recipient } => {
            let at = usize::from(*recipient) % v.shares.len();
            let original = KeyShare::from_json_str(&v.shares[at]).expect("the vector share reads");
            let Some(edited) = edit(&v.shares[at], &input.edits) else {
                return;
            };
            let Ok(share) = KeyShare::from_json_str(&edited) else {
                return;
            };
            match share.open(&v.devices[at], &v.records[0]) {
                Ok(key) => {
                    assert_eq!(share, original, "an edited key share opened");
                    assert_eq!(key.secret(), v.epoch.secret());
                    assert_eq!(key.epoch(), v.epoch.epoch());
                }
                Err(err) => assert!(share != original, "the vector share does not open: {err}"),
            }
        }
    }
});
