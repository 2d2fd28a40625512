//! The REST API under `/apps/{app_id}/...`, as the `pusher` server libraries
//! call it: publish events, and query channels and presence users.
//!
//! Every request is checked in the same order: the app id (404), the body
//! size (413), the signature over method, path, query and body (401), then
//! the request itself (400, or 413 for event data over the limit). Nothing a
//! client sends leads to a 5xx.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{header, HeaderMap, Method};
use axum::Json;
use domvia_realtime::protocol::{
    validate_channel_name, validate_socket_id, verify_query, ChannelKind,
};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::state::ChannelStats;
use crate::{Inner, Limits};

/// The longest event name, in characters.
const MAX_EVENT_NAME_CHARS: usize = 200;

/// The longest user id `terminate_connections` takes (Pusher's limit for
/// user ids is 200 bytes as well).
const MAX_USER_ID_BYTES: usize = 200;

type ApiResult = Result<Json<Value>, ApiError>;

/// The request's parts that the signature covers.
struct Request<'a> {
    method: &'a Method,
    uri: &'a OriginalUri,
    headers: &'a HeaderMap,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

fn bad_path(rejection: &PathRejection) -> ApiError {
    ApiError::bad_request(
        "invalid_path",
        format!("unable to read the request path; {rejection}"),
    )
}

/// Reads the body, refusing one over `limit` bytes without buffering it.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::too_large(
            "body_too_large",
            format!("unable to read the request; the body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(err) => Err(ApiError::bad_request(
            "unreadable_body",
            format!("unable to read the request body; {err}"),
        )),
    }
}

/// Checks the app id, reads the body and verifies the signature.
async fn verified(
    inner: &Inner,
    app_id: &str,
    request: Request<'_>,
    body: Body,
) -> Result<Bytes, ApiError> {
    if app_id != inner.app.id {
        return Err(ApiError::unknown_app(app_id));
    }
    let body = read_body(body, request.headers, inner.limits.max_rest_body_bytes).await?;
    verify_query(
        &inner.app.key,
        &inner.app.secret,
        request.method.as_str(),
        request.uri.path(),
        request.uri.query().unwrap_or(""),
        &body,
        now_unix(),
    )
    .map_err(|err| ApiError::unauthorized(&err))?;
    Ok(body)
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|err| {
        ApiError::bad_request(
            "invalid_json",
            format!("unable to read the request body; it is not JSON ({err})"),
        )
    })
}

/// Decodes `%XX` escapes (a `+` stays a plus, as in the signature scheme);
/// invalid UTF-8 becomes U+FFFD.
fn percent_decode(text: &str) -> String {
    let hex = |byte: u8| char::from(byte).to_digit(16);
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.as_bytes();
    while let Some((&byte, rest)) = bytes.split_first() {
        if byte == b'%' {
            if let [hi, lo, after @ ..] = rest {
                if let (Some(hi), Some(lo)) = (hex(*hi), hex(*lo)) {
                    out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                    bytes = after;
                    continue;
                }
            }
        }
        out.push(byte);
        bytes = rest;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded value of query parameter `name` (the last one wins).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .rfind(|(key, _)| percent_decode(key).eq_ignore_ascii_case(name))
        .map(|(_, value)| percent_decode(value))
}

/// The channel attributes a request asks for with `info`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Info {
    subscription_count: bool,
    user_count: bool,
}

impl Info {
    /// Reads a comma-separated `info` list.
    fn parse(text: &str) -> Result<Info, ApiError> {
        let mut info = Info::default();
        for attribute in text.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match attribute {
                "subscription_count" => info.subscription_count = true,
                "user_count" => info.user_count = true,
                other => {
                    return Err(ApiError::bad_request(
                        "invalid_info",
                        format!(
                            "unable to read info; {other:?} is not an attribute (use subscription_count, user_count)"
                        ),
                    ))
                }
            }
        }
        Ok(info)
    }

    fn is_empty(self) -> bool {
        !self.subscription_count && !self.user_count
    }

    /// The requested attributes of a channel, as a JSON object.
    fn describe(self, kind: ChannelKind, stats: Option<&ChannelStats>) -> Map<String, Value> {
        let mut out = Map::new();
        if self.subscription_count {
            let count = stats.map_or(0, |s| s.subscription_count);
            out.insert("subscription_count".into(), Value::from(count));
        }
        if self.user_count && kind == ChannelKind::Presence {
            let count = stats.map_or(0, |s| s.user_count);
            out.insert("user_count".into(), Value::from(count));
        }
        out
    }
}

/// One event to publish, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Publication {
    name: String,
    data: String,
    /// Distinct, valid channel names, in request order.
    channels: Vec<String>,
    socket_id: Option<String>,
    info: Info,
}

/// Reads one event of `POST /events` or of a batch. `subject` names it in
/// messages ("the event", "batch event 3").
fn read_publication(
    value: &Value,
    limits: &Limits,
    subject: &str,
) -> Result<Publication, ApiError> {
    let fail = |code: &'static str, reason: String| {
        ApiError::bad_request(code, format!("unable to publish {subject}; {reason}"))
    };
    let Value::Object(map) = value else {
        return Err(fail("invalid_event", "it is not a JSON object".into()));
    };
    let name = match map.get("name") {
        Some(Value::String(name)) => name.clone(),
        Some(_) => return Err(fail("invalid_event_name", "name is not a string".into())),
        None => return Err(fail("invalid_event_name", "name is missing".into())),
    };
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_EVENT_NAME_CHARS {
        return Err(fail(
            "invalid_event_name",
            format!("name has {chars} characters, not 1 to {MAX_EVENT_NAME_CHARS}"),
        ));
    }
    let data = match map.get("data") {
        Some(Value::String(data)) => data.clone(),
        Some(other) => other.to_string(),
        None => return Err(fail("missing_data", "data is missing".into())),
    };
    if data.len() > limits.max_event_data_bytes {
        return Err(ApiError::too_large(
            "payload_too_large",
            format!(
                "unable to publish {subject}; data has {} bytes, more than the limit of {}",
                data.len(),
                limits.max_event_data_bytes
            ),
        ));
    }
    let names: Vec<&Value> = match (map.get("channel"), map.get("channels")) {
        (Some(_), Some(_)) => {
            return Err(fail(
                "invalid_channels",
                "it sets both channel and channels; set one".into(),
            ))
        }
        (Some(channel), None) => vec![channel],
        (None, Some(Value::Array(channels))) => channels.iter().collect(),
        (None, Some(_)) => return Err(fail("invalid_channels", "channels is not an array".into())),
        (None, None) => {
            return Err(fail(
                "missing_channel",
                "it names no channel (set channel or channels)".into(),
            ))
        }
    };
    if names.is_empty() {
        return Err(fail("missing_channel", "channels is empty".into()));
    }
    if names.len() > limits.max_rest_channels {
        return Err(fail(
            "too_many_channels",
            format!(
                "it names {} channels, more than the limit of {}",
                names.len(),
                limits.max_rest_channels
            ),
        ));
    }
    let mut channels = Vec::with_capacity(names.len());
    let mut seen = BTreeSet::new();
    for channel in names {
        let Value::String(channel) = channel else {
            return Err(fail("invalid_channels", "a channel is not a string".into()));
        };
        validate_channel_name(channel).map_err(|err| ApiError::invalid(&err))?;
        if seen.insert(channel.as_str()) {
            channels.push(channel.clone());
        }
    }
    let socket_id = match map.get("socket_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(socket_id)) => {
            validate_socket_id(socket_id).map_err(|err| ApiError::invalid(&err))?;
            Some(socket_id.clone())
        }
        Some(_) => {
            return Err(fail(
                "invalid_socket_id",
                "socket_id is not a string".into(),
            ))
        }
    };
    let info = match map.get("info") {
        None | Some(Value::Null) => Info::default(),
        Some(Value::String(info)) => Info::parse(info)?,
        Some(_) => return Err(fail("invalid_info", "info is not a string".into())),
    };
    Ok(Publication {
        name,
        data,
        channels,
        socket_id,
        info,
    })
}

/// The frame of a published event. The REST `data` string goes out as the
/// frame's `data` string unchanged, byte for byte, as Pusher sends it (so key
/// order, number precision and whitespace survive); pusher-js and
/// `Frame::decode` parse it as JSON when it is JSON text.
fn published_frame(name: &str, channel: &str, data: &str) -> String {
    let string = |text: &str| Value::from(text).to_string();
    format!(
        "{{\"event\":{},\"channel\":{},\"data\":{}}}",
        string(name),
        string(channel),
        string(data)
    )
}

/// Delivers a validated event; returns the requested info of its channels.
fn deliver(inner: &Inner, publication: &Publication) -> Map<String, Value> {
    let mut described = Map::new();
    for channel in &publication.channels {
        let text = published_frame(&publication.name, channel, &publication.data);
        inner
            .hub
            .publish(channel, &text.into(), publication.socket_id.as_deref());
        if !publication.info.is_empty() {
            let stats = inner.hub.channel(channel);
            let info = publication
                .info
                .describe(ChannelKind::of(channel), stats.as_ref());
            described.insert(channel.clone(), Value::Object(info));
        }
    }
    described
}

/// `POST /apps/{app_id}/events`: publishes one event to 1 or more channels,
/// except to the connection `socket_id`. Answers `{}`, or
/// `{"channels":{..}}` when the event asks for `info`.
pub(crate) async fn trigger(
    State(inner): State<Arc<Inner>>,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let Path(app_id) = path.map_err(|rejection| bad_path(&rejection))?;
    let request = Request {
        method: &method,
        uri: &uri,
        headers: &headers,
    };
    let body = verified(&inner, &app_id, request, body).await?;
    let publication = read_publication(&parse_json(&body)?, &inner.limits, "the event")?;
    let described = deliver(&inner, &publication);
    if publication.info.is_empty() {
        Ok(Json(json!({})))
    } else {
        Ok(Json(json!({ "channels": described })))
    }
}

/// `POST /apps/{app_id}/batch_events`: publishes up to `max_batch_events`
/// events, all validated before any is delivered. Answers `{}`, or
/// `{"batch":[{..}, ..]}` when an event asks for `info`.
pub(crate) async fn trigger_batch(
    State(inner): State<Arc<Inner>>,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let Path(app_id) = path.map_err(|rejection| bad_path(&rejection))?;
    let request = Request {
        method: &method,
        uri: &uri,
        headers: &headers,
    };
    let body = verified(&inner, &app_id, request, body).await?;
    let value = parse_json(&body)?;
    let Some(Value::Array(items)) = value.get("batch") else {
        return Err(ApiError::bad_request(
            "invalid_batch",
            "unable to publish the batch; the body needs a \"batch\" array",
        ));
    };
    let limit = inner.limits.max_batch_events;
    if items.len() > limit {
        return Err(ApiError::bad_request(
            "too_many_events",
            format!(
                "unable to publish the batch; it has {} events, more than the limit of {limit}",
                items.len()
            ),
        ));
    }
    let publications = items
        .iter()
        .enumerate()
        .map(|(i, item)| read_publication(item, &inner.limits, &format!("batch event {i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let wants_info = publications.iter().any(|p| !p.info.is_empty());
    let mut results = Vec::with_capacity(publications.len());
    for publication in &publications {
        let described = deliver(&inner, publication);
        // A batch event names one channel; report its attributes directly.
        let first = described.into_iter().next().map(|(_, info)| info);
        results.push(first.unwrap_or_else(|| json!({})));
    }
    if wants_info {
        Ok(Json(json!({ "batch": results })))
    } else {
        Ok(Json(json!({})))
    }
}

/// `GET /apps/{app_id}/channels?filter_by_prefix=..&info=user_count`: the
/// occupied channels. `user_count` needs a `presence-` prefix filter.
pub(crate) async fn channels(
    State(inner): State<Arc<Inner>>,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let Path(app_id) = path.map_err(|rejection| bad_path(&rejection))?;
    let request = Request {
        method: &method,
        uri: &uri,
        headers: &headers,
    };
    verified(&inner, &app_id, request, body).await?;
    let prefix = query_param(uri.query(), "filter_by_prefix").unwrap_or_default();
    let info = Info::parse(&query_param(uri.query(), "info").unwrap_or_default())?;
    if info.user_count && !prefix.starts_with(ChannelKind::Presence.prefix()) {
        return Err(ApiError::bad_request(
            "invalid_info",
            "unable to list channels; info=user_count needs filter_by_prefix=presence-",
        ));
    }
    let channels: Map<String, Value> = inner
        .hub
        .channels(&prefix)
        .into_iter()
        .map(|stats| {
            let described = info.describe(ChannelKind::of(&stats.name), Some(&stats));
            (stats.name, Value::Object(described))
        })
        .collect();
    Ok(Json(json!({ "channels": channels })))
}

fn channel_kind(name: &str) -> Result<ChannelKind, ApiError> {
    validate_channel_name(name).map_err(|err| ApiError::invalid(&err))
}

/// `GET /apps/{app_id}/channels/{channel_name}?info=subscription_count,user_count`.
pub(crate) async fn channel(
    State(inner): State<Arc<Inner>>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let Path((app_id, name)) = path.map_err(|rejection| bad_path(&rejection))?;
    let request = Request {
        method: &method,
        uri: &uri,
        headers: &headers,
    };
    verified(&inner, &app_id, request, body).await?;
    let kind = channel_kind(&name)?;
    let info = Info::parse(&query_param(uri.query(), "info").unwrap_or_default())?;
    if info.user_count && kind != ChannelKind::Presence {
        return Err(ApiError::bad_request(
            "invalid_info",
            format!(
                "unable to describe channel {name:?}; user_count is only for presence channels"
            ),
        ));
    }
    let stats = inner.hub.channel(&name);
    let mut out = info.describe(kind, stats.as_ref());
    let occupied = stats.is_some_and(|s| s.subscription_count > 0);
    out.insert("occupied".into(), Value::from(occupied));
    Ok(Json(Value::Object(out)))
}

/// `GET /apps/{app_id}/channels/{channel_name}/users`: a presence channel's members.
pub(crate) async fn users(
    State(inner): State<Arc<Inner>>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let Path((app_id, name)) = path.map_err(|rejection| bad_path(&rejection))?;
    let request = Request {
        method: &method,
        uri: &uri,
        headers: &headers,
    };
    verified(&inner, &app_id, request, body).await?;
    if channel_kind(&name)? != ChannelKind::Presence {
        return Err(ApiError::bad_request(
            "wrong_channel_kind",
            format!("unable to list the users of channel {name:?}; it is not a presence channel"),
        ));
    }
    let users: Vec<Value> = inner
        .hub
        .users(&name)
        .into_iter()
        .map(|id| json!({ "id": id }))
        .collect();
    Ok(Json(json!({ "users": users })))
}

/// `POST /apps/{app_id}/users/{user_id}/terminate_connections`: closes every
/// connection signed in as that user (`pusher:signin`) with 4009. The app
/// calls it when it revokes a user's access (removed from a room, signed
/// out); the clients reconnect and are authorized again from scratch.
/// Answers `{}` whether or not the user had connections.
pub(crate) async fn terminate_connections(
    State(inner): State<Arc<Inner>>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let Path((app_id, user_id)) = path.map_err(|rejection| bad_path(&rejection))?;
    let request = Request {
        method: &method,
        uri: &uri,
        headers: &headers,
    };
    verified(&inner, &app_id, request, body).await?;
    if user_id.is_empty() || user_id.len() > MAX_USER_ID_BYTES {
        return Err(ApiError::bad_request(
            "invalid_user_id",
            format!("unable to terminate connections; the user id must be 1 to {MAX_USER_ID_BYTES} bytes"),
        ));
    }
    inner.hub.terminate_user(&user_id);
    Ok(Json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_event_data_bytes: 10,
            max_rest_channels: 2,
            ..Limits::default()
        }
    }

    fn read(value: Value) -> Result<Publication, ApiError> {
        read_publication(&value, &limits(), "the event")
    }

    fn code(value: Value) -> &'static str {
        read(value).unwrap_err().code
    }

    #[test]
    fn reads_events() {
        let publication = read(
            json!({"name": "e", "data": {"a": 1}, "channels": ["b", "b"], "socket_id": "1.2"}),
        )
        .unwrap();
        assert_eq!(publication.data, r#"{"a":1}"#);
        assert_eq!(publication.channels, ["b"]);
        assert_eq!(publication.socket_id.as_deref(), Some("1.2"));
        let publication = read(json!({"name": "e", "data": "x", "channel": "c"})).unwrap();
        assert_eq!(publication.data, "x");
        assert_eq!(publication.channels, ["c"]);
    }

    #[test]
    fn refuses_bad_events() {
        assert_eq!(code(json!([])), "invalid_event");
        assert_eq!(
            code(json!({"data": "x", "channel": "c"})),
            "invalid_event_name"
        );
        assert_eq!(
            code(json!({"name": "", "data": "x", "channel": "c"})),
            "invalid_event_name"
        );
        let long = "n".repeat(201);
        assert_eq!(
            code(json!({"name": long, "data": "x", "channel": "c"})),
            "invalid_event_name"
        );
        assert_eq!(code(json!({"name": "e", "channel": "c"})), "missing_data");
        assert_eq!(code(json!({"name": "e", "data": "x"})), "missing_channel");
        assert_eq!(
            code(json!({"name": "e", "data": "x", "channels": []})),
            "missing_channel"
        );
        assert_eq!(
            code(json!({"name": "e", "data": "x", "channels": ["a", "b", "c"]})),
            "too_many_channels"
        );
        assert_eq!(
            code(json!({"name": "e", "data": "x", "channels": [1]})),
            "invalid_channels"
        );
        assert_eq!(
            code(json!({"name": "e", "data": "x", "channel": "a", "channels": ["a"]})),
            "invalid_channels"
        );
        assert_eq!(
            code(json!({"name": "e", "data": "x", "channel": "a b"})),
            "invalid_channel_name"
        );
        assert_eq!(
            code(json!({"name": "e", "data": "x", "channel": "a", "socket_id": "x"})),
            "invalid_socket_id"
        );
        assert_eq!(
            code(json!({"name": "e", "data": "x", "channel": "a", "info": "bogus"})),
            "invalid_info"
        );
        let err = read(json!({"name": "e", "data": "01234567890", "channel": "c"})).unwrap_err();
        assert_eq!(err.code, "payload_too_large");
        assert_eq!(err.status.as_u16(), 413);
    }

    #[test]
    fn published_data_is_passed_through() {
        let text = published_frame("e", "c", r#"{"b":1,"a":2.50}"#);
        assert_eq!(
            text,
            r#"{"event":"e","channel":"c","data":"{\"b\":1,\"a\":2.50}"}"#
        );
    }

    #[test]
    fn query_params_are_decoded() {
        let query = Some("filter_by_prefix=presence-&info=user_count%2Csubscription_count&x");
        assert_eq!(
            query_param(query, "filter_by_prefix").as_deref(),
            Some("presence-")
        );
        assert_eq!(
            query_param(query, "info").as_deref(),
            Some("user_count,subscription_count")
        );
        assert_eq!(query_param(query, "x").as_deref(), Some(""));
        assert_eq!(query_param(None, "x"), None);
        assert_eq!(percent_decode("%zz%4%41+"), "%zz%4A+");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn info_lists() {
        assert_eq!(Info::parse("").unwrap(), Info::default());
        let both = Info::parse("user_count, subscription_count").unwrap();
        assert!(both.user_count && both.subscription_count);
        assert_eq!(Info::parse("members").unwrap_err().code, "invalid_info");
    }
}
