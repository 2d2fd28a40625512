//! End-to-end encryption of message content: device keys, room epochs, key
//! shares and message envelopes.
//!
//! Pure Rust, no IO: randomness comes in as a `rand_core::CryptoRng` (or as
//! explicit bytes for known-answer vectors), time as milliseconds. The format
//! is specified byte for byte in `docs/e2ee.md`; `tests/vectors/e2ee.json`
//! holds known-answer vectors for it.
//!
//! The flow: each device makes [`DeviceKeys`] and publishes its signed
//! [`DeviceRecord`]. A member creates an epoch ([`create_epoch`]) for the
//! room's current member devices and uploads the [`KeyShare`]s; each device
//! opens its own share ([`KeyShare::open`]) and installs the [`EpochKey`] in
//! its [`RoomKeys`] with the member records, then seals and opens
//! [`Envelope`]s. [`KnownDevices`] detects a known device's changed keys;
//! [`fingerprint`] and [`safety_number`] are for verification out of band.

mod device;
mod encoding;
mod envelope;
mod epoch;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod json;
pub mod primitives;
mod room;
pub mod session;

pub use device::{fingerprint, safety_number, DeviceCheck, DeviceKeys, DeviceRecord, KnownDevices};
pub use encoding::{
    b64u_decode, b64u_encode, FORMAT_VERSION, MAX_EPOCH, MAX_ID_BYTES, MAX_KIND_BYTES,
};
pub use envelope::{
    pad, sender_key, unpad, Envelope, MAX_CONTENT_BYTES, MAX_ENVELOPE_BYTES, PADDING_BUCKETS,
};
pub use epoch::{create_epoch, create_epoch_with, members_digest, EpochKey, KeyShare, NewEpoch};
pub use rand_core;
pub use room::{OpenedMessage, RoomKeys, LATE_EPOCH_WINDOW_MS};
pub use session::RoomSession;

/// The order that sorts `len` items by `compare` (indices into them). Every
/// sort of this module goes through this one `sort_unstable_by`: each call
/// site of a generic sort is its own copy of the quicksort, ~1.5 KB of wasm
/// apiece, and the lists sorted here (member devices) are small.
pub(crate) fn sorted_order(
    len: usize,
    compare: &dyn Fn(usize, usize) -> std::cmp::Ordering,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.sort_unstable_by(|&a, &b| compare(a, b));
    order
}

/// The most bytes of a device record as compact JSON (the backend's limit).
pub const MAX_RECORD_BYTES: usize = 4096;

/// The most bytes of a key share as compact JSON (the backend's limit).
pub const MAX_SHARE_BYTES: usize = 4096;

/// Domain-separation labels, the first field of every transcript.
pub mod labels {
    pub const DEVICE_RECORD: &str = "DomVia-E2EE-v1 device record";
    pub const FINGERPRINT: &str = "DomVia-E2EE-v1 fingerprint";
    pub const SAFETY_NUMBER: &str = "DomVia-E2EE-v1 safety number";
    pub const MEMBERS: &str = "DomVia-E2EE-v1 members";
    pub const SHARE: &str = "DomVia-E2EE-v1 key share";
    pub const SHARE_WRAP: &str = "DomVia-E2EE-v1 key share wrap";
    pub const SHARE_SIGNATURE: &str = "DomVia-E2EE-v1 key share signature";
    pub const SENDER_KEY: &str = "DomVia-E2EE-v1 sender key";
    pub const MESSAGE: &str = "DomVia-E2EE-v1 message";
    pub const MESSAGE_SIGNATURE: &str = "DomVia-E2EE-v1 message signature";
}
