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
    let (ada, bob, room, sealed, direct) = {
        let app = open();
        let ada = app.sign_in("Ada").await;
        let bob = app.sign_in("Bob").await;
        let room = app.group(&ada, &[&bob]).await;
        let sealed = app.encrypted_group(&ada, &[&bob]).await;
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
            &format!("/api/rooms/{sealed}/epochs"),
            &ada,
            json!({ "epoch": 1, "shares": [{ "device_id": "ada-laptop", "share": { "s": 1 } }] }),
        )
        .await
        .expect(201);
        app.backend.close().unwrap();
        // Checkpointed: the WAL is empty, so the main file alone has everything.
        let wal = db.files()[1].clone();
        assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
        (ada, bob, room, sealed, str_at(&direct.body, "/room_id"))
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
        .get(&format!("/api/rooms/{sealed}/epoch"), &ada)
        .await
        .expect(200);
    assert_eq!(epoch.body, json!({ "epoch": 1 }));
    let share = app
        .get(
            &format!("/api/rooms/{sealed}/epochs/1/shares?device_id=ada-laptop"),
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

/// The schema of version 1 (before each room's member-device version), as
/// an older backend wrote it.
const SCHEMA_V1: &str = "
CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL);
CREATE TABLE rooms (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('direct', 'group')), name TEXT,
    created_by TEXT NOT NULL REFERENCES users(id), created_at INTEGER NOT NULL, direct_key TEXT UNIQUE
);
CREATE TABLE room_members (
    room_id TEXT NOT NULL REFERENCES rooms(id), user_id TEXT NOT NULL REFERENCES users(id),
    joined_at INTEGER NOT NULL, last_read_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX room_members_by_user ON room_members(user_id, room_id);
CREATE TABLE messages (
    room_id TEXT NOT NULL REFERENCES rooms(id), seq INTEGER NOT NULL CHECK (seq >= 1),
    message_id TEXT NOT NULL UNIQUE, sender_id TEXT NOT NULL REFERENCES users(id),
    client_id TEXT NOT NULL, text TEXT, ciphertext TEXT, sent_at INTEGER NOT NULL,
    CHECK ((text IS NULL) <> (ciphertext IS NULL)),
    UNIQUE (room_id, seq), UNIQUE (room_id, sender_id, client_id)
);
CREATE TABLE devices (
    device_id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id),
    record TEXT NOT NULL, updated_at INTEGER NOT NULL
);
CREATE INDEX devices_by_user ON devices(user_id);
CREATE TABLE epochs (
    room_id TEXT NOT NULL REFERENCES rooms(id), epoch INTEGER NOT NULL CHECK (epoch >= 1),
    created_by TEXT NOT NULL REFERENCES users(id), created_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, epoch)
);
CREATE TABLE key_shares (
    room_id TEXT NOT NULL, epoch INTEGER NOT NULL, device_id TEXT NOT NULL, share TEXT NOT NULL,
    PRIMARY KEY (room_id, epoch, device_id),
    FOREIGN KEY (room_id, epoch) REFERENCES epochs(room_id, epoch)
);
PRAGMA user_version = 1;
";

#[tokio::test]
async fn a_version_1_database_is_migrated() {
    let db = TempDb::new();
    // A room with an encrypted message in epoch 1, written by the old schema.
    {
        let conn = rusqlite::Connection::open(&db.path).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.execute_batch(
            r#"INSERT INTO users VALUES ('u_a', 'Ada', 1);
               INSERT INTO rooms VALUES ('r_0123456789abcdef0123456789abcdef', 'group', 'Team', 'u_a', 1, NULL);
               INSERT INTO room_members VALUES ('r_0123456789abcdef0123456789abcdef', 'u_a', 1, 0);
               INSERT INTO devices VALUES ('ada-1', 'u_a', '{"k":1}', 1);
               INSERT INTO epochs VALUES ('r_0123456789abcdef0123456789abcdef', 1, 'u_a', 2);
               INSERT INTO key_shares VALUES ('r_0123456789abcdef0123456789abcdef', 1, 'ada-1', '{"s":1}');
               INSERT INTO messages VALUES ('r_0123456789abcdef0123456789abcdef', 1, 'm_1', 'u_a', 'c1', NULL, '{"epoch":1}', 3);"#,
        )
        .unwrap();
    }
    let backend = Backend::open(config(&db.path, None)).unwrap();
    let app = TestApp {
        router: backend.router(),
        backend,
        db: TempDb::new(), // a dummy: the real file belongs to this test
    };
    let version: i64 = rusqlite::Connection::open(&db.path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 6);

    let ada = app.sign_in("Ada").await;
    assert_eq!(ada.id, "u_a");
    let room = "r_0123456789abcdef0123456789abcdef";
    let page = app
        .get(&format!("/api/rooms/{room}/messages"), &ada)
        .await
        .expect(200);
    assert_eq!(
        page.body["messages"][0]["ciphertext"],
        json!({ "epoch": 1 })
    );
    // The old message's replay is still idempotent.
    app.send_sealed(room, &ada, "c1", json!({ "epoch": 1 }))
        .await
        .expect(200);
    // An epoch from version 1 is not known to cover the member devices: the
    // next encrypted send needs a new one.
    let stale = app
        .send_sealed(room, &ada, "c2", json!({ "epoch": 1 }))
        .await
        .expect_error(409, "epoch_stale");
    assert_eq!(stale.body["error"]["current_epoch"], 1);
    assert_eq!(stale.body["error"]["needs_new_epoch"], true);
    app.create_epoch(room, &ada, 2).await.expect(201);
    app.send_sealed(room, &ada, "c2", json!({ "epoch": 2 }))
        .await
        .expect(201);
    // The room had epochs: it became an encrypted room, which takes no plaintext.
    app.send(room, &ada, "t3", "plain")
        .await
        .expect_error(400, "encryption_required");
    app.backend.close().unwrap();
}

/// The schema of version 2 (before each epoch's member devices were
/// recorded), as an older backend wrote it: version 1 plus the member-device
/// versions.
fn schema_v2() -> String {
    SCHEMA_V1.replace(
        "PRAGMA user_version = 1;",
        "ALTER TABLE rooms ADD COLUMN member_devices_version INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE epochs ADD COLUMN member_devices_version INTEGER;
         PRAGMA user_version = 2;",
    )
}

#[tokio::test]
async fn a_version_2_database_is_migrated() {
    let db = TempDb::new();
    let room = "r_0123456789abcdef0123456789abcdef";
    // A room of Ada and Bob with epoch 1, current for the member devices, written by the old schema.
    {
        let conn = rusqlite::Connection::open(&db.path).unwrap();
        conn.execute_batch(&schema_v2()).unwrap();
        conn.execute_batch(&format!(
            r#"INSERT INTO users VALUES ('u_a', 'Ada', 1), ('u_b', 'Bob', 1);
               INSERT INTO rooms VALUES ('{room}', 'group', 'Team', 'u_a', 1, NULL, 4);
               INSERT INTO room_members VALUES ('{room}', 'u_a', 1, 0), ('{room}', 'u_b', 1, 0);
               INSERT INTO devices VALUES ('ada-1', 'u_a', '{{"k":1}}', 1), ('bob-1', 'u_b', '{{"k":2}}', 1);
               INSERT INTO epochs VALUES ('{room}', 1, 'u_a', 2, 4);
               INSERT INTO key_shares VALUES ('{room}', 1, 'ada-1', '{{"s":1}}'), ('{room}', 1, 'bob-1', '{{"s":2}}');
               INSERT INTO messages VALUES ('{room}', 1, 'm_1', 'u_a', 'c1', NULL, '{{"epoch":1}}', 3);"#
        ))
        .unwrap();
    }
    let backend = Backend::open(config(&db.path, None)).unwrap();
    let app = TestApp {
        router: backend.router(),
        backend,
        db: TempDb::new(), // a dummy: the real file belongs to this test
    };
    let version: i64 = rusqlite::Connection::open(&db.path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 6);

    let bob = app.sign_in("Bob").await;
    assert_eq!(bob.id, "u_b");
    // The old epoch still covers the member devices, but which they were is unknown.
    app.send_sealed(room, &bob, "c2", json!({ "epoch": 1 }))
        .await
        .expect(201);
    app.get(&format!("/api/rooms/{room}/epochs/1/devices"), &bob)
        .await
        .expect_error(404, "epoch_devices_unknown");
    let share = app
        .get(
            &format!("/api/rooms/{room}/epochs/1/shares?device_id=bob-1"),
            &bob,
        )
        .await
        .expect(200);
    assert_eq!(share.body["share"], json!({ "s": 2 }));
    // A new epoch records them.
    app.create_epoch(room, &bob, 2).await.expect(201);
    let devices = app
        .get(&format!("/api/rooms/{room}/epochs/2/devices"), &bob)
        .await
        .expect(200);
    assert_eq!(
        devices.body,
        json!([
            { "device_id": "ada-1", "user_id": "u_a", "record": { "k": 1 }, "updated_at": 1 },
            { "device_id": "bob-1", "user_id": "u_b", "record": { "k": 2 }, "updated_at": 1 },
        ])
    );
    app.backend.close().unwrap();
}
