//! The E2EE readers on arbitrary text:
//! - the hand-written JSON reader accepts exactly what serde_json accepts,
//!   and its compact output reads back to the same value;
//! - envelopes, key shares, device records and persisted state round-trip
//!   through their writers;
//! - what reads as an envelope or key share is opened with fixed keys (the
//!   known-answer vectors'), and never panics.
#![no_main]

#[path = "common/vectors.rs"]
mod vectors;

use std::sync::OnceLock;

use domvia_realtime::e2ee::fuzzing::json_compact;
use domvia_realtime::e2ee::{DeviceRecord, Envelope, KeyShare, KnownDevices, RoomKeys};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn fixed() -> &'static vectors::Vectors {
    static VECTORS: OnceLock<vectors::Vectors> = OnceLock::new();
    VECTORS.get_or_init(vectors::load)
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let v = fixed();

    let serde = serde_json::from_str::<Value>(text);
    let compact = json_compact(text);
    assert_eq!(
        compact.is_some(),
        serde.is_ok(),
        "the E2EE reader and serde_json disagree: {serde:?}"
    );
    if let (Some(compact), Ok(value)) = (&compact, &serde) {
        assert_eq!(
            json_compact(compact).as_ref(),
            Some(compact),
            "compact output is not stable"
        );
        let again: Value = serde_json::from_str(compact).expect("compact output is JSON");
        assert_eq!(&again, value, "compact output reads as another value");
    }

    if let Ok(envelope) = Envelope::from_json_str(text) {
        assert_eq!(
            Envelope::from_json_str(&envelope.to_json_string()).as_ref(),
            Ok(&envelope)
        );
        let mut room = v.bob_room.clone();
        room.open(&envelope, v.epoch.created_at_ms(), "m1").ok();
    }
    if let Ok(share) = KeyShare::from_json_str(text) {
        assert_eq!(
            KeyShare::from_json_str(&share.to_json_string()).as_ref(),
            Ok(&share)
        );
        for me in &v.devices {
            for sender in &v.records {
                share.open(me, sender).ok();
            }
        }
    }
    if let Ok(record) = DeviceRecord::from_json_str(text) {
        assert_eq!(
            DeviceRecord::from_json_str(&record.to_json_string()).as_ref(),
            Ok(&record)
        );
        let mut known = KnownDevices::new();
        known.check(&record).ok();
    }
    if let Ok(room) = RoomKeys::restore_state(text) {
        let state = room.export_state();
        let again = RoomKeys::restore_state(&state).expect("exported state restores");
        assert_eq!(
            *again.export_state(),
            *state,
            "room state does not round-trip"
        );
    }
    if let Ok(known) = KnownDevices::restore_state(text) {
        let state = known.export_state();
        let again = KnownDevices::restore_state(&state).expect("exported state restores");
        assert_eq!(
            again.export_state(),
            state,
            "known devices do not round-trip"
        );
    }
});
