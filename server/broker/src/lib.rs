//! A Pusher Channels protocol 7 compatible broker.
//!
//! [`Broker::router`] serves the WebSocket endpoint `GET /app/{key}` that
//! pusher-js and the DomVia SDK connect to, and the signed REST API under
//! `/apps/{app_id}/...` that the `pusher` server libraries (and
//! `@domvia/realtime-server`) publish through. One broker serves one app.
//!
//! The wire format, channel names and every signature come from the pure
//! protocol core in [`domvia_realtime::protocol`]; this crate adds the state
//! (channels, connections, presence members) and the I/O around it:
//!
//! - `state`: who is subscribed to what, behind one `std::sync::Mutex` that is
//!   never held across an `.await`;
//! - `socket`: one task per WebSocket connection (a reader loop with the
//!   keep-alive timers, and a writer fed by a bounded queue);
//! - `rest`: the REST handlers; `error`: their JSON error responses.

mod error;
mod rest;
mod socket;
mod state;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use tokio::sync::Notify;

use state::{Closing, Hub};

pub use domvia_realtime::protocol::AppCredentials;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use socket::fuzzing;

/// Limits and timeouts of the broker. [`Limits::default`] gives the defaults
/// noted on each field; tests set smaller ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Seconds of silence from a client after which the broker sends
    /// `pusher:ping`; also the `activity_timeout` announced in
    /// `pusher:connection_established` (default 120). Values below 1 count as 1.
    pub activity_timeout_secs: u64,
    /// Seconds the broker waits for any message after its ping before it
    /// closes the connection with 4201 (default 30). Values below 1 count as 1.
    pub pong_timeout_secs: u64,
    /// Open connections; one more is closed with 4100 (over capacity) (default 10_000).
    pub max_connections: usize,
    /// Channels one connection may be subscribed to; a subscription beyond
    /// gets `pusher:subscription_error` with status 429 (default 100).
    pub max_channels_per_connection: usize,
    /// The largest WebSocket message (and frame) a client may send; a larger
    /// one closes the connection with 1009 (default 64 KiB).
    pub max_frame_bytes: usize,
    /// The largest `data` of a client event or a REST event, in bytes (default 10_240).
    pub max_event_data_bytes: usize,
    /// Whether clients may send `client-` events at all (default true).
    pub client_events_enabled: bool,
    /// Client events one connection may send in any one-second window;
    /// 0 means unlimited (default 10).
    pub client_events_per_second: u32,
    /// Distinct users in one presence channel (default 100).
    pub max_presence_members: usize,
    /// The largest presence `user_info`, as compact JSON, in bytes (default 1024).
    pub max_presence_user_info_bytes: usize,
    /// The largest REST request body, in bytes (default 256 KiB).
    pub max_rest_body_bytes: usize,
    /// Events in one `POST /apps/{app_id}/batch_events` (default 10).
    pub max_batch_events: usize,
    /// Channels one `POST /apps/{app_id}/events` may name (default 100).
    pub max_rest_channels: usize,
    /// Messages waiting to be written to one connection; a client that lets
    /// its queue fill up (it does not read) is closed with 4100 (default 256).
    /// Values below 1 count as 1.
    pub outbound_queue_messages: usize,
    /// Bytes of messages waiting to be written to one connection: the same
    /// close (4100) as a full queue, so a slow reader holds at most this much
    /// memory whatever the size of its frames (default 1 MiB). Values below
    /// 1 count as 1; a message larger than the whole budget is let through
    /// alone.
    pub outbound_queue_bytes: usize,
    /// Seconds a connection may stay open without subscribing to any
    /// channel: it is then closed with 4202 (default 120, the activity
    /// timeout; 0 = never). A client that connected and never subscribed
    /// costs a socket and buffers and gets nothing from the broker.
    pub subscribe_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            activity_timeout_secs: 120,
            pong_timeout_secs: 30,
            max_connections: 10_000,
            max_channels_per_connection: 100,
            max_frame_bytes: 64 * 1024,
            max_event_data_bytes: 10_240,
            client_events_enabled: true,
            client_events_per_second: 10,
            max_presence_members: 100,
            max_presence_user_info_bytes: 1024,
            max_rest_body_bytes: 256 * 1024,
            max_batch_events: 10,
            max_rest_channels: 100,
            outbound_queue_messages: 256,
            outbound_queue_bytes: 1024 * 1024,
            subscribe_timeout_secs: 120,
        }
    }
}

/// How long [`Broker::shutdown`] waits for connections to finish closing.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A Pusher-compatible broker for one app. Cheap to clone: clones share state.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

/// What every handler and connection task shares.
pub(crate) struct Inner {
    pub(crate) app: AppCredentials,
    pub(crate) limits: Limits,
    pub(crate) hub: Hub,
    /// Connection tasks that are still running (including their close handshake).
    live_tasks: AtomicUsize,
    /// Woken when `live_tasks` drops to zero.
    idle: Notify,
}

impl Inner {
    /// Counts a connection task as live until the guard drops.
    pub(crate) fn task_guard(self: &Arc<Inner>) -> TaskGuard {
        self.live_tasks.fetch_add(1, Ordering::SeqCst);
        TaskGuard {
            inner: Arc::clone(self),
        }
    }
}

/// Keeps one connection task counted in `Inner::live_tasks`.
pub(crate) struct TaskGuard {
    inner: Arc<Inner>,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.inner.live_tasks.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

impl Broker {
    /// A broker serving `app` within `limits`, with no connections yet.
    pub fn new(app: AppCredentials, limits: Limits) -> Broker {
        let hub = Hub::new(limits.clone());
        Broker {
            inner: Arc::new(Inner {
                app,
                limits,
                hub,
                live_tasks: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        }
    }

    /// The routes of the broker: `GET /app/{key}` (WebSocket) and the REST API
    /// (`POST /apps/{app_id}/events`, `POST /apps/{app_id}/batch_events`,
    /// `GET /apps/{app_id}/channels`, `GET /apps/{app_id}/channels/{channel}`,
    /// `GET /apps/{app_id}/channels/{channel}/users`,
    /// `POST /apps/{app_id}/users/{user_id}/terminate_connections`).
    ///
    /// The router has no fallback, so it can be merged into another router.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/app/{key}", get(socket::upgrade))
            .route("/apps/{app_id}/events", post(rest::trigger))
            .route("/apps/{app_id}/batch_events", post(rest::trigger_batch))
            .route("/apps/{app_id}/channels", get(rest::channels))
            .route("/apps/{app_id}/channels/{channel_name}", get(rest::channel))
            .route(
                "/apps/{app_id}/channels/{channel_name}/users",
                get(rest::users),
            )
            .route(
                "/apps/{app_id}/users/{user_id}/terminate_connections",
                post(rest::terminate_connections),
            )
            .with_state(Arc::clone(&self.inner))
    }

    /// Closes every socket with 4200 (reconnect now) and refuses new ones, for
    /// a clean server stop. Returns once every connection has finished
    /// closing, or after a few seconds at most.
    ///
    /// New WebSocket requests get HTTP 503 (`shutting_down`) instead of an
    /// upgrade, so that clients back off rather than reconnect in a tight
    /// loop; one that was mid-upgrade is closed with 4100. The REST API keeps
    /// answering.
    pub async fn shutdown(&self) {
        self.inner.hub.shut_down(Closing::Frame {
            code: 4200,
            reason: "Server is shutting down",
            flush: true,
        });
        let all_closed = async {
            loop {
                let notified = self.inner.idle.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.inner.live_tasks.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        // After the grace period the remaining sockets are cut by the runtime's shutdown.
        tokio::time::timeout(SHUTDOWN_GRACE, all_closed).await.ok();
    }

    /// The number of open (established) WebSocket connections.
    pub fn connection_count(&self) -> usize {
        self.inner.hub.connection_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let app = AppCredentials {
            id: "1".into(),
            key: "key".into(),
            secret: "very-secret".into(),
        };
        let text = format!("{app:?}");
        assert!(text.contains("key"));
        assert!(!text.contains("very-secret"));
    }

    #[test]
    fn default_limits() {
        let limits = Limits::default();
        assert_eq!(limits.activity_timeout_secs, 120);
        assert_eq!(limits.max_frame_bytes, 65_536);
        assert_eq!(limits.max_event_data_bytes, 10_240);
        assert_eq!(limits.max_rest_body_bytes, 262_144);
    }
}
