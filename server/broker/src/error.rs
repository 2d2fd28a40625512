//! The REST API's error responses:
//! `{"error":{"code":"<snake_case>","message":"unable to ...; ..."}}` with a
//! 4xx status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use domvia_realtime::protocol;

/// A refused REST request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    /// 400 with `code`.
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    /// 400 with the protocol core's code and message.
    pub(crate) fn invalid(err: &protocol::Error) -> ApiError {
        ApiError::bad_request(err.code(), err.to_string())
    }

    /// 401 for a request whose signature does not verify.
    pub(crate) fn unauthorized(err: &protocol::Error) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: err.code(),
            message: err.to_string(),
        }
    }

    /// 404 for an app id the broker does not serve.
    pub(crate) fn unknown_app(app_id: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "unknown_app",
            message: format!("unable to find app {app_id:?}; this broker serves another app"),
        }
    }

    /// 413 with `code`.
    pub(crate) fn too_large(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let err = ApiError::unauthorized(&protocol::Error::TimestampOutOfWindow);
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        assert_eq!(err.code, "auth_timestamp_expired");
        assert!(err.message.starts_with("unable to "));
        assert_eq!(ApiError::unknown_app("9").status, StatusCode::NOT_FOUND);
        assert_eq!(
            ApiError::too_large("payload_too_large", "x").status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
