use axum::http::Method;
use serde_json::{json, Value};

use domvia_realtime::protocol::{
    parse_presence_channel_data, verify_channel_auth, verify_user_auth,
};

use crate::harness::*;

const FORM: &str = "application/x-www-form-urlencoded";

fn form(socket_id: &str, channel_name: &str) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("socket_id", socket_id)
        .append_pair("channel_name", channel_name)
        .finish()
        .into_bytes()
}

#[tokio::test]
async fn members_get_signatures_the_broker_accepts() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let room = app.group(&ada, &[&bob]).await;
    let private = format!("private-chat.room.{room}");
    let presence = format!("presence-chat.room.{room}");

    // Form body, as pusher-js sends it.
    let reply = app
        .raw(
            Method::POST,
            "/realtime/auth",
            Some(&bob.token),
            FORM,
            Some(form("123.456", &private)),
            &[],
        )
        .await
        .expect(200);
    let object = reply.body.as_object().unwrap();
    assert_eq!(object.keys().collect::<Vec<_>>(), ["auth"]);
    let auth = str_at(&reply.body, "/auth");
    assert!(auth.starts_with(&format!("{KEY}:")));
    assert_eq!(
        verify_channel_auth(KEY, SECRET, "123.456", &private, &auth, None),
        Ok(())
    );
    assert!(verify_channel_auth(KEY, SECRET, "123.457", &private, &auth, None).is_err());

    // JSON body, presence: the server's user id and name.
    let reply = app
        .post(
            "/realtime/auth",
            &bob,
            json!({ "socket_id": "9.8", "channel_name": presence }),
        )
        .await
        .expect(200);
    let mut keys: Vec<_> = reply.body.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["auth", "channel_data"]);
    let auth = str_at(&reply.body, "/auth");
    let channel_data = str_at(&reply.body, "/channel_data");
    assert_eq!(
        verify_channel_auth(KEY, SECRET, "9.8", &presence, &auth, Some(&channel_data)),
        Ok(())
    );
    let member = parse_presence_channel_data(&channel_data).unwrap();
    assert_eq!(member.user_id, bob.id);
    assert_eq!(
        member.user_info,
        Some(json!({ "name": "Bob" })).map(Into::into)
    );

    // Cookie sessions work too.
    let cookie = format!("domvia_session={}", ada.token);
    app.raw(
        Method::POST,
        "/realtime/auth",
        None,
        FORM,
        Some(form("1.1", &private)),
        &[("cookie", &cookie)],
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn checks_run_in_order() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let eve = app.sign_in("Eve").await;
    let room = app.group(&ada, &[]).await;
    let private = format!("private-chat.room.{room}");

    // 1. Not signed in: 401, whatever the body.
    for body in [
        form("1.1", &private),
        form("bad", "public"),
        b"%%%".to_vec(),
    ] {
        app.raw(Method::POST, "/realtime/auth", None, FORM, Some(body), &[])
            .await
            .expect_error(401, "not_signed_in");
    }
    app.raw(
        Method::POST,
        "/realtime/auth",
        Some("forged.1.00"),
        FORM,
        Some(form("1.1", &private)),
        &[],
    )
    .await
    .expect_error(401, "not_signed_in");
    // 2. A bad socket id: 400, before the channel is looked at.
    for socket_id in ["", "1", "1.", "a.b", "1.2.3", " 1.2"] {
        app.raw(
            Method::POST,
            "/realtime/auth",
            Some(&eve.token),
            FORM,
            Some(form(socket_id, "public")),
            &[],
        )
        .await
        .expect_error(400, "invalid_socket_id");
    }
    app.post(
        "/realtime/auth",
        &ada,
        json!({ "socket_id": 1.1, "channel_name": private }),
    )
    .await
    .expect_error(400, "invalid_socket_id");
    app.post("/realtime/auth", &ada, json!({ "channel_name": private }))
        .await
        .expect_error(400, "invalid_socket_id");
    // 3. Not a chat room channel: 403.
    for channel in [
        "public-room".to_owned(),
        format!("chat.room.{room}"),
        "private-foo".to_owned(),
        format!("private-encrypted-chat.room.{room}"),
        format!("private-chat.rooms.{room}"),
        "private-chat.room.".to_owned(),
        format!("private-chat.room.{room} x"),
        "presence-lobby".to_owned(),
    ] {
        app.raw(
            Method::POST,
            "/realtime/auth",
            Some(&ada.token),
            FORM,
            Some(form("1.1", &channel)),
            &[],
        )
        .await
        .expect_error(403, "forbidden");
    }
    app.post("/realtime/auth", &ada, json!({ "socket_id": "1.1" }))
        .await
        .expect_error(403, "forbidden");
    app.post(
        "/realtime/auth",
        &ada,
        json!({ "socket_id": "1.1", "channel_name": ["x"] }),
    )
    .await
    .expect_error(403, "forbidden");
    // 4. An unknown room and a room of others: the very same 403.
    let unknown = app
        .raw(
            Method::POST,
            "/realtime/auth",
            Some(&eve.token),
            FORM,
            Some(form("1.1", "private-chat.room.r_0000")),
            &[],
        )
        .await
        .expect_error(403, "forbidden");
    let others = app
        .raw(
            Method::POST,
            "/realtime/auth",
            Some(&eve.token),
            FORM,
            Some(form("1.1", &private)),
            &[],
        )
        .await
        .expect_error(403, "forbidden");
    assert_eq!(unknown.body, others.body);
    // Malformed bodies are 400 once signed in.
    app.raw(
        Method::POST,
        "/realtime/auth",
        Some(&ada.token),
        "application/json",
        Some(b"[]".to_vec()),
        &[],
    )
    .await
    .expect_error(400, "invalid_body");
}

#[tokio::test]
async fn user_auth_signs_the_server_identity() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let reply = app
        .raw(
            Method::POST,
            "/realtime/user-auth",
            Some(&ada.token),
            FORM,
            Some(b"socket_id=55.66".to_vec()),
            &[],
        )
        .await
        .expect(200);
    let auth = str_at(&reply.body, "/auth");
    let user_data = str_at(&reply.body, "/user_data");
    assert_eq!(
        verify_user_auth(KEY, SECRET, "55.66", &auth, &user_data),
        Ok(())
    );
    let user_data: Value = serde_json::from_str(&user_data).unwrap();
    assert_eq!(
        user_data,
        json!({ "id": ada.id, "user_info": { "name": "Ada" } })
    );
    app.post(
        "/realtime/user-auth",
        &ada,
        json!({ "socket_id": "x", "id": "someone" }),
    )
    .await
    .expect_error(400, "invalid_socket_id");
    app.call(
        Method::POST,
        "/realtime/user-auth",
        None,
        Some(json!({ "socket_id": "1.1" })),
    )
    .await
    .expect_error(401, "not_signed_in");
}
