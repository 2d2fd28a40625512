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
