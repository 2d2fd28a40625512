//! REST and auth parsing:
//! - the protocol's REST signature check (`verify_query`) on arbitrary
//!   queries, and sign-then-verify round trips (`sign_query`);
//! - channel and user auth signatures, presence channel data, auth
//!   responses, webhooks; chat channel names round-trip;
//! - the embedded broker's REST API through its real router (body reading,
//!   signature check, publication and query parsing), signed with the real
//!   secret or not: never a 5xx, and a correctly signed request is never 401.
#![no_main]

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::http::{Method, Request};
use domvia_broker::fuzzing::SocketSession;
use domvia_broker::{AppCredentials, Broker, Limits};
use domvia_realtime::protocol::{
    authorize_presence_channel, authorize_private_channel, build_chat_channel_name, chat_room_id,
    parse_channel_auth_response, parse_presence_channel_data, sign_query, verify_channel_auth,
    verify_query, verify_user_auth, verify_webhook, webhook_signature, ChannelKind, Frame,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use tower::ServiceExt;

const APP_ID: &str = "1";
const KEY: &str = "fuzz-key";
const SECRET: &str = "fuzz-secret";
const NOW: u64 = 1_760_000_000;
const CHANNELS: [&str; 5] = [
    "chat",
    "presence-a",
    "private-a",
    "private-encrypted-a",
    "presence-b",
];

#[derive(Arbitrary, Debug)]
enum Channel {
    Known(u8),
    Any(String),
}

impl Channel {
    fn name(&self) -> String {
        match self {
            Channel::Known(at) => CHANNELS[usize::from(*at) % CHANNELS.len()].to_owned(),
            Channel::Any(name) => name.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum RestBody {
    Raw(Vec<u8>),
    Event {
        name: String,
        channels: Vec<Channel>,
        data: String,
        socket_id: Option<String>,
        info: Option<String>,
    },
    Batch(Vec<(String, Channel, String, Option<String>)>),
}

impl RestBody {
    fn bytes(&self) -> Vec<u8> {
        match self {
            RestBody::Raw(bytes) => bytes.clone(),
            RestBody::Event {
                name,
                channels,
                data,
                socket_id,
                info,
            } => {
                let mut event = json!({
                    "name": name,
                    "channels": channels.iter().map(Channel::name).collect::<Vec<_>>(),
                    "data": data,
                });
                if let Some(socket_id) = socket_id {
                    event["socket_id"] = socket_id.clone().into();
                }
                if let Some(info) = info {
                    event["info"] = info.clone().into();
                }
                event.to_string().into_bytes()
            }
            RestBody::Batch(events) => {
                let batch: Vec<Value> = events
                    .iter()
                    .map(|(name, channel, data, info)| {
                        json!({ "name": name, "channel": channel.name(), "data": data, "info": info })
                    })
                    .collect();
                json!({ "batch": batch }).to_string().into_bytes()
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct RestRequest {
    route: u8,
    channel: Channel,
    raw_path: String,
    params: Vec<(String, String)>,
    body: RestBody,
    signed: bool,
    extra_query: String,
}

#[derive(Arbitrary, Debug)]
struct Input {
    texts: [String; 4],
    body: Vec<u8>,
    params: Vec<(String, String)>,
    presence: bool,
    request: RestRequest,
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime")
    })
}

fn protocol_checks(input: &Input) {
    let [a, b, c, d] = &input.texts;
    let body = &input.body;
    verify_query(KEY, SECRET, a, b, c, body, NOW).ok();
    let params: Vec<(&str, &str)> = input
        .params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let query = sign_query(KEY, SECRET, a, b, &params, Some(body), NOW);
    if let Err(err) = verify_query(KEY, SECRET, a, b, &query, body, NOW) {
        panic!("a signed query does not verify ({err}): {query}");
    }

    verify_channel_auth(KEY, SECRET, a, b, c, Some(d)).ok();
    verify_channel_auth(KEY, SECRET, a, b, c, None).ok();
    verify_user_auth(KEY, SECRET, a, b, c).ok();
    parse_presence_channel_data(c).ok();
    parse_channel_auth_response(KEY, b, c).ok();
    verify_webhook(KEY, SECRET, a, b, body).ok();
    let signature = webhook_signature(SECRET, body);
    assert_eq!(verify_webhook(KEY, SECRET, KEY, &signature, body), Ok(()));

    if let Ok(auth) = authorize_private_channel(KEY, SECRET, a, b) {
        assert_eq!(
            verify_channel_auth(KEY, SECRET, a, b, &auth.auth, None),
            Ok(())
        );
    }
    let info = domvia_realtime::json::from_str(d).ok();
    if let Ok(auth) = authorize_presence_channel(KEY, SECRET, a, b, c, info.as_ref()) {
        let data = auth.channel_data.as_deref();
        assert_eq!(
            verify_channel_auth(KEY, SECRET, a, b, &auth.auth, data),
            Ok(())
        );
        let member = parse_presence_channel_data(data.unwrap_or_default());
        assert_eq!(member.map(|m| m.user_id).as_deref(), Ok(c.as_str()));
    }

    if let Ok(name) = build_chat_channel_name(a, input.presence) {
        let kind = if input.presence {
            ChannelKind::Presence
        } else {
            ChannelKind::Private
        };
        assert_eq!(chat_room_id(&name), Some((a.as_str(), kind)));
    }
    if let Some((room_id, kind)) = chat_room_id(b) {
        assert_eq!(
            build_chat_channel_name(room_id, kind == ChannelKind::Presence).as_deref(),
            Ok(b.as_str())
        );
    }
}

fn rest_request(request: &RestRequest) {
    let channel = percent_encode(&request.channel.name());
    let (method, path) = match request.route % 6 {
        0 => (Method::POST, format!("/apps/{APP_ID}/events")),
        1 => (Method::POST, format!("/apps/{APP_ID}/batch_events")),
        2 => (Method::GET, format!("/apps/{APP_ID}/channels")),
        3 => (Method::GET, format!("/apps/{APP_ID}/channels/{channel}")),
        4 => (
            Method::GET,
            format!("/apps/{APP_ID}/channels/{channel}/users"),
        ),
        _ => (Method::POST, format!("/apps/{}", request.raw_path)),
    };
    let body = if method == Method::POST {
        request.body.bytes()
    } else {
        Vec::new()
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let query = if request.signed {
        let params: Vec<(&str, &str)> = request
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        sign_query(
            KEY,
            SECRET,
            method.as_str(),
            &path,
            &params,
            Some(&body),
            now,
        )
    } else {
        request.extra_query.clone()
    };
    let Ok(http) = Request::builder()
        .method(method)
        .uri(format!("{path}?{query}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
    else {
        return;
    };
    let app = AppCredentials {
        id: APP_ID.into(),
        key: KEY.into(),
        secret: SECRET.into(),
    };
    let limits = Limits {
        max_rest_body_bytes: 4096,
        max_event_data_bytes: 512,
        ..Limits::default()
    };
    let broker = Broker::new(app, limits);
    // A presence member and a subscriber, for the channel queries and deliveries.
    let mut member = SocketSession::open(&broker).expect("a connection");
    let auth =
        authorize_presence_channel(KEY, SECRET, member.socket_id(), "presence-a", "u1", None)
            .expect("presence auth");
    let subscribe = Frame::new("pusher:subscribe")
        .with_data(domvia_realtime::json_value!({ "channel": "presence-a", "auth": auth.auth, "channel_data": auth.channel_data }))
        .encode_inline();
    member.on_text(&subscribe);
    member.on_text(r#"{"event":"pusher:subscribe","data":{"channel":"chat"}}"#);
    let valid_route =
        request.route % 6 < 5 && request.channel.name().chars().all(|c| c.is_ascii_graphic());
    let response = runtime()
        .block_on(broker.router().oneshot(http))
        .expect("the router is infallible");
    let status = response.status();
    assert!(!status.is_server_error(), "the REST API answered {status}");
    if request.signed && valid_route {
        assert_ne!(
            status.as_u16(),
            401,
            "a correctly signed request was refused"
        );
    }
    for frame in member.delivered() {
        assert!(
            Frame::decode(&frame).is_ok(),
            "the broker delivered a frame it cannot read: {frame}"
        );
    }
}

fuzz_target!(|input: Input| {
    protocol_checks(&input);
    rest_request(&input.request);
});
