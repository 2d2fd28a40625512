//! [`RoomSession`]: one room's end-to-end encryption policy as a sans-IO
//! machine, the way [`Connection`](crate::connection::Connection) runs the
//! socket's: user calls, HTTP answers, storage results and the time go in;
//! [`Action`]s come out, drained by the caller with
//! [`poll_action`](RoomSession::poll_action) (matrix-rust-sdk-crypto's
//! `outgoingRequests` / `markRequestAsSent`).
//!
//! The session decides everything the TypeScript layer used to: when to read
//! the member devices (every send refetches them; opening and safety numbers
//! reuse them for [`DEVICES_MAX_AGE_MS`]), when to install a newer epoch and
//! when to create one (a compare-and-set at the backend, at most
//! [`EPOCH_ATTEMPTS`] times on `409 epoch_conflict` / `shares_incomplete`),
//! what `409 epoch_stale` requires ([`RoomSession::reseal`]), how an epoch's
//! share is checked against the devices it was made for, that an envelope's
//! sender and message id are the backend's `user_id` and `client_id`, which
//! key changes are reported and when they block a send, and the replay
//! verdicts over the caller's ledger.
//!
//! The caller performs the I/O: [`Action::Request`] is an HTTP call answered
//! with [`response`](RoomSession::response) or
//! [`request_failed`](RoomSession::request_failed); [`Action::Lock`] takes the
//! user's cross-tab lock and answers [`locked`](RoomSession::locked) with the
//! stored states another tab wrote since; [`Action::Persist`],
//! [`Action::LedgerCheck`] and [`Action::LedgerRecord`] are storage, answered
//! with [`stored`](RoomSession::stored), [`ledger_result`](RoomSession::ledger_result)
//! or [`storage_failed`](RoomSession::storage_failed); [`Action::Unlock`]
//! releases the lock; [`Action::Emit`] carries an [`Event`] to the app.
//!
//! Operations run one at a time, each under the lock: the lock is taken, the
//! stored state reloaded when another tab changed it, the work done (requests
//! and all), the state persisted when it changed, the result emitted, the
//! lock released. An answer whose id is not awaited (a duplicate, a late one
//! of a finished operation) is ignored. The session never panics on any
//! input: a malformed answer is a failure with a code.

use crate::fifo::Fifo;
use crate::vec_map::VecMap;
use std::convert::Infallible;
use std::fmt;
use std::task::Poll;

use rand_core::{TryCryptoRng, TryRng};
use zeroize::Zeroizing;

use super::device::{safety_number, DeviceCheck, DeviceKeys, DeviceRecord, KnownDevices};
use super::envelope::Envelope;
use super::epoch::KeyShare;
use super::json::{Json, JsonWriter};
use super::room::RoomKeys;
use crate::error::quoted;
use crate::protocol::Error;

/// Epoch creations refused with `409 epoch_conflict` or `409
/// shares_incomplete` before a send fails with `e2ee_epoch_failed`.
pub const EPOCH_ATTEMPTS: u32 = 5;

/// How long opening messages and safety numbers reuse the member device list
/// (sends always refetch it: a cached list would let a send made before this
/// client heard of a removal use an epoch the removed member can open).
pub const DEVICES_MAX_AGE_MS: u64 = 30_000;

/// The most device records whose signature check is remembered.
const VERIFIED_CACHE_LIMIT: usize = 4096;

/// Stable codes the session adds to the core's and the backend's.
pub mod codes {
    /// The backend is unreachable or failing (no answer, a 5xx or a 429).
    pub const NETWORK_ERROR: &str = "network_error";
    /// An answer that is not what the route documents.
    pub const INVALID_RESPONSE: &str = "invalid_response";
    pub const EPOCH_FAILED: &str = "e2ee_epoch_failed";
    pub const SHARE_UNAVAILABLE: &str = "e2ee_share_unavailable";
    pub const WRONG_SENDER: &str = "e2ee_wrong_sender";
    pub const DEVICE_KEY_CHANGED: &str = "e2ee_device_key_changed";
    pub const CLOSED: &str = "e2ee_closed";
    pub const STORAGE_UNAVAILABLE: &str = "e2ee_storage_unavailable";
    pub const RANDOM_UNAVAILABLE: &str = "e2ee_random_unavailable";
    pub const REPLAY: &str = "e2ee_replay";
    pub const MALFORMED: &str = "e2ee_malformed";
    /// The backend's codes the session acts on (server/backend/API.md).
    pub const EPOCH_CONFLICT: &str = "epoch_conflict";
    pub const SHARES_INCOMPLETE: &str = "shares_incomplete";
    pub const SHARE_NOT_FOUND: &str = "share_not_found";
    pub const EPOCH_DEVICES_UNKNOWN: &str = "epoch_devices_unknown";
}

/// Why an operation failed: a stable code (the core's `e2ee_*`, the backend's,
/// or [`codes`]) and a message that reads "unable to <op>; <reason>".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn new(code: &str, message: impl Into<String>) -> Failure {
        Failure {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::new(error.code(), error.to_string())
    }
}

/// An operation's ticket: the [`Event`]s of its outcome carry it.
pub type OpId = u64;
/// The id of a request or storage action, to answer it with.
pub type ActionId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// An HTTP call to the app backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub id: ActionId,
    pub method: Method,
    /// From the origin, e.g. `/api/rooms/r_1/devices`.
    pub path: String,
    /// JSON text.
    pub body: Option<String>,
    /// What it does, for error messages: "list the room's devices".
    pub operation: &'static str,
}

/// An envelope as the replay ledger keys it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeenKey {
    pub sender_user_id: String,
    pub message_id: String,
}

/// The room's exported keys (epoch secrets): zeroized when dropped, never
/// shown by `Debug`. Store it only encrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct StateText(Zeroizing<String>);

impl StateText {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StateText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateText({} bytes)", self.0.len())
    }
}

/// What the caller must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Perform it; answer [`response`](RoomSession::response) or
    /// [`request_failed`](RoomSession::request_failed). Requests may be
    /// in flight together and answered in any order.
    Request(Request),
    /// Take the user's cross-tab lock, then answer
    /// [`locked`](RoomSession::locked) with the stored states that changed
    /// since this session last read or wrote them.
    Lock {
        id: ActionId,
    },
    /// Write the states given (each absent one is unchanged), then answer
    /// [`stored`](RoomSession::stored).
    Persist {
        id: ActionId,
        room_state: Option<StateText>,
        known_devices: Option<String>,
    },
    /// Read the replay ledger: the backend message id each key was first
    /// opened under, if any; answer [`ledger_result`](RoomSession::ledger_result).
    LedgerCheck {
        id: ActionId,
        keys: Vec<SeenKey>,
    },
    /// Record each key's backend message id; answer [`stored`](RoomSession::stored).
    LedgerRecord {
        id: ActionId,
        entries: Vec<(SeenKey, String)>,
    },
    /// Release the lock (also when it was not taken yet: release it once it is).
    Unlock,
    Emit(Event),
}

/// The safety number of this device with one of another user's devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetyNumber {
    pub device_id: String,
    pub safety_number: String,
}

/// What the app hears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The envelope (JSON text) of a `seal` or `reseal`.
    Sealed {
        op: OpId,
        client_id: String,
        envelope: String,
    },
    /// The outcome of an `open`: the text or why it cannot be read.
    Opened {
        op: OpId,
        message_id: String,
        result: Result<String, Failure>,
    },
    /// `join` or `accept_device_change` finished.
    Done { op: OpId },
    SafetyNumbers {
        op: OpId,
        numbers: Vec<SafetyNumber>,
    },
    /// A known device presented new keys: sends fail with
    /// `e2ee_device_key_changed` until accepted. Reported once until accepted.
    KeyChange { user_id: String, device_id: String },
    /// A `seal`, `reseal`, `join`, `accept_device_change` or
    /// `safety_numbers` failed.
    Failed { op: OpId, failure: Failure },
}

/// A stored message to open, as the backend lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedMessage {
    /// The backend's id (`m_...`).
    pub message_id: String,
    /// The sender, stamped by the backend.
    pub user_id: String,
    /// The sender's idempotency key: the envelope's `message_id`.
    pub client_id: String,
    pub sent_at_ms: u64,
    /// The envelope as JSON text.
    pub envelope: String,
}

/// The backend's `409 epoch_stale` answer to a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleEpoch {
    pub current_epoch: u64,
    pub needs_new_epoch: bool,
}

// ---- internal state ------------------------------------------------------------

/// An answer waiting to be taken by the operation that awaits it.
enum Reply {
    Http(Result<String, Failure>),
    Locked {
        room: Option<Zeroizing<String>>,
        known: Option<String>,
    },
    Stored,
    Seen(Vec<Option<String>>),
    Failed(Failure),
}

enum Op {
    Join,
    Seal {
        client_id: String,
        text: Zeroizing<String>,
        min_epoch: u64,
    },
    Open(EncryptedMessage),
    Accept {
        user_id: String,
        device_id: String,
    },
    Safety {
        user_id: String,
    },
}

/// The member device list: cached, or two requests (devices and epoch) in flight.
struct DevicesProc {
    cached: Option<Vec<DeviceRecord>>,
    devices: ActionId,
    epoch: ActionId,
    list: Option<Vec<DeviceRecord>>,
    epoch_read: bool,
}

/// Fetching this device's share of an epoch and installing it.
struct InstallProc {
    epoch: u64,
    stage: InstallStage,
}

enum InstallStage {
    Share(ActionId),
    Snapshot(Box<KeyShare>, ActionId),
    Current(Box<KeyShare>, bool, DevicesProc),
    Taken,
}

/// Making the newest epoch cover exactly the member devices.
struct EnsureProc {
    min_epoch: u64,
    refused: u32,
    stage: EnsureStage,
}

enum EnsureStage {
    Devices(DevicesProc),
    Install(InstallProc, Vec<DeviceRecord>),
    Post {
        id: ActionId,
        epoch: u64,
        members: Vec<DeviceRecord>,
    },
    Taken,
}

enum JoinStage {
    Epoch(ActionId),
    Install(InstallProc),
    Ensure(EnsureProc),
    Taken,
}

struct OpenBatch {
    items: Vec<EncryptedMessage>,
    /// The ledger's backend id of each message's envelope, once read.
    first_ids: Vec<Option<String>>,
    results: Vec<Option<Result<String, Failure>>>,
    next: usize,
    install: Option<InstallProc>,
    ledger: LedgerStage,
}

enum LedgerStage {
    NotYet,
    Checking { id: ActionId },
    Read,
    Recording { id: ActionId },
}

enum Work {
    Join(JoinStage),
    Seal {
        client_id: String,
        text: Zeroizing<String>,
        ensure: EnsureProc,
    },
    Open(OpenBatch),
    Accept {
        user_id: String,
        device_id: String,
        devices: Option<DevicesProc>,
    },
    Safety {
        user_id: String,
        devices: DevicesProc,
    },
}

enum Outcome {
    Sealed { client_id: String, envelope: String },
    Opened(Vec<Result<String, Failure>>),
    Done,
    Safety(Vec<SafetyNumber>),
    Failed(Failure),
}

enum Phase {
    Locking(ActionId, Vec<Op>),
    Working(Work),
    Persisting(ActionId, Outcome, bool, bool),
    Taken,
}

struct Running {
    /// The operation, or each `open` of a batch with its message id.
    ops: Vec<(OpId, Option<String>)>,
    phase: Phase,
}

/// An rng adapter that records a failure of the caller's rng (the bytes are
/// then zeros and the result is discarded) instead of panicking.
struct Checked<'a, R: ?Sized> {
    rng: &'a mut R,
    failed: bool,
}

impl<R: TryRng + ?Sized> TryRng for Checked<'_, R> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0u8; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0u8; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        if self.rng.try_fill_bytes(dst).is_err() {
            dst.fill(0);
            self.failed = true;
        }
        Ok(())
    }
}

impl<R: TryCryptoRng + ?Sized> TryCryptoRng for Checked<'_, R> {}

fn random_unavailable(operation: &str) -> Failure {
    Failure::new(
        codes::RANDOM_UNAVAILABLE,
        format!("unable to {operation}; no random bytes are available"),
    )
}

type DeviceKey = (String, String);

/// A small map as a vector of pairs: a session holds a few entries of each,
/// and every B-tree type is its own copy of the B-tree code in the wasm module.
struct Pairs<K, V>(Vec<(K, V)>);

impl<K: PartialEq, V> Pairs<K, V> {
    fn new() -> Self {
        Pairs(Vec::new())
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces; true when the key is new.
    fn insert(&mut self, key: K, value: V) -> bool {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => {
                *v = value;
                false
            }
            None => {
                self.0.push((key, value));
                true
            }
        }
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.swap_remove(at).1)
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

fn key_of(record: &DeviceRecord) -> DeviceKey {
    (record.user_id().to_owned(), record.device_id().to_owned())
}

/// One room's end-to-end encryption on this device. See the [module
/// documentation](self).
pub struct RoomSession<R> {
    room_id: String,
    /// `/api/rooms/{room_id}`, the id percent-encoded.
    path: String,
    me: DeviceKeys,
    keys: RoomKeys,
    known: KnownDevices,
    rng: R,
    now_ms: u64,
    /// The member devices as last fetched, and when.
    devices: Option<Vec<DeviceRecord>>,
    devices_at_ms: u64,
    /// The devices each epoch was created for (they never change); `None`
    /// when the backend has none (`epoch_devices_unknown`).
    epoch_devices: Pairs<u64, Option<Vec<DeviceRecord>>>,
    /// The newest epoch the backend is known to have.
    latest_epoch: u64,
    /// Epochs whose share this device cannot get, with why; cleared by room events.
    unavailable: Pairs<u64, Failure>,
    /// Known devices whose keys changed, with the new record, until accepted.
    changes: Pairs<DeviceKey, DeviceRecord>,
    reported: Pairs<DeviceKey, ()>,
    /// Records already signature-checked, by their compact JSON text.
    verified: VecMap<String, DeviceRecord>,
    room_dirty: bool,
    known_dirty: bool,
    queue: Fifo<(OpId, Op)>,
    running: Option<Running>,
    awaited: Pairs<ActionId, ()>,
    replies: Pairs<ActionId, Reply>,
    next_id: u64,
    actions: Fifo<Action>,
    closed: bool,
}

impl<R> fmt::Debug for RoomSession<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomSession")
            .field("room_id", &self.room_id)
            .field("me", &self.me)
            .field("keys", &self.keys)
            .field("latest_epoch", &self.latest_epoch)
            .field("queued", &self.queue.len())
            .field("running", &self.running.is_some())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl<R: TryCryptoRng> RoomSession<R> {
    /// A session for `room_id` on the device `me`, with fresh keys and no
    /// pinned devices (the stored ones arrive with the first
    /// [`locked`](Self::locked)). `rng` draws nonces and epoch secrets.
    pub fn new(room_id: &str, me: DeviceKeys, rng: R) -> Result<RoomSession<R>, Error> {
        let keys = RoomKeys::new(room_id)?;
        Ok(RoomSession {
            room_id: room_id.to_owned(),
            path: format!("/api/rooms/{}", encode_component(room_id)),
            me,
            keys,
            known: KnownDevices::new(),
            rng,
            now_ms: 0,
            devices: None,
            devices_at_ms: 0,
            epoch_devices: Pairs::new(),
            latest_epoch: 0,
            unavailable: Pairs::new(),
            changes: Pairs::new(),
            reported: Pairs::new(),
            verified: VecMap::new(),
            room_dirty: false,
            known_dirty: false,
            queue: Fifo::new(),
            running: None,
            awaited: Pairs::new(),
            replies: Pairs::new(),
            next_id: 1,
            actions: Fifo::new(),
            closed: false,
        })
    }

    pub fn room_id(&self) -> &str {
        &self.room_id
    }

    /// The room's keys (for inspection).
    pub fn keys(&self) -> &RoomKeys {
        &self.keys
    }

    /// The newest epoch the backend is known to have.
    pub fn latest_epoch(&self) -> u64 {
        self.latest_epoch
    }

    /// Whether no operation runs or waits.
    pub fn is_idle(&self) -> bool {
        self.running.is_none() && self.queue.is_empty()
    }

    /// The next action, oldest first.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    // ---- user calls ---------------------------------------------------------------

    /// Installs the room's current epoch when this device has none of it yet,
    /// or, when it has no share of it (a device new to the room), creates a
    /// newer epoch that includes it. Best effort: ends with `Done`, or
    /// `Failed` only when the stored state cannot be loaded or stored.
    pub fn join(&mut self, now_ms: u64) -> OpId {
        self.submit(now_ms, Op::Join)
    }

    /// Seals text as the envelope of the message `client_id`, first making
    /// the newest epoch cover the member devices as they are now.
    pub fn seal(&mut self, now_ms: u64, client_id: &str, text: &str) -> OpId {
        let op = Op::Seal {
            client_id: client_id.to_owned(),
            text: Zeroizing::new(text.to_owned()),
            min_epoch: 0,
        };
        self.submit(now_ms, op)
    }

    /// Seals anew after the backend refused the envelope with `409
    /// epoch_stale`: with an epoch at least the backend's current one, or
    /// newer than it when `needs_new_epoch`.
    pub fn reseal(&mut self, now_ms: u64, client_id: &str, text: &str, stale: StaleEpoch) -> OpId {
        self.latest_epoch = self.latest_epoch.max(stale.current_epoch);
        let min_epoch = if stale.needs_new_epoch {
            stale.current_epoch.saturating_add(1)
        } else {
            stale.current_epoch
        };
        let op = Op::Seal {
            client_id: client_id.to_owned(),
            text: Zeroizing::new(text.to_owned()),
            min_epoch,
        };
        self.submit(now_ms, op)
    }

    /// Opens a stored message; ends with `Opened`. Opens queued together run
    /// as one batch (one lock, one ledger read and write).
    pub fn open(&mut self, now_ms: u64, message: EncryptedMessage) -> OpId {
        self.submit(now_ms, Op::Open(message))
    }

    /// Pins the new keys of a device reported by `KeyChange`.
    pub fn accept_device_change(&mut self, now_ms: u64, user_id: &str, device_id: &str) -> OpId {
        let op = Op::Accept {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
        };
        self.submit(now_ms, op)
    }

    /// The safety numbers of this device with each of `user_id`'s devices in
    /// the room; ends with `SafetyNumbers`.
    pub fn safety_numbers(&mut self, now_ms: u64, user_id: &str) -> OpId {
        let op = Op::Safety {
            user_id: user_id.to_owned(),
        };
        self.submit(now_ms, op)
    }

    /// A room event that may change the member devices (`epoch.created`,
    /// `member.added`, `member.removed`) with its data as JSON text. An event
    /// of another room is ignored.
    pub fn room_event(&mut self, now_ms: u64, event: &str, data_json: &str) {
        self.now_ms = now_ms;
        let data = Json::parse(data_json);
        let data = data.as_ref().filter(|data| data.as_object().is_some());
        if let Some(room) = data.and_then(|data| data.get("room_id")) {
            if room.as_str() != Some(self.room_id.as_str()) {
                return;
            }
        }
        if event == "epoch.created" {
            if let Some(epoch) = data
                .and_then(|data| data.get("epoch"))
                .and_then(Json::as_u64)
            {
                self.latest_epoch = self.latest_epoch.max(epoch);
            }
        }
        self.devices = None;
        self.unavailable.clear();
    }

    /// Stops: queued operations fail with `e2ee_closed`, the running one too
    /// (its changed state is persisted and the lock released). Idempotent.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let failure = || {
            Failure::new(
                codes::CLOSED,
                "unable to use the room's keys; the room was left",
            )
        };
        if let Some(running) = self.running.take() {
            if self.room_dirty || self.known_dirty {
                let id = self.next_action_id();
                let persist = self.persist_action(id);
                self.actions.push_back(persist);
            }
            self.actions.push_back(Action::Unlock);
            self.emit_outcome(&running.ops, Outcome::Failed(failure()));
        }
        self.awaited.clear();
        self.replies.clear();
        for (op, queued) in std::mem::take(&mut self.queue) {
            let message_id = match queued {
                Op::Open(message) => Some(message.message_id),
                _ => None,
            };
            self.emit_outcome(&[(op, message_id)], Outcome::Failed(failure()));
        }
    }

    // ---- answers --------------------------------------------------------------------

    /// The lock is held; `room_state` and `known_devices` are the stored
    /// texts that changed since this session last read or wrote them.
    pub fn locked(
        &mut self,
        now_ms: u64,
        id: ActionId,
        room_state: Option<&str>,
        known_devices: Option<&str>,
    ) {
        let reply = Reply::Locked {
            room: room_state.map(|text| Zeroizing::new(text.to_owned())),
            known: known_devices.map(str::to_owned),
        };
        self.deliver(now_ms, id, reply);
    }

    /// An HTTP answer: `status` and the body's text. A status outside 2xx is
    /// a refusal, whose code is the body's `error.code`.
    pub fn response(&mut self, now_ms: u64, id: ActionId, status: u16, body: &str) {
        let result = if (200..300).contains(&status) {
            Ok(body.to_owned())
        } else {
            Err(refusal(status, body))
        };
        self.deliver(now_ms, id, Reply::Http(result));
    }

    /// A request that got no usable answer (`network_error`), or that the
    /// caller's client refused with a code (a backend code passes through).
    pub fn request_failed(&mut self, now_ms: u64, id: ActionId, code: &str, message: &str) {
        self.deliver(now_ms, id, Reply::Http(Err(Failure::new(code, message))));
    }

    /// A `Persist` or `LedgerRecord` was written.
    pub fn stored(&mut self, now_ms: u64, id: ActionId) {
        self.deliver(now_ms, id, Reply::Stored);
    }

    /// The ledger's answer to a `LedgerCheck`, one entry per key.
    pub fn ledger_result(&mut self, now_ms: u64, id: ActionId, found: Vec<Option<String>>) {
        self.deliver(now_ms, id, Reply::Seen(found));
    }

    /// The lock, a read or a write failed.
    pub fn storage_failed(&mut self, now_ms: u64, id: ActionId, code: &str, message: &str) {
        self.deliver(now_ms, id, Reply::Failed(Failure::new(code, message)));
    }

    // ---- the operation loop ------------------------------------------------------

    fn submit(&mut self, now_ms: u64, op: Op) -> OpId {
        self.now_ms = now_ms;
        let id = self.next_action_id();
        if self.closed {
            let message_id = match op {
                Op::Open(message) => Some(message.message_id),
                _ => None,
            };
            let failure = Failure::new(
                codes::CLOSED,
                "unable to use the room's keys; the room was left",
            );
            self.emit_outcome(&[(id, message_id)], Outcome::Failed(failure));
            return id;
        }
        self.queue.push_back((id, op));
        self.advance();
        id
    }

    fn deliver(&mut self, now_ms: u64, id: ActionId, reply: Reply) {
        self.now_ms = self.now_ms.max(now_ms);
        if self.closed || self.awaited.remove(&id).is_none() {
            return;
        }
        self.replies.insert(id, reply);
        self.advance();
    }

    fn next_action_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn advance(&mut self) {
        loop {
            let mut running = match self.running.take() {
                Some(running) => running,
                None => match self.start_next() {
                    Some(running) => running,
                    None => return,
                },
            };
            if self.poll_running(&mut running).is_pending() {
                self.running = Some(running);
                return;
            }
        }
    }

    /// The next queued operation (consecutive opens as one batch), asking for the lock.
    fn start_next(&mut self) -> Option<Running> {
        let (op, first) = self.queue.pop_front()?;
        let mut ops = Vec::new();
        let mut work = Vec::new();
        match first {
            Op::Open(message) => {
                ops.push((op, Some(message.message_id.clone())));
                work.push(Op::Open(message));
                self.take_queued_opens(&mut ops, &mut work);
            }
            other => {
                ops.push((op, None));
                work.push(other);
            }
        }
        let id = self.next_action_id();
        self.awaited.insert(id, ());
        self.actions.push_back(Action::Lock { id });
        Some(Running {
            ops,
            phase: Phase::Locking(id, work),
        })
    }

    /// Moves the opens at the front of the queue into a batch.
    fn take_queued_opens(&mut self, ops: &mut Vec<(OpId, Option<String>)>, work: &mut Vec<Op>) {
        while let Some((op, Op::Open(_))) = self.queue.front() {
            let op = *op;
            if let Some((_, Op::Open(message))) = self.queue.pop_front() {
                ops.push((op, Some(message.message_id.clone())));
                work.push(Op::Open(message));
            }
        }
    }

    fn poll_running(&mut self, running: &mut Running) -> Poll<()> {
        loop {
            match std::mem::replace(&mut running.phase, Phase::Taken) {
                Phase::Locking(id, work) => match self.replies.remove(&id) {
                    None => {
                        running.phase = Phase::Locking(id, work);
                        return Poll::Pending;
                    }
                    Some(Reply::Locked { room, known }) => match self.reload(room, known) {
                        Ok(()) => {
                            let mut work = work;
                            // Opens queued while the lock was taken join the batch.
                            if matches!(work.first(), Some(Op::Open(_))) {
                                self.take_queued_opens(&mut running.ops, &mut work);
                            }
                            running.phase = Phase::Working(self.start_work(work));
                        }
                        Err(failure) => running.phase = self.finishing(Outcome::Failed(failure)),
                    },
                    Some(Reply::Failed(failure)) => {
                        running.phase =
                            Phase::Persisting(0, Outcome::Failed(failure), false, false);
                    }
                    Some(_) => {
                        let failure = Failure::new(
                            codes::STORAGE_UNAVAILABLE,
                            "unable to take the lock; unexpected answer",
                        );
                        running.phase =
                            Phase::Persisting(0, Outcome::Failed(failure), false, false);
                    }
                },
                Phase::Working(mut work) => match self.poll_work(&mut work) {
                    Poll::Pending => {
                        running.phase = Phase::Working(work);
                        return Poll::Pending;
                    }
                    Poll::Ready(outcome) => running.phase = self.finishing(outcome),
                },
                Phase::Persisting(id, outcome, room, known) => {
                    if id != 0 {
                        match self.replies.remove(&id) {
                            None => {
                                running.phase = Phase::Persisting(id, outcome, room, known);
                                return Poll::Pending;
                            }
                            Some(Reply::Stored) => {}
                            Some(other) => {
                                // Not written: it is written with the next change.
                                self.room_dirty |= room;
                                self.known_dirty |= known;
                                let failure = match other {
                                    Reply::Failed(failure) | Reply::Http(Err(failure)) => failure,
                                    _ => Failure::new(
                                        codes::STORAGE_UNAVAILABLE,
                                        "unable to store the room's keys",
                                    ),
                                };
                                self.finish(running, Outcome::Failed(failure));
                                return Poll::Ready(());
                            }
                        }
                    }
                    self.finish(running, outcome);
                    return Poll::Ready(());
                }
                Phase::Taken => return Poll::Ready(()),
            }
        }
    }

    /// Persists the changed state before the outcome, or goes straight to it.
    fn finishing(&mut self, outcome: Outcome) -> Phase {
        if !(self.room_dirty || self.known_dirty) {
            return Phase::Persisting(0, outcome, false, false);
        }
        let (room, known) = (self.room_dirty, self.known_dirty);
        let id = self.next_action_id();
        let persist = self.persist_action(id);
        self.awaited.insert(id, ());
        self.actions.push_back(persist);
        Phase::Persisting(id, outcome, room, known)
    }

    fn persist_action(&mut self, id: ActionId) -> Action {
        let room_state = self.room_dirty.then(|| StateText(self.keys.export_state()));
        let known_devices = self.known_dirty.then(|| self.known.export_state());
        self.room_dirty = false;
        self.known_dirty = false;
        Action::Persist {
            id,
            room_state,
            known_devices,
        }
    }

    fn finish(&mut self, running: &Running, outcome: Outcome) {
        self.awaited.clear();
        self.replies.clear();
        self.actions.push_back(Action::Unlock);
        self.emit_outcome(&running.ops, outcome);
    }

    fn emit_outcome(&mut self, ops: &[(OpId, Option<String>)], outcome: Outcome) {
        let Some(&(op, _)) = ops.first() else {
            return;
        };
        let events: Vec<Event> = match outcome {
            Outcome::Opened(results) => ops
                .iter()
                .zip(results)
                .map(|((op, message_id), result)| Event::Opened {
                    op: *op,
                    message_id: message_id.clone().unwrap_or_default(),
                    result,
                })
                .collect(),
            Outcome::Failed(failure) if ops[0].1.is_some() => ops
                .iter()
                .map(|(op, message_id)| Event::Opened {
                    op: *op,
                    message_id: message_id.clone().unwrap_or_default(),
                    result: Err(failure.clone()),
                })
                .collect(),
            Outcome::Failed(failure) => vec![Event::Failed { op, failure }],
            Outcome::Sealed {
                client_id,
                envelope,
            } => vec![Event::Sealed {
                op,
                client_id,
                envelope,
            }],
            Outcome::Done => vec![Event::Done { op }],
            Outcome::Safety(numbers) => vec![Event::SafetyNumbers { op, numbers }],
        };
        self.actions.extend(events.into_iter().map(Action::Emit));
    }

    /// The stored states another tab wrote: they replace this session's.
    fn reload(
        &mut self,
        room: Option<Zeroizing<String>>,
        known: Option<String>,
    ) -> Result<(), Failure> {
        if let Some(text) = room {
            let keys = RoomKeys::restore_state(&text)?;
            if keys.room_id() != self.room_id {
                return Err(Failure::new(
                    codes::MALFORMED,
                    format!(
                        "unable to restore the room's keys; the state belongs to room {}",
                        quoted(keys.room_id())
                    ),
                ));
            }
            self.keys = keys;
            self.room_dirty = false;
        }
        if let Some(text) = known {
            self.known = KnownDevices::restore_state(&text)?;
            self.known_dirty = false;
        }
        Ok(())
    }

    fn start_work(&mut self, ops: Vec<Op>) -> Work {
        let mut ops = ops.into_iter();
        let Some(first) = ops.next() else {
            return Work::Join(JoinStage::Taken);
        };
        match first {
            Op::Open(message) => {
                let more = ops.filter_map(|op| match op {
                    Op::Open(message) => Some(message),
                    _ => None,
                });
                let items: Vec<EncryptedMessage> = std::iter::once(message).chain(more).collect();
                let count = items.len();
                Work::Open(OpenBatch {
                    items,
                    first_ids: vec![None; count],
                    results: vec![None; count],
                    next: 0,
                    install: None,
                    ledger: LedgerStage::NotYet,
                })
            }
            Op::Join => {
                let id = self.request(
                    Method::Get,
                    format!("{}/epoch", self.path),
                    None,
                    "read the room's epoch",
                );
                Work::Join(JoinStage::Epoch(id))
            }
            Op::Seal {
                client_id,
                text,
                min_epoch,
            } => Work::Seal {
                client_id,
                text,
                ensure: self.ensure(min_epoch),
            },
            Op::Accept { user_id, device_id } => {
                let pending = self
                    .changes
                    .contains_key(&(user_id.clone(), device_id.clone()));
                Work::Accept {
                    devices: (!pending).then(|| self.devices_proc(true)),
                    user_id,
                    device_id,
                }
            }
            Op::Safety { user_id } => Work::Safety {
                user_id,
                devices: self.devices_proc(false),
            },
        }
    }

    fn poll_work(&mut self, work: &mut Work) -> Poll<Outcome> {
        match work {
            // Best effort: the next send tries again (and reports what persists);
            // only a state that cannot be loaded or stored fails a join.
            Work::Join(stage) => self.poll_join(stage).map(|outcome| match outcome {
                Outcome::Failed(_) => Outcome::Done,
                other => other,
            }),
            Work::Seal {
                client_id,
                text,
                ensure,
            } => match self.poll_ensure(ensure) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(failure)) => Poll::Ready(Outcome::Failed(failure)),
                Poll::Ready(Ok(())) => Poll::Ready(self.seal_now(client_id, text)),
            },
            Work::Open(batch) => self.poll_open(batch),
            Work::Accept {
                user_id,
                device_id,
                devices,
            } => {
                if let Some(proc_) = devices {
                    match self.poll_devices(proc_) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(failure)) => return Poll::Ready(Outcome::Failed(failure)),
                        Poll::Ready(Ok(_)) => {}
                    }
                }
                let key = (user_id.clone(), device_id.clone());
                if let Some(record) = self.changes.remove(&key) {
                    self.known.accept_change(&record);
                    self.known_dirty = true;
                }
                self.reported.remove(&key);
                Poll::Ready(Outcome::Done)
            }
            Work::Safety { user_id, devices } => match self.poll_devices(devices) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(failure)) => Poll::Ready(Outcome::Failed(failure)),
                Poll::Ready(Ok(list)) => {
                    let mine = self.me.record();
                    let numbers = list
                        .iter()
                        .filter(|r| r.user_id() == user_id && r.device_id() != self.me.device_id())
                        .map(|r| SafetyNumber {
                            device_id: r.device_id().to_owned(),
                            safety_number: safety_number(&mine, r),
                        })
                        .collect();
                    Poll::Ready(Outcome::Safety(numbers))
                }
            },
        }
    }

    fn seal_now(&mut self, client_id: &str, text: &str) -> Outcome {
        let mut rng = Checked {
            rng: &mut self.rng,
            failed: false,
        };
        let sealed = self
            .keys
            .seal(&self.me, client_id, "text", text.as_bytes(), &mut rng);
        if rng.failed {
            return Outcome::Failed(random_unavailable("encrypt the message"));
        }
        match sealed {
            Ok(envelope) => Outcome::Sealed {
                client_id: client_id.to_owned(),
                envelope: envelope.to_json_string(),
            },
            Err(error) => Outcome::Failed(error.into()),
        }
    }

    fn poll_join(&mut self, stage: &mut JoinStage) -> Poll<Outcome> {
        loop {
            match std::mem::replace(stage, JoinStage::Taken) {
                JoinStage::Epoch(id) => {
                    let Some(reply) = self.take_http(id) else {
                        *stage = JoinStage::Epoch(id);
                        return Poll::Pending;
                    };
                    let current = match reply.and_then(|body| read_epoch(&body)) {
                        Ok(current) => current,
                        Err(failure) => return Poll::Ready(Outcome::Failed(failure)),
                    };
                    self.latest_epoch = self.latest_epoch.max(current);
                    if current == 0 || self.keys.has_epoch(current) {
                        return Poll::Ready(Outcome::Done);
                    }
                    *stage = JoinStage::Install(self.install(current));
                }
                JoinStage::Install(mut install) => match self.poll_install(&mut install) {
                    Poll::Pending => {
                        *stage = JoinStage::Install(install);
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(())) => return Poll::Ready(Outcome::Done),
                    // A device new to the room has no share: it creates an epoch that includes it.
                    Poll::Ready(Err(failure)) if failure.code == codes::SHARE_NOT_FOUND => {
                        *stage = JoinStage::Ensure(self.ensure(0));
                    }
                    Poll::Ready(Err(failure)) => return Poll::Ready(Outcome::Failed(failure)),
                },
                JoinStage::Ensure(mut ensure) => {
                    return match self.poll_ensure(&mut ensure) {
                        Poll::Pending => {
                            *stage = JoinStage::Ensure(ensure);
                            Poll::Pending
                        }
                        Poll::Ready(Ok(())) => Poll::Ready(Outcome::Done),
                        Poll::Ready(Err(failure)) => Poll::Ready(Outcome::Failed(failure)),
                    }
                }
                JoinStage::Taken => return Poll::Ready(Outcome::Done),
            }
        }
    }

    // ---- requests and replies ------------------------------------------------------

    fn request(
        &mut self,
        method: Method,
        path: String,
        body: Option<String>,
        operation: &'static str,
    ) -> ActionId {
        let id = self.next_action_id();
        self.awaited.insert(id, ());
        self.actions.push_back(Action::Request(Request {
            id,
            method,
            path,
            body,
            operation,
        }));
        id
    }

    /// The answer to request `id` once it arrived.
    fn take_http(&mut self, id: ActionId) -> Option<Result<String, Failure>> {
        match self.replies.remove(&id)? {
            Reply::Http(result) => Some(result),
            Reply::Failed(failure) => Some(Err(failure)),
            _ => Some(Err(Failure::new(
                codes::INVALID_RESPONSE,
                "unable to read an answer; it is not an HTTP answer",
            ))),
        }
    }

    /// Device records from a list of the backend's Device objects, each
    /// signature-checked once per session.
    fn read_devices(&mut self, body: &str, what: &str) -> Result<Vec<DeviceRecord>, Failure> {
        let invalid = || {
            Failure::new(
                codes::INVALID_RESPONSE,
                format!("unable to {what}; the answer is not a list of devices"),
            )
        };
        let value = Json::parse(body).ok_or_else(invalid)?;
        let entries = value.as_array().ok_or_else(invalid)?;
        if self.verified.len() + entries.len() > VERIFIED_CACHE_LIMIT {
            self.verified.clear();
        }
        let mut records = Vec::with_capacity(entries.len());
        for record in entries.iter().filter_map(|entry| entry.get("record")) {
            if record.as_object().is_none() {
                continue;
            }
            let text = record.to_compact_string();
            if let Some(known) = self.verified.get(&text) {
                records.push(known.clone());
                continue;
            }
            let read = DeviceRecord::read(record)?;
            self.verified.insert(text, read.clone());
            records.push(read);
        }
        Ok(records)
    }

    // ---- member devices ------------------------------------------------------------

    /// The member devices: the cached list when not `force` and younger than
    /// [`DEVICES_MAX_AGE_MS`], else fetched with the room's epoch.
    fn devices_proc(&mut self, force: bool) -> DevicesProc {
        let fresh = self.devices.as_ref().filter(|_| {
            !force && self.now_ms.saturating_sub(self.devices_at_ms) < DEVICES_MAX_AGE_MS
        });
        if let Some(list) = fresh {
            return DevicesProc {
                cached: Some(list.clone()),
                devices: 0,
                epoch: 0,
                list: None,
                epoch_read: true,
            };
        }
        let devices = self.request(
            Method::Get,
            format!("{}/devices", self.path),
            None,
            "list the room's devices",
        );
        let epoch = self.request(
            Method::Get,
            format!("{}/epoch", self.path),
            None,
            "read the room's epoch",
        );
        DevicesProc {
            cached: None,
            devices,
            epoch,
            list: None,
            epoch_read: false,
        }
    }

    fn poll_devices(
        &mut self,
        proc_: &mut DevicesProc,
    ) -> Poll<Result<Vec<DeviceRecord>, Failure>> {
        if let Some(list) = proc_.cached.take() {
            return Poll::Ready(Ok(list));
        }
        if proc_.list.is_none() {
            if let Some(reply) = self.take_http(proc_.devices) {
                match reply.and_then(|body| self.read_devices(&body, "list the room's devices")) {
                    Ok(list) => proc_.list = Some(list),
                    Err(failure) => return Poll::Ready(Err(failure)),
                }
            }
        }
        if !proc_.epoch_read {
            if let Some(reply) = self.take_http(proc_.epoch) {
                match reply.and_then(|body| read_epoch(&body)) {
                    Ok(epoch) => {
                        self.latest_epoch = self.latest_epoch.max(epoch);
                        proc_.epoch_read = true;
                    }
                    Err(failure) => return Poll::Ready(Err(failure)),
                }
            }
        }
        if !proc_.epoch_read {
            return Poll::Pending;
        }
        let Some(list) = proc_.list.take() else {
            return Poll::Pending;
        };
        self.pin(&list);
        self.devices = Some(list.clone());
        self.devices_at_ms = self.now_ms;
        Poll::Ready(Ok(list))
    }

    /// Pins new devices among the current `records`, notes (and reports once)
    /// known ones whose keys changed, and forgets changes that were undone.
    fn pin(&mut self, records: &[DeviceRecord]) {
        for record in records {
            let key = key_of(record);
            match self.known.check(record) {
                Ok(DeviceCheck::New) => {
                    self.known_dirty = true;
                    self.changes.remove(&key);
                }
                Ok(DeviceCheck::Unchanged) => {
                    self.changes.remove(&key);
                }
                Err(_) => {
                    self.changes.insert(key.clone(), record.clone());
                    if self.reported.insert(key.clone(), ()) {
                        self.actions.push_back(Action::Emit(Event::KeyChange {
                            user_id: key.0,
                            device_id: key.1,
                        }));
                    }
                }
            }
        }
    }

    /// Pins new devices among an epoch's `records` (as they were when it was
    /// created) and returns those whose keys differ from the pinned ones; an
    /// old record offers no new keys to accept, so no change is noted.
    fn pin_epoch_devices(&mut self, records: &[DeviceRecord]) -> Vec<DeviceKey> {
        let mut differing = Vec::new();
        for record in records {
            match self.known.check(record) {
                Ok(DeviceCheck::New) => self.known_dirty = true,
                Ok(DeviceCheck::Unchanged) => {}
                Err(_) => {
                    differing.push(key_of(record));
                }
            }
        }
        differing
    }

    // ---- epochs ---------------------------------------------------------------------

    fn ensure(&mut self, min_epoch: u64) -> EnsureProc {
        EnsureProc {
            min_epoch,
            refused: 0,
            stage: EnsureStage::Devices(self.devices_proc(true)),
        }
    }

    /// Makes the newest epoch cover exactly the member devices: installs a
    /// newer one someone created, or creates one (compare-and-set; on a 409
    /// refetch and try again, at most [`EPOCH_ATTEMPTS`] times).
    fn poll_ensure(&mut self, proc_: &mut EnsureProc) -> Poll<Result<(), Failure>> {
        loop {
            match std::mem::replace(&mut proc_.stage, EnsureStage::Taken) {
                EnsureStage::Devices(mut devices) => {
                    let list = match self.poll_devices(&mut devices) {
                        Poll::Pending => {
                            proc_.stage = EnsureStage::Devices(devices);
                            return Poll::Pending;
                        }
                        Poll::Ready(Err(failure)) => return Poll::Ready(Err(failure)),
                        Poll::Ready(Ok(list)) => list,
                    };
                    if let Some(changed) =
                        list.iter().find(|r| self.changes.contains_key(&key_of(r)))
                    {
                        return Poll::Ready(Err(Failure::new(
                            codes::DEVICE_KEY_CHANGED,
                            format!(
                                "unable to encrypt; the keys of device {} of user {} changed (accept with acceptDeviceChange)",
                                changed.device_id(),
                                changed.user_id()
                            ),
                        )));
                    }
                    let current = self.keys.current_epoch().unwrap_or(0);
                    if self.latest_epoch > current
                        && !self.unavailable.contains_key(&self.latest_epoch)
                    {
                        proc_.stage = EnsureStage::Install(self.install(self.latest_epoch), list);
                    } else if let Some(done) = self.create_if_needed(proc_, list) {
                        return done;
                    }
                }
                EnsureStage::Install(mut install, list) => match self.poll_install(&mut install) {
                    Poll::Pending => {
                        proc_.stage = EnsureStage::Install(install, list);
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(failure)) if failure.code == codes::NETWORK_ERROR => {
                        return Poll::Ready(Err(failure))
                    }
                    result => {
                        if let Poll::Ready(Err(failure)) = result {
                            self.unavailable.insert(install.epoch, failure);
                        }
                        if let Some(done) = self.create_if_needed(proc_, list) {
                            return done;
                        }
                    }
                },
                EnsureStage::Post { id, epoch, members } => {
                    let Some(reply) = self.take_http(id) else {
                        proc_.stage = EnsureStage::Post { id, epoch, members };
                        return Poll::Pending;
                    };
                    match reply {
                        Ok(_) => {
                            if let Err(error) = self.keys.commit_epoch(epoch, &members) {
                                self.keys.discard_epoch();
                                return Poll::Ready(Err(error.into()));
                            }
                            self.room_dirty = true;
                            self.latest_epoch = self.latest_epoch.max(epoch);
                            return Poll::Ready(Ok(()));
                        }
                        Err(failure) => {
                            self.keys.discard_epoch();
                            if failure.code != codes::EPOCH_CONFLICT
                                && failure.code != codes::SHARES_INCOMPLETE
                            {
                                return Poll::Ready(Err(failure));
                            }
                            proc_.refused += 1;
                            if proc_.refused >= EPOCH_ATTEMPTS {
                                return Poll::Ready(Err(Failure::new(
                                    codes::EPOCH_FAILED,
                                    format!(
                                        "unable to create an epoch after {EPOCH_ATTEMPTS} attempts; {}",
                                        failure.message
                                    ),
                                )));
                            }
                            // epoch_conflict: the next pass reads the newer epoch and installs it;
                            // shares_incomplete: it refetches the member devices.
                            proc_.stage = EnsureStage::Devices(self.devices_proc(true));
                        }
                    }
                }
                EnsureStage::Taken => return Poll::Ready(Ok(())),
            }
        }
    }

    /// Done when the newest epoch is recent enough and covers `members`;
    /// otherwise creates the next one and posts it (`None`: keep polling).
    fn create_if_needed(
        &mut self,
        proc_: &mut EnsureProc,
        members: Vec<DeviceRecord>,
    ) -> Option<Poll<Result<(), Failure>>> {
        let current = self.keys.current_epoch().unwrap_or(0);
        if current >= proc_.min_epoch && !self.keys.needs_new_epoch(&members) {
            return Some(Poll::Ready(Ok(())));
        }
        let epoch = current.max(self.latest_epoch).saturating_add(1);
        let mut rng = Checked {
            rng: &mut self.rng,
            failed: false,
        };
        let shares = self
            .keys
            .begin_epoch(&self.me, epoch, self.now_ms, &members, &mut rng);
        if rng.failed {
            self.keys.discard_epoch();
            return Some(Poll::Ready(Err(random_unavailable("create an epoch"))));
        }
        let shares = match shares {
            Ok(shares) => shares,
            Err(error) => return Some(Poll::Ready(Err(error.into()))),
        };
        let mut json = JsonWriter::with_capacity(64 + 640 * shares.len());
        json.begin_object()
            .key("epoch")
            .u64(epoch)
            .key("shares")
            .begin_array();
        for share in &shares {
            json.begin_object()
                .key("device_id")
                .string(share.recipient_device_id())
                .key("share");
            share.write_json(&mut json);
            json.end_object();
        }
        json.end_array().end_object();
        let id = self.request(
            Method::Post,
            format!("{}/epochs", self.path),
            Some(json.finish()),
            "create an epoch",
        );
        proc_.stage = EnsureStage::Post { id, epoch, members };
        None
    }

    fn install(&mut self, epoch: u64) -> InstallProc {
        let path = format!(
            "{}/epochs/{epoch}/shares?device_id={}",
            self.path,
            encode_component(self.me.device_id())
        );
        let id = self.request(Method::Get, path, None, "fetch a key share");
        InstallProc {
            epoch,
            stage: InstallStage::Share(id),
        }
    }

    /// Fetches this device's share of the epoch and installs it with the
    /// devices it was created for (or, for an epoch from before the backend
    /// recorded them, the current ones).
    fn poll_install(&mut self, proc_: &mut InstallProc) -> Poll<Result<(), Failure>> {
        let epoch = proc_.epoch;
        loop {
            match std::mem::replace(&mut proc_.stage, InstallStage::Taken) {
                InstallStage::Share(id) => {
                    let Some(reply) = self.take_http(id) else {
                        proc_.stage = InstallStage::Share(id);
                        return Poll::Pending;
                    };
                    let share = match reply.and_then(|body| read_share(&body, epoch)) {
                        Ok(share) => Box::new(share),
                        Err(failure) => return Poll::Ready(Err(failure)),
                    };
                    proc_.stage = match self.epoch_devices.get(&epoch) {
                        Some(Some(snapshot)) => {
                            let snapshot = snapshot.clone();
                            return Poll::Ready(self.install_with_snapshot(&share, &snapshot));
                        }
                        Some(None) => InstallStage::Current(share, false, self.devices_proc(false)),
                        None => {
                            let path = format!("{}/epochs/{epoch}/devices", self.path);
                            InstallStage::Snapshot(
                                share,
                                self.request(Method::Get, path, None, "list the epoch's devices"),
                            )
                        }
                    };
                }
                InstallStage::Snapshot(share, id) => {
                    let Some(reply) = self.take_http(id) else {
                        proc_.stage = InstallStage::Snapshot(share, id);
                        return Poll::Pending;
                    };
                    match reply {
                        Ok(body) => {
                            let snapshot =
                                match self.read_devices(&body, "list the epoch's devices") {
                                    Ok(snapshot) => snapshot,
                                    Err(failure) => return Poll::Ready(Err(failure)),
                                };
                            self.epoch_devices.insert(epoch, Some(snapshot.clone()));
                            return Poll::Ready(self.install_with_snapshot(&share, &snapshot));
                        }
                        Err(failure) if failure.code == codes::EPOCH_DEVICES_UNKNOWN => {
                            self.epoch_devices.insert(epoch, None);
                            proc_.stage =
                                InstallStage::Current(share, false, self.devices_proc(false));
                        }
                        Err(failure) => return Poll::Ready(Err(failure)),
                    }
                }
                InstallStage::Current(share, force, mut devices) => {
                    let list = match self.poll_devices(&mut devices) {
                        Poll::Pending => {
                            proc_.stage = InstallStage::Current(share, force, devices);
                            return Poll::Pending;
                        }
                        Poll::Ready(Err(failure)) => return Poll::Ready(Err(failure)),
                        Poll::Ready(Ok(list)) => list,
                    };
                    let creator = list.iter().find(|r| {
                        r.user_id() == share.sender_user_id()
                            && r.device_id() == share.sender_device_id()
                    });
                    let Some(creator) = creator else {
                        if !force {
                            proc_.stage =
                                InstallStage::Current(share, true, self.devices_proc(true));
                            continue;
                        }
                        return Poll::Ready(Err(Failure::new(
                            codes::SHARE_UNAVAILABLE,
                            format!("unable to install epoch {epoch}; its creator's device is not among the room's devices"),
                        )));
                    };
                    if self.changes.contains_key(&key_of(creator)) {
                        return Poll::Ready(Err(Failure::new(
                            codes::DEVICE_KEY_CHANGED,
                            format!(
                                "unable to install epoch {epoch}; the keys of its creator's device {} changed",
                                creator.device_id()
                            ),
                        )));
                    }
                    match self.open_and_install(&share, creator, &list) {
                        // The members changed since the epoch was created: once more, fetched afresh.
                        Err(Error::E2eeMembersMismatch { .. }) if !force => {
                            proc_.stage =
                                InstallStage::Current(share, true, self.devices_proc(true));
                        }
                        result => return Poll::Ready(result.map_err(Failure::from)),
                    }
                }
                InstallStage::Taken => return Poll::Ready(Ok(())),
            }
        }
    }

    fn install_with_snapshot(
        &mut self,
        share: &KeyShare,
        snapshot: &[DeviceRecord],
    ) -> Result<(), Failure> {
        let epoch = share.epoch();
        let creator = snapshot
            .iter()
            .find(|r| r.user_id() == share.sender_user_id() && r.device_id() == share.sender_device_id())
            .ok_or_else(|| {
                Failure::new(
                    codes::SHARE_UNAVAILABLE,
                    format!("unable to install epoch {epoch}; its creator's device is not among the epoch's devices"),
                )
            })?;
        if self.pin_epoch_devices(snapshot).contains(&key_of(creator)) {
            return Err(Failure::new(
                codes::DEVICE_KEY_CHANGED,
                format!(
                    "unable to install epoch {epoch}; the keys of its creator's device {} differ from the pinned ones",
                    creator.device_id()
                ),
            ));
        }
        Ok(self.open_and_install(share, creator, snapshot)?)
    }

    fn open_and_install(
        &mut self,
        share: &KeyShare,
        creator: &DeviceRecord,
        members: &[DeviceRecord],
    ) -> Result<(), Error> {
        let key = share.open(&self.me, creator)?;
        self.keys.install_epoch(key, members)?;
        self.room_dirty = true;
        Ok(())
    }

    // ---- opening --------------------------------------------------------------------

    /// Reads the ledger for the batch, opens each message (fetching the
    /// share of an epoch not installed yet), then records what opened anew.
    fn poll_open(&mut self, batch: &mut OpenBatch) -> Poll<Outcome> {
        if let Some(poll) = self.poll_ledger_read(batch) {
            return poll;
        }
        while batch.next < batch.items.len() {
            let i = batch.next;
            if let Some(mut install) = batch.install.take() {
                match self.poll_install(&mut install) {
                    Poll::Pending => {
                        batch.install = Some(install);
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(failure)) => {
                        if failure.code != codes::NETWORK_ERROR {
                            self.unavailable.insert(install.epoch, failure.clone());
                        }
                        batch.results[i] = Some(Err(failure));
                    }
                    Poll::Ready(Ok(())) => {
                        batch.results[i] = Some(
                            self.open_one(&batch.items[i])
                                .map_err(|(_, failure)| failure),
                        );
                    }
                }
                batch.next += 1;
                continue;
            }
            if let Some(first) = batch.first_ids[i]
                .as_ref()
                .filter(|first| **first != batch.items[i].message_id)
            {
                batch.results[i] = Some(Err(replay(first)));
                batch.next += 1;
                continue;
            }
            match self.open_one(&batch.items[i]) {
                Err((Some(epoch), failure)) => match self.unavailable.get(&epoch) {
                    Some(known) => batch.results[i] = Some(Err(known.clone())),
                    None => {
                        drop(failure);
                        batch.install = Some(self.install(epoch));
                        continue;
                    }
                },
                result => batch.results[i] = Some(result.map_err(|(_, failure)| failure)),
            }
            batch.next += 1;
        }
        self.poll_ledger_record(batch)
    }

    /// Opens one message: `Err((Some(epoch), _))` when its epoch is not installed.
    fn open_one(&mut self, message: &EncryptedMessage) -> Result<String, (Option<u64>, Failure)> {
        let fail = |failure: Failure| (None, failure);
        let envelope = Envelope::from_json_str(&message.envelope).map_err(|e| fail(e.into()))?;
        if envelope.kind() != "text" {
            return Err(fail(Failure::new(
                codes::MALFORMED,
                format!(
                    "unable to open the message; messages of kind {} are not text",
                    quoted(envelope.kind())
                ),
            )));
        }
        // Before opening, so that a copy under another sender is not
        // remembered as seen and cannot block the real message.
        if envelope.sender_user_id() != message.user_id
            || envelope.message_id() != message.client_id
        {
            return Err(fail(Failure::new(
                codes::WRONG_SENDER,
                "unable to open the message; its sender or message id differs from the backend's",
            )));
        }
        let opened = match self
            .keys
            .open(&envelope, message.sent_at_ms, &message.message_id)
        {
            Ok(opened) => opened,
            Err(Error::E2eeUnknownEpoch { epoch }) => {
                return Err((Some(epoch), Error::E2eeUnknownEpoch { epoch }.into()))
            }
            Err(error) => return Err(fail(error.into())),
        };
        let content = Zeroizing::new(opened.content);
        match std::str::from_utf8(&content) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(fail(Failure::new(
                codes::MALFORMED,
                "unable to open the message; the text is not UTF-8",
            ))),
        }
    }

    /// The replay check across page loads and tabs: the ledger holds the
    /// backend message id each envelope was first opened under (by any page
    /// of this user). A genuine envelope under another backend id is a copy
    /// stored again: `e2ee_replay`, decided before opening so the copy is not
    /// remembered in memory either. Only what opened is recorded, so a forged
    /// copy cannot block the real one. `None` once the ledger was read.
    fn poll_ledger_read(&mut self, batch: &mut OpenBatch) -> Option<Poll<Outcome>> {
        match std::mem::replace(&mut batch.ledger, LedgerStage::Read) {
            LedgerStage::NotYet => {
                let keys = batch.items.iter().map(seen_key).collect();
                let id = self.next_action_id();
                self.awaited.insert(id, ());
                self.actions.push_back(Action::LedgerCheck { id, keys });
                batch.ledger = LedgerStage::Checking { id };
                Some(Poll::Pending)
            }
            LedgerStage::Checking { id } => match self.replies.remove(&id) {
                None => {
                    batch.ledger = LedgerStage::Checking { id };
                    Some(Poll::Pending)
                }
                Some(Reply::Seen(found)) if found.len() == batch.items.len() => {
                    batch.first_ids = found;
                    None
                }
                Some(Reply::Failed(failure)) => Some(Poll::Ready(Outcome::Failed(failure))),
                Some(_) => Some(Poll::Ready(Outcome::Failed(Failure::new(
                    codes::STORAGE_UNAVAILABLE,
                    "unable to read the seen message ids; the ledger's answer does not match",
                )))),
            },
            other => {
                batch.ledger = other;
                None
            }
        }
    }

    /// Records the envelopes opened for the first time, in one write.
    fn poll_ledger_record(&mut self, batch: &mut OpenBatch) -> Poll<Outcome> {
        match std::mem::replace(&mut batch.ledger, LedgerStage::Read) {
            LedgerStage::Recording { id } => match self.replies.remove(&id) {
                None => {
                    batch.ledger = LedgerStage::Recording { id };
                    Poll::Pending
                }
                Some(Reply::Stored) => Poll::Ready(self.opened_outcome(batch)),
                Some(Reply::Failed(failure)) => Poll::Ready(Outcome::Failed(failure)),
                Some(_) => Poll::Ready(Outcome::Failed(Failure::new(
                    codes::STORAGE_UNAVAILABLE,
                    "unable to record the seen message ids",
                ))),
            },
            _ => {
                let mut fresh: Pairs<SeenKey, String> = Pairs::new();
                for (i, message) in batch.items.iter().enumerate() {
                    let key = seen_key(message);
                    let opened =
                        batch.first_ids[i].is_none() && matches!(batch.results[i], Some(Ok(_)));
                    if opened && !fresh.contains_key(&key) {
                        fresh.insert(key, message.message_id.clone());
                    }
                }
                if fresh.0.is_empty() {
                    return Poll::Ready(self.opened_outcome(batch));
                }
                let id = self.next_action_id();
                self.awaited.insert(id, ());
                let entries = fresh.0;
                self.actions.push_back(Action::LedgerRecord { id, entries });
                batch.ledger = LedgerStage::Recording { id };
                Poll::Pending
            }
        }
    }

    fn opened_outcome(&self, batch: &mut OpenBatch) -> Outcome {
        let results = std::mem::take(&mut batch.results)
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(Failure::new(
                        codes::CLOSED,
                        "unable to open the message; it was not opened",
                    ))
                })
            })
            .collect();
        Outcome::Opened(results)
    }
}

fn replay(first_id: &str) -> Failure {
    Failure::new(
        codes::REPLAY,
        format!(
            "unable to open the message; this envelope was already opened as message {first_id}"
        ),
    )
}

fn seen_key(message: &EncryptedMessage) -> SeenKey {
    SeenKey {
        sender_user_id: message.user_id.clone(),
        message_id: message.client_id.clone(),
    }
}

/// The failure a non-2xx answer stands for: the backend's `error.code`, else
/// `network_error` for a 5xx or 429 (or no status), else `invalid_response`.
fn refusal(status: u16, body: &str) -> Failure {
    let value = Json::parse(body);
    let error = value.as_ref().and_then(|value| value.get("error"));
    let code = error
        .and_then(|error| error.get("code"))
        .and_then(Json::as_str);
    let message = error
        .and_then(|error| error.get("message"))
        .and_then(Json::as_str);
    let retryable = status == 0 || status >= 500 || status == 429;
    let code = match code {
        Some(code) => code,
        None if retryable => codes::NETWORK_ERROR,
        None => codes::INVALID_RESPONSE,
    };
    let message = match message {
        Some(message) => message.to_owned(),
        None => format!("unable to reach the backend; it answered {status}"),
    };
    Failure::new(code, message)
}

/// `{"epoch": n}` of `GET .../epoch`.
fn read_epoch(body: &str) -> Result<u64, Failure> {
    Json::parse(body)
        .as_ref()
        .and_then(|value| value.get("epoch"))
        .and_then(Json::as_u64)
        .ok_or_else(|| {
            Failure::new(
                codes::INVALID_RESPONSE,
                "unable to read the room's epoch; the answer has no epoch",
            )
        })
}

/// The `share` of `GET .../shares`.
fn read_share(body: &str, epoch: u64) -> Result<KeyShare, Failure> {
    let value = Json::parse(body);
    let share = value
        .as_ref()
        .and_then(|value| value.get("share"))
        .filter(|share| share.as_object().is_some())
        .ok_or_else(|| {
            Failure::new(
                codes::MALFORMED,
                format!("unable to install epoch {epoch}; the answer has no share"),
            )
        })?;
    Ok(KeyShare::read(share)?)
}

/// `encodeURIComponent`: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )`
/// percent-encoded as UTF-8.
fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
