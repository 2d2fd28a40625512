//! The JSON of the E2EE format (docs/e2ee.md): read with the core's shared
//! reader ([`crate::json::Json`]) and written by hand, so that the E2EE wasm
//! module carries no serde_json.
//!
//! The writer writes what serde_json's `json!` wrote: compact, strings escaped
//! by [`push_json_string`], and object keys in byte order (serde_json's map is
//! a `BTreeMap` without its `preserve_order` feature), which every caller
//! follows by hand. tests/e2ee.rs compares the format's objects byte for byte.

use std::borrow::Cow;

use zeroize::{Zeroize, Zeroizing};

use super::encoding::push_b64u;
pub(crate) use crate::json::Json;
use crate::protocol::push_json_string;

/// Zeroizing the strings a read copied, for values that may hold secrets.
pub(crate) trait ZeroizeCopies {
    /// Zeroizes every string copied out of the text (those that had escapes;
    /// the others borrow from the text), for values that may hold secrets.
    fn zeroize_copies(&mut self);
}

impl ZeroizeCopies for Json<'_> {
    fn zeroize_copies(&mut self) {
        fn zeroize_copy(text: &mut Cow<'_, str>) {
            if let Cow::Owned(copy) = text {
                copy.zeroize();
            }
        }
        match self {
            Json::String(text) => zeroize_copy(text),
            Json::Array(items) => items.iter_mut().for_each(ZeroizeCopies::zeroize_copies),
            Json::Object(members) => {
                for (key, value) in members {
                    zeroize_copy(key);
                    value.zeroize_copies();
                }
            }
            Json::Null | Json::Bool(_) | Json::Number(_) => {}
        }
    }
}

/// Compact JSON text written value by value, in the order given. Callers
/// write object keys in byte order, as serde_json's `json!` did (see the
/// module documentation). The buffer grows by copying into a larger one and
/// zeroizing the old, so text holding secrets (a room state's epoch secrets)
/// leaves no copy behind; [`finish_secret`](Self::finish_secret) keeps the
/// final text zeroized on drop too.
pub(crate) struct JsonWriter {
    text: String,
    /// Whether a value was written at this level, so the next needs a comma.
    after_value: bool,
}

impl JsonWriter {
    /// A writer with room for about `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        JsonWriter {
            text: String::with_capacity(capacity),
            after_value: false,
        }
    }

    /// Makes room for `extra` bytes without leaving a copy of the text behind.
    fn reserve(&mut self, extra: usize) {
        if self.text.capacity() - self.text.len() >= extra {
            return;
        }
        let mut grown =
            String::with_capacity((self.text.len() + extra).max(self.text.capacity() * 2));
        grown.push_str(&self.text);
        drop(Zeroizing::new(std::mem::replace(&mut self.text, grown)));
    }

    /// Writes a value's leading comma (when one precedes it at this level)
    /// and makes room for `extra` bytes after it.
    fn start_value(&mut self, extra: usize) {
        self.reserve(extra + 1);
        if self.after_value {
            self.text.push(',');
        }
        self.after_value = true;
    }

    fn open(&mut self, bracket: char) -> &mut Self {
        self.start_value(1);
        self.text.push(bracket);
        self.after_value = false;
        self
    }

    fn close(&mut self, bracket: char) -> &mut Self {
        self.reserve(1);
        self.text.push(bracket);
        self.after_value = true;
        self
    }

    pub(crate) fn begin_object(&mut self) -> &mut Self {
        self.open('{')
    }

    pub(crate) fn end_object(&mut self) -> &mut Self {
        self.close('}')
    }

    pub(crate) fn begin_array(&mut self) -> &mut Self {
        self.open('[')
    }

    pub(crate) fn end_array(&mut self) -> &mut Self {
        self.close(']')
    }

    /// An object key (a field name of the format: plain ASCII, no escapes);
    /// its value follows.
    pub(crate) fn key(&mut self, key: &str) -> &mut Self {
        self.start_value(key.len() + 3);
        self.text.push('"');
        self.text.push_str(key);
        self.text.push_str("\":");
        self.after_value = false;
        self
    }

    pub(crate) fn string(&mut self, text: &str) -> &mut Self {
        // At most 6 bytes per byte (`\u001f`) and the quotes.
        self.start_value(text.len() * 6 + 2);
        push_json_string(&mut self.text, text);
        self
    }

    pub(crate) fn u64(&mut self, n: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut rest = n;
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.start_value(digits.len() - start);
        for &digit in &digits[start..] {
            self.text.push(char::from(digit));
        }
        self
    }

    /// Bytes as an unpadded base64url string.
    pub(crate) fn base64url(&mut self, bytes: &[u8]) -> &mut Self {
        self.start_value(bytes.len().div_ceil(3) * 4 + 2);
        self.text.push('"');
        push_b64u(&mut self.text, bytes);
        self.text.push('"');
        self
    }

    pub(crate) fn finish(self) -> String {
        self.text
    }

    /// The text, zeroized when dropped.
    pub(crate) fn finish_secret(self) -> Zeroizing<String> {
        Zeroizing::new(self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_compact_text() {
        let mut writer = JsonWriter::with_capacity(0);
        writer
            .begin_object()
            .key("a")
            .begin_array()
            .u64(0)
            .u64(u64::MAX)
            .string("q\"\u{1}")
            .base64url(b"\xfb\xff")
            .begin_object()
            .end_object()
            .end_array()
            .key("b")
            .u64(7)
            .end_object();
        assert_eq!(
            writer.finish(),
            "{\"a\":[0,18446744073709551615,\"q\\\"\\u0001\",\"-_8\",{}],\"b\":7}"
        );
    }
}

/// The writer against serde_json, the implementation it replaces.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod matches_serde_json {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::json::read::matches_serde_json::to_value;

    /// The format's values: strings, non-negative integers, arrays, objects.
    fn format_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<u64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_0-9]{1,12}", inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// Writes a format value; a serde_json map iterates in key order, as
    /// every caller of the writer writes keys.
    fn write(value: &Value, json: &mut JsonWriter) {
        match value {
            Value::Number(n) => {
                json.u64(n.as_u64().expect("a u64"));
            }
            Value::String(text) => {
                json.string(text);
            }
            Value::Array(items) => {
                json.begin_array();
                items.iter().for_each(|item| write(item, json));
                json.end_array();
            }
            Value::Object(map) => {
                json.begin_object();
                for (key, value) in map {
                    json.key(key);
                    write(value, json);
                }
                json.end_object();
            }
            Value::Null | Value::Bool(_) => unreachable!("not in the format"),
        }
    }

    proptest! {
        #[test]
        fn writes_what_serde_json_writes(value in format_value()) {
            let mut json = JsonWriter::with_capacity(0);
            write(&value, &mut json);
            let text = json.finish();
            prop_assert_eq!(&text, &serde_json::to_string(&value).unwrap());
            // And reads back as the same value.
            prop_assert_eq!(to_value(&Json::parse(&text).unwrap()), value);
        }
    }
}
