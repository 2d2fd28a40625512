#![cfg(not(target_arch = "wasm32"))]
// Random operations and never-panics properties discard results on purpose.
#![allow(clippy::let_underscore_must_use)]
//! The E2EE core: the published primitive vectors in
//! `tests/vectors/crypto/standard.json` (a copy of the shared vectors), this
//! format's own known-answer vectors in `tests/vectors/e2ee.json` (regenerated
//! and compared on every run), tampering, membership, the late-message window,
//! replay, fingerprints, and properties.

use std::convert::Infallible;

use domvia_realtime::e2ee::primitives::{
    aes256gcm_open, hkdf_sha256, sha256, x25519, x25519_public,
};
use domvia_realtime::e2ee::rand_core::{TryCryptoRng, TryRng};
use domvia_realtime::e2ee::{
    b64u_decode, b64u_encode, create_epoch, create_epoch_with, members_digest, safety_number,
    sender_key, DeviceCheck, DeviceKeys, DeviceRecord, Envelope, EpochKey, KeyShare, KnownDevices,
    NewEpoch, OpenedMessage, RoomKeys, LATE_EPOCH_WINDOW_MS, MAX_CONTENT_BYTES, MAX_ENVELOPE_BYTES,
};
use domvia_realtime::protocol::Error;
use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

#[path = "support/crypto_vectors.rs"]
mod crypto_vectors;
use crypto_vectors::{entries, to_hex, ROOM, T0};

const OWN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/e2ee.json");

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

fn code<T: std::fmt::Debug>(result: Result<T, Error>) -> &'static str {
    match result {
        Ok(value) => panic!("accepted: {value:?}"),
        Err(error) => error.code(),
    }
}

// ---------------------------------------------------------------------------
// Published primitive vectors
// ---------------------------------------------------------------------------

// The checks live in tests/support/crypto_vectors.rs, shared with the
// browser suite (tests/wasm_crypto_vectors.rs).

#[test]
fn standard_x25519() {
    crypto_vectors::check_x25519();
}

#[test]
fn standard_x25519_dh() {
    crypto_vectors::check_x25519_dh();
}

#[test]
fn standard_hkdf_sha256() {
    crypto_vectors::check_hkdf_sha256();
}

#[test]
fn standard_aes256gcm() {
    crypto_vectors::check_aes256gcm();
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// A deterministic generator for tests: SHA-256(seed || u64be(block)).
struct TestRng {
    seed: Vec<u8>,
    block: u64,
    buffer: Vec<u8>,
}

impl TestRng {
    fn new(seed: &str) -> Self {
        TestRng {
            seed: seed.as_bytes().to_vec(),
            block: 0,
            buffer: Vec::new(),
        }
    }
}

impl TryRng for TestRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for byte in dst {
            if self.buffer.is_empty() {
                let mut input = self.seed.clone();
                input.extend_from_slice(&self.block.to_be_bytes());
                self.block += 1;
                self.buffer = sha256(&input).to_vec();
            }
            *byte = self.buffer.remove(0);
        }
        Ok(())
    }
}

impl TryCryptoRng for TestRng {}

/// Secret bytes for the vectors: SHA-256 of a readable label.
fn derived(label: &str) -> [u8; 32] {
    sha256(format!("DomVia-E2EE-v1 test vector: {label}").as_bytes())
}

fn device(user_id: &str, device_id: &str) -> DeviceKeys {
    DeviceKeys::from_secrets(
        user_id,
        device_id,
        &derived(&format!("{device_id} x25519")),
        &derived(&format!("{device_id} ed25519")),
    )
    .expect("device keys")
}

fn ada() -> DeviceKeys {
    device("u_ada", "ada-laptop")
}
fn bob() -> DeviceKeys {
    device("u_bob", "bob-phone")
}
fn carol() -> DeviceKeys {
    device("u_carol", "carol-tablet")
}
fn dave() -> DeviceKeys {
    device("u_dave", "dave-desktop")
}

fn records(devices: &[&DeviceKeys]) -> Vec<DeviceRecord> {
    devices.iter().map(|d| d.record()).collect()
}

/// A new epoch created by `creator` for `members`, drawn from a seeded rng.
fn new_epoch(
    creator: &DeviceKeys,
    members: &[&DeviceKeys],
    epoch: u64,
    created_at: u64,
) -> NewEpoch {
    let mut rng = TestRng::new(&format!("epoch {epoch}"));
    create_epoch(
        ROOM,
        epoch,
        created_at,
        creator,
        &records(members),
        &mut rng,
    )
    .expect("epoch")
}

/// `me` opens its share of `new` (from `creator`) and installs it.
fn install(
    room: &mut RoomKeys,
    me: &DeviceKeys,
    creator: &DeviceKeys,
    new: &NewEpoch,
    members: &[&DeviceKeys],
) {
    let share = new
        .shares
        .iter()
        .find(|s| s.recipient_device_id() == me.device_id())
        .expect("a share for me");
    let key = share.open(me, &creator.record()).expect("open share");
    room.install_epoch(key, &records(members)).expect("install");
}

fn room_for(me: &DeviceKeys, epochs: &[(&DeviceKeys, &NewEpoch, &[&DeviceKeys])]) -> RoomKeys {
    let mut room = RoomKeys::new(ROOM).expect("room");
    for (creator, new, members) in epochs {
        install(&mut room, me, creator, new, members);
    }
    room
}

fn seal(room: &RoomKeys, me: &DeviceKeys, id: &str, text: &str) -> Envelope {
    room.seal(me, id, "text", text.as_bytes(), &mut TestRng::new(id))
        .expect("seal")
}

/// Opening a stored message as the chat layer does: the backend message id
/// here is the envelope's message id (one stored copy per message).
trait OpenStored {
    fn open_stored(&mut self, envelope: &Envelope, sent_at: u64) -> Result<OpenedMessage, Error>;
}

impl OpenStored for RoomKeys {
    fn open_stored(&mut self, envelope: &Envelope, sent_at: u64) -> Result<OpenedMessage, Error> {
        let backend_id = format!("m.{}", envelope.message_id());
        let backend_id = &backend_id[..backend_id.len().min(64)];
        self.open(envelope, sent_at, backend_id)
    }
}

/// The envelope with its JSON changed by `edit`, re-read.
fn edited(
    envelope: &Envelope,
    edit: impl FnOnce(&mut Map<String, Value>),
) -> Result<Envelope, Error> {
    let mut value = envelope.to_json();
    edit(value.as_object_mut().expect("object"));
    Envelope::from_json(&value)
}

/// The envelope with its JSON changed by `edit`, then signed again by `signer`
/// (an insider with a valid key producing a bad ciphertext).
fn edited_resigned(
    envelope: &Envelope,
    signer: &DeviceKeys,
    edit: impl FnOnce(&mut Map<String, Value>),
) -> Envelope {
    let mut value = envelope.to_json();
    edit(value.as_object_mut().expect("object"));
    let unsigned = Envelope::from_json(&value).expect("still well formed");
    let key = SigningKey::from_bytes(&signer.secret_bytes()[32..].try_into().expect("seed"));
    let signature = key.sign(&unsigned.signing_input()).to_bytes();
    value["sig"] = json!(b64u_encode(&signature));
    Envelope::from_json(&value).expect("re-signed")
}

fn flip_b64(value: &Value, index: usize) -> String {
    let mut bytes = b64u_decode(value.as_str().expect("string")).expect("b64");
    bytes[index] ^= 0x01;
    b64u_encode(&bytes)
}

// ---------------------------------------------------------------------------
// Own known-answer vectors
// ---------------------------------------------------------------------------

const VECTOR_DEVICES: [(&str, &str); 3] = [
    ("u_ada", "ada-laptop"),
    ("u_bob", "bob-phone"),
    ("u_carol", "carol-tablet"),
];

/// Builds every vector from its fixed inputs, recomputing the intermediate
/// values from the primitives as docs/e2ee.md specifies them.
fn build_vectors() -> Value {
    let keys: Vec<DeviceKeys> = VECTOR_DEVICES.iter().map(|(u, d)| device(u, d)).collect();
    let devices: Vec<Value> = keys
        .iter()
        .map(|k| {
            let secrets = k.secret_bytes();
            json!({
                "user_id": k.user_id(),
                "device_id": k.device_id(),
                "x25519_secret": to_hex(&secrets[..32]),
                "ed25519_seed": to_hex(&secrets[32..]),
                "x25519_public": to_hex(&k.x25519_public()),
                "ed25519_public": to_hex(&k.ed25519_public()),
                "fingerprint": k.fingerprint(),
                "record": k.record().to_json(),
            })
        })
        .collect();
    let members: Vec<DeviceRecord> = keys.iter().map(DeviceKeys::record).collect();
    let safety_numbers = json!([
        {"a": "ada-laptop", "b": "bob-phone", "safety_number": safety_number(&members[0], &members[1])},
        {"a": "ada-laptop", "b": "carol-tablet", "safety_number": safety_number(&members[0], &members[2])},
    ]);

    let secret = derived("room epoch 1 secret");
    let ephemerals: Vec<[u8; 32]> = (0..keys.len())
        .map(|i| derived(&format!("room epoch 1 ephemeral {i}")))
        .collect();
    let new =
        create_epoch_with(ROOM, 1, T0, &keys[0], &members, &secret, &ephemerals).expect("epoch");
    let shares: Vec<Value> = new
        .shares
        .iter()
        .zip(&ephemerals)
        .zip(&keys)
        .map(|((share, ephemeral), recipient)| {
            let ephemeral_public = x25519_public(ephemeral);
            let shared = x25519(*ephemeral, recipient.x25519_public());
            let salt = [ephemeral_public, recipient.x25519_public()].concat();
            let mut okm = [0u8; 44];
            let info = transcript(&["DomVia-E2EE-v1 key share wrap".as_bytes()]);
            hkdf_sha256(&salt, &shared, &info, &mut okm).expect("hkdf");
            json!({
                "recipient": recipient.device_id(),
                "ephemeral_secret": to_hex(ephemeral),
                "shared_secret": to_hex(&shared),
                "wrap_key": to_hex(&okm[..32]),
                "wrap_nonce": to_hex(&okm[32..]),
                "associated_data": to_hex(&share.associated_data()),
                "share": share.to_json(),
            })
        })
        .collect();
    let epoch = json!({
        "room_id": ROOM,
        "epoch": 1,
        "created_at": T0,
        "creator": "ada-laptop",
        "members": ["ada-laptop", "bob-phone", "carol-tablet"],
        "secret": to_hex(&secret),
        "members_digest": to_hex(&members_digest(&members).expect("digest")),
        "shares": shares,
    });

    let mut room = RoomKeys::new(ROOM).expect("room");
    room.install_epoch(new.key.clone(), &members)
        .expect("install");
    let message_inputs: [(usize, &str, &str, Vec<u8>); 4] = [
        (0, "c-1", "text", b"hello, bob".to_vec()),
        (1, "c-2", "text", "h\u{e9}llo \u{1f44b}".as_bytes().to_vec()),
        (2, "c-3", "text", Vec::new()),
        (0, "c-4", "text", vec![b'x'; 100]),
    ];
    let messages: Vec<Value> = message_inputs
        .iter()
        .map(|(sender, id, kind, content)| {
            let sender = &keys[*sender];
            let nonce: [u8; 12] = derived(&format!("nonce {id}"))[..12].try_into().expect("12");
            let envelope = room
                .seal_with_nonce(sender, id, kind, content, nonce)
                .expect("seal");
            let key = sender_key(&new.key, sender.user_id(), sender.device_id()).expect("key");
            json!({
                "sender": sender.device_id(),
                "message_id": id,
                "kind": kind,
                "content": to_hex(content),
                "nonce": to_hex(&nonce),
                "sender_key": to_hex(&key[..]),
                "padded_length": b64u_decode(envelope.to_json()["ciphertext"].as_str().unwrap()).unwrap().len() - 16,
                "associated_data": to_hex(&envelope.associated_data()),
                "envelope": envelope.to_json(),
            })
        })
        .collect();

    json!({
        "_about": "DomVia E2EE format v1 known-answer vectors (docs/e2ee.md). Secrets are SHA-256(\"DomVia-E2EE-v1 test vector: \" + label); nonces are the first 12 bytes of such a hash. Binary values are hex here and unpadded base64url inside the JSON objects. Generated by `cargo test --test e2ee -- --ignored write_vectors`; `vectors_match_the_file` regenerates and compares on every run.",
        "devices": devices,
        "safety_numbers": safety_numbers,
        "epoch": epoch,
        "messages": messages,
    })
}

/// `transcript(fields)` as docs/e2ee.md defines it: each field as a 4-byte
/// big-endian length then the bytes.
fn transcript(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

#[test]
#[ignore = "writes tests/vectors/e2ee.json; run when the format changes on purpose"]
fn write_vectors() {
    let text = serde_json::to_string_pretty(&build_vectors()).expect("json") + "\n";
    std::fs::write(OWN, text).expect("write vectors");
}

#[test]
fn vectors_match_the_file() {
    assert_eq!(
        build_vectors(),
        load(OWN),
        "tests/vectors/e2ee.json drifted from the implementation"
    );
}

/// Reads the vector file as another implementation would: every record
/// verifies, each recipient unwraps the secret, every envelope opens.
#[test]
fn vectors_open_from_the_file() {
    crypto_vectors::check_own_vectors_open();
}

#[test]
fn spec_derivations_match_the_library() {
    // The sender key and associated data, recomputed from docs/e2ee.md.
    let (ada, bob) = (ada(), bob());
    let new = new_epoch(&ada, &[&ada, &bob], 1, T0);
    let info = [
        transcript(&[b"DomVia-E2EE-v1 sender key", ROOM.as_bytes()]),
        1u64.to_be_bytes().to_vec(),
        transcript(&[b"u_ada", b"ada-laptop"]),
    ]
    .concat();
    let mut expected = [0u8; 32];
    hkdf_sha256(&[], new.key.secret(), &info, &mut expected).expect("hkdf");
    assert_eq!(
        *sender_key(&new.key, "u_ada", "ada-laptop").expect("key"),
        expected
    );

    let room = room_for(&ada, &[(&ada, &new, &[&ada, &bob])]);
    let envelope = seal(&room, &ada, "c-1", "hi");
    let ad = [
        transcript(&[b"DomVia-E2EE-v1 message", ROOM.as_bytes()]),
        1u64.to_be_bytes().to_vec(),
        transcript(&[b"u_ada", b"ada-laptop", b"c-1", b"text"]),
    ]
    .concat();
    assert_eq!(envelope.associated_data(), ad);
    let value = envelope.to_json();
    let nonce = b64u_decode(value["nonce"].as_str().unwrap()).unwrap();
    let ciphertext = b64u_decode(value["ciphertext"].as_str().unwrap()).unwrap();
    let signed = [
        transcript(&[b"DomVia-E2EE-v1 message signature", &ad]),
        nonce.clone(),
        transcript(&[&ciphertext]),
    ]
    .concat();
    assert_eq!(envelope.signing_input(), signed);
    let padded =
        aes256gcm_open(&expected, &nonce.try_into().unwrap(), &ad, &ciphertext).expect("open");
    assert_eq!(padded.len(), 32);
    assert_eq!(&padded[..3], b"hi\x80");
    assert!(padded[3..].iter().all(|&b| b == 0));
}

// ---------------------------------------------------------------------------
// Device records
// ---------------------------------------------------------------------------

#[test]
fn device_record_round_trips_and_verifies() {
    let ada = ada();
    let record = ada.record();
    let value = record.to_json();
    assert!(value.to_string().len() <= 4096);
    assert_eq!(DeviceRecord::from_json(&value).expect("verifies"), record);
    let mut rng = TestRng::new("fresh");
    let fresh = DeviceKeys::generate("u_ada", "ada-phone", &mut rng).expect("generate");
    assert!(DeviceRecord::from_json(&fresh.record().to_json()).is_ok());
    let restored = DeviceKeys::from_secrets(
        "u_ada",
        "ada-phone",
        &fresh.secret_bytes()[..32].try_into().unwrap(),
        &fresh.secret_bytes()[32..].try_into().unwrap(),
    )
    .expect("restore");
    assert!(restored.record().same_keys(&fresh.record()));
}

#[test]
fn device_record_tampering_is_rejected() {
    let value = ada().record().to_json();
    for key in ["x25519", "ed25519", "sig"] {
        for i in [0, 17, 31] {
            let mut bad = value.clone();
            bad[key] = json!(flip_b64(&value[key], i));
            let result = DeviceRecord::from_json(&bad);
            assert_eq!(code(result), "e2ee_bad_signature", "{key}[{i}]");
        }
    }
    for (key, other) in [("user_id", "u_eve"), ("device_id", "eve-laptop")] {
        let mut bad = value.clone();
        bad[key] = json!(other);
        assert_eq!(
            code(DeviceRecord::from_json(&bad)),
            "e2ee_bad_signature",
            "{key}"
        );
    }
    let mut v2 = value.clone();
    v2["v"] = json!(2);
    assert_eq!(
        code(DeviceRecord::from_json(&v2)),
        "e2ee_unsupported_version"
    );
    let mut extra = value.clone();
    extra["note"] = json!("x");
    assert_eq!(code(DeviceRecord::from_json(&extra)), "e2ee_malformed");
    let mut short = value.clone();
    short["x25519"] = json!("AAAA");
    assert_eq!(code(DeviceRecord::from_json(&short)), "e2ee_malformed");
    assert_eq!(code(DeviceRecord::from_json(&json!([1]))), "e2ee_malformed");
}

// ---------------------------------------------------------------------------
// Key shares
// ---------------------------------------------------------------------------

#[test]
fn key_shares_open_only_for_their_recipient() {
    let (ada, bob, carol) = (ada(), bob(), carol());
    let new = new_epoch(&ada, &[&ada, &bob], 1, T0);
    assert_eq!(new.shares.len(), 2);
    for share in &new.shares {
        assert!(share.to_json().to_string().len() <= 4096);
        assert_eq!(
            KeyShare::from_json(&share.to_json()).expect("reads"),
            *share
        );
    }
    let bob_share = &new.shares[1];
    assert_eq!(
        bob_share.open(&bob, &ada.record()).expect("bob").secret(),
        new.key.secret()
    );
    assert_eq!(
        code(bob_share.open(&carol, &ada.record())),
        "e2ee_wrong_recipient"
    );
    assert_eq!(
        code(bob_share.open(&bob, &carol.record())),
        "e2ee_wrong_sender"
    );
    // A creator who is not among the members cannot create the epoch.
    let mut rng = TestRng::new("x");
    let outsider = create_epoch(ROOM, 1, T0, &carol, &records(&[&ada, &bob]), &mut rng);
    assert_eq!(code(outsider), "e2ee_not_a_member");
}

#[test]
fn key_share_tampering_is_rejected() {
    let (ada, bob) = (ada(), bob());
    let new = new_epoch(&ada, &[&ada, &bob], 1, T0);
    let value = new.shares[1].to_json();
    let open = |v: &Value| KeyShare::from_json(v).and_then(|s| s.open(&bob, &ada.record()));
    for key in ["ephemeral", "ciphertext", "sig", "members"] {
        let len = b64u_decode(value[key].as_str().unwrap()).unwrap().len();
        for i in 0..len {
            let mut bad = value.clone();
            bad[key] = json!(flip_b64(&value[key], i));
            assert_eq!(code(open(&bad)), "e2ee_bad_signature", "{key}[{i}]");
        }
    }
    for (key, other) in [
        ("room_id", json!("r_other")),
        ("epoch", json!(2)),
        ("created_at", json!(T0 + 1)),
    ] {
        let mut bad = value.clone();
        bad[key] = other;
        assert_eq!(code(open(&bad)), "e2ee_bad_signature", "{key}");
    }
    // Re-signed by the creator (an insider) but altered: the AEAD catches it.
    let signing = SigningKey::from_bytes(&ada.secret_bytes()[32..].try_into().unwrap());
    for key in ["ciphertext", "room_id"] {
        let mut bad = value.clone();
        if key == "room_id" {
            bad[key] = json!("r_other");
        } else {
            bad[key] = json!(flip_b64(&value[key], 5));
        }
        let share = KeyShare::from_json(&bad).expect("well formed");
        bad["sig"] = json!(b64u_encode(
            &signing.sign(&share.signing_input()).to_bytes()
        ));
        assert_eq!(code(open(&bad)), "e2ee_decrypt_failed", "{key}");
    }
    let mut v2 = value.clone();
    v2["v"] = json!(2);
    assert_eq!(code(KeyShare::from_json(&v2)), "e2ee_unsupported_version");
}

#[test]
fn small_order_recipient_key_is_refused() {
    // A record may carry a small-order X25519 key if its owner signs one;
    // wrapping a share for it would give an all-zero shared secret.
    let seed = derived("small order");
    let signing = SigningKey::from_bytes(&seed);
    let ed25519 = signing.verifying_key().to_bytes();
    let zero = [0u8; 32];
    let input = [
        transcript(&[b"DomVia-E2EE-v1 device record", b"u_eve", b"eve-laptop"]),
        zero.to_vec(),
        ed25519.to_vec(),
    ]
    .concat();
    let record = DeviceRecord::from_json(&json!({
        "v": 1,
        "user_id": "u_eve",
        "device_id": "eve-laptop",
        "x25519": b64u_encode(&zero),
        "ed25519": b64u_encode(&ed25519),
        "sig": b64u_encode(&signing.sign(&input).to_bytes()),
    }))
    .expect("a validly signed record");
    let ada = ada();
    let mut rng = TestRng::new("small");
    let result = create_epoch(ROOM, 1, T0, &ada, &[ada.record(), record], &mut rng);
    assert_eq!(code(result), "e2ee_invalid_key");
}

#[test]
fn installing_checks_room_members_and_creator() {
    let (ada, bob, carol) = (ada(), bob(), carol());
    let new = new_epoch(&ada, &[&ada, &bob], 1, T0);
    let key = new.shares[1].open(&bob, &ada.record()).expect("open");
    let mut other = RoomKeys::new("r_other").expect("room");
    assert_eq!(
        code(other.install_epoch(key.clone(), &records(&[&ada, &bob]))),
        "e2ee_wrong_room"
    );
    let mut room = RoomKeys::new(ROOM).expect("room");
    // The server lists an extra device, or leaves one out: refused.
    assert_eq!(
        code(room.install_epoch(key.clone(), &records(&[&ada, &bob, &carol]))),
        "e2ee_members_mismatch"
    );
    assert_eq!(
        code(room.install_epoch(key.clone(), &records(&[&bob]))),
        "e2ee_members_mismatch"
    );
    room.install_epoch(key.clone(), &records(&[&bob, &ada]))
        .expect("order does not matter");
    room.install_epoch(key, &records(&[&ada, &bob]))
        .expect("again is a no-op");
    assert_eq!(room.current_epoch(), Some(1));
    // A forged key claiming another secret for the same epoch is refused.
    let forged = EpochKey::from_parts(
        ROOM,
        1,
        T0,
        "u_ada",
        "ada-laptop",
        new.key.members_digest(),
        &[7; 32],
    )
    .unwrap();
    assert_eq!(
        code(room.install_epoch(forged, &records(&[&ada, &bob]))),
        "e2ee_malformed"
    );
}

// ---------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------

#[test]
fn envelope_round_trip_and_padding() {
    let (ada, bob) = (ada(), bob());
    let new = new_epoch(&ada, &[&ada, &bob], 1, T0);
    let members: &[&DeviceKeys] = &[&ada, &bob];
    let ada_room = room_for(&ada, &[(&ada, &new, members)]);
    let mut bob_room = room_for(&bob, &[(&ada, &new, members)]);
    for (i, size) in [0usize, 1, 31, 32, 100, 1000, 2047, 4000, MAX_CONTENT_BYTES]
        .into_iter()
        .enumerate()
    {
        let content = vec![b'a'; size];
        let id = format!("c-{i}");
        let envelope = ada_room
            .seal(&ada, &id, "text", &content, &mut TestRng::new(&id))
            .expect("seal");
        let text = envelope.to_json().to_string();
        assert!(
            text.len() <= MAX_ENVELOPE_BYTES,
            "{size}: {} bytes",
            text.len()
        );
        let read = Envelope::from_json_str(&text).expect("reads");
        let opened = bob_room.open_stored(&read, T0).expect("opens");
        assert_eq!(opened.content, content);
        assert_eq!(opened.sender_user_id, "u_ada");
        assert_eq!(opened.sender_device_id, "ada-laptop");
        assert_eq!(opened.message_id, id);
        assert_eq!(opened.kind, "text");
        assert_eq!(opened.epoch, 1);
    }
    assert_eq!(
        code(ada_room.seal(
            &ada,
            "c-big",
            "text",
            &[0; MAX_CONTENT_BYTES + 1],
            &mut TestRng::new("b")
        )),
        "e2ee_content_too_large"
    );
    assert_eq!(
        code(ada_room.seal(&ada, "bad id", "text", b"x", &mut TestRng::new("b"))),
        "e2ee_malformed"
    );
    assert_eq!(
        code(ada_room.seal(&ada, "c-x", "Text", b"x", &mut TestRng::new("b"))),
        "e2ee_malformed"
    );
    let empty = RoomKeys::new(ROOM).expect("room");
    assert_eq!(
        code(empty.seal(&ada, "c-x", "text", b"x", &mut TestRng::new("b"))),
        "e2ee_no_epoch"
    );
}

#[test]
fn largest_envelope_fits_the_backend_limit() {
    // Every id at its longest, the epoch at its largest, 4095 content bytes.
    let long = |prefix: &str| format!("{prefix}{}", "x".repeat(64 - prefix.len()));
    let (room_id, user, dev) = (long("r_"), long("u_"), long("d-"));
    let me = DeviceKeys::from_secrets(&user, &dev, &[1; 32], &[2; 32]).expect("keys");
    let mut rng = TestRng::new("big");
    let new =
        create_epoch(&room_id, (1 << 53) - 1, T0, &me, &[me.record()], &mut rng).expect("epoch");
    let mut room = RoomKeys::new(&room_id).expect("room");
    room.install_epoch(new.key, &[me.record()])
        .expect("install");
    let kind = "k".repeat(32);
    let envelope = room
        .seal(
            &me,
            &long("c-"),
            &kind,
            &[0xff; MAX_CONTENT_BYTES],
            &mut rng,
        )
        .expect("seal");
    let size = envelope.to_json().to_string().len();
    assert!(size <= MAX_ENVELOPE_BYTES, "{size}");
    assert!(new.shares[0].to_json().to_string().len() <= 4096);
    assert!(me.record().to_json().to_string().len() <= 4096);
}

/// One room with ada and bob in epoch 1, and an envelope from ada.
fn pair() -> (DeviceKeys, DeviceKeys, RoomKeys, Envelope) {
    let (ada, bob) = (ada(), bob());
    let new = new_epoch(&ada, &[&ada, &bob], 1, T0);
    let members: &[&DeviceKeys] = &[&ada, &bob];
    let ada_room = room_for(&ada, &[(&ada, &new, members)]);
    let bob_room = room_for(&bob, &[(&ada, &new, members)]);
    let envelope = seal(&ada_room, &ada, "c-1", "meet at noon");
    (ada, bob, bob_room, envelope)
}

#[test]
fn tampering_any_byte_of_nonce_ciphertext_tag_or_signature_is_rejected() {
    let (ada, _bob, mut room, envelope) = pair();
    let value = envelope.to_json();
    for key in ["nonce", "ciphertext", "sig"] {
        let len = b64u_decode(value[key].as_str().unwrap()).unwrap().len();
        assert!(len > 0);
        for i in 0..len {
            let bad = edited(&envelope, |m| {
                m.insert(key.into(), json!(flip_b64(&value[key], i)));
            })
            .expect("well formed");
            assert_eq!(
                code(room.open_stored(&bad, T0)),
                "e2ee_bad_signature",
                "{key}[{i}]"
            );
        }
    }
    // The same alterations signed again by the sender: AES-GCM rejects them.
    // The last 16 ciphertext bytes are the tag.
    for key in ["nonce", "ciphertext"] {
        let len = b64u_decode(value[key].as_str().unwrap()).unwrap().len();
        for i in 0..len {
            let bad = edited_resigned(&envelope, &ada, |m| {
                m.insert(key.into(), json!(flip_b64(&value[key], i)));
            });
            assert_eq!(
                code(room.open_stored(&bad, T0)),
                "e2ee_decrypt_failed",
                "{key}[{i}]"
            );
        }
    }
    // Untouched, it still opens: nothing above was remembered as seen.
    assert_eq!(
        room.open_stored(&envelope, T0).expect("opens").content,
        b"meet at noon"
    );
}

#[test]
fn tampering_any_associated_data_field_is_rejected() {
    let (ada, bob, mut room, envelope) = pair();
    let cases: [(&str, Value, &str); 6] = [
        (
            "room_id",
            json!("r_ffffffffffffffffffffffffffffffff"),
            "e2ee_wrong_room",
        ),
        ("epoch", json!(2), "e2ee_unknown_epoch"),
        ("sender_user_id", json!("u_eve"), "e2ee_not_a_member"),
        ("sender_device_id", json!("ada-phone"), "e2ee_not_a_member"),
        ("message_id", json!("c-2"), "e2ee_bad_signature"),
        ("kind", json!("image"), "e2ee_bad_signature"),
    ];
    for (key, other, expected) in cases {
        let bad = edited(&envelope, |m| {
            m.insert(key.into(), other.clone());
        })
        .expect("well formed");
        assert_eq!(code(room.open_stored(&bad, T0)), expected, "{key}");
    }
    // Claiming to be bob (a member) with ada's signature: bad signature.
    let as_bob = edited(&envelope, |m| {
        m.insert("sender_user_id".into(), json!("u_bob"));
        m.insert("sender_device_id".into(), json!("bob-phone"));
    })
    .expect("well formed");
    assert_eq!(code(room.open_stored(&as_bob, T0)), "e2ee_bad_signature");
    // Re-signed by the sender, each bound field still breaks decryption.
    for (key, other) in [("message_id", json!("c-2")), ("kind", json!("image"))] {
        let bad = edited_resigned(&envelope, &ada, |m| {
            m.insert(key.into(), other);
        });
        assert_eq!(
            code(room.open_stored(&bad, T0)),
            "e2ee_decrypt_failed",
            "{key}"
        );
    }
    // Bob re-signing ada's ciphertext as his own: decrypts under bob's key, fails.
    let stolen = edited_resigned(&envelope, &bob, |m| {
        m.insert("sender_user_id".into(), json!("u_bob"));
        m.insert("sender_device_id".into(), json!("bob-phone"));
    });
    assert_eq!(code(room.open_stored(&stolen, T0)), "e2ee_decrypt_failed");
    assert!(room.open_stored(&envelope, T0).is_ok());
}

#[test]
fn malformed_and_unknown_versions_are_rejected() {
    let (_ada, _bob, _room, envelope) = pair();
    for (v, expected) in [
        (json!(2), "e2ee_unsupported_version"),
        (json!(0), "e2ee_unsupported_version"),
        (json!("1"), "e2ee_unsupported_version"),
    ] {
        let result = edited(&envelope, |m| {
            m.insert("v".into(), v);
        });
        assert_eq!(code(result), expected);
    }
    // An unknown version is reported as such even when the rest is unreadable.
    assert_eq!(
        code(Envelope::from_json(&json!({"v": 2, "x": 1}))),
        "e2ee_unsupported_version"
    );
    assert_eq!(
        code(edited(&envelope, |m| {
            m.remove("v");
        })),
        "e2ee_malformed"
    );
    for key in ["room_id", "nonce", "ciphertext", "sig", "kind"] {
        assert_eq!(
            code(edited(&envelope, |m| {
                m.remove(key);
            })),
            "e2ee_malformed",
            "{key}"
        );
    }
    assert_eq!(
        code(edited(&envelope, |m| {
            m.insert("extra".into(), json!(1));
        })),
        "e2ee_malformed"
    );
    assert_eq!(
        code(edited(&envelope, |m| {
            m.insert("nonce".into(), json!("AAAA"));
        })),
        "e2ee_malformed"
    );
    assert_eq!(
        code(edited(&envelope, |m| {
            m.insert("nonce".into(), json!("AAAAAAAAAAAAAAA="));
        })),
        "e2ee_malformed"
    );
    // A ciphertext whose length is no bucket plus tag.
    assert_eq!(
        code(edited(&envelope, |m| {
            m.insert("ciphertext".into(), json!(b64u_encode(&[0; 47])));
        })),
        "e2ee_malformed"
    );
    assert_eq!(
        code(edited(&envelope, |m| {
            m.insert("epoch".into(), json!(0));
        })),
        "e2ee_malformed"
    );
    assert_eq!(
        code(edited(&envelope, |m| {
            m.insert("epoch".into(), json!(1u64 << 53));
        })),
        "e2ee_malformed"
    );
    assert_eq!(
        code(edited(&envelope, |m| {
            m.insert("epoch".into(), json!(1.5));
        })),
        "e2ee_malformed"
    );
    assert_eq!(code(Envelope::from_json_str("not json")), "e2ee_malformed");
    assert_eq!(
        code(Envelope::from_json_str(&" ".repeat(6145))),
        "e2ee_malformed"
    );
}

#[test]
fn a_message_moved_to_another_room_or_epoch_is_rejected() {
    let (ada, bob) = (ada(), bob());
    let members: &[&DeviceKeys] = &[&ada, &bob];
    let e1 = new_epoch(&ada, members, 1, T0);
    let e2 = new_epoch(&ada, members, 2, T0 + 1000);
    let ada_room = room_for(&ada, &[(&ada, &e1, members)]);
    let envelope = seal(&ada_room, &ada, "c-1", "hi");
    // Bob's other room, with the same epoch secret served by a malicious server.
    let mut other = RoomKeys::new("r_99999999999999999999999999999999").expect("room");
    let moved = edited(&envelope, |m| {
        m.insert(
            "room_id".into(),
            json!("r_99999999999999999999999999999999"),
        );
    })
    .expect("well formed");
    assert_eq!(code(other.open_stored(&envelope, T0)), "e2ee_wrong_room");
    assert_eq!(code(other.open_stored(&moved, T0)), "e2ee_unknown_epoch");
    // Moved to epoch 2, which bob holds: the signature covers the epoch.
    let mut bob_room = room_for(&bob, &[(&ada, &e1, members), (&ada, &e2, members)]);
    let to_e2 = edited(&envelope, |m| {
        m.insert("epoch".into(), json!(2));
    })
    .expect("well formed");
    assert_eq!(code(bob_room.open_stored(&to_e2, T0)), "e2ee_bad_signature");
    let to_e2_resigned = edited_resigned(&envelope, &ada, |m| {
        m.insert("epoch".into(), json!(2));
    });
    assert_eq!(
        code(bob_room.open_stored(&to_e2_resigned, T0)),
        "e2ee_decrypt_failed"
    );
    assert!(bob_room.open_stored(&envelope, T0).is_ok());
}

#[test]
fn a_replay_is_rejected() {
    let (_ada, _bob, mut room, envelope) = pair();
    assert!(room.open(&envelope, T0, "m_1").is_ok());
    // The same stored message again (a history reload) opens again.
    assert_eq!(
        room.open(&envelope, T0, "m_1").expect("reload").content,
        b"meet at noon"
    );
    // The same sender's message id stored a second time is a replay.
    assert_eq!(code(room.open(&envelope, T0, "m_2")), "e2ee_replay");
    assert_eq!(code(room.open(&envelope, T0, "bad id")), "e2ee_malformed");
    // The first backend message still opens.
    assert!(room.open(&envelope, T0, "m_1").is_ok());
    // Another sender may use the same client id.
    let (ada, bob) = (ada(), bob());
    let new = new_epoch(&ada, &[&ada, &bob], 1, T0);
    let bob_room = room_for(&bob, &[(&ada, &new, &[&ada, &bob])]);
    let from_bob = seal(&bob_room, &bob, "c-1", "mine too");
    assert_eq!(
        room.open_stored(&from_bob, T0)
            .expect("other sender")
            .content,
        b"mine too"
    );
}

// ---------------------------------------------------------------------------
// Epochs and membership
// ---------------------------------------------------------------------------

#[test]
fn a_removed_member_cannot_open_the_next_epoch() {
    let (ada, bob, carol) = (ada(), bob(), carol());
    let all: &[&DeviceKeys] = &[&ada, &bob, &carol];
    let rest: &[&DeviceKeys] = &[&ada, &bob];
    let e1 = new_epoch(&ada, all, 1, T0);
    let mut carol_room = room_for(&carol, &[(&ada, &e1, all)]);
    assert!(
        carol_room.needs_new_epoch(&records(rest)),
        "removal forces a new epoch"
    );
    assert!(!carol_room.needs_new_epoch(&records(all)));
    // Carol is removed: epoch 2 is for ada and bob only.
    let e2 = new_epoch(&ada, rest, 2, T0 + 60_000);
    assert!(e2
        .shares
        .iter()
        .all(|s| s.recipient_device_id() != "carol-tablet"));
    for share in &e2.shares {
        assert_eq!(
            code(share.open(&carol, &ada.record())),
            "e2ee_wrong_recipient"
        );
        // Even a share relabelled for carol does not open with her key.
        let mut value = share.to_json();
        value["recipient_user_id"] = json!("u_carol");
        value["recipient_device_id"] = json!("carol-tablet");
        let relabelled = KeyShare::from_json(&value).expect("well formed");
        assert_eq!(
            code(relabelled.open(&carol, &ada.record())),
            "e2ee_bad_signature"
        );
    }
    let ada_room = room_for(&ada, &[(&ada, &e1, all), (&ada, &e2, rest)]);
    let envelope = seal(&ada_room, &ada, "c-after", "carol is gone");
    assert_eq!(
        code(carol_room.open_stored(&envelope, T0 + 61_000)),
        "e2ee_unknown_epoch"
    );
    // Carol, still holding epoch 1, cannot send into epoch 2...
    let mut bob_room = room_for(&bob, &[(&ada, &e1, all), (&ada, &e2, rest)]);
    let carol_e2 = edited(&seal(&carol_room, &carol, "c-x", "hi"), |m| {
        m.insert("epoch".into(), json!(2));
    })
    .expect("well formed");
    assert_eq!(
        code(bob_room.open_stored(&carol_e2, T0 + 61_000)),
        "e2ee_not_a_member"
    );
    // ... and her epoch-1 messages stop being accepted after the window.
    let late = seal(&carol_room, &carol, "c-late", "still here");
    let expired = T0 + 60_000 + LATE_EPOCH_WINDOW_MS + 1;
    assert_eq!(
        code(bob_room.open_stored(&late, expired)),
        "e2ee_epoch_expired"
    );
    // Carol's keys cannot seal in a room whose current epoch excludes her.
    assert_eq!(
        code(bob_room.seal(&carol, "c-y", "text", b"x", &mut TestRng::new("y"))),
        "e2ee_not_a_member"
    );
}

#[test]
fn a_new_member_decrypts_from_the_epoch_they_joined() {
    let (ada, bob, dave) = (ada(), bob(), dave());
    let before: &[&DeviceKeys] = &[&ada, &bob];
    let after: &[&DeviceKeys] = &[&ada, &bob, &dave];
    let e1 = new_epoch(&ada, before, 1, T0);
    let mut bob_room = room_for(&bob, &[(&ada, &e1, before)]);
    let old = seal(&bob_room, &bob, "c-old", "before dave");
    assert!(
        bob_room.needs_new_epoch(&records(after)),
        "an addition forces a new epoch"
    );
    // Bob creates epoch 2 for the new member set.
    let e2 = new_epoch(&bob, after, 2, T0 + 60_000);
    install(&mut bob_room, &bob, &bob, &e2, after);
    let mut dave_room = room_for(&dave, &[(&bob, &e2, after)]);
    let new = seal(&bob_room, &bob, "c-new", "welcome dave");
    assert_eq!(
        dave_room
            .open_stored(&new, T0 + 61_000)
            .expect("opens")
            .content,
        b"welcome dave"
    );
    assert_eq!(
        code(dave_room.open_stored(&old, T0 + 1000)),
        "e2ee_unknown_epoch"
    );
    assert_eq!(dave_room.epochs(), vec![2]);
    let mut ada_room = room_for(&ada, &[(&ada, &e1, before), (&bob, &e2, after)]);
    let from_dave = seal(&dave_room, &dave, "c-hi", "hi all");
    assert_eq!(
        ada_room
            .open_stored(&from_dave, T0 + 62_000)
            .expect("opens")
            .content,
        b"hi all"
    );
    assert!(ada_room.is_member(2, "u_dave", "dave-desktop"));
    assert!(!ada_room.is_member(1, "u_dave", "dave-desktop"));
}

#[test]
fn late_old_epoch_messages_inside_and_outside_the_window() {
    let (ada, bob, dave) = (ada(), bob(), dave());
    let e1_members: &[&DeviceKeys] = &[&ada, &bob];
    let e2_members: &[&DeviceKeys] = &[&ada, &bob, &dave];
    let e1 = new_epoch(&ada, e1_members, 1, T0);
    let e2_at = T0 + 3_600_000;
    let e2 = new_epoch(&ada, e2_members, 2, e2_at);
    let ada_room = room_for(&ada, &[(&ada, &e1, e1_members)]);
    let mut bob_room = room_for(&bob, &[(&ada, &e1, e1_members), (&ada, &e2, e2_members)]);
    let make = |id: &str| seal(&ada_room, &ada, id, "late");
    // Before the next epoch (history), right at it, and inside the window.
    for (id, sent_at) in [
        ("c-hist", T0 + 5),
        ("c-at", e2_at),
        ("c-in", e2_at + LATE_EPOCH_WINDOW_MS),
    ] {
        assert_eq!(bob_room.open_stored(&make(id), sent_at).expect(id).epoch, 1);
    }
    assert_eq!(
        code(bob_room.open_stored(&make("c-out"), e2_at + LATE_EPOCH_WINDOW_MS + 1)),
        "e2ee_epoch_expired"
    );
    // Only devices that were members of epoch 1: dave joined in epoch 2.
    let dave_room = room_for(&dave, &[(&ada, &e2, e2_members)]);
    let from_dave = edited(&seal(&dave_room, &dave, "c-d", "x"), |m| {
        m.insert("epoch".into(), json!(1));
    })
    .expect("well formed");
    assert_eq!(
        code(bob_room.open_stored(&from_dave, e2_at + 1)),
        "e2ee_not_a_member"
    );
    // The current epoch has no window.
    let current = seal(&dave_room, &dave, "c-now", "now");
    assert!(bob_room.open_stored(&current, u64::MAX).is_ok());
    // Forgotten epochs are unknown.
    bob_room.forget_epochs_before(2);
    assert_eq!(
        code(bob_room.open_stored(&make("c-gone"), T0)),
        "e2ee_unknown_epoch"
    );
}

// ---------------------------------------------------------------------------
// Fingerprints and key changes
// ---------------------------------------------------------------------------

#[test]
fn fingerprints_and_safety_numbers() {
    let (ada, bob, carol) = (ada().record(), bob().record(), carol().record());
    let f = ada.fingerprint();
    assert_eq!(f.len(), 24);
    assert!(f
        .split(' ')
        .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_hexdigit())));
    assert_ne!(f, bob.fingerprint());
    let ab = safety_number(&ada, &bob);
    assert_eq!(ab, safety_number(&bob, &ada), "order-independent");
    assert_eq!(ab.len(), 35);
    assert!(ab
        .split(' ')
        .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())));
    assert_ne!(ab, safety_number(&ada, &carol));
    assert_ne!(safety_number(&ada, &carol), safety_number(&bob, &carol));
    // Another key for the same device changes both.
    let ada2 = DeviceKeys::from_secrets("u_ada", "ada-laptop", &[9; 32], &[8; 32])
        .unwrap()
        .record();
    assert_ne!(ada2.fingerprint(), f);
    assert_ne!(safety_number(&ada2, &bob), ab);
}

#[test]
fn a_changed_key_of_a_known_device_is_detected() {
    let mut known = KnownDevices::new();
    let ada = ada().record();
    assert_eq!(known.check(&ada).expect("new"), DeviceCheck::New);
    assert_eq!(known.check(&ada).expect("same"), DeviceCheck::Unchanged);
    let replaced = DeviceKeys::from_secrets("u_ada", "ada-laptop", &[9; 32], &[8; 32])
        .unwrap()
        .record();
    let error = known.check(&replaced).expect_err("changed");
    assert_eq!(error.code(), "e2ee_device_key_changed");
    assert_eq!(
        error,
        Error::E2eeDeviceKeyChanged {
            user_id: "u_ada".into(),
            device_id: "ada-laptop".into()
        }
    );
    // Still pinned to the old keys until the user accepts the change.
    assert_eq!(
        known.fingerprint("u_ada", "ada-laptop"),
        Some(ada.fingerprint())
    );
    assert_eq!(code(known.check(&replaced)), "e2ee_device_key_changed");
    known.accept_change(&replaced);
    assert_eq!(
        known.check(&replaced).expect("accepted"),
        DeviceCheck::Unchanged
    );
    assert_eq!(code(known.check(&ada)), "e2ee_device_key_changed");
    known.forget("u_ada", "ada-laptop");
    assert_eq!(known.check(&ada).expect("new again"), DeviceCheck::New);
    assert_eq!(
        known.check(&bob().record()).expect("another"),
        DeviceCheck::New
    );
}

#[test]
fn secrets_do_not_show_in_debug() {
    let ada = ada();
    let secrets = ada.secret_bytes();
    let epoch = new_epoch(&ada, &[&ada], 1, T0);
    let text = format!("{ada:?} {:?}", epoch.key);
    for secret in [&secrets[..32], &secrets[32..], &epoch.key.secret()[..]] {
        assert!(!text.contains(&to_hex(secret)));
        assert!(!text.contains(&format!("{secret:?}")[1..20]));
    }
}

// ---------------------------------------------------------------------------
// Timing (run with --ignored --nocapture)
// ---------------------------------------------------------------------------

#[test]
#[ignore = "timing, for the report"]
fn time_one_kib() {
    let (ada, bob) = (ada(), bob());
    let new = new_epoch(&ada, &[&ada, &bob], 1, T0);
    let members: &[&DeviceKeys] = &[&ada, &bob];
    let ada_room = room_for(&ada, &[(&ada, &new, members)]);
    let mut bob_room = room_for(&bob, &[(&ada, &new, members)]);
    let content = vec![b'a'; 1024];
    let mut rng = TestRng::new("timing");
    let n = 2000;
    let start = std::time::Instant::now();
    let envelopes: Vec<Envelope> = (0..n)
        .map(|i| {
            ada_room
                .seal(&ada, &format!("c-{i}"), "text", &content, &mut rng)
                .unwrap()
        })
        .collect();
    let seal_us = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    let start = std::time::Instant::now();
    for envelope in &envelopes {
        bob_room.open_stored(envelope, T0).unwrap();
    }
    let open_us = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    let members_100: Vec<DeviceKeys> = (0..100)
        .map(|i| device(&format!("u_{i}"), &format!("d-{i}")))
        .collect();
    let refs: Vec<&DeviceKeys> = members_100.iter().collect();
    let start = std::time::Instant::now();
    let _ = new_epoch(refs[0], &refs, 1, T0);
    let epoch_ms = start.elapsed().as_secs_f64() * 1e3;
    println!("1 KiB: encrypt+sign {seal_us:.1} us, verify+decrypt {open_us:.1} us; epoch for 100 devices {epoch_ms:.1} ms");
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// Ada's keys, her room and a fresh copy of bob's (key set-up is done once:
/// curve arithmetic is slow in unoptimised test builds).
fn proptest_room() -> (&'static DeviceKeys, &'static RoomKeys, RoomKeys) {
    static FIXTURE: std::sync::OnceLock<(DeviceKeys, RoomKeys, RoomKeys)> =
        std::sync::OnceLock::new();
    let (ada, ada_room, bob_room) = FIXTURE.get_or_init(|| {
        let (ada, bob) = (ada(), bob());
        let new = new_epoch(&ada, &[&ada, &bob], 1, T0);
        let members: &[&DeviceKeys] = &[&ada, &bob];
        let ada_room = room_for(&ada, &[(&ada, &new, members)]);
        let bob_room = room_for(&bob, &[(&ada, &new, members)]);
        (ada, ada_room, bob_room)
    });
    (ada, ada_room, bob_room.clone())
}

// ---------------------------------------------------------------------------
// Pending epochs, persistence
// ---------------------------------------------------------------------------

#[test]
fn a_created_epoch_is_pending_until_committed() {
    let (ada, bob, carol) = (ada(), bob(), carol());
    let members = records(&[&ada, &bob]);
    let mut room = RoomKeys::new(ROOM).expect("room");
    let shares = room
        .begin_epoch(&ada, 1, T0, &members, &mut TestRng::new("p1"))
        .expect("begin");
    assert_eq!(shares.len(), 2);
    assert_eq!(room.pending_epoch(), Some(1));
    assert_eq!(room.current_epoch(), None);
    assert!(!room.has_epoch(1));
    assert_eq!(
        code(room.seal(&ada, "c-1", "text", b"x", &mut TestRng::new("s"))),
        "e2ee_no_epoch"
    );
    // Another epoch number, or other members: refused, still pending.
    assert_eq!(code(room.commit_epoch(2, &members)), "e2ee_unknown_epoch");
    assert_eq!(
        code(room.commit_epoch(1, &records(&[&ada, &bob, &carol]))),
        "e2ee_members_mismatch"
    );
    assert_eq!(room.pending_epoch(), Some(1));
    room.commit_epoch(1, &members).expect("commit");
    assert_eq!(room.pending_epoch(), None);
    assert_eq!(room.current_epoch(), Some(1));
    assert!(room.has_epoch(1));
    assert_eq!(code(room.commit_epoch(1, &members)), "e2ee_unknown_epoch");

    // Bob opens his share of it and reads Ada's message.
    let mut bob_room = RoomKeys::new(ROOM).expect("room");
    let share = shares
        .iter()
        .find(|s| s.recipient_device_id() == bob.device_id())
        .expect("bob's share");
    let key = share.open(&bob, &ada.record()).expect("open share");
    bob_room.install_epoch(key, &members).expect("install");
    let envelope = seal(&room, &ada, "c-1", "hello");
    assert_eq!(
        bob_room.open(&envelope, T0, "m_1").expect("opens").content,
        b"hello"
    );

    // A new epoch must be newer; a discarded one cannot be committed.
    assert_eq!(
        code(room.begin_epoch(&ada, 1, T0, &members, &mut TestRng::new("p2"))),
        "e2ee_malformed"
    );
    room.begin_epoch(&ada, 2, T0 + 1, &members, &mut TestRng::new("p3"))
        .expect("begin 2");
    room.discard_epoch();
    assert_eq!(room.pending_epoch(), None);
    assert_eq!(code(room.commit_epoch(2, &members)), "e2ee_unknown_epoch");
    assert_eq!(room.current_epoch(), Some(1));
    // The creator must be a member.
    assert_eq!(
        code(room.begin_epoch(&carol, 2, T0, &members, &mut TestRng::new("p4"))),
        "e2ee_not_a_member"
    );
}

/// Bob's room with epochs 1 (Ada, Bob) and 2 (Ada, Bob, Carol), having opened
/// one message of each; Ada's room and the envelopes.
fn persisted_rooms() -> (DeviceKeys, RoomKeys, RoomKeys, Envelope, Envelope) {
    let (ada, bob, carol) = (ada(), bob(), carol());
    let e1 = new_epoch(&ada, &[&ada, &bob], 1, T0);
    let e2 = new_epoch(&ada, &[&ada, &bob, &carol], 2, T0 + 60_000);
    let epochs: &[(&DeviceKeys, &NewEpoch, &[&DeviceKeys])] = &[
        (&ada, &e1, &[&ada, &bob]),
        (&ada, &e2, &[&ada, &bob, &carol]),
    ];
    let ada_room = room_for(&ada, epochs);
    let mut bob_room = room_for(&bob, epochs);
    let mut only_e1 = room_for(&ada, &epochs[..1]);
    let old = seal(&only_e1, &ada, "c-old", "from epoch 1");
    let new = seal(&ada_room, &ada, "c-new", "from epoch 2");
    bob_room.open(&old, T0 + 1, "m_old").expect("old");
    bob_room.open(&new, T0 + 60_001, "m_new").expect("new");
    only_e1.discard_epoch();
    (ada, ada_room, bob_room, old, new)
}

#[test]
fn room_state_round_trips_and_keeps_decrypting() {
    let (ada, ada_room, bob_room, old, new) = persisted_rooms();
    let text = bob_room.export_state();
    let state: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(state["v"], 1);
    assert_eq!(state["room_id"], ROOM);
    assert_eq!(state["epochs"].as_array().unwrap().len(), 2);
    assert_eq!(state["epochs"][1]["devices"].as_array().unwrap().len(), 3);
    // The seen ids are not persisted (the SDK's replay ledger keeps them).
    assert_eq!(state["seen"], json!([]));
    // No plaintext is kept.
    assert!(!text.contains("from epoch"));

    let mut restored = RoomKeys::restore_state(&text).expect("restore");
    assert_eq!(restored.room_id(), ROOM);
    assert_eq!(restored.epochs(), vec![1, 2]);
    assert_eq!(restored.members(2), bob_room.members(2));
    for epoch in [1, 2] {
        assert_eq!(
            restored.epoch_key(epoch).unwrap().secret(),
            bob_room.epoch_key(epoch).unwrap().secret()
        );
        assert_eq!(
            restored.epoch_key(epoch).unwrap().created_at_ms(),
            bob_room.epoch_key(epoch).unwrap().created_at_ms()
        );
    }
    // Exporting again gives the same text (deterministic order).
    assert_eq!(*restored.export_state(), *text);
    // History reload: the same backend messages open again.
    assert_eq!(
        restored.open(&old, T0 + 1, "m_old").expect("old").content,
        b"from epoch 1"
    );
    assert_eq!(
        restored
            .open(&new, T0 + 60_001, "m_new")
            .expect("new")
            .content,
        b"from epoch 2"
    );
    // What the restored room opened itself it remembers: another backend
    // copy is a replay.
    assert_eq!(
        code(restored.open(&new, T0 + 60_001, "m_copy")),
        "e2ee_replay"
    );
    // A state written before the ledger, with seen ids, still restores them.
    let mut older: Value = serde_json::from_str(&text).unwrap();
    older["seen"] = json!([["u_ada", "c-new", "m_new"]]);
    let mut from_older = RoomKeys::restore_state(&older.to_string()).expect("restore older");
    assert_eq!(
        code(from_older.open(&new, T0 + 60_001, "m_copy")),
        "e2ee_replay"
    );
    assert_eq!(*from_older.export_state(), *text);
    // New messages still decrypt, and the restored room can seal.
    let next = seal(&ada_room, &ada, "c-next", "after restore");
    assert_eq!(
        restored
            .open(&next, T0 + 70_000, "m_next")
            .expect("next")
            .content,
        b"after restore"
    );
    let bob = bob();
    let reply = seal(&restored, &bob, "c-reply", "reply");
    let mut ada_room = ada_room;
    assert_eq!(
        ada_room
            .open(&reply, T0 + 70_001, "m_reply")
            .expect("reply")
            .content,
        b"reply"
    );
    // An empty room round-trips too.
    let empty = RoomKeys::new(ROOM).expect("room");
    let restored = RoomKeys::restore_state(&empty.export_state()).expect("empty");
    assert_eq!(restored.current_epoch(), None);
}

#[test]
fn the_pending_epoch_is_not_persisted() {
    let (ada, bob) = (ada(), bob());
    let mut room = RoomKeys::new(ROOM).expect("room");
    room.begin_epoch(&ada, 1, T0, &records(&[&ada, &bob]), &mut TestRng::new("p"))
        .expect("begin");
    let restored = RoomKeys::restore_state(&room.export_state()).expect("restore");
    assert_eq!(restored.pending_epoch(), None);
    assert_eq!(restored.current_epoch(), None);
}

#[test]
fn malformed_room_state_is_refused_with_a_code() {
    let (_, _, bob_room, _, _) = persisted_rooms();
    let text = bob_room.export_state();
    let mut good: Value = serde_json::from_str(&text).unwrap();
    // As a state written before the replay ledger: with seen ids.
    good["seen"] = json!([["u_ada", "c-old", "m_old"]]);
    RoomKeys::restore_state(&good.to_string()).expect("the base case restores");
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        RoomKeys::restore_state(&v.to_string())
    };
    for bad in [
        "",
        "null",
        "[]",
        "{}",
        "{\"v\":1}",
        "not json",
        "{\"v\":1,\"room_id\":",
    ] {
        assert_eq!(
            code(RoomKeys::restore_state(bad)),
            "e2ee_malformed",
            "{bad:?}"
        );
    }
    for cut in [1, text.len() / 3, text.len() / 2, text.len() - 1] {
        assert_eq!(
            code(RoomKeys::restore_state(&text[..cut])),
            "e2ee_malformed"
        );
    }
    assert_eq!(
        code(edit(&|v| v["v"] = json!(2))),
        "e2ee_unsupported_version"
    );
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("extra field", Box::new(|v| v["extra"] = json!(1))),
        ("room id", Box::new(|v| v["room_id"] = json!("bad room"))),
        ("epochs not array", Box::new(|v| v["epochs"] = json!({}))),
        (
            "epoch zero",
            Box::new(|v| v["epochs"][0]["epoch"] = json!(0)),
        ),
        (
            "epoch twice",
            Box::new(|v| {
                let first = v["epochs"][0].clone();
                v["epochs"].as_array_mut().unwrap().push(first);
            }),
        ),
        ("nested v", Box::new(|v| v["epochs"][0]["v"] = json!(1))),
        (
            "secret short",
            Box::new(|v| v["epochs"][0]["secret"] = json!(b64u_encode(&[1; 31]))),
        ),
        (
            "secret not b64",
            Box::new(|v| v["epochs"][0]["secret"] = json!("!!")),
        ),
        (
            "members digest",
            Box::new(|v| v["epochs"][0]["members"] = json!(b64u_encode(&[7; 32]))),
        ),
        (
            "device dropped",
            Box::new(|v| {
                v["epochs"][1]["devices"].as_array_mut().unwrap().pop();
            }),
        ),
        (
            "device signature",
            Box::new(|v| {
                let sig = v["epochs"][0]["devices"][0]["sig"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                let mut bytes = b64u_decode(&sig).unwrap();
                bytes[0] ^= 1;
                v["epochs"][0]["devices"][0]["sig"] = json!(b64u_encode(&bytes));
            }),
        ),
        (
            "creator not a member",
            Box::new(|v| v["epochs"][0]["creator_user_id"] = json!("u_carol")),
        ),
        (
            "created_at negative",
            Box::new(|v| v["epochs"][0]["created_at"] = json!(-1)),
        ),
        (
            "seen entry short",
            Box::new(|v| v["seen"][0] = json!(["u_ada", "c-1"])),
        ),
        (
            "seen entry number",
            Box::new(|v| v["seen"][0] = json!(["u_ada", "c-1", 3])),
        ),
        (
            "seen bad id",
            Box::new(|v| v["seen"][0] = json!(["u_ada", "c 1", "m_1"])),
        ),
        (
            "missing seen",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("seen");
            }),
        ),
    ];
    for (name, f) in cases {
        assert_eq!(code(edit(&*f)), "e2ee_malformed", "{name}");
    }
}

#[test]
fn known_devices_round_trip_and_still_detect_key_changes() {
    let (ada, bob) = (ada(), bob());
    let mut known = KnownDevices::new();
    assert_eq!(known.check(&ada.record()).unwrap(), DeviceCheck::New);
    assert_eq!(known.check(&bob.record()).unwrap(), DeviceCheck::New);
    let text = known.export_state();
    let state: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(state["v"], 1);
    assert_eq!(state["devices"].as_array().unwrap().len(), 2);

    let mut restored = KnownDevices::restore_state(&text).expect("restore");
    assert_eq!(restored.len(), 2);
    assert_eq!(restored.export_state(), text);
    assert_eq!(
        restored.fingerprint("u_ada", "ada-laptop"),
        Some(ada.fingerprint())
    );
    assert_eq!(
        restored.check(&ada.record()).unwrap(),
        DeviceCheck::Unchanged
    );
    // Ada's laptop with new keys is still caught after a restore.
    let mut rng = TestRng::new("new laptop keys");
    let replaced = DeviceKeys::generate("u_ada", "ada-laptop", &mut rng).unwrap();
    assert_eq!(
        code(restored.check(&replaced.record())),
        "e2ee_device_key_changed"
    );
    restored.accept_change(&replaced.record());
    let again = KnownDevices::restore_state(&restored.export_state()).unwrap();
    let mut again = again;
    assert_eq!(
        again.check(&replaced.record()).unwrap(),
        DeviceCheck::Unchanged
    );
    assert!(
        KnownDevices::restore_state(&KnownDevices::new().export_state())
            .unwrap()
            .is_empty()
    );

    for bad in [
        "",
        "{}",
        "{\"v\":1}",
        "{\"v\":1,\"devices\":{}}",
        "{\"v\":1,\"devices\":[{}]}",
        "{\"v\":1,\"devices\":[],\"x\":1}",
    ] {
        assert_eq!(
            code(KnownDevices::restore_state(bad)),
            "e2ee_malformed",
            "{bad:?}"
        );
    }
    assert_eq!(
        code(KnownDevices::restore_state("{\"v\":7,\"devices\":[]}")),
        "e2ee_unsupported_version"
    );
    let mut twice: Value = serde_json::from_str(&text).unwrap();
    let first = twice["devices"][0].clone();
    twice["devices"].as_array_mut().unwrap().push(first);
    assert_eq!(
        code(KnownDevices::restore_state(&twice.to_string())),
        "e2ee_malformed"
    );
    let mut short: Value = serde_json::from_str(&text).unwrap();
    short["devices"][0]["x25519"] = json!(b64u_encode(&[1; 31]));
    assert_eq!(
        code(KnownDevices::restore_state(&short.to_string())),
        "e2ee_malformed"
    );
}

#[test]
fn a_forged_copy_under_another_backend_id_does_not_block_the_real_one() {
    let (_ada, _bob, mut room, envelope) = pair();
    let mut forged = envelope.to_json();
    forged["ciphertext"] = json!(flip_b64(&forged["ciphertext"], 0));
    let forged = Envelope::from_json(&forged).expect("well formed");
    assert_eq!(
        code(room.open(&forged, T0, "m_forged")),
        "e2ee_bad_signature"
    );
    assert!(room.open(&envelope, T0, "m_real").is_ok());
    assert_eq!(code(room.open(&envelope, T0, "m_forged")), "e2ee_replay");
}

// ---------------------------------------------------------------------------
// The JSON text, byte for byte: the core reads and writes it by hand
// (src/e2ee/json.rs) where it used serde_json, and must not change either.
// ---------------------------------------------------------------------------

/// serde_json's compact text of a value: what the core wrote before it had
/// its own writer (`json!` values, whose keys serde_json sorts).
fn serde_text(value: &Value) -> String {
    serde_json::to_string(value).expect("json")
}

/// Whether `text` is exactly serde_json's text of the value it holds.
fn is_serde_text(text: &str) -> bool {
    serde_json::from_str::<Value>(text).is_ok_and(|value| serde_text(&value) == text)
}

#[test]
fn vector_objects_are_written_byte_for_byte() {
    let v = load(OWN);
    for d in entries(&v, "devices") {
        let text = serde_text(&d["record"]);
        let record = DeviceRecord::from_json_str(&text).expect("record");
        assert_eq!(record.to_json_string(), text);
    }
    for s in entries(&v["epoch"], "shares") {
        let text = serde_text(&s["share"]);
        let share = KeyShare::from_json_str(&text).expect("share");
        assert_eq!(share.to_json_string(), text);
    }
    for m in entries(&v, "messages") {
        let text = serde_text(&m["envelope"]);
        let envelope = Envelope::from_json_str(&text).expect("envelope");
        assert_eq!(envelope.to_json_string(), text);
    }
}

#[test]
fn states_are_written_as_serde_json_wrote_them() {
    let (_ada, _ada_room, bob_room, _old, _new) = persisted_rooms();
    // The room state as `json!` built it, from the public accessors.
    let epochs: Vec<Value> = bob_room
        .epochs()
        .into_iter()
        .map(|epoch| {
            let key = bob_room.epoch_key(epoch).expect("installed");
            json!({
                "epoch": epoch,
                "created_at": key.created_at_ms(),
                "creator_user_id": key.creator_user_id(),
                "creator_device_id": key.creator_device_id(),
                "members": b64u_encode(&key.members_digest()),
                "secret": b64u_encode(key.secret()),
                "devices": bob_room.members(epoch).iter().map(DeviceRecord::to_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    let expected = json!({
        "v": 1,
        "room_id": ROOM,
        "epochs": epochs,
        "seen": [],
    });
    assert_eq!(*bob_room.export_state(), serde_text(&expected));

    let (ada, bob) = (ada(), bob());
    let mut known = KnownDevices::new();
    known.check(&bob.record()).unwrap();
    known.check(&ada.record()).unwrap();
    let pinned = |k: &DeviceKeys| {
        json!({
            "user_id": k.user_id(),
            "device_id": k.device_id(),
            "ed25519": b64u_encode(&k.ed25519_public()),
            "x25519": b64u_encode(&k.x25519_public()),
        })
    };
    let expected = json!({ "v": 1, "devices": [pinned(&ada), pinned(&bob)] });
    assert_eq!(known.export_state(), serde_text(&expected));
    assert_eq!(
        KnownDevices::new().export_state(),
        "{\"devices\":[],\"v\":1}"
    );
    assert_eq!(
        *RoomKeys::new(ROOM).unwrap().export_state(),
        format!("{{\"epochs\":[],\"room_id\":\"{ROOM}\",\"seen\":[],\"v\":1}}")
    );
}

#[test]
fn json_text_is_read_as_serde_json_read_it() {
    let (_ada, _bob, _room, envelope) = pair();
    let text = envelope.to_json_string();
    // Whitespace, escapes and key order do not matter.
    let spaced = format!(
        " {} ",
        text.replace(',', " ,\n\t")
            .replace(':', "\r: ")
            .replace("\"v\"", "\"\\u0076\"")
            .replace("text", "t\\u0065xt")
    );
    assert_eq!(Envelope::from_json_str(&spaced).expect("reads"), envelope);
    let value: Value = serde_json::from_str(&text).unwrap();
    let mut reordered = String::from("{");
    for (i, (key, field)) in value.as_object().unwrap().iter().rev().enumerate() {
        if i > 0 {
            reordered.push(',');
        }
        reordered.push_str(&format!(
            "{}:{}",
            serde_text(&json!(key)),
            serde_text(field)
        ));
    }
    reordered.push('}');
    assert_eq!(
        Envelope::from_json_str(&reordered).expect("reads"),
        envelope
    );
    // A repeated key: the last one counts, as in serde_json's map.
    let early_v2 = text.replacen('{', "{\"v\":2,", 1);
    assert_eq!(Envelope::from_json_str(&early_v2).expect("reads"), envelope);
    let late_v2 = format!("{},\"v\":2}}", &text[..text.len() - 1]);
    assert_eq!(
        code(Envelope::from_json_str(&late_v2)),
        "e2ee_unsupported_version"
    );
    // The version is quoted as serde_json wrote it.
    for (v, shown) in [
        ("2", "2"),
        ("1.0", "1.0"),
        ("\"1\"", "\"1\""),
        ("null", "null"),
    ] {
        let message = Envelope::from_json_str(&format!("{{\"v\":{v}}}"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(&format!("format version {shown} is not")),
            "{message}"
        );
    }
    // What serde_json refused is not JSON, whatever "v" holds.
    for bad in [
        "{\"v\":1e400}",
        "{\"v\":2,\"x\":-1e309}",
        "{\"v\":\"\\ud800\"}",
        "{\"v\":01}",
        "{\"v\":2,}",
        "{\"v\":2} x",
        "{\"v\":\"\t\"}",
    ] {
        let error = Envelope::from_json_str(bad).unwrap_err();
        assert_eq!(error.code(), "e2ee_malformed", "{bad}");
        assert!(error.to_string().contains("not JSON"), "{bad}: {error}");
    }
    let nested = |depth: usize| format!("{{\"v\":{}2{}}}", "[".repeat(depth), "]".repeat(depth));
    assert_eq!(
        code(Envelope::from_json_str(&nested(126))),
        "e2ee_unsupported_version"
    );
    assert_eq!(
        code(Envelope::from_json_str(&nested(127))),
        "e2ee_malformed"
    );
    // An escaped secret in a stored room state is read like any other.
    let (_ada, _ada_room, bob_room, _old, _new) = persisted_rooms();
    let state = bob_room.export_state();
    let secret = b64u_encode(bob_room.epoch_key(1).unwrap().secret());
    let escaped: String = secret
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    let restored = RoomKeys::restore_state(&state.replace(&secret, &escaped)).expect("restore");
    assert_eq!(*restored.export_state(), *state);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn decrypt_of_encrypt_is_identity(text in "\\PC{0,1000}", seed in any::<u64>()) {
        // \PC{0,1000} is up to 4000 UTF-8 bytes.
        let (ada, ada_room, mut bob_room) = proptest_room();
        let mut rng = TestRng::new(&seed.to_string());
        let envelope = ada_room.seal(ada, "c-p", "text", text.as_bytes(), &mut rng).unwrap();
        let json = envelope.to_json().to_string();
        prop_assert!(json.len() <= MAX_ENVELOPE_BYTES);
        let read = Envelope::from_json_str(&json).unwrap();
        prop_assert_eq!(bob_room.open_stored(&read, T0).unwrap().content, text.as_bytes());
    }

    #[test]
    fn decrypt_of_encrypt_is_identity_for_any_bytes(content in proptest::collection::vec(any::<u8>(), 0..=4000)) {
        let (ada, ada_room, mut bob_room) = proptest_room();
        let envelope = ada_room.seal(ada, "c-b", "file", &content, &mut TestRng::new("b")).unwrap();
        prop_assert_eq!(bob_room.open_stored(&envelope, T0).unwrap().content, content);
    }

    #[test]
    fn arbitrary_bytes_as_an_envelope_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (_, _, mut bob_room) = proptest_room();
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(envelope) = Envelope::from_json_str(&text) {
            let _ = bob_room.open_stored(&envelope, T0);
        }
        let _ = KeyShare::from_json(&Value::String(text.to_string()));
        let _ = DeviceRecord::from_json(&Value::String(text.into_owned()));
    }

    #[test]
    fn arbitrary_field_values_never_panic(
        key in prop::sample::select(vec!["v", "room_id", "epoch", "sender_user_id", "sender_device_id", "message_id", "kind", "nonce", "ciphertext", "sig"]),
        replacement in prop_oneof![
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|n| json!(n)),
            ".{0,80}".prop_map(|s| json!(s)),
            proptest::collection::vec(any::<u8>(), 0..100).prop_map(|b| json!(b64u_encode(&b))),
            Just(Value::Null),
            Just(json!([])),
            Just(json!({})),
        ],
    ) {
        let (ada, ada_room, mut bob_room) = proptest_room();
        let envelope = seal(ada_room, ada, "c-f", "x");
        let mut value = envelope.to_json();
        value[key] = replacement;
        if let Ok(envelope) = Envelope::from_json(&value) {
            let _ = bob_room.open_stored(&envelope, T0);
        }
    }

    #[test]
    fn arbitrary_text_as_stored_state_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        prop_assert!(RoomKeys::restore_state(&text).is_err() || text.contains("room_id"));
        let _ = KnownDevices::restore_state(&text);
    }

    #[test]
    fn the_json_text_is_serde_json_s_for_any_ids(
        ids in proptest::collection::vec("[A-Za-z0-9_.:-]{1,64}", 5),
        kind in "[a-z0-9_.-]{1,32}",
        content in proptest::collection::vec(any::<u8>(), 0..300),
        epoch in 1..=domvia_realtime::e2ee::MAX_EPOCH,
        created_at in any::<u64>(),
    ) {
        let [user_id, device_id, room_id, message_id, backend_id] =
            <[String; 5]>::try_from(ids).unwrap();
        let me = DeviceKeys::from_secrets(&user_id, &device_id, &derived("p x"), &derived("p e")).unwrap();
        let record = me.record();
        let text = record.to_json_string();
        prop_assert!(is_serde_text(&text), "{}", text);
        prop_assert_eq!(&DeviceRecord::from_json_str(&text).unwrap(), &record);

        let mut rng = TestRng::new("p");
        let new = create_epoch(&room_id, epoch, created_at, &me, std::slice::from_ref(&record), &mut rng).unwrap();
        let share = &new.shares[0];
        let text = share.to_json_string();
        prop_assert!(is_serde_text(&text), "{}", text);
        prop_assert_eq!(&KeyShare::from_json_str(&text).unwrap(), share);
        let value: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&value["room_id"], &json!(room_id));
        prop_assert_eq!(&value["epoch"], &json!(epoch));
        prop_assert_eq!(&value["created_at"], &json!(created_at));

        let mut room = RoomKeys::new(&room_id).unwrap();
        room.install_epoch(new.key, &[record]).unwrap();
        let envelope = room.seal(&me, &message_id, &kind, &content, &mut rng).unwrap();
        let text = envelope.to_json_string();
        prop_assert!(is_serde_text(&text), "{}", text);
        prop_assert_eq!(&Envelope::from_json_str(&text).unwrap(), &envelope);
        room.open(&envelope, created_at, &backend_id).unwrap();

        let state = room.export_state();
        prop_assert!(is_serde_text(&state), "{}", *state);
        let restored = RoomKeys::restore_state(&state).unwrap();
        prop_assert_eq!(&*restored.export_state(), &*state);
        let mut known = KnownDevices::new();
        known.check(&me.record()).unwrap();
        prop_assert!(is_serde_text(&known.export_state()));
    }

    #[test]
    fn arbitrary_text_as_any_object_never_panics(text in any::<String>()) {
        let _ = Envelope::from_json_str(&text);
        let _ = KeyShare::from_json_str(&text);
        let _ = DeviceRecord::from_json_str(&text);
        let _ = RoomKeys::restore_state(&text);
        let _ = KnownDevices::restore_state(&text);
    }

    #[test]
    fn base64url_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        prop_assert_eq!(b64u_decode(&b64u_encode(&bytes)).unwrap(), bytes);
    }
}
