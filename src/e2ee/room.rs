//! The keys of one room on this device: its epochs, who was a member of each,
//! the late-message window and replay detection.

use std::collections::BTreeMap;

use rand_core::CryptoRng;
use serde_json::{json, Value};
use zeroize::{Zeroize, Zeroizing};

use super::device::{verify_signature, DeviceKeys, DeviceRecord};
use super::encoding::{b64u_decode, b64u_encode, malformed, validate_id, Fields, FORMAT_VERSION};
use super::envelope::{sender_key, unpad, Envelope};
use super::epoch::{create_epoch, members_digest, EpochKey, KeyShare};
use super::primitives::{aes256gcm_open, NONCE_BYTES};
use crate::protocol::Error;

/// How long after a newer epoch was created a message of an older one is still
/// accepted: 5 minutes, compared between the message's server `sent_at` and
/// the next epoch's `created_at` (the creator's clock), so it covers sends in
/// flight and modest clock skew.
pub const LATE_EPOCH_WINDOW_MS: u64 = 5 * 60 * 1000;

/// A message that passed every check, decrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedMessage {
    pub epoch: u64,
    /// The authenticated sender: compare it with the backend's `user_id`.
    pub sender_user_id: String,
    pub sender_device_id: String,
    /// The sender's `client_id`: compare it with the backend's `client_id`.
    pub message_id: String,
    pub kind: String,
    pub content: Vec<u8>,
}

#[derive(Clone)]
struct EpochState {
    key: EpochKey,
    members: BTreeMap<(String, String), DeviceRecord>,
}

/// One room's keys on this device.
#[derive(Clone)]
pub struct RoomKeys {
    room_id: String,
    epochs: BTreeMap<u64, EpochState>,
    /// (sender user, envelope message id) → the backend message id it was
    /// opened under: the same pair under another backend id is a replay.
    seen: BTreeMap<(String, String), String>,
    /// An epoch created here, held until the backend accepted it.
    pending: Option<EpochKey>,
}

impl std::fmt::Debug for RoomKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomKeys")
            .field("room_id", &self.room_id)
            .field("epochs", &self.epochs.keys().collect::<Vec<_>>())
            .field("seen", &self.seen.len())
            .field("pending", &self.pending.as_ref().map(EpochKey::epoch))
            .finish()
    }
}

impl RoomKeys {
    pub fn new(room_id: &str) -> Result<Self, Error> {
        validate_id("room_id", room_id)?;
        Ok(RoomKeys {
            room_id: room_id.to_owned(),
            epochs: BTreeMap::new(),
            seen: BTreeMap::new(),
            pending: None,
        })
    }

    pub fn room_id(&self) -> &str {
        &self.room_id
    }

    /// The newest installed epoch.
    pub fn current_epoch(&self) -> Option<u64> {
        self.epochs.keys().next_back().copied()
    }

    /// Whether an epoch is installed (else fetch its share before opening).
    pub fn has_epoch(&self, epoch: u64) -> bool {
        self.epochs.contains_key(&epoch)
    }

    /// The installed epochs, oldest first.
    pub fn epochs(&self) -> Vec<u64> {
        self.epochs.keys().copied().collect()
    }

    /// The key of an installed epoch (to persist it).
    pub fn epoch_key(&self, epoch: u64) -> Option<&EpochKey> {
        self.epochs.get(&epoch).map(|state| &state.key)
    }

    /// The member devices of an installed epoch.
    pub fn members(&self, epoch: u64) -> Vec<DeviceRecord> {
        self.epochs
            .get(&epoch)
            .map(|state| state.members.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether a device was a member of an installed epoch.
    pub fn is_member(&self, epoch: u64, user_id: &str, device_id: &str) -> bool {
        self.epochs.get(&epoch).is_some_and(|state| {
            state
                .members
                .contains_key(&(user_id.to_owned(), device_id.to_owned()))
        })
    }

    /// Installs an epoch key (from `create_epoch` or `KeyShare::open`) with
    /// its member devices, as fetched from the backend. Checks the room
    /// (`e2ee_wrong_room`), that the members are exactly those the creator
    /// shared it with (`e2ee_members_mismatch`) and that the creator is one of
    /// them (`e2ee_not_a_member`). Installing the same key again is a no-op.
    pub fn install_epoch(&mut self, key: EpochKey, members: &[DeviceRecord]) -> Result<(), Error> {
        if key.room_id() != self.room_id {
            return Err(Error::E2eeWrongRoom {
                expected: self.room_id.clone(),
                actual: key.room_id().to_owned(),
            });
        }
        let epoch = key.epoch();
        if members_digest(members)? != key.members_digest() {
            return Err(Error::E2eeMembersMismatch { epoch });
        }
        let members: BTreeMap<_, _> = members
            .iter()
            .map(|m| {
                (
                    (m.user_id().to_owned(), m.device_id().to_owned()),
                    m.clone(),
                )
            })
            .collect();
        let creator = (
            key.creator_user_id().to_owned(),
            key.creator_device_id().to_owned(),
        );
        if !members.contains_key(&creator) {
            return Err(Error::E2eeNotAMember {
                user_id: creator.0,
                device_id: creator.1,
                epoch,
            });
        }
        if let Some(existing) = self.epochs.get(&epoch) {
            if existing.key.secret() == key.secret()
                && existing.key.members_digest() == key.members_digest()
            {
                return Ok(());
            }
            return Err(Error::E2eeMalformed {
                reason: format!("epoch {epoch} is already installed with another key"),
            });
        }
        self.epochs.insert(epoch, EpochState { key, members });
        Ok(())
    }

    /// Whether a new epoch must be created before the next send: there is
    /// none yet, or the current member devices (as the backend lists them now)
    /// differ from the current epoch's (a device or member was added, removed
    /// or changed keys).
    pub fn needs_new_epoch(&self, current_members: &[DeviceRecord]) -> bool {
        match self.epochs.values().next_back() {
            None => true,
            Some(state) => members_digest(current_members)
                .map_or(true, |digest| digest != state.key.members_digest()),
        }
    }

    /// Encrypts and signs content for the room's current epoch with a random
    /// nonce (12 bytes from `rng`). `e2ee_no_epoch` without an epoch;
    /// `e2ee_not_a_member` when this device is not a member of it.
    pub fn seal<R: CryptoRng + ?Sized>(
        &self,
        me: &DeviceKeys,
        message_id: &str,
        kind: &str,
        content: &[u8],
        rng: &mut R,
    ) -> Result<Envelope, Error> {
        let mut nonce = [0u8; NONCE_BYTES];
        rng.fill_bytes(&mut nonce);
        self.seal_with_nonce(me, message_id, kind, content, nonce)
    }

    /// [`seal`](Self::seal) with the nonce given: deterministic, for vectors.
    pub fn seal_with_nonce(
        &self,
        me: &DeviceKeys,
        message_id: &str,
        kind: &str,
        content: &[u8],
        nonce: [u8; NONCE_BYTES],
    ) -> Result<Envelope, Error> {
        let Some((&epoch, state)) = self.epochs.iter().next_back() else {
            return Err(Error::E2eeNoEpoch {
                room_id: self.room_id.clone(),
            });
        };
        if !state
            .members
            .contains_key(&(me.user_id().to_owned(), me.device_id().to_owned()))
        {
            return Err(Error::E2eeNotAMember {
                user_id: me.user_id().to_owned(),
                device_id: me.device_id().to_owned(),
                epoch,
            });
        }
        Envelope::seal_with_nonce(&state.key, me, message_id, kind, content, nonce)
    }

    /// Checks and decrypts an envelope, in this order: room
    /// (`e2ee_wrong_room`), epoch installed (`e2ee_unknown_epoch`), sender
    /// device a member of that epoch (`e2ee_not_a_member`), for an older epoch
    /// the late window (`e2ee_epoch_expired`), signature
    /// (`e2ee_bad_signature`), replay of the sender's message id
    /// (`e2ee_replay`), decryption (`e2ee_decrypt_failed`) and padding
    /// (`e2ee_malformed`). `sent_at_ms` is the backend's `sent_at` of the
    /// message and `backend_message_id` its backend `message_id`.
    ///
    /// Replay is keyed by the backend message: the same sender's envelope
    /// `message_id` under a *different* backend message id is `e2ee_replay`,
    /// while opening the same backend message again (a history reload) opens
    /// it again. Only a message that passes everything is remembered, so a
    /// forged copy cannot block the real one.
    pub fn open(
        &mut self,
        envelope: &Envelope,
        sent_at_ms: u64,
        backend_message_id: &str,
    ) -> Result<OpenedMessage, Error> {
        validate_id("backend_message_id", backend_message_id)?;
        if envelope.room_id() != self.room_id {
            return Err(Error::E2eeWrongRoom {
                expected: self.room_id.clone(),
                actual: envelope.room_id().to_owned(),
            });
        }
        let epoch = envelope.epoch();
        let state = self
            .epochs
            .get(&epoch)
            .ok_or(Error::E2eeUnknownEpoch { epoch })?;
        let sender = (
            envelope.sender_user_id().to_owned(),
            envelope.sender_device_id().to_owned(),
        );
        let Some(record) = state.members.get(&sender) else {
            return Err(Error::E2eeNotAMember {
                user_id: sender.0,
                device_id: sender.1,
                epoch,
            });
        };
        if let Some((_, next)) = self.epochs.range(epoch + 1..).next() {
            if sent_at_ms
                > next
                    .key
                    .created_at_ms()
                    .saturating_add(LATE_EPOCH_WINDOW_MS)
            {
                return Err(Error::E2eeEpochExpired { epoch });
            }
        }
        verify_signature(
            &record.ed25519_public(),
            &envelope.signing_input(),
            envelope.signature(),
            "envelope",
        )?;
        let seen = (sender.0, envelope.message_id().to_owned());
        if self
            .seen
            .get(&seen)
            .is_some_and(|opened_as| opened_as != backend_message_id)
        {
            return Err(Error::E2eeReplay {
                user_id: seen.0,
                message_id: seen.1,
            });
        }
        let message_key = sender_key(&state.key, &seen.0, &sender.1)?;
        let padded = zeroize::Zeroizing::new(aes256gcm_open(
            &message_key,
            envelope.nonce(),
            &envelope.associated_data(),
            envelope.ciphertext(),
        )?);
        let content = unpad(&padded)?.to_vec();
        let opened = OpenedMessage {
            epoch,
            sender_user_id: seen.0.clone(),
            sender_device_id: sender.1,
            message_id: seen.1.clone(),
            kind: envelope.kind().to_owned(),
            content,
        };
        self.seen.insert(seen, backend_message_id.to_owned());
        Ok(opened)
    }

    /// Creates epoch `epoch` (newer than the current one) for `members`
    /// (which must include `me`) and holds its key as pending: it is not
    /// used until [`commit_epoch`](Self::commit_epoch), after the backend
    /// accepted the shares. Returns one share per member, in their order.
    /// A previous pending epoch is replaced.
    pub fn begin_epoch<R: CryptoRng + ?Sized>(
        &mut self,
        me: &DeviceKeys,
        epoch: u64,
        created_at_ms: u64,
        members: &[DeviceRecord],
        rng: &mut R,
    ) -> Result<Vec<KeyShare>, Error> {
        if let Some(current) = self.current_epoch().filter(|&current| current >= epoch) {
            return Err(malformed(format!(
                "epoch {epoch} is not newer than the current epoch {current}"
            )));
        }
        let new = create_epoch(&self.room_id, epoch, created_at_ms, me, members, rng)?;
        self.pending = Some(new.key);
        Ok(new.shares)
    }

    /// The epoch created by [`begin_epoch`](Self::begin_epoch) and not yet
    /// committed or discarded.
    pub fn pending_epoch(&self) -> Option<u64> {
        self.pending.as_ref().map(EpochKey::epoch)
    }

    /// Installs the pending epoch with its member devices once the backend
    /// accepted it. `e2ee_unknown_epoch` when no epoch `epoch` is pending;
    /// the checks of [`install_epoch`](Self::install_epoch) otherwise (the
    /// pending epoch stays pending when they fail).
    pub fn commit_epoch(&mut self, epoch: u64, members: &[DeviceRecord]) -> Result<(), Error> {
        let Some(key) = self.pending.take_if(|key| key.epoch() == epoch) else {
            return Err(Error::E2eeUnknownEpoch { epoch });
        };
        if let Err(error) = self.install_epoch(key.clone(), members) {
            self.pending = Some(key);
            return Err(error);
        }
        Ok(())
    }

    /// Drops the pending epoch (the backend refused it: `409`).
    pub fn discard_epoch(&mut self) {
        self.pending = None;
    }

    /// The room's keys as versioned JSON text, to persist (encrypted!): every
    /// installed epoch with its secret, creator and member device records,
    /// and the seen message ids. A pending epoch is not included. The text is
    /// zeroized when dropped.
    ///
    /// `{"v":1,"room_id","epochs":[{"epoch","created_at","creator_user_id",
    /// "creator_device_id","members":<digest>,"secret","devices":[record]}],
    /// "seen":[[user_id, message_id, backend_message_id]]}`
    pub fn export_state(&self) -> Zeroizing<String> {
        let epochs: Vec<Value> = self
            .epochs
            .iter()
            .map(|(epoch, state)| {
                json!({
                    "epoch": epoch,
                    "created_at": state.key.created_at_ms(),
                    "creator_user_id": state.key.creator_user_id(),
                    "creator_device_id": state.key.creator_device_id(),
                    "members": b64u_encode(&state.key.members_digest()),
                    "secret": b64u_encode(state.key.secret()),
                    "devices": state.members.values().map(DeviceRecord::to_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        let seen: Vec<Value> = self
            .seen
            .iter()
            .map(|((user_id, message_id), backend_id)| json!([user_id, message_id, backend_id]))
            .collect();
        let mut state = json!({
            "v": FORMAT_VERSION,
            "room_id": self.room_id,
            "epochs": epochs,
            "seen": seen,
        });
        let text = to_zeroizing_json(&state);
        zeroize_secrets(&mut state);
        text
    }

    /// Restores keys from [`export_state`](Self::export_state)'s text:
    /// `e2ee_unsupported_version` for another `"v"`, `e2ee_malformed` for
    /// anything else that is not a consistent state (never a panic). Member
    /// records are signature-checked again and every epoch reinstalled with
    /// the checks of [`install_epoch`](Self::install_epoch).
    pub fn restore_state(text: &str) -> Result<Self, Error> {
        let mut value: Value =
            serde_json::from_str(text).map_err(|_| malformed("the room state is not JSON"))?;
        let restored = Self::from_state(&value);
        zeroize_secrets(&mut value);
        restored.map_err(|error| match error {
            Error::E2eeMalformed { .. } | Error::E2eeUnsupportedVersion { .. } => error,
            other => malformed(format!("the room state is inconsistent ({other})")),
        })
    }

    fn from_state(value: &Value) -> Result<Self, Error> {
        let fields = Fields::read(value, "room state", &["room_id", "epochs", "seen"])?;
        let mut room = RoomKeys::new(&fields.id("room_id")?)?;
        // Each distinct record is verified once, however many epochs list it.
        let mut verified: BTreeMap<String, DeviceRecord> = BTreeMap::new();
        for epoch in fields.list("epochs")? {
            let f = Fields::read_nested(
                epoch,
                "room state epoch",
                &[
                    "epoch",
                    "created_at",
                    "creator_user_id",
                    "creator_device_id",
                    "members",
                    "secret",
                    "devices",
                ],
            )?;
            let secret = Zeroizing::new(
                b64u_decode(f.str("secret")?)
                    .ok_or_else(|| malformed("an epoch secret is not base64url"))?,
            );
            let secret: &[u8; 32] = secret
                .as_slice()
                .try_into()
                .map_err(|_| malformed("an epoch secret must have 32 bytes"))?;
            let key = EpochKey::from_parts(
                room.room_id(),
                f.epoch("epoch")?,
                f.u64("created_at")?,
                &f.id("creator_user_id")?,
                &f.id("creator_device_id")?,
                f.array("members")?,
                secret,
            )?;
            let devices = f.list("devices")?;
            let mut members = Vec::with_capacity(devices.len());
            for device in devices {
                let text = device.to_string();
                let record = match verified.get(&text) {
                    Some(record) => record.clone(),
                    None => {
                        let record = DeviceRecord::from_json(device)?;
                        verified.insert(text, record.clone());
                        record
                    }
                };
                members.push(record);
            }
            if room.has_epoch(key.epoch()) {
                return Err(malformed(format!("epoch {} is listed twice", key.epoch())));
            }
            room.install_epoch(key, &members)?;
        }
        for entry in fields.list("seen")? {
            let ids = entry
                .as_array()
                .filter(|ids| ids.len() == 3)
                .ok_or_else(|| {
                    malformed("a seen entry must be [user_id, message_id, backend_id]")
                })?;
            let mut parts = [String::new(), String::new(), String::new()];
            for (part, id) in parts.iter_mut().zip(ids) {
                let id = id
                    .as_str()
                    .ok_or_else(|| malformed("a seen entry must hold strings"))?;
                validate_id("seen id", id)?;
                *part = id.to_owned();
            }
            let [user_id, message_id, backend_id] = parts;
            room.seen.insert((user_id, message_id), backend_id);
        }
        Ok(room)
    }

    /// Forgets epochs older than `epoch` (their messages become
    /// `e2ee_unknown_epoch`).
    pub fn forget_epochs_before(&mut self, epoch: u64) {
        self.epochs = self.epochs.split_off(&epoch);
    }
}

/// Compact JSON text in one exactly sized, zeroized-on-drop buffer (sized by a
/// first pass, so no reallocation leaves a copy of a secret behind).
pub(crate) fn to_zeroizing_json(value: &Value) -> Zeroizing<String> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a Value into memory cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    let mut bytes = Vec::with_capacity(count.0);
    let _ = serde_json::to_writer(&mut bytes, value);
    // serde_json writes UTF-8; an empty string is the (unreachable) fallback.
    Zeroizing::new(String::from_utf8(bytes).unwrap_or_default())
}

/// Zeroizes the `"secret"` strings of a room state's epochs in place.
fn zeroize_secrets(state: &mut Value) {
    let Some(epochs) = state.get_mut("epochs").and_then(Value::as_array_mut) else {
        return;
    };
    for epoch in epochs {
        if let Some(Value::String(secret)) = epoch.get_mut("secret") {
            secret.zeroize();
        }
    }
}
