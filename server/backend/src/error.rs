//! Errors: [`BackendError`] for opening and closing the backend, and the
//! internal `ApiError` that every route returns as
//! `{"error":{"code":"<snake_case>","message":"unable to ...; ..."}}`.

use std::fmt;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// Why the backend could not open or close.
#[non_exhaustive]
#[derive(Debug)]
pub enum BackendError {
    /// The configuration is unusable (a broker URL that is not `http://`, a
    /// session secret shorter than 16 bytes, empty app credentials).
    Config(String),
    /// SQLite failed.
    Database(rusqlite::Error),
    /// The database was written by a newer version of this backend.
    SchemaTooNew { found: i64, supported: i64 },
    /// Another connection kept the WAL checkpoint from completing.
    CheckpointBlocked,
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Config(reason) => {
                write!(f, "unable to configure the chat backend; {reason}")
            }
            BackendError::Database(error) => {
                write!(f, "unable to use the chat database; {error}")
            }
            BackendError::SchemaTooNew { found, supported } => write!(
                f,
                "unable to open the chat database; its schema version {found} is newer than the supported {supported}"
            ),
            BackendError::CheckpointBlocked => f.write_str(
                "unable to checkpoint the chat database; another connection is reading or writing it",
            ),
        }
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BackendError::Database(error) => Some(error),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for BackendError {
    fn from(error: rusqlite::Error) -> Self {
        BackendError::Database(error)
    }
}

/// An error response of the HTTP API.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Map<String, Value>,
    /// Seconds for `Retry-After` (429 only).
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Map::new(),
            retry_after: None,
        }
    }

    /// 400: the request is malformed or breaks a limit on its shape.
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no valid session.
    pub(crate) fn not_signed_in() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "not_signed_in",
            "unable to identify you; sign in first (session cookie or bearer token missing, invalid or expired)",
        )
    }

    /// 403: signed in, but not allowed.
    pub(crate) fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404: no such thing.
    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409: conflicts with what is stored.
    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 413: a body or a field is over its size limit.
    pub(crate) fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }

    /// 415 `json_required`: a browser write with a session cookie must be
    /// JSON, which no cross-origin page can send without a CORS preflight.
    pub(crate) fn json_required() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "json_required",
            "unable to accept the request; without an Authorization header a write must have Content-Type: application/json",
        )
    }

    /// 429 `rate_limited`, with `Retry-After: seconds` and the same number
    /// as `retry_after`. `action` completes "unable to ...".
    pub(crate) fn rate_limited(action: &str, seconds: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("unable to {action}; too many requests, retry in {seconds} s"),
        )
        .with("retry_after", seconds);
        error.retry_after = Some(seconds);
        error
    }

    /// 400 `room_not_encrypted`: the room is plaintext, so it takes no
    /// ciphertext and has no epochs. `action` completes "unable to ...".
    pub(crate) fn room_not_encrypted(action: &str) -> Self {
        Self::bad_request(
            "room_not_encrypted",
            format!("unable to {action}; the room is not end-to-end encrypted"),
        )
    }

    /// 500: our fault. The cause goes to stderr, not to the client.
    pub(crate) fn internal(cause: impl fmt::Display) -> Self {
        eprintln!("domvia-backend: internal error: {cause}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "unable to complete the request; the server failed (see its log)",
        )
    }

    /// Adds a machine-readable detail next to `code` and `message`.
    pub(crate) fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    #[cfg(test)]
    pub(crate) fn code(&self) -> &'static str {
        self.code
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(error: rusqlite::Error) -> Self {
        ApiError::internal(format!("sqlite: {error}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = Map::new();
        error.insert("code".into(), Value::from(self.code));
        error.insert("message".into(), Value::from(self.message));
        error.extend(self.details);
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
