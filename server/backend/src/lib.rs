//! The DomVia reference chat backend: the "trusted app server" of the private
//! chat SDK.
//!
//! It owns identity (a demo sign-in with stateless signed session tokens),
//! rooms and membership, durable messages with a gap-free per-room `seq`, read
//! receipts, and opaque end-to-end encryption records (device records, room
//! epochs, key shares). It signs channel access with the protocol core
//! ([`domvia_realtime::protocol`]) only after checking membership, and
//! publishes what changed to the broker's REST API.
//!
//! Mount [`Backend::router`] into an axum server; the HTTP API is documented in
//! `API.md` next to this crate's `Cargo.toml`.
//!
//! ```no_run
//! # fn main() -> Result<(), domvia_backend::BackendError> {
//! use domvia_backend::{AppCredentials, Backend, BackendConfig};
//! let backend = Backend::open(BackendConfig {
//!     database: "chat.sqlite3".into(),
//!     app: AppCredentials { id: "1".into(), key: "key".into(), secret: "secret".into() },
//!     broker_url: Some("http://127.0.0.1:7420".into()),
//!     session_secret: b"a long random secret, at least 16 bytes".to_vec(),
//!     limits: domvia_backend::Limits::default(),
//! })?;
//! let router: axum::Router = backend.router();
//! // ... serve `router`; on shutdown:
//! backend.close()?;
//! # Ok(()) }
//! ```

mod channels;
mod csrf;
mod error;
mod extract;
mod ids;
mod limits;
mod names;
pub mod publisher;
mod relay;
mod routes;
mod session;
mod store;

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use serde_json::Value;

use error::ApiError;
pub use error::BackendError;
use limits::{Action, RateLimiter, Subject};
pub use limits::{Limits, Rate};
use publisher::Publisher;
use relay::Relay;

pub use domvia_realtime::protocol::AppCredentials;

/// How to open a [`Backend`].
#[derive(Clone)]
pub struct BackendConfig {
    /// An SQLite file path, or `:memory:`.
    pub database: String,
    /// The broker app.
    pub app: AppCredentials,
    /// The broker's HTTP base URL (`http://host:port`, optionally with a path
    /// prefix), or `None` to publish nothing (tests).
    pub broker_url: Option<String>,
    /// The HMAC key of session tokens: at least 16 bytes, random, secret.
    pub session_secret: Vec<u8>,
    /// Device cap and rate limits (`API.md`, "Limits").
    pub limits: Limits,
}

impl fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendConfig")
            .field("database", &self.database)
            .field("app", &self.app)
            .field("broker_url", &self.broker_url)
            .field("session_secret", &"<redacted>")
            .field("limits", &self.limits)
            .finish()
    }
}

/// The smallest accepted session secret, in bytes.
pub const MIN_SESSION_SECRET_LEN: usize = 16;

/// The chat backend: cheap to clone, all clones share one database connection.
#[derive(Clone)]
pub struct Backend {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Mutex<Connection>>,
    app: AppCredentials,
    /// Publishes the outbox; `None` when no broker is configured (the outbox
    /// is then not written at all).
    relay: Option<Relay>,
    session_secret: Vec<u8>,
    limits: Limits,
    rate_limiter: RateLimiter,
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("app", &self.inner.app)
            .field("relay", &self.inner.relay)
            .finish_non_exhaustive()
    }
}

impl Backend {
    /// Opens (creating or migrating) the database and checks the config.
    pub fn open(config: BackendConfig) -> Result<Backend, BackendError> {
        if config.session_secret.len() < MIN_SESSION_SECRET_LEN {
            return Err(BackendError::Config(format!(
                "the session secret must be at least {MIN_SESSION_SECRET_LEN} bytes"
            )));
        }
        if config.app.key.is_empty() || config.app.secret.is_empty() {
            return Err(BackendError::Config(
                "the app key and secret must not be empty".into(),
            ));
        }
        let publisher = config
            .broker_url
            .as_deref()
            .map(|url| Publisher::new(url, &config.app))
            .transpose()?;
        let conn = store::schema::open(&config.database)?;
        let backend = Backend {
            inner: Arc::new(Inner {
                db: Arc::new(Mutex::new(conn)),
                app: config.app,
                relay: publisher.map(Relay::new),
                session_secret: config.session_secret,
                rate_limiter: RateLimiter::new(config.limits.max_tracked_keys),
                limits: config.limits,
            }),
        };
        // Events a previous run stored but could not publish go out now (or
        // at the first write, when opened outside a tokio runtime).
        if tokio::runtime::Handle::try_current().is_ok() {
            backend.wake_relay();
        }
        Ok(backend)
    }

    /// How many events wait in the outbox to be published.
    pub async fn waiting_events(&self) -> Result<i64, BackendError> {
        let db = Arc::clone(&self.inner.db);
        tokio::task::spawn_blocking(move || {
            let conn = db.lock().unwrap_or_else(PoisonError::into_inner);
            store::outbox::waiting(&conn)
        })
        .await
        .map_err(|error| BackendError::Config(format!("a database task failed: {error}")))?
        .map_err(BackendError::Database)
    }

    fn wake_relay(&self) {
        if let Some(relay) = &self.inner.relay {
            relay.wake(&self.inner.db);
        }
    }

    /// The HTTP API: `/api/...` and `/realtime/...` (see `API.md`).
    pub fn router(&self) -> axum::Router {
        routes::router(self.clone())
    }

    /// Checkpoints the WAL into the database file, so that a copy of the file
    /// alone has everything. Call on shutdown; the backend stays usable.
    pub fn close(&self) -> Result<(), BackendError> {
        let conn = self.inner.db.lock().unwrap_or_else(PoisonError::into_inner);
        store::schema::checkpoint(&conn)
    }

    /// Runs `work` on the database on a blocking thread.
    pub(crate) async fn db<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let db = Arc::clone(&self.inner.db);
        tokio::task::spawn_blocking(move || {
            let mut conn = db.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut conn)
        })
        .await
        .map_err(|error| ApiError::internal(format!("a database task failed: {error}")))?
    }

    /// Runs `work` in one deferred transaction (a consistent snapshot for
    /// reading) on a blocking thread; commits if it returns `Ok`.
    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        self.db(move |conn| store::in_transaction(conn, TransactionBehavior::Deferred, work))
            .await
    }

    /// Runs `work` in one immediate transaction on a blocking thread; commits
    /// if it returns `Ok`, then wakes the outbox relay for the events `work`
    /// enqueued ([`Outbox::publish`]). Immediate takes the write lock
    /// at the start, so what `work` checks still holds when it writes (a
    /// `seq`, an epoch).
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, &Outbox) -> Result<T, ApiError> + Send + 'static,
    {
        let outbox = Outbox {
            enabled: self.inner.relay.is_some(),
        };
        let value = self
            .db(move |conn| {
                store::in_transaction(conn, TransactionBehavior::Immediate, |tx| work(tx, &outbox))
            })
            .await?;
        self.wake_relay();
        Ok(value)
    }

    pub(crate) fn app(&self) -> &AppCredentials {
        &self.inner.app
    }

    pub(crate) fn session_secret(&self) -> &[u8] {
        &self.inner.session_secret
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Counts one `action` by `user` (if known) from `ip` (if known) against
    /// the configured rates: 429 `rate_limited` when either is used up.
    /// Loopback addresses are not counted per IP unless
    /// [`Limits::limit_loopback`].
    pub(crate) fn check_rate(
        &self,
        action: Action,
        user: Option<&str>,
        ip: Option<std::net::IpAddr>,
    ) -> Result<(), ApiError> {
        let limits = &self.inner.limits;
        let (per_user, per_ip) = match action {
            Action::SignIn => (None, limits.sign_ins_per_ip),
            Action::CreateRoom => (limits.rooms_per_user, limits.rooms_per_ip),
            Action::AddMember => (limits.member_adds_per_user, limits.member_adds_per_ip),
            Action::Send => (limits.sends_per_user, limits.sends_per_ip),
            Action::DeviceChange => (limits.device_changes_per_user, None),
        };
        let now = std::time::Instant::now();
        let limiter = &self.inner.rate_limiter;
        let refused = |seconds| ApiError::rate_limited(action.operation(), seconds);
        if let (Some(rate), Some(user)) = (per_user, user) {
            limiter
                .take(action, Subject::User(user.to_owned()), rate, now)
                .map_err(refused)?;
        }
        let ip = ip.map(|ip| ip.to_canonical());
        let ip = ip.filter(|ip| limits.limit_loopback || !ip.is_loopback());
        if let (Some(rate), Some(ip)) = (per_ip, ip) {
            limiter
                .take(action, Subject::Ip(ip), rate, now)
                .map_err(refused)?;
        }
        Ok(())
    }
}

/// The CORS policy for pages on other origins (a Vite or Angular dev server)
/// that call the backend with a bearer token. Any origin, never credentials:
/// the session cookie stays same-origin.
pub fn cors_layer() -> tower_http::cors::CorsLayer {
    use axum::http::{header, HeaderName, Method};
    use tower_http::cors::{Any, CorsLayer};
    // Listed by name: browsers do not let `Access-Control-Allow-Headers: *`
    // cover Authorization.
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("x-socket-id"),
        ])
        .expose_headers([header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(600))
}

/// The outbox as a write transaction sees it: [`Outbox::publish`] adds an
/// event that is published once (and only if) the transaction commits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outbox {
    /// False without a broker: nothing would ever take the events out.
    enabled: bool,
}

impl Outbox {
    /// Publishes event `name` with `data` on `channel` after the commit,
    /// leaving out the connection `socket_id` (the sender's own socket).
    pub(crate) fn publish(
        &self,
        tx: &Transaction<'_>,
        channel: &str,
        name: &str,
        data: &Value,
        socket_id: Option<&str>,
    ) -> Result<(), ApiError> {
        if self.enabled {
            store::outbox::enqueue(
                tx,
                channel,
                name,
                &data.to_string(),
                socket_id,
                ids::now_ms(),
            )?;
        }
        Ok(())
    }

    /// After the commit (and after every event enqueued before it), asks the
    /// broker to close every connection `user_id` signed in on, so that
    /// access the transaction revoked ends now rather than when the socket
    /// does: the clients reconnect and are authorized again.
    pub(crate) fn terminate_connections(
        &self,
        tx: &Transaction<'_>,
        user_id: &str,
    ) -> Result<(), ApiError> {
        if self.enabled {
            store::outbox::enqueue_terminate(tx, user_id, ids::now_ms())?;
        }
        Ok(())
    }
}
