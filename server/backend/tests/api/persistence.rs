use axum::http::Method;
use domvia_backend::Backend;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn everything_survives_close_and_reopen() {
    let db = TempDb::new();
    let open = || {
        let backend = Backend::open(config(&db.path, None)).unwrap();
        TestApp {
            router: backend.router(),
            backend,
            db: TempDb::new(), // a dummy: the real file belongs to this test
        }
    };
    let (ada, bob, room, direct) = {
        let app = open();
        let ada = app.sign_in("Ada").await;
        let bob = app.sign_in("Bob").await;
        let room = app.group(&ada, &[&bob]).await;
        let direct = app
            .post(
                "/api/rooms",
                &ada,
                json!({ "kind": "direct", "member_ids": [bob.id] }),
            )
            .await
            .expect(201);
        for n in 1..=20 {
            app.send(
                &room,
                if n % 2 == 0 { &ada } else { &bob },
                &format!("c{n}"),
                &format!("text {n}"),
            )
            .await
            .expect(201);
        }
        app.post(
            &format!("/api/rooms/{room}/read"),
            &bob,
            json!({ "seq": 7 }),
        )
        .await
        .expect(200);
        app.call(
            Method::PUT,
            "/api/devices/ada-laptop",
            Some(&ada.token),
            Some(json!({ "record": { "k": "v" } })),
        )
        .await
        .expect(201);
        app.post(
            &format!("/api/rooms/{room}/epochs"),
            &ada,
            json!({ "epoch": 1, "shares": [{ "device_id": "ada-laptop", "share": { "s": 1 } }] }),
        )
        .await
        .expect(201);
        app.backend.close().unwrap();
        // Checkpointed: the WAL is empty, so the main file alone has everything.
        let wal = db.files()[1].clone();
        assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
        (ada, bob, room, str_at(&direct.body, "/room_id"))
    };

    let app = open();
    // Sessions are stateless: the old tokens still work.
    let me = app.get("/api/session", &ada).await.expect(200);
    assert_eq!(me.body["user"]["id"], ada.id.as_str());
    assert_eq!(app.sign_in("Bob").await.id, bob.id);
    let page = app
        .get(&format!("/api/rooms/{room}/messages?limit=100"), &bob)
        .await
        .expect(200);
    let messages = page.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 20);
    assert_eq!(messages[19]["text"], "text 20");
    let view = app
        .get(&format!("/api/rooms/{room}"), &bob)
        .await
        .expect(200);
    assert_eq!(view.body["last_read_seq"], 7);
    assert_eq!(view.body["unread_count"], 7); // Ada's 8, 10, ..., 20
    let again = app
        .post(
            "/api/rooms",
            &bob,
            json!({ "kind": "direct", "member_ids": [ada.id] }),
        )
        .await
        .expect(200);
    assert_eq!(str_at(&again.body, "/room_id"), direct);
    let epoch = app
        .get(&format!("/api/rooms/{room}/epoch"), &ada)
        .await
        .expect(200);
    assert_eq!(epoch.body, json!({ "epoch": 1 }));
    let share = app
        .get(
            &format!("/api/rooms/{room}/epochs/1/shares?device_id=ada-laptop"),
            &ada,
        )
        .await
        .expect(200);
    assert_eq!(share.body["share"], json!({ "s": 1 }));
    // Numbering continues where it stopped; an old client id is still known.
    let next = app
        .send(&room, &ada, "c21", "after restart")
        .await
        .expect(201);
    assert_eq!(next.body["seq"], 21);
    app.send(&room, &ada, "c2", "text 2").await.expect(200);
    drop(app);
}

#[test]
fn open_rejects_bad_config() {
    let db = TempDb::new();
    let mut short = config(&db.path, None);
    short.session_secret = b"short".to_vec();
    assert!(Backend::open(short).is_err());
    let https = config(&db.path, Some("https://broker.example".into()));
    assert!(Backend::open(https).is_err());
    let mut keyless = config(&db.path, None);
    keyless.app.secret.clear();
    assert!(Backend::open(keyless).is_err());
    let memory = config(std::path::Path::new(":memory:"), None);
    let backend = Backend::open(memory).unwrap();
    backend.close().unwrap();
}
