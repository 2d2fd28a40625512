use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::harness::*;

async fn history(app: &TestApp, room: &str, who: &Who, query: &str) -> (Vec<i64>, bool) {
    let reply = app
        .get(&format!("/api/rooms/{room}/messages{query}"), who)
        .await
        .expect(200);
    let seqs = reply.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    (seqs, reply.body["has_more"].as_bool().unwrap())
}

#[tokio::test]
async fn sending_is_idempotent_per_client_id() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let room = app.group(&ada, &[&bob]).await;

    let first = app.send(&room, &ada, "c-1", "hello").await.expect(201);
    let body = first.body.as_object().unwrap();
    let mut keys: Vec<_> = body.keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "client_id",
            "message_id",
            "room_id",
            "sent_at",
            "seq",
            "text",
            "user_id"
        ]
    );
    assert!(str_at(&first.body, "/message_id").starts_with("m_"));
    assert_eq!(first.body["seq"], 1);
    assert_eq!(first.body["room_id"], room.as_str());
    assert_eq!(first.body["user_id"], ada.id.as_str());

    let again = app.send(&room, &ada, "c-1", "hello").await.expect(200);
    assert_eq!(again.body, first.body);
    app.send(&room, &ada, "c-1", "hello!")
        .await
        .expect_error(409, "client_id_conflict");
    // A plaintext room takes no ciphertext, whatever the client id.
    app.post(
        &format!("/api/rooms/{room}/messages"),
        &ada,
        json!({ "client_id": "c-1", "ciphertext": { "v": 1, "epoch": 1 } }),
    )
    .await
    .expect_error(400, "room_not_encrypted");
    // Client ids are per sender.
    let bobs = app.send(&room, &bob, "c-1", "hello").await.expect(201);
    assert_eq!(bobs.body["seq"], 2);
    assert_ne!(bobs.body["message_id"], first.body["message_id"]);

    let (seqs, has_more) = history(&app, &room, &bob, "").await;
    assert_eq!(seqs, [1, 2]);
    assert!(!has_more);

    // Ciphertext, in an encrypted room: an opaque object (in the current
    // epoch), equal regardless of key order.
    let sealed_room = app.encrypted_group(&ada, &[&bob]).await;
    let uri = format!("/api/rooms/{sealed_room}/messages");
    app.create_epoch(&sealed_room, &ada, 1).await.expect(201);
    let sealed = app
        .post(
            &uri,
            &ada,
            json!({ "client_id": "e1", "ciphertext": { "a": 1, "b": [true, null], "epoch": 1 } }),
        )
        .await
        .expect(201);
    assert_eq!(
        sealed.body["ciphertext"],
        json!({ "a": 1, "b": [true, null], "epoch": 1 })
    );
    assert!(sealed.body.get("text").is_none());
    let raw = br#"{"client_id":"e1","ciphertext":{"epoch":1,"b":[true,null],"a":1}}"#.to_vec();
    app.raw(
        axum::http::Method::POST,
        &uri,
        Some(&ada.token),
        "application/json",
        Some(raw),
        &[],
    )
    .await
    .expect(200);
    // The same client id with different content is a conflict.
    let conflict = app
        .post(
            &uri,
            &ada,
            json!({ "client_id": "e1", "ciphertext": { "a": 2, "epoch": 1 } }),
        )
        .await
        .expect_error(409, "client_id_conflict");
    assert_eq!(
        conflict.body["error"]["message_id"],
        sealed.body["message_id"]
    );
    // An encrypted room takes no plaintext: a client that forgot to
    // encrypt cannot leak the text into it.
    app.send(&sealed_room, &ada, "t1", "in clear")
        .await
        .expect_error(400, "encryption_required");
    let (seqs, _) = history(&app, &sealed_room, &bob, "").await;
    assert_eq!(seqs, [1]);
}

#[tokio::test]
async fn message_limits() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let room = app.group(&ada, &[]).await;
    let uri = format!("/api/rooms/{room}/messages");
    let send = |body: Value| app.post(&uri, &ada, body);

    send(json!({ "client_id": "max", "text": "x".repeat(4000) }))
        .await
        .expect(201);
    send(json!({ "client_id": "max-utf8", "text": "é".repeat(2000) }))
        .await
        .expect(201);
    send(json!({ "client_id": "lines", "text": "a\tb\r\nc" }))
        .await
        .expect(201);
    send(json!({ "client_id": "big", "text": "x".repeat(4001) }))
        .await
        .expect_error(413, "text_too_large");
    send(json!({ "client_id": "big-utf8", "text": "é".repeat(2001) }))
        .await
        .expect_error(413, "text_too_large");
    send(json!({ "client_id": "empty", "text": "" }))
        .await
        .expect_error(400, "invalid_text");
    send(json!({ "client_id": "ctl", "text": "a\u{1b}[31m" }))
        .await
        .expect_error(400, "invalid_text");
    send(json!({ "client_id": "num", "text": 5 }))
        .await
        .expect_error(400, "invalid_text");
    send(json!({ "client_id": "none" }))
        .await
        .expect_error(400, "invalid_message");
    send(json!({ "client_id": "both", "text": "a", "ciphertext": {} }))
        .await
        .expect_error(400, "invalid_message");
    send(json!({ "client_id": "arr", "ciphertext": [1] }))
        .await
        .expect_error(400, "invalid_ciphertext");
    send(json!({ "client_id": "str", "ciphertext": "abc" }))
        .await
        .expect_error(400, "invalid_ciphertext");
    // 6 KiB serialized is the most (in an encrypted room).
    let sealed_room = app.encrypted_group(&ada, &[]).await;
    let sealed_uri = format!("/api/rooms/{sealed_room}/messages");
    let seal = |body: Value| app.post(&sealed_uri, &ada, body);
    app.create_epoch(&sealed_room, &ada, 1).await.expect(201);
    let filler = |n: usize| json!({ "epoch": 1, "c": "x".repeat(n) });
    let overhead = filler(0).to_string().len();
    seal(json!({ "client_id": "ct-max", "ciphertext": filler(6144 - overhead) }))
        .await
        .expect(201);
    seal(json!({ "client_id": "ct-big", "ciphertext": filler(6145 - overhead) }))
        .await
        .expect_error(413, "ciphertext_too_large");
    for client_id in [
        json!(""),
        json!("a b"),
        json!("x".repeat(65)),
        json!("é"),
        json!(7),
        Value::Null,
    ] {
        send(json!({ "client_id": client_id, "text": "hi" }))
            .await
            .expect_error(400, "invalid_client_id");
    }
    send(json!({ "text": "hi" }))
        .await
        .expect_error(400, "invalid_client_id");
    send(json!({ "client_id": "x".repeat(64), "text": "hi" }))
        .await
        .expect(201);
    // The whole body has a limit too.
    let huge = format!(r#"{{"client_id":"h","text":"{}"}}"#, "x".repeat(600 * 1024));
    app.raw(
        axum::http::Method::POST,
        &uri,
        Some(&ada.token),
        "application/json",
        Some(huge.into_bytes()),
        &[],
    )
    .await
    .expect_error(413, "body_too_large");
    app.post(
        "/api/rooms/r_missing/messages",
        &ada,
        json!({ "client_id": "a", "text": "hi" }),
    )
    .await
    .expect_error(404, "room_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_get_gap_free_seqs() {
    const SENDERS: usize = 8;
    const EACH: usize = 25;
    let app = std::sync::Arc::new(TestApp::new());
    let mut people = Vec::new();
    for i in 0..SENDERS {
        people.push(app.sign_in(&format!("sender{i}")).await);
    }
    let others: Vec<&Who> = people[1..].iter().collect();
    let room = app.group(&people[0], &others).await;

    let mut tasks = Vec::new();
    for who in people.clone() {
        let app = app.clone();
        let room = room.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for n in 0..EACH {
                let reply = app
                    .send(&room, &who, &format!("m{n}"), &format!("{} #{n}", who.name))
                    .await;
                assert_eq!(reply.status.as_u16(), 201, "{:#}", reply.body);
                seqs.push(reply.body["seq"].as_i64().unwrap());
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let seqs = task.await.unwrap();
        // Each sender's own messages are in order.
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        all.extend(seqs);
    }
    all.sort_unstable();
    let total = (SENDERS * EACH) as i64;
    assert_eq!(all, (1..=total).collect::<Vec<_>>());

    // History agrees: every seq once, with unique message ids.
    let mut seen = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut after = 0;
    loop {
        let reply = app
            .get(
                &format!("/api/rooms/{room}/messages?after={after}&limit=100"),
                &people[3],
            )
            .await
            .expect(200);
        let messages = reply.body["messages"].as_array().unwrap().clone();
        for m in &messages {
            assert!(seen.insert(m["seq"].as_i64().unwrap()));
            assert!(ids.insert(m["message_id"].as_str().unwrap().to_owned()));
        }
        if !reply.body["has_more"].as_bool().unwrap() {
            break;
        }
        after = messages.last().unwrap()["seq"].as_i64().unwrap();
    }
    assert_eq!(seen.len() as i64, total);
}

#[tokio::test]
async fn history_pages_visit_every_message_once() {
    // 130 sends back to back: more than one user's burst of sends.
    let app = TestApp::with_limits(domvia_backend::Limits::without_rate_limits());
    let ada = app.sign_in("Ada").await;
    let room = app.group(&ada, &[]).await;
    let (seqs, has_more) = history(&app, &room, &ada, "").await;
    assert!(seqs.is_empty() && !has_more);
    const TOTAL: i64 = 130;
    for n in 1..=TOTAL {
        app.send(&room, &ada, &format!("c{n}"), &format!("message {n}"))
            .await
            .expect(201);
    }

    // The latest page.
    let (latest, has_more) = history(&app, &room, &ada, "").await;
    assert_eq!(latest, (81..=130).collect::<Vec<_>>());
    assert!(has_more);
    let (all, has_more) = history(&app, &room, &ada, "?limit=100&after=30").await;
    assert_eq!(all.len(), 100);
    assert!(!has_more);

    // Backwards with `before`, from the latest page to seq 1.
    let (mut page, mut has_more) = history(&app, &room, &ada, "?limit=7").await;
    let mut visited = Vec::new();
    loop {
        assert!(page.windows(2).all(|w| w[0] + 1 == w[1]), "{page:?}");
        visited.splice(0..0, page.iter().copied());
        if !has_more {
            break;
        }
        (page, has_more) =
            history(&app, &room, &ada, &format!("?limit=7&before={}", page[0])).await;
    }
    assert_eq!(visited, (1..=TOTAL).collect::<Vec<_>>());

    // Forwards with `after`, from 0.
    let mut visited: Vec<i64> = Vec::new();
    let mut after = 0;
    loop {
        let (page, has_more) = history(&app, &room, &ada, &format!("?after={after}&limit=9")).await;
        visited.extend(&page);
        if !has_more {
            assert_eq!(page.last().copied().unwrap_or(after), TOTAL);
            break;
        }
        after = *page.last().unwrap();
    }
    assert_eq!(visited, (1..=TOTAL).collect::<Vec<_>>());

    // Edges.
    assert_eq!(
        history(&app, &room, &ada, "?before=1").await,
        (vec![], false)
    );
    assert_eq!(
        history(&app, &room, &ada, "?after=130").await,
        (vec![], false)
    );
    assert_eq!(
        history(&app, &room, &ada, "?before=3&limit=2").await,
        (vec![1, 2], false)
    );
    assert_eq!(
        history(&app, &room, &ada, "?before=4&limit=2").await,
        (vec![2, 3], true)
    );
    assert_eq!(
        history(&app, &room, &ada, "?after=-5&limit=1").await,
        (vec![1], true)
    );
    for bad in [
        "?limit=0",
        "?limit=101",
        "?limit=x",
        "?before=1.5",
        "?after=",
        "?before=1&after=2",
        "?before=99999999999999999999",
    ] {
        app.get(&format!("/api/rooms/{room}/messages{bad}"), &ada)
            .await
            .expect_error(400, "invalid_query");
    }
    // A message's full shape in history.
    let reply = app
        .get(&format!("/api/rooms/{room}/messages?after=0&limit=1"), &ada)
        .await;
    let m = &reply.body["messages"][0];
    assert_eq!(m["text"], "message 1");
    assert_eq!(m["client_id"], "c1");
    assert_eq!(m["user_id"], ada.id.as_str());
    assert!(m["sent_at"].as_i64().unwrap() > 1_600_000_000_000);
}

#[tokio::test]
async fn receipts_and_unread_counts() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let room = app.group(&ada, &[&bob]).await;
    let read_uri = format!("/api/rooms/{room}/read");
    let room_uri = format!("/api/rooms/{room}");

    let empty = app
        .post(&read_uri, &bob, json!({ "seq": 0 }))
        .await
        .expect(200);
    assert_eq!(empty.body, json!({ "last_read_seq": 0, "unread_count": 0 }));
    for n in 1..=5 {
        app.send(&room, &ada, &format!("a{n}"), "hi")
            .await
            .expect(201);
    }
    app.send(&room, &bob, "b1", "mine").await.expect(201);
    let view = app.get(&room_uri, &bob).await.expect(200);
    assert_eq!(
        (
            view.body["unread_count"].as_i64(),
            view.body["last_read_seq"].as_i64()
        ),
        (Some(5), Some(0))
    );
    let view = app.get(&room_uri, &ada).await.expect(200);
    assert_eq!(view.body["unread_count"], 1);

    let read = app
        .post(&read_uri, &bob, json!({ "seq": 3 }))
        .await
        .expect(200);
    assert_eq!(read.body, json!({ "last_read_seq": 3, "unread_count": 2 }));
    // Never backwards.
    let read = app
        .post(&read_uri, &bob, json!({ "seq": 2 }))
        .await
        .expect(200);
    assert_eq!(read.body, json!({ "last_read_seq": 3, "unread_count": 2 }));
    // Reading up to my own message clears everything.
    let read = app
        .post(&read_uri, &bob, json!({ "seq": 6 }))
        .await
        .expect(200);
    assert_eq!(read.body, json!({ "last_read_seq": 6, "unread_count": 0 }));
    app.post(&read_uri, &bob, json!({ "seq": 7 }))
        .await
        .expect_error(400, "invalid_seq");
    for bad in [
        json!({ "seq": -1 }),
        json!({ "seq": "3" }),
        json!({ "seq": 1.5 }),
        json!({}),
    ] {
        app.post(&read_uri, &bob, bad)
            .await
            .expect_error(400, "invalid_seq");
    }
    // Others see my read position in the member list.
    let view = app.get(&room_uri, &ada).await.expect(200);
    let bob_member = view.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == bob.id.as_str())
        .unwrap()
        .clone();
    assert_eq!(bob_member["last_read_seq"], 6);
    app.post(
        &format!("/api/rooms/{room}/read"),
        &ada,
        json!({ "seq": 2 }),
    )
    .await
    .expect(200);
    let rooms = app.get("/api/rooms", &ada).await.expect(200);
    assert_eq!(rooms.body["rooms"][0]["last_read_seq"], 2);
    assert_eq!(rooms.body["rooms"][0]["unread_count"], 1);
}
