//! The keys of one room on this device: its epochs, who was a member of each,
//! the late-message window and replay detection.

use crate::vec_map::VecMap;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::device::{DeviceKeys, DeviceRecord};
use super::encoding::{b64u_decode, malformed, validate_id, Fields, FORMAT_VERSION};
use super::envelope::{sender_key, unpad, Envelope};
use super::epoch::{create_epoch, members_digest, EpochKey, KeyShare};
use super::json::{Json, JsonWriter, ZeroizeCopies};
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
    /// Sorted by (user id, device id), each device once (sorted vectors, not
    /// maps: each map type is a copy of the B-tree code in the wasm module).
    members: Vec<DeviceRecord>,
}

impl EpochState {
    fn member(&self, user_id: &str, device_id: &str) -> Option<&DeviceRecord> {
        self.members
            .binary_search_by(|m| (m.user_id(), m.device_id()).cmp(&(user_id, device_id)))
            .ok()
            .map(|at| &self.members[at])
    }
}

/// One room's keys on this device.
#[derive(Clone)]
pub struct RoomKeys {
    room_id: String,
    /// Installed epochs, oldest first, each once.
    epochs: Vec<EpochState>,
    /// (sender user, envelope message id) → the backend message id it was
    /// opened under: the same pair under another backend id is a replay.
    seen: VecMap<(String, String), String>,
    /// An epoch created here, held until the backend accepted it.
    pending: Option<EpochKey>,
}

impl std::fmt::Debug for RoomKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomKeys")
            .field("room_id", &self.room_id)
            .field("epochs", &self.epochs())
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
            epochs: Vec::new(),
            seen: VecMap::new(),
            pending: None,
        })
    }

    pub fn room_id(&self) -> &str {
        &self.room_id
    }

    /// The newest installed epoch.
    pub fn current_epoch(&self) -> Option<u64> {
        self.epochs.last().map(|state| state.key.epoch())
    }

    /// Where epoch `epoch` is in `epochs`, or would be inserted.
    fn find_epoch(&self, epoch: u64) -> Result<usize, usize> {
        self.epochs
            .binary_search_by(|state| state.key.epoch().cmp(&epoch))
    }

    fn epoch_state(&self, epoch: u64) -> Option<&EpochState> {
        self.find_epoch(epoch).ok().map(|at| &self.epochs[at])
    }

    /// Whether an epoch is installed (else fetch its share before opening).
    pub fn has_epoch(&self, epoch: u64) -> bool {
        self.find_epoch(epoch).is_ok()
    }

    /// The installed epochs, oldest first.
    pub fn epochs(&self) -> Vec<u64> {
        self.epochs.iter().map(|state| state.key.epoch()).collect()
    }

    /// The key of an installed epoch (to persist it).
    pub fn epoch_key(&self, epoch: u64) -> Option<&EpochKey> {
        self.epoch_state(epoch).map(|state| &state.key)
    }

    /// The member devices of an installed epoch.
    pub fn members(&self, epoch: u64) -> Vec<DeviceRecord> {
        self.epoch_state(epoch)
            .map(|state| state.members.clone())
            .unwrap_or_default()
    }

    /// Whether a device was a member of an installed epoch.
    pub fn is_member(&self, epoch: u64, user_id: &str, device_id: &str) -> bool {
        self.epoch_state(epoch)
            .is_some_and(|state| state.member(user_id, device_id).is_some())
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
        // members_digest refused a device listed twice, so the order is total.
        let id = |i: usize| (members[i].user_id(), members[i].device_id());
        let order = super::sorted_order(members.len(), &|a, b| id(a).cmp(&id(b)));
        let members: Vec<DeviceRecord> = order.iter().map(|&i| members[i].clone()).collect();
        let state = EpochState { key, members };
        let key = &state.key;
        if state
            .member(key.creator_user_id(), key.creator_device_id())
            .is_none()
        {
            return Err(Error::E2eeNotAMember {
                user_id: key.creator_user_id().to_owned(),
                device_id: key.creator_device_id().to_owned(),
                epoch,
            });
        }
        match self.find_epoch(epoch) {
            Ok(at) => {
                let existing = &self.epochs[at].key;
                if existing.secret() == key.secret()
                    && existing.members_digest() == key.members_digest()
                {
                    return Ok(());
                }
                Err(Error::E2eeMalformed {
                    reason: format!("epoch {epoch} is already installed with another key"),
                })
            }
            Err(at) => {
                self.epochs.insert(at, state);
                Ok(())
            }
        }
    }

    /// Whether a new epoch must be created before the next send: there is
    /// none yet, or the current member devices (as the backend lists them now)
    /// differ from the current epoch's (a device or member was added, removed
    /// or changed keys).
    pub fn needs_new_epoch(&self, current_members: &[DeviceRecord]) -> bool {
        match self.epochs.last() {
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
        let Some(state) = self.epochs.last() else {
            return Err(Error::E2eeNoEpoch {
                room_id: self.room_id.clone(),
            });
        };
        let epoch = state.key.epoch();
        if state.member(me.user_id(), me.device_id()).is_none() {
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
        let at = self
            .find_epoch(epoch)
            .map_err(|_| Error::E2eeUnknownEpoch { epoch })?;
        let state = &self.epochs[at];
        let sender = (
            envelope.sender_user_id().to_owned(),
            envelope.sender_device_id().to_owned(),
        );
        let Some(record) = state.member(&sender.0, &sender.1) else {
            return Err(Error::E2eeNotAMember {
                user_id: sender.0,
                device_id: sender.1,
                epoch,
            });
        };
        if let Some(next) = self.epochs.get(at + 1) {
            if sent_at_ms
                > next
                    .key
                    .created_at_ms()
                    .saturating_add(LATE_EPOCH_WINDOW_MS)
            {
                return Err(Error::E2eeEpochExpired { epoch });
            }
        }
        record.verify_signed(&envelope.signing_input(), envelope.signature(), "envelope")?;
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
    /// installed epoch with its secret, creator and member device records.
    /// Not the seen message ids (`"seen"` is always empty): they live only
    /// in memory here, and a persistent replay check is the caller's (the
    /// SDK's ledger), so the state stays the size of the room's epochs, not
    /// of its history. A pending epoch is not included. The text is zeroized
    /// when dropped.
    ///
    /// `{"v":1,"room_id","epochs":[{"epoch","created_at","creator_user_id",
    /// "creator_device_id","members":<digest>,"secret","devices":[record]}],
    /// "seen":[]}`
    pub fn export_state(&self) -> Zeroizing<String> {
        // A generous size, so the text is rarely copied to grow (the writer
        // zeroizes what it leaves behind anyway).
        let records: usize = self.epochs.iter().map(|state| state.members.len()).sum();
        let mut json = JsonWriter::with_capacity(256 + 320 * self.epochs.len() + 360 * records);
        json.begin_object().key("epochs").begin_array();
        for state in &self.epochs {
            let key = &state.key;
            json.begin_object()
                .key("created_at")
                .u64(key.created_at_ms())
                .key("creator_device_id")
                .string(key.creator_device_id())
                .key("creator_user_id")
                .string(key.creator_user_id())
                .key("devices")
                .begin_array();
            for record in &state.members {
                record.write_json(&mut json);
            }
            json.end_array()
                .key("epoch")
                .u64(key.epoch())
                .key("members")
                .base64url(&key.members_digest())
                .key("secret")
                .base64url(key.secret())
                .end_object();
        }
        json.end_array()
            .key("room_id")
            .string(&self.room_id)
            // Always empty: the seen ids grow with the room's history, and a
            // state rewritten per opened message would cost O(history) per
            // message; the SDK keeps them in its own replay ledger instead.
            // `restore_state` still reads entries written before.
            .key("seen")
            .begin_array()
            .end_array()
            .key("v")
            .u64(FORMAT_VERSION)
            .end_object();
        json.finish_secret()
    }

    /// Restores keys from [`export_state`](Self::export_state)'s text:
    /// `e2ee_unsupported_version` for another `"v"`, `e2ee_malformed` for
    /// anything else that is not a consistent state (never a panic). Member
    /// records are signature-checked again and every epoch reinstalled with
    /// the checks of [`install_epoch`](Self::install_epoch).
    pub fn restore_state(text: &str) -> Result<Self, Error> {
        let mut value = Json::parse(text).ok_or_else(|| malformed("the room state is not JSON"))?;
        let restored = Self::from_state(&value);
        // Unescaped strings borrow from `text` (the caller's); an escaped one
        // is a copy, and a secret may be one of them.
        value.zeroize_copies();
        restored.map_err(|error| match error {
            Error::E2eeMalformed { .. } | Error::E2eeUnsupportedVersion { .. } => error,
            other => malformed(format!("the room state is inconsistent ({other})")),
        })
    }

    fn from_state(value: &Json<'_>) -> Result<Self, Error> {
        let fields = Fields::read(value, "room state", &["room_id", "epochs", "seen"])?;
        let mut room = RoomKeys::new(&fields.id("room_id")?)?;
        // Each distinct record is verified once, however many epochs list it.
        let mut verified: VecMap<String, DeviceRecord> = VecMap::new();
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
                let text = device.to_compact_string();
                let record = match verified.get(&text) {
                    Some(record) => record.clone(),
                    None => {
                        let record = DeviceRecord::read(device)?;
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
        self.epochs.retain(|state| state.key.epoch() >= epoch);
    }
}
