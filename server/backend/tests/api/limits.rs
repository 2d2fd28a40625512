//! Abuse limits: the per-user device cap, and rate limits per user and per
//! client IP answered `429 rate_limited` with `Retry-After`.

use axum::body::Body;
use axum::http::{Method, Request};
use domvia_backend::{Limits, Rate};
use serde_json::{json, Value};

use crate::harness::*;

/// A bucket that never refills within a test.
fn burst(n: u32) -> Option<Rate> {
    Some(Rate {
        burst: n,
        per_second: 0.0001,
    })
}

async fn put_device(app: &TestApp, who: &Who, device_id: &str, record: Value) -> Reply {
    // Devices are ordered by when they were last registered, in ms.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    app.call(
        Method::PUT,
        &format!("/api/devices/{device_id}"),
        Some(&who.token),
        Some(json!({ "record": record })),
    )
    .await
}

fn device_ids(reply: &Reply) -> Vec<String> {
    reply
        .body
        .as_array()
        .expect("a device list")
        .iter()
        .map(|d| d["device_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[track_caller]
fn expect_rate_limited(reply: Reply) -> u64 {
    let reply = reply.expect_error(429, "rate_limited");
    let header: u64 = reply
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {:?}", reply.headers));
    assert!(header >= 1);
    assert_eq!(reply.body["error"]["retry_after"], header);
    header
}

#[tokio::test]
async fn one_member_cannot_register_devices_without_bound() {
    let app = TestApp::with_limits(Limits {
        devices_per_user: 3,
        ..Limits::without_rate_limits()
    });
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    put_device(&app, &ada, "ada-1", json!({})).await.expect(201);
    let room = app.encrypted_group(&ada, &[&bob]).await;

    // Bob registers device after device: only his 3 most recent stay.
    for i in 1..=5 {
        let reply = put_device(&app, &bob, &format!("bob-{i}"), json!({ "i": i }))
            .await
            .expect(201);
        if i > 3 {
            assert_eq!(
                reply.body["evicted_device_ids"],
                json!([format!("bob-{}", i - 3)])
            );
        } else {
            assert_eq!(reply.body["evicted_device_ids"], json!([]));
        }
    }
    let bobs = app
        .get(&format!("/api/users/{}/devices", bob.id), &ada)
        .await
        .expect(200);
    assert_eq!(device_ids(&bobs), ["bob-3", "bob-4", "bob-5"]);
    // Re-registering the same record refreshes a device: it is then the newest.
    put_device(&app, &bob, "bob-3", json!({ "i": 3 }))
        .await
        .expect(200);
    put_device(&app, &bob, "bob-6", json!({})).await.expect(201);
    let bobs = app
        .get(&format!("/api/users/{}/devices", bob.id), &ada)
        .await
        .expect(200);
    assert_eq!(device_ids(&bobs), ["bob-3", "bob-5", "bob-6"]);
    // An evicted device is gone: its owner gets no share for it.
    app.get(
        &format!("/api/rooms/{room}/epochs/1/shares?device_id=bob-1"),
        &bob,
    )
    .await
    .expect_error(403, "device_not_owned");

    // The room can still re-key, with a share per listed device.
    let devices = app
        .get(&format!("/api/rooms/{room}/devices"), &ada)
        .await
        .expect(200);
    assert_eq!(device_ids(&devices).len(), 4);
    app.create_epoch(&room, &ada, 1).await.expect(201);
}

#[tokio::test]
async fn device_changes_are_rate_limited_per_user() {
    let app = TestApp::with_limits(Limits {
        device_changes_per_user: burst(3),
        ..Limits::without_rate_limits()
    });
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    put_device(&app, &ada, "ada-1", json!({ "k": 1 }))
        .await
        .expect(201);
    put_device(&app, &ada, "ada-1", json!({ "k": 2 }))
        .await
        .expect(200);
    // Storing the same record again is no change and costs nothing.
    for _ in 0..5 {
        put_device(&app, &ada, "ada-1", json!({ "k": 2 }))
            .await
            .expect(200);
    }
    put_device(&app, &ada, "ada-2", json!({})).await.expect(201);
    expect_rate_limited(put_device(&app, &ada, "ada-3", json!({})).await);
    expect_rate_limited(put_device(&app, &ada, "ada-1", json!({ "k": 3 })).await);
    // Nothing was stored by the refused requests.
    let mine = app
        .get(&format!("/api/users/{}/devices", ada.id), &ada)
        .await
        .expect(200);
    assert_eq!(device_ids(&mine), ["ada-1", "ada-2"]);
    assert_eq!(mine.body[0]["record"], json!({ "k": 2 }));
    // Another user has their own bucket.
    put_device(&app, &bob, "bob-1", json!({})).await.expect(201);
}

#[tokio::test]
async fn sends_room_creation_and_member_adds_are_rate_limited_per_user() {
    let app = TestApp::with_limits(Limits {
        sends_per_user: burst(3),
        rooms_per_user: burst(2),
        member_adds_per_user: burst(1),
        ..Limits::without_rate_limits()
    });
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let cy = app.sign_in("Cy").await;
    let room = app.group(&ada, &[&bob]).await;
    app.group(&ada, &[]).await;
    expect_rate_limited(
        app.post(
            "/api/rooms",
            &ada,
            json!({ "kind": "group", "name": "Three", "member_ids": [] }),
        )
        .await,
    );
    app.group(&bob, &[&ada]).await;

    for i in 0..3 {
        app.send(&room, &ada, &format!("c-{i}"), "hi")
            .await
            .expect(201);
    }
    let retry = expect_rate_limited(app.send(&room, &ada, "c-3", "hi").await);
    assert!(retry >= 1);
    app.send(&room, &bob, "c-0", "hi").await.expect(201);
    let page = app
        .get(&format!("/api/rooms/{room}/messages"), &ada)
        .await
        .expect(200);
    assert_eq!(page.body["messages"].as_array().map(Vec::len), Some(4));

    let members = format!("/api/rooms/{room}/members");
    app.post(&members, &ada, json!({ "user_id": cy.id }))
        .await
        .expect(201);
    expect_rate_limited(app.post(&members, &ada, json!({ "user_id": cy.id })).await);
}

fn sign_in_request(name: &str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/api/session")
        .header("content-type", "application/json")
        .body(Body::from(json!({ "name": name }).to_string()))
        .expect("a request")
}

fn send_request(room: &str, who: &Who, client_id: &str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(format!("/api/rooms/{room}/messages"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", who.token))
        .body(Body::from(
            json!({ "client_id": client_id, "text": "hi" }).to_string(),
        ))
        .expect("a request")
}

#[tokio::test]
async fn sign_ins_and_sends_are_rate_limited_per_ip() {
    let app = TestApp::with_limits(Limits {
        sign_ins_per_ip: burst(2),
        sends_per_ip: burst(2),
        ..Limits::without_rate_limits()
    });
    app.request_from("203.0.113.7", sign_in_request("Ada"))
        .await
        .expect(200);
    app.request_from("203.0.113.7", sign_in_request("Bob"))
        .await
        .expect(200);
    expect_rate_limited(app.request_from("203.0.113.7", sign_in_request("Cy")).await);
    app.request_from("2001:db8::1", sign_in_request("Cy"))
        .await
        .expect(200);
    // Loopback clients (a development machine, a proxy on the same host)
    // are not limited per IP unless asked.
    for name in ["Dee", "Eve", "Fay"] {
        app.request_from("127.0.0.1", sign_in_request(name))
            .await
            .expect(200);
    }

    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let room = app.group(&ada, &[&bob]).await;
    app.request_from("198.51.100.1", send_request(&room, &ada, "c-1"))
        .await
        .expect(201);
    app.request_from("198.51.100.1", send_request(&room, &bob, "c-1"))
        .await
        .expect(201);
    expect_rate_limited(
        app.request_from("198.51.100.1", send_request(&room, &bob, "c-2"))
            .await,
    );
}

#[tokio::test]
async fn loopback_is_limited_per_ip_when_asked() {
    let app = TestApp::with_limits(Limits {
        sign_ins_per_ip: burst(1),
        limit_loopback: true,
        ..Limits::without_rate_limits()
    });
    app.request_from("127.0.0.1", sign_in_request("Ada"))
        .await
        .expect(200);
    expect_rate_limited(app.request_from("127.0.0.1", sign_in_request("Ada")).await);
    // An IPv4 client of a dual-stack listener is the same client.
    expect_rate_limited(
        app.request_from("::ffff:127.0.0.1", sign_in_request("Ada"))
            .await,
    );
}

#[tokio::test]
async fn default_limits_allow_a_burst_of_concurrent_sends() {
    // The node suites send 30 messages at once per user, and retry each.
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let room = app.group(&ada, &[]).await;
    let sends = (0..60).map(|i| {
        let (app, ada, room) = (&app, &ada, &room);
        async move { app.send(room, ada, &format!("c-{}", i % 30), "hi").await }
    });
    for reply in one_after_another(sends).await {
        assert!(reply.status.is_success(), "{:#}", reply.body);
    }
}

/// Back to back: the limiter sees them as one burst either way.
async fn one_after_another<F: std::future::Future<Output = Reply>>(
    futures: impl Iterator<Item = F>,
) -> Vec<Reply> {
    let mut replies = Vec::new();
    for future in futures {
        replies.push(future.await);
    }
    replies
}
