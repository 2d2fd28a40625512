use axum::http::Method;
use serde_json::{json, Value};

use domvia_realtime::protocol::{build_chat_channel_name, chat_room_id};

use crate::harness::*;

#[tokio::test]
async fn direct_rooms_are_one_per_pair() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let carol = app.sign_in("Carol").await;
    let first = app
        .post(
            "/api/rooms",
            &ada,
            json!({ "kind": "direct", "member_ids": [bob.id] }),
        )
        .await
        .expect(201);
    let room_id = str_at(&first.body, "/room_id");
    assert_eq!(first.body["kind"], "direct");
    assert_eq!(first.body["name"], Value::Null);
    assert_eq!(
        str_at(&first.body, "/channel_name"),
        build_chat_channel_name(&room_id, false).unwrap()
    );
    assert_eq!(
        str_at(&first.body, "/presence_channel_name"),
        build_chat_channel_name(&room_id, true).unwrap()
    );
    assert_eq!(
        chat_room_id(&str_at(&first.body, "/channel_name")).map(|(id, _)| id.to_owned()),
        Some(room_id.clone())
    );
    let members: Vec<&str> = first.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(members.len(), 2);
    assert!(members.contains(&ada.id.as_str()) && members.contains(&bob.id.as_str()));

    let again = app
        .post(
            "/api/rooms",
            &ada,
            json!({ "kind": "direct", "member_ids": [bob.id] }),
        )
        .await
        .expect(200);
    assert_eq!(str_at(&again.body, "/room_id"), room_id);
    let reverse = app
        .post(
            "/api/rooms",
            &bob,
            json!({ "kind": "direct", "member_ids": [ada.id] }),
        )
        .await
        .expect(200);
    assert_eq!(str_at(&reverse.body, "/room_id"), room_id);
    let other = app
        .post(
            "/api/rooms",
            &ada,
            json!({ "kind": "direct", "member_ids": [carol.id] }),
        )
        .await
        .expect(201);
    assert_ne!(str_at(&other.body, "/room_id"), room_id);

    for (body, code) in [
        (
            json!({ "kind": "direct", "member_ids": [ada.id] }),
            "invalid_member_ids",
        ),
        (
            json!({ "kind": "direct", "member_ids": [] }),
            "invalid_member_ids",
        ),
        (
            json!({ "kind": "direct", "member_ids": [bob.id, carol.id] }),
            "invalid_member_ids",
        ),
        (
            json!({ "kind": "direct", "member_ids": "x" }),
            "invalid_member_ids",
        ),
        (json!({ "kind": "direct" }), "invalid_member_ids"),
        (
            json!({ "kind": "direct", "member_ids": ["u_nobody"] }),
            "unknown_user",
        ),
        (
            json!({ "kind": "channel", "member_ids": [] }),
            "invalid_kind",
        ),
        (json!({ "member_ids": [] }), "invalid_kind"),
        (
            json!({ "kind": "group", "member_ids": [] }),
            "invalid_room_name",
        ),
        (
            json!({ "kind": "group", "name": " ", "member_ids": [] }),
            "invalid_room_name",
        ),
        (
            json!({ "kind": "group", "name": "G", "member_ids": ["u_nobody"] }),
            "unknown_user",
        ),
        (
            json!({ "kind": "group", "name": "G", "member_ids": [1] }),
            "invalid_member_ids",
        ),
    ] {
        app.post("/api/rooms", &ada, body)
            .await
            .expect_error(400, code);
    }
    app.call(
        Method::POST,
        "/api/rooms",
        None,
        Some(json!({ "kind": "direct", "member_ids": [bob.id] })),
    )
    .await
    .expect_error(401, "not_signed_in");
}

#[tokio::test]
async fn group_membership_rules() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let carol = app.sign_in("Carol").await;
    let dan = app.sign_in("Dan").await;
    // The creator is always a member, listed once even if named.
    let created = app
        .post(
            "/api/rooms",
            &ada,
            json!({ "kind": "group", "name": " Team ", "member_ids": [bob.id, ada.id, bob.id] }),
        )
        .await
        .expect(201);
    assert_eq!(created.body["name"], "Team");
    assert_eq!(created.body["members"].as_array().unwrap().len(), 2);
    let room_id = str_at(&created.body, "/room_id");
    let room = format!("/api/rooms/{room_id}");

    app.get(&room, &carol)
        .await
        .expect_error(403, "not_a_member");
    app.get("/api/rooms/r_nonexistent", &carol)
        .await
        .expect_error(404, "room_not_found");
    app.get("/api/rooms/%FF%FE", &carol)
        .await
        .expect_error(400, "invalid_path");
    // Non-members cannot add anyone, including themselves.
    app.post(
        &format!("{room}/members"),
        &carol,
        json!({ "user_id": carol.id }),
    )
    .await
    .expect_error(403, "not_a_member");
    // Any member may add.
    let added = app
        .post(
            &format!("{room}/members"),
            &bob,
            json!({ "user_id": carol.id }),
        )
        .await
        .expect(201);
    assert_eq!(added.body["members"].as_array().unwrap().len(), 3);
    app.post(
        &format!("{room}/members"),
        &bob,
        json!({ "user_id": carol.id }),
    )
    .await
    .expect(200);
    app.post(
        &format!("{room}/members"),
        &bob,
        json!({ "user_id": "u_nobody" }),
    )
    .await
    .expect_error(400, "unknown_user");
    app.post(&format!("{room}/members"), &bob, json!({ "user_id": 5 }))
        .await
        .expect_error(400, "invalid_user_id");
    app.get(&room, &carol).await.expect(200);

    let delete = |who: &Who, user: &Who| {
        let uri = format!("{room}/members/{}", user.id);
        let token = who.token.clone();
        let app = &app;
        async move { app.call(Method::DELETE, &uri, Some(&token), None).await }
    };
    // Only the creator removes others.
    delete(&carol, &bob)
        .await
        .expect_error(403, "not_room_creator");
    delete(&dan, &carol).await.expect_error(403, "not_a_member");
    // Anyone may leave.
    let left = delete(&carol, &carol).await.expect(200);
    assert_eq!(
        left.body,
        json!({ "room_id": room_id, "user_id": carol.id, "removed": true })
    );
    app.get(&room, &carol)
        .await
        .expect_error(403, "not_a_member");
    let removed = delete(&ada, &bob).await.expect(200);
    assert_eq!(removed.body["removed"], true);
    let again = delete(&ada, &bob).await.expect(200);
    assert_eq!(again.body["removed"], false);
    app.get(&room, &bob).await.expect_error(403, "not_a_member");
    let view = app.get(&room, &ada).await.expect(200);
    assert_eq!(view.body["members"].as_array().unwrap().len(), 1);
    // Re-adding works.
    app.post(
        &format!("{room}/members"),
        &ada,
        json!({ "user_id": bob.id }),
    )
    .await
    .expect(201);

    // Direct rooms never change members.
    let direct = app
        .post(
            "/api/rooms",
            &ada,
            json!({ "kind": "direct", "member_ids": [bob.id] }),
        )
        .await
        .expect(201);
    let direct_id = str_at(&direct.body, "/room_id");
    app.post(
        &format!("/api/rooms/{direct_id}/members"),
        &ada,
        json!({ "user_id": carol.id }),
    )
    .await
    .expect_error(403, "direct_room");
    app.call(
        Method::DELETE,
        &format!("/api/rooms/{direct_id}/members/{}", ada.id),
        Some(&ada.token),
        None,
    )
    .await
    .expect_error(403, "direct_room");
}

#[tokio::test]
async fn rooms_list_shows_members_last_message_and_unread() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let carol = app.sign_in("Carol").await;
    let quiet = app.group(&ada, &[&carol]).await;
    // Activity is compared in milliseconds.
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let busy = app.group(&ada, &[&bob]).await;
    app.send(&busy, &bob, "b1", "one").await.expect(201);
    app.send(&busy, &bob, "b2", "two").await.expect(201);
    app.send(&busy, &ada, "a1", "three").await.expect(201);

    let rooms = app.get("/api/rooms", &ada).await.expect(200).body["rooms"].clone();
    let rooms = rooms.as_array().unwrap();
    assert_eq!(rooms.len(), 2);
    assert_eq!(rooms[0]["room_id"], busy.as_str());
    assert_eq!(rooms[1]["room_id"], quiet.as_str());
    assert_eq!(rooms[0]["unread_count"], 2);
    assert_eq!(rooms[0]["last_read_seq"], 0);
    assert_eq!(rooms[0]["latest_seq"], 3);
    assert_eq!(rooms[0]["last_message"]["text"], "three");
    assert_eq!(rooms[1]["last_message"], Value::Null);
    assert_eq!(rooms[0]["members"].as_array().unwrap().len(), 2);

    let bob_rooms = app.get("/api/rooms", &bob).await.expect(200).body["rooms"].clone();
    assert_eq!(bob_rooms.as_array().unwrap().len(), 1);
    assert_eq!(bob_rooms[0]["unread_count"], 1);
    let dan = app.sign_in("Dan").await;
    let dan_rooms = app.get("/api/rooms", &dan).await.expect(200);
    assert_eq!(dan_rooms.body, json!({ "rooms": [] }));
}

#[tokio::test]
async fn non_members_get_403_everywhere() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let eve = app.sign_in("Eve").await;
    let room = app.group(&ada, &[]).await;
    app.send(&room, &ada, "c1", "secret plans")
        .await
        .expect(201);
    let base = format!("/api/rooms/{room}");

    app.get(&base, &eve).await.expect_error(403, "not_a_member");
    app.get(&format!("{base}/messages"), &eve)
        .await
        .expect_error(403, "not_a_member");
    app.get(&format!("{base}/messages?before=5"), &eve)
        .await
        .expect_error(403, "not_a_member");
    app.send(&room, &eve, "c1", "hi")
        .await
        .expect_error(403, "not_a_member");
    app.post(&format!("{base}/read"), &eve, json!({ "seq": 1 }))
        .await
        .expect_error(403, "not_a_member");
    app.get(&format!("{base}/devices"), &eve)
        .await
        .expect_error(403, "not_a_member");
    app.get(&format!("{base}/epoch"), &eve)
        .await
        .expect_error(403, "not_a_member");
    app.post(
        &format!("{base}/epochs"),
        &eve,
        json!({ "epoch": 1, "shares": [] }),
    )
    .await
    .expect_error(403, "not_a_member");
    app.call(
        Method::PUT,
        "/api/devices/eve-1",
        Some(&eve.token),
        Some(json!({ "record": {} })),
    )
    .await
    .expect(201);
    app.get(&format!("{base}/epochs/1/shares?device_id=eve-1"), &eve)
        .await
        .expect_error(403, "not_a_member");
    app.post(
        &format!("{base}/members"),
        &eve,
        json!({ "user_id": eve.id }),
    )
    .await
    .expect_error(403, "not_a_member");
    app.call(
        Method::DELETE,
        &format!("{base}/members/{}", ada.id),
        Some(&eve.token),
        None,
    )
    .await
    .expect_error(403, "not_a_member");
    for channel in [
        format!("private-chat.room.{room}"),
        format!("presence-chat.room.{room}"),
    ] {
        app.post(
            "/realtime/auth",
            &eve,
            json!({ "socket_id": "1.1", "channel_name": channel }),
        )
        .await
        .expect_error(403, "forbidden");
    }
}

#[tokio::test]
async fn a_room_is_encrypted_or_not_for_life() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let direct = |encrypted: Value| {
        app.post(
            "/api/rooms",
            &ada,
            json!({ "kind": "direct", "member_ids": [bob.id], "encrypted": encrypted }),
        )
    };
    // A pair has one plaintext and one encrypted direct room.
    let plain = direct(json!(false)).await.expect(201);
    assert_eq!(plain.body["encrypted"], false);
    let sealed = direct(json!(true)).await.expect(201);
    assert_eq!(sealed.body["encrypted"], true);
    assert_ne!(plain.body["room_id"], sealed.body["room_id"]);
    assert_eq!(
        direct(json!(true)).await.expect(200).body["room_id"],
        sealed.body["room_id"]
    );
    let from_bob = app
        .post(
            "/api/rooms",
            &bob,
            json!({ "kind": "direct", "member_ids": [ada.id] }),
        )
        .await
        .expect(200);
    assert_eq!(from_bob.body["room_id"], plain.body["room_id"]);
    for bad in [json!(1), json!("yes"), json!(null), json!([true])] {
        direct(bad).await.expect_error(400, "invalid_encrypted");
    }

    // Every view of a room says which it is.
    let sealed_id = str_at(&sealed.body, "/room_id");
    let shown = app
        .get(&format!("/api/rooms/{sealed_id}"), &bob)
        .await
        .expect(200);
    assert_eq!(shown.body["encrypted"], true);
    let listed = app.get("/api/rooms", &bob).await.expect(200);
    let flags: Vec<(String, Value)> = listed.body["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|room| (str_at(room, "/room_id"), room["encrypted"].clone()))
        .collect();
    assert_eq!(flags.len(), 2);
    assert!(flags.contains(&(sealed_id.clone(), json!(true))));
    assert!(flags.contains(&(str_at(&plain.body, "/room_id"), json!(false))));

    // A plaintext room has no epochs; the encrypted one refuses plaintext.
    let plain_id = str_at(&plain.body, "/room_id");
    app.post(
        &format!("/api/rooms/{plain_id}/epochs"),
        &ada,
        json!({ "epoch": 1, "shares": [] }),
    )
    .await
    .expect_error(400, "room_not_encrypted");
    app.send(&sealed_id, &ada, "c-1", "in clear")
        .await
        .expect_error(400, "encryption_required");
    app.send(&plain_id, &ada, "c-1", "in clear")
        .await
        .expect(201);
}
