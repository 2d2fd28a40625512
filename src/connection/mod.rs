//! The connection state machine: connection states, reconnection with backoff,
//! keep-alive, channel subscriptions, presence members, client events and user
//! sign-in, over the Pusher Channels protocol 7.
//!
//! It is sans-IO, like pusher-js's `ConnectionManager` with its platform taken
//! away (or matrix-rust-sdk's "no-network-IO state machine"): the caller feeds
//! in what happened ([`Connection::socket_message`], [`Connection::timer_fired`],
//! [`Connection::subscribe`]...) together with the current time, and drains the
//! [`Action`]s that result with [`Connection::poll_action`]: open a socket, send
//! this text, start a timer, ask the auth endpoint, tell the app. Nothing here
//! reads a clock, owns a socket or a timer, or draws randomness of its own, so
//! the whole machine runs natively on fake time in tests.
//!
//! # Contract with the boundary
//!
//! - Drain [`Connection::poll_action`] after every call, and run the actions in
//!   order. Events of a socket the machine closed ([`Action::CloseSocket`]) must
//!   not be reported; the machine ignores socket events while it has no socket,
//!   but cannot tell two sockets apart.
//! - [`Action::StartTimer`] replaces a running timer of the same kind;
//!   [`Action::CancelTimer`] stops it. Report a timer with
//!   [`Connection::timer_fired`] when it fires. Throttled timers are fine: every
//!   input compares `now_ms` with the deadlines and the last frame received,
//!   and catches up on what is overdue.
//! - `now_ms` is any millisecond clock that does not jump backwards by much
//!   (`Date.now()` or `performance.now()`); the machine never panics on it.

pub mod backoff;
mod machine;

use crate::vec_map::VecMap;

use crate::json::Value;
use crate::protocol::hex::{percent_encode, UNRESERVED};

pub use machine::Connection;

/// The largest `data` of a client event, in bytes (the protocol's limit): the
/// bytes of a string, or of the compact JSON of any other value.
pub const MAX_CLIENT_EVENT_DATA_BYTES: usize = 10_240;

/// The longest event name the protocol allows, in bytes.
pub const MAX_EVENT_NAME_LEN: usize = 200;

/// The close code the machine uses for the sockets it closes itself (a browser
/// accepts only 1000 and 3000-4999 from a script).
pub const CLOSE_NORMAL: u16 = 1000;

/// How to reach the broker and how patient to be with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The app's public key.
    pub key: String,
    /// The broker's host name (or `host` of an IPv6 address in brackets).
    pub host: String,
    /// The broker's port; `None` leaves it out of the URL (80 or 443).
    pub port: Option<u16>,
    /// Connect with `wss://` instead of `ws://`.
    pub force_tls: bool,
    /// Allow [`Connection::trigger`] of `client-` events (default false). This
    /// is the SDK's one default: the wasm boundary and `@domvia/realtime` leave
    /// it to [`Options::new`] when `clientEvents` is not given.
    pub client_events: bool,
    /// Sign the user in (`pusher:signin`) on every new connection (default false).
    pub user_authentication: bool,
    /// Ping after this much silence from the server at most; the server's own
    /// `activity_timeout` wins when it is smaller. `None` or 0: the server's alone.
    /// Default 120 000, as pusher-js.
    pub activity_timeout_ms: Option<u64>,
    /// How long to wait for a pong after a ping, and for each step of the
    /// opening handshake, before the socket is presumed dead (default 30 000).
    pub pong_timeout_ms: u64,
    /// How long connecting may take before the state becomes
    /// [`ConnectionState::Unavailable`] (default 10 000).
    pub unavailable_timeout_ms: u64,
    /// The backoff bound of the first retry (default 1 000).
    pub backoff_base_ms: u64,
    /// The largest backoff bound (default 30 000).
    pub backoff_max_ms: u64,
}

impl Options {
    /// Options with the defaults: client events off, no user sign-in, plain
    /// `ws://` on the default port, and the timeouts documented on each field.
    pub fn new(key: impl Into<String>, host: impl Into<String>) -> Options {
        Options {
            key: key.into(),
            host: host.into(),
            port: None,
            force_tls: false,
            client_events: false,
            user_authentication: false,
            activity_timeout_ms: Some(120_000),
            pong_timeout_ms: 30_000,
            unavailable_timeout_ms: 10_000,
            backoff_base_ms: 1_000,
            backoff_max_ms: 30_000,
        }
    }

    /// The WebSocket URL:
    /// `ws[s]://{host}[:{port}]/app/{key}?protocol=7&client=domvia-js&version={VERSION}&flash=false`.
    /// The key is percent-encoded (a real key never needs it).
    pub fn socket_url(&self) -> String {
        let scheme = if self.force_tls { "wss" } else { "ws" };
        let port = match self.port {
            Some(port) => format!(":{port}"),
            None => String::new(),
        };
        format!(
            "{scheme}://{}{port}/app/{}?protocol=7&client=domvia-js&version={}&flash=false",
            self.host,
            percent_encode(&self.key, UNRESERVED),
            crate::VERSION
        )
    }
}

/// The state of the connection, as the app sees it (pusher-js's states, less
/// `connecting`'s transport details).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Created; [`Connection::connect`] has not been called.
    Initialized,
    /// Opening a socket, or waiting to retry after a failed attempt or a drop.
    Connecting,
    /// The broker acknowledged the connection; a socket id is known.
    Connected,
    /// No connection for `unavailable_timeout_ms`; still retrying.
    Unavailable,
    /// The broker refused these settings (close codes 4000-4099). No retry until
    /// the app calls [`Connection::connect`] again.
    Failed,
    /// The app called [`Connection::disconnect`].
    Disconnected,
}

impl ConnectionState {
    /// The state as a lowercase word: `initialized`, `connecting`, `connected`,
    /// `unavailable`, `failed`, `disconnected`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Initialized => "initialized",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Unavailable => "unavailable",
            ConnectionState::Failed => "failed",
            ConnectionState::Disconnected => "disconnected",
        }
    }
}

/// The timers the machine asks the boundary to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The backoff delay before the next connection attempt.
    Reconnect,
    /// Silence from the server after which to ping.
    Activity,
    /// The wait for a pong, or for the next step of the opening handshake.
    Pong,
    /// The time connecting may take before the state becomes `Unavailable`.
    Unavailable,
}

impl Timer {
    /// Every timer, in a fixed order.
    pub const ALL: [Timer; 4] = [
        Timer::Reconnect,
        Timer::Activity,
        Timer::Pong,
        Timer::Unavailable,
    ];

    /// The timer as a lowercase word: `reconnect`, `activity`, `pong`, `unavailable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Timer::Reconnect => "reconnect",
            Timer::Activity => "activity",
            Timer::Pong => "pong",
            Timer::Unavailable => "unavailable",
        }
    }

    /// The timer's place in [`Timer::ALL`], for per-timer arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Timer::Reconnect => 0,
            Timer::Activity => 1,
            Timer::Pong => 2,
            Timer::Unavailable => 3,
        }
    }
}

/// The state of one channel subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelState {
    /// Waiting for a connection, for the auth endpoint, or for the broker's
    /// acknowledgement. A subscribed channel returns here when the connection
    /// drops, and is resubscribed (with fresh auth) on the next connection.
    Subscribing,
    /// The broker acknowledged the subscription.
    Subscribed,
    /// The broker or the auth endpoint refused the subscription. It stays so
    /// (no retry, not even after a reconnect) until the app subscribes again.
    Failed,
    /// Not subscribed. The machine forgets an unsubscribed channel, so
    /// [`Connection::channel_state`] answers `None` for it; this is the word a
    /// boundary may show for `None`.
    Unsubscribed,
}

impl ChannelState {
    /// The state as a lowercase word: `subscribing`, `subscribed`, `failed`, `unsubscribed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelState::Subscribing => "subscribing",
            ChannelState::Subscribed => "subscribed",
            ChannelState::Failed => "failed",
            ChannelState::Unsubscribed => "unsubscribed",
        }
    }
}

/// Something for the boundary to do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Open a WebSocket to `url`, dropping any previous one.
    OpenSocket { url: String },
    /// Send `text` on the open socket, synchronously.
    Send { text: String },
    /// Close the socket with `code` and `reason`, and forget it: its later
    /// events must not be reported.
    CloseSocket { code: u16, reason: String },
    /// Start (or restart) `timer` to fire after `delay_ms`.
    StartTimer { timer: Timer, delay_ms: u64 },
    /// Stop `timer` if it runs.
    CancelTimer { timer: Timer },
    /// Ask the channel auth endpoint to sign `channel` for `socket_id`, then call
    /// [`Connection::auth_succeeded`] or [`Connection::auth_failed`] with the
    /// same socket id.
    Authorize { channel: String, socket_id: String },
    /// Ask the user authentication endpoint to sign the user in on `socket_id`,
    /// then call [`Connection::user_auth_succeeded`] or
    /// [`Connection::user_auth_failed`] with the same socket id.
    AuthenticateUser { socket_id: String },
    /// Tell the app.
    Notify(Notice),
}

/// Something the app hears about.
#[derive(Clone, Debug, PartialEq)]
pub enum Notice {
    /// The connection state changed (never emitted without a change).
    StateChange {
        previous: ConnectionState,
        current: ConnectionState,
        reason: Option<String>,
    },
    /// The broker acknowledged a subscription; for a presence channel,
    /// [`Connection::members`] now holds the members.
    Subscribed { channel: String },
    /// The broker or the auth endpoint refused a subscription; the channel is
    /// [`ChannelState::Failed`].
    SubscriptionError {
        channel: String,
        status: Option<u16>,
        message: String,
    },
    /// A member joined a presence channel.
    MemberAdded {
        channel: String,
        user_id: String,
        user_info: Option<Value>,
    },
    /// A member left a presence channel; `user_info` is what they had.
    MemberRemoved {
        channel: String,
        user_id: String,
        user_info: Option<Value>,
    },
    /// An event: an app event, a `client-` event (with the broker-stamped
    /// `user_id` on presence channels), or a protocol event the app may want
    /// (`pusher:subscription_count`, `pusher:cache_miss`, watchlist events).
    ///
    /// `data` is JSON text: for app and client events the text the sender
    /// wrote (checked to be JSON, never rebuilt, so its key order is kept),
    /// after the `data` rule of [`Frame`](crate::protocol::Frame).
    Message {
        channel: Option<String>,
        event: String,
        data: Option<String>,
        user_id: Option<String>,
    },
    /// `pusher:error` from the broker (`code` such as 4301), a frame the machine
    /// could not read (`code` None), or a failed user sign-in (`code` the HTTP
    /// status, if any).
    Error { code: Option<u16>, message: String },
    /// The broker signed the user in; `user_data` is the signed JSON text.
    SignedIn { user_data: String },
}

/// The members of a presence channel.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Members {
    /// This connection's user id, from the `channel_data` the auth endpoint signed.
    pub me: Option<String>,
    /// Every member's `user_info` (`None` when absent or null), by user id.
    pub members: VecMap<String, Option<Value>>,
}

impl Members {
    /// The number of members.
    pub fn count(&self) -> usize {
        self.members.len()
    }

    /// The `user_info` of member `user_id`, if it is a member.
    pub fn get(&self, user_id: &str) -> Option<&Option<Value>> {
        self.members.get(user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_has_every_part() {
        let mut options = Options::new("app-key", "ws.example.com");
        assert_eq!(
            options.socket_url(),
            format!(
                "ws://ws.example.com/app/app-key?protocol=7&client=domvia-js&version={}&flash=false",
                crate::VERSION
            )
        );
        options.force_tls = true;
        options.port = Some(6001);
        assert!(options
            .socket_url()
            .starts_with("wss://ws.example.com:6001/app/app-key?protocol=7&"));
        options.key = "a b/?&é".into();
        assert!(options.socket_url().contains("/app/a%20b%2F%3F%26%C3%A9?"));
    }

    #[test]
    fn words_are_lowercase_and_distinct() {
        use std::collections::HashSet;
        let states = [
            ConnectionState::Initialized,
            ConnectionState::Connecting,
            ConnectionState::Connected,
            ConnectionState::Unavailable,
            ConnectionState::Failed,
            ConnectionState::Disconnected,
        ];
        let words: HashSet<_> = states.iter().map(|s| s.as_str()).collect();
        assert_eq!(words.len(), 6);
        assert_eq!(ConnectionState::Unavailable.as_str(), "unavailable");
        let channel: HashSet<_> = [
            ChannelState::Subscribing,
            ChannelState::Subscribed,
            ChannelState::Failed,
            ChannelState::Unsubscribed,
        ]
        .iter()
        .map(|s| s.as_str())
        .collect();
        assert_eq!(channel.len(), 4);
        let timers: HashSet<_> = Timer::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(timers.len(), 4);
        for (i, timer) in Timer::ALL.iter().enumerate() {
            assert_eq!(timer.index(), i);
        }
    }

    #[test]
    fn defaults() {
        let options = Options::new("k", "h");
        assert_eq!(options.pong_timeout_ms, 30_000);
        assert_eq!(options.unavailable_timeout_ms, 10_000);
        assert_eq!(options.backoff_base_ms, 1_000);
        assert_eq!(options.backoff_max_ms, 30_000);
        assert_eq!(options.activity_timeout_ms, Some(120_000));
        assert!(!options.client_events);
        assert!(!options.user_authentication);
    }
}
