//! The wasm connection boundary in headless Chromium against the real embedded
//! server: `scripts/test` starts `domvia-server` and bakes its URL in at
//! compile time (DOMVIA_TEST_SERVER), since a browser test cannot read the
//! environment. Without it these tests fail rather than pass vacuously.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use domvia_realtime::protocol;
use domvia_realtime::wasm::connection::{NoticeSink, RealtimeConnection};
use gloo_timers::future::TimeoutFuture;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const SERVER: Option<&str> = option_env!("DOMVIA_TEST_SERVER");
const APP_ID: &str = "domvia-dev";
const APP_KEY: &str = "domvia-dev-key";
const APP_SECRET: &str = "domvia-dev-secret";

fn server() -> (String, u16) {
    let url = SERVER.expect("DOMVIA_TEST_SERVER must name the test server (scripts/test sets it)");
    let port = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port in DOMVIA_TEST_SERVER");
    (url.to_owned(), port)
}

/// The sink's `message` method: channel, event, data JSON, user id.
type MessageListener = Closure<dyn FnMut(Option<String>, String, Option<String>, Option<String>)>;

/// The sink's `authorize` method: socket id, channel (none: user authentication).
type AuthorizeListener = Closure<dyn FnMut(String, Option<String>)>;

/// The auth requests a connection asked for, as (socket id, channel).
type AuthRequests = Rc<RefCell<Vec<(String, Option<String>)>>>;

/// A connection with its notices recorded as plain JS objects, in order
/// (channel messages too, as `{type: "message", channel, event, dataJson, userId}`),
/// and the auth requests it asked for, as (socket id, channel).
struct Recorded {
    connection: RealtimeConnection,
    notices: Rc<RefCell<Vec<JsValue>>>,
    auth_requests: AuthRequests,
    _listeners: (
        Closure<dyn FnMut(String)>,
        MessageListener,
        AuthorizeListener,
    ),
}

fn connection(extra: &[(&str, JsValue)]) -> Recorded {
    let (_, port) = server();
    let options = js_sys::Object::new();
    let set = |key: &str, value: JsValue| {
        js_sys::Reflect::set(&options, &key.into(), &value).unwrap();
    };
    set("key", APP_KEY.into());
    set("host", "127.0.0.1".into());
    set("port", port.into());
    set("forceTLS", false.into());
    set("clientEvents", true.into());
    for (key, value) in extra {
        set(key, value.clone());
    }
    let connection = RealtimeConnection::new(options.into()).expect("valid options");
    let notices = Rc::new(RefCell::new(Vec::new()));
    let recorder = notices.clone();
    // Notices arrive as JSON text (`NoticeSink.notice`), parsed as the TS layer does.
    let notice = Closure::<dyn FnMut(String)>::new(move |notice_json: String| {
        let notice = js_sys::JSON::parse(&notice_json).expect("a notice is JSON");
        recorder.borrow_mut().push(notice)
    });
    let recorder = notices.clone();
    let message: MessageListener = Closure::new(
        move |channel: Option<String>,
              event: String,
              data_json: Option<String>,
              user_id: Option<String>| {
            let object = js_sys::Object::new();
            for (key, value) in [
                ("type", Some("message".to_owned())),
                ("channel", channel),
                ("event", Some(event)),
                ("dataJson", data_json),
                ("userId", user_id),
            ] {
                if let Some(value) = value {
                    js_sys::Reflect::set(&object, &key.into(), &value.into()).unwrap();
                }
            }
            recorder.borrow_mut().push(object.into());
        },
    );
    let auth_requests = Rc::new(RefCell::new(Vec::new()));
    let recorder = auth_requests.clone();
    let authorize: AuthorizeListener =
        Closure::new(move |socket_id: String, channel: Option<String>| {
            recorder.borrow_mut().push((socket_id, channel))
        });
    let sink = js_sys::Object::new();
    js_sys::Reflect::set(&sink, &"notice".into(), notice.as_ref()).unwrap();
    js_sys::Reflect::set(&sink, &"message".into(), message.as_ref()).unwrap();
    js_sys::Reflect::set(&sink, &"authorize".into(), authorize.as_ref()).unwrap();
    connection.set_listener(Some(sink.unchecked_into::<NoticeSink>()));
    Recorded {
        connection,
        notices,
        auth_requests,
        _listeners: (notice, message, authorize),
    }
}

/// POSTs an auth request to the real server's `/realtime/auth` as the TS
/// layer does (a form of `socket_id` and `channel_name`); returns its status and body.
async fn post_channel_auth(socket_id: &str, channel: &str) -> (u16, String) {
    let (url, _) = server();
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(&format!(
        "socket_id={}&channel_name={}",
        js_sys::encode_uri_component(socket_id),
        js_sys::encode_uri_component(channel)
    )));
    let request =
        web_sys::Request::new_with_str_and_init(&format!("{url}/realtime/auth"), &init).unwrap();
    request
        .headers()
        .set("content-type", "application/x-www-form-urlencoded")
        .unwrap();
    let window = web_sys::window().unwrap();
    let response: web_sys::Response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .unwrap()
        .dyn_into()
        .unwrap();
    let body = JsFuture::from(response.text().unwrap()).await.unwrap();
    (response.status(), body.as_string().unwrap())
}

fn field(notice: &JsValue, name: &str) -> Option<String> {
    js_sys::Reflect::get(notice, &name.into()).ok()?.as_string()
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        TimeoutFuture::new(20).await;
    }
    panic!("timed out waiting for {what}");
}

/// Publishes through the broker's REST API, signed by the core as an app server would.
async fn publish(channel: &str, event: &str, data: &str) {
    let (url, _) = server();
    let path = format!("/apps/{APP_ID}/events");
    let body = serde_json::json!({ "name": event, "channel": channel, "data": data }).to_string();
    let now = (js_sys::Date::now() / 1000.0) as u64;
    let query = protocol::sign_query(
        APP_KEY,
        APP_SECRET,
        "POST",
        &path,
        &[],
        Some(body.as_bytes()),
        now,
    );
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(&body));
    let request =
        web_sys::Request::new_with_str_and_init(&format!("{url}{path}?{query}"), &init).unwrap();
    let headers = request.headers();
    headers.set("content-type", "application/json").unwrap();
    let window = web_sys::window().unwrap();
    let response: web_sys::Response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .unwrap()
        .dyn_into()
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "the broker accepted the signed trigger"
    );
}

#[wasm_bindgen_test]
async fn connects_subscribes_receives_and_disposes() {
    let Recorded {
        connection,
        notices,
        _listeners,
        ..
    } = connection(&[]);
    assert_eq!(connection.state(), "initialized");
    connection.connect();
    until("connected", || connection.state() == "connected").await;
    let socket_id = connection.socket_id().expect("a socket id once connected");
    assert!(socket_id.contains('.'));

    connection
        .subscribe("wasm-news")
        .expect("a valid public channel");
    until("subscribed", || {
        connection.channel_state("wasm-news").as_deref() == Some("subscribed")
    })
    .await;
    publish("wasm-news", "story", r#"{"title":"from rest"}"#).await;
    until("the story", || {
        notices.borrow().iter().any(|n| {
            field(n, "event").as_deref() == Some("story")
                && field(n, "dataJson").as_deref() == Some(r#"{"title":"from rest"}"#)
        })
    })
    .await;

    let states: Vec<String> = notices
        .borrow()
        .iter()
        .filter(|n| field(n, "type").as_deref() == Some("state_change"))
        .filter_map(|n| field(n, "current"))
        .collect();
    assert_eq!(states, ["connecting", "connected"]);

    connection.dispose();
    assert_eq!(connection.state(), "disconnected");
}

#[wasm_bindgen_test]
async fn a_refused_private_channel_is_a_subscription_error_notice() {
    // Not signed in: the real /realtime/auth answers 401.
    let Recorded {
        connection,
        notices,
        auth_requests,
        _listeners,
    } = connection(&[]);
    connection.connect();
    until("connected", || connection.state() == "connected").await;
    connection.subscribe("private-chat.room.nobody").unwrap();
    until("the auth request", || !auth_requests.borrow().is_empty()).await;
    let (socket_id, channel) = auth_requests.borrow()[0].clone();
    assert_eq!(channel.as_deref(), Some("private-chat.room.nobody"));
    assert_eq!(connection.socket_id().as_deref(), Some(socket_id.as_str()));
    let (status, body) = post_channel_auth(&socket_id, "private-chat.room.nobody").await;
    assert_eq!(status, 401, "{body}");
    connection.channel_authorized("private-chat.room.nobody", &socket_id, status, &body);
    until("the subscription error", || {
        notices
            .borrow()
            .iter()
            .any(|n| field(n, "type").as_deref() == Some("subscription_error"))
    })
    .await;
    let error = notices
        .borrow()
        .iter()
        .find(|n| field(n, "type").as_deref() == Some("subscription_error"))
        .cloned()
        .unwrap();
    let status = js_sys::Reflect::get(&error, &"status".into())
        .unwrap()
        .as_f64();
    assert_eq!(status, Some(401.0));
    assert_eq!(
        connection
            .channel_state("private-chat.room.nobody")
            .as_deref(),
        Some("failed")
    );
    assert_eq!(
        connection.state(),
        "connected",
        "an auth failure is not a reconnect"
    );
    connection.dispose();
}

#[wasm_bindgen_test]
fn bad_options_and_bad_channels_are_coded_errors() {
    let bad = js_sys::Object::new();
    let thrown = RealtimeConnection::new(bad.into())
        .err()
        .expect("a key is required");
    let code = js_sys::Reflect::get(&thrown, &"code".into())
        .unwrap()
        .as_string();
    assert_eq!(code.as_deref(), Some("invalid_config"));

    // Options cross as JSON: a wrong type, a negative number, and NaN (which
    // JSON.stringify writes as null) are each refused with the field's name.
    for (key, value, expected) in [
        ("host", JsValue::from(7), "host must be a string"),
        (
            "port",
            JsValue::from(-1),
            "port must be a non-negative number",
        ),
        (
            "port",
            JsValue::from(f64::NAN),
            "port must be a non-negative number",
        ),
        (
            "pongTimeoutMs",
            JsValue::from("5"),
            "pongTimeoutMs must be a non-negative number",
        ),
    ] {
        let options = js_sys::Object::new();
        js_sys::Reflect::set(&options, &"key".into(), &APP_KEY.into()).unwrap();
        if key != "host" {
            js_sys::Reflect::set(&options, &"host".into(), &"127.0.0.1".into()).unwrap();
        }
        js_sys::Reflect::set(&options, &key.into(), &value).unwrap();
        let thrown = RealtimeConnection::new(options.into())
            .err()
            .unwrap_or_else(|| panic!("{key}: {value:?} is refused"));
        let code = js_sys::Reflect::get(&thrown, &"code".into())
            .unwrap()
            .as_string();
        assert_eq!(code.as_deref(), Some("invalid_config"), "{key}");
        let message = js_sys::Reflect::get(&thrown, &"message".into())
            .unwrap()
            .as_string()
            .unwrap_or_default();
        assert!(message.contains(expected), "{key}: {message}");
    }

    let Recorded { connection, .. } = connection(&[]);
    let thrown = connection.subscribe("bad name").unwrap_err();
    let code = js_sys::Reflect::get(&thrown, &"code".into())
        .unwrap()
        .as_string();
    assert_eq!(code.as_deref(), Some("invalid_channel_name"));
    let thrown = connection
        .trigger("private-x", "client-x", "{}")
        .unwrap_err();
    let code = js_sys::Reflect::get(&thrown, &"code".into())
        .unwrap()
        .as_string();
    assert_eq!(code.as_deref(), Some("not_subscribed"));
    connection.dispose();
}
