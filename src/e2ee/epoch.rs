//! Room epochs: a random 32-byte secret per epoch, wrapped for each member
//! device as a signed key share.

use std::fmt;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::device::{DeviceKeys, DeviceRecord};
use super::encoding::{malformed, validate_epoch, validate_id, Fields, Transcript, FORMAT_VERSION};
use super::json::{Json, JsonWriter};
use super::primitives::{
    aes256gcm_open, aes256gcm_seal, hkdf_sha256, sha256, x25519_public, x25519_shared,
};
use super::{labels, MAX_SHARE_BYTES};
use crate::error::{quoted, Error};

/// Bytes of a wrapped epoch secret: 32 of secret and 16 of tag.
pub const WRAPPED_SECRET_BYTES: usize = 48;

/// The key of one epoch of one room, as created or unwrapped from a share.
/// The secret is zeroized on drop; `Debug` does not show it.
#[derive(Clone)]
pub struct EpochKey {
    room_id: String,
    epoch: u64,
    created_at_ms: u64,
    creator_user_id: String,
    creator_device_id: String,
    members_digest: [u8; 32],
    secret: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EpochKey")
            .field("room_id", &self.room_id)
            .field("epoch", &self.epoch)
            .field("created_at_ms", &self.created_at_ms)
            .field("creator_user_id", &self.creator_user_id)
            .field("creator_device_id", &self.creator_device_id)
            .finish_non_exhaustive()
    }
}

impl EpochKey {
    /// An epoch key from its parts, to restore a persisted one.
    pub fn from_parts(
        room_id: &str,
        epoch: u64,
        created_at_ms: u64,
        creator_user_id: &str,
        creator_device_id: &str,
        members_digest: [u8; 32],
        secret: &[u8; 32],
    ) -> Result<Self, Error> {
        validate_id("room_id", room_id)?;
        validate_epoch(epoch)?;
        validate_id("user_id", creator_user_id)?;
        validate_id("device_id", creator_device_id)?;
        Ok(EpochKey {
            room_id: room_id.to_owned(),
            epoch,
            created_at_ms,
            creator_user_id: creator_user_id.to_owned(),
            creator_device_id: creator_device_id.to_owned(),
            members_digest,
            secret: Zeroizing::new(*secret),
        })
    }

    pub fn room_id(&self) -> &str {
        &self.room_id
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The creator's clock when it made the epoch, in ms since the Unix epoch.
    pub fn created_at_ms(&self) -> u64 {
        self.created_at_ms
    }

    pub fn creator_user_id(&self) -> &str {
        &self.creator_user_id
    }

    pub fn creator_device_id(&self) -> &str {
        &self.creator_device_id
    }

    /// The digest of the member devices the epoch was shared with.
    pub fn members_digest(&self) -> [u8; 32] {
        self.members_digest
    }

    /// The epoch secret (to persist it; never send it anywhere).
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

/// The digest of a set of member devices: SHA-256 of
/// `transcript("DomVia-E2EE-v1 members") || u64(count) || lp(identity)...`
/// over the identities sorted bytewise. `e2ee_malformed` when the set is empty
/// or names a device twice.
pub fn members_digest(members: &[DeviceRecord]) -> Result<[u8; 32], Error> {
    if members.is_empty() {
        return Err(malformed("an epoch needs at least one member device"));
    }
    let identities: Vec<Vec<u8>> = members.iter().map(DeviceRecord::identity).collect();
    let order = super::sorted_order(identities.len(), &|a, b| identities[a].cmp(&identities[b]));
    let identities: Vec<&[u8]> = order.iter().map(|&i| identities[i].as_slice()).collect();
    // An identity is `lp(user_id) || lp(device_id)` then the two 32-byte
    // keys, so sorted, the identities of one device (whatever its keys) are
    // adjacent: comparing neighbours without their keys finds every repeat.
    fn device_ids(identity: &[u8]) -> &[u8] {
        &identity[..identity.len().saturating_sub(64)]
    }
    if identities
        .windows(2)
        .any(|pair| device_ids(pair[0]) == device_ids(pair[1]))
    {
        return Err(listed_twice(members));
    }
    let mut t = Transcript::new(labels::MEMBERS);
    t.u64(identities.len() as u64);
    for identity in &identities {
        t.bytes(identity);
    }
    Ok(sha256(&t.finish()))
}

/// The error for members that name a device twice: it names the first
/// repeat in their order.
#[cold]
fn listed_twice(members: &[DeviceRecord]) -> Error {
    let same = |a: &DeviceRecord, b: &DeviceRecord| {
        a.user_id() == b.user_id() && a.device_id() == b.device_id()
    };
    let repeat = members
        .iter()
        .enumerate()
        .find(|&(i, member)| members[..i].iter().any(|earlier| same(earlier, member)))
        .map_or(&members[0], |(_, member)| member);
    malformed(format!(
        "device {} of user {} is listed twice",
        quoted(repeat.device_id()),
        quoted(repeat.user_id())
    ))
}

/// An epoch secret wrapped for one recipient device and signed by the
/// creator's device. Reading one ([`KeyShare::from_json_str`]) checks only its
/// form; [`KeyShare::open`] checks the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyShare {
    room_id: String,
    epoch: u64,
    created_at_ms: u64,
    sender_user_id: String,
    sender_device_id: String,
    recipient_user_id: String,
    recipient_device_id: String,
    members_digest: [u8; 32],
    ephemeral: [u8; 32],
    ciphertext: [u8; WRAPPED_SECRET_BYTES],
    signature: [u8; 64],
}

const SHARE_FIELDS: &[&str] = &[
    "room_id",
    "epoch",
    "created_at",
    "sender_user_id",
    "sender_device_id",
    "recipient_user_id",
    "recipient_device_id",
    "members",
    "ephemeral",
    "ciphertext",
    "sig",
];

/// A new epoch: its key and one share per member device (in the order given).
#[derive(Debug)]
pub struct NewEpoch {
    pub key: EpochKey,
    pub shares: Vec<KeyShare>,
}

/// Creates epoch `epoch` of a room for `members` (which must include the
/// creating device): a random secret (32 bytes from `rng`), then for each
/// member a fresh ephemeral X25519 secret (32 bytes from `rng`).
pub fn create_epoch<R: CryptoRng + ?Sized>(
    room_id: &str,
    epoch: u64,
    created_at_ms: u64,
    creator: &DeviceKeys,
    members: &[DeviceRecord],
    rng: &mut R,
) -> Result<NewEpoch, Error> {
    let mut secret = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(secret.as_mut());
    let mut ephemerals = Zeroizing::new(vec![[0u8; 32]; members.len()]);
    for ephemeral in ephemerals.iter_mut() {
        rng.fill_bytes(ephemeral);
    }
    create_epoch_with(
        room_id,
        epoch,
        created_at_ms,
        creator,
        members,
        &secret,
        &ephemerals,
    )
}

/// [`create_epoch`] with the secret and the ephemeral X25519 secrets given
/// (one per member, never reused): deterministic, for known-answer vectors.
pub fn create_epoch_with(
    room_id: &str,
    epoch: u64,
    created_at_ms: u64,
    creator: &DeviceKeys,
    members: &[DeviceRecord],
    secret: &[u8; 32],
    ephemerals: &[[u8; 32]],
) -> Result<NewEpoch, Error> {
    validate_id("room_id", room_id)?;
    validate_epoch(epoch)?;
    if ephemerals.len() != members.len() {
        return Err(malformed(
            "one ephemeral secret is needed per member device",
        ));
    }
    let digest = members_digest(members)?;
    if !members
        .iter()
        .any(|m| m.user_id() == creator.user_id() && m.device_id() == creator.device_id())
    {
        return Err(Error::E2eeNotAMember {
            user_id: creator.user_id().to_owned(),
            device_id: creator.device_id().to_owned(),
            epoch,
        });
    }
    let key = EpochKey {
        room_id: room_id.to_owned(),
        epoch,
        created_at_ms,
        creator_user_id: creator.user_id().to_owned(),
        creator_device_id: creator.device_id().to_owned(),
        members_digest: digest,
        secret: Zeroizing::new(*secret),
    };
    let shares = members
        .iter()
        .zip(ephemerals)
        .map(|(member, ephemeral)| KeyShare::wrap(&key, creator, member, ephemeral))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NewEpoch { key, shares })
}

/// HKDF-SHA256 of the X25519 shared secret into the wrapping key (32 bytes)
/// and nonce (12 bytes).
fn wrapping_key(
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    recipient_x25519: &[u8; 32],
) -> Result<(Zeroizing<[u8; 32]>, [u8; 12]), Error> {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral);
    salt[32..].copy_from_slice(recipient_x25519);
    let mut okm = Zeroizing::new([0u8; 44]);
    hkdf_sha256(
        &salt,
        shared,
        &Transcript::new(labels::SHARE_WRAP).finish(),
        okm.as_mut(),
    )?;
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&okm[..32]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&okm[32..]);
    Ok((key, nonce))
}

impl KeyShare {
    fn wrap(
        key: &EpochKey,
        creator: &DeviceKeys,
        recipient: &DeviceRecord,
        ephemeral_secret: &[u8; 32],
    ) -> Result<Self, Error> {
        let ephemeral = x25519_public(ephemeral_secret);
        let recipient_x25519 = recipient.x25519_public();
        let shared = x25519_shared(ephemeral_secret, &recipient_x25519)?;
        let (wrap_key, nonce) = wrapping_key(&shared, &ephemeral, &recipient_x25519)?;
        let mut share = KeyShare {
            room_id: key.room_id.clone(),
            epoch: key.epoch,
            created_at_ms: key.created_at_ms,
            sender_user_id: creator.user_id().to_owned(),
            sender_device_id: creator.device_id().to_owned(),
            recipient_user_id: recipient.user_id().to_owned(),
            recipient_device_id: recipient.device_id().to_owned(),
            members_digest: key.members_digest,
            ephemeral,
            ciphertext: [0; WRAPPED_SECRET_BYTES],
            signature: [0; 64],
        };
        let sealed = aes256gcm_seal(&wrap_key, &nonce, &share.associated_data(), &key.secret[..])?;
        share.ciphertext.copy_from_slice(&sealed);
        share.signature = creator.sign(&share.signing_input());
        Ok(share)
    }

    /// Reads a share from JSON text (as stored by the backend): version,
    /// fields, lengths.
    pub fn from_json_str(text: &str) -> Result<Self, Error> {
        let value = Json::parse(text).ok_or_else(|| malformed("the key share is not JSON"))?;
        Self::read(&value)
    }

    /// [`from_json_str`](Self::from_json_str) of a serde_json value, for
    /// native callers that hold one (the wasm build never links serde_json
    /// for E2EE).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_json(value: &serde_json::Value) -> Result<Self, Error> {
        Self::from_json_str(&value.to_string())
    }

    /// Reads a share from parsed JSON: version, fields, lengths.
    pub(crate) fn read(value: &Json<'_>) -> Result<Self, Error> {
        let fields = Fields::read(value, "key share", SHARE_FIELDS)?;
        let share = KeyShare {
            room_id: fields.id("room_id")?,
            epoch: fields.epoch("epoch")?,
            created_at_ms: fields.u64("created_at")?,
            sender_user_id: fields.id("sender_user_id")?,
            sender_device_id: fields.id("sender_device_id")?,
            recipient_user_id: fields.id("recipient_user_id")?,
            recipient_device_id: fields.id("recipient_device_id")?,
            members_digest: fields.array("members")?,
            ephemeral: fields.array("ephemeral")?,
            ciphertext: fields.array("ciphertext")?,
            signature: fields.array("sig")?,
        };
        if share.to_json_string().len() > MAX_SHARE_BYTES {
            return Err(malformed("the key share is too large"));
        }
        Ok(share)
    }

    /// The share as compact JSON text (at most 4096 bytes).
    pub fn to_json_string(&self) -> String {
        let mut json = JsonWriter::with_capacity(768);
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

    /// Writes the share as a JSON object, keys in byte order.
    pub(crate) fn write_json(&self, json: &mut JsonWriter) {
        json.begin_object()
            .key("ciphertext")
            .base64url(&self.ciphertext)
            .key("created_at")
            .u64(self.created_at_ms)
            .key("ephemeral")
            .base64url(&self.ephemeral)
            .key("epoch")
            .u64(self.epoch)
            .key("members")
            .base64url(&self.members_digest)
            .key("recipient_device_id")
            .string(&self.recipient_device_id)
            .key("recipient_user_id")
            .string(&self.recipient_user_id)
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
    }

    /// The AES-GCM associated data of the wrapped secret.
    pub fn associated_data(&self) -> Vec<u8> {
        Transcript::new(labels::SHARE)
            .str(&self.room_id)
            .u64(self.epoch)
            .u64(self.created_at_ms)
            .str(&self.sender_user_id)
            .str(&self.sender_device_id)
            .str(&self.recipient_user_id)
            .str(&self.recipient_device_id)
            .raw(&self.members_digest)
            .raw(&self.ephemeral)
            .finish()
    }

    /// The bytes the creator's Ed25519 key signs.
    pub fn signing_input(&self) -> Vec<u8> {
        Transcript::new(labels::SHARE_SIGNATURE)
            .bytes(&self.associated_data())
            .bytes(&self.ciphertext)
            .finish()
    }

    /// Opens the share with this device's keys: checks that it is addressed
    /// to this device (`e2ee_wrong_recipient`), that `sender` is the device it
    /// names (`e2ee_wrong_sender`), the signature (`e2ee_bad_signature`), then
    /// unwraps the secret (`e2ee_decrypt_failed`).
    pub fn open(&self, me: &DeviceKeys, sender: &DeviceRecord) -> Result<EpochKey, Error> {
        if self.recipient_user_id != me.user_id() || self.recipient_device_id != me.device_id() {
            return Err(Error::E2eeWrongRecipient {
                device_id: self.recipient_device_id.clone(),
            });
        }
        if self.sender_user_id != sender.user_id() || self.sender_device_id != sender.device_id() {
            return Err(Error::E2eeWrongSender {
                user_id: self.sender_user_id.clone(),
                device_id: self.sender_device_id.clone(),
            });
        }
        sender.verify_signed(&self.signing_input(), &self.signature, "key share")?;
        let shared = me.diffie_hellman(&self.ephemeral)?;
        let (wrap_key, nonce) = wrapping_key(&shared, &self.ephemeral, &me.x25519_public())?;
        let secret = Zeroizing::new(aes256gcm_open(
            &wrap_key,
            &nonce,
            &self.associated_data(),
            &self.ciphertext,
        )?);
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&secret);
        Ok(EpochKey {
            room_id: self.room_id.clone(),
            epoch: self.epoch,
            created_at_ms: self.created_at_ms,
            creator_user_id: self.sender_user_id.clone(),
            creator_device_id: self.sender_device_id.clone(),
            members_digest: self.members_digest,
            secret: out,
        })
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

    pub fn recipient_user_id(&self) -> &str {
        &self.recipient_user_id
    }

    /// The device this share is for (the backend's `device_id` of the share).
    pub fn recipient_device_id(&self) -> &str {
        &self.recipient_device_id
    }
}
