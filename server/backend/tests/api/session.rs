use axum::http::Method;
use domvia_backend::Backend;
use serde_json::{json, Value};

use crate::harness::*;

#[tokio::test]
async fn sign_in_token_works_as_cookie_and_bearer() {
    let app = TestApp::new();
    let reply = app
        .call(
            Method::POST,
            "/api/session",
            None,
            Some(json!({ "name": "  Ada  " })),
        )
        .await
        .expect(200);
    let token = str_at(&reply.body, "/token");
    let id = str_at(&reply.body, "/user/id");
    assert_eq!(str_at(&reply.body, "/user/name"), "Ada");
    let cookie = reply
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        cookie.starts_with(&format!("domvia_session={token};")),
        "{cookie}"
    );
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }

    let by_bearer = app
        .call(Method::GET, "/api/session", Some(&token), None)
        .await
        .expect(200);
    assert_eq!(
        by_bearer.body,
        json!({ "user": { "id": id, "name": "Ada" } })
    );
    let cookie_header = format!("other=1; domvia_session={token}");
    let by_cookie = app
        .raw(
            Method::GET,
            "/api/session",
            None,
            "",
            None,
            &[("cookie", &cookie_header)],
        )
        .await
        .expect(200);
    assert_eq!(by_cookie.body, by_bearer.body);

    // The same name is the same user; another name is another.
    let again = app.sign_in("Ada").await;
    assert_eq!(again.id, id);
    let other = app.sign_in("ada").await;
    assert_ne!(other.id, id);
}

#[tokio::test]
async fn forged_and_modified_tokens_are_401() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let (_, rest) = ada.token.split_once('.').unwrap();
    let (expires, tag) = rest.split_once('.').unwrap();
    let later = expires.parse::<u64>().unwrap() + 1;
    let mut flipped = tag.as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).unwrap();

    // A token for the same user of the same database, signed under another
    // session secret.
    let mut other_config = config(&app.db.path, None);
    other_config.session_secret = b"a different secret, 32 bytes!!!!".to_vec();
    let other = Backend::open(other_config).unwrap();
    let other_app = TestApp {
        router: other.router(),
        backend: other,
        db: TempDb::new(),
    };
    let foreign = other_app.sign_in("Ada").await;
    assert_eq!(foreign.id, ada.id);
    let foreign = foreign.token;

    for bad in [
        format!("{}.{expires}.{tag}", bob.id),
        format!("{}.{later}.{tag}", ada.id),
        format!("{}.{expires}.{flipped}", ada.id),
        format!("{}.{expires}", ada.id),
        foreign,
        "garbage".into(),
        "a.b.c".into(),
    ] {
        app.call(Method::GET, "/api/session", Some(&bad), None)
            .await
            .expect_error(401, "not_signed_in");
        let cookie = format!("domvia_session={bad}");
        app.raw(
            Method::GET,
            "/api/rooms",
            None,
            "",
            None,
            &[("cookie", &cookie)],
        )
        .await
        .expect_error(401, "not_signed_in");
    }
    app.call(Method::GET, "/api/session", None, None)
        .await
        .expect_error(401, "not_signed_in");
    app.raw(
        Method::GET,
        "/api/session",
        None,
        "",
        None,
        &[("authorization", "Basic YWRhOmFkYQ==")],
    )
    .await
    .expect_error(401, "not_signed_in");
}

#[tokio::test]
async fn a_body_user_id_never_changes_who_you_are() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let room = app
        .post(
            "/api/rooms",
            &ada,
            json!({ "kind": "group", "name": "R", "member_ids": [bob.id], "user_id": bob.id, "created_by": bob.id }),
        )
        .await
        .expect(201);
    assert_eq!(str_at(&room.body, "/created_by"), ada.id);
    let room_id = str_at(&room.body, "/room_id");
    let message = app
        .post(
            &format!("/api/rooms/{room_id}/messages"),
            &ada,
            json!({ "client_id": "c1", "text": "hi", "user_id": bob.id, "sender_id": bob.id }),
        )
        .await
        .expect(201);
    assert_eq!(str_at(&message.body, "/user_id"), ada.id);
    let read = app
        .post(
            &format!("/api/rooms/{room_id}/read"),
            &ada,
            json!({ "seq": 1, "user_id": bob.id }),
        )
        .await
        .expect(200);
    assert_eq!(read.body["last_read_seq"], 1);
    let bob_view = app
        .get(&format!("/api/rooms/{room_id}"), &bob)
        .await
        .expect(200);
    assert_eq!(bob_view.body["last_read_seq"], 0);
    assert_eq!(bob_view.body["unread_count"], 1);
    let auth = app
        .post(
            "/realtime/auth",
            &ada,
            json!({ "socket_id": "1.2", "channel_name": format!("presence-chat.room.{room_id}"), "user_id": bob.id, "user_info": {"name": "Bob"} }),
        )
        .await
        .expect(200);
    let channel_data: Value = serde_json::from_str(&str_at(&auth.body, "/channel_data")).unwrap();
    assert_eq!(
        channel_data,
        json!({ "user_id": ada.id, "user_info": { "name": "Ada" } })
    );
    let me = app
        .post("/api/session", &ada, json!({ "name": "Ada", "id": bob.id }))
        .await
        .expect(200);
    assert_eq!(str_at(&me.body, "/user/id"), ada.id);
}

#[tokio::test]
async fn names_are_validated() {
    let app = TestApp::new();
    for body in [
        json!({ "name": "" }),
        json!({ "name": "   " }),
        json!({ "name": "x".repeat(41) }),
        json!({ "name": "a\u{0}b" }),
        json!({ "name": 7 }),
        json!({}),
    ] {
        app.call(Method::POST, "/api/session", None, Some(body))
            .await
            .expect_error(400, "invalid_name");
    }
    app.call(
        Method::POST,
        "/api/session",
        None,
        Some(json!({ "name": "é".repeat(40) })),
    )
    .await
    .expect(200);
    app.call(Method::POST, "/api/session", None, Some(json!([1])))
        .await
        .expect_error(400, "invalid_body");
    app.raw(
        Method::POST,
        "/api/session",
        None,
        "application/json",
        Some(b"{".to_vec()),
        &[],
    )
    .await
    .expect_error(400, "invalid_body");
}

#[tokio::test]
async fn sign_out_clears_the_cookie() {
    let app = TestApp::new();
    let reply = app
        .call(Method::DELETE, "/api/session", None, None)
        .await
        .expect(204);
    let cookie = reply
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(cookie.starts_with("domvia_session=;"), "{cookie}");
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
}

#[tokio::test]
async fn users_are_found_by_name_prefix() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let _ = app.sign_in("Adam").await;
    let _ = app.sign_in("adele").await;
    let _ = app.sign_in("Bob").await;
    let _ = app.sign_in("a_b").await;
    let names = |reply: Reply| -> Vec<String> {
        reply.body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let found = names(app.get("/api/users?query=ad", &ada).await.expect(200));
    assert_eq!(found, ["Adam", "adele"]);
    let found = names(app.get("/api/users?query=a_", &ada).await.expect(200));
    assert_eq!(found, ["a_b"]);
    let found = names(app.get("/api/users?query=%25", &ada).await.expect(200));
    assert!(found.is_empty());
    let all = names(app.get("/api/users", &ada).await.expect(200));
    assert_eq!(all.len(), 4);
    app.call(Method::GET, "/api/users?query=a", None, None)
        .await
        .expect_error(401, "not_signed_in");
}

#[tokio::test]
async fn sign_out_revokes_every_token_of_the_user() {
    let app = TestApp::new();
    let laptop = app.sign_in("Ada").await;
    let phone = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    app.get("/api/session", &phone).await.expect(200);
    app.call(Method::DELETE, "/api/session", Some(&laptop.token), None)
        .await
        .expect(204);
    // Both of Ada's tokens, the one that signed out and the other device's.
    for token in [&laptop.token, &phone.token] {
        app.call(Method::GET, "/api/session", Some(token), None)
            .await
            .expect_error(401, "not_signed_in");
        app.call(
            Method::POST,
            "/realtime/auth",
            Some(token),
            Some(json!({"socket_id": "1.2", "channel_name": "private-chat.room.r"})),
        )
        .await
        .expect_error(401, "not_signed_in");
    }
    // Others are untouched, and Ada can sign in again.
    app.get("/api/session", &bob).await.expect(200);
    let again = app.sign_in("Ada").await;
    assert_eq!(again.id, laptop.id);
    app.get("/api/session", &again).await.expect(200);
}

#[tokio::test]
async fn look_alike_names_are_one_account() {
    let app = TestApp::new();
    let ada = app.sign_in("ada").await;
    // Invisible characters, compatibility forms and variation selectors do
    // not make another account.
    for look_alike in [
        "a\u{200b}da",
        "\u{feff}ada",
        "ad\u{200d}a\u{200c}",
        "ａｄａ",
        "a\u{fe0f}da",
        "a\u{2060}da\u{00ad}",
        "ad\u{e0041}a",
    ] {
        let who = app.sign_in(look_alike).await;
        assert_eq!(who.id, ada.id, "{look_alike:?}");
        assert_eq!(who.name, "ada", "{look_alike:?}");
    }
    // Nothing visible left: refused.
    for invisible in ["\u{200b}", "\u{200b}\u{feff}\u{200d}", " \u{2060} "] {
        app.call(
            Method::POST,
            "/api/session",
            None,
            Some(json!({ "name": invisible })),
        )
        .await
        .expect_error(400, "invalid_name");
    }
    // Searching finds the one account whatever the query's form.
    let bob = app.sign_in("Bob").await;
    let found = app
        .get("/api/users?query=%EF%BD%81%E2%80%8B", &bob)
        .await
        .expect(200);
    assert_eq!(
        found.body["users"],
        json!([{ "id": ada.id, "name": "ada" }])
    );

    // Room names are normalised the same way.
    let room = app
        .post(
            "/api/rooms",
            &ada,
            json!({ "kind": "group", "name": "Ｔｅａｍ\u{200b}", "member_ids": [] }),
        )
        .await
        .expect(201);
    assert_eq!(room.body["name"], "Team");
    app.post(
        "/api/rooms",
        &ada,
        json!({ "kind": "group", "name": "\u{200b}\u{fe0f}", "member_ids": [] }),
    )
    .await
    .expect_error(400, "invalid_room_name");
}
