//! Devices: the private keys of this device, the signed public record every
//! other device checks, fingerprints, safety numbers and key-change detection.

use crate::vec_map::VecMap;
use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::encoding::{malformed, validate_id, Fields, Transcript, FORMAT_VERSION};
use super::json::{Json, JsonWriter};
use super::primitives::{sha256, x25519_shared};
use super::{labels, MAX_RECORD_BYTES};
use crate::error::{quoted, Error};
use crate::protocol::hex;

/// The private keys of this device with its ids. The secrets are zeroized when
/// it is dropped; `Debug` shows only the public parts.
#[derive(Clone)]
pub struct DeviceKeys {
    user_id: String,
    device_id: String,
    x25519: StaticSecret,
    x25519_public: [u8; 32],
    ed25519: SigningKey,
}

impl fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKeys")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl DeviceKeys {
    /// New keys for a device: 32 random bytes for X25519, then 32 for Ed25519.
    pub fn generate<R: CryptoRng + ?Sized>(
        user_id: &str,
        device_id: &str,
        rng: &mut R,
    ) -> Result<Self, Error> {
        let mut x25519 = Zeroizing::new([0u8; 32]);
        let mut ed25519 = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(x25519.as_mut());
        rng.fill_bytes(ed25519.as_mut());
        Self::from_secrets(user_id, device_id, &x25519, &ed25519)
    }

    /// Keys from their secrets: an X25519 scalar (clamped when used) and an
    /// Ed25519 seed (RFC 8032 secret key). Used to restore persisted keys and
    /// by the known-answer vectors.
    pub fn from_secrets(
        user_id: &str,
        device_id: &str,
        x25519_secret: &[u8; 32],
        ed25519_seed: &[u8; 32],
    ) -> Result<Self, Error> {
        validate_id("user_id", user_id)?;
        validate_id("device_id", device_id)?;
        let x25519 = StaticSecret::from(*x25519_secret);
        let x25519_public = PublicKey::from(&x25519).to_bytes();
        Ok(DeviceKeys {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            x25519,
            x25519_public,
            ed25519: SigningKey::from_bytes(ed25519_seed),
        })
    }

    /// The 64 secret bytes to persist: the X25519 secret, then the Ed25519 seed.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 64]> {
        let mut out = Zeroizing::new([0u8; 64]);
        out[..32].copy_from_slice(self.x25519.as_bytes());
        out[32..].copy_from_slice(self.ed25519.as_bytes());
        out
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    pub fn x25519_public(&self) -> [u8; 32] {
        self.x25519_public
    }

    pub fn ed25519_public(&self) -> [u8; 32] {
        self.ed25519.verifying_key().to_bytes()
    }

    /// This device's signed public record, to publish to the app backend.
    pub fn record(&self) -> DeviceRecord {
        let verifying_key = self.ed25519.verifying_key();
        let mut record = DeviceRecord {
            user_id: self.user_id.clone(),
            device_id: self.device_id.clone(),
            x25519: self.x25519_public,
            ed25519: verifying_key.to_bytes(),
            verifying_key,
            signature: [0; 64],
        };
        record.signature = self.sign(&record.signing_input());
        record
    }

    /// This device's short fingerprint (see [`fingerprint`]).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.ed25519_public(), &self.x25519_public)
    }

    pub(crate) fn sign(&self, input: &[u8]) -> [u8; 64] {
        self.ed25519.sign(input).to_bytes()
    }

    /// X25519 with this device's secret; `e2ee_invalid_key` when the result is
    /// all zero (a small-order public key).
    pub(crate) fn diffie_hellman(&self, public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, Error> {
        x25519_shared(self.x25519.as_bytes(), public)
    }
}

/// A device's public record, always signature-checked: one exists only as
/// made by [`DeviceKeys::record`] or read and verified by
/// [`DeviceRecord::from_json_str`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    user_id: String,
    device_id: String,
    x25519: [u8; 32],
    ed25519: [u8; 32],
    /// `ed25519` decompressed once: every envelope and share it signed is
    /// verified against it without decompressing the point again.
    verifying_key: VerifyingKey,
    signature: [u8; 64],
}

const RECORD_FIELDS: &[&str] = &["user_id", "device_id", "x25519", "ed25519", "sig"];

impl DeviceRecord {
    /// Reads a record from JSON text (as stored by the backend) and checks its
    /// version, its fields and its self-signature.
    pub fn from_json_str(text: &str) -> Result<Self, Error> {
        let value = Json::parse(text).ok_or_else(|| malformed("the device record is not JSON"))?;
        Self::read(&value)
    }

    /// [`from_json_str`](Self::from_json_str) of a serde_json value, for
    /// native callers that hold one (the wasm build never links serde_json
    /// for E2EE).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_json(value: &serde_json::Value) -> Result<Self, Error> {
        Self::from_json_str(&value.to_string())
    }

    /// Reads a record from parsed JSON: version, fields, ids, self-signature.
    pub(crate) fn read(value: &Json<'_>) -> Result<Self, Error> {
        let fields = Fields::read(value, "device record", RECORD_FIELDS)?;
        let ed25519 = fields.array("ed25519")?;
        let record = DeviceRecord {
            user_id: fields.id("user_id")?,
            device_id: fields.id("device_id")?,
            x25519: fields.array("x25519")?,
            ed25519,
            verifying_key: VerifyingKey::from_bytes(&ed25519).map_err(|_| {
                Error::E2eeBadSignature {
                    what: "device record",
                }
            })?,
            signature: fields.array("sig")?,
        };
        record.verify()?;
        Ok(record)
    }

    /// The record as compact JSON text (at most 4096 bytes).
    pub fn to_json_string(&self) -> String {
        let mut json = JsonWriter::with_capacity(320);
        self.write_json(&mut json);
        json.finish()
    }

    /// [`to_json_string`](Self::to_json_string) as a serde_json value, for
    /// native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_json(&self) -> serde_json::Value {
        // The writer's compact JSON always parses; Null is unreachable.
        serde_json::from_str(&self.to_json_string()).unwrap_or_default()
    }

    /// Writes the record as a JSON object, keys in byte order.
    pub(crate) fn write_json(&self, json: &mut JsonWriter) {
        json.begin_object()
            .key("device_id")
            .string(&self.device_id)
            .key("ed25519")
            .base64url(&self.ed25519)
            .key("sig")
            .base64url(&self.signature)
            .key("user_id")
            .string(&self.user_id)
            .key("v")
            .u64(FORMAT_VERSION)
            .key("x25519")
            .base64url(&self.x25519)
            .end_object();
    }

    /// The bytes the device's Ed25519 key signs.
    pub fn signing_input(&self) -> Vec<u8> {
        Transcript::new(labels::DEVICE_RECORD)
            .str(&self.user_id)
            .str(&self.device_id)
            .raw(&self.x25519)
            .raw(&self.ed25519)
            .finish()
    }

    /// Checks `signature` over `input` against this device's Ed25519 key
    /// (strict: no small-order keys or non-canonical signatures);
    /// `e2ee_bad_signature` naming `what` otherwise.
    pub(crate) fn verify_signed(
        &self,
        input: &[u8],
        signature: &[u8; 64],
        what: &'static str,
    ) -> Result<(), Error> {
        verify_strict(&self.verifying_key, input, signature, what)
    }

    fn verify(&self) -> Result<(), Error> {
        validate_id("user_id", &self.user_id)?;
        validate_id("device_id", &self.device_id)?;
        if self.to_json_string().len() > MAX_RECORD_BYTES {
            return Err(malformed("the device record is too large"));
        }
        self.verify_signed(&self.signing_input(), &self.signature, "device record")
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    pub fn x25519_public(&self) -> [u8; 32] {
        self.x25519
    }

    pub fn ed25519_public(&self) -> [u8; 32] {
        self.ed25519
    }

    /// The device's short fingerprint (see [`fingerprint`]).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.ed25519, &self.x25519)
    }

    /// Whether two records are the same device with the same keys.
    pub fn same_keys(&self, other: &DeviceRecord) -> bool {
        self.user_id == other.user_id
            && self.device_id == other.device_id
            && self.x25519 == other.x25519
            && self.ed25519 == other.ed25519
    }

    /// The identity bytes used by member digests and safety numbers.
    pub(crate) fn identity(&self) -> Vec<u8> {
        Transcript::default()
            .str(&self.user_id)
            .str(&self.device_id)
            .raw(&self.ed25519)
            .raw(&self.x25519)
            .finish()
    }
}

/// Strict Ed25519 verification (RFC 8032, rejecting small-order keys and
/// non-canonical signatures); `e2ee_bad_signature` naming `what` otherwise.
fn verify_strict(
    key: &VerifyingKey,
    input: &[u8],
    signature: &[u8; 64],
    what: &'static str,
) -> Result<(), Error> {
    key.verify_strict(input, &Signature::from_bytes(signature))
        .map_err(|_| Error::E2eeBadSignature { what })
}

/// A device's short fingerprint: the first 10 bytes of
/// SHA-256(transcript("DomVia-E2EE-v1 fingerprint") || ed25519 || x25519) as
/// 20 lowercase hex digits in five groups of four, e.g. `"1a2b 3c4d ..."`.
pub fn fingerprint(ed25519: &[u8; 32], x25519: &[u8; 32]) -> String {
    let digest = sha256(
        &Transcript::new(labels::FINGERPRINT)
            .raw(ed25519)
            .raw(x25519)
            .finish(),
    );
    // Written out here and in `safety_number` rather than collected, joined
    // and formatted with `{:05}`: those linked 0.4 KB gz into the E2EE wasm
    // for these two strings alone.
    let mut out = String::with_capacity(24);
    for (i, pair) in digest[..10].chunks(2).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&hex::encode(pair));
    }
    out
}

/// The safety number of a pair of devices, the same whichever side computes
/// it: 30 decimal digits in six groups of five. The two identities
/// (`lp(user_id) || lp(device_id) || ed25519 || x25519`) are sorted bytewise;
/// `d = SHA-256(transcript("DomVia-E2EE-v1 safety number") || lp(first) ||
/// lp(second))`; group `i` is bytes `d[5i..5i+5]` as a big-endian integer
/// modulo 100000, zero-padded to five digits.
pub fn safety_number(a: &DeviceRecord, b: &DeviceRecord) -> String {
    let (mut first, mut second) = (a.identity(), b.identity());
    if second < first {
        std::mem::swap(&mut first, &mut second);
    }
    let digest = sha256(
        &Transcript::new(labels::SAFETY_NUMBER)
            .bytes(&first)
            .bytes(&second)
            .finish(),
    );
    let mut out = String::with_capacity(35);
    for (i, chunk) in digest[..30].chunks(5).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let n = chunk.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b)) % 100_000;
        for power in [10_000, 1_000, 100, 10, 1] {
            // A digit, 0-9: fits a u8.
            out.push(char::from(b'0' + (n / power % 10) as u8));
        }
    }
    out
}

/// What [`KnownDevices::check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceCheck {
    /// First seen: now pinned.
    New,
    /// Seen before with the same keys.
    Unchanged,
}

/// The keys of every device seen so far (trust on first use), to detect a
/// known device presenting new keys.
#[derive(Clone, Debug, Default)]
pub struct KnownDevices {
    pinned: VecMap<(String, String), ([u8; 32], [u8; 32])>,
}

impl KnownDevices {
    pub fn new() -> Self {
        Self::default()
    }

    /// Pins a new device, accepts a known one with the same keys, and refuses
    /// one whose keys changed with `e2ee_device_key_changed` (the old keys stay
    /// pinned until [`accept_change`](Self::accept_change)).
    pub fn check(&mut self, record: &DeviceRecord) -> Result<DeviceCheck, Error> {
        let key = (record.user_id.clone(), record.device_id.clone());
        let keys = (record.ed25519, record.x25519);
        match self.pinned.get(&key) {
            None => {
                self.pinned.insert(key, keys);
                Ok(DeviceCheck::New)
            }
            Some(pinned) if *pinned == keys => Ok(DeviceCheck::Unchanged),
            Some(_) => Err(Error::E2eeDeviceKeyChanged {
                user_id: record.user_id.clone(),
                device_id: record.device_id.clone(),
            }),
        }
    }

    /// Pins the record's keys in place of the old ones (after the user
    /// accepted the change).
    pub fn accept_change(&mut self, record: &DeviceRecord) {
        self.pinned.insert(
            (record.user_id.clone(), record.device_id.clone()),
            (record.ed25519, record.x25519),
        );
    }

    /// Forgets a device.
    pub fn forget(&mut self, user_id: &str, device_id: &str) {
        self.pinned
            .remove(&(user_id.to_owned(), device_id.to_owned()));
    }

    /// The pinned devices as versioned JSON text, to persist (public keys
    /// only): `{"v":1,"devices":[{"user_id","device_id","ed25519","x25519"}]}`.
    pub fn export_state(&self) -> String {
        let mut json = JsonWriter::with_capacity(64 + 200 * self.pinned.len());
        json.begin_object().key("devices").begin_array();
        for ((user_id, device_id), (ed25519, x25519)) in &self.pinned {
            json.begin_object()
                .key("device_id")
                .string(device_id)
                .key("ed25519")
                .base64url(ed25519)
                .key("user_id")
                .string(user_id)
                .key("x25519")
                .base64url(x25519)
                .end_object();
        }
        json.end_array().key("v").u64(FORMAT_VERSION).end_object();
        json.finish()
    }

    /// Restores pins from [`export_state`](Self::export_state)'s text:
    /// `e2ee_unsupported_version` for another `"v"`, `e2ee_malformed` for
    /// anything else that is not such a state (never a panic).
    pub fn restore_state(text: &str) -> Result<Self, Error> {
        let value =
            Json::parse(text).ok_or_else(|| malformed("the known devices state is not JSON"))?;
        let fields = Fields::read(&value, "known devices state", &["devices"])?;
        let mut known = KnownDevices::new();
        for device in fields.list("devices")? {
            let f = Fields::read_nested(
                device,
                "known device",
                &["user_id", "device_id", "ed25519", "x25519"],
            )?;
            let key = (f.id("user_id")?, f.id("device_id")?);
            if known.pinned.contains_key(&key) {
                return Err(malformed(format!(
                    "device {} of user {} is listed twice",
                    quoted(&key.1),
                    quoted(&key.0)
                )));
            }
            known
                .pinned
                .insert(key, (f.array("ed25519")?, f.array("x25519")?));
        }
        Ok(known)
    }

    /// How many devices are pinned.
    pub fn len(&self) -> usize {
        self.pinned.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pinned.is_empty()
    }

    /// The fingerprint pinned for a device, if it is known.
    pub fn fingerprint(&self, user_id: &str, device_id: &str) -> Option<String> {
        self.pinned
            .get(&(user_id.to_owned(), device_id.to_owned()))
            .map(|(ed, x)| fingerprint(ed, x))
    }
}
