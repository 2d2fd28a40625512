//! The wasm boundary: the only module that touches wasm-bindgen and js-sys.
//!
//! Every export converts its arguments once, calls the pure core, and turns a
//! core [`Error`] into a real JS `Error` whose `code` is the core's stable code.

//! Built as two modules (scripts/build): `connection` gates the base exports
//! every app loads, `e2ee` the encryption classes only encrypted rooms load.

#[cfg(feature = "connection")]
use crate::chat::json::push_u64;
use crate::error::Error;
#[cfg(feature = "connection")]
use crate::json::Value;
#[cfg(feature = "connection")]
use crate::protocol::{self, push_json_string, CloseAction};
use wasm_bindgen::prelude::*;

#[cfg(feature = "connection")]
pub mod chat;
#[cfg(feature = "connection")]
pub mod connection;
#[cfg(feature = "e2ee")]
pub mod e2ee;

/// The allocator of both modules: talc, 2 KB gz smaller per module than
/// std's dlmalloc and no slower (bench/RESULTS.md).
// SAFETY: `new_global` requires single-threaded wasm, which these modules are
// without the `atomics` target feature (no shared memory, no threads); with
// it, std's allocator stays.
#[cfg(not(target_feature = "atomics"))]
#[allow(unsafe_code)]
#[global_allocator]
static ALLOCATOR: talc::TalckWasm = unsafe { talc::TalckWasm::new_global() };

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(message: &str);
}

/// Runs when the module is instantiated: a panic is a bug, so report it on the
/// console with its message instead of an opaque `unreachable` trap.
#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| {
        console_error(&format!(
            "domvia-realtime: internal error (please report): {info}"
        ));
    }));
}

/// A JS number of milliseconds or a seq as the core's u64: fractions are
/// dropped, and NaN or negatives (never meaningful here) become 0.
#[cfg(any(feature = "connection", feature = "e2ee"))]
pub(crate) fn to_u64(n: f64) -> u64 {
    if n.is_finite() && n > 0.0 {
        n as u64
    } else {
        0
    }
}

/// Converts a core error into a JS `Error` named `DomViaError` with a `code`.
pub(crate) fn js_error(error: &Error) -> JsValue {
    let js = js_sys::Error::new(&error.to_string());
    js.set_name("DomViaError");
    // Reflect::set on a fresh Error object cannot fail; ignore rather than panic.
    js_sys::Reflect::set(
        &js,
        &JsValue::from_str("code"),
        &JsValue::from_str(error.code()),
    )
    .ok();
    js.into()
}

/// One JSON object written field by field, straight into the text that
/// `JSON.parse` reads on the JS side: the chat session's actions and the
/// connection's notices cross this way. No `Value` tree is built per object,
/// and one `JSON.parse` in the glue replaces a `Reflect.set` import call (and
/// a JS string made from UTF-8) per field.
#[cfg(feature = "connection")]
pub(crate) struct JsonObject<'a> {
    out: &'a mut String,
    empty: bool,
}

#[cfg(feature = "connection")]
impl<'a> JsonObject<'a> {
    /// `{`: an object with no field yet.
    pub(crate) fn open(out: &'a mut String) -> Self {
        out.push('{');
        JsonObject { out, empty: true }
    }

    /// `{"type":kind` — every action, event and notice object starts with its type.
    pub(crate) fn typed(out: &'a mut String, kind: &str) -> Self {
        let mut object = JsonObject::open(out);
        object.str("type", kind);
        object
    }

    /// Writes `"key":` (keys are fixed ASCII names: nothing to escape).
    pub(crate) fn key(&mut self, key: &str) -> &mut String {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
        self.out
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) -> &mut Self {
        let out = self.key(key);
        push_json_string(out, value);
        self
    }

    pub(crate) fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        push_u64(self.key(key), value);
        self
    }

    pub(crate) fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key).push_str(if value { "true" } else { "false" });
        self
    }

    /// A value that is already JSON text.
    pub(crate) fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key).push_str(json);
        self
    }

    /// A string field, left out when `None` (the TS side reads `undefined` as "none").
    pub(crate) fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        if let Some(value) = value {
            self.str(key, value);
        }
        self
    }

    pub(crate) fn end(&mut self) {
        self.out.push('}');
    }
}

#[cfg(feature = "connection")]
/// A JS number (from `JSON.stringify`) as the core's u64, as [`to_u64`] reads
/// one (see [`crate::json::Number::saturating_u64`]).
pub(crate) fn js_number_as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(number) => Some(number.saturating_u64()),
        _ => None,
    }
}

/// A JS value as the core's JSON value, through `JSON.stringify`; `None` for
/// what has no JSON text (`undefined`, functions, symbols, BigInts).
#[cfg(feature = "connection")]
pub(crate) fn json_from_js(value: &JsValue) -> Option<Value> {
    let text = js_sys::JSON::stringify(value).ok()?.as_string()?;
    crate::json::from_str(&text).ok()
}

#[cfg(feature = "connection")]
/// The SDK version.
#[wasm_bindgen]
pub fn version() -> String {
    crate::VERSION.to_owned()
}

#[cfg(feature = "connection")]
/// `private-chat.room.{roomId}`, or `presence-chat.room.{roomId}` when `presence`.
#[wasm_bindgen(js_name = buildChatChannelName)]
pub fn build_chat_channel_name(room_id: &str, presence: bool) -> Result<String, JsValue> {
    protocol::build_chat_channel_name(room_id, presence).map_err(|e| js_error(&e))
}

#[cfg(feature = "connection")]
/// Validates a channel name and returns its kind:
/// `public`, `private`, `presence` or `private-encrypted`.
#[wasm_bindgen(js_name = validateChannelName)]
pub fn validate_channel_name(name: &str) -> Result<String, JsValue> {
    protocol::validate_channel_name(name)
        .map(|kind| kind.as_str().to_owned())
        .map_err(|e| js_error(&e))
}

#[cfg(feature = "connection")]
/// What a client does when the socket closes with `code`:
/// `fail`, `backoff`, `reconnect_now` or `keep_socket`.
#[wasm_bindgen(js_name = closeAction)]
pub fn close_action(code: u16) -> String {
    match protocol::close_action(code) {
        CloseAction::Fail => "fail",
        CloseAction::Backoff => "backoff",
        CloseAction::ReconnectNow => "reconnect_now",
        CloseAction::KeepSocket => "keep_socket",
    }
    .to_owned()
}
