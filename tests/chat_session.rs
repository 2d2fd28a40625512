//! `chat::RoomSession` on fake time against an in-memory backend that
//! answers the session's requests as server/backend/API.md says: every
//! policy of the room (loading, catch-up, ordering, delivery retry, epoch
//! reseal, read debounce, typing expiry, leaving) without a browser, and a
//! property test over arbitrary interleavings of events and answers.

#![cfg(not(target_arch = "wasm32"))]

use std::collections::{BTreeMap, BTreeSet};

use domvia_realtime::json::Value;
use domvia_realtime::json_value as json;
use proptest::prelude::*;

use domvia_realtime::chat::{
    Action, ChatMessage, Opened, Request, RoomEvent, RoomSession, SessionConfig, StaleEpoch,
    TypingSettings, EPOCH_STALE_ATTEMPTS, READ_DEBOUNCE_MS, RETRY_CAP_MS, TAIL_CHECK_MS,
};

const ROOM: &str = "r1";
const ME: &str = "u_me";
const ADA: &str = "u_ada";

/// The backend's messages of one room, as `GET/POST .../messages` serve them.
#[derive(Default)]
struct Backend {
    messages: Vec<Value>,
    encrypted: bool,
}

impl Backend {
    fn store(
        &mut self,
        user_id: &str,
        client_id: &str,
        text: Option<&str>,
        ciphertext: Option<Value>,
    ) -> Value {
        if let Some(known) = self
            .messages
            .iter()
            .find(|m| m["user_id"] == user_id && m["client_id"] == client_id)
        {
            return known.clone();
        }
        let seq = self.messages.len() as u64 + 1;
        let message = json!({
            "message_id": format!("m{seq}"), "room_id": ROOM, "seq": seq, "user_id": user_id,
            "text": text, "ciphertext": ciphertext, "sent_at": 1_000 + seq, "client_id": client_id,
        });
        self.messages.push(message.clone());
        message
    }

    fn page(&self, query: &str) -> Value {
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(|v| v.parse::<u64>().unwrap())
        };
        let limit = param("limit").unwrap() as usize;
        let seq = |m: &Value| m["seq"].as_u64().unwrap();
        let (chosen, has_more): (Vec<Value>, bool) = if let Some(after) = param("after") {
            let rest: Vec<Value> = self
                .messages
                .iter()
                .filter(|m| seq(m) > after)
                .cloned()
                .collect();
            (
                rest.iter().take(limit).cloned().collect(),
                rest.len() > limit,
            )
        } else {
            let before = param("before").unwrap_or(u64::MAX);
            let rest: Vec<Value> = self
                .messages
                .iter()
                .filter(|m| seq(m) < before)
                .cloned()
                .collect();
            let start = rest.len().saturating_sub(limit);
            (rest[start..].to_vec(), start > 0)
        };
        json!({ "messages": chosen, "has_more": has_more })
    }

    /// The answer to a request, as (status, body).
    fn answer(&mut self, request: &Request) -> (u16, String) {
        let room_path = format!("/api/rooms/{ROOM}");
        let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        let body: Value = request
            .body
            .as_deref()
            .map_or(Value::Null, |b| serde_json::from_str(b).unwrap());
        let answer = match (request.method, path) {
            ("GET", "/api/session") => json!({ "user": { "id": ME } }),
            ("GET", p) if p == room_path => json!({
                "encrypted": self.encrypted, "last_read_seq": 0, "unread_count": 0,
                "latest_seq": self.messages.len(), "members": [{ "id": ADA, "last_read_seq": 0 }],
            }),
            ("GET", p) if p == format!("{room_path}/messages") => self.page(query),
            ("POST", p) if p == format!("{room_path}/messages") => {
                let client_id = body["client_id"].as_str().unwrap().to_owned();
                let text = body["text"].as_str().map(str::to_owned);
                let ciphertext = body.get("ciphertext").cloned();
                self.store(ME, &client_id, text.as_deref(), ciphertext)
            }
            ("POST", p) if p == format!("{room_path}/read") => json!({}),
            other => panic!("unexpected request {other:?}"),
        };
        (200, answer.to_string())
    }
}

/// A message list kept the way the TS layer keeps it
/// (packages/realtime-chat/src/view.ts): from `view_since` deltas alone.
#[derive(Default)]
struct ViewMirror {
    epoch: u64,
    cursor: u64,
    stored: Vec<ChatMessage>,
    pending: Vec<ChatMessage>,
    /// How many messages the deltas carried, over every refresh.
    carried: usize,
}

impl ViewMirror {
    /// Applies the session's delta since the last refresh; returns the list.
    fn refresh(&mut self, session: &RoomSession) -> Vec<ChatMessage> {
        let delta = session.view_since(self.epoch, self.cursor);
        self.epoch = delta.epoch;
        self.cursor = delta.cursor;
        if delta.full {
            self.stored.clear();
        }
        self.carried += delta.changed.len();
        for message in delta.changed {
            match self.stored.binary_search_by(|m| m.seq.cmp(&message.seq)) {
                Ok(at) => self.stored[at] = message,
                Err(at) => self.stored.insert(at, message),
            }
        }
        self.pending = delta.pending;
        self.stored.iter().chain(&self.pending).cloned().collect()
    }
}

/// A session, its backend, fake time and what the session reported.
struct Harness {
    session: RoomSession,
    backend: Backend,
    now: u64,
    timers: BTreeMap<String, u64>,
    requests: Vec<Request>,
    /// `message.created` payloads published and not yet delivered.
    events: Vec<Value>,
    seals: Vec<(String, String, Option<StaleEpoch>)>,
    opens: Vec<Value>,
    typing_sent: Vec<Value>,
    emitted: Vec<u64>,
    delivered: BTreeMap<String, u64>,
    failed: BTreeMap<String, String>,
    typing: Vec<(String, bool, bool)>,
    room_failed: Option<String>,
    ready: bool,
}

impl Harness {
    /// A plaintext or encrypted private room, without the tail check (so
    /// that [`Harness::settle`] ends).
    fn new(encrypted: bool) -> Harness {
        Harness::configured(encrypted, false, 0)
    }

    fn configured(encrypted: bool, presence: bool, tail_check_ms: u64) -> Harness {
        let session = RoomSession::new(SessionConfig {
            room_id: ROOM.into(),
            user_id: None,
            encrypted,
            presence,
            page_size: 3,
            typing: TypingSettings::default(),
            tail_check_ms,
            jitter_seed: 7,
        });
        Harness {
            session,
            backend: Backend {
                encrypted,
                ..Backend::default()
            },
            now: 10_000,
            timers: BTreeMap::new(),
            requests: Vec::new(),
            events: Vec::new(),
            seals: Vec::new(),
            opens: Vec::new(),
            typing_sent: Vec::new(),
            emitted: Vec::new(),
            delivered: BTreeMap::new(),
            failed: BTreeMap::new(),
            typing: Vec::new(),
            room_failed: None,
            ready: false,
        }
    }

    fn collect(&mut self) {
        loop {
            let actions = self.session.take_actions();
            if actions.is_empty() {
                return;
            }
            self.record(actions);
        }
    }

    fn record(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Request(request) => self.requests.push(request),
                Action::StartTimer { name, delay_ms } => {
                    let longest = if name == "tail" {
                        TAIL_CHECK_MS
                    } else {
                        RETRY_CAP_MS + 5_001
                    };
                    assert!(delay_ms <= longest, "a {name} timer of {delay_ms} ms");
                    self.timers.insert(name, self.now + delay_ms);
                }
                Action::PrepareEncryption { user_id } => {
                    assert_eq!(user_id, ME);
                    self.session.encryption_prepared();
                }
                Action::Seal {
                    client_id,
                    text,
                    stale,
                } => self.seals.push((client_id, text, stale)),
                Action::Open { message } => self
                    .opens
                    .push(serde_json::to_value(&message).unwrap().into()),
                Action::SendTyping { data } => self.typing_sent.push(data),
                Action::Emit(event) => match event {
                    RoomEvent::Ready => self.ready = true,
                    RoomEvent::Failed { code, .. } => self.room_failed = Some(code),
                    RoomEvent::Message(message) => self.emitted.push(message.seq.unwrap()),
                    RoomEvent::Delivered { client_id, message } => {
                        assert!(
                            self.delivered
                                .insert(client_id, message.seq.unwrap())
                                .is_none(),
                            "delivered twice"
                        );
                    }
                    RoomEvent::SendFailed {
                        client_id, code, ..
                    } => {
                        assert!(
                            self.failed.insert(client_id, code).is_none(),
                            "failed twice"
                        );
                    }
                    RoomEvent::Typing {
                        user_id,
                        is_typing,
                        verified,
                    } => self.typing.push((user_id, is_typing, verified)),
                    _ => {}
                },
            }
        }
    }

    fn start(&mut self) {
        self.session.start();
        self.session.subscribed(false);
        self.collect();
    }

    /// Answers the request at `index` from the backend (or with `status`).
    fn answer(&mut self, index: usize, status: Option<u16>) {
        let request = self.requests.remove(index);
        let (status, body) = match status {
            None | Some(200) => self.backend.answer(&request),
            Some(0) => (0, "connection refused".into()),
            Some(status) => (
                status,
                json!({"error": {"code": "boom", "message": "no"}}).to_string(),
            ),
        };
        self.session.response(request.id, status, &body, self.now);
        self.collect();
    }

    fn answer_all(&mut self) {
        while !self.requests.is_empty() {
            self.answer(0, None);
        }
    }

    fn deliver_event(&mut self, index: usize) {
        let event = self.events.remove(index);
        self.session.message_created(event, self.now);
        self.collect();
    }

    /// Ada's message, stored and published (not yet delivered).
    fn ada_sends(&mut self, n: usize) {
        for _ in 0..n {
            let client_id = format!("a{}", self.backend.messages.len());
            let message = self.backend.store(ADA, &client_id, Some("hi"), None);
            self.events.push(message);
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        let due: Vec<String> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= self.now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            self.timers.remove(&name);
            self.session.timer_fired(&name, self.now);
            self.collect();
        }
    }

    /// Everything answered, delivered and fired until nothing is left.
    fn settle(&mut self) {
        for _ in 0..100 {
            self.answer_all();
            while !self.events.is_empty() {
                self.deliver_event(0);
            }
            if self.requests.is_empty() && self.timers.is_empty() {
                return;
            }
            self.advance(RETRY_CAP_MS + 10_000);
        }
        panic!("the session did not settle");
    }

    fn ready(backlog: usize) -> Harness {
        let mut h = Harness::new(false);
        h.ada_sends(backlog);
        h.events.clear();
        h.start();
        h.answer_all();
        assert!(h.ready);
        h
    }

    fn gets(&self, fragment: &str) -> usize {
        self.requests
            .iter()
            .filter(|r| r.path.contains(fragment))
            .count()
    }
}

// ---- loading ----------------------------------------------------------------

#[test]
fn loads_session_room_then_the_newest_page_after_the_subscription() {
    let mut h = Harness::new(false);
    h.ada_sends(5);
    h.session.start();
    h.collect();
    let paths: Vec<&str> = h.requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/api/session", "/api/rooms/r1"]);
    h.answer_all();
    assert!(!h.ready, "no history before the subscription");
    h.session.subscribed(false);
    h.collect();
    assert_eq!(h.requests[0].path, "/api/rooms/r1/messages?limit=3");
    h.answer_all();
    assert!(h.ready);
    let state = h.session.state().unwrap();
    assert_eq!(state.messages().len(), 3);
    assert!(state.has_older());
    assert!(h.emitted.is_empty(), "history is not news");
}

#[test]
fn a_passing_load_failure_is_retried_with_backoff_and_a_refusal_fails_the_room() {
    let mut h = Harness::new(false);
    h.start();
    let room = h
        .requests
        .iter()
        .position(|r| r.path == "/api/rooms/r1")
        .unwrap();
    h.answer(room, Some(503));
    let at = h.timers["load"];
    assert!(
        at > h.now && at <= h.now + 500,
        "first retry within the base"
    );
    h.advance(at - h.now);
    assert_eq!(h.gets("/api/rooms/r1"), 1, "the room is asked again");
    h.answer_all();
    assert!(h.ready);

    let mut h = Harness::new(false);
    h.start();
    let room = h
        .requests
        .iter()
        .position(|r| r.path == "/api/rooms/r1")
        .unwrap();
    h.answer(room, Some(403));
    assert_eq!(h.room_failed.as_deref(), Some("room_access_denied"));
}

#[test]
fn an_encrypted_room_opened_as_plaintext_fails_with_the_mismatch_code() {
    let mut h = Harness::new(false);
    h.backend.encrypted = true;
    h.start();
    h.answer_all();
    assert_eq!(h.room_failed.as_deref(), Some("room_encryption_mismatch"));
}

// ---- ordering -----------------------------------------------------------------

#[test]
fn on_message_follows_seq_when_events_arrive_out_of_order() {
    // The order observed with 40 concurrent sends: 1,2,3,5,4,...
    let mut h = Harness::ready(0);
    h.ada_sends(6);
    for index in [0, 0, 0, 1, 0, 0] {
        h.deliver_event(index);
    }
    assert_eq!(h.emitted, [1, 2, 3, 4, 5, 6]);
}

#[test]
fn a_message_past_a_hole_waits_for_one_catch_up() {
    let mut h = Harness::ready(0);
    h.ada_sends(3);
    h.events.remove(0); // seq 1's event is lost
    h.deliver_event(1); // seq 3 first
    assert!(h.emitted.is_empty(), "3 waits for 1 and 2");
    assert_eq!(h.gets("after=0"), 1, "one catch-up from the hole");
    h.deliver_event(0); // seq 2 while the catch-up is in flight
    assert!(h.emitted.is_empty());
    h.answer_all();
    assert_eq!(h.emitted, [1, 2, 3]);
    assert!(h.requests.is_empty(), "no second round trip");
}

#[test]
fn duplicates_from_events_pages_and_responses_are_reported_once() {
    let mut h = Harness::ready(2);
    h.ada_sends(2);
    let copies = h.events.clone();
    h.events.extend(copies);
    h.settle();
    h.session.reconnected();
    h.collect();
    h.settle();
    assert_eq!(h.emitted, [3, 4]);
}

// ---- sending ------------------------------------------------------------------

#[test]
fn a_send_is_retried_with_the_same_client_id_until_stored() {
    let mut h = Harness::ready(0);
    h.session.send("c-1", "hello", h.now).unwrap();
    h.collect();
    h.answer(0, Some(0));
    h.answer_all();
    assert!(h.timers.contains_key("send:c-1"));
    h.advance(RETRY_CAP_MS);
    assert_eq!(h.requests.len(), 1);
    assert!(h.requests[0]
        .body
        .as_deref()
        .unwrap()
        .contains("\"client_id\":\"c-1\""));
    h.answer(0, Some(503));
    h.advance(RETRY_CAP_MS);
    h.answer_all();
    assert_eq!(h.delivered.get("c-1"), Some(&1));
    assert_eq!(h.emitted, [1], "my stored message is news too");
    assert_eq!(h.backend.messages.len(), 1, "stored once");
}

#[test]
fn a_refused_send_fails_and_retry_sends_it_again() {
    let mut h = Harness::ready(0);
    h.session.send("c-1", "hello", h.now).unwrap();
    h.collect();
    h.answer(0, Some(422));
    assert_eq!(h.failed.get("c-1").map(String::as_str), Some("boom"));
    let shown = h.session.messages();
    assert_eq!(shown[0].status.as_str(), "failed");
    h.failed.clear();
    h.session.retry("c-1").unwrap();
    h.collect();
    h.answer_all();
    assert_eq!(h.delivered.get("c-1"), Some(&1));
    assert!(
        h.session.retry("c-1").is_err(),
        "a sent message is not retried"
    );
}

#[test]
fn bad_text_fails_before_any_request() {
    let mut h = Harness::ready(0);
    let error = h.session.send("c-1", "", h.now).unwrap_err();
    assert_eq!(error.code(), "invalid_text");
    h.collect();
    assert!(h.requests.is_empty());
}

#[test]
fn an_epoch_stale_send_is_resealed_then_fails_after_the_limit() {
    let mut h = Harness::new(true);
    h.start();
    h.answer_all();
    assert!(h.ready);
    h.session.send("c-1", "secret", h.now).unwrap();
    h.collect();
    for refusal in 1..=EPOCH_STALE_ATTEMPTS {
        let (client_id, text, stale) = h.seals.pop().unwrap();
        assert_eq!((client_id.as_str(), text.as_str()), ("c-1", "secret"));
        if refusal == 1 {
            assert_eq!(stale, None);
        } else {
            assert_eq!(
                stale,
                Some(StaleEpoch {
                    current_epoch: 4,
                    needs_new_epoch: false
                })
            );
        }
        h.session.sealed("c-1", r#"{"v":1,"epoch":3}"#);
        h.collect();
        let request = h.requests.remove(0);
        assert!(request
            .body
            .unwrap()
            .contains(r#""ciphertext":{"epoch":3,"v":1}"#));
        let refusal_body = json!({"error": {"code": "epoch_stale", "message": "stale", "current_epoch": 4, "needs_new_epoch": false}});
        h.session
            .response(request.id, 409, &refusal_body.to_string(), h.now);
        h.collect();
    }
    assert_eq!(h.failed.get("c-1").map(String::as_str), Some("epoch_stale"));
    assert!(h.seals.is_empty());
}

#[test]
fn encrypted_messages_are_shown_and_reported_once_opened() {
    let mut h = Harness::new(true);
    h.backend.store(ADA, "a1", None, Some(json!({"v": 1})));
    h.backend.store(ADA, "a2", Some("plain"), None);
    h.start();
    h.answer_all();
    assert!(!h.ready, "the page waits for its opening");
    assert_eq!(h.opens.len(), 1, "only the encrypted one is opened");
    h.session
        .opened("m1", Opened::Text("decrypted".into()), h.now);
    h.collect();
    assert!(h.ready);
    let shown = h.session.messages();
    assert_eq!(shown[0].text.as_deref(), Some("decrypted"));
    assert_eq!(
        shown[1].text, None,
        "plaintext in an encrypted room shows nothing"
    );
    assert_eq!(
        h.session.decryption_error("m2").unwrap().0,
        "e2ee_not_encrypted"
    );

    let live = h.backend.store(ADA, "a3", None, Some(json!({"v": 1})));
    h.session.message_created(live, h.now);
    h.collect();
    assert!(h.emitted.is_empty());
    h.session.opened(
        "m3",
        Opened::Failed {
            code: "network_error".into(),
            message: "offline".into(),
        },
        h.now,
    );
    h.collect();
    assert_eq!(h.emitted, [3]);
    h.opens.clear();
    h.session.reconnected();
    h.collect();
    assert_eq!(
        h.opens.len(),
        1,
        "an opening that failed offline is tried again"
    );
    let mut view = ViewMirror::default();
    assert_eq!(view.refresh(&h.session), h.session.messages());
    let carried = view.carried;
    h.session.opened("m3", Opened::Text("late".into()), h.now);
    let after = view.refresh(&h.session);
    assert_eq!(after, h.session.messages());
    assert_eq!(after[2].text.as_deref(), Some("late"));
    assert_eq!(
        view.carried,
        carried + 1,
        "only the reopened message is read again"
    );
    let actions = h.session.take_actions();
    assert!(
        actions.contains(&Action::Emit(RoomEvent::Changed)),
        "the view shows it"
    );
    assert_eq!(h.session.messages()[2].text.as_deref(), Some("late"));
    assert_eq!(h.emitted, [3], "reported once");
}

// ---- reads, typing, leaving ------------------------------------------------------

#[test]
fn reads_are_posted_once_after_the_debounce_and_retried() {
    let mut h = Harness::ready(3);
    h.session.mark_read("m2");
    h.session.mark_read("m3");
    h.collect();
    assert!(h.requests.is_empty());
    h.advance(READ_DEBOUNCE_MS);
    assert_eq!(h.requests.len(), 1);
    assert_eq!(h.requests[0].body.as_deref(), Some(r#"{"seq":3}"#));
    h.answer(0, Some(502));
    h.advance(RETRY_CAP_MS);
    assert_eq!(h.requests.len(), 1, "retried");
    h.answer_all();
    h.advance(RETRY_CAP_MS);
    assert!(h.requests.is_empty());
    assert_eq!(h.session.state().unwrap().unread_count(), 0);
}

#[test]
fn typing_starts_and_expires_on_its_timer() {
    let mut h = Harness::ready(0);
    h.session
        .client_typing(&json!({"user_id": ADA, "is_typing": true}), None, h.now);
    h.session
        .client_typing(&json!({"user_id": ME, "is_typing": true}), None, h.now);
    h.collect();
    // A private room's signal names its sender: reported, but unverified.
    assert_eq!(h.typing, [(ADA.to_owned(), true, false)]);
    h.advance(4_000);
    assert_eq!(h.typing.len(), 1);
    h.advance(1_001);
    assert_eq!(
        h.typing,
        [
            (ADA.to_owned(), true, false),
            (ADA.to_owned(), false, false)
        ]
    );

    h.session.typing_input(None, h.now);
    h.session.typing_input(None, h.now + 10);
    h.collect();
    assert_eq!(
        h.typing_sent,
        [json!({"user_id": ME, "is_typing": true})],
        "throttled"
    );
}

/// The TS layer keeps `typingUserIds` from the typing events alone (reading the
/// whole list out of the wasm per event cost ~45 µs of string decoding per
/// event in a 100-member room): a stop removes its user, a start appends it.
/// That must rebuild `typing_users()` exactly, order included, after any mix
/// of signals, repeats, expiries and messages that end someone's typing.
#[test]
fn the_typing_events_alone_rebuild_the_typing_list_in_order() {
    let mut h = Harness::ready(0);
    let users = [ADA, "u_bob", "u_cy", "u_dee", ME];
    let mut mirror: Vec<String> = Vec::new();
    let mut seen = 0;
    // A fixed linear congruential sequence: the same run every time.
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = |bound: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % bound
    };
    for step in 0..2_000 {
        match next(10) {
            0..=5 => {
                let user = users[next(users.len() as u64) as usize];
                let is_typing = next(3) != 0;
                h.session.client_typing(
                    &json!({"user_id": user, "is_typing": is_typing}),
                    None,
                    h.now,
                );
                h.collect();
            }
            6 | 7 => h.advance(next(3_000)),
            8 => {
                // Ada's message ends her typing.
                h.ada_sends(1);
                h.deliver_event(0);
            }
            _ => h.advance(5_001),
        }
        for (user_id, is_typing, _) in &h.typing[seen..] {
            if *is_typing {
                assert!(
                    !mirror.contains(user_id),
                    "step {step}: {user_id} started twice"
                );
                mirror.push(user_id.clone());
            } else {
                let before = mirror.len();
                mirror.retain(|id| id != user_id);
                assert_eq!(
                    mirror.len() + 1,
                    before,
                    "step {step}: {user_id} stopped while not typing"
                );
            }
        }
        seen = h.typing.len();
        assert_eq!(mirror, h.session.typing_users(), "step {step}");
    }
    assert!(seen > 500, "the sequence exercised the list: {seen} events");
}

/// A typing signal is its own event and nothing else: a `Changed` per signal
/// had the app re-read the whole view (in a 100-member room, a 5 KB read
/// positions JSON per animation frame: bench/chat.mjs).
#[test]
fn typing_changes_are_typing_events_only() {
    let mut h = Harness::ready(1);
    h.session
        .client_typing(&json!({"user_id": ADA, "is_typing": true}), None, h.now);
    let actions = h.session.take_actions();
    assert!(actions.contains(&Action::Emit(RoomEvent::Typing {
        user_id: ADA.to_owned(),
        is_typing: true,
        verified: false,
    })));
    assert!(
        !actions.contains(&Action::Emit(RoomEvent::Changed)),
        "{actions:?}"
    );
}

#[test]
fn a_broker_stamp_wins_and_an_unstamped_presence_signal_is_unverified() {
    let mut h = Harness::configured(false, true, 0);
    h.session.start();
    h.session.subscribed(false);
    h.session.subscribed(true);
    h.collect();
    h.answer_all();
    assert!(h.ready);
    // The broker stamped the sender: the payload's claim does not count.
    h.session.client_typing(
        &json!({"user_id": "u_someone_else", "is_typing": true}),
        Some(ADA),
        h.now,
    );
    h.collect();
    assert_eq!(h.typing, [(ADA.to_owned(), true, true)]);
    // A broker that does not stamp presence client events (sockudo 5.2):
    // typing still works, reported as unverified.
    h.session
        .client_typing(&json!({"user_id": "u_bob", "is_typing": true}), None, h.now);
    h.collect();
    assert_eq!(h.typing[1], ("u_bob".to_owned(), true, false));
    // Nothing names a sender: dropped.
    h.session
        .client_typing(&json!({"is_typing": true}), None, h.now);
    h.collect();
    assert_eq!(h.typing.len(), 2);
    // My own signal on a presence room still names me, for such brokers.
    h.session.typing_input(Some("u_not_me"), h.now);
    h.collect();
    assert_eq!(h.typing_sent, [json!({"user_id": ME, "is_typing": true})]);
}

#[test]
fn a_quiet_room_catches_up_on_a_missed_tail_within_the_tail_check_period() {
    let mut h = Harness::configured(false, false, TAIL_CHECK_MS);
    h.start();
    h.answer_all();
    assert!(h.ready);
    // A message the broker never delivered: nothing reveals the gap.
    h.ada_sends(1);
    h.events.clear();
    h.advance(TAIL_CHECK_MS - 1);
    assert_eq!(h.gets("after="), 0, "no poll while within the period");
    h.advance(1);
    assert_eq!(h.gets("after=0"), 1);
    h.answer_all();
    assert_eq!(h.emitted, [1]);

    // Messages heard push the next check back: an active room never polls.
    for _ in 0..5 {
        h.advance(TAIL_CHECK_MS / 2);
        h.ada_sends(1);
        h.deliver_event(0);
    }
    assert_eq!(h.gets("after="), 0);
    assert_eq!(h.emitted, [1, 2, 3, 4, 5, 6]);
    h.advance(TAIL_CHECK_MS);
    assert_eq!(h.gets("after=6"), 1, "quiet again for a whole period");
}

#[test]
fn a_receipt_naming_a_later_message_fetches_it() {
    let mut h = Harness::ready(0);
    h.ada_sends(2);
    h.events.clear();
    // A receipt without latest_seq (an older backend) changes nothing.
    h.session
        .receipt(json!({"user_id": ADA, "seq": 0, "message_id": ""}), h.now);
    h.collect();
    assert_eq!(h.gets("after="), 0);
    h.session.receipt(
        json!({"user_id": ADA, "seq": 2, "message_id": "m2", "latest_seq": 2}),
        h.now,
    );
    h.collect();
    assert_eq!(h.gets("after=0"), 1);
    h.answer_all();
    assert_eq!(h.emitted, [1, 2]);
}

#[test]
fn leaving_fails_the_sends_on_their_way_and_posts_the_read_position() {
    let mut h = Harness::ready(2);
    h.session.mark_read("m2");
    h.session.send("c-1", "bye", h.now).unwrap();
    h.collect();
    h.requests.clear();
    h.session.leave();
    h.collect();
    assert_eq!(h.failed.get("c-1").map(String::as_str), Some("room_left"));
    assert_eq!(h.requests.len(), 1);
    assert!(h.requests[0].keepalive);
}

// ---- every interleaving ---------------------------------------------------------

#[derive(Clone, Debug)]
enum Step {
    AdaSends(usize),
    ISend,
    Deliver(usize),
    Duplicate(usize),
    Drop(usize),
    Answer(usize, u16),
    Reconnect,
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1..4usize).prop_map(Step::AdaSends),
        Just(Step::ISend),
        (0..16usize).prop_map(Step::Deliver),
        (0..16usize).prop_map(Step::Duplicate),
        (0..16usize).prop_map(Step::Drop),
        (
            (0..8usize),
            prop_oneof![Just(200u16), Just(200), Just(0), Just(503), Just(429)]
        )
            .prop_map(|(i, s)| Step::Answer(i, s)),
        Just(Step::Reconnect),
        (0..40_000u64).prop_map(Step::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever the order of events and answers (reordered, duplicated,
    /// dropped, failing, reconnects), each stored message is reported once,
    /// in seq order, and every send ends delivered.
    #[test]
    fn every_message_once_in_seq_order_and_every_send_delivered(
        backlog in 0..5usize,
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let mut h = Harness::ready(backlog);
        let mut sends = BTreeSet::new();
        // The view as the TS layer keeps it, refreshed after every few steps.
        let mut view = ViewMirror::default();
        for (index, step) in steps.into_iter().enumerate() {
            match step {
                Step::AdaSends(n) => h.ada_sends(n),
                Step::ISend => {
                    let client_id = format!("c-{}", sends.len());
                    h.session.send(&client_id, "mine", h.now).unwrap();
                    h.collect();
                    sends.insert(client_id);
                }
                Step::Deliver(i) if !h.events.is_empty() => {
                    let i = i % h.events.len();
                    h.deliver_event(i);
                }
                Step::Duplicate(i) if !h.events.is_empty() => {
                    let copy = h.events[i % h.events.len()].clone();
                    h.events.push(copy);
                }
                Step::Drop(i) if !h.events.is_empty() => {
                    let i = i % h.events.len();
                    h.events.remove(i);
                }
                Step::Answer(i, status) if !h.requests.is_empty() => {
                    let i = i % h.requests.len();
                    h.answer(i, Some(status));
                }
                Step::Reconnect => {
                    h.session.reconnected();
                    h.collect();
                }
                Step::Advance(ms) => h.advance(ms),
                _ => {}
            }
            prop_assert!(h.emitted.windows(2).all(|w| w[0] < w[1]), "out of order: {:?}", h.emitted);
            if index % 3 == 0 {
                prop_assert_eq!(view.refresh(&h.session), h.session.messages());
            }
        }
        // Then the network heals; a reconnect catches up what was dropped.
        h.settle();
        h.session.reconnected();
        h.collect();
        h.settle();
        prop_assert!(h.emitted.windows(2).all(|w| w[0] < w[1]), "out of order: {:?}", h.emitted);
        let total = h.backend.messages.len() as u64;
        let expected: Vec<u64> = (backlog as u64 + 1..=total).collect();
        prop_assert_eq!(&h.emitted, &expected);
        let delivered: BTreeSet<String> = h.delivered.keys().cloned().collect();
        prop_assert_eq!(delivered, sends);
        prop_assert!(h.failed.is_empty());
        let shown = h.session.messages();
        prop_assert_eq!(&view.refresh(&h.session), &shown);
        // Each stored message was carried once, not once per refresh.
        let stored = shown.iter().filter(|m| m.seq.is_some()).count();
        prop_assert_eq!(view.carried, stored);
        // The history page holds the newest 3 of the backlog.
        prop_assert_eq!(shown.len() as u64, total - backlog.saturating_sub(3) as u64);
        prop_assert!(shown.iter().all(|m| m.status.as_str() == "sent"));
    }
}

#[test]
fn being_removed_fails_the_room_at_once_and_others_leaving_does_not() {
    let mut h = Harness::ready(2);
    h.session
        .member_removed(&json!({ "room_id": ROOM, "user_id": "u_carol" }));
    h.collect();
    assert_eq!(h.room_failed, None);
    let me = h.session.my_user_id().unwrap().to_owned();
    h.session
        .member_removed(&json!({ "room_id": ROOM, "user_id": me }));
    h.collect();
    assert_eq!(h.room_failed.as_deref(), Some("room_access_denied"));

    // A send or retry after that answers with the room's failure, not a vaguer code.
    h.session
        .send("c-after-removal", "still here?", h.now)
        .unwrap();
    h.collect();
    h.session.retry("c-retried").unwrap();
    h.collect();
    for client_id in ["c-after-removal", "c-retried"] {
        assert_eq!(
            h.failed.get(client_id).map(String::as_str),
            Some("room_access_denied")
        );
    }
}
