//! Fixed E2EE keys for the fuzz targets: the devices, epoch and key shares of
//! the known-answer vectors (tests/vectors/e2ee.json), so that inputs reach
//! past the JSON layer into signature checks and decryption.
// Each target uses only some of the fixtures.
#![allow(dead_code)]

use domvia_realtime::e2ee::{DeviceKeys, DeviceRecord, EpochKey, RoomKeys};
use serde_json::Value;

pub struct Vectors {
    /// Ada, Bob and Carol, in the file's order.
    pub devices: Vec<DeviceKeys>,
    pub records: Vec<DeviceRecord>,
    pub epoch: EpochKey,
    /// Bob's keys of the room with the vectors' epoch installed.
    pub bob_room: RoomKeys,
    /// The compact JSON of the share for each device, in the same order.
    pub shares: Vec<String>,
    /// The compact JSON of the vectors' envelopes.
    pub envelopes: Vec<String>,
}

fn hex32(value: &Value) -> [u8; 32] {
    let text = value.as_str().expect("a hex string");
    let mut out = [0u8; 32];
    for (at, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * at..2 * at + 2], 16).expect("hex");
    }
    out
}

pub fn load() -> Vectors {
    let file: Value = serde_json::from_str(include_str!("../../../tests/vectors/e2ee.json"))
        .expect("the vectors are JSON");
    let devices: Vec<DeviceKeys> = file["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| {
            DeviceKeys::from_secrets(
                d["user_id"].as_str().expect("user_id"),
                d["device_id"].as_str().expect("device_id"),
                &hex32(&d["x25519_secret"]),
                &hex32(&d["ed25519_seed"]),
            )
            .expect("vector keys")
        })
        .collect();
    let records: Vec<DeviceRecord> = devices.iter().map(DeviceKeys::record).collect();
    let e = &file["epoch"];
    let epoch = EpochKey::from_parts(
        e["room_id"].as_str().expect("room_id"),
        e["epoch"].as_u64().expect("epoch"),
        e["created_at"].as_u64().expect("created_at"),
        devices[0].user_id(),
        devices[0].device_id(),
        hex32(&e["members_digest"]),
        &hex32(&e["secret"]),
    )
    .expect("the vector epoch");
    let mut bob_room = RoomKeys::new(epoch.room_id()).expect("a room");
    bob_room
        .install_epoch(epoch.clone(), &records)
        .expect("the epoch installs");
    let shares = e["shares"]
        .as_array()
        .expect("shares")
        .iter()
        .map(|s| s["share"].to_string())
        .collect();
    let envelopes = file["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["envelope"].to_string())
        .collect();
    Vectors {
        devices,
        records,
        epoch,
        bob_room,
        shares,
        envelopes,
    }
}
