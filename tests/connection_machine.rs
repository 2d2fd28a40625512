#![cfg(not(target_arch = "wasm32"))]
// Random operations and never-panics properties discard results on purpose.
#![allow(clippy::let_underscore_must_use)]
//! The connection state machine on fake time: a small driver plays the
//! boundary (one socket, timers that fire at their deadlines) and the tests
//! assert on the actions and notices that come out, not on internals.

use std::collections::{HashMap, HashSet};

use domvia_realtime::connection::{
    Action, ChannelState, Connection, ConnectionState, Notice, Options, Timer,
};
use domvia_realtime::json::Value;
use domvia_realtime::json_value as json;
use domvia_realtime::protocol::{ChannelAuth, Event, Frame, PresenceSnapshot, UserAuth};
use proptest::prelude::*;

// ---- the driver -----------------------------------------------------------

/// Plays the boundary: runs the actions, keeps one socket and the timers, and
/// moves fake time.
struct Driver {
    conn: Connection,
    now: u64,
    socket_open: bool,
    timers: HashMap<Timer, u64>,
}

impl Driver {
    fn new(options: Options, seed: u64) -> Driver {
        Driver {
            conn: Connection::new(options, seed),
            now: 0,
            socket_open: false,
            timers: HashMap::new(),
        }
    }

    fn with_defaults() -> Driver {
        Driver::new(Options::new("app-key", "ws.example.com"), 7)
    }

    /// The defaults, with client events allowed (they are off by default).
    fn with_client_events() -> Driver {
        let mut options = Options::new("app-key", "ws.example.com");
        options.client_events = true;
        Driver::new(options, 7)
    }

    /// Drains the machine, running each action on the fake boundary.
    fn drain(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(action) = self.conn.poll_action() {
            match &action {
                Action::OpenSocket { .. } => self.socket_open = true,
                Action::CloseSocket { .. } => self.socket_open = false,
                Action::StartTimer { timer, delay_ms } => {
                    self.timers
                        .insert(*timer, self.now.saturating_add(*delay_ms));
                }
                Action::CancelTimer { timer } => {
                    self.timers.remove(timer);
                }
                Action::Send { .. } => assert!(self.socket_open, "send without a socket"),
                _ => {}
            }
            out.push(action);
        }
        out
    }

    fn connect(&mut self) -> Vec<Action> {
        self.conn.connect(self.now);
        self.drain()
    }

    fn opened(&mut self) -> Vec<Action> {
        self.conn.socket_opened(self.now);
        self.drain()
    }

    fn message(&mut self, text: &str) -> Vec<Action> {
        self.conn.socket_message(self.now, text);
        self.drain()
    }

    fn server(&mut self, event: Event) -> Vec<Action> {
        self.message(&event.to_frame().encode())
    }

    /// Opens the pending socket and has the broker establish it.
    fn establish_with(&mut self, socket_id: &str, activity_timeout: u32) -> Vec<Action> {
        let mut out = self.opened();
        out.extend(self.server(Event::ConnectionEstablished {
            socket_id: socket_id.into(),
            activity_timeout,
        }));
        out
    }

    fn establish(&mut self, socket_id: &str) -> Vec<Action> {
        self.establish_with(socket_id, 120)
    }

    fn closed(&mut self, code: u16, reason: &str) -> Vec<Action> {
        self.socket_open = false;
        self.conn.socket_closed(self.now, code, reason);
        self.drain()
    }

    /// Jumps to `timer`'s deadline and fires it.
    fn fire(&mut self, timer: Timer) -> Vec<Action> {
        let deadline = *self
            .timers
            .get(&timer)
            .unwrap_or_else(|| panic!("{timer:?} is not running"));
        self.now = self.now.max(deadline);
        self.fire_late(timer)
    }

    /// Fires `timer` now, whatever its deadline (a throttled tab).
    fn fire_late(&mut self, timer: Timer) -> Vec<Action> {
        self.timers.remove(&timer);
        self.conn.timer_fired(self.now, timer);
        self.drain()
    }

    /// Moves time forward by `ms`, firing timers at their deadlines in order.
    fn advance(&mut self, ms: u64) -> Vec<Action> {
        let until = self.now.saturating_add(ms);
        let mut out = Vec::new();
        // A machine that keeps retrying fires timers forever; a few hundred
        // firings cover any test.
        for _ in 0..500 {
            let next = self
                .timers
                .iter()
                .filter(|(_, deadline)| **deadline <= until)
                .min_by_key(|(timer, deadline)| (**deadline, format!("{timer:?}")))
                .map(|(timer, deadline)| (*timer, *deadline));
            let Some((timer, deadline)) = next else {
                break;
            };
            self.now = self.now.max(deadline);
            out.extend(self.fire_late(timer));
        }
        self.now = until;
        out
    }

    fn subscribe(&mut self, channel: &str) -> Vec<Action> {
        self.conn.subscribe(self.now, channel).unwrap();
        self.drain()
    }

    fn auth_ok(
        &mut self,
        channel: &str,
        socket_id: &str,
        channel_data: Option<&str>,
    ) -> Vec<Action> {
        let auth = ChannelAuth {
            auth: format!("app-key:{}", "a".repeat(64)),
            channel_data: channel_data.map(str::to_owned),
        };
        self.conn.auth_succeeded(self.now, channel, socket_id, auth);
        self.drain()
    }

    /// Subscribes to `channel` on the established connection and has the broker
    /// acknowledge it.
    fn subscribed(&mut self, channel: &str) {
        let socket_id = self.conn.socket_id().unwrap().to_owned();
        let actions = self.subscribe(channel);
        if channel.starts_with("private-") {
            assert!(has_authorize(&actions, channel, &socket_id));
            self.auth_ok(channel, &socket_id, None);
        }
        self.server(Event::SubscriptionSucceeded {
            channel: channel.into(),
            presence: None,
        });
        assert_eq!(
            self.conn.channel_state(channel),
            Some(ChannelState::Subscribed)
        );
    }
}

fn server_text(event: Event) -> String {
    event.to_frame().encode()
}

fn notices(actions: &[Action]) -> Vec<Notice> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Notify(notice) => Some(notice.clone()),
            _ => None,
        })
        .collect()
}

fn state_changes(actions: &[Action]) -> Vec<(ConnectionState, ConnectionState, Option<String>)> {
    notices(actions)
        .into_iter()
        .filter_map(|notice| match notice {
            Notice::StateChange {
                previous,
                current,
                reason,
            } => Some((previous, current, reason)),
            _ => None,
        })
        .collect()
}

fn sent(actions: &[Action]) -> Vec<Frame> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send { text } => Some(Frame::decode(text).unwrap()),
            _ => None,
        })
        .collect()
}

fn sent_events(actions: &[Action]) -> Vec<String> {
    sent(actions).into_iter().map(|frame| frame.event).collect()
}

fn reconnect_delay(actions: &[Action]) -> Option<u64> {
    actions.iter().find_map(|action| match action {
        Action::StartTimer {
            timer: Timer::Reconnect,
            delay_ms,
        } => Some(*delay_ms),
        _ => None,
    })
}

fn opens(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|action| matches!(action, Action::OpenSocket { .. }))
        .count()
}

fn closes(actions: &[Action]) -> Vec<(u16, String)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::CloseSocket { code, reason } => Some((*code, reason.clone())),
            _ => None,
        })
        .collect()
}

fn started(actions: &[Action], timer: Timer) -> Option<u64> {
    actions.iter().find_map(|action| match action {
        Action::StartTimer { timer: t, delay_ms } if *t == timer => Some(*delay_ms),
        _ => None,
    })
}

fn has_authorize(actions: &[Action], channel: &str, socket_id: &str) -> bool {
    actions.contains(&Action::Authorize {
        channel: channel.into(),
        socket_id: socket_id.into(),
    })
}

fn subscribe_frame(frame: &Frame) -> (String, Option<String>, Option<String>) {
    match Event::from_frame(frame.clone()).unwrap() {
        Event::Subscribe {
            channel,
            auth,
            channel_data,
        } => (channel, auth, channel_data),
        other => panic!("not a subscribe: {other:?}"),
    }
}

fn bound(attempt: u32) -> u64 {
    (1_000u64 << attempt.min(20)).min(30_000)
}

// ---- connecting -------------------------------------------------------------

#[test]
fn connect_handshake_and_url() {
    let mut d = Driver::with_defaults();
    assert_eq!(d.conn.state(), ConnectionState::Initialized);
    assert_eq!(d.conn.socket_id(), None);
    let actions = d.connect();
    let url = format!(
        "ws://ws.example.com/app/app-key?protocol=7&client=domvia-js&version={}&flash=false",
        domvia_realtime::VERSION
    );
    assert_eq!(
        actions,
        vec![
            Action::Notify(Notice::StateChange {
                previous: ConnectionState::Initialized,
                current: ConnectionState::Connecting,
                reason: None,
            }),
            Action::StartTimer {
                timer: Timer::Unavailable,
                delay_ms: 10_000,
            },
            Action::OpenSocket { url },
            // The handshake has its own deadline.
            Action::StartTimer {
                timer: Timer::Pong,
                delay_ms: 30_000,
            },
        ]
    );
    d.now = 40;
    d.opened();
    d.now = 50;
    let actions = d.server(Event::ConnectionEstablished {
        socket_id: "123.456".into(),
        activity_timeout: 120,
    });
    assert_eq!(
        state_changes(&actions),
        vec![(
            ConnectionState::Connecting,
            ConnectionState::Connected,
            None
        )]
    );
    assert!(actions.contains(&Action::CancelTimer {
        timer: Timer::Unavailable
    }));
    assert!(actions.contains(&Action::CancelTimer { timer: Timer::Pong }));
    assert_eq!(started(&actions, Timer::Activity), Some(120_000));
    assert_eq!(d.conn.state(), ConnectionState::Connected);
    assert_eq!(d.conn.socket_id(), Some("123.456"));
    // Already connected: connect() does nothing.
    assert_eq!(d.connect(), vec![]);
}

#[test]
fn url_with_tls_and_port() {
    let mut options = Options::new("key", "localhost");
    options.force_tls = true;
    options.port = Some(6001);
    let mut d = Driver::new(options, 1);
    let actions = d.connect();
    assert!(actions.contains(&Action::OpenSocket {
        url: format!(
            "wss://localhost:6001/app/key?protocol=7&client=domvia-js&version={}&flash=false",
            domvia_realtime::VERSION
        )
    }));
}

#[test]
fn handshake_timeout_backs_off() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.now = 100;
    let actions = d.opened();
    assert_eq!(started(&actions, Timer::Pong), Some(30_000));
    let actions = d.fire(Timer::Pong);
    assert_eq!(closes(&actions).len(), 1);
    assert!(reconnect_delay(&actions).is_some());
    assert_eq!(opens(&actions), 0);
}

// ---- backoff ----------------------------------------------------------------

#[test]
fn backoff_delays_stay_in_bounds_grow_then_cap_and_reset() {
    let mut max_seen = vec![0u64; 10];
    for seed in 0..200u64 {
        let mut d = Driver::new(Options::new("k", "h"), seed);
        d.connect();
        for attempt in 0..10u32 {
            let actions = d.closed(1006, "");
            let delay = reconnect_delay(&actions).expect("a reconnect timer");
            assert!(
                delay <= bound(attempt),
                "seed {seed} attempt {attempt}: {delay} > {}",
                bound(attempt)
            );
            assert_eq!(opens(&actions), 0, "backoff, not at once");
            max_seen[attempt as usize] = max_seen[attempt as usize].max(delay);
            let actions = d.fire(Timer::Reconnect);
            assert_eq!(opens(&actions), 1);
        }
        // Establishment resets the attempts: the next delay is within the base.
        d.establish("1.1");
        let delay = reconnect_delay(&d.closed(1006, "")).unwrap();
        assert!(delay <= 1_000, "seed {seed}: {delay}");
    }
    // The bound grows: each attempt's largest delay exceeds the previous bound
    // while it doubles, then stays under the cap.
    for attempt in 1..5 {
        assert!(
            max_seen[attempt] > bound(attempt as u32 - 1),
            "attempt {attempt}: {max_seen:?}"
        );
    }
    for (attempt, max) in max_seen.iter().enumerate().skip(5) {
        assert!(*max <= 30_000 && *max > 16_000, "attempt {attempt}: {max}");
    }
}

#[test]
fn jitter_varies_across_seeds_and_attempts() {
    let firsts: HashSet<u64> = (0..50u64)
        .map(|seed| {
            let mut d = Driver::new(Options::new("k", "h"), seed);
            d.connect();
            reconnect_delay(&d.closed(1006, "")).unwrap()
        })
        .collect();
    assert!(firsts.len() > 40, "{firsts:?}");
    let mut d = Driver::new(Options::new("k", "h"), 99);
    d.connect();
    let mut delays = HashSet::new();
    for _ in 0..8 {
        delays.insert(reconnect_delay(&d.closed(1006, "")).unwrap());
        d.fire(Timer::Reconnect);
    }
    assert!(delays.len() >= 7, "{delays:?}");
}

#[test]
fn custom_backoff_options() {
    let mut options = Options::new("k", "h");
    options.backoff_base_ms = 10;
    options.backoff_max_ms = 50;
    let mut d = Driver::new(options, 3);
    d.connect();
    for attempt in 0..20u32 {
        let delay = reconnect_delay(&d.closed(1006, "")).unwrap();
        assert!(delay <= (10u64 << attempt.min(10)).min(50));
        d.fire(Timer::Reconnect);
    }
}

// ---- close codes ------------------------------------------------------------

#[test]
fn close_4001_fails_with_the_reason_and_no_retry() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    d.subscribe("chat");
    let actions = d.closed(4001, "App key app-key not in this cluster");
    let changes = state_changes(&actions);
    assert_eq!(changes.len(), 1);
    let (previous, current, reason) = &changes[0];
    assert_eq!(
        (*previous, *current),
        (ConnectionState::Connected, ConnectionState::Failed)
    );
    let reason = reason.as_deref().unwrap();
    assert!(
        reason.contains("4001") && reason.contains("not in this cluster"),
        "{reason}"
    );
    assert_eq!(reconnect_delay(&actions), None);
    assert_eq!(opens(&actions), 0);
    assert!(d.timers.is_empty(), "{:?}", d.timers);
    assert_eq!(d.conn.socket_id(), None);
    // Nothing happens later.
    assert!(d.advance(10 * 60_000).is_empty());
    assert_eq!(d.conn.state(), ConnectionState::Failed);
    // An explicit connect() tries again, and resubscribes.
    let actions = d.connect();
    assert_eq!(opens(&actions), 1);
    let actions = d.establish("2.2");
    assert_eq!(sent_events(&actions), ["pusher:subscribe"]);
}

#[test]
fn close_4100_backs_off() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    let actions = d.closed(4100, "Over capacity");
    assert_eq!(opens(&actions), 0);
    assert!(reconnect_delay(&actions).unwrap() <= 1_000);
    assert_eq!(d.conn.state(), ConnectionState::Connecting);
    let changes = state_changes(&actions);
    assert!(changes[0].2.as_deref().unwrap().contains("4100"));
}

#[test]
fn close_4200_reconnects_at_once_then_backs_off_if_closed_before_established() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    let actions = d.closed(4200, "Generic reconnect immediately");
    assert_eq!(opens(&actions), 1);
    assert_eq!(reconnect_delay(&actions), None);
    assert_eq!(d.conn.state(), ConnectionState::Connecting);
    // The new socket is refused with 4200 again before it is established.
    d.opened();
    let actions = d.closed(4200, "again");
    assert_eq!(opens(&actions), 0);
    assert!(reconnect_delay(&actions).is_some());
    // And again: the backoff keeps growing instead of hammering.
    d.fire(Timer::Reconnect);
    let actions = d.closed(4201, "");
    assert_eq!(opens(&actions), 0);
    assert!(reconnect_delay(&actions).is_some());
}

#[test]
fn close_1006_backs_off() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    let actions = d.closed(1006, "");
    assert_eq!(
        state_changes(&actions),
        vec![(
            ConnectionState::Connected,
            ConnectionState::Connecting,
            Some("the connection closed with code 1006".into())
        )]
    );
    assert_eq!(opens(&actions), 0);
    assert!(reconnect_delay(&actions).is_some());
    assert_eq!(started(&actions, Timer::Unavailable), Some(10_000));
    let actions = d.fire(Timer::Reconnect);
    assert_eq!(opens(&actions), 1);
}

#[test]
fn handshake_pusher_error_acts_on_its_code() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.opened();
    let actions = d.server(Event::Error {
        message: "Application is over connection quota".into(),
        code: Some(4004),
    });
    assert_eq!(
        notices(&actions)[0],
        Notice::Error {
            code: Some(4004),
            message: "Application is over connection quota".into()
        }
    );
    assert_eq!(closes(&actions).len(), 1);
    assert_eq!(d.conn.state(), ConnectionState::Failed);
    // The socket's own close, if the boundary reports it anyway, changes nothing.
    assert!(d.closed(4004, "").is_empty());
    assert_eq!(d.conn.state(), ConnectionState::Failed);
}

// ---- unavailable, online, disconnect ---------------------------------------

#[test]
fn unavailable_after_the_timeout_while_retrying() {
    let mut d = Driver::with_defaults();
    d.connect();
    let mut became_unavailable_at = None;
    let mut retries_after = 0;
    for _ in 0..30 {
        let actions = d.closed(1006, "");
        let mut actions = actions;
        actions.extend(d.fire(Timer::Reconnect));
        for (_, current, reason) in state_changes(&actions) {
            if current == ConnectionState::Unavailable {
                assert!(reason.unwrap().contains("10000"));
                became_unavailable_at = Some(d.now);
            }
        }
        if became_unavailable_at.is_some() {
            retries_after += opens(&actions);
        }
        if d.now > 40_000 {
            break;
        }
    }
    let at = became_unavailable_at.expect("became unavailable");
    assert!(at >= 10_000, "{at}");
    assert!(retries_after >= 1, "kept retrying");
    assert_eq!(d.conn.state(), ConnectionState::Unavailable);
    let actions = d.establish("1.1");
    assert_eq!(
        state_changes(&actions),
        vec![(
            ConnectionState::Unavailable,
            ConnectionState::Connected,
            None
        )]
    );
}

#[test]
fn unavailable_when_the_first_socket_hangs() {
    let mut d = Driver::with_defaults();
    d.connect();
    let actions = d.advance(10_000);
    assert_eq!(state_changes(&actions)[0].1, ConnectionState::Unavailable);
}

#[test]
fn network_online_cuts_the_wait() {
    let mut d = Driver::with_defaults();
    d.connect();
    for _ in 0..5 {
        d.closed(1006, "");
        d.fire(Timer::Reconnect);
    }
    let actions = d.closed(1006, "");
    assert!(reconnect_delay(&actions).is_some());
    d.now += 1;
    d.conn.network_online(d.now);
    let actions = d.drain();
    assert_eq!(opens(&actions), 1);
    assert!(actions.contains(&Action::CancelTimer {
        timer: Timer::Reconnect
    }));
    assert!(!d.timers.contains_key(&Timer::Reconnect));
    // While a socket is opening there is nothing to cut.
    d.conn.network_online(d.now);
    assert_eq!(opens(&d.drain()), 0);
}

#[test]
fn network_online_while_connected_checks_the_socket() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    d.now += 1_000;
    d.conn.network_online(d.now);
    let actions = d.drain();
    assert_eq!(sent_events(&actions), ["pusher:ping"]);
    assert_eq!(started(&actions, Timer::Pong), Some(30_000));
    // No answer: the socket did not survive the network change.
    let actions = d.fire(Timer::Pong);
    assert_eq!(closes(&actions).len(), 1);
    assert_eq!(opens(&actions), 1);
}

#[test]
fn disconnect_stops_everything() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    d.subscribe("chat");
    let actions = d.closed(1006, "");
    assert!(reconnect_delay(&actions).is_some());
    d.fire(Timer::Reconnect);
    d.establish("2.2");
    let actions = {
        d.conn.disconnect(d.now);
        d.drain()
    };
    assert_eq!(
        closes(&actions),
        vec![(1000, "disconnected by the app".to_owned())]
    );
    assert_eq!(
        state_changes(&actions),
        vec![(
            ConnectionState::Connected,
            ConnectionState::Disconnected,
            None
        )]
    );
    assert!(d.timers.is_empty(), "{:?}", d.timers);
    assert_eq!(d.conn.socket_id(), None);
    // Stale socket events and timers change nothing.
    assert!(d.closed(1006, "").is_empty());
    assert!(d.message(&server_text(Event::Ping)).is_empty());
    assert!(d.opened().is_empty());
    for timer in Timer::ALL {
        assert!(d.fire_late(timer).is_empty());
    }
    d.conn.network_online(d.now);
    assert!(d.drain().is_empty());
    assert!(d.advance(3_600_000).is_empty());
    d.conn.disconnect(d.now);
    assert!(d.drain().is_empty());
    assert_eq!(d.conn.state(), ConnectionState::Disconnected);
    // The channel waits for the next connect().
    assert_eq!(
        d.conn.channel_state("chat"),
        Some(ChannelState::Subscribing)
    );
    d.connect();
    let actions = d.establish("3.3");
    assert_eq!(sent_events(&actions), ["pusher:subscribe"]);
}

#[test]
fn disconnect_while_waiting_to_reconnect() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.closed(1006, "");
    d.conn.disconnect(d.now);
    let actions = d.drain();
    assert!(closes(&actions).is_empty());
    assert!(actions.contains(&Action::CancelTimer {
        timer: Timer::Reconnect
    }));
    assert!(d.timers.is_empty());
}

// ---- keep-alive -------------------------------------------------------------

#[test]
fn activity_timeout_is_the_smaller_of_server_and_option() {
    let mut d = Driver::with_defaults();
    d.connect();
    assert_eq!(
        started(&d.establish_with("1.1", 30), Timer::Activity),
        Some(30_000)
    );
    let mut options = Options::new("k", "h");
    options.activity_timeout_ms = Some(20_000);
    let mut d = Driver::new(options, 1);
    d.connect();
    assert_eq!(
        started(&d.establish_with("1.1", 120), Timer::Activity),
        Some(20_000)
    );
}

#[test]
fn ping_after_silence_pong_resets_and_any_frame_counts() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish_with("1.1", 30);
    let t0 = d.now;
    // A frame 10 s in pushes the ping back.
    d.now = t0 + 10_000;
    d.message(&server_text(Event::Custom(Frame::new("app-event"))));
    let actions = d.fire(Timer::Activity);
    assert!(sent_events(&actions).is_empty());
    assert_eq!(started(&actions, Timer::Activity), Some(10_000));
    let actions = d.fire(Timer::Activity);
    assert_eq!(d.now, t0 + 40_000);
    assert_eq!(sent_events(&actions), ["pusher:ping"]);
    assert_eq!(
        sent(&actions)[0].encode_inline(),
        r#"{"event":"pusher:ping","data":{}}"#
    );
    assert_eq!(started(&actions, Timer::Pong), Some(30_000));
    // The pong arrives: the pong timer stops, the activity timer restarts.
    d.now += 500;
    let actions = d.server(Event::Pong);
    assert!(actions.contains(&Action::CancelTimer { timer: Timer::Pong }));
    assert_eq!(started(&actions, Timer::Activity), Some(30_000));
    // Any frame answers a ping just as well.
    let actions = d.fire(Timer::Activity);
    assert_eq!(sent_events(&actions), ["pusher:ping"]);
    d.now += 100;
    let actions = d.message(&server_text(Event::Custom(Frame::new("other"))));
    assert!(actions.contains(&Action::CancelTimer { timer: Timer::Pong }));
    assert_eq!(d.conn.state(), ConnectionState::Connected);
}

#[test]
fn the_server_pinging_gets_a_pong() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    let actions = d.server(Event::Ping);
    assert_eq!(
        sent(&actions)[0].encode_inline(),
        r#"{"event":"pusher:pong","data":{}}"#
    );
}

#[test]
fn pong_timeout_reconnects_at_once() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    d.subscribe("chat");
    d.fire(Timer::Activity);
    let actions = d.fire(Timer::Pong);
    assert_eq!(closes(&actions).len(), 1);
    assert_eq!(closes(&actions)[0].0, 1000);
    assert_eq!(opens(&actions), 1);
    assert_eq!(reconnect_delay(&actions), None);
    let changes = state_changes(&actions);
    assert_eq!(changes[0].1, ConnectionState::Connecting);
    assert!(changes[0].2.as_deref().unwrap().contains("pong"));
    let actions = d.establish("2.2");
    assert_eq!(sent_events(&actions), ["pusher:subscribe"]);
}

#[test]
fn a_late_timer_after_throttling_reconnects_at_once() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    // The tab slept: the activity timer fires minutes late.
    d.now += 5 * 60_000;
    let actions = d.fire_late(Timer::Activity);
    assert!(sent_events(&actions).is_empty(), "no pointless ping");
    assert_eq!(closes(&actions).len(), 1);
    assert_eq!(opens(&actions), 1);
    let changes = state_changes(&actions);
    assert_eq!(changes[0].1, ConnectionState::Connecting);
    assert!(changes[0].2.as_deref().unwrap().contains("300000 ms"));
    // The timer callback that never came is not needed either: any input will do.
    d.establish("2.2");
    d.now += 10 * 60_000;
    d.conn.subscribe(d.now, "chat").unwrap();
    let actions = d.drain();
    assert_eq!(opens(&actions), 1);
    assert_eq!(
        d.conn.channel_state("chat"),
        Some(ChannelState::Subscribing)
    );
}

#[test]
fn a_late_pong_timer_reconnects_at_once() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    d.fire(Timer::Activity);
    d.now += 10 * 60_000;
    let actions = d.fire_late(Timer::Pong);
    assert_eq!(closes(&actions).len(), 1);
    assert_eq!(opens(&actions), 1);
}

#[test]
fn overdue_reconnect_runs_on_any_input() {
    let mut d = Driver::with_defaults();
    d.connect();
    let delay = reconnect_delay(&d.closed(1006, "")).unwrap();
    d.now += delay + 1;
    d.conn.subscribe(d.now, "chat").unwrap();
    assert_eq!(opens(&d.drain()), 1);
}

#[test]
fn a_message_after_a_long_silence_is_proof_of_life() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    d.subscribe("chat");
    d.server(Event::SubscriptionSucceeded {
        channel: "chat".into(),
        presence: None,
    });
    d.now += 10 * 60_000;
    let actions = d.server(Event::Custom(
        Frame::new("news").with_channel("chat").with_data(json!(1)),
    ));
    assert_eq!(opens(&actions), 0);
    assert_eq!(notices(&actions).len(), 1);
    assert_eq!(d.conn.state(), ConnectionState::Connected);
}

// ---- channels ---------------------------------------------------------------

#[test]
fn public_subscribe_sends_what_pusher_js_sends() {
    let mut d = Driver::with_defaults();
    // Before connecting: queued.
    assert!(d.subscribe("chat").is_empty());
    assert_eq!(
        d.conn.channel_state("chat"),
        Some(ChannelState::Subscribing)
    );
    d.connect();
    let actions = d.establish("1.1");
    let texts: Vec<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        texts,
        [r#"{"event":"pusher:subscribe","data":{"auth":"","channel":"chat"}}"#]
    );
    let actions = d.server(Event::SubscriptionSucceeded {
        channel: "chat".into(),
        presence: None,
    });
    assert_eq!(
        notices(&actions),
        [Notice::Subscribed {
            channel: "chat".into()
        }]
    );
    assert_eq!(d.conn.channel_state("chat"), Some(ChannelState::Subscribed));
    assert_eq!(d.conn.members("chat"), None);
    // Subscribing again is a no-op.
    assert!(d.subscribe("chat").is_empty());
}

#[test]
fn invalid_channel_names_are_refused() {
    let mut d = Driver::with_defaults();
    for bad in ["", "a b", "private-", "x".repeat(201).as_str()] {
        let err = d.conn.subscribe(0, bad).unwrap_err();
        assert_eq!(err.code(), "invalid_channel_name");
    }
    assert!(d.drain().is_empty());
}

#[test]
fn every_channel_is_resubscribed_with_fresh_auth_and_stale_auth_is_ignored() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    d.subscribed("chat");
    d.subscribed("private-a");
    // One channel still waiting for its auth when the connection drops.
    let actions = d.subscribe("private-b");
    assert!(has_authorize(&actions, "private-b", "1.1"));
    let actions = d.subscribe("presence-c");
    assert!(has_authorize(&actions, "presence-c", "1.1"));

    d.closed(1006, "");
    for channel in ["chat", "private-a", "private-b", "presence-c"] {
        assert_eq!(
            d.conn.channel_state(channel),
            Some(ChannelState::Subscribing),
            "{channel}"
        );
    }
    // A result that arrives between sockets is stale.
    assert!(d.auth_ok("private-b", "1.1", None).is_empty());
    d.fire(Timer::Reconnect);
    let actions = d.establish("2.2");
    let subscribes: Vec<_> = sent(&actions).iter().map(subscribe_frame).collect();
    assert_eq!(subscribes, [("chat".to_owned(), Some(String::new()), None)]);
    for channel in ["private-a", "private-b", "presence-c"] {
        assert!(has_authorize(&actions, channel, "2.2"), "{channel}");
    }
    // The old socket's answer is ignored, the new one is used.
    assert!(d.auth_ok("private-b", "1.1", None).is_empty());
    d.conn
        .auth_failed(d.now, "private-a", "1.1", Some(403), "stale");
    assert!(d.drain().is_empty());
    let actions = d.auth_ok("private-b", "2.2", None);
    let (channel, auth, data) = subscribe_frame(&sent(&actions)[0]);
    assert_eq!(channel, "private-b");
    assert!(auth.unwrap().starts_with("app-key:"));
    assert_eq!(data, None);
    // A duplicate answer is ignored too.
    assert!(d.auth_ok("private-b", "2.2", None).is_empty());
}

#[test]
fn broker_subscription_error_fails_the_channel_without_reconnecting() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    d.subscribe("private-a");
    d.auth_ok("private-a", "1.1", None);
    let actions = d.server(Event::SubscriptionError {
        channel: "private-a".into(),
        error_type: Some("AuthError".into()),
        error: Some("Invalid signature".into()),
        status: Some(401),
    });
    assert_eq!(
        actions,
        vec![Action::Notify(Notice::SubscriptionError {
            channel: "private-a".into(),
            status: Some(401),
            message: "AuthError: Invalid signature".into(),
        })]
    );
    assert_eq!(
        d.conn.channel_state("private-a"),
        Some(ChannelState::Failed)
    );
    assert_eq!(d.conn.state(), ConnectionState::Connected);
    // Not retried after a reconnect.
    d.closed(1006, "");
    d.fire(Timer::Reconnect);
    let actions = d.establish("2.2");
    assert!(!has_authorize(&actions, "private-a", "2.2"));
    assert_eq!(
        d.conn.channel_state("private-a"),
        Some(ChannelState::Failed)
    );
    // Until the app subscribes again.
    let actions = d.subscribe("private-a");
    assert!(has_authorize(&actions, "private-a", "2.2"));
}

#[test]
fn endpoint_403_fails_the_channel_without_reconnecting() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    d.subscribe("presence-room");
    d.conn
        .auth_failed(d.now, "presence-room", "1.1", Some(403), "not a member");
    let actions = d.drain();
    assert_eq!(
        actions,
        vec![Action::Notify(Notice::SubscriptionError {
            channel: "presence-room".into(),
            status: Some(403),
            message: "not a member".into(),
        })]
    );
    assert_eq!(
        d.conn.channel_state("presence-room"),
        Some(ChannelState::Failed)
    );
    // The connection stays (the server is silent only for less than the activity timeout).
    assert!(d.advance(60_000).iter().all(|a| !matches!(
        a,
        Action::OpenSocket { .. } | Action::CloseSocket { .. } | Action::Authorize { .. }
    )));
}

#[test]
fn unsubscribe_sends_and_forgets() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    d.subscribed("chat");
    d.conn.unsubscribe(d.now, "chat");
    let actions = d.drain();
    assert_eq!(
        actions,
        vec![Action::Send {
            text: r#"{"event":"pusher:unsubscribe","data":{"channel":"chat"}}"#.into()
        }]
    );
    assert_eq!(d.conn.channel_state("chat"), None);
    // Late events for it are dropped.
    let actions = d.server(Event::Custom(Frame::new("news").with_channel("chat")));
    assert!(actions.is_empty());
    // A channel still waiting for auth leaves silently; its auth result is ignored.
    d.subscribe("private-x");
    d.conn.unsubscribe(d.now, "private-x");
    assert!(d.drain().is_empty());
    assert!(d.auth_ok("private-x", "1.1", None).is_empty());
    // Unknown channel: nothing.
    d.conn.unsubscribe(d.now, "nope");
    assert!(d.drain().is_empty());
}

// ---- presence ---------------------------------------------------------------

fn presence_snapshot() -> PresenceSnapshot {
    let mut hash = domvia_realtime::json::Map::new();
    hash.insert("u1".to_owned(), json!({"name": "Ada"}));
    hash.insert("u2".to_owned(), json!({"name": "Grace"}));
    PresenceSnapshot {
        ids: vec!["u1".into(), "u2".into()],
        hash,
        count: 2,
    }
}

#[test]
fn presence_members_me_added_removed() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    d.subscribe("presence-room");
    let channel_data = r#"{"user_id":"u1","user_info":{"name":"Ada"}}"#;
    let actions = d.auth_ok("presence-room", "1.1", Some(channel_data));
    let (_, _, data) = subscribe_frame(&sent(&actions)[0]);
    assert_eq!(data.as_deref(), Some(channel_data));
    let members = d.conn.members("presence-room").unwrap();
    assert_eq!(members.me.as_deref(), Some("u1"));
    assert_eq!(members.count(), 0);

    let actions = d.server(Event::SubscriptionSucceeded {
        channel: "presence-room".into(),
        presence: Some(presence_snapshot()),
    });
    assert_eq!(
        notices(&actions),
        [Notice::Subscribed {
            channel: "presence-room".into()
        }]
    );
    let members = d.conn.members("presence-room").unwrap();
    assert_eq!(members.count(), 2);
    assert_eq!(members.me.as_deref(), Some("u1"));
    assert_eq!(members.get("u2"), Some(&Some(json!({"name": "Grace"}))));

    let actions = d.server(Event::MemberAdded {
        channel: "presence-room".into(),
        user_id: "u3".into(),
        user_info: Some(json!({"name": "Linus"})),
    });
    assert_eq!(
        notices(&actions),
        [Notice::MemberAdded {
            channel: "presence-room".into(),
            user_id: "u3".into(),
            user_info: Some(json!({"name": "Linus"})),
        }]
    );
    assert_eq!(d.conn.members("presence-room").unwrap().count(), 3);

    let actions = d.server(Event::MemberRemoved {
        channel: "presence-room".into(),
        user_id: "u2".into(),
    });
    assert_eq!(
        notices(&actions),
        [Notice::MemberRemoved {
            channel: "presence-room".into(),
            user_id: "u2".into(),
            user_info: Some(json!({"name": "Grace"})),
        }]
    );
    assert_eq!(d.conn.members("presence-room").unwrap().count(), 2);
    // Removing a stranger says nothing.
    assert!(d
        .server(Event::MemberRemoved {
            channel: "presence-room".into(),
            user_id: "nobody".into(),
        })
        .is_empty());
    // Member events for other channels are ignored.
    assert!(d
        .server(Event::MemberAdded {
            channel: "presence-other".into(),
            user_id: "u9".into(),
            user_info: None,
        })
        .is_empty());
    // A drop forgets the members until the next snapshot.
    d.closed(1006, "");
    assert_eq!(d.conn.members("presence-room").unwrap().count(), 0);
}

#[test]
fn presence_auth_without_channel_data_fails_the_channel() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    d.subscribe("presence-room");
    let actions = d.auth_ok("presence-room", "1.1", None);
    assert!(sent(&actions).is_empty());
    assert!(matches!(
        &notices(&actions)[..],
        [Notice::SubscriptionError { status: None, .. }]
    ));
    assert_eq!(
        d.conn.channel_state("presence-room"),
        Some(ChannelState::Failed)
    );
}

// ---- client events ------------------------------------------------------------

#[test]
fn trigger_sends_at_once_with_inline_data() {
    let mut d = Driver::with_client_events();
    d.connect();
    d.establish("1.1");
    d.subscribed("private-chat.room.r1");
    d.conn
        .trigger(
            "private-chat.room.r1",
            "client-typing",
            json!({"user_id": "u1", "is_typing": true}),
        )
        .unwrap();
    // Queued before trigger returned: the first action waiting.
    assert_eq!(
        d.conn.poll_action(),
        Some(Action::Send {
            text: r#"{"event":"client-typing","channel":"private-chat.room.r1","data":{"is_typing":true,"user_id":"u1"}}"#
                .into()
        })
    );
    assert_eq!(d.conn.poll_action(), None);
}

#[test]
fn every_client_event_rule_has_its_code() {
    let mut d = Driver::with_client_events();
    d.connect();
    d.establish("1.1");
    d.subscribed("private-a");
    d.subscribed("chat");
    let code = |d: &mut Driver, channel: &str, event: &str, data: Value| {
        d.conn.trigger(channel, event, data).unwrap_err().code()
    };
    assert_eq!(
        code(&mut d, "private-a", "typing", json!({})),
        "invalid_event_name"
    );
    assert_eq!(
        code(
            &mut d,
            "private-a",
            &format!("client-{}", "x".repeat(200)),
            json!({})
        ),
        "invalid_event_name"
    );
    assert_eq!(
        code(&mut d, "chat", "client-x", json!({})),
        "wrong_channel_kind"
    );
    assert_eq!(
        code(&mut d, "private-encrypted-a", "client-x", json!({})),
        "wrong_channel_kind"
    );
    assert_eq!(
        code(&mut d, "private-b", "client-x", json!({})),
        "not_subscribed"
    );
    d.subscribe("private-c");
    assert_eq!(
        code(&mut d, "private-c", "client-x", json!({})),
        "not_subscribed"
    );
    // 10 240 bytes of data pass; one more does not.
    let fits = json!("x".repeat(10_240));
    d.conn.trigger("private-a", "client-x", fits).unwrap();
    assert_eq!(sent(&d.drain()).len(), 1);
    assert_eq!(
        code(&mut d, "private-a", "client-x", json!("x".repeat(10_241))),
        "payload_too_large"
    );
    assert_eq!(
        code(
            &mut d,
            "private-a",
            "client-x",
            json!({"t": "x".repeat(10_240)})
        ),
        "payload_too_large"
    );
    let err = d
        .conn
        .trigger("private-a", "client-x", json!("x".repeat(20_000)))
        .unwrap_err();
    assert!(err
        .to_string()
        .starts_with("unable to trigger event \"client-x\"; "));
    assert!(err.to_string().contains("20000 bytes"));
    // Not subscribed any more once the connection drops.
    d.closed(1006, "");
    assert_eq!(
        code(&mut d, "private-a", "client-x", json!({})),
        "not_subscribed"
    );
    assert!(sent(&d.drain()).is_empty());

    let mut options = Options::new("k", "h");
    options.client_events = false;
    let mut d = Driver::new(options, 1);
    d.connect();
    d.establish("1.1");
    d.subscribed("private-a");
    assert_eq!(
        code(&mut d, "private-a", "client-x", json!({})),
        "client_events_disabled"
    );
}

// ---- messages, errors, sign-in ----------------------------------------------

#[test]
fn channel_events_become_messages() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    d.subscribed("private-chat.room.r1");
    let actions = d.message(
        r#"{"event":"client-typing","channel":"private-chat.room.r1","data":"{\"is_typing\":true}","user_id":"u2"}"#,
    );
    assert_eq!(
        notices(&actions),
        [Notice::Message {
            channel: Some("private-chat.room.r1".into()),
            event: "client-typing".into(),
            data: Some(r#"{"is_typing":true}"#.into()),
            user_id: Some("u2".into()),
        }]
    );
    let actions = d.message(
        r#"{"event":"message.created","channel":"private-chat.room.r1","data":"{\"message_id\":\"m1\",\"seq\":3}"}"#,
    );
    assert_eq!(
        notices(&actions),
        [Notice::Message {
            channel: Some("private-chat.room.r1".into()),
            event: "message.created".into(),
            data: Some(r#"{"message_id":"m1","seq":3}"#.into()),
            user_id: None,
        }]
    );
    let actions = d.server(Event::SubscriptionCount {
        channel: "private-chat.room.r1".into(),
        subscription_count: 4,
    });
    assert_eq!(
        notices(&actions),
        [Notice::Message {
            channel: Some("private-chat.room.r1".into()),
            event: "pusher:subscription_count".into(),
            data: Some(r#"{"subscription_count":4}"#.into()),
            user_id: None,
        }]
    );
    // cache_miss and watchlist_events reach the app as the broker framed
    // them (a field this SDK does not know included), once they check out.
    let actions = d.message(
        r#"{"event":"pusher:cache_miss","channel":"private-chat.room.r1","data":"{\"hint\":1}"}"#,
    );
    assert_eq!(
        notices(&actions),
        [Notice::Message {
            channel: Some("private-chat.room.r1".into()),
            event: "pusher:cache_miss".into(),
            data: Some(r#"{"hint":1}"#.into()),
            user_id: None,
        }]
    );
    // (Keys in the order the core writes objects: sorted.)
    let watchlist = r#"{"events":[{"name":"online","since":7,"user_ids":["u2"]}]}"#;
    let actions = d.message(&format!(
        r#"{{"event":"pusher_internal:watchlist_events","data":{}}}"#,
        json!(watchlist)
    ));
    assert_eq!(
        notices(&actions),
        [Notice::Message {
            channel: None,
            event: "pusher_internal:watchlist_events".into(),
            data: Some(watchlist.into()),
            user_id: None,
        }]
    );
    // A malformed one is an error notice, not an event.
    let actions =
        d.message(r#"{"event":"pusher_internal:watchlist_events","data":"{\"events\":3}"}"#);
    assert!(
        matches!(notices(&actions).as_slice(), [Notice::Error { message, .. }] if message.contains("events is not an array")),
        "{actions:?}"
    );
    // Unknown internal events and events of unknown channels are dropped.
    assert!(d
        .message(r#"{"event":"pusher_internal:new_thing","channel":"private-chat.room.r1"}"#)
        .is_empty());
    assert!(d
        .message(r#"{"event":"x","channel":"private-other","data":"1"}"#)
        .is_empty());
}

#[test]
fn hostile_frames_on_the_fast_path_never_panic() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    d.subscribed("private-chat.room.r1");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_data = serde_json::to_string(&deep).unwrap();
    let frames = [
        // Nesting far beyond any parser's recursion limit, as the frame and as its data.
        format!(r#"{{"event":"client-x","channel":"private-chat.room.r1","data":{deep}}}"#),
        format!(r#"{{"event":"client-x","channel":"private-chat.room.r1","data":{deep_data}}}"#),
        deep.clone(),
        "{\"event\":".to_owned(),
        "\u{0}\u{ffff}".to_owned(),
        r#"{"event":7,"channel":"private-chat.room.r1"}"#.to_owned(),
        r#"{"event":"client-x","channel":["private-chat.room.r1"],"data":"1"}"#.to_owned(),
    ];
    for frame in &frames {
        for notice in notices(&d.message(frame)) {
            match notice {
                // A malformed frame is an error notice, never a message or a panic.
                Notice::Error { code: None, .. } => {}
                // Deep but valid data passes through as the sender's JSON
                // text (the check builds nothing, so depth costs no stack).
                Notice::Message { data, .. } => {
                    let data = data.expect("data");
                    assert!(serde_json::from_str::<serde::de::IgnoredAny>(&data).is_ok());
                }
                other => panic!("unexpected notice for {:.40}: {other:?}", frame),
            }
        }
    }
    assert_eq!(d.conn.state(), ConnectionState::Connected);
}

#[test]
fn pusher_error_4301_keeps_the_connection() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    let actions = d.server(Event::Error {
        message: "Client event rejected due to rate limit".into(),
        code: Some(4301),
    });
    assert_eq!(
        actions,
        vec![Action::Notify(Notice::Error {
            code: Some(4301),
            message: "Client event rejected due to rate limit".into(),
        })]
    );
    assert_eq!(d.conn.state(), ConnectionState::Connected);
    // Even a closing code in a pusher:error waits for the socket's own close.
    let actions = d.server(Event::Error {
        message: "bye".into(),
        code: Some(4001),
    });
    assert_eq!(notices(&actions).len(), 1);
    assert_eq!(d.conn.state(), ConnectionState::Connected);
}

#[test]
fn malformed_frames_are_error_notices() {
    let mut d = Driver::with_defaults();
    d.connect();
    d.establish("1.1");
    for text in [
        "",
        "not json",
        "[]",
        "{}",
        r#"{"event":1}"#,
        r#"{"event":"pusher:connection_established","data":"[]"}"#,
        r#"{"event":"pusher_internal:subscription_succeeded","data":{}}"#,
        r#"{"event":"pusher_internal:member_added","channel":"presence-a","data":{"user_id":true}}"#,
        r#"{"event":"pusher:error","data":[1]}"#,
    ] {
        let actions = d.message(text);
        match &notices(&actions)[..] {
            [Notice::Error {
                code: None,
                message,
            }] => {
                assert!(message.starts_with("unable to "), "{message}")
            }
            other => panic!("{text:?}: {other:?}"),
        }
        assert_eq!(d.conn.state(), ConnectionState::Connected);
    }
}

#[test]
fn close_4009_of_a_signed_in_socket_reconnects_and_resubscribes() {
    // terminate_connections: the app revoked something (a room, a session);
    // the client comes back and every channel is authorized again, so only
    // what was revoked is refused.
    let mut options = Options::new("app-key", "h");
    options.user_authentication = true;
    let mut d = Driver::new(options, 1);
    d.connect();
    d.establish("1.1");
    d.subscribe("private-chat.room.r1");
    d.server(Event::SigninSuccess {
        user_data: r#"{"id":"u1"}"#.into(),
    });
    let actions = d.closed(4009, "You got disconnected by the app");
    assert_eq!(d.conn.state(), ConnectionState::Connecting);
    assert!(reconnect_delay(&actions).is_some(), "{actions:?}");
    d.fire(Timer::Reconnect);
    let actions = d.establish("2.2");
    assert!(has_authorize(&actions, "private-chat.room.r1", "2.2"));

    // Before the broker confirmed a sign-in, 4009 is a refused sign-in: fail.
    let actions = d.closed(4009, "Connection not authorized");
    assert_eq!(d.conn.state(), ConnectionState::Failed);
    assert_eq!(reconnect_delay(&actions), None);
}

#[test]
fn user_sign_in_flow() {
    let mut options = Options::new("app-key", "h");
    options.user_authentication = true;
    let mut d = Driver::new(options, 1);
    d.connect();
    let actions = d.establish("1.1");
    assert!(actions.contains(&Action::AuthenticateUser {
        socket_id: "1.1".into()
    }));
    let user_data = r#"{"id":"u1","name":"Ada"}"#;
    let auth = UserAuth {
        auth: format!("app-key:{}", "b".repeat(64)),
        user_data: user_data.into(),
    };
    // Stale socket id: ignored.
    d.conn.user_auth_succeeded(d.now, "9.9", auth.clone());
    assert!(d.drain().is_empty());
    d.conn.user_auth_succeeded(d.now, "1.1", auth.clone());
    let actions = d.drain();
    let frames = sent(&actions);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        Event::from_frame(frames[0].clone()).unwrap(),
        Event::Signin {
            auth: auth.auth.clone(),
            user_data: user_data.into()
        }
    );
    // Only once per socket.
    d.conn.user_auth_succeeded(d.now, "1.1", auth.clone());
    assert!(d.drain().is_empty());
    let actions = d.server(Event::SigninSuccess {
        user_data: user_data.into(),
    });
    assert_eq!(
        notices(&actions),
        [Notice::SignedIn {
            user_data: user_data.into()
        }]
    );
    // A new connection signs in again; a refusal is an Error notice.
    d.closed(1006, "");
    d.fire(Timer::Reconnect);
    let actions = d.establish("2.2");
    assert!(actions.contains(&Action::AuthenticateUser {
        socket_id: "2.2".into()
    }));
    d.conn
        .user_auth_failed(d.now, "2.2", Some(403), "unable to sign in; forbidden");
    assert_eq!(
        d.drain(),
        vec![Action::Notify(Notice::Error {
            code: Some(403),
            message: "unable to sign in; forbidden".into()
        })]
    );
    assert_eq!(d.conn.state(), ConnectionState::Connected);
}

#[test]
fn no_sign_in_unless_asked() {
    let mut d = Driver::with_defaults();
    d.connect();
    let actions = d.establish("1.1");
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::AuthenticateUser { .. })));
    d.conn.user_auth_succeeded(
        d.now,
        "1.1",
        UserAuth {
            auth: "k:s".into(),
            user_data: "{}".into(),
        },
    );
    assert!(d.drain().is_empty());
}

// ---- no panics, ever ----------------------------------------------------------

#[derive(Clone, Debug)]
enum Input {
    Connect,
    Disconnect,
    Opened,
    Message(String),
    Closed(u16, String),
    Fire(Timer),
    Online,
    Subscribe(String),
    Unsubscribe(String),
    AuthOk {
        channel: String,
        current: bool,
        channel_data: Option<String>,
    },
    AuthFailed {
        channel: String,
        current: bool,
        status: Option<u16>,
    },
    UserAuthOk(bool),
    UserAuthFailed(bool),
    Trigger(String, String, String),
    Advance(u64),
    /// The likely next steps of a real broker, so that sequences get deep.
    Establish(u16),
    Succeed(String, bool),
    /// Subscribe, authorize for the current socket and acknowledge, in one go.
    FullSubscribe(String),
}

fn channel_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("chat".to_owned()),
        4 => Just("private-a".to_owned()),
        4 => Just("presence-p".to_owned()),
        1 => Just("private-encrypted-e".to_owned()),
        1 => Just("bad name".to_owned()),
        1 => Just(String::new()),
        1 => "[a-z#-]{0,12}",
    ]
}

/// Frames a broker could send (and some it should not), plus noise.
fn server_frame() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => ("[0-9]{1,3}\\.[0-9]{1,3}", 0u32..200).prop_map(|(id, t)| format!(
            r#"{{"event":"pusher:connection_established","data":"{{\"socket_id\":\"{id}\",\"activity_timeout\":{t}}}"}}"#
        )),
        2 => channel_name().prop_map(|c| server_text(Event::SubscriptionSucceeded {
            channel: c, presence: Some(presence_snapshot()) })),
        1 => channel_name().prop_map(|c| server_text(Event::SubscriptionSucceeded {
            channel: c, presence: None })),
        1 => (channel_name(), proptest::option::of(any::<u16>())).prop_map(|(c, status)| server_text(
            Event::SubscriptionError { channel: c, error_type: None, error: Some("no".into()), status })),
        1 => (channel_name(), "u[0-9]").prop_map(|(c, u)| server_text(Event::MemberAdded {
            channel: c, user_id: u, user_info: Some(json!({"n": 1})) })),
        1 => (channel_name(), "u[0-9]").prop_map(|(c, u)| server_text(Event::MemberRemoved {
            channel: c, user_id: u })),
        1 => proptest::option::of(any::<u16>()).prop_map(|code| server_text(Event::Error {
            message: "err".into(), code })),
        1 => Just(server_text(Event::Ping)),
        1 => Just(server_text(Event::Pong)),
        1 => Just(server_text(Event::SigninSuccess { user_data: "{}".into() })),
        1 => (channel_name(), "[a-z:_-]{0,20}", proptest::option::of("u[0-9]")).prop_map(|(c, e, u)| {
            let mut frame = Frame::new(e).with_channel(c).with_data(json!({"x": 1}));
            frame.user_id = u;
            frame.encode()
        }),
        2 => any::<String>(),
        1 => "[{}\\[\\]\":,a-z0-9 ]{0,40}",
    ]
}

fn input() -> impl Strategy<Value = Input> {
    let timer = prop_oneof![
        Just(Timer::Reconnect),
        Just(Timer::Activity),
        Just(Timer::Pong),
        Just(Timer::Unavailable),
    ];
    prop_oneof![
        2 => Just(Input::Connect),
        1 => Just(Input::Disconnect),
        2 => Just(Input::Opened),
        6 => server_frame().prop_map(Input::Message),
        2 => (prop_oneof![Just(1006u16), Just(4001), Just(4100), Just(4200), Just(4301), any::<u16>()],
              ".{0,8}").prop_map(|(c, r)| Input::Closed(c, r)),
        3 => timer.prop_map(Input::Fire),
        1 => Just(Input::Online),
        2 => channel_name().prop_map(Input::Subscribe),
        1 => channel_name().prop_map(Input::Unsubscribe),
        4 => (channel_name(), prop_oneof![3 => Just(true), 1 => Just(false)], proptest::option::of(prop_oneof![
                3 => Just(r#"{"user_id":"u1"}"#.to_owned()), 1 => any::<String>()]))
            .prop_map(|(channel, current, channel_data)| Input::AuthOk { channel, current, channel_data }),
        1 => (channel_name(), any::<bool>(), proptest::option::of(any::<u16>()))
            .prop_map(|(channel, current, status)| Input::AuthFailed { channel, current, status }),
        1 => any::<bool>().prop_map(Input::UserAuthOk),
        1 => any::<bool>().prop_map(Input::UserAuthFailed),
        2 => (channel_name(), prop_oneof![Just("client-x".to_owned()), ".{0,12}"], ".{0,30}")
            .prop_map(|(c, e, d)| Input::Trigger(c, e, d)),
        3 => prop_oneof![0u64..100, 0u64..40_000, 0u64..1_000_000, Just(u64::MAX / 4)].prop_map(Input::Advance),
        4 => any::<u16>().prop_map(Input::Establish),
        4 => (channel_name(), any::<bool>()).prop_map(|(c, p)| Input::Succeed(c, p)),
        3 => channel_name().prop_map(Input::FullSubscribe),
    ]
}

fn run(d: &mut Driver, input: &Input) {
    let socket_id = |d: &Driver, current: bool| {
        if current {
            d.conn.socket_id().unwrap_or("0.0").to_owned()
        } else {
            "9.9".to_owned()
        }
    };
    match input {
        Input::Connect => {
            d.connect();
        }
        Input::Disconnect => {
            d.conn.disconnect(d.now);
            d.drain();
        }
        Input::Opened => {
            d.opened();
        }
        Input::Message(text) => {
            d.message(text);
        }
        Input::Closed(code, reason) => {
            d.closed(*code, reason);
        }
        Input::Fire(timer) => {
            d.fire_late(*timer);
        }
        Input::Online => {
            d.conn.network_online(d.now);
            d.drain();
        }
        Input::Subscribe(channel) => {
            let _ = d.conn.subscribe(d.now, channel);
            d.drain();
        }
        Input::Unsubscribe(channel) => {
            d.conn.unsubscribe(d.now, channel);
            d.drain();
        }
        Input::AuthOk {
            channel,
            current,
            channel_data,
        } => {
            let id = socket_id(d, *current);
            let auth = ChannelAuth {
                auth: "k:s".into(),
                channel_data: channel_data.clone(),
            };
            d.conn.auth_succeeded(d.now, channel, &id, auth);
            d.drain();
        }
        Input::AuthFailed {
            channel,
            current,
            status,
        } => {
            let id = socket_id(d, *current);
            d.conn.auth_failed(d.now, channel, &id, *status, "denied");
            d.drain();
        }
        Input::UserAuthOk(current) => {
            let id = socket_id(d, *current);
            let auth = UserAuth {
                auth: "k:s".into(),
                user_data: "{}".into(),
            };
            d.conn.user_auth_succeeded(d.now, &id, auth);
            d.drain();
        }
        Input::UserAuthFailed(current) => {
            let id = socket_id(d, *current);
            d.conn.user_auth_failed(d.now, &id, Some(401), "no");
            d.drain();
        }
        Input::Trigger(channel, event, data) => {
            let _ = d.conn.trigger(channel, event, Value::String(data.clone()));
            d.drain();
        }
        Input::Advance(ms) => {
            d.advance(*ms);
        }
        Input::Establish(n) => {
            d.conn.socket_opened(d.now);
            d.drain();
            d.establish_with(&format!("{n}.{n}"), u32::from(*n % 200));
        }
        Input::FullSubscribe(channel) => {
            let _ = d.conn.subscribe(d.now, channel);
            d.drain();
            let id = socket_id(d, true);
            let auth = ChannelAuth {
                auth: "k:s".into(),
                channel_data: Some(r#"{"user_id":"u1"}"#.into()),
            };
            d.conn.auth_succeeded(d.now, channel, &id, auth);
            d.drain();
            d.server(Event::SubscriptionSucceeded {
                channel: channel.clone(),
                presence: channel.starts_with("presence-").then(presence_snapshot),
            });
        }
        Input::Succeed(channel, presence) => {
            d.server(Event::SubscriptionSucceeded {
                channel: channel.clone(),
                presence: presence.then(presence_snapshot),
            });
        }
    }
}

/// What must hold after every input, seen from the boundary.
fn check_invariants(d: &Driver) {
    let state = d.conn.state();
    assert!(matches!(
        state,
        ConnectionState::Initialized
            | ConnectionState::Connecting
            | ConnectionState::Connected
            | ConnectionState::Unavailable
            | ConnectionState::Failed
            | ConnectionState::Disconnected
    ));
    assert_eq!(
        d.conn.socket_id().is_some(),
        state == ConnectionState::Connected,
        "{state:?}"
    );
    match state {
        // Never stuck: a socket on its way, or a retry scheduled.
        ConnectionState::Connecting | ConnectionState::Unavailable => assert!(
            d.socket_open || d.timers.contains_key(&Timer::Reconnect),
            "{state:?} with no socket and no retry: {:?}",
            d.timers
        ),
        ConnectionState::Connected => {
            assert!(d.socket_open);
            assert!(
                d.timers.contains_key(&Timer::Activity) || d.timers.contains_key(&Timer::Pong),
                "connected without keep-alive: {:?}",
                d.timers
            );
        }
        ConnectionState::Initialized | ConnectionState::Failed | ConnectionState::Disconnected => {
            assert!(!d.socket_open, "{state:?} with a socket");
            assert!(d.timers.is_empty(), "{state:?} with timers {:?}", d.timers);
        }
    }
    for channel in ["chat", "private-a", "presence-p"] {
        if d.conn.channel_state(channel) == Some(ChannelState::Subscribed) {
            assert_eq!(state, ConnectionState::Connected);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_input_sequence_never_panics_and_keeps_the_invariants(
        seed in any::<u64>(),
        inputs in proptest::collection::vec(input(), 0..80),
    ) {
        let mut d = Driver::new(Options::new("k", "h"), seed);
        check_invariants(&d);
        for input in &inputs {
            run(&mut d, input);
            check_invariants(&d);
        }
    }

    #[test]
    fn user_authentication_sequences_never_panic(
        seed in any::<u64>(),
        inputs in proptest::collection::vec(input(), 0..60),
    ) {
        let mut options = Options::new("k", "h");
        options.user_authentication = true;
        options.activity_timeout_ms = Some(1_000);
        options.pong_timeout_ms = 500;
        options.unavailable_timeout_ms = 0;
        options.backoff_base_ms = 0;
        let mut d = Driver::new(options, seed);
        for input in &inputs {
            run(&mut d, input);
            check_invariants(&d);
        }
    }

    #[test]
    fn backoff_delays_are_bounded_for_any_seed(seed in any::<u64>(), closes in 1usize..40) {
        let mut d = Driver::new(Options::new("k", "h"), seed);
        d.connect();
        for attempt in 0..closes {
            let delay = reconnect_delay(&d.closed(1006, "")).unwrap();
            prop_assert!(delay <= bound(attempt as u32));
            d.fire(Timer::Reconnect);
        }
    }
}
