//! The WebSocket side of the broker, over real sockets.

mod common;

use std::time::Duration;

use common::{
    open, receive, receive_close, signed, start, trigger, ws_path, Client, Received, APP_ID, KEY,
    SECRET,
};
use domvia_broker::Limits;
use domvia_realtime::protocol::{
    authenticate_user, authorize_presence_channel, authorize_private_channel, validate_socket_id,
    webhook_signature,
};
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(200);

#[tokio::test]
async fn connection_established_and_ping() {
    let server = start(Limits::default()).await;
    let mut ws = open(server.addr, &ws_path()).await;
    let Received::Frame(frame) = receive(&mut ws).await else {
        panic!("no connection_established");
    };
    assert_eq!(frame.event, "pusher:connection_established");
    let data = frame.data.unwrap();
    assert_eq!(data["activity_timeout"], json!(120));
    let socket_id = data["socket_id"].as_str().unwrap();
    assert_eq!(validate_socket_id(socket_id), Ok(()));

    let mut a = Client::connect(&server).await;
    let b = Client::connect(&server).await;
    assert_ne!(a.socket_id, b.socket_id);
    a.ping().await;
    assert_eq!(server.broker.connection_count(), 3);
    b.close().await;
}

#[tokio::test]
async fn data_is_double_encoded_as_pusher_sends_it() {
    let server = start(Limits::default()).await;
    let mut ws = open(server.addr, &ws_path()).await;
    use futures_util::StreamExt;
    let text = ws.next().await.unwrap().unwrap().into_text().unwrap();
    let outer: Value = serde_json::from_str(text.as_str()).unwrap();
    let inner: Value = serde_json::from_str(outer["data"].as_str().unwrap()).unwrap();
    assert!(inner["socket_id"].is_string());
}

#[tokio::test]
async fn unknown_key_and_bad_protocol_are_refused() {
    let server = start(Limits::default()).await;
    let mut ws = open(server.addr, "/app/wrong-key?protocol=7&client=js").await;
    let (code, frames) = receive_close(&mut ws).await;
    assert_eq!(code, Some(4001));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].event, "pusher:error");
    assert_eq!(frames[0].data.as_ref().unwrap()["code"], json!(4001));

    for query in [
        "",
        "?protocol=4",
        "?protocol=8",
        "?protocol=x",
        "?client=js",
    ] {
        let mut ws = open(server.addr, &format!("/app/{KEY}{query}")).await;
        let (code, frames) = receive_close(&mut ws).await;
        assert_eq!(code, Some(4007), "{query}");
        assert_eq!(frames[0].data.as_ref().unwrap()["code"], json!(4007));
    }
    let mut old = open(server.addr, &format!("/app/{KEY}?protocol=5")).await;
    let Received::Frame(frame) = receive(&mut old).await else {
        panic!("protocol 5 is accepted");
    };
    assert_eq!(frame.event, "pusher:connection_established");
}

#[tokio::test]
async fn idle_clients_are_pinged_and_closed_without_a_pong() {
    let server = start(Limits {
        activity_timeout_secs: 1,
        pong_timeout_secs: 1,
        ..Limits::default()
    })
    .await;
    let mut silent = Client::connect(&server).await;
    let mut lively = Client::connect(&server).await;

    // The lively client answers the first ping and is pinged again later.
    lively.expect("pusher:ping").await;
    lively
        .send(json!({"event": "pusher:pong", "data": {}}))
        .await;
    lively.expect("pusher:ping").await;
    lively
        .send(json!({"event": "pusher:pong", "data": {}}))
        .await;

    // The silent client gets a ping, then the close.
    silent.expect("pusher:ping").await;
    assert_eq!(silent.expect_close().await, Some(4201));
    lively.ping().await;
}

#[tokio::test]
async fn private_channels_need_a_valid_signature() {
    let server = start(Limits::default()).await;
    let mut client = Client::connect(&server).await;
    let ok = client.subscribe_private("private-chat.room.r1").await;
    assert_eq!(ok.event, "pusher_internal:subscription_succeeded");
    assert_eq!(ok.channel.as_deref(), Some("private-chat.room.r1"));
    assert_eq!(ok.data, Some(json!({})).map(Into::into));

    // Signed for another socket, for another channel, with another secret, or not at all.
    let other_socket = authorize_private_channel(KEY, SECRET, "1.1", "private-a").unwrap();
    let other_channel =
        authorize_private_channel(KEY, SECRET, &client.socket_id, "private-b").unwrap();
    let other_secret =
        authorize_private_channel(KEY, "nope", &client.socket_id, "private-a").unwrap();
    let other_key =
        authorize_private_channel("k2", SECRET, &client.socket_id, "private-a").unwrap();
    for auth in [
        Some(other_socket.auth.as_str()),
        Some(other_channel.auth.as_str()),
        Some(other_secret.auth.as_str()),
        Some(other_key.auth.as_str()),
        Some("garbage"),
        Some(""),
        None,
    ] {
        let refused = client.subscribe_with("private-a", auth, None).await;
        assert_eq!(refused.event, "pusher:subscription_error", "{auth:?}");
        assert_eq!(refused.channel.as_deref(), Some("private-a"));
        let data = refused.data.unwrap();
        assert_eq!(data["type"], json!("AuthError"));
        assert_eq!(data["status"], json!(401));
        assert!(data["error"].as_str().unwrap().starts_with("unable to"));
    }
    // The same socket still works.
    let ok = client.subscribe_private("private-a").await;
    assert_eq!(ok.event, "pusher_internal:subscription_succeeded");
    let ok = client.subscribe("public-news").await;
    assert_eq!(ok.event, "pusher_internal:subscription_succeeded");
    client.ping().await;
}

#[tokio::test]
async fn invalid_names_and_subscription_limits() {
    let server = start(Limits {
        max_channels_per_connection: 2,
        ..Limits::default()
    })
    .await;
    let mut client = Client::connect(&server).await;
    for name in ["", "bad name", "private-", &"x".repeat(201), "é"] {
        let refused = client.subscribe(name).await;
        assert_eq!(refused.event, "pusher:subscription_error", "{name:?}");
        let data = refused.data.unwrap();
        assert_eq!(data["type"], json!("InvalidChannel"));
        assert_eq!(data["status"], json!(400));
    }
    assert_eq!(
        client.subscribe("one").await.event,
        "pusher_internal:subscription_succeeded"
    );
    // Subscribing again is not another channel.
    assert_eq!(
        client.subscribe("one").await.event,
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(
        client.subscribe("two").await.event,
        "pusher_internal:subscription_succeeded"
    );
    let refused = client.subscribe("three").await;
    assert_eq!(refused.event, "pusher:subscription_error");
    assert_eq!(refused.data.unwrap()["status"], json!(429));
    client
        .send(json!({"event": "pusher:unsubscribe", "data": {"channel": "one"}}))
        .await;
    assert_eq!(
        client.subscribe("three").await.event,
        "pusher_internal:subscription_succeeded"
    );
}

fn member_ids(frame: &domvia_realtime::protocol::Frame) -> Vec<String> {
    let data = frame.data.as_ref().unwrap();
    data["presence"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn presence_members_are_users_not_connections() {
    let server = start(Limits::default()).await;
    let channel = "presence-chat.room.r1";
    let mut watcher = Client::connect(&server).await;
    let joined = watcher.subscribe_presence(channel, "w").await;
    assert_eq!(joined.event, "pusher_internal:subscription_succeeded");
    assert_eq!(member_ids(&joined), ["w"]);

    let mut first = Client::connect(&server).await;
    let joined = first.subscribe_presence(channel, "u").await;
    assert_eq!(member_ids(&joined), ["u", "w"]);
    let presence = &joined.data.as_ref().unwrap()["presence"];
    assert_eq!(presence["count"], json!(2));
    assert_eq!(presence["hash"]["u"], json!({"name": "User u"}));
    let added = watcher.expect("pusher_internal:member_added").await;
    assert_eq!(added.channel.as_deref(), Some(channel));
    assert_eq!(
        added.data,
        Some(json!({"user_id": "u", "user_info": {"name": "User u"}})).map(Into::into)
    );

    let mut second = Client::connect(&server).await;
    let joined = second.subscribe_presence(channel, "u").await;
    assert_eq!(joined.data.as_ref().unwrap()["presence"]["count"], json!(2));
    // Subscribing again re-sends success without counting twice.
    let again = second.subscribe_presence(channel, "u").await;
    assert_eq!(again.event, "pusher_internal:subscription_succeeded");
    assert_eq!(again.data.as_ref().unwrap()["presence"]["count"], json!(2));

    first
        .send(json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}))
        .await;
    first.ping().await;
    watcher.expect_silence(QUIET).await;
    second.close().await;
    let removed = watcher.expect("pusher_internal:member_removed").await;
    assert_eq!(removed.data, Some(json!({"user_id": "u"})).map(Into::into));
    watcher.expect_silence(QUIET).await;
}

#[tokio::test]
async fn presence_stamps_user_id_on_client_events() {
    let server = start(Limits::default()).await;
    let channel = "presence-chat.room.r2";
    let mut alice = Client::connect(&server).await;
    let mut bob = Client::connect(&server).await;
    alice.subscribe_presence(channel, "alice").await;
    bob.subscribe_presence(channel, "bob").await;
    alice.expect("pusher_internal:member_added").await;

    bob.send(json!({
        "event": "client-typing",
        "channel": channel,
        "user_id": "alice",
        "data": {"user_id": "alice", "is_typing": true},
    }))
    .await;
    let typing = alice.expect("client-typing").await;
    assert_eq!(typing.user_id.as_deref(), Some("bob"));
    assert_eq!(
        typing.data,
        Some(json!({"user_id": "alice", "is_typing": true})).map(Into::into)
    );
    bob.expect_silence(QUIET).await;

    // On a private channel the broker removes a user_id the client wrote.
    alice.subscribe_private("private-x").await;
    bob.subscribe_private("private-x").await;
    bob.send(json!({"event": "client-x", "channel": "private-x", "user_id": "alice", "data": {}}))
        .await;
    let relayed = alice.expect("client-x").await;
    assert_eq!(relayed.user_id, None);
}

#[tokio::test]
async fn presence_limits_and_bad_channel_data() {
    let server = start(Limits {
        max_presence_members: 2,
        max_presence_user_info_bytes: 64,
        ..Limits::default()
    })
    .await;
    let channel = "presence-full";
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    let mut c = Client::connect(&server).await;
    a.subscribe_presence(channel, "a").await;
    b.subscribe_presence(channel, "b").await;
    let refused = c.subscribe_presence(channel, "c").await;
    assert_eq!(refused.event, "pusher:subscription_error");
    assert_eq!(refused.data.unwrap()["status"], json!(403));
    // A second connection of a member still fits.
    let ok = c.subscribe_presence(channel, "a").await;
    assert_eq!(ok.event, "pusher_internal:subscription_succeeded");

    let info = json!({ "bio": "x".repeat(100) });
    let auth = authorize_presence_channel(
        KEY,
        SECRET,
        &c.socket_id,
        "presence-big",
        "c",
        Some(&info.into()),
    )
    .unwrap();
    let refused = c
        .subscribe_with(
            "presence-big",
            Some(&auth.auth),
            auth.channel_data.as_deref(),
        )
        .await;
    assert_eq!(refused.data.unwrap()["status"], json!(413));

    // Validly signed channel_data that is not presence data.
    for bad_data in ["{\"name\":1}", "{\"user_id\":\"\"}", "not json", "[]"] {
        let message = format!("{}:presence-y:{bad_data}", c.socket_id);
        let auth = format!("{KEY}:{}", webhook_signature(SECRET, message.as_bytes()));
        let refused = c
            .subscribe_with("presence-y", Some(&auth), Some(bad_data))
            .await;
        let data = refused.data.unwrap();
        assert_eq!(data["status"], json!(400), "{bad_data}");
        assert_eq!(data["type"], json!("InvalidChannelData"));
    }
    // Presence without channel_data is an auth error.
    let auth = authorize_private_channel(KEY, SECRET, &c.socket_id, "private-y").unwrap();
    let refused = c.subscribe_with("presence-y", Some(&auth.auth), None).await;
    assert_eq!(refused.data.unwrap()["status"], json!(401));
    c.ping().await;
}

#[tokio::test]
async fn client_events_reach_others_but_not_the_sender() {
    let server = start(Limits::default()).await;
    let channel = "private-chat.room.r3";
    let mut alice = Client::connect(&server).await;
    let mut bob = Client::connect(&server).await;
    let mut carol = Client::connect(&server).await;
    for client in [&mut alice, &mut bob, &mut carol] {
        client.subscribe_private(channel).await;
    }
    alice
        .send(json!({"event": "client-typing", "channel": channel, "data": {"is_typing": true}}))
        .await;
    for receiver in [&mut bob, &mut carol] {
        let typing = receiver.expect("client-typing").await;
        assert_eq!(typing.channel.as_deref(), Some(channel));
        assert_eq!(
            typing.data,
            Some(json!({"is_typing": true})).map(Into::into)
        );
    }
    alice.expect_silence(QUIET).await;
}

#[tokio::test]
async fn client_events_are_checked() {
    let server = start(Limits {
        max_event_data_bytes: 100,
        ..Limits::default()
    })
    .await;
    let mut alice = Client::connect(&server).await;
    let mut bob = Client::connect(&server).await;
    alice.subscribe("news").await;
    alice.subscribe_private("private-a").await;
    bob.subscribe_private("private-a").await;

    let cases = [
        json!({"event": "client-x", "channel": "news", "data": {}}),
        json!({"event": "client-x", "channel": "private-other", "data": {}}),
        json!({"event": "client-x", "channel": "private-encrypted-a", "data": {}}),
        json!({"event": "typing", "channel": "private-a", "data": {}}),
        json!({"event": "client-x", "channel": "private-a", "data": "x".repeat(101)}),
        json!({"event": "pusher_internal:member_added", "channel": "private-a", "data": {}}),
        json!({"event": "pusher:connection_established", "data": {}}),
    ];
    for case in cases {
        alice.send(case.clone()).await;
        let message = alice.expect_error(4302).await;
        assert!(message.starts_with("unable to"), "{case}: {message}");
    }
    alice.send(json!({"event": "client-x", "data": {}})).await;
    alice.expect_error(4303).await;
    bob.expect_silence(QUIET).await;
    // Exactly at the limit is fine.
    alice
        .send(json!({"event": "client-x", "channel": "private-a", "data": "x".repeat(100)}))
        .await;
    bob.expect("client-x").await;
    alice.ping().await;

    let disabled = start(Limits {
        client_events_enabled: false,
        ..Limits::default()
    })
    .await;
    let mut client = Client::connect(&disabled).await;
    client.subscribe_private("private-a").await;
    client
        .send(json!({"event": "client-x", "channel": "private-a", "data": {}}))
        .await;
    assert!(client.expect_error(4302).await.contains("disabled"));
}

#[tokio::test]
async fn client_events_are_rate_limited() {
    let server = start(Limits::default()).await;
    let channel = "private-fast";
    let mut sender = Client::connect(&server).await;
    let mut receiver = Client::connect(&server).await;
    sender.subscribe_private(channel).await;
    receiver.subscribe_private(channel).await;
    for i in 0..11 {
        sender
            .send(json!({"event": "client-n", "channel": channel, "data": {"i": i}}))
            .await;
    }
    let message = sender.expect_error(4301).await;
    assert_eq!(message, "Client event rejected due to rate limit");
    for i in 0..10 {
        let frame = receiver.expect("client-n").await;
        assert_eq!(frame.data, Some(json!({"i": i})).map(Into::into));
    }
    receiver.expect_silence(QUIET).await;
    sender.ping().await;
}

#[tokio::test]
async fn malformed_and_binary_frames_keep_the_socket() {
    let server = start(Limits::default()).await;
    let mut client = Client::connect(&server).await;
    for text in [
        "not json",
        "[]",
        "{}",
        r#"{"event":1}"#,
        r#"{"event":"pusher:subscribe","data":"x"}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":5}}"#,
        r#"{"event":"pusher:unsubscribe"}"#,
        r#"{"event":"client-x","channel":["a"]}"#,
    ] {
        client.send_text(text).await;
        let message = client.expect_error(4303).await;
        assert!(message.starts_with("unable to"), "{text}: {message}");
    }
    use futures_util::SinkExt;
    client
        .ws
        .send(tokio_tungstenite::tungstenite::Message::binary(vec![
            1, 2, 3,
        ]))
        .await
        .unwrap();
    client.expect_error(4303).await;
    client.ping().await;
}

#[tokio::test]
async fn oversized_messages_close_with_1009() {
    let server = start(Limits {
        max_frame_bytes: 1024,
        ..Limits::default()
    })
    .await;
    let mut client = Client::connect(&server).await;
    client.send_text("x".repeat(1025)).await;
    assert_eq!(client.expect_close().await, Some(1009));
    let mut fresh = Client::connect(&server).await;
    fresh.ping().await;
}

#[tokio::test]
async fn connections_over_capacity_are_closed_with_4100() {
    let server = start(Limits {
        max_connections: 2,
        ..Limits::default()
    })
    .await;
    let mut first = Client::connect(&server).await;
    let _second = Client::connect(&server).await;
    let mut third = open(server.addr, &ws_path()).await;
    let (code, frames) = receive_close(&mut third).await;
    assert_eq!(code, Some(4100));
    assert_eq!(frames[0].data.as_ref().unwrap()["code"], json!(4100));
    first.ping().await;
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_4200() {
    let server = start(Limits::default()).await;
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    a.subscribe("news").await;
    let broker = server.broker.clone();
    let stopping = tokio::spawn(async move { broker.shutdown().await });
    assert_eq!(a.expect_close().await, Some(4200));
    assert_eq!(b.expect_close().await, Some(4200));
    tokio::time::timeout(common::WAIT, stopping)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.broker.connection_count(), 0);
    // New connections are refused at the HTTP level, so clients back off.
    let url = format!("ws://{}{}", server.addr, ws_path());
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
        }
        other => panic!("expected HTTP 503, got {other:?}"),
    }
}

#[tokio::test]
async fn clients_that_do_not_read_are_dropped() {
    let server = start(Limits {
        outbound_queue_messages: 4,
        max_event_data_bytes: 60_000,
        max_rest_body_bytes: 1 << 20,
        ..Limits::default()
    })
    .await;
    let mut stalled = Client::connect(&server).await;
    stalled.subscribe("firehose").await;
    let data = "x".repeat(50_000);
    let body = json!({"name": "e", "channel": "firehose", "data": data});
    let mut dropped = false;
    for round in 0..800 {
        let (status, _) = common::trigger(server.addr, &body).await;
        assert_eq!(status, 200);
        if server.broker.connection_count() == 0 {
            eprintln!("dropped after {round} events");
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the stalled client was never dropped");
}

#[tokio::test]
async fn sign_in_checks_the_user_signature() {
    let server = start(Limits::default()).await;
    let mut client = Client::connect(&server).await;
    let user: domvia_realtime::json::Value = json!({"id": "u1", "name": "Ada"}).into();
    let signed = authenticate_user(KEY, SECRET, &client.socket_id, &user).unwrap();
    client
        .send(json!({"event": "pusher:signin", "data": {"auth": signed.auth, "user_data": signed.user_data}}))
        .await;
    let success = client.expect("pusher:signin_success").await;
    assert_eq!(success.data.unwrap()["user_data"], json!(signed.user_data));

    let forged = authenticate_user(KEY, "wrong", &client.socket_id, &user).unwrap();
    client
        .send(json!({"event": "pusher:signin", "data": {"auth": forged.auth, "user_data": forged.user_data}}))
        .await;
    client.expect_error(4009).await;
    assert_eq!(client.expect_close().await, Some(4009));
}

/// Signs `client` in as `user_id` and waits for the broker to confirm.
async fn sign_in_as(client: &mut Client, user_id: &str) {
    let user = json!({ "id": user_id });
    let signed = authenticate_user(KEY, SECRET, &client.socket_id, &user.into()).unwrap();
    client
        .send(json!({"event": "pusher:signin", "data": {"auth": signed.auth, "user_data": signed.user_data}}))
        .await;
    client.expect("pusher:signin_success").await;
}

#[tokio::test]
async fn terminate_connections_closes_every_socket_the_user_signed_in_on() {
    let server = start(Limits::default()).await;
    let mut bob_tab = Client::connect(&server).await;
    let mut bob_phone = Client::connect(&server).await;
    let mut ada = Client::connect(&server).await;
    // Bob in presence without signing in: the channel's user id is not the
    // connection's identity, so this socket stays (as on Pusher and sockudo).
    let mut bob_unsigned = Client::connect(&server).await;
    sign_in_as(&mut bob_tab, "bob").await;
    sign_in_as(&mut bob_phone, "bob").await;
    sign_in_as(&mut ada, "ada").await;
    ada.subscribe_private("private-chat.room.r1").await;
    bob_tab.subscribe_private("private-chat.room.r1").await;
    bob_unsigned
        .subscribe_presence("presence-chat.room.r1", "bob")
        .await;

    let path = format!("/apps/{APP_ID}/users/bob/terminate_connections");
    let (status, body) = signed(server.addr, "POST", &path, &[], b"{}").await;
    assert_eq!((status, body), (200, json!({})));
    assert_eq!(bob_tab.expect_close().await, Some(4009));
    assert_eq!(bob_phone.expect_close().await, Some(4009));
    bob_unsigned.ping().await;
    // Everyone else carries on.
    let event = json!({"name": "message.created", "channel": "private-chat.room.r1", "data": "{}"});
    assert_eq!(trigger(server.addr, &event).await.0, 200);
    ada.expect("message.created").await;

    // Unsigned, wrongly signed and unknown apps are refused; a user with no
    // connections is fine.
    assert_eq!(common::http(server.addr, "POST", &path, b"{}").await.0, 401);
    let path = "/apps/4242/users/nobody/terminate_connections";
    assert_eq!(signed(server.addr, "POST", path, &[], b"{}").await.0, 200);
    let path = "/apps/other/users/bob/terminate_connections";
    assert_eq!(signed(server.addr, "POST", path, &[], b"{}").await.0, 404);
}
