//! The reference backend's `/realtime/auth` and `/realtime/user-auth`
//! through its real router: the session token, the body (JSON or
//! form-urlencoded, `extract::Body`), the socket id and the chat channel
//! name. Never a 5xx; a 200 carries a signature that verifies for the
//! socket id and channel that were asked for.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use domvia_backend::{AppCredentials, Backend, BackendConfig, Limits};
use domvia_realtime::protocol::{verify_channel_auth, verify_user_auth};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use tower::ServiceExt;

const KEY: &str = "fuzz-key";
const SECRET: &str = "fuzz-secret";

struct App {
    runtime: tokio::runtime::Runtime,
    router: Router,
    token: String,
    room_id: String,
}

async fn call(
    router: &Router,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", content_type);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Body::from(body)).expect("a request");
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("the body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// One backend for the whole run, with a signed-in user and one room: the
/// auth endpoints only read, so inputs do not affect each other.
fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let backend = Backend::open(BackendConfig {
            database: ":memory:".into(),
            app: AppCredentials {
                id: "1".into(),
                key: KEY.into(),
                secret: SECRET.into(),
            },
            broker_url: None,
            session_secret: b"a session secret for the fuzzer".to_vec(),
            // Every input signs in from the same place: no 429s in the way.
            limits: Limits::without_rate_limits(),
        })
        .expect("the backend opens");
        let router = backend.router();
        let (token, room_id) = runtime.block_on(async {
            let body = json!({ "name": "Ada" }).to_string().into_bytes();
            let (_, session) = call(&router, "/api/session", None, "application/json", body).await;
            let token = session["token"].as_str().expect("a token").to_owned();
            let body = json!({ "kind": "group", "name": "Team", "member_ids": [] })
                .to_string()
                .into_bytes();
            let (_, room) = call(
                &router,
                "/api/rooms",
                Some(&token),
                "application/json",
                body,
            )
            .await;
            (
                token,
                room["room_id"].as_str().expect("a room id").to_owned(),
            )
        });
        App {
            runtime,
            router,
            token,
            room_id,
        }
    })
}

#[derive(Arbitrary, Debug)]
enum Channel {
    Private,
    Presence,
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum AuthBody {
    Raw {
        form: bool,
        bytes: Vec<u8>,
    },
    Form {
        socket_id: String,
        channel: Channel,
        extra: Vec<(String, String)>,
    },
    Json {
        socket_id: String,
        channel: Channel,
        extra: Vec<(String, String)>,
    },
}

#[derive(Arbitrary, Debug)]
enum Token {
    Valid,
    Missing,
    Any(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    user_auth: bool,
    token: Token,
    content_type: Option<String>,
    body: AuthBody,
}

fn form(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = String::new();
    for (key, value) in pairs {
        for (text, end) in [(key, '='), (value, '&')] {
            for byte in text.bytes() {
                if byte.is_ascii_alphanumeric() {
                    out.push(char::from(byte));
                } else {
                    out.push_str(&format!("%{byte:02X}"));
                }
            }
            out.push(end);
        }
    }
    out.into_bytes()
}

fuzz_target!(|input: Input| {
    let app = app();
    let channel_name = |channel: &Channel| match channel {
        Channel::Private => format!("private-chat.room.{}", app.room_id),
        Channel::Presence => format!("presence-chat.room.{}", app.room_id),
        Channel::Any(name) => name.clone(),
    };
    let (asked, content_type, body) = match &input.body {
        AuthBody::Raw { form: true, bytes } => {
            (None, "application/x-www-form-urlencoded", bytes.clone())
        }
        AuthBody::Raw { form: false, bytes } => (None, "application/json", bytes.clone()),
        AuthBody::Form {
            socket_id,
            channel,
            extra,
        } => {
            let name = channel_name(channel);
            let mut pairs = extra.clone();
            pairs.push(("socket_id".into(), socket_id.clone()));
            pairs.push(("channel_name".into(), name.clone()));
            (
                Some((socket_id.clone(), name)),
                "application/x-www-form-urlencoded",
                form(&pairs),
            )
        }
        AuthBody::Json {
            socket_id,
            channel,
            extra,
        } => {
            let name = channel_name(channel);
            let mut object: serde_json::Map<String, Value> = extra
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect();
            object.insert("socket_id".into(), socket_id.clone().into());
            object.insert("channel_name".into(), name.clone().into());
            (
                Some((socket_id.clone(), name)),
                "application/json",
                Value::Object(object).to_string().into_bytes(),
            )
        }
    };
    let content_type = input.content_type.as_deref().unwrap_or(content_type);
    if axum::http::HeaderValue::from_str(content_type).is_err() {
        return;
    }
    let token = match &input.token {
        Token::Valid => Some(app.token.as_str()),
        Token::Missing => None,
        Token::Any(token) if axum::http::HeaderValue::from_str(token).is_ok() => {
            Some(token.as_str())
        }
        Token::Any(_) => return,
    };
    let path = if input.user_auth {
        "/realtime/user-auth"
    } else {
        "/realtime/auth"
    };
    let (status, reply) = app
        .runtime
        .block_on(call(&app.router, path, token, content_type, body));
    assert!(status < 500, "{path} answered {status}: {reply}");
    if status != 200 {
        return;
    }
    let auth = reply["auth"].as_str().expect("an auth signature");
    // Form fields pass through the urlencoded reader, JSON fields unchanged;
    // only a body this target wrote tells which socket id was asked for.
    if let (Some((socket_id, name)), None) = (asked, &input.content_type) {
        let verified = if input.user_auth {
            verify_user_auth(
                KEY,
                SECRET,
                &socket_id,
                auth,
                reply["user_data"].as_str().unwrap_or_default(),
            )
        } else {
            verify_channel_auth(
                KEY,
                SECRET,
                &socket_id,
                &name,
                auth,
                reply["channel_data"].as_str(),
            )
        };
        assert_eq!(verified, Ok(()), "{path} signed something else: {reply}");
    }
});
