//! The `ChatRoomSession` boundary in real headless browsers
//! (wasm-bindgen-test, `run_in_browser`): real JS objects go in, plain JS
//! objects with the documented snake_case fields and JS types come out (the
//! actions and events of `takeActions`, the view's messages), and refusals are
//! `Error`s named DomViaError with a `code`. The room's policy is tested
//! natively (tests/chat_session.rs, tests/chat_room.rs); this suite checks the crossing.
//!
//! Run with: wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver
//!   --mode no-install . --test wasm_chat
#![cfg(target_arch = "wasm32")]

use domvia_realtime::wasm::chat::ChatRoomSession;
use js_sys::{Array, Object, Reflect, JSON};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const ROOM: &str = "r_room";
const ME: &str = "u_me";
const ADA: &str = "u_ada";

fn session(encrypted: bool) -> ChatRoomSession {
    let config = format!(
        r#"{{"room_id":"{ROOM}","user_id":"{ME}","encrypted":{encrypted},"page_size":2,"jitter_seed":1}}"#
    );
    ChatRoomSession::new(js(&config)).expect("a valid config")
}

/// A real JS value from JSON text, as the SDK gets it from `response.json()`.
fn js(json: &str) -> JsValue {
    JSON::parse(json).expect("valid JSON in the test")
}

/// A backend Message object from Ada, as JSON text.
fn message_json(seq: u64) -> String {
    format!(
        r#"{{"message_id":"m_{seq}","room_id":"{ROOM}","seq":{seq},"user_id":"{ADA}","text":"text {seq}","sent_at":{},"client_id":"c-ada-{seq}"}}"#,
        1_760_000_000_000u64 + seq
    )
}

fn get(object: &JsValue, field: &str) -> JsValue {
    Reflect::get(object, &field.into()).expect("an object")
}

fn has(object: &JsValue, field: &str) -> bool {
    Reflect::has(object, &field.into()).expect("an object")
}

fn keys(object: &JsValue) -> Vec<String> {
    Object::keys(object.unchecked_ref::<Object>())
        .iter()
        .map(|k| k.as_string().unwrap())
        .collect()
}

fn array(value: &JsValue) -> Array {
    assert!(Array::is_array(value), "an array: {value:?}");
    value.clone().unchecked_into()
}

/// The room's whole message list, as a view that reads it from scratch gets it.
fn shown(s: &ChatRoomSession) -> Array {
    let delta = s.view_since(0.0, 0.0).unwrap();
    assert_eq!(get(&delta, "full"), JsValue::TRUE);
    array(&get(&delta, "changed")).concat(&array(&get(&delta, "pending")))
}

/// Asserts `thrown` is a JS `Error` named DomViaError whose `code` is `code`.
fn assert_js_error(thrown: JsValue, code: &str) {
    let error = thrown
        .dyn_into::<js_sys::Error>()
        .expect("a real JS Error object");
    assert_eq!(String::from(error.name()), "DomViaError");
    assert_eq!(get(&error, "code").as_string().as_deref(), Some(code));
    assert!(String::from(error.message()).starts_with("unable to "));
}

/// A plain object (not a Map or class instance) with exactly these keys.
fn assert_plain_object(value: &JsValue, expected_keys: &[&str]) {
    assert!(value.is_object() && !Array::is_array(value));
    let proto = Object::get_prototype_of(value);
    assert!(
        JsValue::from(proto) == JsValue::from(Object::get_prototype_of(&Object::new())),
        "a plain object"
    );
    let mut actual = keys(value);
    actual.sort();
    let mut expected: Vec<String> = expected_keys.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    assert_eq!(actual, expected);
}

const STORED_KEYS: [&str; 8] = [
    "message_id",
    "room_id",
    "seq",
    "user_id",
    "text",
    "sent_at",
    "client_id",
    "status",
];

fn actions(session: &mut ChatRoomSession) -> Vec<JsValue> {
    array(&session.take_actions().unwrap()).iter().collect()
}

/// The actions of one type, and the events among them by their own type.
fn of_type(actions: &[JsValue], kind: &str) -> Vec<JsValue> {
    actions
        .iter()
        .filter(|a| get(a, "type").as_string().as_deref() == Some(kind))
        .cloned()
        .collect()
}

fn events(actions: &[JsValue], kind: &str) -> Vec<JsValue> {
    of_type(actions, "event")
        .iter()
        .map(|a| get(a, "event"))
        .filter(|e| get(e, "type").as_string().as_deref() == Some(kind))
        .collect()
}

fn number(value: &JsValue) -> f64 {
    value.as_f64().expect("a number")
}

/// Answers the request of `actions` whose path is `path` with `body`.
fn answer(session: &mut ChatRoomSession, actions: &[JsValue], path: &str, status: f64, body: &str) {
    let request = of_type(actions, "request")
        .into_iter()
        .find(|r| get(r, "path").as_string().as_deref() == Some(path))
        .unwrap_or_else(|| panic!("no request for {path}"));
    session.response(number(&get(&request, "id")), status, body, 1_000.0);
}

/// A session loaded with messages 1 and 2; returns the load's last actions.
fn loaded(session: &mut ChatRoomSession, page_body: &str) -> Vec<JsValue> {
    session.start();
    let started = actions(session);
    answer(
        session,
        &started,
        &format!("/api/rooms/{ROOM}"),
        200.0,
        r#"{"last_read_seq":1,"unread_count":1,"latest_seq":2,"members":[]}"#,
    );
    session.subscribed(false);
    let paged = actions(session);
    answer(
        session,
        &paged,
        &format!("/api/rooms/{ROOM}/messages?limit=2"),
        200.0,
        page_body,
    );
    actions(session)
}

fn page_json(seqs: std::ops::RangeInclusive<u64>) -> String {
    let items: Vec<String> = seqs.map(message_json).collect();
    format!(r#"{{"messages":[{}],"has_more":false}}"#, items.join(","))
}

#[wasm_bindgen_test]
fn requests_come_out_as_plain_objects_with_number_ids_and_no_body_on_a_get() {
    let mut s = session(false);
    s.start();
    let started = actions(&mut s);
    assert_eq!(
        started.len(),
        1,
        "my user id is known: only the room is asked"
    );
    assert_plain_object(
        &started[0],
        &[
            "type",
            "id",
            "operation",
            "method",
            "path",
            "with_socket_id",
            "keepalive",
        ],
    );
    assert_eq!(
        get(&started[0], "method").as_string().as_deref(),
        Some("GET")
    );
    assert_eq!(get(&started[0], "with_socket_id"), JsValue::FALSE);
    assert!(number(&get(&started[0], "id")) >= 1.0);
}

#[wasm_bindgen_test]
fn a_loaded_room_reports_ready_and_shows_plain_snake_case_messages() {
    let mut s = session(false);
    let done = loaded(&mut s, &page_json(1..=2));
    assert_eq!(events(&done, "ready").len(), 1);
    let shown = shown(&s);
    assert_eq!(shown.length(), 2);
    for message in shown.iter() {
        assert_plain_object(&message, &STORED_KEYS);
        assert!(get(&message, "seq").as_f64().is_some());
        assert_eq!(get(&message, "status").as_string().as_deref(), Some("sent"));
    }
    assert_eq!(s.unread_count(), 1.0);
    assert!(!s.has_older());
    assert_plain_object(&s.read_positions().unwrap(), &[ME]);
    // A view that read the list gets only what is new: numbers and a flag cross.
    let first = s.view_since(0.0, 0.0).unwrap();
    assert_plain_object(&first, &["epoch", "cursor", "full", "changed", "pending"]);
    let (epoch, cursor) = (
        number(&get(&first, "epoch")),
        number(&get(&first, "cursor")),
    );
    let unchanged = s.view_since(epoch, cursor).unwrap();
    assert_eq!(get(&unchanged, "full"), JsValue::FALSE);
    assert_eq!(array(&get(&unchanged, "changed")).length(), 0);
    s.message_created(&message_json(3), 2_000.0);
    actions(&mut s);
    let next = s.view_since(epoch, cursor).unwrap();
    assert_eq!(get(&next, "full"), JsValue::FALSE);
    let changed = array(&get(&next, "changed"));
    assert_eq!(changed.length(), 1);
    assert_eq!(number(&get(&changed.get(0), "seq")), 3.0);
    assert_eq!(number(&get(&next, "cursor")), cursor + 1.0);
}

#[wasm_bindgen_test]
fn message_events_are_reported_only_while_the_page_listens() {
    let mut s = session(false);
    loaded(&mut s, &page_json(1..=2));
    // No onMessage listener: the message is stored and shown, not reported.
    s.set_reports_messages(false);
    s.message_created(&message_json(3), 2_000.0);
    assert!(events(&actions(&mut s), "message").is_empty());
    assert_eq!(shown(&s).length(), 3);
    // A listener again: the next one is reported.
    s.set_reports_messages(true);
    s.message_created(&message_json(4), 2_000.0);
    let reported = events(&actions(&mut s), "message");
    assert_eq!(reported.len(), 1);
    assert_eq!(number(&get(&get(&reported[0], "message"), "seq")), 4.0);
}

#[wasm_bindgen_test]
fn bad_text_is_a_coded_error_and_shows_nothing() {
    let mut s = session(false);
    loaded(&mut s, &page_json(1..=2));
    assert_js_error(s.send("c-1", "", 1_000.0).unwrap_err(), "invalid_text");
    assert_js_error(
        s.send("c 1", "hi", 1_000.0).unwrap_err(),
        "invalid_client_id",
    );
    assert_eq!(shown(&s).length(), 2);
    assert!(actions(&mut s).is_empty());
    assert_js_error(s.retry("c-unknown").unwrap_err(), "unknown_client_id");
}

#[wasm_bindgen_test]
fn a_send_posts_json_text_with_the_socket_id_and_settles_as_delivered() {
    let mut s = session(false);
    loaded(&mut s, &page_json(1..=2));
    s.send("c-1", "hello", 1_000.0).unwrap();
    let sent = actions(&mut s);
    let pending = shown(&s).get(2);
    assert_eq!(get(&pending, "message_id"), JsValue::NULL);
    assert_eq!(
        get(&pending, "status").as_string().as_deref(),
        Some("sending")
    );
    let post = &of_type(&sent, "request")[0];
    assert_eq!(get(post, "with_socket_id"), JsValue::TRUE);
    let body = js(&get(post, "body")
        .as_string()
        .expect("the body is JSON text"));
    assert_eq!(get(&body, "client_id").as_string().as_deref(), Some("c-1"));
    let stored = format!(
        r#"{{"message_id":"m_3","room_id":"{ROOM}","seq":3,"user_id":"{ME}","text":"hello","sent_at":5,"client_id":"c-1"}}"#
    );
    s.response(number(&get(post, "id")), 201.0, &stored, 1_000.0);
    let after = actions(&mut s);
    let delivered = &events(&after, "delivered")[0];
    assert_eq!(
        get(delivered, "client_id").as_string().as_deref(),
        Some("c-1")
    );
    assert_plain_object(&get(delivered, "message"), &STORED_KEYS);
    let reported = get(&events(&after, "message")[0], "message");
    assert_eq!(
        number(&get(&reported, "seq")),
        3.0,
        "onMessage reports my stored message"
    );
}

#[wasm_bindgen_test]
fn a_refusal_crosses_as_send_failed_with_the_backends_code() {
    let mut s = session(false);
    loaded(&mut s, &page_json(1..=2));
    s.send("c-1", "hello", 1_000.0).unwrap();
    let sent = actions(&mut s);
    let post = &of_type(&sent, "request")[0];
    s.response(
        number(&get(post, "id")),
        403.0,
        r#"{"error":{"code":"not_a_member","message":"unable to send; you left"}}"#,
        1_000.0,
    );
    let failed = &events(&actions(&mut s), "send_failed")[0];
    assert_plain_object(failed, &["type", "client_id", "code", "message"]);
    assert_eq!(
        get(failed, "code").as_string().as_deref(),
        Some("not_a_member")
    );
}

#[wasm_bindgen_test]
fn malformed_events_are_coded_errors_or_ignored_never_panics() {
    let mut s = session(false);
    loaded(&mut s, &page_json(1..=2));
    // Data that is not JSON reaches the session as a string: ignored, named.
    s.message_created("{\"seq\":", 1.0);
    let ignored = events(&actions(&mut s), "ignored");
    assert_eq!(ignored.len(), 1);
    s.message_created(r#"{"seq":"three"}"#, 1.0);
    let ignored = events(&actions(&mut s), "ignored");
    assert_eq!(ignored.len(), 1);
    let reason = get(&ignored[0], "message").as_string().unwrap();
    assert!(
        reason.contains("message_id"),
        "names what is wrong: {reason}"
    );
    assert_js_error(
        ChatRoomSession::new(js("{}")).err().unwrap(),
        "invalid_message",
    );
}

#[wasm_bindgen_test]
fn typing_crosses_as_booleans_and_a_timer_in_ms() {
    let mut s = session(false);
    loaded(&mut s, &page_json(1..=2));
    s.client_typing(
        &format!(r#"{{"user_id":"{ADA}","is_typing":true}}"#),
        None,
        1_000.0,
    );
    let typed = actions(&mut s);
    let typing = &events(&typed, "typing")[0];
    assert_eq!(get(typing, "is_typing"), JsValue::TRUE);
    let timer = &of_type(&typed, "timer")[0];
    assert_eq!(get(timer, "name").as_string().as_deref(), Some("typing"));
    assert_eq!(number(&get(timer, "delay_ms")), 5_001.0);
    assert_eq!(get(typing, "user_id").as_string().as_deref(), Some(ADA));
    s.typing_input(None, 1_000.0);
    let out = &of_type(&actions(&mut s), "typing")[0];
    assert_eq!(
        get(&get(out, "data"), "user_id").as_string().as_deref(),
        Some(ME)
    );
}

#[wasm_bindgen_test]
fn an_encrypted_room_asks_to_open_with_the_ciphertext_object_and_shows_the_result() {
    let mut s = session(true);
    s.start();
    let started = actions(&mut s);
    answer(
        &mut s,
        &started,
        &format!("/api/rooms/{ROOM}"),
        200.0,
        r#"{"encrypted":true,"members":[]}"#,
    );
    s.subscribed(false);
    let prepare = actions(&mut s);
    assert_eq!(
        get(&of_type(&prepare, "prepare_encryption")[0], "user_id")
            .as_string()
            .as_deref(),
        Some(ME)
    );
    s.encryption_prepared();
    let paged = actions(&mut s);
    let sealed_message = format!(
        r#"{{"messages":[{{"message_id":"m_1","room_id":"{ROOM}","seq":1,"user_id":"{ADA}","ciphertext":{{"v":1,"ct":"AA"}},"sent_at":7,"client_id":"c-a"}}],"has_more":false}}"#
    );
    answer(
        &mut s,
        &paged,
        &format!("/api/rooms/{ROOM}/messages?limit=2"),
        200.0,
        &sealed_message,
    );
    let opening = actions(&mut s);
    let open = &of_type(&opening, "open")[0];
    let message = get(open, "message");
    assert_plain_object(
        &message,
        &[
            "message_id",
            "user_id",
            "client_id",
            "sent_at",
            "ciphertext",
        ],
    );
    assert_eq!(
        get(&get(&message, "ciphertext"), "ct")
            .as_string()
            .as_deref(),
        Some("AA")
    );
    s.opened("m_1", None, "e2ee_replay", "unable to open; a replay", 1.0);
    assert_eq!(events(&actions(&mut s), "ready").len(), 1);
    let shown = shown(&s).get(0);
    assert_eq!(get(&shown, "text"), JsValue::NULL);
    let error = get(&shown, "decryption_error");
    assert_plain_object(&error, &["code", "message"]);
    assert_eq!(
        get(&error, "code").as_string().as_deref(),
        Some("e2ee_replay")
    );

    s.send("c-1", "secret", 1.0).unwrap();
    let seal = &of_type(&actions(&mut s), "seal")[0];
    assert_plain_object(seal, &["type", "client_id", "text"]);
    s.sealed("c-1", r#"{"v":1,"ct":"BB"}"#);
    let post = &of_type(&actions(&mut s), "request")[0];
    let body = js(&get(post, "body").as_string().unwrap());
    assert_eq!(
        get(&get(&body, "ciphertext"), "ct").as_string().as_deref(),
        Some("BB")
    );
    assert!(!has(&body, "text"), "no plaintext leaves an encrypted room");
}
