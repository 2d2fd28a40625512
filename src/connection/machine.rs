//! [`Connection`]: the state machine behind the module's documentation.

use crate::fifo::Fifo;
use crate::vec_map::VecMap;

use crate::json::Value;

use super::backoff::{self, Jitter};
use super::{
    Action, ChannelState, ConnectionState, Members, Notice, Options, Timer, CLOSE_NORMAL,
    MAX_CLIENT_EVENT_DATA_BYTES, MAX_EVENT_NAME_LEN,
};
use crate::protocol::event::{CACHE_MISS, WATCHLIST_EVENTS};
use crate::protocol::{
    close_action, parse_presence_channel_data, validate_channel_name, ChannelAuth, ChannelKind,
    CloseAction, Error, Event, Frame, PresenceSnapshot, UserAuth, CLIENT_EVENT_PREFIX,
};
use crate::protocol::{data_json, is_json, write_frame, RawFrame};

/// The server's activity timeout when it announces 0 (Pusher's default).
const DEFAULT_SERVER_ACTIVITY_MS: u64 = 120_000;

/// Events of this prefix are the broker's business; unknown ones are dropped,
/// as pusher-js does.
const INTERNAL_EVENT_PREFIX: &str = "pusher_internal:";

/// The close code of a connection the app terminated (and of a refused
/// `pusher:signin`, which never reaches a signed-in socket).
const TERMINATED_BY_APP: u16 = 4009;

/// The socket as the machine knows it. The boundary has at most one.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Socket {
    /// None (or one that was abandoned: its events are ignored).
    None,
    /// `OpenSocket` went out; waiting for the socket to open.
    Opening,
    /// Open; waiting for `pusher:connection_established`.
    Open,
    /// Established, with the socket id the broker gave it.
    Established { socket_id: String },
}

/// Where a `Subscribing` channel is on its way to `Subscribed`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// No established connection yet; the subscription starts when there is one.
    AwaitingConnection,
    /// `Authorize` went out for this socket id.
    Authorizing { socket_id: String },
    /// `pusher:subscribe` went out on the current socket.
    AwaitingBroker,
}

#[derive(Clone, Debug)]
struct Channel {
    kind: ChannelKind,
    state: ChannelState,
    step: Step,
    /// Some for presence channels.
    members: Option<Members>,
}

impl Channel {
    fn new(kind: ChannelKind) -> Channel {
        Channel {
            kind,
            state: ChannelState::Subscribing,
            step: Step::AwaitingConnection,
            members: (kind == ChannelKind::Presence).then(Members::default),
        }
    }

    /// Back to waiting for a connection, members forgotten (they are re-sent
    /// with the next `subscription_succeeded`).
    fn await_connection(&mut self) {
        self.step = Step::AwaitingConnection;
        if let Some(members) = &mut self.members {
            *members = Members::default();
        }
    }
}

/// What to do after losing a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Stop: `Failed`.
    Fail,
    /// Retry after a jittered backoff delay.
    Backoff,
    /// Retry at once.
    Now,
}

/// The realtime connection: one socket to the broker, its channels, and the
/// rules for keeping it alive. See the [module documentation](super).
#[derive(Debug)]
pub struct Connection {
    options: Options,
    state: ConnectionState,
    socket: Socket,
    jitter: Jitter,
    /// Backoff retries since the last established connection.
    attempt: u32,
    /// The deadline of each running timer, by [`Timer::index`].
    deadlines: [Option<u64>; 4],
    /// When the last frame from the server arrived.
    last_received_ms: u64,
    /// The effective activity timeout of the established connection.
    activity_ms: u64,
    /// A `pusher:ping` went out and nothing has arrived since.
    awaiting_pong: bool,
    channels: VecMap<String, Channel>,
    /// The socket id of the pending user sign-in request.
    user_auth: Option<String>,
    /// The broker confirmed `pusher:signin` on the current socket.
    signed_in: bool,
    actions: Fifo<Action>,
}

impl Connection {
    /// A machine in [`ConnectionState::Initialized`]; `random_seed` seeds the
    /// backoff jitter (pass a random value; tests pass constants).
    pub fn new(options: Options, random_seed: u64) -> Connection {
        Connection {
            options,
            state: ConnectionState::Initialized,
            socket: Socket::None,
            jitter: Jitter::new(random_seed),
            attempt: 0,
            deadlines: [None; 4],
            last_received_ms: 0,
            activity_ms: DEFAULT_SERVER_ACTIVITY_MS,
            awaiting_pong: false,
            channels: VecMap::new(),
            user_auth: None,
            signed_in: false,
            actions: Fifo::new(),
        }
    }

    /// The options the machine was made with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The connection state.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// The socket id of the established connection.
    pub fn socket_id(&self) -> Option<&str> {
        match &self.socket {
            Socket::Established { socket_id } => Some(socket_id),
            _ => None,
        }
    }

    /// The next action to run, oldest first.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Starts connecting (from `Initialized`, `Disconnected` or `Failed`, with
    /// the backoff reset). While already connecting and waiting out a backoff
    /// delay, retries at once; otherwise does nothing.
    pub fn connect(&mut self, now_ms: u64) {
        match self.state {
            ConnectionState::Initialized
            | ConnectionState::Disconnected
            | ConnectionState::Failed => {
                self.attempt = 0;
                self.set_state(ConnectionState::Connecting, None);
                self.start_timer(
                    now_ms,
                    Timer::Unavailable,
                    self.options.unavailable_timeout_ms,
                );
                self.open_socket(now_ms);
            }
            ConnectionState::Connecting
            | ConnectionState::Unavailable
            | ConnectionState::Connected => {
                self.catch_up(now_ms);
                self.retry_if_waiting(now_ms);
            }
        }
    }

    /// Closes the socket (code 1000), stops every timer and stays
    /// `Disconnected` until [`connect`](Connection::connect). Channels are kept
    /// and resubscribed on the next connection.
    pub fn disconnect(&mut self, _now_ms: u64) {
        if self.state == ConnectionState::Disconnected {
            return;
        }
        if self.socket != Socket::None {
            self.push(Action::CloseSocket {
                code: CLOSE_NORMAL,
                reason: "disconnected by the app".to_owned(),
            });
        }
        self.forget_socket();
        for timer in Timer::ALL {
            self.cancel_timer(timer);
        }
        self.set_state(ConnectionState::Disconnected, None);
    }

    /// The socket opened; the broker now has `pong_timeout_ms` to send
    /// `pusher:connection_established`.
    pub fn socket_opened(&mut self, now_ms: u64) {
        if self.socket == Socket::Opening {
            self.socket = Socket::Open;
            self.start_timer(now_ms, Timer::Pong, self.options.pong_timeout_ms);
        }
        self.catch_up(now_ms);
    }

    /// A text frame arrived. Any frame counts as activity. A frame that cannot
    /// be read becomes an [`Notice::Error`] with no code.
    pub fn socket_message(&mut self, now_ms: u64, text: &str) {
        if self.socket != Socket::None {
            self.last_received_ms = now_ms;
            if self.socket == Socket::Opening {
                self.socket = Socket::Open;
            }
            if self.awaiting_pong {
                self.awaiting_pong = false;
                self.cancel_timer(Timer::Pong);
                self.start_timer(now_ms, Timer::Activity, self.activity_ms);
            }
            // An app or client event (no `pusher` prefix) is delivered with
            // its data as the JSON text it came in; only protocol events
            // have their data parsed.
            let decoded = RawFrame::decode(text).and_then(|raw| {
                if !raw.event.starts_with("pusher:")
                    && !raw.event.starts_with(INTERNAL_EVENT_PREFIX)
                {
                    return Ok(Err(raw));
                }
                let frame = raw.into_frame();
                // These two reach the app as the broker sent them, once they
                // check out, rather than re-encoded from their typed form.
                let passed_on = matches!(frame.event.as_str(), CACHE_MISS | WATCHLIST_EVENTS)
                    .then(|| frame.clone());
                Event::from_frame(frame).map(|event| Ok((event, passed_on)))
            });
            match decoded {
                Ok(Ok((_, Some(frame)))) => self.deliver_frame(frame),
                Ok(Ok((event, None))) => self.handle_event(now_ms, event),
                Ok(Err(raw)) => {
                    let data = raw.data.map(data_json);
                    self.deliver(raw.channel, raw.event, data, raw.user_id);
                }
                Err(error) => self.notify(Notice::Error {
                    code: None,
                    message: error.to_string(),
                }),
            }
        }
        self.catch_up(now_ms);
    }

    /// The socket closed with `code`: 4000-4099 fail, 4200-4299 of an
    /// established connection reconnect at once, anything else backs off.
    /// One exception: 4009 on a signed-in socket is the app terminating the
    /// user's connections (Pusher's `terminate_connections`), which revokes
    /// some access, not all: back off and reconnect, so that every channel
    /// is authorized again and only what was revoked is refused.
    pub fn socket_closed(&mut self, now_ms: u64, code: u16, reason: &str) {
        if self.socket != Socket::None {
            let established = matches!(self.socket, Socket::Established { .. });
            let next = match close_action(code) {
                CloseAction::Fail if code == TERMINATED_BY_APP && self.signed_in => Next::Backoff,
                CloseAction::Fail => Next::Fail,
                CloseAction::ReconnectNow if established => Next::Now,
                CloseAction::ReconnectNow | CloseAction::Backoff | CloseAction::KeepSocket => {
                    Next::Backoff
                }
            };
            self.connection_lost(now_ms, describe_close(code, reason), next);
        }
        self.catch_up(now_ms);
    }

    /// A timer the machine started has fired (late is fine).
    pub fn timer_fired(&mut self, now_ms: u64, timer: Timer) {
        let armed = self.deadlines[timer.index()].take().is_some();
        // A socket presumed dead is replaced by catch_up below, whatever fired.
        if armed && !self.presumed_dead(now_ms) {
            self.run_timer(now_ms, timer);
        }
        self.catch_up(now_ms);
    }

    /// The browser is online again: retry at once when waiting out a backoff
    /// delay; when connected, ping to check that the socket survived the
    /// network change.
    pub fn network_online(&mut self, now_ms: u64) {
        self.catch_up(now_ms);
        if matches!(self.socket, Socket::Established { .. }) {
            if !self.awaiting_pong {
                self.ping(now_ms);
            }
        } else {
            self.retry_if_waiting(now_ms);
        }
    }

    /// Subscribes to `channel` (validated first). A public channel sends
    /// `pusher:subscribe` once connected; others ask for [`Action::Authorize`]
    /// first. Subscribing again to a channel that is subscribed or on its way
    /// does nothing; a failed channel tries again.
    pub fn subscribe(&mut self, now_ms: u64, channel: &str) -> Result<(), Error> {
        let kind = validate_channel_name(channel)?;
        self.catch_up(now_ms);
        if let Some(existing) = self.channels.get(channel) {
            if matches!(
                existing.state,
                ChannelState::Subscribing | ChannelState::Subscribed
            ) {
                return Ok(());
            }
        }
        let mut entry = Channel::new(kind);
        if let Socket::Established { socket_id } = &self.socket {
            begin_subscription(channel, &mut entry, socket_id, &mut self.actions);
        }
        self.channels.insert(channel.to_owned(), entry);
        Ok(())
    }

    /// Leaves `channel` and forgets it; sends `pusher:unsubscribe` when the
    /// broker knows of the subscription.
    pub fn unsubscribe(&mut self, now_ms: u64, channel: &str) {
        self.catch_up(now_ms);
        let Some(entry) = self.channels.remove(channel) else {
            return;
        };
        let broker_knows = entry.state == ChannelState::Subscribed
            || (entry.state == ChannelState::Subscribing && entry.step == Step::AwaitingBroker);
        if broker_knows && matches!(self.socket, Socket::Established { .. }) {
            self.send(&Event::unsubscribe_frame(channel));
        }
    }

    /// The state of `channel`, or `None` when it is not subscribed at all.
    pub fn channel_state(&self, channel: &str) -> Option<ChannelState> {
        self.channels.get(channel).map(|entry| entry.state)
    }

    /// The members of presence channel `channel` (empty until subscribed).
    pub fn members(&self, channel: &str) -> Option<&Members> {
        self.channels.get(channel)?.members.as_ref()
    }

    /// The auth endpoint signed `channel` for `socket_id`: sends
    /// `pusher:subscribe`. A result for another socket than the current one is
    /// ignored (the current socket has its own request).
    pub fn auth_succeeded(
        &mut self,
        now_ms: u64,
        channel: &str,
        socket_id: &str,
        auth: ChannelAuth,
    ) {
        self.catch_up(now_ms);
        let Socket::Established { socket_id: current } = &self.socket else {
            return;
        };
        let Some(entry) = self.channels.get_mut(channel) else {
            return;
        };
        if entry.state != ChannelState::Subscribing {
            return;
        }
        match &entry.step {
            Step::Authorizing { socket_id: pending }
                if pending == socket_id && pending == current => {}
            Step::AwaitingConnection => {
                // Defensive: a connected channel always has a request out.
                begin_subscription(channel, entry, current, &mut self.actions);
                return;
            }
            Step::Authorizing { .. } | Step::AwaitingBroker => return,
        }
        if let Some(members) = &mut entry.members {
            match auth
                .channel_data
                .as_deref()
                .map(parse_presence_channel_data)
            {
                Some(Ok(member)) => members.me = Some(member.user_id),
                _ => {
                    let message = format!(
                        "unable to subscribe to channel {}; the auth endpoint returned no channel_data with a user_id",
                        crate::error::quoted(channel)
                    );
                    fail_channel(channel, entry, None, message, &mut self.actions);
                    return;
                }
            }
        }
        entry.step = Step::AwaitingBroker;
        let frame = Event::subscribe_frame(channel, Some(&auth.auth), auth.channel_data.as_deref());
        self.send(&frame);
    }

    /// The auth endpoint refused `channel` (or could not be reached): the
    /// channel is `Failed` with a [`Notice::SubscriptionError`] carrying
    /// `status` and `message` as given. Stale results are ignored.
    pub fn auth_failed(
        &mut self,
        now_ms: u64,
        channel: &str,
        socket_id: &str,
        status: Option<u16>,
        message: &str,
    ) {
        self.catch_up(now_ms);
        let Socket::Established { socket_id: current } = &self.socket else {
            return;
        };
        let Some(entry) = self.channels.get_mut(channel) else {
            return;
        };
        let expected = Step::Authorizing {
            socket_id: socket_id.to_owned(),
        };
        if entry.state == ChannelState::Subscribing
            && entry.step == expected
            && socket_id == current
        {
            fail_channel(
                channel,
                entry,
                status,
                message.to_owned(),
                &mut self.actions,
            );
        }
    }

    /// The user authentication endpoint signed the user in on `socket_id`:
    /// sends `pusher:signin`. Stale results are ignored.
    pub fn user_auth_succeeded(&mut self, now_ms: u64, socket_id: &str, auth: UserAuth) {
        self.catch_up(now_ms);
        if self.take_user_auth(socket_id) {
            self.send(&Event::signin_frame(&auth.auth, &auth.user_data));
        }
    }

    /// The user authentication endpoint refused: a [`Notice::Error`] with the
    /// HTTP `status` as its code and `message` as given. Stale results are ignored.
    pub fn user_auth_failed(
        &mut self,
        now_ms: u64,
        socket_id: &str,
        status: Option<u16>,
        message: &str,
    ) {
        self.catch_up(now_ms);
        if self.take_user_auth(socket_id) {
            self.notify(Notice::Error {
                code: status,
                message: message.to_owned(),
            });
        }
    }

    /// Sends client event `event` on `channel` at once (the [`Action::Send`] is
    /// queued before this returns), with `data` as plain JSON as pusher-js
    /// sends it. Fails, in this order of checks, when client events are
    /// disabled, the name lacks the `client-` prefix (or is over 200 bytes), the
    /// channel is not private or presence, the subscription is not
    /// acknowledged, or `data` is over 10 240 bytes.
    pub fn trigger(&mut self, channel: &str, event: &str, data: Value) -> Result<(), Error> {
        self.trigger_json(channel, event, &data.to_string())
    }

    /// [`trigger`](Self::trigger) with `data` as JSON text, as the browser
    /// hands it over: checked and measured as text, never built into a value,
    /// and sent as written. Text that is not one JSON value is
    /// [`Error::InvalidEventData`], checked before the others.
    pub fn trigger_json(&mut self, channel: &str, event: &str, data: &str) -> Result<(), Error> {
        // A string is measured by its text and sent as the JSON text of that
        // text (as encode_inline writes it); anything else as written.
        let string = if data.trim_start().starts_with('"') {
            match crate::json::from_str(data) {
                Ok(Value::String(text)) => Some(text),
                _ => None,
            }
        } else {
            None
        };
        if string.is_none() && !is_json(data) {
            return Err(Error::InvalidEventData {
                event: event.to_owned(),
                reason: "the data is not JSON-serialisable".to_owned(),
            });
        }
        if !self.options.client_events {
            return Err(Error::ClientEventsDisabled {
                event: event.to_owned(),
            });
        }
        if !event.starts_with(CLIENT_EVENT_PREFIX) {
            return Err(Error::InvalidEventName {
                event: event.to_owned(),
                reason: format!(
                    "a client event name must start with {}",
                    crate::error::quoted(CLIENT_EVENT_PREFIX)
                ),
            });
        }
        if event.len() > MAX_EVENT_NAME_LEN {
            return Err(Error::InvalidEventName {
                event: event.to_owned(),
                reason: format!(
                    "it has {} bytes, more than {MAX_EVENT_NAME_LEN}",
                    event.len()
                ),
            });
        }
        match ChannelKind::of(channel) {
            ChannelKind::Private | ChannelKind::Presence => {}
            ChannelKind::Public | ChannelKind::PrivateEncrypted => {
                return Err(Error::WrongChannelKind {
                    channel: channel.to_owned(),
                    expected: "private or presence",
                })
            }
        }
        let subscribed = self.channel_state(channel) == Some(ChannelState::Subscribed)
            && matches!(self.socket, Socket::Established { .. });
        if !subscribed {
            return Err(Error::NotSubscribed {
                channel: channel.to_owned(),
                event: event.to_owned(),
            });
        }
        let size = string.as_ref().map_or(data.len(), String::len);
        if size > MAX_CLIENT_EVENT_DATA_BYTES {
            return Err(Error::PayloadTooLarge {
                event: event.to_owned(),
                size,
                limit: MAX_CLIENT_EVENT_DATA_BYTES,
            });
        }
        let text = match string {
            Some(text) => Frame::new(event)
                .with_channel(channel)
                .with_data(Value::String(text))
                .encode_inline(),
            None => write_frame(event, Some(channel), Some(data), None),
        };
        self.push(Action::Send { text });
        Ok(())
    }

    // ---- socket lifecycle -------------------------------------------------

    fn open_socket(&mut self, now_ms: u64) {
        self.cancel_timer(Timer::Reconnect);
        self.socket = Socket::Opening;
        self.signed_in = false;
        self.push(Action::OpenSocket {
            url: self.options.socket_url(),
        });
        self.start_timer(now_ms, Timer::Pong, self.options.pong_timeout_ms);
    }

    /// Connects at once when waiting out a backoff delay.
    fn retry_if_waiting(&mut self, now_ms: u64) {
        let waiting = self.socket == Socket::None
            && self.deadlines[Timer::Reconnect.index()].is_some()
            && matches!(
                self.state,
                ConnectionState::Connecting | ConnectionState::Unavailable
            );
        if waiting {
            self.open_socket(now_ms);
        }
    }

    fn schedule_backoff(&mut self, now_ms: u64) {
        let bound = backoff::bound(
            self.options.backoff_base_ms,
            self.options.backoff_max_ms,
            self.attempt,
        );
        let delay = self.jitter.up_to(bound);
        self.attempt = self.attempt.saturating_add(1);
        self.start_timer(now_ms, Timer::Reconnect, delay);
    }

    /// Forgets the socket and everything tied to it; channels wait for the next
    /// connection.
    fn forget_socket(&mut self) {
        self.socket = Socket::None;
        self.awaiting_pong = false;
        self.user_auth = None;
        for entry in self.channels.values_mut() {
            if matches!(
                entry.state,
                ChannelState::Subscribing | ChannelState::Subscribed
            ) {
                entry.state = ChannelState::Subscribing;
                entry.await_connection();
            }
        }
    }

    /// The machine gives up on its socket itself: close it, then go on as if
    /// the broker had closed it.
    fn abandon_socket(&mut self, now_ms: u64, reason: String, next: Next) {
        self.push(Action::CloseSocket {
            code: CLOSE_NORMAL,
            reason: reason.clone(),
        });
        self.connection_lost(now_ms, reason, next);
    }

    fn connection_lost(&mut self, now_ms: u64, reason: String, next: Next) {
        let was_connected = self.state == ConnectionState::Connected;
        self.forget_socket();
        self.cancel_timer(Timer::Activity);
        self.cancel_timer(Timer::Pong);
        if next == Next::Fail {
            self.cancel_timer(Timer::Reconnect);
            self.cancel_timer(Timer::Unavailable);
            self.set_state(ConnectionState::Failed, Some(reason));
            return;
        }
        if was_connected {
            self.set_state(ConnectionState::Connecting, Some(reason));
            self.start_timer(
                now_ms,
                Timer::Unavailable,
                self.options.unavailable_timeout_ms,
            );
        }
        if next == Next::Now {
            self.open_socket(now_ms);
        } else {
            self.schedule_backoff(now_ms);
        }
    }

    fn establish(&mut self, now_ms: u64, socket_id: String, activity_timeout_secs: u32) {
        if !matches!(self.socket, Socket::Opening | Socket::Open) {
            return;
        }
        self.socket = Socket::Established {
            socket_id: socket_id.clone(),
        };
        self.attempt = 0;
        self.awaiting_pong = false;
        self.activity_ms = self.effective_activity_ms(activity_timeout_secs);
        self.cancel_timer(Timer::Pong);
        self.cancel_timer(Timer::Reconnect);
        self.cancel_timer(Timer::Unavailable);
        self.start_timer(now_ms, Timer::Activity, self.activity_ms);
        self.set_state(ConnectionState::Connected, None);
        if self.options.user_authentication {
            self.user_auth = Some(socket_id.clone());
            self.push(Action::AuthenticateUser {
                socket_id: socket_id.clone(),
            });
        }
        for (name, entry) in &mut self.channels {
            if entry.state == ChannelState::Subscribing {
                begin_subscription(name, entry, &socket_id, &mut self.actions);
            }
        }
    }

    /// The smaller of the server's timeout and the option; a 0 counts as unset.
    fn effective_activity_ms(&self, server_secs: u32) -> u64 {
        let server = match u64::from(server_secs) {
            0 => DEFAULT_SERVER_ACTIVITY_MS,
            secs => secs.saturating_mul(1_000),
        };
        match self.options.activity_timeout_ms {
            Some(ms) if ms > 0 => server.min(ms),
            _ => server,
        }
    }

    fn take_user_auth(&mut self, socket_id: &str) -> bool {
        let current =
            self.user_auth.as_deref() == Some(socket_id) && self.socket_id() == Some(socket_id);
        if current {
            self.user_auth = None;
        }
        current
    }

    // ---- time ----------------------------------------------------------------

    /// True when the established socket has been silent for longer than the
    /// activity and pong timeouts together: its ping or pong timer must have
    /// been throttled, and the socket is presumed dead.
    fn presumed_dead(&self, now_ms: u64) -> bool {
        matches!(self.socket, Socket::Established { .. })
            && now_ms.saturating_sub(self.last_received_ms)
                > self
                    .activity_ms
                    .saturating_add(self.options.pong_timeout_ms)
    }

    /// Runs on every input: replaces a socket presumed dead, then runs every
    /// timer whose deadline has passed (a throttled tab delivers them late, if
    /// at all).
    fn catch_up(&mut self, now_ms: u64) {
        if self.presumed_dead(now_ms) {
            let silent = now_ms.saturating_sub(self.last_received_ms);
            self.abandon_socket(
                now_ms,
                format!("nothing heard from the server for {silent} ms; reconnecting"),
                Next::Now,
            );
        }
        for timer in [
            Timer::Unavailable,
            Timer::Reconnect,
            Timer::Pong,
            Timer::Activity,
        ] {
            let overdue = self.deadlines[timer.index()].is_some_and(|deadline| deadline < now_ms);
            if overdue {
                self.cancel_timer(timer);
                self.run_timer(now_ms, timer);
            }
        }
    }

    fn run_timer(&mut self, now_ms: u64, timer: Timer) {
        match timer {
            Timer::Reconnect => {
                let waiting = matches!(
                    self.state,
                    ConnectionState::Connecting | ConnectionState::Unavailable
                );
                if self.socket == Socket::None && waiting {
                    self.open_socket(now_ms);
                }
            }
            Timer::Unavailable => {
                if self.state == ConnectionState::Connecting {
                    let reason = format!(
                        "no connection for {} ms; still trying",
                        self.options.unavailable_timeout_ms
                    );
                    self.set_state(ConnectionState::Unavailable, Some(reason));
                }
            }
            Timer::Pong => match self.socket {
                Socket::Opening | Socket::Open => {
                    let reason = format!(
                        "the server did not complete the handshake within {} ms",
                        self.options.pong_timeout_ms
                    );
                    self.abandon_socket(now_ms, reason, Next::Backoff);
                }
                Socket::Established { .. } if self.awaiting_pong => {
                    let reason = format!(
                        "no pong from the server within {} ms; reconnecting",
                        self.options.pong_timeout_ms
                    );
                    self.abandon_socket(now_ms, reason, Next::Now);
                }
                Socket::Established { .. } | Socket::None => {}
            },
            Timer::Activity => {
                if matches!(self.socket, Socket::Established { .. }) && !self.awaiting_pong {
                    let silent = now_ms.saturating_sub(self.last_received_ms);
                    if silent >= self.activity_ms {
                        self.ping(now_ms);
                    } else {
                        self.start_timer(now_ms, Timer::Activity, self.activity_ms - silent);
                    }
                }
            }
        }
    }

    fn ping(&mut self, now_ms: u64) {
        self.send(&Event::ping_frame());
        self.awaiting_pong = true;
        self.start_timer(now_ms, Timer::Pong, self.options.pong_timeout_ms);
    }

    fn start_timer(&mut self, now_ms: u64, timer: Timer, delay_ms: u64) {
        self.deadlines[timer.index()] = Some(now_ms.saturating_add(delay_ms));
        self.push(Action::StartTimer { timer, delay_ms });
    }

    fn cancel_timer(&mut self, timer: Timer) {
        if self.deadlines[timer.index()].take().is_some() {
            self.push(Action::CancelTimer { timer });
        }
    }

    // ---- frames from the server --------------------------------------------

    fn handle_event(&mut self, now_ms: u64, event: Event) {
        match event {
            Event::ConnectionEstablished {
                socket_id,
                activity_timeout,
            } => self.establish(now_ms, socket_id, activity_timeout),
            Event::Error { message, code } => self.broker_error(now_ms, code, message),
            Event::Ping => self.send(&Event::pong_frame()),
            Event::Pong => {}
            Event::SubscriptionSucceeded { channel, presence } => {
                self.subscription_succeeded(channel, presence)
            }
            Event::SubscriptionError {
                channel,
                error_type,
                error,
                status,
            } => {
                let message = match (error_type, error) {
                    (Some(kind), Some(error)) => format!("{kind}: {error}"),
                    (None, Some(text)) | (Some(text), None) => text,
                    (None, None) => "the broker refused the subscription".to_owned(),
                };
                if let Some(entry) = self.channels.get_mut(&channel) {
                    if entry.state == ChannelState::Subscribing {
                        fail_channel(&channel, entry, status, message, &mut self.actions);
                    }
                }
            }
            Event::MemberAdded {
                channel,
                user_id,
                user_info,
            } => {
                let user_info = user_info.filter(|info| !info.is_null());
                if let Some(members) = self.subscribed_members(&channel) {
                    members.members.insert(user_id.clone(), user_info.clone());
                    self.notify(Notice::MemberAdded {
                        channel,
                        user_id,
                        user_info,
                    });
                }
            }
            Event::MemberRemoved { channel, user_id } => {
                let removed = self
                    .subscribed_members(&channel)
                    .and_then(|members| members.members.remove(&user_id));
                if let Some(user_info) = removed {
                    self.notify(Notice::MemberRemoved {
                        channel,
                        user_id,
                        user_info,
                    });
                }
            }
            Event::SigninSuccess { user_data } => {
                self.signed_in = true;
                self.notify(Notice::SignedIn { user_data });
            }
            Event::SubscriptionCount {
                channel,
                subscription_count,
            } => {
                // pusher-js shows this one under its public name.
                let data = format!("{{\"subscription_count\":{subscription_count}}}");
                self.deliver(
                    Some(channel),
                    "pusher:subscription_count".to_owned(),
                    Some(data),
                    None,
                );
            }
            // Delivered as framed (see `socket_message`).
            Event::CacheMiss { .. } | Event::WatchlistEvents { .. } => {}
            Event::Custom(frame) => {
                if !frame.event.starts_with(INTERNAL_EVENT_PREFIX) {
                    self.deliver_frame(frame);
                }
            }
            // Client-to-broker events: a broker never sends them.
            Event::Subscribe { .. } | Event::Unsubscribe { .. } | Event::Signin { .. } => {}
        }
    }

    /// `pusher:error`: always reported. During the handshake a code in a
    /// closing range acts at once, as pusher-js does; once established the
    /// socket's own close code decides.
    fn broker_error(&mut self, now_ms: u64, code: Option<u16>, message: String) {
        self.notify(Notice::Error {
            code,
            message: message.clone(),
        });
        if !matches!(self.socket, Socket::Opening | Socket::Open) {
            return;
        }
        let Some(code) = code else {
            return;
        };
        let next = match close_action(code) {
            CloseAction::KeepSocket => return,
            CloseAction::Fail => Next::Fail,
            CloseAction::Backoff | CloseAction::ReconnectNow => Next::Backoff,
        };
        self.abandon_socket(now_ms, describe_close(code, &message), next);
    }

    fn subscription_succeeded(&mut self, channel: String, presence: Option<PresenceSnapshot>) {
        let Some(entry) = self.channels.get_mut(&channel) else {
            return;
        };
        if entry.state != ChannelState::Subscribing || entry.step != Step::AwaitingBroker {
            return;
        }
        entry.state = ChannelState::Subscribed;
        if let Some(members) = &mut entry.members {
            members.members = presence.map(member_map).unwrap_or_default();
        }
        self.notify(Notice::Subscribed { channel });
    }

    fn subscribed_members(&mut self, channel: &str) -> Option<&mut Members> {
        let entry = self.channels.get_mut(channel)?;
        if entry.state != ChannelState::Subscribed {
            return None;
        }
        entry.members.as_mut()
    }

    /// A protocol event the app may want, its data written out as JSON text.
    fn deliver_frame(&mut self, frame: Frame) {
        let data = frame.data.as_ref().map(Value::to_string);
        self.deliver(frame.channel, frame.event, data, frame.user_id);
    }

    /// An event for the app: on a channel only while the channel is known.
    fn deliver(
        &mut self,
        channel: Option<String>,
        event: String,
        data: Option<String>,
        user_id: Option<String>,
    ) {
        if let Some(name) = &channel {
            if !self.channels.contains_key(name) {
                return;
            }
        }
        self.notify(Notice::Message {
            channel,
            event,
            data,
            user_id,
        });
    }

    // ---- output --------------------------------------------------------------

    fn set_state(&mut self, current: ConnectionState, reason: Option<String>) {
        let previous = self.state;
        if previous != current {
            self.state = current;
            self.notify(Notice::StateChange {
                previous,
                current,
                reason,
            });
        }
    }

    fn send(&mut self, frame: &Frame) {
        self.push(Action::Send {
            text: frame.encode_inline(),
        });
    }

    fn notify(&mut self, notice: Notice) {
        self.push(Action::Notify(notice));
    }

    fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }
}

/// Starts the subscription of `entry` on the established socket `socket_id`.
fn begin_subscription(
    name: &str,
    entry: &mut Channel,
    socket_id: &str,
    actions: &mut Fifo<Action>,
) {
    if entry.kind.requires_auth() {
        entry.step = Step::Authorizing {
            socket_id: socket_id.to_owned(),
        };
        actions.push_back(Action::Authorize {
            channel: name.to_owned(),
            socket_id: socket_id.to_owned(),
        });
    } else {
        entry.step = Step::AwaitingBroker;
        // pusher-js sends an empty auth for public channels; so do we, so that
        // every broker that accepts pusher-js accepts us.
        let frame = Event::subscribe_frame(name, Some(""), None);
        actions.push_back(Action::Send {
            text: frame.encode_inline(),
        });
    }
}

fn fail_channel(
    name: &str,
    entry: &mut Channel,
    status: Option<u16>,
    message: String,
    actions: &mut Fifo<Action>,
) {
    entry.state = ChannelState::Failed;
    entry.await_connection();
    actions.push_back(Action::Notify(Notice::SubscriptionError {
        channel: name.to_owned(),
        status,
        message,
    }));
}

/// The members of a `subscription_succeeded` snapshot; null info is no info.
fn member_map(snapshot: PresenceSnapshot) -> VecMap<String, Option<Value>> {
    let PresenceSnapshot { ids, mut hash, .. } = snapshot;
    let mut members = VecMap::new();
    for id in ids {
        let info = hash.remove(&id).filter(|info| !info.is_null());
        members.insert(id, info);
    }
    for (id, info) in hash {
        members.get_or_insert_with(id, || Some(info).filter(|info| !info.is_null()));
    }
    members
}

fn describe_close(code: u16, reason: &str) -> String {
    if reason.is_empty() {
        format!("the connection closed with code {code}")
    } else {
        format!("the connection closed with code {code}: {reason}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::json;

    fn established(options: Options) -> Connection {
        let mut connection = Connection::new(options, 7);
        connection.connect(0);
        connection.socket_opened(10);
        connection.socket_message(
            20,
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":120}"}"#,
        );
        while connection.poll_action().is_some() {}
        connection
    }

    #[test]
    fn effective_activity_timeout_is_the_smaller() {
        let mut options = Options::new("k", "h");
        options.activity_timeout_ms = Some(60_000);
        let connection = Connection::new(options.clone(), 1);
        assert_eq!(connection.effective_activity_ms(120), 60_000);
        assert_eq!(connection.effective_activity_ms(30), 30_000);
        assert_eq!(connection.effective_activity_ms(0), 60_000);
        options.activity_timeout_ms = None;
        let connection = Connection::new(options.clone(), 1);
        assert_eq!(connection.effective_activity_ms(0), 120_000);
        assert_eq!(connection.effective_activity_ms(45), 45_000);
        options.activity_timeout_ms = Some(0);
        let connection = Connection::new(options, 1);
        assert_eq!(
            connection.effective_activity_ms(u32::MAX),
            u64::from(u32::MAX) * 1_000
        );
    }

    #[test]
    fn member_map_merges_ids_and_hash() {
        let mut hash = crate::json::Map::new();
        hash.insert("a".to_owned(), json!({"n": 1}));
        hash.insert("b".to_owned(), Value::Null);
        hash.insert("c".to_owned(), json!(3));
        let snapshot = PresenceSnapshot {
            ids: vec!["a".into(), "b".into(), "d".into()],
            hash,
            count: 3,
        };
        let members = member_map(snapshot);
        assert_eq!(members.len(), 4);
        assert_eq!(members.get("a"), Some(&Some(json!({"n": 1}))));
        assert_eq!(members.get("b"), Some(&None));
        assert_eq!(members.get("c"), Some(&Some(json!(3))));
        assert_eq!(members.get("d"), Some(&None));
    }

    #[test]
    fn timers_fired_when_not_armed_are_ignored() {
        let mut connection = established(Options::new("k", "h"));
        for timer in [Timer::Reconnect, Timer::Pong, Timer::Unavailable] {
            connection.timer_fired(30, timer);
            assert_eq!(connection.poll_action(), None, "{timer:?}");
        }
        assert_eq!(connection.state(), ConnectionState::Connected);
    }

    #[test]
    fn a_pong_cancels_the_pong_timer_and_rearms_activity() {
        let mut connection = established(Options::new("k", "h"));
        connection.timer_fired(120_020, Timer::Activity);
        assert!(connection.awaiting_pong);
        while connection.poll_action().is_some() {}
        connection.socket_message(120_500, r#"{"event":"pusher:pong","data":"{}"}"#);
        assert!(!connection.awaiting_pong);
        assert_eq!(connection.deadlines[Timer::Pong.index()], None);
        assert_eq!(connection.deadlines[Timer::Activity.index()], Some(240_500));
    }

    #[test]
    fn handshake_error_with_a_fail_code_fails_at_once() {
        let mut connection = Connection::new(Options::new("k", "h"), 1);
        connection.connect(0);
        connection.socket_opened(5);
        connection.socket_message(
            6,
            r#"{"event":"pusher:error","data":{"code":4001,"message":"App key k not in this cluster"}}"#,
        );
        assert_eq!(connection.state(), ConnectionState::Failed);
        assert_eq!(connection.socket, Socket::None);
        assert_eq!(connection.deadlines, [None; 4]);
    }

    #[test]
    fn a_second_connection_established_is_ignored() {
        let mut connection = established(Options::new("k", "h"));
        connection.socket_message(
            40,
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"9.9\"}"}"#,
        );
        assert_eq!(connection.socket_id(), Some("1.2"));
    }
}
