//! The wasm boundary: the only module that touches wasm-bindgen and js-sys.
//!
//! Every export converts its arguments once, calls the pure core, and turns a
//! core [`Error`] into a real JS `Error` whose `code` is the core's stable code.

//! Built as two modules (scripts/build): `connection` gates the base exports
//! every app loads, `e2ee` the encryption classes only encrypted rooms load.

use crate::error::Error;
#[cfg(feature = "connection")]
use crate::protocol::{self, CloseAction};
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
