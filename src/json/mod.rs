//! JSON for the whole core, without serde_json in the wasm modules: a reader
//! that borrows from its text ([`read`], shared with the E2EE format) and an
//! owned [`Value`] for frames, events and chat objects.
//!
//! serde_json was a third of the base wasm module's code (its generic
//! deserializer, the float parsing and formatting tables, its `BTreeMap`), for
//! a protocol whose frames are a small fixed grammar (bench/RESULTS.md, "Size").

pub(crate) mod read;
mod value;

pub(crate) use read::Json;
pub use value::{from_str, Map, Number, ParseError, Value};

/// `text[start..end]` where the caller found both ends beside ASCII bytes
/// (quotes, digits, delimiters), so both are char boundaries. `get`, not
/// indexing: the message of a str indexing panic is formatted with `char` and
/// `Range` `Debug`, ~3.5 KB of wasm that nothing else needs. Out of range
/// (a bug) gives "", never a panic.
pub(crate) fn ascii_slice(text: &str, start: usize, end: usize) -> &str {
    text.get(start..end).unwrap_or_default()
}

/// serde_json's `json!`, giving the core's [`Value`]: the unit tests write
/// their expected values with it.
#[cfg(test)]
macro_rules! json {
    ($($tokens:tt)+) => {
        $crate::json::Value::from(serde_json::json!($($tokens)+))
    };
}
#[cfg(test)]
pub(crate) use json;

/// serde_json's `json!`, giving the core's [`Value`], for the integration
/// tests and the servers' tests (`use domvia_realtime::json_value as json;`).
/// The caller must depend on serde_json.
#[cfg(feature = "serde-json")]
#[doc(hidden)]
#[macro_export]
macro_rules! json_value {
    ($($tokens:tt)+) => {
        $crate::json::Value::from(serde_json::json!($($tokens)+))
    };
}
