//! Room state: messages, ordering, dedup, delivery state, typing, receipts, presence.
//!
//! Filled by the chat-rooms issue; pure Rust, tested natively.
