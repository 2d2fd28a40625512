//! The keys of one room on this device: its epochs, who was a member of each,
//! the late-message window and replay detection.

use std::collections::{BTreeMap, HashSet};

use rand_core::CryptoRng;

use super::device::{verify_signature, DeviceKeys, DeviceRecord};
use super::encoding::validate_id;
use super::envelope::{sender_key, unpad, Envelope};
use super::epoch::{members_digest, EpochKey};
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
    seen: HashSet<(String, String)>,
}

impl std::fmt::Debug for RoomKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomKeys")
            .field("room_id", &self.room_id)
            .field("epochs", &self.epochs.keys().collect::<Vec<_>>())
            .field("seen", &self.seen.len())
            .finish()
    }
}

impl RoomKeys {
    pub fn new(room_id: &str) -> Result<Self, Error> {
        validate_id("room_id", room_id)?;
        Ok(RoomKeys {
            room_id: room_id.to_owned(),
            epochs: BTreeMap::new(),
            seen: HashSet::new(),
        })
    }

    pub fn room_id(&self) -> &str {
        &self.room_id
    }

    /// The newest installed epoch.
    pub fn current_epoch(&self) -> Option<u64> {
        self.epochs.keys().next_back().copied()
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
    /// message. Only a message that passes everything is remembered as seen,
    /// so open each stored message once (cache the result by its backend id).
    pub fn open(&mut self, envelope: &Envelope, sent_at_ms: u64) -> Result<OpenedMessage, Error> {
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
        if self.seen.contains(&seen) {
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
        self.seen.insert(seen);
        Ok(opened)
    }

    /// Forgets epochs older than `epoch` (their messages become
    /// `e2ee_unknown_epoch`).
    pub fn forget_epochs_before(&mut self, epoch: u64) {
        self.epochs = self.epochs.split_off(&epoch);
    }
}
