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

/// `text.split_once(..)` at the first byte that `is_separator` accepts, an
/// ASCII one, by a byte scan: str's `split_once`, `rsplit_once` and `split`
/// with char patterns linked their char searchers and `memchr` into the wasm
/// (0.5 KB gz) for the few places that split at a `.`, a `:` or an exponent.
pub(crate) fn split_once_ascii(
    text: &str,
    is_separator: impl Fn(u8) -> bool,
) -> Option<(&str, &str)> {
    let at = text.bytes().position(is_separator)?;
    Some((
        ascii_slice(text, 0, at),
        ascii_slice(text, at + 1, text.len()),
    ))
}

/// `text.rsplit_once(separator)` for an ASCII separator (see [`split_once_ascii`]).
pub(crate) fn rsplit_once_ascii(text: &str, separator: u8) -> Option<(&str, &str)> {
    let at = text.bytes().rposition(|byte| byte == separator)?;
    Some((
        ascii_slice(text, 0, at),
        ascii_slice(text, at + 1, text.len()),
    ))
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
