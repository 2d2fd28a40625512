//! Reading requests: the signed-in user, bodies (JSON or form), query
//! strings and path parameters, each failing with an [`ApiError`] of our own
//! JSON shape rather than axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use domvia_realtime::protocol::validate_socket_id;

use crate::error::ApiError;
use crate::store::users::{self, User};
use crate::{ids, session, Backend};

/// The signed-in user, from a valid session token whose user exists.
/// Rejects with 401 `not_signed_in`.
#[derive(Debug, Clone)]
pub(crate) struct CurrentUser(pub User);

impl FromRequestParts<Backend> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, backend: &Backend) -> Result<Self, ApiError> {
        let token = session::token_of(&parts.headers).ok_or_else(ApiError::not_signed_in)?;
        let claims = session::verify(backend.session_secret(), token, ids::now_unix())
            .ok_or_else(ApiError::not_signed_in)?;
        let user_id = claims.user_id;
        let found = backend
            .db(move |conn| Ok(users::find_with_generation(conn, &user_id)?))
            .await?;
        // A token of an earlier generation was revoked by a sign-out.
        match found {
            Some((user, generation)) if generation == claims.generation => Ok(CurrentUser(user)),
            _ => Err(ApiError::not_signed_in()),
        }
    }
}

/// The client's IP address, as the server's listener saw it
/// (`ConnectInfo`), if the server recorded it. `X-Forwarded-For` is not
/// trusted: behind a proxy this is the proxy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(address)| address.ip()),
        ))
    }
}

/// The sender's socket id from `X-Socket-Id`, if it is a valid one: passed to
/// the broker so that the sender's own connection is not sent the event.
pub(crate) fn socket_id_header(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("x-socket-id")?.to_str().ok()?.trim();
    validate_socket_id(value).ok()?;
    Some(value.to_owned())
}

/// The most a request body may hold. Fields have their own smaller limits.
pub(crate) const MAX_BODY_BYTES: usize = 512 * 1024;

/// A request body as a JSON object: parsed as a form when the content type is
/// `application/x-www-form-urlencoded` (every value a string), else as JSON.
/// Rejects with 400 `invalid_body` or 413 `body_too_large`.
#[derive(Debug)]
pub(crate) struct Body(pub Map<String, Value>);

impl FromRequest<Backend> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, backend: &Backend) -> Result<Self, ApiError> {
        let is_form = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                value
                    .trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        let bytes = Bytes::from_request(request, backend)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large(
                        "body_too_large",
                        format!(
                            "unable to read the request; the body is over {MAX_BODY_BYTES} bytes"
                        ),
                    )
                } else {
                    ApiError::bad_request("invalid_body", "unable to read the request body")
                }
            })?;
        if is_form {
            let map = form_urlencoded::parse(&bytes)
                .map(|(key, value)| (key.into_owned(), Value::from(value.into_owned())))
                .collect();
            return Ok(Body(map));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(Body(map)),
            Ok(_) => Err(ApiError::bad_request(
                "invalid_body",
                "unable to read the request; the body is not a JSON object",
            )),
            Err(_) => Err(ApiError::bad_request(
                "invalid_body",
                "unable to read the request; the body is not valid JSON",
            )),
        }
    }
}

impl Body {
    /// A field that must be a string. `code` is the error code if it is not.
    pub(crate) fn string(&self, name: &str, code: &'static str) -> Result<&str, ApiError> {
        match self.0.get(name) {
            Some(Value::String(text)) => Ok(text),
            Some(_) => Err(ApiError::bad_request(
                code,
                format!("unable to read {name}; it must be a string"),
            )),
            None => Err(ApiError::bad_request(
                code,
                format!("unable to read {name}; it is missing"),
            )),
        }
    }

    /// An optional boolean field: `default` when absent.
    pub(crate) fn optional_bool(
        &self,
        name: &str,
        default: bool,
        code: &'static str,
    ) -> Result<bool, ApiError> {
        match self.0.get(name) {
            None => Ok(default),
            Some(Value::Bool(value)) => Ok(*value),
            Some(_) => Err(ApiError::bad_request(
                code,
                format!("unable to read {name}; it must be true or false"),
            )),
        }
    }

    /// A field that must be an integer in `i64` range.
    pub(crate) fn integer(&self, name: &str, code: &'static str) -> Result<i64, ApiError> {
        match self.0.get(name) {
            Some(Value::Number(number)) => number.as_i64().ok_or_else(|| {
                ApiError::bad_request(
                    code,
                    format!("unable to read {name}; it must be an integer"),
                )
            }),
            Some(_) => Err(ApiError::bad_request(
                code,
                format!("unable to read {name}; it must be an integer"),
            )),
            None => Err(ApiError::bad_request(
                code,
                format!("unable to read {name}; it is missing"),
            )),
        }
    }
}

/// An opaque JSON object field, serialized, of at most `max_bytes`: 400 `code`
/// if it is not an object, 413 `too_large_code` if it is too big.
pub(crate) fn opaque_object(
    value: Option<&Value>,
    name: &str,
    max_bytes: usize,
    code: &'static str,
    too_large_code: &'static str,
) -> Result<String, ApiError> {
    match value {
        Some(value @ Value::Object(_)) => {
            let text = value.to_string();
            if text.len() > max_bytes {
                Err(ApiError::too_large(
                    too_large_code,
                    format!(
                        "unable to store {name}; it is {} bytes as JSON, more than {max_bytes}",
                        text.len()
                    ),
                ))
            } else {
                Ok(text)
            }
        }
        Some(_) => Err(ApiError::bad_request(
            code,
            format!("unable to read {name}; it must be a JSON object"),
        )),
        None => Err(ApiError::bad_request(
            code,
            format!("unable to read {name}; it is missing"),
        )),
    }
}

/// The query string's parameters; a repeated name keeps its last value.
pub(crate) fn query_params(query: Option<&str>) -> Map<String, Value> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(key, value)| (key.into_owned(), Value::from(value.into_owned())))
        .collect()
}

/// An optional integer query parameter: 400 `invalid_query` if present and
/// not a decimal integer.
pub(crate) fn query_integer(
    params: &Map<String, Value>,
    name: &str,
) -> Result<Option<i64>, ApiError> {
    match params.get(name).and_then(Value::as_str) {
        None => Ok(None),
        Some(text) => text.trim().parse::<i64>().map(Some).map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!("unable to read the {name} parameter; it must be an integer"),
            )
        }),
    }
}

/// A path parameter, or 400 `invalid_path`.
pub(crate) fn path<T>(path: Result<axum::extract::Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|axum::extract::Path(value)| value)
        .map_err(|_| ApiError::bad_request("invalid_path", "unable to read the request path"))
}
