#![cfg(not(target_arch = "wasm32"))]
//! `e2ee::RoomSession`, the room's encryption policy, on fake time against a
//! fake backend (the reference backend's E2EE routes, server/backend/API.md)
//! and fake storage (the cross-tab lock, the stored states, the replay
//! ledger): epochs created and installed, the compare-and-set retries, stale
//! epochs, key changes, sender binding, replay verdicts; then a property test
//! over reordered, duplicated and failed answers.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;

use domvia_realtime::e2ee::primitives::sha256;
use domvia_realtime::e2ee::rand_core::{TryCryptoRng, TryRng};
use domvia_realtime::e2ee::session::{
    Action, EncryptedMessage, Event, Failure, Method, OpId, Request, SeenKey, StaleEpoch,
    DEVICES_MAX_AGE_MS, EPOCH_ATTEMPTS,
};
use domvia_realtime::e2ee::{
    create_epoch, DeviceKeys, DeviceRecord, KeyShare, RoomKeys, RoomSession,
};
use proptest::prelude::*;
use serde_json::{json, Value};

const ROOM: &str = "r_00112233445566778899aabbccddeeff";
const PATH: &str = "/api/rooms/r_00112233445566778899aabbccddeeff";
const T0: u64 = 1_760_000_000_000;

/// A deterministic generator: SHA-256(seed || u64be(block)).
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

fn device(user_id: &str, device_id: &str, generation: u32) -> DeviceKeys {
    let secret =
        |what: &str| sha256(format!("session test {device_id} {generation} {what}").as_bytes());
    DeviceKeys::from_secrets(user_id, device_id, &secret("x25519"), &secret("ed25519"))
        .expect("device keys")
}

fn ada() -> DeviceKeys {
    device("u_ada", "ada-laptop", 0)
}

fn bob() -> DeviceKeys {
    device("u_bob", "bob-phone", 0)
}

fn carol() -> DeviceKeys {
    device("u_carol", "carol-tablet", 0)
}

// ---------------------------------------------------------------------------
// The fake backend
// ---------------------------------------------------------------------------

struct StoredEpoch {
    shares: BTreeMap<String, String>,
    /// `None`: created before the backend recorded its devices.
    devices: Option<Vec<DeviceRecord>>,
}

#[derive(Default)]
struct Backend {
    /// The member devices, by (user, device).
    devices: BTreeMap<(String, String), DeviceRecord>,
    epoch: u64,
    epochs: BTreeMap<u64, StoredEpoch>,
    /// Refuse every epoch creation with this 409 code.
    refuse_epochs: Option<&'static str>,
    posts: usize,
    device_lists: usize,
}

fn error_body(code: &str) -> String {
    json!({"error": {"code": code, "message": format!("unable to do it; {code}")}}).to_string()
}

impl Backend {
    fn with(devices: &[&DeviceKeys]) -> Backend {
        let mut backend = Backend::default();
        for device in devices {
            backend.add(&device.record());
        }
        backend
    }

    fn add(&mut self, record: &DeviceRecord) {
        self.devices.insert(
            (record.user_id().to_owned(), record.device_id().to_owned()),
            record.clone(),
        );
    }

    fn remove_user(&mut self, user_id: &str) {
        self.devices.retain(|(user, _), _| user != user_id);
    }

    fn records(&self) -> Vec<DeviceRecord> {
        self.devices.values().cloned().collect()
    }

    fn list(records: &[DeviceRecord]) -> String {
        Value::Array(
            records
                .iter()
                .map(|r| json!({"device_id": r.device_id(), "user_id": r.user_id(), "record": r.to_json()}))
                .collect(),
        )
        .to_string()
    }

    /// Stores an epoch created elsewhere (another member's device).
    fn store_epoch(&mut self, epoch: u64, shares: &[KeyShare], devices: Option<Vec<DeviceRecord>>) {
        let shares = shares
            .iter()
            .map(|s| (s.recipient_device_id().to_owned(), s.to_json_string()))
            .collect();
        self.epochs.insert(epoch, StoredEpoch { shares, devices });
        self.epoch = self.epoch.max(epoch);
    }

    fn answer(&mut self, request: &Request) -> (u16, String) {
        let Some(rest) = request.path.strip_prefix(PATH) else {
            return (404, error_body("room_not_found"));
        };
        match (request.method, rest) {
            (Method::Get, "/devices") => {
                self.device_lists += 1;
                (200, Backend::list(&self.records()))
            }
            (Method::Get, "/epoch") => (200, json!({"epoch": self.epoch}).to_string()),
            (Method::Post, "/epochs") => {
                self.posts += 1;
                if let Some(code) = self.refuse_epochs {
                    return (409, error_body(code));
                }
                let body: Value =
                    serde_json::from_str(request.body.as_deref().unwrap_or("")).expect("body");
                let epoch = body["epoch"].as_u64().expect("epoch");
                if epoch != self.epoch + 1 {
                    return (409, error_body("epoch_conflict"));
                }
                let shares = body["shares"].as_array().expect("shares");
                let ids: BTreeSet<String> = shares
                    .iter()
                    .map(|s| s["device_id"].as_str().expect("id").to_owned())
                    .collect();
                let current: BTreeSet<String> =
                    self.devices.keys().map(|(_, d)| d.clone()).collect();
                if ids != current || ids.len() != shares.len() {
                    return (409, error_body("shares_incomplete"));
                }
                let shares = shares
                    .iter()
                    .map(|s| {
                        (
                            s["device_id"].as_str().expect("id").to_owned(),
                            s["share"].to_string(),
                        )
                    })
                    .collect();
                self.epochs.insert(
                    epoch,
                    StoredEpoch {
                        shares,
                        devices: Some(self.records()),
                    },
                );
                self.epoch = epoch;
                (201, json!({"room_id": ROOM, "epoch": epoch}).to_string())
            }
            (Method::Get, rest) => {
                let Some(rest) = rest.strip_prefix("/epochs/") else {
                    return (404, error_body("not_found"));
                };
                let (epoch, tail) = rest.split_once('/').expect("epoch path");
                let Some(stored) = epoch.parse().ok().and_then(|e: u64| self.epochs.get(&e)) else {
                    return (404, error_body("epoch_not_found"));
                };
                if tail == "devices" {
                    return match &stored.devices {
                        Some(devices) => (200, Backend::list(devices)),
                        None => (404, error_body("epoch_devices_unknown")),
                    };
                }
                let device = tail.strip_prefix("shares?device_id=").expect("shares path");
                match stored.shares.get(device) {
                    Some(share) => (
                        200,
                        format!(
                            r#"{{"room_id":"{ROOM}","epoch":{epoch},"device_id":"{device}","share":{share}}}"#
                        ),
                    ),
                    None => (404, error_body("share_not_found")),
                }
            }
            _ => (404, error_body("not_found")),
        }
    }
}

// ---------------------------------------------------------------------------
// The fake page: storage, the lock, the request queue
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Storage {
    room: Option<(u64, String)>,
    known: Option<(u64, String)>,
    ledger: BTreeMap<SeenKey, String>,
    locked: bool,
}

struct Page {
    session: RoomSession<TestRng>,
    /// The store revisions this session matches.
    room_rev: u64,
    known_rev: u64,
    in_flight: Vec<Request>,
    events: Vec<Event>,
    now: u64,
}

impl Page {
    fn new(me: DeviceKeys, seed: &str) -> Page {
        Page {
            session: RoomSession::new(ROOM, me, TestRng::new(seed)).expect("session"),
            room_rev: 0,
            known_rev: 0,
            in_flight: Vec::new(),
            events: Vec::new(),
            now: T0,
        }
    }

    /// Carries out every action but the requests, which wait in `in_flight`.
    fn pump(&mut self, storage: &mut Storage) {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Request(request) => self.in_flight.push(request),
                Action::Lock { id } => {
                    assert!(!storage.locked, "the lock is taken twice");
                    storage.locked = true;
                    let room = storage
                        .room
                        .as_ref()
                        .filter(|(rev, _)| *rev != self.room_rev);
                    let known = storage
                        .known
                        .as_ref()
                        .filter(|(rev, _)| *rev != self.known_rev);
                    self.room_rev = room.map_or(self.room_rev, |(rev, _)| *rev);
                    self.known_rev = known.map_or(self.known_rev, |(rev, _)| *rev);
                    let (room, known) =
                        (room.map(|(_, t)| t.clone()), known.map(|(_, t)| t.clone()));
                    self.session
                        .locked(self.now, id, room.as_deref(), known.as_deref());
                }
                Action::Persist {
                    id,
                    room_state,
                    known_devices,
                } => {
                    assert!(storage.locked, "persisted without the lock");
                    if let Some(state) = room_state {
                        self.room_rev = storage.room.as_ref().map_or(0, |(rev, _)| *rev) + 1;
                        storage.room = Some((self.room_rev, state.as_str().to_owned()));
                    }
                    if let Some(state) = known_devices {
                        self.known_rev = storage.known.as_ref().map_or(0, |(rev, _)| *rev) + 1;
                        storage.known = Some((self.known_rev, state));
                    }
                    self.session.stored(self.now, id);
                }
                Action::LedgerCheck { id, keys } => {
                    assert!(storage.locked, "read the ledger without the lock");
                    let found = keys
                        .iter()
                        .map(|key| storage.ledger.get(key).cloned())
                        .collect();
                    self.session.ledger_result(self.now, id, found);
                }
                Action::LedgerRecord { id, entries } => {
                    for (key, backend_id) in entries {
                        let previous = storage.ledger.insert(key, backend_id);
                        assert!(previous.is_none(), "a ledger entry was overwritten");
                    }
                    self.session.stored(self.now, id);
                }
                Action::Unlock => storage.locked = false,
                Action::Emit(event) => self.events.push(event),
            }
        }
    }

    /// Answers the oldest request.
    fn answer_one(&mut self, backend: &mut Backend, storage: &mut Storage) -> Option<Request> {
        if self.in_flight.is_empty() {
            return None;
        }
        let request = self.in_flight.remove(0);
        let (status, body) = backend.answer(&request);
        self.session.response(self.now, request.id, status, &body);
        self.pump(storage);
        Some(request)
    }

    /// Answers every request, in order, until nothing is in flight.
    fn settle(&mut self, backend: &mut Backend, storage: &mut Storage) -> Vec<Request> {
        self.pump(storage);
        let mut answered = Vec::new();
        while let Some(request) = self.answer_one(backend, storage) {
            answered.push(request);
            assert!(answered.len() < 500, "the session keeps asking");
        }
        answered
    }

    fn outcome(&self, op: OpId) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|event| match event {
                Event::Sealed { op: o, .. }
                | Event::Opened { op: o, .. }
                | Event::Done { op: o }
                | Event::SafetyNumbers { op: o, .. }
                | Event::Failed { op: o, .. } => *o == op,
                Event::KeyChange { .. } => false,
            })
            .collect()
    }

    fn sealed(&self, op: OpId) -> String {
        match self.outcome(op).as_slice() {
            [Event::Sealed { envelope, .. }] => envelope.clone(),
            other => panic!("op {op} did not seal: {other:?}"),
        }
    }

    fn failed(&self, op: OpId) -> Failure {
        match self.outcome(op).as_slice() {
            [Event::Failed { failure, .. }] => failure.clone(),
            [Event::Opened {
                result: Err(failure),
                ..
            }] => failure.clone(),
            other => panic!("op {op} did not fail: {other:?}"),
        }
    }

    fn opened(&self, op: OpId) -> Result<String, Failure> {
        match self.outcome(op).as_slice() {
            [Event::Opened { result, .. }] => result.clone(),
            other => panic!("op {op} did not open: {other:?}"),
        }
    }

    fn key_changes(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .filter_map(|event| match event {
                Event::KeyChange { user_id, device_id } => {
                    Some((user_id.clone(), device_id.clone()))
                }
                _ => None,
            })
            .collect()
    }
}

/// Another member's device: installs the backend's epochs from its shares, seals.
struct Peer {
    keys: DeviceKeys,
    room: RoomKeys,
}

impl Peer {
    fn new(keys: DeviceKeys) -> Peer {
        Peer {
            keys,
            room: RoomKeys::new(ROOM).expect("room"),
        }
    }

    /// Installs every epoch of the backend it has a share of.
    fn sync(&mut self, backend: &Backend) {
        for (&epoch, stored) in &backend.epochs {
            if self.room.has_epoch(epoch) {
                continue;
            }
            let (Some(share), Some(devices)) =
                (stored.shares.get(self.keys.device_id()), &stored.devices)
            else {
                continue;
            };
            let share = KeyShare::from_json_str(share).expect("share");
            let creator = devices
                .iter()
                .find(|r| r.device_id() == share.sender_device_id())
                .expect("creator");
            let key = share.open(&self.keys, creator).expect("open share");
            self.room.install_epoch(key, devices).expect("install");
        }
    }

    /// Creates the next epoch for the backend's current devices.
    fn rotate(&mut self, backend: &mut Backend, now: u64) -> u64 {
        let epoch = backend.epoch + 1;
        let records = backend.records();
        let new = create_epoch(
            ROOM,
            epoch,
            now,
            &self.keys,
            &records,
            &mut TestRng::new(&format!("rotate {epoch}")),
        )
        .expect("epoch");
        backend.store_epoch(epoch, &new.shares, Some(records.clone()));
        self.room.install_epoch(new.key, &records).expect("install");
        epoch
    }

    fn seal(&self, client_id: &str, text: &str) -> Option<String> {
        let envelope = self
            .room
            .seal(
                &self.keys,
                client_id,
                "text",
                text.as_bytes(),
                &mut TestRng::new(client_id),
            )
            .ok()?;
        Some(envelope.to_json_string())
    }

    fn open(&mut self, envelope: &str, backend_id: &str) -> Result<String, String> {
        let envelope = domvia_realtime::e2ee::Envelope::from_json_str(envelope)
            .map_err(|e| e.code().to_owned())?;
        let opened = self
            .room
            .open(&envelope, T0, backend_id)
            .map_err(|e| e.code().to_owned())?;
        Ok(String::from_utf8(opened.content).expect("utf8"))
    }
}

fn message(
    user_id: &str,
    client_id: &str,
    backend_id: &str,
    envelope: &str,
    sent_at: u64,
) -> EncryptedMessage {
    EncryptedMessage {
        message_id: backend_id.to_owned(),
        user_id: user_id.to_owned(),
        client_id: client_id.to_owned(),
        sent_at_ms: sent_at,
        envelope: envelope.to_owned(),
    }
}

fn requests_of(answered: &[Request], method: Method, suffix: &str) -> usize {
    answered
        .iter()
        .filter(|r| r.method == method && r.path.split('?').next().unwrap_or("").ends_with(suffix))
        .count()
}

// ---------------------------------------------------------------------------
// Scenarios on fake time
// ---------------------------------------------------------------------------

#[test]
fn the_first_send_creates_epoch_one_and_the_other_member_reads_it() {
    let mut backend = Backend::with(&[&ada(), &bob()]);
    let mut storage = Storage::default();
    let mut page = Page::new(ada(), "ada");

    let join = page.session.join(T0);
    page.settle(&mut backend, &mut storage);
    assert_eq!(
        page.outcome(join),
        vec![&Event::Done { op: join }],
        "no epoch yet: nothing to join"
    );

    let op = page.session.seal(T0, "c-1", "hello bob");
    let answered = page.settle(&mut backend, &mut storage);
    let envelope = page.sealed(op);
    assert_eq!(backend.epoch, 1);
    assert_eq!(requests_of(&answered, Method::Post, "/epochs"), 1);
    assert!(storage.room.is_some(), "the new epoch was persisted");
    assert!(
        storage.known.is_some(),
        "the member devices were pinned and persisted"
    );
    assert!(!storage.locked, "the lock was released");

    let mut bob = Peer::new(bob());
    bob.sync(&backend);
    assert_eq!(bob.open(&envelope, "m_1"), Ok("hello bob".to_owned()));
}

#[test]
fn every_send_refetches_the_member_devices_while_opening_reuses_them_for_the_max_age() {
    let mut backend = Backend::with(&[&ada(), &bob()]);
    let mut storage = Storage::default();
    let mut page = Page::new(ada(), "ada");
    let mut bob = Peer::new(bob());
    for n in 0..3 {
        page.session.seal(T0 + n, &format!("c-{n}"), "x");
        page.settle(&mut backend, &mut storage);
    }
    assert_eq!(backend.device_lists, 3, "one device list per send");
    assert_eq!(backend.posts, 1, "one epoch for the three");

    // Bob rotates; opening his message installs it with the epoch's devices.
    bob.sync(&backend);
    bob.rotate(&mut backend, T0);
    let envelope = bob.seal("b-1", "hi").expect("bob seals");
    let lists = backend.device_lists;
    let op = page
        .session
        .open(T0 + 10, message("u_bob", "b-1", "m_b1", &envelope, T0 + 10));
    page.settle(&mut backend, &mut storage);
    assert_eq!(page.opened(op), Ok("hi".to_owned()));
    assert_eq!(
        backend.device_lists, lists,
        "the epoch's own devices were used"
    );

    // Safety numbers reuse the list for DEVICES_MAX_AGE_MS, then refetch.
    let now = T0 + 100;
    page.now = now;
    let first = page.session.safety_numbers(now, "u_bob");
    page.settle(&mut backend, &mut storage);
    let lists = backend.device_lists;
    let again = page
        .session
        .safety_numbers(now + DEVICES_MAX_AGE_MS - 101, "u_bob");
    page.settle(&mut backend, &mut storage);
    assert_eq!(backend.device_lists, lists, "reused within the max age");
    page.session
        .safety_numbers(now + DEVICES_MAX_AGE_MS, "u_bob");
    page.settle(&mut backend, &mut storage);
    assert_eq!(backend.device_lists, lists + 1, "refetched after it");
    for op in [first, again] {
        match page.outcome(op).as_slice() {
            [Event::SafetyNumbers { numbers, .. }] => {
                assert_eq!(numbers.len(), 1);
                assert_eq!(numbers[0].device_id, "bob-phone");
                assert_eq!(numbers[0].safety_number.len(), 35);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn epoch_creation_gives_up_after_the_attempts_with_e2ee_epoch_failed() {
    for code in ["epoch_conflict", "shares_incomplete"] {
        let mut backend = Backend::with(&[&ada(), &bob()]);
        backend.refuse_epochs = Some(code);
        let mut storage = Storage::default();
        let mut page = Page::new(ada(), "ada");
        let op = page.session.seal(T0, "c-1", "x");
        page.settle(&mut backend, &mut storage);
        let failure = page.failed(op);
        assert_eq!(failure.code, "e2ee_epoch_failed", "{code}");
        assert!(failure.message.contains(code), "{failure:?}");
        assert_eq!(backend.posts, EPOCH_ATTEMPTS as usize, "{code}");
        assert_eq!(
            page.session.keys().pending_epoch(),
            None,
            "refused epochs are discarded"
        );
        assert!(!storage.locked);
    }
}

#[test]
fn a_conflict_installs_the_epoch_someone_else_created_when_it_covers_the_members() {
    let mut backend = Backend::with(&[&ada(), &bob()]);
    let mut storage = Storage::default();
    let mut page = Page::new(ada(), "ada");
    let mut bob = Peer::new(bob());
    let op = page.session.seal(T0, "c-1", "x");
    page.pump(&mut storage);
    // Bob creates epoch 1 while Ada's is on its way.
    page.answer_one(&mut backend, &mut storage);
    page.answer_one(&mut backend, &mut storage);
    assert_eq!(page.in_flight[0].method, Method::Post);
    bob.rotate(&mut backend, T0);
    let answered = page.settle(&mut backend, &mut storage);
    let envelope = page.sealed(op);
    assert_eq!(backend.epoch, 1, "no second epoch");
    assert_eq!(
        requests_of(&answered, Method::Post, "/epochs"),
        1,
        "one refused POST"
    );
    assert_eq!(bob.open(&envelope, "m_1"), Ok("x".to_owned()));
}

#[test]
fn a_stale_epoch_is_replaced_on_reseal_even_when_the_devices_look_unchanged() {
    let mut backend = Backend::with(&[&ada(), &bob()]);
    let mut storage = Storage::default();
    let mut page = Page::new(ada(), "ada");
    page.session.seal(T0, "c-1", "x");
    page.settle(&mut backend, &mut storage);
    assert_eq!(backend.epoch, 1);

    // needs_new_epoch: false -> the current epoch is enough.
    let op = page.session.reseal(
        T0,
        "c-2",
        "y",
        StaleEpoch {
            current_epoch: 1,
            needs_new_epoch: false,
        },
    );
    page.settle(&mut backend, &mut storage);
    page.sealed(op);
    assert_eq!(backend.epoch, 1);

    // needs_new_epoch: true -> epoch 2, although the device list is the same.
    let op = page.session.reseal(
        T0,
        "c-2",
        "y",
        StaleEpoch {
            current_epoch: 1,
            needs_new_epoch: true,
        },
    );
    page.settle(&mut backend, &mut storage);
    let envelope: Value = serde_json::from_str(&page.sealed(op)).expect("json");
    assert_eq!(backend.epoch, 2);
    assert_eq!(envelope["epoch"], 2);
}

#[test]
fn a_device_new_to_the_room_joins_by_creating_an_epoch_that_includes_it() {
    let mut backend = Backend::with(&[&bob()]);
    let mut bob = Peer::new(bob());
    bob.rotate(&mut backend, T0);
    // Ada's device was added after epoch 1: no share for it.
    backend.add(&ada().record());
    let mut storage = Storage::default();
    let mut page = Page::new(ada(), "ada");
    let join = page.session.join(T0);
    page.settle(&mut backend, &mut storage);
    assert_eq!(page.outcome(join), vec![&Event::Done { op: join }]);
    assert_eq!(backend.epoch, 2);
    assert_eq!(page.session.keys().current_epoch(), Some(2));
}

#[test]
fn a_key_change_is_reported_once_and_blocks_sends_until_accepted() {
    let mut backend = Backend::with(&[&ada(), &bob()]);
    let mut storage = Storage::default();
    let mut page = Page::new(ada(), "ada");
    page.session.seal(T0, "c-1", "x");
    page.settle(&mut backend, &mut storage);

    // Bob's device presents new keys.
    backend.add(&device("u_bob", "bob-phone", 1).record());
    for n in 0..2 {
        let op = page.session.seal(T0, &format!("c-k{n}"), "x");
        page.settle(&mut backend, &mut storage);
        assert_eq!(page.failed(op).code, "e2ee_device_key_changed");
    }
    assert_eq!(
        page.key_changes(),
        vec![("u_bob".to_owned(), "bob-phone".to_owned())],
        "reported once"
    );

    let accept = page.session.accept_device_change(T0, "u_bob", "bob-phone");
    page.settle(&mut backend, &mut storage);
    assert_eq!(page.outcome(accept), vec![&Event::Done { op: accept }]);
    let op = page.session.seal(T0, "c-2", "x");
    page.settle(&mut backend, &mut storage);
    page.sealed(op);
    assert_eq!(backend.epoch, 2, "the new keys need a new epoch");

    // The acceptance is persisted: a reload does not report it again.
    let mut reloaded = Page::new(ada(), "ada reloaded");
    let op = reloaded.session.seal(T0, "c-3", "x");
    reloaded.settle(&mut backend, &mut storage);
    reloaded.sealed(op);
    assert!(reloaded.key_changes().is_empty());
}

#[test]
fn a_message_is_opened_only_as_its_authenticated_sender_and_a_forged_copy_does_not_block_it() {
    let mut backend = Backend::with(&[&ada(), &bob()]);
    let mut bob = Peer::new(bob());
    bob.rotate(&mut backend, T0);
    let envelope = bob.seal("b-1", "from bob").expect("seal");
    let mut storage = Storage::default();
    let mut page = Page::new(ada(), "ada");

    // The backend says Carol sent it; then another client id.
    let forged = page
        .session
        .open(T0, message("u_carol", "b-1", "m_1", &envelope, T0));
    let renamed = page
        .session
        .open(T0, message("u_bob", "b-2", "m_2", &envelope, T0));
    page.settle(&mut backend, &mut storage);
    assert_eq!(page.failed(forged).code, "e2ee_wrong_sender");
    assert_eq!(page.failed(renamed).code, "e2ee_wrong_sender");
    assert!(
        storage.ledger.is_empty(),
        "refused messages are not recorded"
    );

    // The genuine message, under another backend id, still opens.
    let genuine = page
        .session
        .open(T0, message("u_bob", "b-1", "m_3", &envelope, T0));
    page.settle(&mut backend, &mut storage);
    assert_eq!(page.opened(genuine), Ok("from bob".to_owned()));
}

#[test]
fn the_ledger_refuses_a_genuine_envelope_under_another_backend_id_across_reloads() {
    let mut backend = Backend::with(&[&ada(), &bob()]);
    let mut bob = Peer::new(bob());
    bob.rotate(&mut backend, T0);
    let envelope = bob.seal("b-1", "once").expect("seal");
    let mut storage = Storage::default();

    let mut page = Page::new(ada(), "ada");
    let first = page
        .session
        .open(T0, message("u_bob", "b-1", "m_1", &envelope, T0));
    // In one batch: the same stored message twice, and a copy under a new id.
    let again = page
        .session
        .open(T0, message("u_bob", "b-1", "m_1", &envelope, T0));
    let copy = page
        .session
        .open(T0, message("u_bob", "b-1", "m_2", &envelope, T0));
    page.settle(&mut backend, &mut storage);
    assert_eq!(page.opened(first), Ok("once".to_owned()));
    assert_eq!(
        page.opened(again),
        Ok("once".to_owned()),
        "a history reload opens it again"
    );
    assert_eq!(page.failed(copy).code, "e2ee_replay");

    // A reload forgets the ids in memory; the ledger remembers.
    let mut reloaded = Page::new(ada(), "ada 2");
    let copy = reloaded
        .session
        .open(T0, message("u_bob", "b-1", "m_2", &envelope, T0));
    let same = reloaded
        .session
        .open(T0, message("u_bob", "b-1", "m_1", &envelope, T0));
    reloaded.settle(&mut backend, &mut storage);
    let replay = reloaded.failed(copy);
    assert_eq!(replay.code, "e2ee_replay");
    assert!(replay.message.contains("m_1"), "{replay:?}");
    assert_eq!(reloaded.opened(same), Ok("once".to_owned()));
}

#[test]
fn opens_queued_while_the_lock_is_taken_are_one_batch_with_one_ledger_read_and_write() {
    let mut backend = Backend::with(&[&ada(), &bob()]);
    let mut bob = Peer::new(bob());
    bob.rotate(&mut backend, T0);
    let mut page = Page::new(ada(), "ada");
    let mut ops = Vec::new();
    for n in 0..4 {
        let client_id = format!("b-{n}");
        let envelope = bob.seal(&client_id, &format!("text {n}")).expect("seal");
        ops.push(page.session.open(
            T0,
            message("u_bob", &client_id, &format!("m_{n}"), &envelope, T0),
        ));
    }
    let mut checks = Vec::new();
    let mut records = Vec::new();
    let mut locks = 0;
    loop {
        while let Some(action) = page.session.poll_action() {
            match action {
                Action::Lock { id } => {
                    locks += 1;
                    page.session.locked(T0, id, None, None);
                }
                Action::LedgerCheck { id, keys } => {
                    checks.push(keys.len());
                    page.session.ledger_result(T0, id, vec![None; keys.len()]);
                }
                Action::LedgerRecord { id, entries } => {
                    records.push(entries.len());
                    page.session.stored(T0, id);
                }
                Action::Persist { id, .. } => page.session.stored(T0, id),
                Action::Request(request) => page.in_flight.push(request),
                Action::Unlock => {}
                Action::Emit(event) => page.events.push(event),
            }
        }
        if page.in_flight.is_empty() {
            break;
        }
        let request = page.in_flight.remove(0);
        let (status, body) = backend.answer(&request);
        page.session.response(T0, request.id, status, &body);
    }
    assert_eq!(
        locks, 1,
        "the four opens are queued before the lock is held"
    );
    assert_eq!(checks, vec![4]);
    assert_eq!(records, vec![4]);
    for (n, op) in ops.into_iter().enumerate() {
        assert_eq!(page.opened(op), Ok(format!("text {n}")));
    }
}

#[test]
fn an_unavailable_epoch_is_not_fetched_again_until_a_room_event() {
    let mut backend = Backend::with(&[&ada(), &bob()]);
    let mut bob = Peer::new(bob());
    bob.rotate(&mut backend, T0);
    // Epoch 1's share for Ada is lost.
    backend
        .epochs
        .get_mut(&1)
        .expect("epoch")
        .shares
        .remove("ada-laptop");
    let envelope = bob.seal("b-1", "x").expect("seal");
    let mut storage = Storage::default();
    let mut page = Page::new(ada(), "ada");
    let op = page
        .session
        .open(T0, message("u_bob", "b-1", "m_1", &envelope, T0));
    let answered = page.settle(&mut backend, &mut storage);
    assert_eq!(page.failed(op).code, "share_not_found");
    assert_eq!(answered.len(), 1);

    let op = page
        .session
        .open(T0, message("u_bob", "b-1", "m_1", &envelope, T0));
    assert!(
        page.settle(&mut backend, &mut storage).is_empty(),
        "remembered as unavailable"
    );
    assert_eq!(page.failed(op).code, "share_not_found");

    page.session.room_event(
        T0,
        "member.added",
        &json!({"room_id": ROOM, "user_id": "u_x"}).to_string(),
    );
    page.session
        .open(T0, message("u_bob", "b-1", "m_1", &envelope, T0));
    assert_eq!(
        page.settle(&mut backend, &mut storage).len(),
        1,
        "asked again after the event"
    );
    // An event of another room changes nothing.
    page.session.room_event(
        T0,
        "member.added",
        &json!({"room_id": "r_other", "user_id": "u_x"}).to_string(),
    );
    page.session
        .open(T0, message("u_bob", "b-1", "m_1", &envelope, T0));
    assert!(page.settle(&mut backend, &mut storage).is_empty());
}

#[test]
fn an_unreachable_backend_fails_the_send_with_network_error_and_a_later_send_works() {
    let mut backend = Backend::with(&[&ada(), &bob()]);
    let mut storage = Storage::default();
    let mut page = Page::new(ada(), "ada");
    let op = page.session.seal(T0, "c-1", "x");
    page.pump(&mut storage);
    let request = page.in_flight.remove(0);
    page.session.request_failed(
        T0,
        request.id,
        "network_error",
        "unable to list the room's devices; offline",
    );
    page.pump(&mut storage);
    assert_eq!(page.failed(op).code, "network_error");
    assert!(!storage.locked);
    // The other request's late answer is ignored.
    page.settle(&mut backend, &mut storage);
    assert_eq!(page.outcome(op).len(), 1);

    let op = page.session.seal(T0, "c-1", "x");
    page.pump(&mut storage);
    let request = page.in_flight[0].clone();
    page.session.response(T0, request.id, 503, "");
    page.pump(&mut storage);
    assert_eq!(
        page.failed(op).code,
        "network_error",
        "a 5xx without a body"
    );
    page.settle(&mut backend, &mut storage);

    let op = page.session.seal(T0, "c-1", "x");
    page.settle(&mut backend, &mut storage);
    page.sealed(op);
}

#[test]
fn duplicate_and_late_answers_are_ignored() {
    let mut backend = Backend::with(&[&ada(), &bob()]);
    let mut storage = Storage::default();
    let mut page = Page::new(ada(), "ada");
    let op = page.session.seal(T0, "c-1", "x");
    page.pump(&mut storage);
    let first = page.in_flight[0].clone();
    let (status, body) = backend.answer(&first);
    for _ in 0..3 {
        page.session.response(T0, first.id, status, &body);
    }
    page.in_flight.remove(0);
    page.settle(&mut backend, &mut storage);
    page.sealed(op);
    // After the operation: every old id is ignored.
    for id in 0..20 {
        page.session.response(T0, id, 500, "");
        page.session.stored(T0, id);
        page.session.ledger_result(T0, id, vec![None]);
        page.session.locked(T0, id, Some("not a state"), None);
    }
    page.pump(&mut storage);
    assert!(page.session.is_idle());
    assert_eq!(page.outcome(op).len(), 1);
}

#[test]
fn another_tabs_state_is_reloaded_under_the_lock() {
    let mut backend = Backend::with(&[&ada(), &bob()]);
    let mut storage = Storage::default();
    let mut one = Page::new(ada(), "tab 1");
    let mut two = Page::new(ada(), "tab 2");
    one.session.seal(T0, "c-1", "x");
    one.settle(&mut backend, &mut storage);
    // Tab two reads epoch 1 from the store, so it needs no new epoch.
    let op = two.session.seal(T0, "c-2", "y");
    two.settle(&mut backend, &mut storage);
    two.sealed(op);
    assert_eq!(backend.posts, 1);
    assert_eq!(two.session.keys().current_epoch(), Some(1));
    // A corrupt stored state fails the operation with its code, never a panic.
    storage.room = Some((99, "{\"v\":2}".to_owned()));
    let op = one.session.seal(T0, "c-3", "z");
    one.settle(&mut backend, &mut storage);
    assert_eq!(one.failed(op).code, "e2ee_unsupported_version");
    assert!(!storage.locked);
}

#[test]
fn closing_fails_what_waits_persists_what_changed_and_releases_the_lock() {
    let mut backend = Backend::with(&[&ada(), &bob()]);
    let mut storage = Storage::default();
    let mut page = Page::new(ada(), "ada");
    let seal = page.session.seal(T0, "c-1", "x");
    let open = page
        .session
        .open(T0, message("u_bob", "b-1", "m_1", "{}", T0));
    page.pump(&mut storage);
    assert!(storage.locked);
    page.session.close();
    page.pump(&mut storage);
    assert!(!storage.locked, "released");
    assert_eq!(page.failed(seal).code, "e2ee_closed");
    assert_eq!(page.failed(open).code, "e2ee_closed");
    page.settle(&mut backend, &mut storage);
    let later = page.session.seal(T0, "c-2", "x");
    page.pump(&mut storage);
    assert_eq!(page.failed(later).code, "e2ee_closed");
    assert!(page.in_flight.is_empty());
}

// ---------------------------------------------------------------------------
// Property: any interleaving of answers
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Step {
    Seal,
    Reseal(bool),
    /// Bob seals a message and Ada opens it under a backend id (one of a few
    /// per message), from the right or a forged sender.
    Open {
        pick: usize,
        copy: u8,
        forged: bool,
    },
    BobRotates,
    CarolJoins,
    CarolLeaves,
    /// Answer the in-flight request at this index (reordering), maybe twice, maybe failing.
    Answer {
        at: usize,
        how: How,
    },
    Reload,
    Tick(u64),
}

#[derive(Clone, Copy, Debug)]
enum How {
    Ok,
    Twice,
    NetworkError,
    ServerError,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Seal),
        1 => any::<bool>().prop_map(Step::Reseal),
        3 => (0..6usize, 0..3u8, prop::bool::weighted(0.25)).prop_map(|(pick, copy, forged)| Step::Open { pick, copy, forged }),
        1 => Just(Step::BobRotates),
        1 => Just(Step::CarolJoins),
        1 => Just(Step::CarolLeaves),
        8 => (0..4usize, prop_oneof![6 => Just(How::Ok), 1 => Just(How::Twice), 1 => Just(How::NetworkError), 1 => Just(How::ServerError)])
            .prop_map(|(at, how)| Step::Answer { at, how }),
        1 => Just(Step::Reload),
        1 => (0..60_000u64).prop_map(Step::Tick),
    ]
}

struct Run {
    backend: Backend,
    storage: Storage,
    page: Page,
    /// Every page's events, by page (a reload starts a new page, whose op ids start over).
    events: Vec<(u32, Event)>,
    bob: Peer,
    bob_sent: Vec<(String, String)>,
    seals: Vec<(u32, OpId)>,
    /// Open ops of the current page: (op, forged).
    opens: Vec<(OpId, bool)>,
    reloads: u32,
}

impl Run {
    fn new() -> Run {
        Run {
            backend: Backend::with(&[&ada(), &bob()]),
            storage: Storage::default(),
            page: Page::new(ada(), "ada"),
            events: Vec::new(),
            bob: Peer::new(bob()),
            bob_sent: Vec::new(),
            seals: Vec::new(),
            opens: Vec::new(),
            reloads: 0,
        }
    }

    /// Checks what the page decided so far and moves its events out.
    fn collect(&mut self) {
        for (op, forged) in &self.opens {
            if !*forged {
                continue;
            }
            for event in self.page.outcome(*op) {
                if let Event::Opened { result: Ok(_), .. } = event {
                    panic!("a forged sender was opened: {event:?}");
                }
            }
        }
    }

    fn apply(&mut self, step: Step) {
        let now = self.page.now;
        match step {
            Step::Seal => {
                let n = self.seals.len();
                let op = self.page.session.seal(now, &format!("c-{n}"), "text");
                self.seals.push((self.reloads, op));
            }
            Step::Reseal(needs_new) => {
                let n = self.seals.len();
                let stale = StaleEpoch {
                    current_epoch: self.backend.epoch,
                    needs_new_epoch: needs_new,
                };
                let op = self
                    .page
                    .session
                    .reseal(now, &format!("c-{n}"), "text", stale);
                self.seals.push((self.reloads, op));
            }
            Step::Open { pick, copy, forged } => {
                self.bob.sync(&self.backend);
                if pick >= self.bob_sent.len() {
                    let client_id = format!("b-{}", self.bob_sent.len());
                    if let Some(envelope) = self.bob.seal(&client_id, "from bob") {
                        self.bob_sent.push((client_id, envelope));
                    }
                }
                let Some((client_id, envelope)) = self
                    .bob_sent
                    .get(pick % self.bob_sent.len().max(1))
                    .cloned()
                else {
                    return;
                };
                let user = if forged { "u_carol" } else { "u_bob" };
                let backend_id = format!("m_{client_id}_{copy}");
                let op = self
                    .page
                    .session
                    .open(now, message(user, &client_id, &backend_id, &envelope, now));
                self.opens.push((op, forged));
            }
            Step::BobRotates => {
                self.bob.sync(&self.backend);
                let epoch = self.bob.rotate(&mut self.backend, now);
                let data = json!({"room_id": ROOM, "epoch": epoch}).to_string();
                self.page.session.room_event(now, "epoch.created", &data);
            }
            Step::CarolJoins => {
                self.backend.add(&carol().record());
                self.page.session.room_event(
                    now,
                    "member.added",
                    &json!({"room_id": ROOM, "user_id": "u_carol"}).to_string(),
                );
            }
            Step::CarolLeaves => {
                self.backend.remove_user("u_carol");
                self.page.session.room_event(
                    now,
                    "member.removed",
                    &json!({"room_id": ROOM, "user_id": "u_carol"}).to_string(),
                );
            }
            Step::Answer { at, how } => {
                if self.page.in_flight.is_empty() {
                    return;
                }
                let request = self.page.in_flight.remove(at % self.page.in_flight.len());
                match how {
                    How::Ok | How::Twice => {
                        let (status, body) = self.backend.answer(&request);
                        self.page.session.response(now, request.id, status, &body);
                        if let How::Twice = how {
                            self.page.session.response(now, request.id, status, &body);
                        }
                    }
                    How::NetworkError => self.page.session.request_failed(
                        now,
                        request.id,
                        "network_error",
                        "offline",
                    ),
                    How::ServerError => self.page.session.response(now, request.id, 500, "{}"),
                }
            }
            Step::Reload => {
                self.page.session.close();
                self.page.pump(&mut self.storage);
                self.finish_page();
                self.reloads += 1;
                self.page = Page::new(ada(), &format!("ada reload {}", self.reloads));
                self.page.now = now;
            }
            Step::Tick(ms) => self.page.now += ms,
        }
        self.page.pump(&mut self.storage);
    }

    fn finish_page(&mut self) {
        self.collect();
        self.opens.clear();
        let page = self.reloads;
        self.events
            .extend(self.page.events.drain(..).map(|event| (page, event)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_interleaving_of_answers_ends_every_operation_and_keeps_the_rules(steps in prop::collection::vec(step(), 1..60)) {
        let mut run = Run::new();
        run.page.session.join(T0);
        run.page.pump(&mut run.storage);
        for step in steps {
            run.apply(step);
        }
        // Then every request is answered, in order, until nothing waits.
        run.page.settle(&mut run.backend, &mut run.storage);
        prop_assert!(run.page.session.is_idle());
        prop_assert!(!run.storage.locked, "the lock was released");
        run.finish_page();

        // Every seal ends with an envelope or a typed failure, exactly once.
        for (page, op) in &run.seals {
            let outcomes: Vec<&Event> = run.events.iter().filter(|(p, e)| p == page && match e {
                Event::Sealed { op: o, .. } | Event::Failed { op: o, .. } => o == op,
                _ => false,
            }).map(|(_, e)| e).collect();
            prop_assert_eq!(outcomes.len(), 1, "seal {} ended {:?}", op, outcomes);
            if let Event::Failed { failure, .. } = outcomes[0] {
                prop_assert!(!failure.code.is_empty() && !failure.message.is_empty());
            }
        }
        // A replayed id is never opened twice as new: per envelope, one backend id opens.
        let mut opened: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (_, event) in &run.events {
            if let Event::Opened { message_id, result: Ok(_), .. } = event {
                let client_id = message_id.trim_start_matches("m_").rsplit_once('_').map(|(c, _)| c.to_owned()).unwrap_or_default();
                opened.entry(client_id).or_default().insert(message_id.clone());
            }
        }
        for (client_id, ids) in &opened {
            prop_assert!(ids.len() <= 1, "{} opened under {:?}", client_id, ids);
        }
        // Every ledger entry names the one backend id that opened.
        for (key, backend_id) in &run.storage.ledger {
            prop_assert_eq!(&key.sender_user_id, "u_bob");
            if let Some(ids) = opened.get(&key.message_id) {
                prop_assert!(ids.contains(backend_id));
            }
        }
    }
}
