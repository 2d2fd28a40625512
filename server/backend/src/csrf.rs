//! Cross-site request forgery: what a page of another origin can make a
//! browser send with the session cookie is a "simple" request: a `POST` with a
//! form, `text/plain` or multipart body, or with no `Content-Type` at all.
//! `SameSite=Lax` stops such a request from another *site*, not from another
//! origin of the same site (another port of `localhost`, a sibling
//! subdomain). So a write without an `Authorization` header must be JSON,
//! which no other origin can send without a CORS preflight, and the backend's
//! CORS policy never allows credentials. A bearer token cannot be forged: a
//! page can only send one it holds.
//!
//! The one exception is the form pusher-js posts to `/realtime/*`: it is
//! accepted from the page's own origin only (`Sec-Fetch-Site`, else
//! `Origin` against `Host`).

use axum::extract::Request;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, ORIGIN};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The media type of a `Content-Type`, lowercase, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or("").trim();
    Some(essence.to_ascii_lowercase())
}

/// Whether the request comes from a page of another origin, by
/// `Sec-Fetch-Site` (every current browser sends it), else by comparing
/// `Origin` with `Host`. Neither header (a non-browser client): not.
fn from_another_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        // "none" is a navigation the user typed; "same-origin" the page itself.
        return !matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return false;
    };
    let origin = origin.to_str().unwrap_or("");
    let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
    let host = headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("");
    !authority.eq_ignore_ascii_case(host)
}

/// Refuses writes a page of another origin could forge: 415 `json_required`
/// for a write without `Authorization` whose body is not JSON (a `DELETE`
/// may have no body), 403 `cross_origin_form` for a `/realtime/*` form that
/// carries a cookie from another origin.
pub(crate) async fn refuse_forgeable_writes(request: Request, next: Next) -> Response {
    let method = request.method();
    let writes = [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(method);
    let headers = request.headers();
    if !writes || headers.contains_key(AUTHORIZATION) {
        return next.run(request).await;
    }
    let realtime = request.uri().path().starts_with("/realtime/");
    match media_type(headers).as_deref() {
        Some("application/json") => {}
        None if method == Method::DELETE => {}
        Some("application/x-www-form-urlencoded") if realtime => {
            // Without a cookie there is no session to borrow: the route
            // answers 401 itself.
            if headers.contains_key(COOKIE) && from_another_origin(headers) {
                return ApiError::forbidden(
                    "cross_origin_form",
                    "unable to authorize; a form with the session cookie is accepted from the page's own origin only",
                )
                .into_response();
            }
        }
        _ => return ApiError::json_required().into_response(),
    }
    next.run(request).await
}
