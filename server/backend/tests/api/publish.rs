//! Events reach a broker through the outbox: a fake Pusher REST endpoint
//! (`batch_events`) that checks signatures with the protocol core, records
//! what it got, and can refuse on demand.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use domvia_backend::Backend;
use domvia_realtime::protocol::verify_query;

use crate::harness::*;

/// How the fake broker answers a verified request.
#[derive(Clone, Copy, Default, PartialEq)]
enum Mode {
    #[default]
    Accept,
    /// 500 to everything.
    Fail,
    /// 429 with `Retry-After: 0` to every second request.
    RateLimitEverySecond,
    /// 413 to a batch holding an event whose data has `REFUSE-ME`.
    RefuseMarked,
}

#[derive(Clone, Default)]
struct Broker {
    /// Every accepted event, flattened out of its batch, as a single-event
    /// body (`name`, `channels`, `data`, `socket_id`).
    events: Arc<Mutex<Vec<Value>>>,
    mode: Arc<Mutex<Mode>>,
    requests: Arc<Mutex<u32>>,
}

async fn batch_events(
    State(broker): State<Broker>,
    uri: Uri,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
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
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let request = {
        let mut requests = broker.requests.lock().unwrap();
        *requests += 1;
        *requests
    };
    let batch: Value = serde_json::from_slice(&body).unwrap();
    let batch = batch["batch"].as_array().unwrap().clone();
    assert!(batch.len() <= 10, "a batch of {}", batch.len());
    match *broker.mode.lock().unwrap() {
        Mode::Accept => {}
        Mode::Fail => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Mode::RateLimitEverySecond if request % 2 == 0 => {
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")]).into_response()
        }
        Mode::RateLimitEverySecond => {}
        Mode::RefuseMarked => {
            let marked = batch
                .iter()
                .any(|event| event["data"].as_str().unwrap().contains("REFUSE-ME"));
            if marked {
                return StatusCode::PAYLOAD_TOO_LARGE.into_response();
            }
        }
    }
    let mut events = broker.events.lock().unwrap();
    for event in batch {
        let mut single = json!({
            "name": event["name"],
            "channels": [event["channel"]],
            "data": event["data"],
        });
        if let Some(socket_id) = event.get("socket_id") {
            single["socket_id"] = socket_id.clone();
        }
        events.push(single);
    }
    StatusCode::OK.into_response()
}

/// `terminate_connections`, recorded in line with the events as
/// `{"terminate": user_id}`.
async fn terminate_connections(
    State(broker): State<Broker>,
    Path((_, user_id)): Path<(String, String)>,
    uri: Uri,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let query = query.unwrap_or_default();
    if verify_query(KEY, SECRET, "POST", uri.path(), &query, &body, now).is_err() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    broker
        .events
        .lock()
        .unwrap()
        .push(json!({ "terminate": user_id }));
    StatusCode::OK.into_response()
}

async fn start_broker() -> (Broker, String) {
    let broker = Broker::default();
    let router = Router::new()
        .route(&format!("/apps/{APP_ID}/batch_events"), post(batch_events))
        .route(
            "/apps/{app_id}/users/{user_id}/terminate_connections",
            post(terminate_connections),
        )
        .with_state(broker.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.ok();
    });
    (broker, format!("http://{address}"))
}

/// Waits (up to 10 s) until the backend's outbox is empty.
async fn outbox_drained(backend: &Backend) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting = backend.waiting_events().await.unwrap();
        if waiting == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{waiting} events still wait");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Broker {
    /// What arrived since the last take, once the backend's outbox is empty.
    async fn take(&self, backend: &Backend) -> Vec<Value> {
        outbox_drained(backend).await;
        std::mem::take(&mut *self.events.lock().unwrap())
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

fn data_of(event: &Value) -> Value {
    serde_json::from_str(event["data"].as_str().unwrap()).unwrap()
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
    assert!(broker.take(&app.backend).await.is_empty());

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
    let events = broker.take(&app.backend).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["name"], "message.created");
    assert_eq!(events[0]["channels"], json!([channel]));
    assert_eq!(events[0]["socket_id"], "123.456");
    let data: Value = serde_json::from_str(events[0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(data, sent.body);

    // A retry stores and publishes nothing.
    app.send(&room, &ada, "c1", "hello").await.expect(200);
    assert!(broker.take(&app.backend).await.is_empty());

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
    let events = broker.take(&app.backend).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["name"], "receipt.updated");
    assert!(events[0].get("socket_id").is_none());
    let data: Value = serde_json::from_str(events[0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        data,
        json!({ "room_id": room, "user_id": bob.id, "seq": 1, "message_id": sent.body["message_id"], "latest_seq": 1 })
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
    let mut events = broker.take(&app.backend).await;
    // Leaving closes the leaver's connections, after the event.
    assert_eq!(events.pop(), Some(json!({ "terminate": carol.id })));
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
    let events = broker.take(&app.backend).await;
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
    for event in broker.take(&app.backend).await {
        let data = event["data"].as_str().unwrap();
        assert!(data.len() <= 10_240, "{}", data.len());
    }

    // A failing broker does not fail the request; history has the message,
    // and the event goes out once the broker is back.
    broker.set(Mode::Fail);
    app.send(&room, &ada, "c2", "while the broker is down")
        .await
        .expect(201);
    let history = app
        .get(&format!("/api/rooms/{room}/messages"), &bob)
        .await
        .expect(200);
    assert_eq!(history.body["messages"].as_array().unwrap().len(), 3);
    assert_eq!(app.backend.waiting_events().await.unwrap(), 1);
    broker.set(Mode::Accept);
    let events = broker.take(&app.backend).await;
    assert_eq!(events.len(), 1);
    assert_eq!(data_of(&events[0])["client_id"], "c2");
}

#[tokio::test]
async fn a_broker_that_rate_limits_every_second_request_gets_every_event_once_in_order() {
    let (broker, url) = start_broker().await;
    broker.set(Mode::RateLimitEverySecond);
    let app = TestApp::with_broker(Some(url));
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let room = app.group(&ada, &[&bob]).await;
    broker.take(&app.backend).await;
    for n in 0..40 {
        let who = if n % 2 == 0 { &ada } else { &bob };
        app.send(&room, who, &format!("c{n}"), &format!("m{n}"))
            .await
            .expect(201);
    }
    let seqs: Vec<i64> = broker
        .take(&app.backend)
        .await
        .iter()
        .map(|event| data_of(event)["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    assert!(*broker.requests.lock().unwrap() >= 2);
}

#[tokio::test]
async fn an_event_the_broker_refuses_for_good_is_dropped_alone() {
    let (broker, url) = start_broker().await;
    let app = TestApp::with_broker(Some(url));
    let ada = app.sign_in("Ada").await;
    let room = app.group(&ada, &[]).await;
    broker.take(&app.backend).await;
    broker.set(Mode::Fail);
    for n in 0..5 {
        let text = if n == 2 { "REFUSE-ME" } else { "fine" };
        app.send(&room, &ada, &format!("c{n}"), text)
            .await
            .expect(201);
    }
    broker.set(Mode::RefuseMarked);
    let clients: Vec<Value> = broker
        .take(&app.backend)
        .await
        .iter()
        .map(|event| data_of(event)["client_id"].clone())
        .collect();
    assert_eq!(
        clients,
        [json!("c0"), json!("c1"), json!("c3"), json!("c4")]
    );
}

#[tokio::test]
async fn events_stored_while_the_broker_was_down_go_out_after_a_restart() {
    let (broker, url) = start_broker().await;
    broker.set(Mode::Fail);
    let db = TempDb::new();
    {
        let backend = Backend::open(config(&db.path, Some(url.clone()))).unwrap();
        let app = TestApp::from_backend(backend);
        let ada = app.sign_in("Ada").await;
        let room = app.group(&ada, &[]).await;
        app.send(&room, &ada, "c1", "kept").await.expect(201);
        assert_eq!(app.backend.waiting_events().await.unwrap(), 1);
        app.backend.close().unwrap();
    }
    broker.set(Mode::Accept);
    // Opening the backend again is enough: no request needed.
    let backend = Backend::open(config(&db.path, Some(url))).unwrap();
    let events = broker.take(&backend).await;
    // At least once: the first backend's relay may have had the event in
    // flight when it was dropped (in one process; a restarted process has no
    // such relay). Clients drop the duplicate by message_id.
    assert!(!events.is_empty());
    for event in &events {
        assert_eq!(event["name"], "message.created");
        assert_eq!(data_of(event)["client_id"], "c1");
    }
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
    assert_eq!(app.backend.waiting_events().await.unwrap(), 1);
}

#[tokio::test]
async fn without_a_broker_nothing_waits() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let room = app.group(&ada, &[]).await;
    app.send(&room, &ada, "c1", "hi").await.expect(201);
    assert_eq!(app.backend.waiting_events().await.unwrap(), 0);
}

#[tokio::test]
async fn removal_and_sign_out_close_the_users_connections_after_their_events() {
    let (broker, url) = start_broker().await;
    let app = TestApp::with_broker(Some(url));
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let room = app.group(&ada, &[&bob]).await;
    broker.take(&app.backend).await;

    app.call(
        Method::DELETE,
        &format!("/api/rooms/{room}/members/{}", bob.id),
        Some(&ada.token),
        None,
    )
    .await
    .expect(200);
    let sent = broker.take(&app.backend).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0]["name"], "member.removed");
    assert_eq!(sent[1], json!({ "terminate": bob.id }));

    // Removing someone who is not a member changes nothing and closes nothing.
    app.call(
        Method::DELETE,
        &format!("/api/rooms/{room}/members/{}", bob.id),
        Some(&ada.token),
        None,
    )
    .await
    .expect(200);
    assert_eq!(broker.take(&app.backend).await, Vec::<Value>::new());

    app.call(Method::DELETE, "/api/session", Some(&ada.token), None)
        .await
        .expect(204);
    assert_eq!(
        broker.take(&app.backend).await,
        [json!({ "terminate": ada.id })]
    );
}
