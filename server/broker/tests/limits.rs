//! Limits against clients that cost the broker memory or sockets without
//! doing anything useful: over-long client-event names, sockets that never
//! subscribe, clients that do not read.

mod common;

use std::time::Duration;

use common::{start, Client};
use domvia_broker::Limits;
use serde_json::json;

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn client_event_names_over_200_bytes_are_refused() {
    let server = start(Limits::default()).await;
    let mut alice = Client::connect(&server).await;
    let mut bob = Client::connect(&server).await;
    alice.subscribe_private("private-a").await;
    bob.subscribe_private("private-a").await;

    let long = format!("client-{}", "x".repeat(60_000));
    alice
        .send(json!({"event": long, "channel": "private-a", "data": {}}))
        .await;
    let message = alice.expect_error(4302).await;
    assert!(message.starts_with("unable to"), "{message}");
    assert!(message.len() < 1_000, "the refusal echoes the whole name");
    bob.expect_silence(QUIET).await;

    // Exactly 200 bytes is fine.
    let longest = format!("client-{}", "x".repeat(200 - "client-".len()));
    alice
        .send(json!({"event": longest, "channel": "private-a", "data": {}}))
        .await;
    assert_eq!(bob.expect(&longest).await.event.len(), 200);
    alice.ping().await;
}

#[tokio::test]
async fn sockets_that_never_subscribe_are_closed_with_4202() {
    let server = start(Limits {
        subscribe_timeout_secs: 1,
        ..Limits::default()
    })
    .await;
    let mut idle = Client::connect(&server).await;
    let mut subscribed = Client::connect(&server).await;
    subscribed.subscribe("news").await;
    // Signed in counts too: the app knows the connection.
    let mut signed_in = Client::connect(&server).await;
    let user = serde_json::json!({ "id": "u1" });
    let auth = domvia_realtime::protocol::authenticate_user(
        common::KEY,
        common::SECRET,
        &signed_in.socket_id,
        &user.into(),
    )
    .unwrap();
    signed_in
        .send(serde_json::json!({"event": "pusher:signin", "data": {"auth": auth.auth, "user_data": auth.user_data}}))
        .await;
    signed_in.expect("pusher:signin_success").await;
    // Pings keep a socket alive, not subscribed: it still gets nothing.
    idle.ping().await;
    assert_eq!(idle.expect_close().await, Some(4202));
    // A subscribed or signed-in socket is left alone past the deadline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    subscribed.ping().await;
    signed_in.ping().await;
    assert_eq!(server.broker.connection_count(), 2);
}

#[tokio::test]
async fn clients_that_do_not_read_are_dropped_at_the_byte_budget() {
    // Room for 100,000 frames: only the byte budget can drop the client.
    let server = start(Limits {
        outbound_queue_messages: 100_000,
        outbound_queue_bytes: 256 * 1024,
        max_event_data_bytes: 60_000,
        max_rest_body_bytes: 1 << 20,
        ..Limits::default()
    })
    .await;
    let mut stalled = Client::connect(&server).await;
    stalled.subscribe("firehose").await;
    let mut reader = Client::connect(&server).await;
    reader.subscribe("firehose").await;
    let data = "x".repeat(50_000);
    let body = json!({"name": "e", "channel": "firehose", "data": data});
    // 800 events are 40 MB: more than the kernel's socket buffers hold.
    let mut dropped_after = None;
    for round in 0..800 {
        let (status, _) = common::trigger(server.addr, &body).await;
        assert_eq!(status, 200);
        reader.expect("e").await;
        if server.broker.connection_count() == 1 {
            dropped_after = Some(round);
            break;
        }
    }
    let round = dropped_after.expect("the stalled client was never dropped");
    eprintln!("dropped after {round} events");
    // The reader kept up and is still there.
    reader.ping().await;
}
