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

/// The order that sorts `len` items by `compare` (indices into them), equal
/// items kept in their order. Every sort of this module goes through this one
/// function, a bottom-up merge sort written out here: core's
/// `sort_unstable_by` linked its quicksort (with pivot selection, small-sort
/// and a total-order check, 3 KB of wasm) for lists of member devices that
/// are at most a few thousand long.
pub(crate) fn sorted_order(
    len: usize,
    compare: &dyn Fn(usize, usize) -> std::cmp::Ordering,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut merged = vec![0; len];
    let mut width = 1;
    while width < len {
        // Merges each pair of neighbouring sorted runs of `width` into `merged`.
        let mut start = 0;
        while start < len {
            let middle = len.min(start + width);
            let end = len.min(middle + width);
            let (mut left, mut right) = (start, middle);
            for slot in &mut merged[start..end] {
                let take_left =
                    right == end || (left < middle && compare(order[left], order[right]).is_le());
                if take_left {
                    *slot = order[left];
                    left += 1;
                } else {
                    *slot = order[right];
                    right += 1;
                }
            }
            start = end;
        }
        std::mem::swap(&mut order, &mut merged);
        width *= 2;
    }
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

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::sorted_order;
    use proptest::prelude::*;

    proptest! {
        /// The order is the one std's stable sort gives: sorted, and equal
        /// items (few distinct keys here, so many ties) in their order.
        #[test]
        fn sorts_as_a_stable_sort_does(keys in proptest::collection::vec(0u8..8, 0..200)) {
            let order = sorted_order(keys.len(), &|a, b| keys[a].cmp(&keys[b]));
            let mut expected: Vec<usize> = (0..keys.len()).collect();
            expected.sort_by_key(|&i| keys[i]);
            prop_assert_eq!(order, expected);
        }
    }
}
