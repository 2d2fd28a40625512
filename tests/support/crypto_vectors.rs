//! The E2EE known-answer checks, shared by the native suite (tests/e2ee.rs)
//! and the browser one (tests/wasm_crypto_vectors.rs): wasm32 builds select
//! other software backends (.cargo/config.toml), so both builds are held to
//! the same files by the same code. The vectors are compiled in, as a
//! browser test cannot read files.
#![allow(dead_code)] // each suite uses its own part of the helpers

use domvia_realtime::e2ee::primitives::{
    aes256gcm_open, aes256gcm_seal, hkdf_sha256, hkdf_sha256_extract, x25519, x25519_public,
};
use domvia_realtime::e2ee::{
    fingerprint, members_digest, DeviceKeys, DeviceRecord, Envelope, KeyShare, RoomKeys,
};
use serde_json::Value;

/// The published primitive vectors (a copy of the shared ones).
pub const STANDARD: &str = include_str!("../vectors/crypto/standard.json");
/// This format's own known answers (tests/e2ee.rs regenerates and compares them).
pub const OWN: &str = include_str!("../vectors/e2ee.json");

/// The room and clock the own vectors were made for.
pub const ROOM: &str = "r_00112233445566778899aabbccddeeff";
pub const T0: u64 = 1_760_000_000_000;

pub fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("a vector file is JSON")
}

pub fn hex(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "odd hex {text}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hex32(text: &str) -> [u8; 32] {
    hex(text).try_into().expect("32 bytes")
}

pub fn field<'a>(value: &'a Value, key: &str) -> &'a str {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string {key} in {value}"))
}

pub fn entries<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    let list = value
        .get(key)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no list {key}"));
    assert!(!list.is_empty(), "{key} is empty");
    list
}

pub fn check_x25519() {
    let vectors = parse(STANDARD);
    for v in entries(&vectors, "x25519") {
        let out = x25519(hex32(field(v, "scalar")), hex32(field(v, "u")));
        assert_eq!(to_hex(&out), field(v, "out"), "{}", field(v, "name"));
    }
}

pub fn check_x25519_dh() {
    let vectors = parse(STANDARD);
    for v in entries(&vectors, "x25519_dh") {
        let name = field(v, "name");
        let alice_sk = hex32(field(v, "alice_sk"));
        let bob_sk = hex32(field(v, "bob_sk"));
        let alice_pk = x25519_public(&alice_sk);
        let bob_pk = x25519_public(&bob_sk);
        assert_eq!(to_hex(&alice_pk), field(v, "alice_pk"), "{name}");
        assert_eq!(to_hex(&bob_pk), field(v, "bob_pk"), "{name}");
        assert_eq!(
            to_hex(&x25519(alice_sk, bob_pk)),
            field(v, "shared"),
            "{name}"
        );
        assert_eq!(
            to_hex(&x25519(bob_sk, alice_pk)),
            field(v, "shared"),
            "{name}"
        );
    }
}

pub fn check_hkdf_sha256() {
    let vectors = parse(STANDARD);
    for v in entries(&vectors, "hkdf_sha256") {
        let name = field(v, "name");
        let (ikm, salt, info) = (
            hex(field(v, "ikm")),
            hex(field(v, "salt")),
            hex(field(v, "info")),
        );
        let length = v["length"].as_u64().expect("length") as usize;
        assert_eq!(
            to_hex(&hkdf_sha256_extract(&salt, &ikm)),
            field(v, "prk"),
            "{name}"
        );
        let mut okm = vec![0u8; length];
        hkdf_sha256(&salt, &ikm, &info, &mut okm).expect("expand");
        assert_eq!(to_hex(&okm), field(v, "okm"), "{name}");
    }
}

pub fn check_aes256gcm() {
    let vectors = parse(STANDARD);
    for v in entries(&vectors, "aes256gcm") {
        let name = field(v, "name");
        let key = hex32(field(v, "key"));
        let iv: [u8; 12] = hex(field(v, "iv")).try_into().expect("12-byte iv");
        let (pt, aad) = (hex(field(v, "pt")), hex(field(v, "aad")));
        let expected = [hex(field(v, "ct")), hex(field(v, "tag"))].concat();
        let sealed = aes256gcm_seal(&key, &iv, &aad, &pt).expect("seal");
        assert_eq!(to_hex(&sealed), to_hex(&expected), "{name}");
        assert_eq!(
            aes256gcm_open(&key, &iv, &aad, &sealed).expect("open"),
            pt,
            "{name}"
        );
        // One flipped bit anywhere (ciphertext or tag), or other associated
        // data, is refused.
        let refused = |aad: &[u8], sealed: &[u8]| {
            aes256gcm_open(&key, &iv, aad, sealed)
                .expect_err("tampered")
                .code()
        };
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(refused(&aad, &bad), "e2ee_decrypt_failed", "{name}");
        }
        let bad_aad = [aad.as_slice(), &[0]].concat();
        assert_eq!(refused(&bad_aad, &sealed), "e2ee_decrypt_failed", "{name}");
    }
}

/// Reads the own vector file as another implementation would: every record
/// verifies (Ed25519 over SHA-512) and re-signs to the same text, each
/// recipient opens its key share, the members digest matches (SHA-256), and
/// every envelope opens (AES-256-GCM under an HKDF-SHA-256 sender key) to the
/// recorded content.
pub fn check_own_vectors_open() {
    let v = parse(OWN);
    let mut records = Vec::new();
    let mut keys = Vec::new();
    for d in entries(&v, "devices") {
        let record =
            DeviceRecord::from_json_str(&d["record"].to_string()).expect("record verifies");
        let device = DeviceKeys::from_secrets(
            field(d, "user_id"),
            field(d, "device_id"),
            &hex32(field(d, "x25519_secret")),
            &hex32(field(d, "ed25519_seed")),
        )
        .expect("keys");
        assert_eq!(to_hex(&record.x25519_public()), field(d, "x25519_public"));
        assert_eq!(to_hex(&record.ed25519_public()), field(d, "ed25519_public"));
        assert_eq!(
            fingerprint(&record.ed25519_public(), &record.x25519_public()),
            field(d, "fingerprint")
        );
        assert!(device.record().same_keys(&record));
        // Ed25519 is deterministic: signing again gives the recorded record.
        assert_eq!(device.record().to_json_string(), record.to_json_string());
        records.push(record);
        keys.push(device);
    }
    let epoch = &v["epoch"];
    assert_eq!(
        to_hex(&members_digest(&records).expect("digest")),
        field(epoch, "members_digest")
    );
    let mut rooms = Vec::new();
    for (s, device) in entries(epoch, "shares").iter().zip(&keys) {
        let share = KeyShare::from_json_str(&s["share"].to_string()).expect("share");
        assert_eq!(
            to_hex(&share.associated_data()),
            field(s, "associated_data")
        );
        let key = share.open(device, &records[0]).expect("open share");
        assert_eq!(to_hex(key.secret()), field(epoch, "secret"));
        let mut room = RoomKeys::new(ROOM).expect("room");
        room.install_epoch(key, &records).expect("install");
        rooms.push(room);
    }
    for m in entries(&v, "messages") {
        let envelope = Envelope::from_json_str(&m["envelope"].to_string()).expect("envelope");
        assert_eq!(
            to_hex(&envelope.associated_data()),
            field(m, "associated_data")
        );
        // The backend message id as the chat layer stores it.
        let backend_id = format!("m.{}", envelope.message_id());
        let backend_id = &backend_id[..backend_id.len().min(64)];
        for room in &mut rooms {
            let opened = room.open(&envelope, T0, backend_id).expect("opens");
            assert_eq!(to_hex(&opened.content), field(m, "content"));
            assert_eq!(opened.message_id, field(m, "message_id"));
        }
    }
}
