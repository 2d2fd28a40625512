//! The REST API, signed as the `pusher` server libraries sign it, with
//! WebSocket subscribers on the other end.

mod common;

use std::time::Duration;

use common::{error_code, http, signed, signed_at, start, trigger, Client, APP_ID};
use domvia_broker::Limits;
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(200);

#[tokio::test]
async fn a_signed_trigger_reaches_subscribers_except_socket_id() {
    let server = start(Limits::default()).await;
    let mut alice = Client::connect(&server).await;
    let mut bob = Client::connect(&server).await;
    let mut carol = Client::connect(&server).await;
    alice.subscribe_private("private-chat.room.r1").await;
    bob.subscribe_private("private-chat.room.r1").await;
    carol.subscribe("news").await;

    let data = r#"{"message_id":"m1","seq":12345678901234567890123,"b":1,"a":2}"#;
    let event = json!({
        "name": "message.created",
        "channels": ["private-chat.room.r1", "news"],
        "data": data,
        "socket_id": alice.socket_id,
    });
    let (status, body) = trigger(server.addr, &event).await;
    assert_eq!((status, body), (200, json!({})));
    let received = bob.expect("message.created").await;
    assert_eq!(received.channel.as_deref(), Some("private-chat.room.r1"));
    assert_eq!(received.data.as_ref().unwrap()["message_id"], json!("m1"));
    let received = carol.expect("message.created").await;
    assert_eq!(received.channel.as_deref(), Some("news"));
    alice.expect_silence(QUIET).await;

    // The data string goes out byte for byte.
    use futures_util::StreamExt;
    let event = json!({"name": "raw", "channel": "news", "data": data});
    assert_eq!(trigger(server.addr, &event).await.0, 200);
    let text = carol.ws.next().await.unwrap().unwrap().into_text().unwrap();
    let outer: Value = serde_json::from_str(text.as_str()).unwrap();
    assert_eq!(outer["data"], json!(data));

    // Non-string data is JSON-encoded.
    let event = json!({"name": "obj", "channel": "news", "data": {"x": [1, 2]}});
    assert_eq!(trigger(server.addr, &event).await.0, 200);
    let received = carol.expect("obj").await;
    assert_eq!(received.data, Some(json!({"x": [1, 2]})).map(Into::into));

    // An event on a channel nobody is subscribed to is fine.
    let event = json!({"name": "e", "channel": "empty", "data": "x"});
    assert_eq!(trigger(server.addr, &event).await, (200, json!({})));
}

#[tokio::test]
async fn signatures_are_checked() {
    let server = start(Limits::default()).await;
    let path = format!("/apps/{APP_ID}/events");
    let body = json!({"name": "e", "channel": "news", "data": "x"}).to_string();
    let now = common::now_unix();

    let (status, reply) =
        signed_at(server.addr, "POST", &path, &[], body.as_bytes(), now - 3600).await;
    assert_eq!(
        (status, error_code(&reply)),
        (401, "auth_timestamp_expired")
    );
    assert!(reply["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("unable to"));

    let query = domvia_realtime::protocol::sign_query(
        common::KEY,
        "wrong-secret",
        "POST",
        &path,
        &[],
        Some(body.as_bytes()),
        now,
    );
    let (status, reply) = http(
        server.addr,
        "POST",
        &format!("{path}?{query}"),
        body.as_bytes(),
    )
    .await;
    assert_eq!((status, error_code(&reply)), (401, "invalid_signature"));

    // Signed for one body, sent with another.
    let query = domvia_realtime::protocol::sign_query(
        common::KEY,
        common::SECRET,
        "POST",
        &path,
        &[],
        Some(b"{}"),
        now,
    );
    let (status, reply) = http(
        server.addr,
        "POST",
        &format!("{path}?{query}"),
        body.as_bytes(),
    )
    .await;
    assert_eq!((status, error_code(&reply)), (401, "body_md5_mismatch"));

    let (status, reply) = http(server.addr, "POST", &path, body.as_bytes()).await;
    assert_eq!((status, error_code(&reply)), (401, "missing_auth_param"));

    let query = domvia_realtime::protocol::sign_query(
        "other-key",
        common::SECRET,
        "POST",
        &path,
        &[],
        Some(body.as_bytes()),
        now,
    );
    let (status, reply) = http(
        server.addr,
        "POST",
        &format!("{path}?{query}"),
        body.as_bytes(),
    )
    .await;
    assert_eq!((status, error_code(&reply)), (401, "auth_key_mismatch"));

    let (status, reply) = signed(
        server.addr,
        "POST",
        "/apps/999/events",
        &[],
        body.as_bytes(),
    )
    .await;
    assert_eq!((status, error_code(&reply)), (404, "unknown_app"));

    assert_eq!(
        signed(server.addr, "POST", &path, &[], body.as_bytes())
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn events_are_validated() {
    let server = start(Limits {
        max_rest_channels: 3,
        max_rest_body_bytes: 20_000,
        ..Limits::default()
    })
    .await;
    let mut watcher = Client::connect(&server).await;
    watcher.subscribe("a").await;

    let (status, reply) = trigger(
        server.addr,
        &json!({"name": "e", "channel": "a", "data": "x".repeat(10_241)}),
    )
    .await;
    assert_eq!((status, error_code(&reply)), (413, "payload_too_large"));
    let (status, _) = trigger(
        server.addr,
        &json!({"name": "e", "channel": "a", "data": "x".repeat(10_240)}),
    )
    .await;
    assert_eq!(status, 200);
    watcher.expect("e").await;

    let cases = [
        (json!({"channel": "a", "data": "x"}), "invalid_event_name"),
        (
            json!({"name": "", "channel": "a", "data": "x"}),
            "invalid_event_name",
        ),
        (
            json!({"name": "n".repeat(201), "channel": "a", "data": "x"}),
            "invalid_event_name",
        ),
        (
            json!({"name": 5, "channel": "a", "data": "x"}),
            "invalid_event_name",
        ),
        (json!({"name": "e", "channel": "a"}), "missing_data"),
        (json!({"name": "e", "data": "x"}), "missing_channel"),
        (
            json!({"name": "e", "channels": ["a", "b", "c", "d"], "data": "x"}),
            "too_many_channels",
        ),
        (
            json!({"name": "e", "channel": "a#b", "data": "x"}),
            "invalid_channel_name",
        ),
        (
            json!({"name": "e", "channel": "a", "data": "x", "socket_id": "abc"}),
            "invalid_socket_id",
        ),
        (json!(["not", "an", "object"]), "invalid_event"),
    ];
    for (event, code) in cases {
        let (status, reply) = trigger(server.addr, &event).await;
        assert_eq!((status, error_code(&reply)), (400, code), "{event}");
    }
    let path = format!("/apps/{APP_ID}/events");
    let (status, reply) = signed(server.addr, "POST", &path, &[], b"{not json").await;
    assert_eq!((status, error_code(&reply)), (400, "invalid_json"));
    let big = vec![b' '; 20_001];
    let (status, reply) = signed(server.addr, "POST", &path, &[], &big).await;
    assert_eq!((status, error_code(&reply)), (413, "body_too_large"));
    watcher.expect_silence(QUIET).await;
}

#[tokio::test]
async fn batches_are_all_or_nothing() {
    let server = start(Limits::default()).await;
    let mut watcher = Client::connect(&server).await;
    watcher.subscribe("a").await;
    watcher.subscribe("b").await;
    let path = format!("/apps/{APP_ID}/batch_events");

    let batch = json!({"batch": [
        {"name": "one", "channel": "a", "data": "1"},
        {"name": "two", "channel": "b", "data": {"n": 2}},
    ]});
    let (status, reply) = signed(
        server.addr,
        "POST",
        &path,
        &[],
        batch.to_string().as_bytes(),
    )
    .await;
    assert_eq!((status, reply), (200, json!({})));
    assert_eq!(
        watcher.expect("one").await.data,
        Some(json!(1)).map(Into::into)
    );
    assert_eq!(
        watcher.expect("two").await.data,
        Some(json!({"n": 2})).map(Into::into)
    );

    let with_info = json!({"batch": [
        {"name": "three", "channel": "a", "data": "3", "info": "subscription_count"},
    ]});
    let (status, reply) = signed(
        server.addr,
        "POST",
        &path,
        &[],
        with_info.to_string().as_bytes(),
    )
    .await;
    assert_eq!(
        (status, reply),
        (200, json!({"batch": [{"subscription_count": 1}]}))
    );
    watcher.expect("three").await;

    let bad = json!({"batch": [
        {"name": "four", "channel": "a", "data": "4"},
        {"name": "five", "channel": "bad channel", "data": "5"},
    ]});
    let (status, reply) = signed(server.addr, "POST", &path, &[], bad.to_string().as_bytes()).await;
    assert_eq!((status, error_code(&reply)), (400, "invalid_channel_name"));
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"name": "e", "channel": "a", "data": i.to_string()}))
        .collect();
    let (status, reply) = signed(
        server.addr,
        "POST",
        &path,
        &[],
        json!({"batch": eleven}).to_string().as_bytes(),
    )
    .await;
    assert_eq!((status, error_code(&reply)), (400, "too_many_events"));
    let (status, reply) = signed(server.addr, "POST", &path, &[], b"{\"events\":[]}").await;
    assert_eq!((status, error_code(&reply)), (400, "invalid_batch"));
    let huge = json!({"batch": [{"name": "e", "channel": "a", "data": "x".repeat(10_241)}]});
    let (status, reply) =
        signed(server.addr, "POST", &path, &[], huge.to_string().as_bytes()).await;
    assert_eq!((status, error_code(&reply)), (413, "payload_too_large"));
    watcher.expect_silence(QUIET).await;
}

#[tokio::test]
async fn channel_queries() {
    let server = start(Limits::default()).await;
    let room = "presence-chat.room.q";
    let mut a1 = Client::connect(&server).await;
    let mut a2 = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a1.subscribe_presence(room, "a").await;
    a2.subscribe_presence(room, "a").await;
    b.subscribe_presence(room, "b").await;
    b.subscribe("news").await;
    b.subscribe_private("private-x").await;
    let get = |path: String, params: Vec<(&'static str, &'static str)>| {
        let addr = server.addr;
        async move { signed(addr, "GET", &path, &params, b"").await }
    };

    let (status, reply) = get(format!("/apps/{APP_ID}/channels"), vec![]).await;
    assert_eq!(status, 200);
    assert_eq!(
        reply,
        json!({"channels": {room: {}, "news": {}, "private-x": {}}})
    );

    let params = vec![("filter_by_prefix", "presence-"), ("info", "user_count")];
    let (status, reply) = get(format!("/apps/{APP_ID}/channels"), params).await;
    assert_eq!(
        (status, reply),
        (200, json!({"channels": {room: {"user_count": 2}}}))
    );

    let (status, reply) = get(
        format!("/apps/{APP_ID}/channels"),
        vec![("info", "user_count")],
    )
    .await;
    assert_eq!((status, error_code(&reply)), (400, "invalid_info"));

    let params = vec![("info", "subscription_count,user_count")];
    let (status, reply) = get(format!("/apps/{APP_ID}/channels/{room}"), params).await;
    assert_eq!(
        (status, reply),
        (
            200,
            json!({"occupied": true, "subscription_count": 3, "user_count": 2})
        )
    );
    let (status, reply) = get(format!("/apps/{APP_ID}/channels/empty"), vec![]).await;
    assert_eq!((status, reply), (200, json!({"occupied": false})));
    let params = vec![("info", "user_count")];
    let (status, reply) = get(format!("/apps/{APP_ID}/channels/news"), params).await;
    assert_eq!((status, error_code(&reply)), (400, "invalid_info"));
    let (status, reply) = get(format!("/apps/{APP_ID}/channels/bad%20name"), vec![]).await;
    assert_eq!((status, error_code(&reply)), (400, "invalid_channel_name"));

    let (status, reply) = get(format!("/apps/{APP_ID}/channels/{room}/users"), vec![]).await;
    assert_eq!(
        (status, reply),
        (200, json!({"users": [{"id": "a"}, {"id": "b"}]}))
    );
    let (status, reply) = get(format!("/apps/{APP_ID}/channels/news/users"), vec![]).await;
    assert_eq!((status, error_code(&reply)), (400, "wrong_channel_kind"));

    b.close().await;
    a1.close().await;
    // Wait until the broker has seen both disconnects.
    for _ in 0..100 {
        if server.broker.connection_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, reply) = get(format!("/apps/{APP_ID}/channels/{room}/users"), vec![]).await;
    assert_eq!((status, reply), (200, json!({"users": [{"id": "a"}]})));
    let (status, reply) = get(format!("/apps/{APP_ID}/channels"), vec![]).await;
    assert_eq!((status, reply), (200, json!({"channels": {room: {}}})));
    drop(a2);
}

#[tokio::test]
async fn the_router_merges_into_an_app_with_a_fallback() {
    use axum::routing::get;
    let broker = domvia_broker::Broker::new(
        domvia_broker::AppCredentials {
            id: APP_ID.into(),
            key: common::KEY.into(),
            secret: common::SECRET.into(),
        },
        Limits::default(),
    );
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(broker.router())
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "nothing here") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    assert_eq!(http(addr, "GET", "/healthz", b"").await.0, 200);
    assert_eq!(http(addr, "GET", "/elsewhere", b"").await.0, 404);
    let path = format!("/apps/{APP_ID}/channels");
    assert_eq!(signed(addr, "GET", &path, &[], b"").await.0, 200);
    let server = common::Server { broker, addr };
    let mut client = Client::connect(&server).await;
    client.ping().await;
}
