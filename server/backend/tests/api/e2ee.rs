use std::sync::Arc;

use axum::http::Method;
use serde_json::{json, Value};

use crate::harness::*;

async fn put_device(app: &TestApp, who: &Who, device_id: &str, record: Value) -> Reply {
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
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn client_ids(app: &TestApp, room: &str, who: &Who) -> Vec<String> {
    let page = app
        .get(&format!("/api/rooms/{room}/messages"), who)
        .await
        .expect(200);
    page.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["client_id"].as_str().unwrap().to_owned())
        .collect()
}

fn share(device_id: &str) -> Value {
    json!({ "device_id": device_id, "share": { "wrapped": format!("for {device_id}") } })
}

#[tokio::test]
async fn devices_are_owned_and_visible_to_room_mates() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let eve = app.sign_in("Eve").await;

    let created = put_device(&app, &ada, "ada-1", json!({ "x25519": "AAAA" }))
        .await
        .expect(201);
    assert_eq!(created.body["user_id"], ada.id.as_str());
    assert_eq!(created.body["record"], json!({ "x25519": "AAAA" }));
    let updated = put_device(&app, &ada, "ada-1", json!({ "x25519": "BBBB" }))
        .await
        .expect(200);
    assert_eq!(updated.body["record"], json!({ "x25519": "BBBB" }));
    put_device(&app, &bob, "ada-1", json!({}))
        .await
        .expect_error(403, "device_not_owned");
    put_device(&app, &bob, "bob-1", json!({})).await.expect(201);
    put_device(&app, &bob, "bob-2", json!({})).await.expect(201);
    put_device(&app, &eve, "eve-1", json!({})).await.expect(201);

    for bad in ["a%20b", "a.b", &"x".repeat(65)] {
        put_device(&app, &ada, bad, json!({}))
            .await
            .expect_error(400, "invalid_device_id");
    }
    put_device(&app, &ada, "ada-2", json!([1]))
        .await
        .expect_error(400, "invalid_record");
    app.call(
        Method::PUT,
        "/api/devices/ada-2",
        Some(&ada.token),
        Some(json!({})),
    )
    .await
    .expect_error(400, "invalid_record");
    let overhead = json!({ "k": "" }).to_string().len();
    put_device(
        &app,
        &ada,
        "ada-2",
        json!({ "k": "x".repeat(4096 - overhead) }),
    )
    .await
    .expect(201);
    put_device(
        &app,
        &ada,
        "ada-3",
        json!({ "k": "x".repeat(4097 - overhead) }),
    )
    .await
    .expect_error(413, "record_too_large");

    // Own devices, always.
    let mine = app
        .get(&format!("/api/users/{}/devices", ada.id), &ada)
        .await
        .expect(200);
    assert_eq!(device_ids(&mine), ["ada-1", "ada-2"]);
    // Another user's only after sharing a room.
    app.get(&format!("/api/users/{}/devices", ada.id), &bob)
        .await
        .expect_error(403, "forbidden");
    app.get("/api/users/u_nobody/devices", &bob)
        .await
        .expect_error(403, "forbidden");
    let room = app.encrypted_group(&ada, &[&bob]).await;
    let seen = app
        .get(&format!("/api/users/{}/devices", ada.id), &bob)
        .await
        .expect(200);
    assert_eq!(device_ids(&seen), ["ada-1", "ada-2"]);
    assert_eq!(seen.body[0]["record"], json!({ "x25519": "BBBB" }));
    assert!(seen.body[0]["updated_at"].as_i64().is_some());
    app.get(&format!("/api/users/{}/devices", ada.id), &eve)
        .await
        .expect_error(403, "forbidden");

    let all = app
        .get(&format!("/api/rooms/{room}/devices"), &bob)
        .await
        .expect(200);
    let mut ids = device_ids(&all);
    ids.sort();
    assert_eq!(ids, ["ada-1", "ada-2", "bob-1", "bob-2"]);
}

#[tokio::test]
async fn epochs_are_compare_and_set() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let carol = app.sign_in("Carol").await;
    for (who, device) in [
        (&ada, "ada-1"),
        (&bob, "bob-1"),
        (&bob, "bob-2"),
        (&carol, "carol-1"),
    ] {
        put_device(&app, who, device, json!({})).await.expect(201);
    }
    let room = app.encrypted_group(&ada, &[&bob]).await;
    let epochs = format!("/api/rooms/{room}/epochs");
    let epoch_uri = format!("/api/rooms/{room}/epoch");

    assert_eq!(
        app.get(&epoch_uri, &bob).await.expect(200).body,
        json!({ "epoch": 0 })
    );
    let full = json!([share("ada-1"), share("bob-1"), share("bob-2")]);
    let conflict = app
        .post(&epochs, &ada, json!({ "epoch": 2, "shares": full }))
        .await
        .expect_error(409, "epoch_conflict");
    assert_eq!(conflict.body["error"]["current_epoch"], 0);
    let incomplete = app
        .post(
            &epochs,
            &ada,
            json!({ "epoch": 1, "shares": [share("ada-1"), share("bob-2")] }),
        )
        .await
        .expect_error(409, "shares_incomplete");
    assert_eq!(
        incomplete.body["error"]["missing_device_ids"],
        json!(["bob-1"])
    );
    assert_eq!(incomplete.body["error"]["unexpected_device_ids"], json!([]));
    let extra = app
        .post(
            &epochs,
            &ada,
            json!({ "epoch": 1, "shares": [share("ada-1"), share("bob-1"), share("bob-2"), share("carol-1")] }),
        )
        .await
        .expect_error(409, "shares_incomplete");
    assert_eq!(
        extra.body["error"]["unexpected_device_ids"],
        json!(["carol-1"])
    );
    for (body, status, code) in [
        (json!({ "epoch": 0, "shares": [] }), 400, "invalid_epoch"),
        (json!({ "epoch": "1", "shares": [] }), 400, "invalid_epoch"),
        (json!({ "shares": [] }), 400, "invalid_epoch"),
        (json!({ "epoch": 1 }), 400, "invalid_shares"),
        (
            json!({ "epoch": 1, "shares": [share("ada-1"), share("ada-1")] }),
            400,
            "invalid_shares",
        ),
        (
            json!({ "epoch": 1, "shares": [{ "device_id": "ada-1", "share": "x" }] }),
            400,
            "invalid_shares",
        ),
        (
            json!({ "epoch": 1, "shares": [{ "device_id": "a b", "share": {} }] }),
            400,
            "invalid_device_id",
        ),
        (
            json!({ "epoch": 1, "shares": [{ "device_id": "ada-1", "share": { "k": "x".repeat(5000) } }] }),
            413,
            "share_too_large",
        ),
    ] {
        app.post(&epochs, &ada, body)
            .await
            .expect_error(status, code);
    }
    assert_eq!(
        app.get(&epoch_uri, &bob).await.expect(200).body,
        json!({ "epoch": 0 })
    );

    let created = app
        .post(&epochs, &ada, json!({ "epoch": 1, "shares": full }))
        .await
        .expect(201);
    assert_eq!(created.body["epoch"], 1);
    assert_eq!(created.body["created_by"], ada.id.as_str());
    assert_eq!(
        app.get(&epoch_uri, &bob).await.expect(200).body,
        json!({ "epoch": 1 })
    );
    app.post(&epochs, &bob, json!({ "epoch": 1, "shares": full }))
        .await
        .expect_error(409, "epoch_conflict");

    // Shares: own device only, members only.
    let mine = app
        .get(&format!("{epochs}/1/shares?device_id=bob-2"), &bob)
        .await
        .expect(200);
    assert_eq!(
        mine.body,
        json!({ "room_id": room, "epoch": 1, "device_id": "bob-2", "share": { "wrapped": "for bob-2" } })
    );
    app.get(&format!("{epochs}/1/shares?device_id=bob-2"), &ada)
        .await
        .expect_error(403, "device_not_owned");
    app.get(&format!("{epochs}/1/shares?device_id=nope"), &ada)
        .await
        .expect_error(403, "device_not_owned");
    app.get(&format!("{epochs}/2/shares?device_id=ada-1"), &ada)
        .await
        .expect_error(404, "share_not_found");
    app.get(&format!("{epochs}/x/shares?device_id=ada-1"), &ada)
        .await
        .expect_error(400, "invalid_epoch");
    app.get(&format!("{epochs}/1/shares"), &ada)
        .await
        .expect_error(400, "invalid_device_id");
    app.get(&format!("{epochs}/1/shares?device_id=carol-1"), &carol)
        .await
        .expect_error(403, "not_a_member");

    // Membership changes move the required set; removal keeps history.
    app.send_sealed(&room, &bob, "before-removal", json!({ "epoch": 1 }))
        .await
        .expect(201);
    app.post(
        &format!("/api/rooms/{room}/members"),
        &ada,
        json!({ "user_id": carol.id }),
    )
    .await
    .expect(201);
    let stale = app
        .post(&epochs, &ada, json!({ "epoch": 2, "shares": full }))
        .await
        .expect_error(409, "shares_incomplete");
    assert_eq!(
        stale.body["error"]["missing_device_ids"],
        json!(["carol-1"])
    );
    app.call(
        Method::DELETE,
        &format!("/api/rooms/{room}/members/{}", bob.id),
        Some(&ada.token),
        None,
    )
    .await
    .expect(200);
    app.post(
        &epochs,
        &ada,
        json!({ "epoch": 2, "shares": [share("ada-1"), share("carol-1")] }),
    )
    .await
    .expect(201);
    let history = app
        .get(&format!("/api/rooms/{room}/messages"), &carol)
        .await
        .expect(200);
    assert_eq!(history.body["messages"][0]["client_id"], "before-removal");
    let old_share = app
        .get(&format!("{epochs}/1/shares?device_id=ada-1"), &ada)
        .await
        .expect(200);
    assert_eq!(old_share.body["epoch"], 1);
    app.get(&format!("{epochs}/1/shares?device_id=bob-1"), &bob)
        .await
        .expect_error(403, "not_a_member");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_epoch_proposals_have_one_winner() {
    let app = Arc::new(TestApp::new());
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    put_device(&app, &ada, "ada-1", json!({})).await.expect(201);
    let room = app.encrypted_group(&ada, &[&bob]).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let app = app.clone();
        let who = if i % 2 == 0 { ada.clone() } else { bob.clone() };
        let uri = format!("/api/rooms/{room}/epochs");
        tasks.push(tokio::spawn(async move {
            app.post(
                &uri,
                &who,
                json!({ "epoch": 1, "shares": [share("ada-1")] }),
            )
            .await
            .status
            .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
}

#[tokio::test]
async fn ciphertext_needs_the_current_epoch_for_the_current_member_devices() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let carol = app.sign_in("Carol").await;
    for (who, device) in [(&ada, "ada-1"), (&bob, "bob-1"), (&carol, "carol-1")] {
        put_device(&app, who, device, json!({ "k": device }))
            .await
            .expect(201);
    }
    let room = app.encrypted_group(&ada, &[&bob, &carol]).await;
    let stale = |reply: Reply, current: i64, needs_new: bool| {
        let reply = reply.expect_error(409, "epoch_stale");
        assert_eq!(reply.body["error"]["current_epoch"], current);
        assert_eq!(reply.body["error"]["needs_new_epoch"], needs_new);
    };
    // No epoch yet: no ciphertext at all; and never plaintext (an encrypted room).
    stale(
        app.send_sealed(&room, &ada, "e0", json!({ "epoch": 0 }))
            .await,
        0,
        true,
    );
    app.send(&room, &ada, "t1", "plain")
        .await
        .expect_error(400, "encryption_required");

    app.create_epoch(&room, &ada, 1).await.expect(201);
    app.send_sealed(&room, &ada, "e1", json!({ "epoch": 1, "c": "x" }))
        .await
        .expect(201);
    // The envelope's epoch must be the current one, as a plain integer.
    for claimed in [json!(2), json!(0), json!("1"), json!(1.0), Value::Null] {
        stale(
            app.send_sealed(&room, &ada, "e-bad", json!({ "epoch": claimed }))
                .await,
            1,
            false,
        );
    }
    stale(
        app.send_sealed(&room, &ada, "e-none", json!({ "c": "x" }))
            .await,
        1,
        false,
    );

    // Carol is removed: epoch 1 no longer covers the member devices.
    app.call(
        Method::DELETE,
        &format!("/api/rooms/{room}/members/{}", carol.id),
        Some(&ada.token),
        None,
    )
    .await
    .expect(200);
    stale(
        app.send_sealed(&room, &bob, "e2", json!({ "epoch": 1, "c": "y" }))
            .await,
        1,
        true,
    );
    // The idempotent replay of a stored message still answers 200 (checked first).
    let replay = app
        .send_sealed(&room, &ada, "e1", json!({ "epoch": 1, "c": "x" }))
        .await
        .expect(200);
    assert_eq!(replay.body["client_id"], "e1");
    app.send_sealed(&room, &ada, "e1", json!({ "epoch": 1, "c": "other" }))
        .await
        .expect_error(409, "client_id_conflict");
    app.send(&room, &bob, "t2", "never in clear")
        .await
        .expect_error(400, "encryption_required");

    // A fresh epoch for exactly the remaining devices: the same client_id
    // sealed anew is accepted.
    app.create_epoch(&room, &ada, 2).await.expect(201);
    stale(
        app.send_sealed(&room, &bob, "e2", json!({ "epoch": 1, "c": "y" }))
            .await,
        2,
        false,
    );
    app.send_sealed(&room, &bob, "e2", json!({ "epoch": 2, "c": "y2" }))
        .await
        .expect(201);

    // Adding a member makes the epoch stale, even one with no devices yet.
    let dee = app.sign_in("Dee").await;
    app.post(
        &format!("/api/rooms/{room}/members"),
        &ada,
        json!({ "user_id": dee.id }),
    )
    .await
    .expect(201);
    stale(
        app.send_sealed(&room, &ada, "e3", json!({ "epoch": 2 }))
            .await,
        2,
        true,
    );
    app.create_epoch(&room, &ada, 3).await.expect(201);
    app.send_sealed(&room, &ada, "e3", json!({ "epoch": 3 }))
        .await
        .expect(201);

    // A member's new device, or a device record replaced with other keys,
    // too; registering the same record again is no change.
    put_device(&app, &bob, "bob-1", json!({ "k": "bob-1" }))
        .await
        .expect(200);
    app.send_sealed(&room, &ada, "e4", json!({ "epoch": 3 }))
        .await
        .expect(201);
    put_device(&app, &dee, "dee-1", json!({ "k": "dee-1" }))
        .await
        .expect(201);
    stale(
        app.send_sealed(&room, &ada, "e5", json!({ "epoch": 3 }))
            .await,
        3,
        true,
    );
    app.create_epoch(&room, &ada, 4).await.expect(201);
    app.send_sealed(&room, &ada, "e5", json!({ "epoch": 4 }))
        .await
        .expect(201);
    put_device(&app, &bob, "bob-1", json!({ "k": "bob-1, new keys" }))
        .await
        .expect(200);
    stale(
        app.send_sealed(&room, &ada, "e6", json!({ "epoch": 4 }))
            .await,
        4,
        true,
    );
    // A device change of a non-member touches no room of theirs here.
    app.create_epoch(&room, &ada, 5).await.expect(201);
    put_device(&app, &carol, "carol-2", json!({}))
        .await
        .expect(201);
    app.send_sealed(&room, &ada, "e6", json!({ "epoch": 5 }))
        .await
        .expect(201);

    // Nothing refused was stored.
    assert_eq!(
        client_ids(&app, &room, &bob).await,
        ["e1", "e2", "e3", "e4", "e5", "e6"]
    );
}

#[tokio::test]
async fn epochs_record_the_member_devices_they_cover() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let carol = app.sign_in("Carol").await;
    let eve = app.sign_in("Eve").await;
    for (who, device) in [
        (&ada, "ada-1"),
        (&bob, "bob-2"),
        (&bob, "bob-1"),
        (&carol, "carol-1"),
        (&eve, "eve-1"),
    ] {
        put_device(&app, who, device, json!({ "v": 1, "d": device }))
            .await
            .expect(201);
    }
    let room = app.encrypted_group(&ada, &[&bob]).await;
    let devices_of = |epoch: &str| format!("/api/rooms/{room}/epochs/{epoch}/devices");

    app.get(&devices_of("1"), &ada)
        .await
        .expect_error(404, "epoch_not_found");
    app.create_epoch(&room, &ada, 1).await.expect(201);
    let first = app.get(&devices_of("1"), &bob).await.expect(200);
    let mut ids = device_ids(&first);
    ids.sort_unstable();
    assert_eq!(ids, ["ada-1", "bob-1", "bob-2"]);
    // Exactly the Device objects of that moment.
    let current = app
        .get(&format!("/api/rooms/{room}/devices"), &bob)
        .await
        .expect(200);
    assert_eq!(first.body, current.body);

    // The snapshot never changes: a replaced record, a new member, a removal.
    put_device(&app, &bob, "bob-1", json!({ "v": 2 }))
        .await
        .expect(200);
    app.post(
        &format!("/api/rooms/{room}/members"),
        &ada,
        json!({ "user_id": carol.id }),
    )
    .await
    .expect(201);
    app.create_epoch(&room, &carol, 2).await.expect(201);
    app.call(
        Method::DELETE,
        &format!("/api/rooms/{room}/members/{}", ada.id),
        Some(&ada.token),
        None,
    )
    .await
    .expect(200);
    let again = app.get(&devices_of("1"), &carol).await.expect(200);
    assert_eq!(again.body, first.body);
    let record_of = |reply: &Reply, device_id: &str| {
        reply
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device_id"] == device_id)
            .map(|d| d["record"].clone())
    };
    assert_eq!(
        record_of(&again, "bob-1"),
        Some(json!({ "v": 1, "d": "bob-1" }))
    );
    let second = app.get(&devices_of("2"), &bob).await.expect(200);
    let mut ids = device_ids(&second);
    ids.sort_unstable();
    assert_eq!(ids, ["ada-1", "bob-1", "bob-2", "carol-1"]);
    assert_eq!(record_of(&second, "bob-1"), Some(json!({ "v": 2 })));
    // By user id, then device id.
    let keys: Vec<(String, String)> = second
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (str_at(d, "/user_id"), str_at(d, "/device_id")))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);

    // Current members only; errors.
    app.get(&devices_of("1"), &ada)
        .await
        .expect_error(403, "not_a_member");
    app.get(&devices_of("1"), &eve)
        .await
        .expect_error(403, "not_a_member");
    app.get(
        "/api/rooms/r_0123456789abcdef0123456789abcdef/epochs/1/devices",
        &bob,
    )
    .await
    .expect_error(404, "room_not_found");
    for bad in ["x", "0", "-1", "1.5"] {
        app.get(&devices_of(bad), &bob)
            .await
            .expect_error(400, "invalid_epoch");
    }
    app.get(&devices_of("3"), &bob)
        .await
        .expect_error(404, "epoch_not_found");
}
