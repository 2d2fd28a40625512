//! [`RoomSession`]: one chat room's whole policy as a sans-IO machine.
//!
//! [`RoomState`] answers questions (order, dedup, cursors, delivery states);
//! the session decides what to do about them: which request to make, when to
//! retry and how long to wait, which message `onMessage` reports next, when
//! the read position is posted, when a typing indicator expires. It does no
//! I/O and reads no clock, on the pattern of the connection machine and of
//! matrix-rust-sdk-crypto-wasm's `outgoingRequests` / `markRequestAsSent`:
//!
//! - inputs are method calls, each with `now_ms` where time matters: broker
//!   events ([`RoomSession::message_created`], [`RoomSession::receipt`],
//!   [`RoomSession::client_typing`]), HTTP answers ([`RoomSession::response`]
//!   with the request's id, its status and its body text), timer firings
//!   ([`RoomSession::timer_fired`]), the E2EE layer's answers
//!   ([`RoomSession::sealed`], [`RoomSession::opened`]) and the app's calls;
//! - outputs are [`Action`]s, drained with [`RoomSession::take_actions`]:
//!   a [`Request`] to make, a timer to (re)start, an envelope to seal or a
//!   message to open, a typing signal to trigger, and [`RoomEvent`]s to report.
//!
//! # Guarantees (tested natively on fake time, with property tests)
//!
//! - `onMessage` ([`RoomEvent::Message`]) reports live messages strictly in
//!   seq order, each once: a message that arrives ahead of a hole is held
//!   until the hole fills (from a later event or the catch-up it starts).
//!   Only a catch-up that completes without the missing seq (the backend has
//!   none) releases the held messages past the hole.
//! - Every send ends [`RoomEvent::Delivered`] or [`RoomEvent::SendFailed`]:
//!   passing failures (no answer, 5xx, 429) are retried with the same client
//!   id after a full-jitter backoff (the connection's
//!   [`backoff`](crate::connection::backoff)); a 4xx fails it; an encrypted
//!   send refused with `409 epoch_stale` is sealed anew, at most
//!   [`EPOCH_STALE_ATTEMPTS`] times.
//! - Loading, catch-up and the read position are retried the same way.

use crate::vec_map::{VecMap, VecSet};

use crate::json::{Map, Value};

use super::{ChatMessage, DeliveryStatus, RoomState, StoredMessage, TypingSettings};
use crate::connection::backoff::{self, Jitter};
use crate::protocol::hex::percent_encode;
use crate::protocol::Error;

/// The first retry waits up to this long (full jitter), then twice as long each time.
pub const RETRY_BASE_MS: u64 = 500;
/// No retry waits longer than this.
pub const RETRY_CAP_MS: u64 = 30_000;
/// Messages per catch-up page (`GET .../messages?after=`).
pub const CATCH_UP_PAGE_SIZE: u32 = 100;
/// The read position is posted this long after the last `mark_read`.
pub const READ_DEBOUNCE_MS: u64 = 300;
/// Sends of one message refused with `epoch_stale` before it fails with that code.
pub const EPOCH_STALE_ATTEMPTS: u32 = 3;
/// A room that heard no message for this long asks the backend whether it
/// missed one (the default of [`SessionConfig::tail_check_ms`]).
pub const TAIL_CHECK_MS: u64 = 60_000;

/// How a session is set up.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub room_id: String,
    /// My user id when the app knows it; otherwise `GET /api/session` asks.
    pub user_id: Option<String>,
    /// An end-to-end encrypted room: messages are opened before they are
    /// shown, sends are sealed before they are posted.
    pub encrypted: bool,
    /// Typing goes over the presence channel, where the broker stamps the sender.
    pub presence: bool,
    /// Messages per history page.
    pub page_size: u32,
    pub typing: TypingSettings,
    /// After this long without hearing a message, catch up anyway (0: never).
    /// A broker may drop an event without dropping the connection (a cluster
    /// node's pub/sub hiccup), and no later event would reveal the gap in a
    /// quiet room; this bounds how long such a message stays unseen.
    pub tail_check_ms: u64,
    /// Seeds the retry jitter (the boundary draws it from `crypto.getRandomValues`).
    pub jitter_seed: u64,
}

/// An HTTP request to the backend's API (server/backend/API.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Answer it with [`RoomSession::response`] and this id.
    pub id: u64,
    /// Names the request in errors: "unable to {operation}; ...".
    pub operation: &'static str,
    /// `GET` or `POST`.
    pub method: &'static str,
    pub path: String,
    /// JSON text, for a POST.
    pub body: Option<String>,
    /// Send the connection's socket id (`X-Socket-Id`), so the broker does
    /// not echo the resulting event back to this connection.
    pub with_socket_id: bool,
    /// Outlives the page (the last read position, posted while leaving).
    pub keepalive: bool,
}

/// What an `epoch_stale` refusal said, for the reseal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleEpoch {
    pub current_epoch: u64,
    pub needs_new_epoch: bool,
}

/// How an encrypted message opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened {
    Text(String),
    Failed { code: String, message: String },
}

/// What the session reports to the app.
#[derive(Clone, Debug, PartialEq)]
pub enum RoomEvent {
    /// The history is loaded: the room is usable.
    Ready,
    /// The room cannot be used (refused, or a request failed for good).
    Failed {
        code: String,
        message: String,
    },
    /// The view changed (messages, unread count, read positions). Typing
    /// changes are reported by `Typing` events alone.
    Changed,
    /// A live message, in seq order, each once (`onMessage`).
    Message(ChatMessage),
    Typing {
        user_id: String,
        is_typing: bool,
        /// The broker stamped the sender (a presence channel on a broker
        /// that stamps client events). False: the sender named itself in the
        /// payload, and any member of the room could have sent it.
        verified: bool,
    },
    /// Another member's read position moved.
    Receipt {
        user_id: String,
        message_id: String,
        seq: u64,
    },
    /// A send is stored; `message` is as the view shows it.
    Delivered {
        client_id: String,
        message: ChatMessage,
    },
    SendFailed {
        client_id: String,
        code: String,
        message: String,
    },
    OlderLoaded {
        added: usize,
        has_more: bool,
    },
    OlderFailed {
        code: String,
        message: String,
    },
    /// Something arrived that the room ignored (malformed); worth a warning.
    Ignored {
        message: String,
    },
}

/// What the caller does next. Timers are named: starting one replaces the
/// running timer of that name.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Request(Request),
    StartTimer {
        name: String,
        delay_ms: u64,
    },
    /// Load this device's E2EE keys for the room (encrypted rooms), then call
    /// [`RoomSession::encryption_prepared`] or [`RoomSession::encryption_failed`].
    PrepareEncryption {
        user_id: String,
    },
    /// Seal `text` for this send (sealed anew in a newer epoch when `stale`),
    /// then call [`RoomSession::sealed`] or [`RoomSession::seal_failed`].
    Seal {
        client_id: String,
        text: String,
        stale: Option<StaleEpoch>,
    },
    /// Open this message, then call [`RoomSession::opened`].
    Open {
        message: StoredMessage,
    },
    /// Trigger `client-typing` with this data (best effort).
    SendTyping {
        data: Value,
    },
    Emit(RoomEvent),
}

/// What a request in flight was for.
#[derive(Clone, Debug)]
enum Purpose {
    Session,
    Room,
    LatestPage,
    OlderPage,
    CatchUp { cursor: u64 },
    Send { client_id: String },
    Read { seq: u64 },
}

/// A history page or live message waiting for its encrypted messages to open.
#[derive(Clone, Debug)]
struct Batch {
    kind: BatchKind,
    messages: Vec<StoredMessage>,
    /// Message ids still being opened.
    waiting: VecSet<String>,
}

#[derive(Clone, Debug)]
enum BatchKind {
    Latest { has_more: bool },
    Older { has_more: bool },
    CatchUp { has_more: bool, cursor: u64 },
    Created,
}

#[derive(Clone, Debug, Default)]
struct Loading {
    user_id: Option<String>,
    room: Option<Value>,
    private_subscribed: bool,
    presence_subscribed: bool,
    prepared: bool,
    preparing: bool,
    page_requested: bool,
    /// The connection came back while loading: catch up once ready.
    reconnected: bool,
    /// Live events that arrived before the history: applied after it.
    buffered: Vec<Live>,
}

#[derive(Clone, Debug)]
enum Live {
    Created(Value),
    Receipt(Value),
    Typing {
        user_id: String,
        is_typing: bool,
        verified: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Loading,
    Ready,
    /// Holds the failure, which later sends report.
    Failed {
        code: String,
        message: String,
    },
    Left,
}

/// One send on its way to the backend.
#[derive(Clone, Debug, Default)]
struct Delivery {
    attempt: u32,
    stale_refusals: u32,
    in_flight: bool,
    sealing: bool,
    /// The sealed envelope (JSON text): sealed once, the same on every retry.
    envelope: Option<String>,
    /// Set after an `epoch_stale` refusal: the next seal is a reseal.
    stale: Option<StaleEpoch>,
}

#[derive(Clone, Debug, Default)]
struct CatchUp {
    /// A page is requested or waiting to open.
    busy: bool,
    /// Asked for again while busy: run once more after this one.
    again: bool,
    attempt: u32,
}

#[derive(Clone, Debug, Default)]
struct ReadFlush {
    /// The highest position not yet posted.
    pending: Option<u64>,
    in_flight: bool,
    attempt: u32,
}

/// One chat room's policy. See the [module documentation](self).
pub struct RoomSession {
    config: SessionConfig,
    phase: Phase,
    loading: Loading,
    load_attempt: u32,
    state: Option<RoomState>,
    jitter: Jitter,
    next_request_id: u64,
    in_flight: VecMap<u64, Purpose>,
    actions: Vec<Action>,
    /// The highest seq `onMessage` reported (or the history's newest): the
    /// next one to report is this + 1.
    emitted_through: u64,
    batches: Vec<Batch>,
    opening: VecSet<String>,
    opened: VecMap<String, Opened>,
    deliveries: VecMap<String, Delivery>,
    catch_up: CatchUp,
    older_busy: bool,
    read: ReadFlush,
    /// Who the app was last told is typing, in order.
    typing_reported: Vec<String>,
    /// The deadline the running typing timer fires at.
    typing_timer_at: Option<u64>,
    /// Typists whose last signal the broker did not stamp.
    typing_unverified: VecSet<String>,
    /// When the room last heard a message (live or caught up), for the tail check.
    heard_at: u64,
    /// Counts the room states this session made (one, unless the history is
    /// loaded again): a view cursor of another state is read from scratch.
    view_epoch: u64,
}

/// What a view must change to show [`RoomSession::messages`] again, since the
/// cursor it read last: see [`RoomSession::view_since`].
#[derive(Clone, Debug, PartialEq)]
pub struct ViewDelta {
    /// Pass these two to the next call.
    pub epoch: u64,
    pub cursor: u64,
    /// The view must drop its stored messages first: `changed` is all of them.
    pub full: bool,
    /// Stored messages new or shown differently since the cursor, ascending
    /// by seq, each once. Each goes where its seq puts it among the stored
    /// ones, replacing one with the same seq.
    pub changed: Vec<ChatMessage>,
    /// My pending sends, all of them, in send order: they follow the stored ones.
    pub pending: Vec<ChatMessage>,
}

/// Brings `reported` (who is typing, as last reported) to `now` (as the room
/// has it), and returns who stopped and who started. Both lists are in the
/// order the typists started, and between two reports typists only leave
/// (wherever they are) or join at the end, so one pass in step finds every
/// change: an id that does not match the next one of `now` stopped, and what
/// `now` has past the last match started. (Were that order ever broken, a
/// typist would be reported stopped and started again, and the events would
/// still rebuild `now` exactly.) Comparing every id with every other was
/// quadratic, per typing signal: a busy 100-member room's largest wasm cost.
fn follow_typing(reported: &mut Vec<String>, now: &[&str]) -> (Vec<String>, Vec<String>) {
    let mut stopped = Vec::new();
    let mut kept = 0;
    reported.retain(|id| {
        let keep = now.get(kept) == Some(&id.as_str());
        if keep {
            kept += 1;
        } else {
            stopped.push(id.clone());
        }
        keep
    });
    let started: Vec<String> = now[kept..].iter().map(|id| (*id).to_owned()).collect();
    reported.extend(started.iter().cloned());
    (stopped, started)
}

fn delay_until(deadline: u64, now_ms: u64) -> u64 {
    deadline.saturating_sub(now_ms) + 1
}

impl RoomSession {
    /// A session; call [`start`](Self::start) to begin loading.
    pub fn new(config: SessionConfig) -> RoomSession {
        let jitter = Jitter::new(config.jitter_seed);
        RoomSession {
            loading: Loading {
                user_id: config.user_id.clone(),
                prepared: !config.encrypted,
                ..Loading::default()
            },
            config,
            phase: Phase::Loading,
            load_attempt: 0,
            state: None,
            jitter,
            next_request_id: 1,
            in_flight: VecMap::new(),
            actions: Vec::new(),
            emitted_through: 0,
            batches: Vec::new(),
            opening: VecSet::new(),
            opened: VecMap::new(),
            deliveries: VecMap::new(),
            catch_up: CatchUp::default(),
            older_busy: false,
            read: ReadFlush::default(),
            typing_reported: Vec::new(),
            typing_timer_at: None,
            typing_unverified: VecSet::new(),
            heard_at: 0,
            view_epoch: 0,
        }
    }

    /// Whether [`take_actions`](Self::take_actions) has anything to hand out.
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// What to do next, in order; empties the list.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// My user id, once known.
    pub fn my_user_id(&self) -> Option<&str> {
        self.loading.user_id.as_deref()
    }

    /// The room's state, once the history loaded.
    pub fn state(&self) -> Option<&RoomState> {
        self.state.as_ref()
    }

    fn path(&self) -> String {
        format!(
            "/api/rooms/{}",
            percent_encode(&self.config.room_id, ENCODE_URI_COMPONENT_KEEPS)
        )
    }

    fn emit(&mut self, event: RoomEvent) {
        self.actions.push(Action::Emit(event));
    }

    fn request(
        &mut self,
        purpose: Purpose,
        operation: &'static str,
        method: &'static str,
        path: String,
        body: Option<Value>,
    ) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        let mutating = method == "POST";
        self.in_flight.insert(id, purpose);
        self.actions.push(Action::Request(Request {
            id,
            operation,
            method,
            path,
            body: body.map(|b| b.to_string()),
            with_socket_id: mutating,
            keepalive: false,
        }));
        id
    }

    fn backoff_ms(&mut self, attempt: u32) -> u64 {
        let bound = backoff::bound(RETRY_BASE_MS, RETRY_CAP_MS, attempt.saturating_sub(1));
        // Full jitter over the upper half: a retry never comes back at once,
        // and a burst of failures still spreads out.
        bound / 2 + self.jitter.up_to(bound - bound / 2)
    }

    fn start_timer(&mut self, name: impl Into<String>, delay_ms: u64) {
        self.actions.push(Action::StartTimer {
            name: name.into(),
            delay_ms,
        });
    }

    fn fail(&mut self, code: &str, message: String) {
        if matches!(self.phase, Phase::Failed { .. } | Phase::Left) {
            return;
        }
        self.phase = Phase::Failed {
            code: code.to_owned(),
            message: message.clone(),
        };
        self.emit(RoomEvent::Failed {
            code: code.to_owned(),
            message,
        });
    }

    // ---- loading ---------------------------------------------------------

    /// Begins loading: the session and the room (the channels are subscribed
    /// by the caller, who reports it with [`subscribed`](Self::subscribed)).
    pub fn start(&mut self) {
        self.load_step();
    }

    /// A channel of the room is subscribed (`presence` for the presence
    /// channel). A later subscription of the private channel is a
    /// resubscription after a reconnect: the session catches up.
    pub fn subscribed(&mut self, presence: bool) {
        match self.phase {
            Phase::Loading => {
                if presence {
                    self.loading.presence_subscribed = true;
                } else {
                    self.loading.private_subscribed = true;
                }
                self.load_step();
            }
            Phase::Ready if !presence => self.start_catch_up(),
            _ => {}
        }
    }

    /// The broker refused a subscription: the room is not ours to read.
    pub fn subscription_refused(&mut self, channel: &str, status: Option<u16>) {
        let status = status.map_or(String::new(), |s| format!(" ({s})"));
        self.fail(
            "room_access_denied",
            format!("unable to join the room; the subscription to {channel} was refused{status}"),
        );
    }

    /// Issues whichever loading requests are due and not yet in flight.
    fn load_step(&mut self) {
        if self.phase != Phase::Loading {
            return;
        }
        let busy = |session: &RoomSession, check: fn(&Purpose) -> bool| {
            session.in_flight.values().any(check)
        };
        if self.loading.user_id.is_none() && !busy(self, |p| matches!(p, Purpose::Session)) {
            self.request(
                Purpose::Session,
                "read the session",
                "GET",
                "/api/session".into(),
                None,
            );
        }
        if self.loading.room.is_none() && !busy(self, |p| matches!(p, Purpose::Room)) {
            let path = self.path();
            self.request(Purpose::Room, "open the room", "GET", path, None);
        }
        let subscribed = self.loading.private_subscribed
            && (!self.config.presence || self.loading.presence_subscribed);
        let Some(user_id) = self.loading.user_id.clone() else {
            return;
        };
        if self.loading.room.is_none() || !subscribed {
            return;
        }
        if !self.loading.prepared {
            if !self.loading.preparing {
                self.loading.preparing = true;
                self.actions.push(Action::PrepareEncryption { user_id });
            }
            return;
        }
        // Subscribed first, then the history: nothing published in between is lost.
        if !self.loading.page_requested {
            self.loading.page_requested = true;
            let path = format!("{}/messages?limit={}", self.path(), self.config.page_size);
            self.request(
                Purpose::LatestPage,
                "load the room's messages",
                "GET",
                path,
                None,
            );
        }
    }

    /// A loading step failed: retried while the failure is passing.
    fn load_failed(&mut self, failure: Failure) {
        if failure.retryable {
            self.load_attempt += 1;
            let delay = self.backoff_ms(self.load_attempt);
            self.start_timer("load", delay);
        } else {
            self.fail(&failure.code, failure.message);
        }
    }

    /// This device's keys for the room are ready.
    pub fn encryption_prepared(&mut self) {
        self.loading.preparing = false;
        self.loading.prepared = true;
        self.load_step();
    }

    /// Preparing the keys failed: retried when the backend was unreachable
    /// (`network_error`), otherwise the room fails with that code.
    pub fn encryption_failed(&mut self, code: &str, message: &str) {
        self.loading.preparing = false;
        self.load_failed(Failure {
            retryable: code == "network_error",
            code: code.to_owned(),
            message: message.to_owned(),
            details: Map::new(),
        });
    }

    fn room_loaded(&mut self, body: Value) {
        // Opened as the backend keeps it, or not at all: a plaintext client in
        // an encrypted room would show nothing and could send nothing, an
        // encrypted one in a plaintext room the reverse.
        if let Some(encrypted) = body.get("encrypted").and_then(Value::as_bool) {
            if encrypted != self.config.encrypted {
                let message = if encrypted {
                    "unable to open the room; it is end-to-end encrypted, so open it with `encrypted: true`"
                } else {
                    "unable to open the room; it is not end-to-end encrypted, so open it without `encrypted: true`"
                };
                self.fail("room_encryption_mismatch", message.to_owned());
                return;
            }
        }
        self.loading.room = Some(body);
        self.load_step();
    }

    fn latest_page_applied(&mut self, now_ms: u64) {
        let room = self.loading.room.take().unwrap_or(Value::Null);
        let number = |value: Option<&Value>| value.and_then(Value::as_u64).unwrap_or(0);
        let user_id = self.loading.user_id.clone().unwrap_or_default();
        let Some(state) = self.state.as_mut() else {
            return;
        };
        state.set_read_state(
            number(room.get("last_read_seq")),
            number(room.get("unread_count")),
            number(room.get("latest_seq")),
        );
        if let Some(Value::Array(members)) = room.get("members") {
            for member in members {
                if let Some(id) = member.get("id").and_then(Value::as_str) {
                    if id != user_id {
                        state.receipt_received(id, number(member.get("last_read_seq")));
                    }
                }
            }
        }
        // The history is not news: onMessage reports what comes after it.
        self.emitted_through = state.catch_up_cursor();
        self.phase = Phase::Ready;
        self.heard_at = now_ms;
        if self.config.tail_check_ms > 0 {
            self.start_timer("tail", self.config.tail_check_ms);
        }
        self.emit(RoomEvent::Ready);
        self.emit(RoomEvent::Changed);
        for live in std::mem::take(&mut self.loading.buffered) {
            self.apply_live(live, now_ms);
        }
        let gap = self
            .state
            .as_ref()
            .is_some_and(|s| s.newest_seq() > s.catch_up_cursor());
        if gap || self.loading.reconnected {
            self.start_catch_up();
        }
    }

    // ---- HTTP answers -----------------------------------------------------

    /// The answer to request `id`: its HTTP status (0 when there was no
    /// answer: offline, aborted, CORS, a failing headers provider) and its
    /// body text (for status 0, what went wrong).
    pub fn response(&mut self, id: u64, status: u16, body: &str, now_ms: u64) {
        let Some(purpose) = self.in_flight.remove(&id) else {
            return;
        };
        if self.phase == Phase::Left {
            return;
        }
        let operation = operation_of(&purpose);
        let answer = Answer::read(operation, status, body);
        match purpose {
            Purpose::Session => match answer {
                Ok(body) => match body
                    .get("user")
                    .and_then(|user| user.get("id"))
                    .and_then(Value::as_str)
                {
                    Some(id) => {
                        self.loading.user_id = Some(id.to_owned());
                        self.load_step();
                    }
                    None => self.fail(
                        "invalid_response",
                        "unable to read the session; the answer has no user id".into(),
                    ),
                },
                Err(failure) => self.load_failed(failure),
            },
            Purpose::Room => match answer {
                Ok(body) => self.room_loaded(body),
                Err(failure) if matches!(status, 403 | 404) => self.fail(
                    "room_access_denied",
                    format!(
                        "unable to open the room; {} ({})",
                        failure.message, failure.code
                    ),
                ),
                Err(failure) => self.load_failed(failure),
            },
            Purpose::LatestPage => match answer.and_then(|b| Page::read(b, operation)) {
                Ok(page) => {
                    self.view_epoch += 1;
                    self.state = Some(RoomState::new(
                        self.config.room_id.clone(),
                        self.loading.user_id.clone().unwrap_or_default(),
                        self.config.typing,
                    ));
                    self.queue_batch(
                        BatchKind::Latest {
                            has_more: page.has_more,
                        },
                        page.messages,
                        now_ms,
                    );
                }
                Err(failure) => {
                    self.loading.page_requested = false;
                    self.load_failed(failure);
                }
            },
            Purpose::OlderPage => match answer.and_then(|b| Page::read(b, operation)) {
                Ok(page) => self.queue_batch(
                    BatchKind::Older {
                        has_more: page.has_more,
                    },
                    page.messages,
                    now_ms,
                ),
                Err(failure) => {
                    self.older_busy = false;
                    self.emit(RoomEvent::OlderFailed {
                        code: failure.code,
                        message: failure.message,
                    });
                }
            },
            Purpose::CatchUp { cursor } => match answer.and_then(|b| Page::read(b, operation)) {
                Ok(page) => self.queue_batch(
                    BatchKind::CatchUp {
                        has_more: page.has_more,
                        cursor,
                    },
                    page.messages,
                    now_ms,
                ),
                Err(failure) => {
                    self.catch_up.busy = false;
                    if failure.retryable {
                        // Also retried at the next reconnect, whichever comes first.
                        self.catch_up.attempt += 1;
                        let delay = self.backoff_ms(self.catch_up.attempt);
                        self.start_timer("catch_up", delay);
                    } else {
                        self.emit(RoomEvent::Ignored {
                            message: format!("unable to catch up on messages; {}", failure.message),
                        });
                    }
                }
            },
            Purpose::Send { client_id } => self.send_answered(client_id, answer, now_ms),
            Purpose::Read { seq } => {
                self.read.in_flight = false;
                match answer {
                    Ok(_) => {
                        self.read.attempt = 0;
                        if self.read.pending == Some(seq) {
                            self.read.pending = None;
                        }
                    }
                    Err(failure) if failure.retryable => {
                        self.read.attempt += 1;
                        let delay = self.backoff_ms(self.read.attempt);
                        self.start_timer("read", delay);
                        return;
                    }
                    Err(_) => {
                        if self.read.pending == Some(seq) {
                            self.read.pending = None;
                        }
                    }
                }
                // A newer position arrived while this one was on its way.
                if self.read.pending.is_some_and(|p| p > seq) {
                    self.flush_read(false);
                }
            }
        }
    }

    // ---- messages: batches, opening, applying -----------------------------

    /// Messages to apply once their encrypted ones are opened (at once in a
    /// plaintext room).
    fn queue_batch(&mut self, kind: BatchKind, messages: Vec<StoredMessage>, now_ms: u64) {
        let mut waiting = VecSet::new();
        if self.config.encrypted {
            for message in &messages {
                if self.opened.contains_key(&message.message_id) {
                    continue;
                }
                if message.ciphertext.is_none() {
                    // Nothing authenticates a plaintext message in an encrypted room.
                    self.opened.insert(
                        message.message_id.clone(),
                        Opened::Failed {
                            code: "e2ee_not_encrypted".into(),
                            message:
                                "this message was not end-to-end encrypted in an encrypted room"
                                    .into(),
                        },
                    );
                    continue;
                }
                waiting.insert(message.message_id.clone());
                if self.opening.insert(message.message_id.clone()) {
                    self.actions.push(Action::Open {
                        message: message.clone(),
                    });
                }
            }
        }
        self.batches.push(Batch {
            kind,
            messages,
            waiting,
        });
        self.apply_ready_batches(now_ms);
    }

    /// An encrypted message opened (or failed to, with a code).
    pub fn opened(&mut self, message_id: &str, result: Opened, now_ms: u64) {
        self.opening.remove(message_id);
        let reopened = self.opened.insert(message_id.to_owned(), result).is_some();
        for batch in &mut self.batches {
            batch.waiting.remove(message_id);
        }
        if reopened && self.phase == Phase::Ready {
            // Opened again after a reconnect: only the view changes.
            if let Some(state) = self.state.as_mut() {
                state.touch(message_id);
            }
            self.emit(RoomEvent::Changed);
        }
        self.apply_ready_batches(now_ms);
    }

    /// Applies the batches whose messages are all opened, in arrival order of
    /// their completion (order does not matter: onMessage follows seq).
    fn apply_ready_batches(&mut self, now_ms: u64) {
        while let Some(at) = self.batches.iter().position(|b| b.waiting.is_empty()) {
            let batch = self.batches.remove(at);
            self.apply_batch(batch, now_ms);
        }
    }

    fn apply_batch(&mut self, batch: Batch, now_ms: u64) {
        if matches!(self.phase, Phase::Failed { .. } | Phase::Left) {
            return;
        }
        let Some(state) = self.state.as_mut() else {
            return;
        };
        let result = match batch.kind {
            BatchKind::Latest { has_more } => {
                state.apply_latest_page(batch.messages, has_more, now_ms)
            }
            BatchKind::Older { has_more } => {
                state.apply_older_page(batch.messages, has_more, now_ms)
            }
            BatchKind::CatchUp { has_more, .. } => {
                state.apply_catch_up_page(batch.messages, has_more, now_ms)
            }
            BatchKind::Created => {
                let mut messages = batch.messages;
                match messages.pop() {
                    Some(message) => state.apply_created(message, now_ms),
                    None => return,
                }
            }
        };
        let applied = match result {
            Ok(applied) => applied,
            Err(error) => {
                match batch.kind {
                    BatchKind::Latest { .. } => self.fail(error.code(), error.to_string()),
                    BatchKind::Older { .. } => {
                        self.older_busy = false;
                        self.emit(RoomEvent::OlderFailed {
                            code: error.code().into(),
                            message: error.to_string(),
                        });
                    }
                    BatchKind::CatchUp { .. } => {
                        self.catch_up.busy = false;
                        self.ignored(&error);
                    }
                    BatchKind::Created => self.ignored(&error),
                }
                return;
            }
        };
        let added = applied.added.len();
        if added > 0 {
            self.emit(RoomEvent::Changed);
        }
        if matches!(batch.kind, BatchKind::Created | BatchKind::CatchUp { .. }) {
            self.heard_at = now_ms;
        }
        if !applied.typing_stopped.is_empty() {
            self.sync_typing(now_ms);
        }
        match batch.kind {
            BatchKind::Latest { .. } => self.latest_page_applied(now_ms),
            BatchKind::Older { .. } => {
                self.older_busy = false;
                let has_more = self.state.as_ref().is_some_and(RoomState::has_older);
                self.emit(RoomEvent::OlderLoaded { added, has_more });
            }
            BatchKind::CatchUp { has_more, cursor } => {
                self.emit_in_order();
                self.catch_up.busy = false;
                let now_cursor = self.state.as_ref().map_or(0, RoomState::catch_up_cursor);
                let next_page = has_more && now_cursor > cursor;
                if std::mem::take(&mut self.catch_up.again) || next_page {
                    self.start_catch_up();
                } else {
                    self.catch_up.attempt = 0;
                    // The backend has nothing more: a hole that is still
                    // there has no message, so what waited past it is news.
                    self.release_held();
                }
            }
            BatchKind::Created => {
                self.emit_in_order();
                if applied.catch_up_after.is_some() {
                    self.start_catch_up();
                }
            }
        }
        self.settle_deliveries();
    }

    fn ignored(&mut self, error: &Error) {
        self.emit(RoomEvent::Ignored {
            message: format!("ignored an event the room could not apply: {error}"),
        });
    }

    /// Reports the stored messages that follow the last reported one without a hole.
    fn emit_in_order(&mut self) {
        let Some(state) = self.state.as_ref() else {
            return;
        };
        let mut next = Vec::new();
        let mut seq = self.emitted_through;
        while let Some(message) = state.stored_message(seq + 1) {
            seq += 1;
            next.push(ChatMessage::from(message));
        }
        self.emitted_through = seq;
        for message in next {
            let view = self.view_message(message);
            self.emit(RoomEvent::Message(view));
        }
    }

    /// Reports everything stored past the last reported seq, in order.
    fn release_held(&mut self) {
        let Some(state) = self.state.as_ref() else {
            return;
        };
        let held: Vec<ChatMessage> = state
            .stored_after(self.emitted_through)
            .map(ChatMessage::from)
            .collect();
        if let Some(last) = held.last().and_then(|m| m.seq) {
            self.emitted_through = last;
        }
        for message in held {
            let view = self.view_message(message);
            self.emit(RoomEvent::Message(view));
        }
    }

    /// A message as the app sees it: opened text in an encrypted room.
    pub fn view_message(&self, mut message: ChatMessage) -> ChatMessage {
        if !self.config.encrypted {
            return message;
        }
        if let Some(id) = &message.message_id {
            message.text = match self.opened.get(id) {
                Some(Opened::Text(text)) => Some(text.clone()),
                _ => None,
            };
        }
        message
    }

    /// Why an encrypted message shows no text, if it does not.
    pub fn decryption_error(&self, message_id: &str) -> Option<(&str, &str)> {
        match self.opened.get(message_id) {
            Some(Opened::Failed { code, message }) if self.config.encrypted => {
                Some((code.as_str(), message.as_str()))
            }
            _ => None,
        }
    }

    /// The view's messages: stored ones by seq, then my pending sends.
    pub fn messages(&self) -> Vec<ChatMessage> {
        let Some(state) = self.state.as_ref() else {
            return Vec::new();
        };
        state
            .messages()
            .into_iter()
            .map(|m| self.view_message(m))
            .collect()
    }

    /// The change to a view that last read `(epoch, cursor)` (`(0, 0)`: none
    /// yet), so that a refresh costs what changed rather than the whole
    /// history: applying `changed` and `pending` to the view gives
    /// [`messages`](Self::messages) (held to it by tests/chat_session.rs).
    pub fn view_since(&self, epoch: u64, cursor: u64) -> ViewDelta {
        let mut delta = ViewDelta {
            epoch: self.view_epoch,
            cursor: 0,
            full: true,
            changed: Vec::new(),
            pending: Vec::new(),
        };
        let Some(state) = self.state.as_ref() else {
            return delta;
        };
        let log = state.view_log();
        let seen = usize::try_from(cursor).unwrap_or(usize::MAX);
        delta.cursor = log.len() as u64;
        delta.full = epoch != self.view_epoch || seen > log.len();
        let view = |message: &StoredMessage| self.view_message(ChatMessage::from(message));
        if delta.full {
            delta.changed = state.stored_messages().map(view).collect();
        } else {
            // Usually a few seqs, ascending already (live messages arrive in order).
            let mut seqs = VecSet::new();
            for seq in &log[seen..] {
                seqs.insert(*seq);
            }
            delta.changed = seqs
                .iter()
                .filter_map(|seq| state.stored_message(*seq))
                .map(view)
                .collect();
        }
        delta.pending = state.pending_messages().collect();
        delta
    }

    // ---- live events ------------------------------------------------------

    /// A `message.created` event's data.
    pub fn message_created(&mut self, data: Value, now_ms: u64) {
        self.live(Live::Created(data), now_ms);
    }

    /// A `receipt.updated` event's data.
    pub fn receipt(&mut self, data: Value, now_ms: u64) {
        self.live(Live::Receipt(data), now_ms);
    }

    /// A `member.removed` event's data. When the removed member is this user
    /// the room fails with `room_access_denied` at once: the backend also
    /// has the broker close this user's connections, and the resubscription
    /// is refused, but the user should not wait for that to learn it.
    pub fn member_removed(&mut self, data: &Value) {
        let removed = data.get("user_id").and_then(Value::as_str);
        if removed.is_some() && removed == self.my_user_id() {
            self.fail(
                "room_access_denied",
                "unable to stay in the room; you are no longer a member".to_owned(),
            );
        }
    }

    /// A `client-typing` event: `data` as sent, `stamped_user_id` the sender
    /// the broker stamped (presence channels). A stamp always wins over the
    /// payload's `user_id`, which any member could have written: without a
    /// stamp (a private channel, or a broker such as sockudo 5.2 that does not
    /// stamp presence client events) the claim is used but reported as
    /// `verified: false`, never silently trusted.
    pub fn client_typing(&mut self, data: &Value, stamped_user_id: Option<&str>, now_ms: u64) {
        let is_typing = data.get("is_typing").and_then(Value::as_bool) == Some(true);
        let stamped = stamped_user_id.filter(|id| !id.is_empty());
        let (user_id, verified) = match stamped {
            Some(id) => (Some(id), true),
            None => (data.get("user_id").and_then(Value::as_str), false),
        };
        let Some(user_id) = user_id.filter(|id| !id.is_empty()) else {
            return;
        };
        let live = Live::Typing {
            user_id: user_id.to_owned(),
            is_typing,
            verified,
        };
        self.live(live, now_ms);
    }

    fn live(&mut self, live: Live, now_ms: u64) {
        match self.phase {
            Phase::Loading => self.loading.buffered.push(live),
            Phase::Ready => self.apply_live(live, now_ms),
            Phase::Failed { .. } | Phase::Left => {}
        }
    }

    fn apply_live(&mut self, live: Live, now_ms: u64) {
        match live {
            Live::Created(data) => match StoredMessage::from_json(data) {
                Ok(message) => self.queue_batch(BatchKind::Created, vec![message], now_ms),
                Err(error) => self.ignored(&error),
            },
            Live::Receipt(data) => {
                let user_id = data.get("user_id").and_then(Value::as_str);
                let seq = data.get("seq").and_then(Value::as_u64);
                let (Some(user_id), Some(seq), Some(state)) = (user_id, seq, self.state.as_mut())
                else {
                    return;
                };
                // The backend says how far the room goes: a message this
                // connection never heard of is fetched now.
                let latest = data.get("latest_seq").and_then(Value::as_u64);
                if latest.is_some_and(|latest| latest > state.catch_up_cursor()) {
                    self.start_catch_up();
                }
                let Some(state) = self.state.as_mut() else {
                    return;
                };
                if !state.receipt_received(user_id, seq) {
                    return;
                }
                self.emit(RoomEvent::Changed);
                if Some(user_id) != self.loading.user_id.as_deref() {
                    let message_id = data.get("message_id").and_then(Value::as_str).unwrap_or("");
                    self.emit(RoomEvent::Receipt {
                        user_id: user_id.to_owned(),
                        message_id: message_id.to_owned(),
                        seq,
                    });
                }
            }
            Live::Typing {
                user_id,
                is_typing,
                verified,
            } => {
                let Some(state) = self.state.as_mut() else {
                    return;
                };
                state.typing_received(&user_id, is_typing, now_ms);
                if verified {
                    self.typing_unverified.remove(&user_id);
                } else {
                    self.typing_unverified.insert(user_id);
                }
                self.sync_typing(now_ms);
            }
        }
    }

    /// The connection is back after a drop.
    pub fn reconnected(&mut self) {
        match self.phase {
            Phase::Loading => self.loading.reconnected = true,
            Phase::Ready => {
                // Re-send what is still on its way, now, with the same client ids.
                let waiting: Vec<String> = self.deliveries.keys().cloned().collect();
                for client_id in waiting {
                    self.attempt(&client_id);
                }
                if self.read.pending.is_some() {
                    self.flush_read(false);
                }
                self.start_catch_up();
                // Messages that did not open because the backend was unreachable.
                let retry: Vec<String> = self
                    .opened
                    .iter()
                    .filter(|(_, o)| matches!(o, Opened::Failed { code, .. } if code == "network_error"))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in retry {
                    if let Some(message) = self.state.as_ref().and_then(|s| s.message(&id)).cloned()
                    {
                        if self.opening.insert(id) {
                            self.actions.push(Action::Open { message });
                        }
                    }
                }
            }
            Phase::Failed { .. } | Phase::Left => {}
        }
    }

    fn start_catch_up(&mut self) {
        if self.phase != Phase::Ready {
            if self.phase == Phase::Loading {
                self.loading.reconnected = true;
            }
            return;
        }
        if self.catch_up.busy {
            self.catch_up.again = true;
            return;
        }
        let Some(cursor) = self.state.as_ref().map(RoomState::catch_up_cursor) else {
            return;
        };
        self.catch_up.busy = true;
        let path = format!(
            "{}/messages?after={cursor}&limit={CATCH_UP_PAGE_SIZE}",
            self.path()
        );
        self.request(
            Purpose::CatchUp { cursor },
            "catch up on messages",
            "GET",
            path,
            None,
        );
    }

    // ---- timers -----------------------------------------------------------

    /// The timer named `name` fired.
    pub fn timer_fired(&mut self, name: &str, now_ms: u64) {
        if matches!(self.phase, Phase::Failed { .. } | Phase::Left) {
            return;
        }
        match name {
            "load" => self.load_step(),
            "catch_up" => self.start_catch_up(),
            "tail" => self.tail_check(now_ms),
            "read" => self.flush_read(false),
            "typing" => {
                self.typing_timer_at = None;
                if let Some(state) = self.state.as_mut() {
                    state.expire_typing(now_ms);
                }
                self.sync_typing(now_ms);
            }
            _ => {
                if let Some(client_id) = name.strip_prefix("send:") {
                    let client_id = client_id.to_owned();
                    self.attempt(&client_id);
                }
            }
        }
    }

    /// The tail check's timer: catch up if the room heard no message for
    /// `tail_check_ms`, and run again `tail_check_ms` after the last one
    /// heard. One timer per period, not one per message. A missed message is
    /// fetched at most `tail_check_ms` (plus one request) after it was sent.
    fn tail_check(&mut self, now_ms: u64) {
        let period = self.config.tail_check_ms;
        if period == 0 || self.phase != Phase::Ready {
            return;
        }
        if now_ms.saturating_sub(self.heard_at) >= period {
            self.heard_at = now_ms;
            self.start_catch_up();
        }
        let next = self.heard_at.saturating_add(period);
        self.start_timer("tail", next.saturating_sub(now_ms).max(1));
    }

    // ---- sending ----------------------------------------------------------

    /// Sends `text` with the caller's fresh `client_id`: shown at once as
    /// 'sending'. Bad text fails here, before any request.
    pub fn send(&mut self, client_id: &str, text: &str, now_ms: u64) -> Result<(), Error> {
        let Some(state) = self.ready_state() else {
            self.not_ready(client_id);
            return Ok(());
        };
        state.begin_send(client_id, text, now_ms)?;
        self.emit(RoomEvent::Changed);
        // Sending a message ends typing.
        self.stop_typing();
        self.deliveries
            .insert(client_id.to_owned(), Delivery::default());
        self.attempt(client_id);
        Ok(())
    }

    /// Sends a failed message again, with its client id.
    pub fn retry(&mut self, client_id: &str) -> Result<(), Error> {
        let Some(state) = self.ready_state() else {
            self.not_ready(client_id);
            return Ok(());
        };
        state.retry(client_id)?;
        self.emit(RoomEvent::Changed);
        self.deliveries
            .insert(client_id.to_owned(), Delivery::default());
        self.attempt(client_id);
        Ok(())
    }

    fn ready_state(&mut self) -> Option<&mut RoomState> {
        match self.phase {
            Phase::Ready => self.state.as_mut(),
            _ => None,
        }
    }

    /// A send before the room is ready, after it failed or after it was left
    /// (the SDK waits for readiness first, so this is a failure or a leave
    /// racing the call). A failed room answers with its own failure: a
    /// removed member's send says `room_access_denied`, not a vaguer code.
    fn not_ready(&mut self, client_id: &str) {
        let (code, message) = match &self.phase {
            Phase::Loading => (
                "not_ready".to_owned(),
                "unable to send the message; the room is not ready".to_owned(),
            ),
            Phase::Failed { code, message } => (code.clone(), message.clone()),
            Phase::Ready | Phase::Left => (
                "room_left".to_owned(),
                "unable to send the message; the room was left".to_owned(),
            ),
        };
        self.emit(RoomEvent::SendFailed {
            client_id: client_id.to_owned(),
            code,
            message,
        });
    }

    fn pending_text(&self, client_id: &str) -> Option<String> {
        let message = self.state.as_ref()?.message_by_client_id(client_id)?;
        (message.status == DeliveryStatus::Sending)
            .then_some(message.text)
            .flatten()
    }

    fn attempt(&mut self, client_id: &str) {
        if self.phase != Phase::Ready {
            return;
        }
        let Some(delivery) = self.deliveries.get(client_id) else {
            return;
        };
        if delivery.in_flight || delivery.sealing {
            return;
        }
        let Some(text) = self.pending_text(client_id) else {
            self.settle_deliveries();
            return;
        };
        let delivery = self.deliveries.get_mut(client_id).expect("checked above");
        let content = if self.config.encrypted {
            match &delivery.envelope {
                Some(envelope) => Value::object([
                    ("client_id", client_id.into()),
                    ("ciphertext", raw_json(envelope)),
                ]),
                None => {
                    delivery.sealing = true;
                    let stale = delivery.stale;
                    self.actions.push(Action::Seal {
                        client_id: client_id.to_owned(),
                        text,
                        stale,
                    });
                    return;
                }
            }
        } else {
            Value::object([("client_id", client_id.into()), ("text", text.into())])
        };
        delivery.in_flight = true;
        let path = format!("{}/messages", self.path());
        self.request(
            Purpose::Send {
                client_id: client_id.to_owned(),
            },
            "send the message",
            "POST",
            path,
            Some(content),
        );
    }

    /// The envelope of a send (JSON text of the ciphertext object).
    pub fn sealed(&mut self, client_id: &str, envelope: &str) {
        let Some(delivery) = self.deliveries.get_mut(client_id) else {
            return;
        };
        delivery.sealing = false;
        delivery.stale = None;
        delivery.envelope = Some(envelope.to_owned());
        self.attempt(client_id);
    }

    /// Sealing failed: retried later when the backend was unreachable
    /// (`network_error`), otherwise the send fails with that code.
    pub fn seal_failed(&mut self, client_id: &str, code: &str, message: &str) {
        let Some(delivery) = self.deliveries.get_mut(client_id) else {
            return;
        };
        delivery.sealing = false;
        if code == "network_error" {
            delivery.attempt += 1;
            let attempt = delivery.attempt;
            let delay = self.backoff_ms(attempt);
            self.start_timer(format!("send:{client_id}"), delay);
        } else {
            self.refuse(client_id, code, message.to_owned());
        }
    }

    fn send_answered(&mut self, client_id: String, answer: Result<Value, Failure>, now_ms: u64) {
        let Some(delivery) = self.deliveries.get_mut(&client_id) else {
            return;
        };
        delivery.in_flight = false;
        let body = match answer {
            Ok(body) => body,
            Err(failure) if failure.retryable => {
                // Offline or the server failed: the same client id again later
                // (and at the next reconnect).
                delivery.attempt += 1;
                let attempt = delivery.attempt;
                let delay = self.backoff_ms(attempt);
                self.start_timer(format!("send:{client_id}"), delay);
                return;
            }
            Err(failure) if self.config.encrypted && failure.code == "epoch_stale" => {
                // The member devices changed since the envelope's epoch: nothing
                // was stored, so seal anew and send again.
                delivery.stale_refusals += 1;
                delivery.envelope = None;
                if delivery.stale_refusals < EPOCH_STALE_ATTEMPTS {
                    delivery.stale = Some(StaleEpoch {
                        current_epoch: failure
                            .details
                            .get("current_epoch")
                            .and_then(Value::as_u64)
                            .unwrap_or(0),
                        needs_new_epoch: failure.details.get("needs_new_epoch")
                            != Some(&Value::Bool(false)),
                    });
                    self.attempt(&client_id);
                } else {
                    self.refuse(&client_id, &failure.code, failure.message);
                }
                return;
            }
            Err(failure) => {
                self.refuse(&client_id, &failure.code, failure.message);
                return;
            }
        };
        let Some(text) = self.pending_text(&client_id) else {
            // A catch-up or the live event confirmed it meanwhile.
            self.settle_deliveries();
            return;
        };
        let stored = match StoredMessage::from_json(body) {
            Ok(stored) => stored,
            Err(error) => {
                self.refuse(&client_id, error.code(), error.to_string());
                return;
            }
        };
        if self.config.encrypted {
            // My own message: its text is known, no need to open it.
            self.opened
                .get_or_insert_with(stored.message_id.clone(), || Opened::Text(text));
        }
        let Some(state) = self.state.as_mut() else {
            return;
        };
        match state.send_succeeded(&client_id, stored, now_ms) {
            Ok(applied) => {
                if !applied.added.is_empty() {
                    self.emit(RoomEvent::Changed);
                }
                self.emit_in_order();
                if applied.catch_up_after.is_some() {
                    self.start_catch_up();
                }
                self.settle_deliveries();
            }
            Err(error) => self.refuse(&client_id, error.code(), error.to_string()),
        }
    }

    /// The send ends 'failed' (unless it was stored meanwhile).
    fn refuse(&mut self, client_id: &str, code: &str, message: String) {
        if !self.deliveries.contains_key(client_id) {
            return;
        }
        if self.pending_text(client_id).is_none() {
            // Stored meanwhile (by a catch-up or the live event): that wins.
            self.settle_deliveries();
            if !self.deliveries.contains_key(client_id) {
                return;
            }
        } else if let Some(state) = self.state.as_mut() {
            state.send_failed(client_id);
            self.emit(RoomEvent::Changed);
        }
        self.deliveries.remove(client_id);
        self.emit(RoomEvent::SendFailed {
            client_id: client_id.to_owned(),
            code: code.to_owned(),
            message,
        });
    }

    /// Reports the sends the state now holds as stored.
    fn settle_deliveries(&mut self) {
        let Some(state) = self.state.as_ref() else {
            return;
        };
        let mut settled = Vec::new();
        for (client_id, delivery) in &self.deliveries {
            if delivery.in_flight {
                continue;
            }
            if let Some(message) = state.message_by_client_id(client_id) {
                if message.status == DeliveryStatus::Sent {
                    settled.push((client_id.clone(), message));
                }
            }
        }
        for (client_id, message) in settled {
            self.deliveries.remove(&client_id);
            let message = self.view_message(message);
            self.emit(RoomEvent::Delivered { client_id, message });
        }
    }

    // ---- history ------------------------------------------------------------

    /// Loads the page before the oldest loaded message; answered with
    /// [`RoomEvent::OlderLoaded`] (at once when there is none) or
    /// [`RoomEvent::OlderFailed`]. One load at a time: a second call while
    /// one runs is answered by the same event.
    pub fn load_older(&mut self) {
        let Some(state) = self.ready_state() else {
            self.emit(RoomEvent::OlderFailed {
                code: "room_left".into(),
                message: "unable to load older messages; the room is not open".into(),
            });
            return;
        };
        let Some(before) = state.older_cursor() else {
            self.emit(RoomEvent::OlderLoaded {
                added: 0,
                has_more: false,
            });
            return;
        };
        if self.older_busy {
            return;
        }
        self.older_busy = true;
        let path = format!(
            "{}/messages?before={before}&limit={}",
            self.path(),
            self.config.page_size
        );
        self.request(Purpose::OlderPage, "load older messages", "GET", path, None);
    }

    // ---- typing -------------------------------------------------------------

    /// I typed (`claimed_user_id`: the id a private room's signal names,
    /// mine by default).
    pub fn typing_input(&mut self, claimed_user_id: Option<&str>, now_ms: u64) {
        let Some(state) = self.ready_state() else {
            return;
        };
        if state.typing_input(now_ms) {
            self.send_typing(true, claimed_user_id);
        }
    }

    /// I stopped typing.
    pub fn stop_typing(&mut self) {
        let Some(state) = self.ready_state() else {
            return;
        };
        if state.typing_stop() {
            self.send_typing(false, None);
        }
    }

    /// The signal always names its sender: a broker that stamps presence
    /// client events makes the name redundant, one that does not (sockudo
    /// 5.2) leaves receivers only the name (reported unverified).
    fn send_typing(&mut self, is_typing: bool, claimed_user_id: Option<&str>) {
        let me = self.loading.user_id.as_deref().unwrap_or("");
        let user_id = if self.config.presence {
            me
        } else {
            claimed_user_id.unwrap_or(me)
        };
        let data = Value::object([("user_id", user_id.into()), ("is_typing", is_typing.into())]);
        self.actions.push(Action::SendTyping { data });
    }

    /// Reports who started and stopped typing, and keeps one timer at the
    /// earliest deadline. A typist's deadline only moves later, so most
    /// signals leave the running timer alone; one that fires early finds
    /// nothing expired and is started again for the next deadline.
    fn sync_typing(&mut self, now_ms: u64) {
        let Some(state) = self.state.as_ref() else {
            return;
        };
        let deadline = state.next_typing_deadline();
        let (stopped, started) = follow_typing(&mut self.typing_reported, &state.typing_ids());
        // No `Changed` here: each change of the list is its own `Typing`
        // event, and `Changed` would have the app re-read the whole view
        // (messages, unread count, read positions) per typing signal.
        for user_id in stopped {
            let verified = !self.typing_unverified.remove(&user_id);
            self.emit(RoomEvent::Typing {
                user_id,
                is_typing: false,
                verified,
            });
        }
        for user_id in started {
            let verified = !self.typing_unverified.contains(&user_id);
            self.emit(RoomEvent::Typing {
                user_id,
                is_typing: true,
                verified,
            });
        }
        if let Some(deadline) = deadline {
            if self.typing_timer_at.is_none_or(|at| at > deadline) {
                self.typing_timer_at = Some(deadline);
                self.start_timer("typing", delay_until(deadline, now_ms));
            }
        }
    }

    /// Who is typing, in the order they started.
    pub fn typing_users(&self) -> &[String] {
        &self.typing_reported
    }

    // ---- reads --------------------------------------------------------------

    /// I read up to `message_id`: my position moves at once, and is posted
    /// [`READ_DEBOUNCE_MS`] after the last call.
    pub fn mark_read(&mut self, message_id: &str) {
        let Some(state) = self.ready_state() else {
            return;
        };
        let Some(seq) = state.mark_read(message_id) else {
            return;
        };
        self.emit(RoomEvent::Changed);
        self.read.pending = Some(self.read.pending.map_or(seq, |p| p.max(seq)));
        self.start_timer("read", READ_DEBOUNCE_MS);
    }

    fn flush_read(&mut self, keepalive: bool) {
        let Some(seq) = self.read.pending else {
            return;
        };
        if self.read.in_flight {
            return;
        }
        self.read.in_flight = true;
        let path = format!("{}/read", self.path());
        let id = self.request(
            Purpose::Read { seq },
            "mark the room read",
            "POST",
            path,
            Some(Value::object([("seq", seq.into())])),
        );
        if keepalive {
            if let Some(Action::Request(request)) = self.actions.last_mut() {
                if request.id == id {
                    request.keepalive = true;
                }
            }
        }
    }

    // ---- leaving ------------------------------------------------------------

    /// Leaves: typing stops, the last read position still goes out (as a
    /// keepalive request), and every send still on its way fails `room_left`.
    pub fn leave(&mut self) {
        if self.phase == Phase::Left {
            return;
        }
        if self.phase == Phase::Ready {
            self.stop_typing();
            if !self.read.in_flight {
                self.flush_read(true);
            }
        }
        self.phase = Phase::Left;
        let waiting = std::mem::take(&mut self.deliveries);
        for client_id in waiting.into_keys() {
            self.emit(RoomEvent::SendFailed {
                client_id,
                code: "room_left".into(),
                message: "unable to finish; the room was left".into(),
            });
        }
        self.batches.clear();
        self.loading.buffered.clear();
    }
}

/// A failed request, as the room reports it.
#[derive(Clone, Debug)]
struct Failure {
    /// No answer, a 5xx or a 429: the same request may succeed later.
    retryable: bool,
    code: String,
    message: String,
    /// The error object's fields besides `code` and `message`.
    details: Map<String, Value>,
}

struct Answer;

impl Answer {
    /// A 2xx answer's JSON body, or the failure: the backend's
    /// `{error: {code, message}}` when it sent one.
    fn read(operation: &str, status: u16, body: &str) -> Result<Value, Failure> {
        if status == 0 {
            return Err(Failure {
                retryable: true,
                code: "network_error".into(),
                message: format!("unable to {operation}; the backend is unreachable: {body}"),
                details: Map::new(),
            });
        }
        let parsed: Value = if body.is_empty() {
            Value::Null
        } else {
            crate::json::from_str(body).unwrap_or(Value::Null)
        };
        if (200..300).contains(&status) {
            return Ok(parsed);
        }
        let retryable = status >= 500 || status == 429;
        let mut details = match parsed {
            Value::Object(mut map) => match map.remove("error") {
                Some(Value::Object(error)) => error,
                _ => Map::new(),
            },
            _ => Map::new(),
        };
        let code = match details.remove("code") {
            Some(Value::String(code)) => code,
            _ if retryable => "network_error".into(),
            _ => "invalid_response".into(),
        };
        let message = match details.remove("message") {
            Some(Value::String(message)) => message,
            _ => format!("unable to {operation}; the backend answered {status}"),
        };
        Err(Failure {
            retryable,
            code,
            message,
            details,
        })
    }
}

struct Page {
    messages: Vec<StoredMessage>,
    has_more: bool,
}

impl Page {
    /// A `{messages, has_more}` page; a malformed one fails whole.
    fn read(body: Value, operation: &str) -> Result<Page, Failure> {
        let malformed = |reason: String| Failure {
            retryable: false,
            code: "invalid_response".into(),
            message: format!("unable to {operation}; {reason}"),
            details: Map::new(),
        };
        let Value::Object(mut map) = body else {
            return Err(malformed("the answer is not an object".into()));
        };
        let Some(Value::Array(values)) = map.remove("messages") else {
            return Err(malformed("the answer has no messages array".into()));
        };
        let mut messages = Vec::with_capacity(values.len());
        for value in values {
            messages.push(StoredMessage::from_json(value).map_err(|e| malformed(e.to_string()))?);
        }
        Ok(Page {
            messages,
            has_more: map.get("has_more") == Some(&Value::Bool(true)),
        })
    }
}

fn operation_of(purpose: &Purpose) -> &'static str {
    match purpose {
        Purpose::Session => "read the session",
        Purpose::Room => "open the room",
        Purpose::LatestPage => "load the room's messages",
        Purpose::OlderPage => "load older messages",
        Purpose::CatchUp { .. } => "catch up on messages",
        Purpose::Send { .. } => "send the message",
        Purpose::Read { .. } => "mark the room read",
    }
}

/// An envelope's JSON text as a value (it came from the E2EE layer as JSON).
fn raw_json(text: &str) -> Value {
    crate::json::from_str(text).unwrap_or(Value::Null)
}

/// What `encodeURIComponent` leaves as it is besides letters and digits: a
/// room id in a backend path (ids are validated to a safe alphabet, so this
/// rarely changes anything; it keeps a path a path).
const ENCODE_URI_COMPONENT_KEEPS: &[u8] = b"-_.!~*'()";

#[cfg(test)]
mod tests {
    use super::{follow_typing, percent_encode, ENCODE_URI_COMPONENT_KEEPS};

    /// A room id in a path is written as `encodeURIComponent` writes it.
    #[test]
    fn room_ids_are_encoded_as_encode_uri_component_does() {
        assert_eq!(
            percent_encode("aZ09-_.!~*'() /?#%é", ENCODE_URI_COMPONENT_KEEPS),
            "aZ09-_.!~*'()%20%2F%3F%23%25%C3%A9"
        );
    }

    fn owned(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    /// Each shape of change (a join, a leave anywhere, several leaves, a
    /// leave and a join together): the result is what comparing every id
    /// with every other gives, and `reported` ends equal to `now`, order
    /// included.
    #[test]
    fn follow_typing_reports_each_change_and_ends_at_now() {
        // (reported before, now, stopped, started)
        type Case = (
            &'static [&'static str],
            &'static [&'static str],
            &'static [&'static str],
            &'static [&'static str],
        );
        let cases: [Case; 7] = [
            (&[], &[], &[], &[]),
            (&["a", "b"], &["a", "b"], &[], &[]),
            (&["a", "b"], &["a", "b", "c"], &[], &["c"]),
            (&["a", "b", "c"], &["a", "c"], &["b"], &[]),
            (&["a", "b", "c"], &["a", "b"], &["c"], &[]),
            // Two expired at once, and one stopped while another started.
            (&["a", "b", "c"], &["c"], &["a", "b"], &[]),
            (&["a", "b"], &["b", "c"], &["a"], &["c"]),
        ];
        for (before, now, stopped, started) in cases {
            let mut reported = owned(before);
            let changes = follow_typing(&mut reported, now);
            assert_eq!(
                changes,
                (owned(stopped), owned(started)),
                "{before:?} -> {now:?}"
            );
            assert_eq!(reported, owned(now), "{before:?} -> {now:?}");
        }
    }
}
