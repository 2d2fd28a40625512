//! Chat rooms: messages, their order and delivery, typing and read positions,
//! as one sans-IO state machine per room ([`RoomState`]).
//!
//! The room does no I/O and reads no clock. The SDK feeds it what arrived
//! (history pages, `message.created` events, send responses, typing signals,
//! receipts) with the current time, and the return values say what to do next:
//! a seq to catch up from, whether to send a typing signal, a read position to
//! POST. Timers stay outside: [`RoomState::next_typing_deadline`] says when to
//! call [`RoomState::expire_typing`].
//!
//! # Guarantees
//!
//! - Stored messages are ordered by `seq` whatever order they arrive in, and
//!   each is kept once: a second copy (same seq or same message_id, from a
//!   page, an event or a send response) is dropped. The stored messages are
//!   themselves the dedup set, so memory grows with the history shown and
//!   nothing else.
//! - Each stored message is reported in [`Applied::added`] exactly once in the
//!   room's lifetime.
//! - One of my sends is a pending message ('sending', then 'sent' or
//!   'failed') until its stored self arrives, matched by (my user id,
//!   `client_id`) from the send response or the event, whichever comes first;
//!   then it is replaced, never shown twice. A 'sent' message never goes back.
//! - After the latest page, a stored message beyond a hole sets
//!   [`Applied::catch_up_after`] to the highest contiguous seq: the `after`
//!   cursor of `GET .../messages`.
//! - Read positions and receipts only move forward; my own user id never
//!   appears among the typing users.

pub(crate) mod json;
mod message;
mod reads;
mod room;
mod session;
mod typing;

pub use json::read_positions_to_json;
pub use message::{
    validate_client_id, validate_text, ChatMessage, DeliveryStatus, StoredMessage,
    MAX_CLIENT_ID_LEN, MAX_TEXT_BYTES,
};
pub use room::{Applied, OutgoingSend, RoomState};
pub use session::{
    Action, Opened, Request, RoomEvent, RoomSession, SessionConfig, StaleEpoch, ViewDelta,
    CATCH_UP_PAGE_SIZE, EPOCH_STALE_ATTEMPTS, READ_DEBOUNCE_MS, RETRY_BASE_MS, RETRY_CAP_MS,
    TAIL_CHECK_MS,
};
pub use typing::TypingSettings;
