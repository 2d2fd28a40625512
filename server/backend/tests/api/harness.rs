//! A backend on a fresh temporary SQLite file, and request helpers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use domvia_backend::{AppCredentials, Backend, BackendConfig, Limits};
use serde_json::{json, Value};
use tower::ServiceExt;

pub const APP_ID: &str = "test-app";
pub const KEY: &str = "test-key";
pub const SECRET: &str = "test-secret";
pub const SESSION_SECRET: &[u8] = b"session secret for tests, 32 b!!";

/// A temporary database file, removed (with its WAL and shm) on drop.
pub struct TempDb {
    pub path: PathBuf,
}

impl TempDb {
    pub fn new() -> TempDb {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "domvia-backend-test-{}-{}-{nanos}.sqlite3",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        TempDb { path }
    }

    pub fn files(&self) -> [PathBuf; 3] {
        let with = |suffix: &str| {
            let mut name = self.path.clone().into_os_string();
            name.push(suffix);
            PathBuf::from(name)
        };
        [self.path.clone(), with("-wal"), with("-shm")]
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for file in self.files() {
            std::fs::remove_file(file).ok();
        }
    }
}

pub fn config(path: &Path, broker_url: Option<String>) -> BackendConfig {
    BackendConfig {
        database: path.to_string_lossy().into_owned(),
        app: AppCredentials {
            id: APP_ID.into(),
            key: KEY.into(),
            secret: SECRET.into(),
        },
        broker_url,
        session_secret: SESSION_SECRET.to_vec(),
        limits: Limits::default(),
    }
}

/// A backend and its router. Field order matters: the database file is
/// removed after the backend is dropped.
pub struct TestApp {
    pub router: Router,
    pub backend: Backend,
    pub db: TempDb,
}

/// A response, with the body parsed as JSON (`null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    #[track_caller]
    pub fn expect(self, status: u16) -> Reply {
        assert_eq!(self.status.as_u16(), status, "{:#}", self.body);
        self
    }

    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Reply {
        assert_eq!(self.status.as_u16(), status, "{:#}", self.body);
        assert_eq!(self.code(), code, "{:#}", self.body);
        assert!(
            self.body
                .pointer("/error/message")
                .and_then(Value::as_str)
                .is_some_and(|m| m.starts_with("unable to ")),
            "{:#}",
            self.body
        );
        self
    }
}

/// A signed-in test user.
#[derive(Debug, Clone)]
pub struct Who {
    pub id: String,
    pub name: String,
    pub token: String,
}

impl TestApp {
    pub fn new() -> TestApp {
        Self::with_broker(None)
    }

    pub fn with_broker(broker_url: Option<String>) -> TestApp {
        let db = TempDb::new();
        let backend = Backend::open(config(&db.path, broker_url)).expect("open the backend");
        TestApp {
            router: backend.router(),
            backend,
            db,
        }
    }

    /// A test app with these limits (and no broker).
    pub fn with_limits(limits: Limits) -> TestApp {
        let db = TempDb::new();
        let backend = Backend::open(BackendConfig {
            limits,
            ..config(&db.path, None)
        })
        .expect("open the backend");
        TestApp {
            router: backend.router(),
            backend,
            db,
        }
    }

    /// A test app over `backend`, whose database file the caller owns.
    pub fn from_backend(backend: Backend) -> TestApp {
        TestApp {
            router: backend.router(),
            backend,
            db: TempDb::new(),
        }
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let body = body.map(|b| b.to_string().into_bytes());
        self.raw(method, uri, token, "application/json", body, &[])
            .await
    }

    /// Sends raw bytes with a content type (none if empty) and extra headers.
    pub async fn raw(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        content_type: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        if body.is_some() && !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Body::from(body.unwrap_or_default()))
            .expect("a valid request");
        self.request(request).await
    }

    /// Sends a request as it is, with a client address as axum's
    /// `into_make_service_with_connect_info` records it.
    pub async fn request_from(&self, ip: &str, mut request: Request<Body>) -> Reply {
        let ip: std::net::IpAddr = ip.parse().expect("an IP address");
        let address = std::net::SocketAddr::new(ip, 40000);
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(address));
        self.request(request).await
    }

    /// Sends a request as it is.
    pub async fn request(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("read the body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str, who: &Who) -> Reply {
        self.call(Method::GET, uri, Some(&who.token), None).await
    }

    pub async fn post(&self, uri: &str, who: &Who, body: Value) -> Reply {
        self.call(Method::POST, uri, Some(&who.token), Some(body))
            .await
    }

    pub async fn sign_in(&self, name: &str) -> Who {
        let reply = self
            .call(
                Method::POST,
                "/api/session",
                None,
                Some(json!({ "name": name })),
            )
            .await
            .expect(200);
        Who {
            id: str_at(&reply.body, "/user/id"),
            name: str_at(&reply.body, "/user/name"),
            token: str_at(&reply.body, "/token"),
        }
    }

    /// A plaintext group room of `creator` and `others`; returns its id.
    pub async fn group(&self, creator: &Who, others: &[&Who]) -> String {
        self.new_group(creator, others, false).await
    }

    /// An end-to-end encrypted group room of `creator` and `others`.
    pub async fn encrypted_group(&self, creator: &Who, others: &[&Who]) -> String {
        self.new_group(creator, others, true).await
    }

    async fn new_group(&self, creator: &Who, others: &[&Who], encrypted: bool) -> String {
        let ids: Vec<&str> = others.iter().map(|w| w.id.as_str()).collect();
        let reply = self
            .post(
                "/api/rooms",
                creator,
                json!({ "kind": "group", "name": "Team", "member_ids": ids, "encrypted": encrypted }),
            )
            .await
            .expect(201);
        assert_eq!(reply.body["encrypted"], encrypted);
        str_at(&reply.body, "/room_id")
    }

    /// Creates `epoch` in a room with a share for every current member
    /// device, as a client would (`POST .../epochs`).
    pub async fn create_epoch(&self, room_id: &str, who: &Who, epoch: i64) -> Reply {
        let devices = self
            .get(&format!("/api/rooms/{room_id}/devices"), who)
            .await
            .expect(200);
        let shares: Vec<Value> = devices
            .body
            .as_array()
            .expect("a device list")
            .iter()
            .map(|d| json!({ "device_id": d["device_id"], "share": { "for": d["device_id"] } }))
            .collect();
        self.post(
            &format!("/api/rooms/{room_id}/epochs"),
            who,
            json!({ "epoch": epoch, "shares": shares }),
        )
        .await
    }

    /// Sends an opaque envelope (`{"epoch", ...}`) as `ciphertext`.
    pub async fn send_sealed(
        &self,
        room_id: &str,
        who: &Who,
        client_id: &str,
        envelope: Value,
    ) -> Reply {
        self.post(
            &format!("/api/rooms/{room_id}/messages"),
            who,
            json!({ "client_id": client_id, "ciphertext": envelope }),
        )
        .await
    }

    pub async fn send(&self, room_id: &str, who: &Who, client_id: &str, text: &str) -> Reply {
        self.post(
            &format!("/api/rooms/{room_id}/messages"),
            who,
            json!({ "client_id": client_id, "text": text }),
        )
        .await
    }
}

#[track_caller]
pub fn str_at(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value:#}"))
        .to_owned()
}
