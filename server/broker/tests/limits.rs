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
