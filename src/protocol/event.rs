//! Typed events of protocol 7, read from and written to [`Frame`]s.
//!
//! [`Event::from_frame`] interprets the events the protocol defines and passes
//! every other event (`client-` events, app events published through the REST
//! API) through untouched as [`Event::Custom`].

use crate::json::{Map, Value};

use super::{Error, Frame};

/// Broker to client: the connection is open; carries the socket id.
pub const CONNECTION_ESTABLISHED: &str = "pusher:connection_established";
/// Either way: an error, with an optional close-code-like number.
pub const ERROR: &str = "pusher:error";
/// Either way: are you there?
pub const PING: &str = "pusher:ping";
/// Either way: the answer to a ping.
pub const PONG: &str = "pusher:pong";
/// Client to broker: subscribe to a channel, with auth for private and presence.
pub const SUBSCRIBE: &str = "pusher:subscribe";
/// Client to broker: leave a channel.
pub const UNSUBSCRIBE: &str = "pusher:unsubscribe";
/// Broker to client: the subscription is active; presence channels add members.
pub const SUBSCRIPTION_SUCCEEDED: &str = "pusher_internal:subscription_succeeded";
/// Broker to client: the subscription was refused.
pub const SUBSCRIPTION_ERROR: &str = "pusher:subscription_error";
/// Broker to client: a cache channel has no cached event yet.
pub const CACHE_MISS: &str = "pusher:cache_miss";
/// Broker to client: how many connections are subscribed to a channel.
pub const SUBSCRIPTION_COUNT: &str = "pusher_internal:subscription_count";
/// Broker to client: a member joined a presence channel.
pub const MEMBER_ADDED: &str = "pusher_internal:member_added";
/// Broker to client: a member left a presence channel.
pub const MEMBER_REMOVED: &str = "pusher_internal:member_removed";
/// Client to broker: sign the user in on this connection.
pub const SIGNIN: &str = "pusher:signin";
/// Broker to client: the user is signed in.
pub const SIGNIN_SUCCESS: &str = "pusher:signin_success";
/// Broker to client: users on the signed-in user's watchlist came online or went offline.
pub const WATCHLIST_EVENTS: &str = "pusher_internal:watchlist_events";

/// The `activity_timeout` assumed when `pusher:connection_established` leaves it
/// out, in seconds (Pusher's own default).
pub const DEFAULT_ACTIVITY_TIMEOUT_SECS: u32 = 120;

/// The members of a presence channel, as sent with `subscription_succeeded`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PresenceSnapshot {
    /// The user ids of the members.
    pub ids: Vec<String>,
    /// Each member's `user_info`, by user id.
    pub hash: Map,
    /// The number of members.
    pub count: u32,
}

/// One entry of `pusher_internal:watchlist_events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchlistEvent {
    /// `online` or `offline`.
    pub name: String,
    /// The users the event is about.
    pub user_ids: Vec<String>,
}

/// A protocol 7 event with typed data.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `pusher:connection_established`.
    ConnectionEstablished {
        socket_id: String,
        /// Seconds of silence after which the client pings.
        activity_timeout: u32,
    },
    /// `pusher:error`.
    Error { message: String, code: Option<u16> },
    /// `pusher:ping`.
    Ping,
    /// `pusher:pong`.
    Pong,
    /// `pusher:subscribe` (the channel travels in `data`, not in the frame).
    Subscribe {
        channel: String,
        auth: Option<String>,
        channel_data: Option<String>,
    },
    /// `pusher:unsubscribe`.
    Unsubscribe { channel: String },
    /// `pusher_internal:subscription_succeeded`; `presence` for presence channels.
    SubscriptionSucceeded {
        channel: String,
        presence: Option<PresenceSnapshot>,
    },
    /// `pusher:subscription_error`; `error_type` is the wire's `type`, such as `AuthError`.
    SubscriptionError {
        channel: String,
        error_type: Option<String>,
        error: Option<String>,
        status: Option<u16>,
    },
    /// `pusher:cache_miss`.
    CacheMiss { channel: String },
    /// `pusher_internal:subscription_count`.
    SubscriptionCount {
        channel: String,
        subscription_count: u32,
    },
    /// `pusher_internal:member_added`.
    MemberAdded {
        channel: String,
        user_id: String,
        user_info: Option<Value>,
    },
    /// `pusher_internal:member_removed`.
    MemberRemoved { channel: String, user_id: String },
    /// `pusher:signin`; `user_data` is the JSON text that was signed.
    Signin { auth: String, user_data: String },
    /// `pusher:signin_success`; `user_data` is the JSON text that was signed.
    SigninSuccess { user_data: String },
    /// `pusher_internal:watchlist_events`.
    WatchlistEvents { events: Vec<WatchlistEvent> },
    /// Any other event, untouched: `client-` events and app events.
    Custom(Frame),
}

fn invalid(event: &str, reason: impl Into<String>) -> Error {
    Error::InvalidEventData {
        event: event.to_owned(),
        reason: reason.into(),
    }
}

/// The frame's channel, which this event needs.
fn required_channel(frame: &Frame) -> Result<String, Error> {
    frame
        .channel
        .clone()
        .ok_or_else(|| invalid(&frame.event, "the frame has no channel"))
}

/// The frame's data as an object.
fn data_object(frame: &Frame) -> Result<&Map<String, Value>, Error> {
    match &frame.data {
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(invalid(&frame.event, "data is not an object")),
        None => Err(invalid(&frame.event, "the frame has no data")),
    }
}

fn required_str(event: &str, map: &Map<String, Value>, key: &str) -> Result<String, Error> {
    match map.get(key) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(invalid(event, format!("{key} is not a string"))),
        None => Err(invalid(event, format!("{key} is missing"))),
    }
}

/// An optional string member; `null` counts as absent.
fn optional_str(event: &str, map: &Map<String, Value>, key: &str) -> Result<Option<String>, Error> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(invalid(event, format!("{key} is not a string"))),
    }
}

/// An optional integer member that must fit `T`; `null` counts as absent.
fn optional_int<T: TryFrom<u64>>(
    event: &str,
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<T>, Error> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| invalid(event, format!("{key} is not an integer in range"))),
    }
}

fn required_int<T: TryFrom<u64>>(
    event: &str,
    map: &Map<String, Value>,
    key: &str,
) -> Result<T, Error> {
    optional_int(event, map, key)?.ok_or_else(|| invalid(event, format!("{key} is missing")))
}

/// A user id: a string, or an integer that some server libraries send for one.
fn user_id_of(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

fn required_user_id(event: &str, map: &Map<String, Value>, key: &str) -> Result<String, Error> {
    map.get(key)
        .and_then(user_id_of)
        .ok_or_else(|| invalid(event, format!("{key} is not a user id")))
}

fn user_ids(event: &str, value: Option<&Value>, key: &str) -> Result<Vec<String>, Error> {
    let Some(Value::Array(items)) = value else {
        return Err(invalid(event, format!("{key} is not an array")));
    };
    items
        .iter()
        .map(|item| user_id_of(item).ok_or_else(|| invalid(event, format!("{key} holds a non-id"))))
        .collect()
}

fn read_presence(event: &str, presence: &Map<String, Value>) -> Result<PresenceSnapshot, Error> {
    let hash = match presence.get("hash") {
        Some(Value::Object(hash)) => hash.clone(),
        _ => return Err(invalid(event, "presence.hash is not an object")),
    };
    let ids = match presence.get("ids") {
        None | Some(Value::Null) => presence_keys(&hash),
        value => user_ids(event, value, "presence.ids")?,
    };
    let count = match optional_int::<u32>(event, presence, "count")? {
        Some(count) => count,
        None => u32::try_from(ids.len()).unwrap_or(u32::MAX),
    };
    Ok(PresenceSnapshot { ids, hash, count })
}

/// A JSON object of the members that are `Some`.
fn object(members: &mut [(&str, Option<Value>)]) -> Value {
    let mut map = Map::new();
    for (key, value) in members {
        if let Some(value) = value.take() {
            map.insert((*key).to_owned(), value);
        }
    }
    Value::Object(map)
}

fn presence_keys(hash: &Map) -> Vec<String> {
    hash.keys().cloned().collect()
}

impl Event {
    /// Interprets a frame. Events the protocol defines become typed variants and
    /// fail with [`Error::InvalidEventData`] when their data has the wrong shape;
    /// every other event becomes [`Event::Custom`] with the frame untouched.
    ///
    /// Lenient where servers differ: `null` counts as absent, integer user ids
    /// become strings, a missing `activity_timeout` is
    /// [`DEFAULT_ACTIVITY_TIMEOUT_SECS`], `pusher:error` may lack a code (or be a
    /// bare string), and presence data may lack `ids` (taken from `hash`) or
    /// `count` (the number of ids).
    pub fn from_frame(frame: Frame) -> Result<Event, Error> {
        let event = frame.event.as_str();
        let parsed = match event {
            CONNECTION_ESTABLISHED => {
                let data = data_object(&frame)?;
                Event::ConnectionEstablished {
                    socket_id: required_str(event, data, "socket_id")?,
                    activity_timeout: optional_int(event, data, "activity_timeout")?
                        .unwrap_or(DEFAULT_ACTIVITY_TIMEOUT_SECS),
                }
            }
            ERROR => match &frame.data {
                None | Some(Value::Null) => Event::Error {
                    message: String::new(),
                    code: None,
                },
                Some(Value::String(message)) => Event::Error {
                    message: message.clone(),
                    code: None,
                },
                Some(Value::Object(data)) => Event::Error {
                    message: optional_str(event, data, "message")?.unwrap_or_default(),
                    code: optional_int(event, data, "code")?,
                },
                Some(_) => return Err(invalid(event, "data is not an object")),
            },
            PING => Event::Ping,
            PONG => Event::Pong,
            SUBSCRIBE => {
                let data = data_object(&frame)?;
                Event::Subscribe {
                    channel: required_str(event, data, "channel")?,
                    auth: optional_str(event, data, "auth")?,
                    channel_data: optional_str(event, data, "channel_data")?,
                }
            }
            UNSUBSCRIBE => Event::Unsubscribe {
                channel: required_str(event, data_object(&frame)?, "channel")?,
            },
            SUBSCRIPTION_SUCCEEDED => {
                let channel = required_channel(&frame)?;
                let presence = match &frame.data {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(data)) => match data.get("presence") {
                        None | Some(Value::Null) => None,
                        Some(Value::Object(presence)) => Some(read_presence(event, presence)?),
                        Some(_) => return Err(invalid(event, "presence is not an object")),
                    },
                    Some(_) => return Err(invalid(event, "data is not an object")),
                };
                Event::SubscriptionSucceeded { channel, presence }
            }
            SUBSCRIPTION_ERROR => {
                let channel = required_channel(&frame)?;
                let (error_type, error, status) = match &frame.data {
                    None | Some(Value::Null) => (None, None, None),
                    Some(Value::Object(data)) => (
                        optional_str(event, data, "type")?,
                        optional_str(event, data, "error")?,
                        optional_int(event, data, "status")?,
                    ),
                    Some(Value::String(error)) => (None, Some(error.clone()), None),
                    // Old servers sent only the HTTP status of the auth request.
                    Some(Value::Number(status)) => {
                        let status = status.as_u64().and_then(|n| u16::try_from(n).ok());
                        (
                            None,
                            None,
                            Some(status.ok_or_else(|| invalid(event, "status out of range"))?),
                        )
                    }
                    Some(_) => return Err(invalid(event, "data is not an object")),
                };
                Event::SubscriptionError {
                    channel,
                    error_type,
                    error,
                    status,
                }
            }
            CACHE_MISS => Event::CacheMiss {
                channel: required_channel(&frame)?,
            },
            SUBSCRIPTION_COUNT => Event::SubscriptionCount {
                channel: required_channel(&frame)?,
                subscription_count: required_int(
                    event,
                    data_object(&frame)?,
                    "subscription_count",
                )?,
            },
            MEMBER_ADDED => {
                let channel = required_channel(&frame)?;
                let data = data_object(&frame)?;
                Event::MemberAdded {
                    channel,
                    user_id: required_user_id(event, data, "user_id")?,
                    user_info: data.get("user_info").cloned(),
                }
            }
            MEMBER_REMOVED => Event::MemberRemoved {
                channel: required_channel(&frame)?,
                user_id: required_user_id(event, data_object(&frame)?, "user_id")?,
            },
            SIGNIN => {
                let data = data_object(&frame)?;
                Event::Signin {
                    auth: required_str(event, data, "auth")?,
                    user_data: required_str(event, data, "user_data")?,
                }
            }
            SIGNIN_SUCCESS => Event::SigninSuccess {
                user_data: required_str(event, data_object(&frame)?, "user_data")?,
            },
            WATCHLIST_EVENTS => {
                let data = data_object(&frame)?;
                let Some(Value::Array(items)) = data.get("events") else {
                    return Err(invalid(event, "events is not an array"));
                };
                let events = items
                    .iter()
                    .map(|item| {
                        let Value::Object(item) = item else {
                            return Err(invalid(event, "an entry of events is not an object"));
                        };
                        Ok(WatchlistEvent {
                            name: required_str(event, item, "name")?,
                            user_ids: user_ids(event, item.get("user_ids"), "user_ids")?,
                        })
                    })
                    .collect::<Result<Vec<_>, Error>>()?;
                Event::WatchlistEvents { events }
            }
            _ => return Ok(Event::Custom(frame)),
        };
        Ok(parsed)
    }

    /// The frame of this event, in the shape [`Event::from_frame`] reads back.
    pub fn to_frame(&self) -> Frame {
        match self {
            Event::ConnectionEstablished {
                socket_id,
                activity_timeout,
            } => Frame::new(CONNECTION_ESTABLISHED).with_data(object(&mut [
                ("socket_id", Some(Value::from(socket_id.as_str()))),
                ("activity_timeout", Some(Value::from(*activity_timeout))),
            ])),
            Event::Error { message, code } => Frame::new(ERROR).with_data(object(&mut [
                ("message", Some(Value::from(message.as_str()))),
                ("code", code.map(Value::from)),
            ])),
            Event::Ping => Event::ping_frame(),
            Event::Pong => Event::pong_frame(),
            Event::Subscribe {
                channel,
                auth,
                channel_data,
            } => Event::subscribe_frame(channel, auth.as_deref(), channel_data.as_deref()),
            Event::Unsubscribe { channel } => Event::unsubscribe_frame(channel),
            Event::SubscriptionSucceeded { channel, presence } => {
                let presence = presence.as_ref().map(|presence| {
                    let mut hash = Map::new();
                    for (id, info) in &presence.hash {
                        hash.insert(id.clone(), info.clone());
                    }
                    object(&mut [
                        ("ids", Some(Value::from(presence.ids.clone()))),
                        ("hash", Some(Value::Object(hash))),
                        ("count", Some(Value::from(presence.count))),
                    ])
                });
                Frame::new(SUBSCRIPTION_SUCCEEDED)
                    .with_channel(channel.as_str())
                    .with_data(object(&mut [("presence", presence)]))
            }
            Event::SubscriptionError {
                channel,
                error_type,
                error,
                status,
            } => Frame::new(SUBSCRIPTION_ERROR)
                .with_channel(channel.as_str())
                .with_data(object(&mut [
                    ("type", error_type.as_deref().map(Value::from)),
                    ("error", error.as_deref().map(Value::from)),
                    ("status", status.map(Value::from)),
                ])),
            Event::CacheMiss { channel } => Frame::new(CACHE_MISS).with_channel(channel.as_str()),
            Event::SubscriptionCount {
                channel,
                subscription_count,
            } => Frame::new(SUBSCRIPTION_COUNT)
                .with_channel(channel.as_str())
                .with_data(object(&mut [(
                    "subscription_count",
                    Some(Value::from(*subscription_count)),
                )])),
            Event::MemberAdded {
                channel,
                user_id,
                user_info,
            } => Frame::new(MEMBER_ADDED)
                .with_channel(channel.as_str())
                .with_data(object(&mut [
                    ("user_id", Some(Value::from(user_id.as_str()))),
                    ("user_info", user_info.clone()),
                ])),
            Event::MemberRemoved { channel, user_id } => Frame::new(MEMBER_REMOVED)
                .with_channel(channel.as_str())
                .with_data(object(&mut [(
                    "user_id",
                    Some(Value::from(user_id.as_str())),
                )])),
            Event::Signin { auth, user_data } => Event::signin_frame(auth, user_data),
            Event::SigninSuccess { user_data } => Frame::new(SIGNIN_SUCCESS).with_data(object(
                &mut [("user_data", Some(Value::from(user_data.as_str())))],
            )),
            Event::WatchlistEvents { events } => {
                let events: Vec<Value> = events
                    .iter()
                    .map(|e| {
                        object(&mut [
                            ("name", Some(Value::from(e.name.as_str()))),
                            ("user_ids", Some(Value::from(e.user_ids.clone()))),
                        ])
                    })
                    .collect();
                Frame::new(WATCHLIST_EVENTS)
                    .with_data(object(&mut [("events", Some(Value::from(events)))]))
            }
            Event::Custom(frame) => frame.clone(),
        }
    }

    // The frames a client sends, built without an `Event`. The connection
    // machine calls these rather than `to_frame`, whose arms for every broker
    // event (presence snapshots, watchlists) would otherwise all be linked
    // into the browser module for the five it sends.

    /// `pusher:ping`.
    pub fn ping_frame() -> Frame {
        Frame::new(PING).with_data(object(&mut []))
    }

    /// `pusher:pong`.
    pub fn pong_frame() -> Frame {
        Frame::new(PONG).with_data(object(&mut []))
    }

    /// `pusher:subscribe` (an empty `auth` for public channels, as pusher-js sends).
    pub fn subscribe_frame(channel: &str, auth: Option<&str>, channel_data: Option<&str>) -> Frame {
        Frame::new(SUBSCRIBE).with_data(object(&mut [
            ("channel", Some(Value::from(channel))),
            ("auth", auth.map(Value::from)),
            ("channel_data", channel_data.map(Value::from)),
        ]))
    }

    /// `pusher:unsubscribe`.
    pub fn unsubscribe_frame(channel: &str) -> Frame {
        Frame::new(UNSUBSCRIBE).with_data(object(&mut [("channel", Some(Value::from(channel)))]))
    }

    /// `pusher:signin`.
    pub fn signin_frame(auth: &str, user_data: &str) -> Frame {
        Frame::new(SIGNIN).with_data(object(&mut [
            ("auth", Some(Value::from(auth))),
            ("user_data", Some(Value::from(user_data))),
        ]))
    }

    /// The event name on the wire.
    pub fn name(&self) -> &str {
        match self {
            Event::ConnectionEstablished { .. } => CONNECTION_ESTABLISHED,
            Event::Error { .. } => ERROR,
            Event::Ping => PING,
            Event::Pong => PONG,
            Event::Subscribe { .. } => SUBSCRIBE,
            Event::Unsubscribe { .. } => UNSUBSCRIBE,
            Event::SubscriptionSucceeded { .. } => SUBSCRIPTION_SUCCEEDED,
            Event::SubscriptionError { .. } => SUBSCRIPTION_ERROR,
            Event::CacheMiss { .. } => CACHE_MISS,
            Event::SubscriptionCount { .. } => SUBSCRIPTION_COUNT,
            Event::MemberAdded { .. } => MEMBER_ADDED,
            Event::MemberRemoved { .. } => MEMBER_REMOVED,
            Event::Signin { .. } => SIGNIN,
            Event::SigninSuccess { .. } => SIGNIN_SUCCESS,
            Event::WatchlistEvents { .. } => WATCHLIST_EVENTS,
            Event::Custom(frame) => &frame.event,
        }
    }

    /// The channel this event is about, if any.
    pub fn channel(&self) -> Option<&str> {
        match self {
            Event::Subscribe { channel, .. }
            | Event::Unsubscribe { channel }
            | Event::SubscriptionSucceeded { channel, .. }
            | Event::SubscriptionError { channel, .. }
            | Event::CacheMiss { channel }
            | Event::SubscriptionCount { channel, .. }
            | Event::MemberAdded { channel, .. }
            | Event::MemberRemoved { channel, .. } => Some(channel),
            Event::Custom(frame) => frame.channel.as_deref(),
            Event::ConnectionEstablished { .. }
            | Event::Error { .. }
            | Event::Ping
            | Event::Pong
            | Event::Signin { .. }
            | Event::SigninSuccess { .. }
            | Event::WatchlistEvents { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::json;

    fn decode(text: &str) -> Result<Event, Error> {
        Event::from_frame(Frame::decode(text)?)
    }

    fn typed_events() -> Vec<Event> {
        let mut hash = Map::new();
        hash.insert("u1".to_owned(), json!({"name": "Ada"}));
        hash.insert("u2".to_owned(), json!(null));
        vec![
            Event::ConnectionEstablished {
                socket_id: "123.456".into(),
                activity_timeout: 120,
            },
            Event::Error {
                message: "Over capacity".into(),
                code: Some(4100),
            },
            Event::Error {
                message: String::new(),
                code: None,
            },
            Event::Ping,
            Event::Pong,
            Event::Subscribe {
                channel: "presence-a".into(),
                auth: Some("k:sig".into()),
                channel_data: Some("{\"user_id\":\"1\"}".into()),
            },
            Event::Subscribe {
                channel: "a".into(),
                auth: None,
                channel_data: None,
            },
            Event::Unsubscribe {
                channel: "a".into(),
            },
            Event::SubscriptionSucceeded {
                channel: "private-a".into(),
                presence: None,
            },
            Event::SubscriptionSucceeded {
                channel: "presence-a".into(),
                presence: Some(PresenceSnapshot {
                    ids: vec!["u1".into(), "u2".into()],
                    hash,
                    count: 2,
                }),
            },
            Event::SubscriptionSucceeded {
                channel: "presence-a".into(),
                presence: Some(PresenceSnapshot::default()),
            },
            Event::SubscriptionError {
                channel: "private-a".into(),
                error_type: Some("AuthError".into()),
                error: Some("denied".into()),
                status: Some(403),
            },
            Event::SubscriptionError {
                channel: "private-a".into(),
                error_type: None,
                error: None,
                status: None,
            },
            Event::CacheMiss {
                channel: "cache-a".into(),
            },
            Event::SubscriptionCount {
                channel: "a".into(),
                subscription_count: u32::MAX,
            },
            Event::MemberAdded {
                channel: "presence-a".into(),
                user_id: "u1".into(),
                user_info: Some(json!({"name": "Ada"})),
            },
            Event::MemberAdded {
                channel: "presence-a".into(),
                user_id: "u1".into(),
                user_info: Some(Value::Null),
            },
            Event::MemberAdded {
                channel: "presence-a".into(),
                user_id: "u1".into(),
                user_info: None,
            },
            Event::MemberRemoved {
                channel: "presence-a".into(),
                user_id: "u1".into(),
            },
            Event::Signin {
                auth: "k:sig".into(),
                user_data: "{\"id\":\"u1\"}".into(),
            },
            Event::SigninSuccess {
                user_data: "{\"id\":\"u1\"}".into(),
            },
            Event::WatchlistEvents {
                events: vec![
                    WatchlistEvent {
                        name: "online".into(),
                        user_ids: vec!["u1".into(), "u2".into()],
                    },
                    WatchlistEvent {
                        name: "offline".into(),
                        user_ids: vec![],
                    },
                ],
            },
            Event::WatchlistEvents { events: vec![] },
        ]
    }

    #[test]
    fn typed_events_round_trip_through_frames_and_text() {
        for event in typed_events() {
            let frame = event.to_frame();
            assert_eq!(frame.event, event.name());
            assert_eq!(Event::from_frame(frame.clone()).as_ref(), Ok(&event));
            assert_eq!(decode(&frame.encode()).as_ref(), Ok(&event));
            assert_eq!(decode(&frame.encode_inline()).as_ref(), Ok(&event));
        }
    }

    #[test]
    fn reads_real_server_frames() {
        assert_eq!(
            decode(
                r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1234.5678\",\"activity_timeout\":30}"}"#
            ),
            Ok(Event::ConnectionEstablished {
                socket_id: "1234.5678".into(),
                activity_timeout: 30
            })
        );
        assert_eq!(
            decode(r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\"}"}"#),
            Ok(Event::ConnectionEstablished {
                socket_id: "1.2".into(),
                activity_timeout: DEFAULT_ACTIVITY_TIMEOUT_SECS
            })
        );
        assert_eq!(
            decode(
                r#"{"event":"pusher:error","data":{"code":4001,"message":"App key x not in this cluster"}}"#
            ),
            Ok(Event::Error {
                message: "App key x not in this cluster".into(),
                code: Some(4001)
            })
        );
        assert_eq!(
            decode(r#"{"event":"pusher:error","data":{"code":null,"message":"Auth failed"}}"#),
            Ok(Event::Error {
                message: "Auth failed".into(),
                code: None
            })
        );
        assert_eq!(
            decode(r#"{"event":"pusher:error","data":{"message":"no code"}}"#),
            Ok(Event::Error {
                message: "no code".into(),
                code: None
            })
        );
        assert_eq!(
            decode(r#"{"event":"pusher:subscribe","data":{"auth":"","channel":"chat"}}"#),
            Ok(Event::Subscribe {
                channel: "chat".into(),
                auth: Some(String::new()),
                channel_data: None
            })
        );
        assert_eq!(
            decode(
                r#"{"event":"pusher_internal:subscription_succeeded","channel":"private-a","data":"{}"}"#
            ),
            Ok(Event::SubscriptionSucceeded {
                channel: "private-a".into(),
                presence: None
            })
        );
        let presence = decode(
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"presence-a","data":"{\"presence\":{\"ids\":[\"1\",2],\"hash\":{\"1\":{\"n\":1},\"2\":null},\"count\":2}}"}"#,
        );
        let Ok(Event::SubscriptionSucceeded {
            presence: Some(snapshot),
            ..
        }) = presence
        else {
            panic!("{presence:?}");
        };
        assert_eq!(snapshot.ids, ["1", "2"]);
        assert_eq!(snapshot.count, 2);
        assert_eq!(snapshot.hash.get("1"), Some(&json!({"n": 1})));
        assert_eq!(
            decode(
                r#"{"event":"pusher_internal:member_added","channel":"presence-a","data":"{\"user_id\":7}"}"#
            ),
            Ok(Event::MemberAdded {
                channel: "presence-a".into(),
                user_id: "7".into(),
                user_info: None
            })
        );
        assert_eq!(
            decode(r#"{"event":"pusher:subscription_error","channel":"private-a","data":401}"#),
            Ok(Event::SubscriptionError {
                channel: "private-a".into(),
                error_type: None,
                error: None,
                status: Some(401)
            })
        );
    }

    #[test]
    fn presence_defaults_from_hash() {
        let event = decode(
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"presence-a","data":{"presence":{"hash":{"b":1,"a":2}}}}"#,
        );
        let Ok(Event::SubscriptionSucceeded {
            presence: Some(snapshot),
            ..
        }) = event
        else {
            panic!("{event:?}");
        };
        assert_eq!(snapshot.ids, ["a", "b"]);
        assert_eq!(snapshot.count, 2);
    }

    #[test]
    fn custom_events_pass_through() {
        let text = r#"{"event":"client-typing","channel":"presence-chat.room.r","data":"{\"is_typing\":true}","user_id":"u1"}"#;
        let frame = Frame::decode(text).unwrap();
        assert_eq!(
            Event::from_frame(frame.clone()),
            Ok(Event::Custom(frame.clone()))
        );
        assert_eq!(Event::Custom(frame.clone()).to_frame(), frame);
        let app = Frame::new("message.created").with_channel("private-a");
        assert_eq!(Event::from_frame(app.clone()), Ok(Event::Custom(app)));
        let unknown = Frame::new("pusher:something_new");
        assert_eq!(
            Event::from_frame(unknown.clone()),
            Ok(Event::Custom(unknown))
        );
    }

    #[test]
    fn bad_data_is_invalid_event_data() {
        let cases = [
            r#"{"event":"pusher:connection_established"}"#,
            r#"{"event":"pusher:connection_established","data":"[]"}"#,
            r#"{"event":"pusher:connection_established","data":{"activity_timeout":1}}"#,
            r#"{"event":"pusher:connection_established","data":{"socket_id":1}}"#,
            r#"{"event":"pusher:connection_established","data":{"socket_id":"1.1","activity_timeout":-1}}"#,
            r#"{"event":"pusher:connection_established","data":{"socket_id":"1.1","activity_timeout":1.5}}"#,
            r#"{"event":"pusher:connection_established","data":{"socket_id":"1.1","activity_timeout":4294967296}}"#,
            r#"{"event":"pusher:error","data":[1]}"#,
            r#"{"event":"pusher:error","data":{"code":70000}}"#,
            r#"{"event":"pusher:error","data":{"message":5}}"#,
            r#"{"event":"pusher:subscribe","data":{}}"#,
            r#"{"event":"pusher:subscribe","data":{"channel":"a","auth":1}}"#,
            r#"{"event":"pusher:unsubscribe","data":"x"}"#,
            r#"{"event":"pusher_internal:subscription_succeeded","data":{}}"#,
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"p","data":[]}"#,
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"p","data":{"presence":1}}"#,
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"p","data":{"presence":{}}}"#,
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"p","data":{"presence":{"hash":{},"ids":[[]]}}}"#,
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"p","data":{"presence":{"hash":{},"ids":"x"}}}"#,
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"p","data":{"presence":{"hash":{},"count":-1}}}"#,
            r#"{"event":"pusher:subscription_error","data":{}}"#,
            r#"{"event":"pusher:subscription_error","channel":"p","data":{"status":"401"}}"#,
            r#"{"event":"pusher:subscription_error","channel":"p","data":-1}"#,
            r#"{"event":"pusher:subscription_error","channel":"p","data":true}"#,
            r#"{"event":"pusher:cache_miss"}"#,
            r#"{"event":"pusher_internal:subscription_count","channel":"p","data":{}}"#,
            r#"{"event":"pusher_internal:member_added","channel":"p","data":{"user_id":true}}"#,
            r#"{"event":"pusher_internal:member_added","channel":"p","data":{"user_id":1.5}}"#,
            r#"{"event":"pusher_internal:member_added","data":{"user_id":"u"}}"#,
            r#"{"event":"pusher_internal:member_removed","channel":"p"}"#,
            r#"{"event":"pusher:signin","data":{"auth":"a"}}"#,
            r#"{"event":"pusher:signin_success","data":{"user_data":{}}}"#,
            r#"{"event":"pusher_internal:watchlist_events","data":{}}"#,
            r#"{"event":"pusher_internal:watchlist_events","data":{"events":[1]}}"#,
            r#"{"event":"pusher_internal:watchlist_events","data":{"events":[{"name":"online"}]}}"#,
        ];
        for text in cases {
            let err = decode(text).unwrap_err();
            assert_eq!(err.code(), "invalid_event_data", "{text}");
        }
    }

    #[test]
    fn channel_and_name_accessors() {
        let event = Event::MemberRemoved {
            channel: "presence-a".into(),
            user_id: "u".into(),
        };
        assert_eq!(event.channel(), Some("presence-a"));
        assert_eq!(event.name(), MEMBER_REMOVED);
        let subscribe = Event::Subscribe {
            channel: "a".into(),
            auth: None,
            channel_data: None,
        };
        assert_eq!(subscribe.channel(), Some("a"));
        assert_eq!(subscribe.to_frame().channel, None);
        assert_eq!(Event::Ping.channel(), None);
        assert_eq!(
            Event::Ping.to_frame().encode(),
            r#"{"event":"pusher:ping","data":"{}"}"#
        );
    }
}
