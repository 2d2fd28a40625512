//! DomVia Realtime: the SDK core.
//!
//! Everything outside `wasm` is pure Rust with no I/O: events and the current
//! time go in, actions come out. That keeps the core testable natively and lets
//! the browser SDK and the embedded server share one implementation of the
//! Pusher Channels protocol 7 (frames, channel names, signatures).

pub mod chat;
pub mod connection;
#[cfg(feature = "e2ee")]
pub mod e2ee;
pub mod error;
pub mod fifo;
pub mod json;
pub mod protocol;
pub mod vec_map;

/// The browser boundary (public so the browser test suite can call its exports).
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod wasm;

pub use error::{Error, ALL_CODES};

/// The SDK version, as published to npm and reported by the wasm module.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
