//! End-to-end encryption of message content: device keys, room epochs, key
//! shares and message envelopes.
//!
//! Filled by the E2EE issue; pure Rust, tested natively and against
//! ../shared/vectors/crypto.
