//! Publishes events to the broker through its Pusher-compatible HTTP API:
//! `POST {broker_url}/apps/{app_id}/batch_events`, signed with
//! [`sign_query`](domvia_realtime::protocol::sign_query).
//!
//! Plain `http://` only, one short-lived HTTP/1.1 connection per batch, 5 s
//! timeout for the whole exchange. A broker in another network should be
//! reached through a TLS-terminating proxy on the same host. The backend never
//! calls this from a request: the outbox relay (`crate::relay`) does, and
//! retries what fails.

use std::fmt;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use domvia_realtime::protocol::sign_query;

use crate::store::outbox::OutboxEvent;
use crate::{AppCredentials, BackendError};

/// How long one publish may take, from connect to the end of the response.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// The most events one batch carries: Pusher's limit for `batch_events`,
/// which sockudo and the embedded broker share.
pub const MAX_BATCH_EVENTS: usize = 10;

/// The most of a broker's response body that is read (and then ignored).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The longest `Retry-After` honoured: a broker asking for more is asked
/// again after this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Whether the same events may succeed if sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// The broker refused these events themselves (400, 413, 422).
    Never,
    /// Later: the broker was unreachable, slow, overloaded, rate-limiting
    /// or misconfigured; not before the wait it asked for (`Retry-After`).
    Later(Option<Duration>),
}

/// Why a publish failed, and whether the same events may succeed later.
#[derive(Debug)]
pub struct PublishError {
    message: String,
    retry: Retry,
    /// The broker's HTTP status, when it answered.
    status: Option<u16>,
}

impl PublishError {
    /// Whether the same events may succeed later.
    pub fn retryable(&self) -> bool {
        self.retry != Retry::Never
    }

    /// How long the broker asked to wait (`Retry-After`), at most
    /// [`MAX_RETRY_AFTER`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self.retry {
            Retry::Later(wait) => wait,
            Retry::Never => None,
        }
    }
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PublishError {}

/// Whether a broker's refusal is about the events themselves. Everything
/// else (429, 5xx, 401/403/404 from a misconfigured app) may pass later.
fn refuses_the_events(status: StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 413 | 422)
}

/// A `Retry-After` in seconds (the HTTP-date form is not used by brokers).
fn retry_after(value: Option<&hyper::header::HeaderValue>) -> Option<Duration> {
    let seconds: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// A client of one broker app's REST API.
#[derive(Debug, Clone)]
pub struct Publisher {
    /// `host:port` to connect to.
    address: String,
    /// The `Host` header: the authority as written in the URL.
    host: String,
    /// The path of the batch endpoint, such as `/apps/1/batch_events`.
    batch_path: String,
    /// `{prefix}/apps/{app_id}`, for the per-user paths.
    app_path: String,
    key: String,
    secret: String,
}

/// An external broker's URL, `http://host[:port][/prefix]`, checked once:
/// the publisher posts to it, and `GET /api/config` tells pages its host and
/// port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// The authority as written (the `Host` header): `host`, `host:port`, `[::1]:6001`.
    authority: String,
    /// The host as written (an IPv6 literal keeps its brackets).
    host: String,
    /// The port, 80 when the URL has none.
    port: u16,
    /// The path prefix before `/apps/...`, without a trailing `/` (often empty).
    prefix: String,
}

impl BrokerUrl {
    pub fn parse(broker_url: &str) -> Result<BrokerUrl, BackendError> {
        let config =
            |reason: &str| BackendError::Config(format!("broker URL {broker_url:?}: {reason}"));
        let rest = broker_url
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
            .and_then(|_| broker_url.get(7..))
            .ok_or_else(|| config("only http:// URLs are supported"))?;
        let (authority, prefix) = match rest.find(['/', '?', '#']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if prefix.contains(['?', '#']) {
            return Err(config("a query or fragment is not allowed"));
        }
        let authority_ok = !authority.is_empty()
            && authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
        if !authority_ok {
            return Err(config("the host is missing or invalid"));
        }
        let valid_port = |port: &str| {
            !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok()
        };
        let (host_part, port) = match authority.strip_prefix('[') {
            Some(literal) => {
                let (_, after) = literal
                    .split_once(']')
                    .ok_or_else(|| config("the IPv6 host has no closing ']'"))?;
                (
                    &authority[..authority.len() - after.len()],
                    after.strip_prefix(':'),
                )
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let host_ok = !host_part.is_empty()
            && (host_part.starts_with('[') || !host_part.contains(['[', ']', ':']));
        let port_ok = match port {
            Some(port) => valid_port(port),
            None => authority.ends_with(']') || !authority.contains(':'),
        };
        if !host_ok || !port_ok {
            return Err(config("the host or port is invalid"));
        }
        Ok(BrokerUrl {
            authority: authority.to_owned(),
            host: host_part.to_owned(),
            // Checked by valid_port above.
            port: port.and_then(|port| port.parse().ok()).unwrap_or(80),
            prefix: prefix.trim_end_matches('/').to_owned(),
        })
    }

    /// The host as written (an IPv6 literal keeps its brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (80 when the URL has none).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Publisher {
    /// A publisher for `broker_url` (`http://host[:port][/prefix]`) and app.
    pub fn new(broker_url: &str, app: &AppCredentials) -> Result<Publisher, BackendError> {
        let url = BrokerUrl::parse(broker_url)?;
        let app_id_ok = !app.id.is_empty()
            && app
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !app_id_ok {
            return Err(BackendError::Config(
                "the app id must be non-empty [A-Za-z0-9._-]".into(),
            ));
        }
        Ok(Publisher {
            address: format!("{}:{}", url.host, url.port),
            host: url.authority,
            batch_path: format!("{}/apps/{}/batch_events", url.prefix, app.id),
            app_path: format!("{}/apps/{}", url.prefix, app.id),
            key: app.key.clone(),
            secret: app.secret.clone(),
        })
    }

    /// The JSON body of a `batch_events` request: each event's `data` is its
    /// payload as a JSON string.
    pub(crate) fn batch_body(events: &[OutboxEvent]) -> Vec<u8> {
        let batch: Vec<Value> = events
            .iter()
            .map(|event| {
                let mut item = json!({
                    "channel": event.channel,
                    "name": event.name,
                    "data": event.data,
                });
                if let (Some(socket_id), Value::Object(map)) = (&event.socket_id, &mut item) {
                    map.insert("socket_id".into(), Value::from(socket_id.as_str()));
                }
                item
            })
            .collect();
        json!({ "batch": batch }).to_string().into_bytes()
    }

    /// Publishes `events` (at most [`MAX_BATCH_EVENTS`]) in one request, in
    /// order; the broker delivers all or none.
    pub(crate) async fn publish_batch(
        &self,
        events: &[OutboxEvent],
        now_unix: u64,
    ) -> Result<(), PublishError> {
        self.post(&self.batch_path, Self::batch_body(events), now_unix)
            .await
    }

    /// Asks the broker to close every connection signed in as `user_id`
    /// (`POST .../users/{user_id}/terminate_connections`, as Pusher and
    /// sockudo serve it). User ids are `[A-Za-z0-9_-]`, so the path needs no
    /// escaping.
    pub(crate) async fn terminate_connections(
        &self,
        user_id: &str,
        now_unix: u64,
    ) -> Result<(), PublishError> {
        let path = format!("{}/users/{user_id}/terminate_connections", self.app_path);
        self.post(&path, b"{}".to_vec(), now_unix)
            .await
            .map_err(|mut error| {
                // A broker without the endpoint will never have it: waiting
                // would hold every event behind this one.
                if matches!(error.status, Some(404 | 405)) {
                    error.retry = Retry::Never;
                }
                error
            })
    }

    /// One signed POST of `body` to `path`, within [`PUBLISH_TIMEOUT`].
    async fn post(&self, path: &str, body: Vec<u8>, now_unix: u64) -> Result<(), PublishError> {
        let query = sign_query(
            &self.key,
            &self.secret,
            "POST",
            path,
            &[],
            Some(&body),
            now_unix,
        );
        let uri = format!("{path}?{query}");
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.send(uri, body)).await {
            Ok(result) => result,
            Err(_) => Err(PublishError {
                message: format!(
                    "the broker at {} did not answer within {} s",
                    self.address,
                    PUBLISH_TIMEOUT.as_secs()
                ),
                retry: Retry::Later(None),
                status: None,
            }),
        }
    }

    async fn send(&self, uri: String, body: Vec<u8>) -> Result<(), PublishError> {
        let fail = |what: &str, error: &dyn fmt::Display| PublishError {
            message: format!("{what} ({}): {error}", self.address),
            retry: Retry::Later(None),
            status: None,
        };
        let stream = TcpStream::connect(&self.address)
            .await
            .map_err(|e| fail("cannot connect to the broker", &e))?;
        // Best effort: without it events only wait a little longer.
        stream.set_nodelay(true).ok();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail("HTTP handshake failed", &e))?;
        let driver = tokio::spawn(connection);
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(HOST, &self.host)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| fail("cannot build the request", &e))?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| fail("request failed", &e))?;
            let status = response.status();
            let wait = retry_after(response.headers().get(RETRY_AFTER));
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map(|collected| collected.to_bytes())
                .unwrap_or_default();
            if status.is_success() {
                return Ok(());
            }
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            Err(PublishError {
                message: format!("the broker ({}) answered {status}: {text}", self.address),
                retry: if refuses_the_events(status) {
                    Retry::Never
                } else {
                    Retry::Later(wait)
                },
                status: Some(status.as_u16()),
            })
        }
        .await;
        drop(sender);
        driver.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppCredentials {
        AppCredentials {
            id: "app-1".into(),
            key: "key".into(),
            secret: "secret".into(),
        }
    }

    #[test]
    fn parses_broker_urls() {
        let p = Publisher::new("http://127.0.0.1:7420", &app()).unwrap();
        assert_eq!(p.address, "127.0.0.1:7420");
        assert_eq!(p.batch_path, "/apps/app-1/batch_events");
        let p = Publisher::new("HTTP://broker.local/pusher/", &app()).unwrap();
        assert_eq!(p.address, "broker.local:80");
        assert_eq!(p.host, "broker.local");
        assert_eq!(p.batch_path, "/pusher/apps/app-1/batch_events");
        let p = Publisher::new("http://[::1]:6001", &app()).unwrap();
        assert_eq!(p.address, "[::1]:6001");
        let p = Publisher::new("http://[::1]", &app()).unwrap();
        assert_eq!(p.address, "[::1]:80");
        for bad in [
            "https://broker",
            "ws://broker",
            "http://",
            "http://user@broker",
            "http://broker:port",
            "http://broker:99999",
            "http://broker/x?y",
            "broker:7420",
            "",
            "http://bro ker",
        ] {
            assert!(Publisher::new(bad, &app()).is_err(), "{bad:?}");
        }
        let mut bad_app = app();
        bad_app.id = "a/b".into();
        assert!(Publisher::new("http://broker", &bad_app).is_err());
    }

    #[test]
    fn a_broker_url_tells_browsers_its_host_and_port() {
        let at = |url: &str| {
            let url = BrokerUrl::parse(url).unwrap();
            (url.host().to_owned(), url.port())
        };
        assert_eq!(at("http://127.0.0.1:7420"), ("127.0.0.1".into(), 7420));
        // A path prefix is not part of the host or port.
        assert_eq!(at("http://b:7420/pusher"), ("b".into(), 7420));
        assert_eq!(at("http://b.local/pusher/"), ("b.local".into(), 80));
        assert_eq!(at("http://[::1]:6001/x"), ("[::1]".into(), 6001));
        assert_eq!(at("http://[::1]"), ("[::1]".into(), 80));
    }

    #[test]
    fn batch_bodies_carry_data_as_a_string() {
        let event = |channel: &str, data: &str, socket_id: Option<&str>| OutboxEvent {
            id: 0,
            channel: channel.into(),
            name: "message.created".into(),
            data: data.into(),
            socket_id: socket_id.map(str::to_owned),
            terminate_user: None,
        };
        let body = Publisher::batch_body(&[
            event("private-chat.room.r", "{\"seq\":1}", Some("1.2")),
            event("c", "{}", None),
        ]);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            json!({"batch": [
                {"name": "message.created", "channel": "private-chat.room.r", "data": "{\"seq\":1}", "socket_id": "1.2"},
                {"name": "message.created", "channel": "c", "data": "{}"},
            ]})
        );
    }

    #[test]
    fn refusals_of_the_events_are_final_and_the_rest_retry() {
        for status in [400, 413, 422] {
            assert!(refuses_the_events(StatusCode::from_u16(status).unwrap()));
        }
        for status in [401, 403, 404, 408, 429, 500, 502, 503] {
            assert!(!refuses_the_events(StatusCode::from_u16(status).unwrap()));
        }
        let header = |text: &str| hyper::header::HeaderValue::from_str(text).unwrap();
        assert_eq!(
            retry_after(Some(&header("3"))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(retry_after(Some(&header("86400"))), Some(MAX_RETRY_AFTER));
        assert_eq!(
            retry_after(Some(&header("Wed, 21 Oct 2015 07:28:00 GMT"))),
            None
        );
        assert_eq!(retry_after(None), None);
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_a_retryable_error() {
        // Port 9 (discard) on localhost is closed on test machines; either way
        // the publish must end in an error, never hang past the timeout.
        let p = Publisher::new("http://127.0.0.1:9", &app()).unwrap();
        let error = p.publish_batch(&[], 0).await.unwrap_err();
        assert!(error.retryable(), "{error}");
    }
}
