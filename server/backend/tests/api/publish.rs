//! Events reach a broker: a fake Pusher REST endpoint that checks signatures
//! with the protocol core and records what it got.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use domvia_realtime::protocol::verify_query;

use crate::harness::*;

#[derive(Clone, Default)]
struct Broker {
    events: Arc<Mutex<Vec<Value>>>,
    fail: Arc<Mutex<bool>>,
}

async fn events(
    State(broker): State<Broker>,
    uri: Uri,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> StatusCode {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let verified = verify_query(
        KEY,
        SECRET,
        "POST",
        uri.path(),
        query.as_deref().unwrap_or(""),
        &body,
        now,
    );
    if verified.is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    if *broker.fail.lock().unwrap() {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let event: Value = serde_json::from_slice(&body).unwrap();
    broker.events.lock().unwrap().push(event);
    StatusCode::OK
}

async fn start_broker() -> (Broker, String) {
    let broker = Broker::default();
    let router = Router::new()
        .route(&format!("/apps/{APP_ID}/events"), post(events))
        .with_state(broker.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.ok();
    });
    (broker, format!("http://{address}"))
}

impl Broker {
    fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

#[tokio::test]
async fn changes_are_published_after_they_are_stored() {
    let (broker, url) = start_broker().await;
    let app = TestApp::with_broker(Some(url));
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let carol = app.sign_in("Carol").await;
    let room = app.group(&ada, &[&bob]).await;
    let channel = format!("private-chat.room.{room}");
    assert!(broker.take().is_empty());

    let sent = app
        .raw(
            axum::http::Method::POST,
            &format!("/api/rooms/{room}/messages"),
            Some(&ada.token),
            "application/json",
            Some(
                json!({ "client_id": "c1", "text": "hello" })
                    .to_string()
                    .into_bytes(),
            ),
            &[("x-socket-id", "123.456")],
        )
        .await
        .expect(201);
    let events = broker.take();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["name"], "message.created");
    assert_eq!(events[0]["channels"], json!([channel]));
    assert_eq!(events[0]["socket_id"], "123.456");
    let data: Value = serde_json::from_str(events[0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(data, sent.body);

    // A retry stores and publishes nothing.
    app.send(&room, &ada, "c1", "hello").await.expect(200);
    assert!(broker.take().is_empty());

    app.post(
        &format!("/api/rooms/{room}/read"),
        &bob,
        json!({ "seq": 1 }),
    )
    .await
    .expect(200);
    app.post(
        &format!("/api/rooms/{room}/read"),
        &bob,
        json!({ "seq": 1 }),
    )
    .await
    .expect(200);
    let events = broker.take();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["name"], "receipt.updated");
    assert!(events[0].get("socket_id").is_none());
    let data: Value = serde_json::from_str(events[0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        data,
        json!({ "room_id": room, "user_id": bob.id, "seq": 1, "message_id": sent.body["message_id"] })
    );

    app.post(
        &format!("/api/rooms/{room}/members"),
        &bob,
        json!({ "user_id": carol.id }),
    )
    .await
    .expect(201);
    app.call(
        axum::http::Method::DELETE,
        &format!("/api/rooms/{room}/members/{}", carol.id),
        Some(&carol.token),
        None,
    )
    .await
    .expect(200);
    let events = broker.take();
    let summary: Vec<(String, Value)> = events
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                serde_json::from_str(e["data"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "member.added".to_owned(),
                json!({ "room_id": room, "user_id": carol.id })
            ),
            (
                "member.removed".to_owned(),
                json!({ "room_id": room, "user_id": carol.id })
            ),
        ]
    );
    assert!(events.iter().all(|e| e["channels"] == json!([channel])));

    // Epochs exist only in encrypted rooms.
    let sealed = app.encrypted_group(&ada, &[&bob]).await;
    app.post(
        &format!("/api/rooms/{sealed}/epochs"),
        &ada,
        json!({ "epoch": 1, "shares": [] }),
    )
    .await
    .expect(201);
    let events = broker.take();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["name"], "epoch.created");
    assert_eq!(
        events[0]["channels"],
        json!([format!("private-chat.room.{sealed}")])
    );
    let data: Value = serde_json::from_str(events[0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(data, json!({ "room_id": sealed, "epoch": 1 }));

    // The largest messages fit the 10 KiB event data limit of Pusher brokers,
    // even when every character of the text needs escaping.
    let longest_id = "x".repeat(64);
    app.send(&room, &ada, &longest_id, &"\"".repeat(4000))
        .await
        .expect(201);
    // (Epoch 1, created above, covers the member devices.)
    let quotes = json!({ "epoch": 1, "c": "\"".repeat(3063) });
    assert_eq!(quotes.to_string().len(), 6144);
    app.post(
        &format!("/api/rooms/{sealed}/messages"),
        &ada,
        json!({ "client_id": "ct", "ciphertext": quotes }),
    )
    .await
    .expect(201);
    for event in broker.take() {
        let data = event["data"].as_str().unwrap();
        assert!(data.len() <= 10_240, "{}", data.len());
    }

    // A failing broker does not fail the request; history has the message.
    *broker.fail.lock().unwrap() = true;
    app.send(&room, &ada, "c2", "while the broker is down")
        .await
        .expect(201);
    let history = app
        .get(&format!("/api/rooms/{room}/messages"), &bob)
        .await
        .expect(200);
    assert_eq!(history.body["messages"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn an_unreachable_broker_does_not_fail_sends() {
    // Bind then drop a listener, so the port is (almost certainly) closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let app = TestApp::with_broker(Some(format!("http://{address}")));
    let ada = app.sign_in("Ada").await;
    let room = app.group(&ada, &[]).await;
    app.send(&room, &ada, "c1", "hi").await.expect(201);
}
