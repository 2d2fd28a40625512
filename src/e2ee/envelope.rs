//! Message envelopes: padded content under a per-sender key, AES-256-GCM with
//! a random nonce, signed with the sender device's Ed25519 key.

use zeroize::Zeroizing;

use super::device::DeviceKeys;
use super::encoding::{malformed, validate_id, validate_kind, Fields, Transcript, FORMAT_VERSION};
use super::epoch::EpochKey;
use super::json::{Json, JsonWriter};
use super::labels;
use super::primitives::{aes256gcm_seal, hkdf_sha256, NONCE_BYTES, TAG_BYTES};
use crate::error::Error;

/// Padded plaintext sizes: content plus its `0x80` marker is padded with zero
/// bytes up to the first of these that holds it.
pub const PADDING_BUCKETS: [usize; 9] = [32, 64, 128, 256, 512, 1024, 2048, 3072, 4096];

/// The most content bytes an envelope holds (the largest bucket less the marker).
pub const MAX_CONTENT_BYTES: usize = 4095;

/// The most bytes of an envelope as compact JSON (the backend's `ciphertext` limit).
pub const MAX_ENVELOPE_BYTES: usize = 6144;

/// Pads content: `content || 0x80 || 0x00...` up to the smallest bucket.
pub fn pad(content: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let size = PADDING_BUCKETS
        .iter()
        .copied()
        .find(|&bucket| bucket > content.len())
        .ok_or(Error::E2eeContentTooLarge {
            size: content.len(),
            limit: MAX_CONTENT_BYTES,
        })?;
    let mut padded = Zeroizing::new(Vec::with_capacity(size));
    padded.extend_from_slice(content);
    padded.push(0x80);
    padded.resize(size, 0);
    Ok(padded)
}

/// Removes the padding of [`pad`]: the length must be a bucket, and after the
/// content come exactly one `0x80` and only zero bytes.
pub fn unpad(padded: &[u8]) -> Result<&[u8], Error> {
    if !PADDING_BUCKETS.contains(&padded.len()) {
        return Err(malformed("the padded plaintext is not of a bucket size"));
    }
    match padded.iter().rposition(|&b| b != 0) {
        Some(marker) if padded[marker] == 0x80 => Ok(&padded[..marker]),
        _ => Err(malformed("the plaintext padding is invalid")),
    }
}

/// The per-sender message key: HKDF-SHA256 with an empty salt, the epoch
/// secret as input key material and info
/// `transcript("DomVia-E2EE-v1 sender key") || lp(room_id) || u64(epoch) ||
/// lp(user_id) || lp(device_id)`.
pub fn sender_key(
    key: &EpochKey,
    user_id: &str,
    device_id: &str,
) -> Result<Zeroizing<[u8; 32]>, Error> {
    let info = Transcript::new(labels::SENDER_KEY)
        .str(key.room_id())
        .u64(key.epoch())
        .str(user_id)
        .str(device_id)
        .finish();
    let mut out = Zeroizing::new([0u8; 32]);
    hkdf_sha256(&[], key.secret(), &info, out.as_mut())?;
    Ok(out)
}

/// An encrypted, signed message, stored by the backend as the message's
/// `ciphertext` object. Reading one ([`Envelope::from_json_str`]) checks only its
/// form; `RoomKeys::open` checks the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    room_id: String,
    epoch: u64,
    sender_user_id: String,
    sender_device_id: String,
    message_id: String,
    kind: String,
    nonce: [u8; NONCE_BYTES],
    ciphertext: Vec<u8>,
    signature: [u8; 64],
}

const ENVELOPE_FIELDS: &[&str] = &[
    "room_id",
    "epoch",
    "sender_user_id",
    "sender_device_id",
    "message_id",
    "kind",
    "nonce",
    "ciphertext",
    "sig",
];

impl Envelope {
    /// Encrypts and signs `content` with the given nonce (never reuse one with
    /// the same epoch key and sender: use `RoomKeys::seal`, which draws it at
    /// random). Deterministic, for known-answer vectors.
    pub fn seal_with_nonce(
        key: &EpochKey,
        sender: &DeviceKeys,
        message_id: &str,
        kind: &str,
        content: &[u8],
        nonce: [u8; NONCE_BYTES],
    ) -> Result<Self, Error> {
        validate_id("message_id", message_id)?;
        validate_kind(kind)?;
        let padded = pad(content)?;
        let mut envelope = Envelope {
            room_id: key.room_id().to_owned(),
            epoch: key.epoch(),
            sender_user_id: sender.user_id().to_owned(),
            sender_device_id: sender.device_id().to_owned(),
            message_id: message_id.to_owned(),
            kind: kind.to_owned(),
            nonce,
            ciphertext: Vec::new(),
            signature: [0; 64],
        };
        let message_key = sender_key(key, sender.user_id(), sender.device_id())?;
        envelope.ciphertext =
            aes256gcm_seal(&message_key, &nonce, &envelope.associated_data(), &padded)?;
        envelope.signature = sender.sign(&envelope.signing_input());
        Ok(envelope)
    }

    /// Reads an envelope from JSON text (at most 6144 bytes): version first
    /// (`e2ee_unsupported_version`), then fields, ids and lengths
    /// (`e2ee_malformed`).
    pub fn from_json_str(text: &str) -> Result<Self, Error> {
        if text.len() > MAX_ENVELOPE_BYTES {
            return Err(malformed("the envelope is larger than 6144 bytes"));
        }
        let value = Json::parse(text).ok_or_else(|| malformed("the envelope is not JSON"))?;
        Self::read(&value)
    }

    /// Reads an envelope from a serde_json value, for native callers that
    /// hold one: the checks of [`from_json_str`](Self::from_json_str) without
    /// its size limit (the wasm build never links serde_json for E2EE).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_json(value: &serde_json::Value) -> Result<Self, Error> {
        let text = value.to_string();
        let value = Json::parse(&text).ok_or_else(|| malformed("the envelope is not JSON"))?;
        Self::read(&value)
    }

    /// Reads an envelope from parsed JSON: version, fields, ids, lengths.
    pub(crate) fn read(value: &Json<'_>) -> Result<Self, Error> {
        let fields = Fields::read(value, "envelope", ENVELOPE_FIELDS)?;
        let envelope = Envelope {
            room_id: fields.id("room_id")?,
            epoch: fields.epoch("epoch")?,
            sender_user_id: fields.id("sender_user_id")?,
            sender_device_id: fields.id("sender_device_id")?,
            message_id: fields.id("message_id")?,
            kind: fields.str("kind")?.to_owned(),
            nonce: fields.array("nonce")?,
            ciphertext: fields.bytes("ciphertext")?,
            signature: fields.array("sig")?,
        };
        validate_kind(&envelope.kind)?;
        let padded = envelope.ciphertext.len().checked_sub(TAG_BYTES);
        if !padded.is_some_and(|len| PADDING_BUCKETS.contains(&len)) {
            return Err(malformed(
                "the ciphertext length is not a padding bucket plus the 16-byte tag",
            ));
        }
        Ok(envelope)
    }

    /// The envelope as compact JSON text (at most 6144 bytes).
    pub fn to_json_string(&self) -> String {
        let mut json = JsonWriter::with_capacity(480 + self.ciphertext.len().div_ceil(3) * 4);
        json.begin_object()
            .key("ciphertext")
            .base64url(&self.ciphertext)
            .key("epoch")
            .u64(self.epoch)
            .key("kind")
            .string(&self.kind)
            .key("message_id")
            .string(&self.message_id)
            .key("nonce")
            .base64url(&self.nonce)
            .key("room_id")
            .string(&self.room_id)
            .key("sender_device_id")
            .string(&self.sender_device_id)
            .key("sender_user_id")
            .string(&self.sender_user_id)
            .key("sig")
            .base64url(&self.signature)
            .key("v")
            .u64(FORMAT_VERSION)
            .end_object();
        json.finish()
    }

    /// [`to_json_string`](Self::to_json_string) as a serde_json value, for
    /// native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_json(&self) -> serde_json::Value {
        // The writer's compact JSON always parses; Null is unreachable.
        serde_json::from_str(&self.to_json_string()).unwrap_or_default()
    }

    /// The AES-GCM associated data.
    pub fn associated_data(&self) -> Vec<u8> {
        Transcript::new(labels::MESSAGE)
            .str(&self.room_id)
            .u64(self.epoch)
            .str(&self.sender_user_id)
            .str(&self.sender_device_id)
            .str(&self.message_id)
            .str(&self.kind)
            .finish()
    }

    /// The bytes the sender device's Ed25519 key signs.
    pub fn signing_input(&self) -> Vec<u8> {
        Transcript::new(labels::MESSAGE_SIGNATURE)
            .bytes(&self.associated_data())
            .raw(&self.nonce)
            .bytes(&self.ciphertext)
            .finish()
    }

    pub fn room_id(&self) -> &str {
        &self.room_id
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn sender_user_id(&self) -> &str {
        &self.sender_user_id
    }

    pub fn sender_device_id(&self) -> &str {
        &self.sender_device_id
    }

    /// The message id bound in the envelope: the sender's `client_id`.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub(crate) fn nonce(&self) -> &[u8; NONCE_BYTES] {
        &self.nonce
    }

    pub(crate) fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    pub(crate) fn signature(&self) -> &[u8; 64] {
        &self.signature
    }
}
