//! The `ChatRoomState` boundary in a real headless Chromium
//! (wasm-bindgen-test, `run_in_browser`): real JS objects go in, plain JS
//! objects with the documented snake_case fields and JS types come out, and
//! refusals are `Error`s named DomViaError with a `code`. The room's logic is
//! tested natively (tests/chat_room.rs); this suite checks the crossing.
//!
//! Run with: wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver
//!   --mode no-install . --test wasm_chat
#![cfg(target_arch = "wasm32")]

use domvia_realtime::wasm::chat::ChatRoomState;
use js_sys::{Array, Object, Reflect, JSON};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const ROOM: &str = "r_room";
const ME: &str = "u_me";
const ADA: &str = "u_ada";

fn room() -> ChatRoomState {
    ChatRoomState::new(ROOM.into(), ME.into(), 3000.0, 5000.0)
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

fn page(seqs: std::ops::RangeInclusive<u64>) -> JsValue {
    let items: Vec<String> = seqs.map(message_json).collect();
    js(&format!("[{}]", items.join(",")))
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

/// How many messages the room shows (pending and stored).
fn message_count(room: &ChatRoomState) -> u32 {
    array(&room.messages().unwrap()).length()
}

/// My message with this client id in the room's list, if any.
fn message_with_client_id(room: &ChatRoomState, client_id: &str) -> Option<JsValue> {
    array(&room.messages().unwrap())
        .iter()
        .find(|message| get(message, "client_id").as_string().as_deref() == Some(client_id))
}

fn array(value: &JsValue) -> Array {
    assert!(Array::is_array(value), "an array: {value:?}");
    value.clone().unchecked_into()
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

#[wasm_bindgen_test]
fn a_latest_page_comes_back_as_plain_snake_case_messages() {
    let mut room = room();
    let applied = room.apply_latest_page(page(5..=7), true, 0.0).unwrap();
    assert_plain_object(&applied, &["added", "typing_stopped"]);
    assert!(
        !has(&applied, "catch_up_after"),
        "undefined when nothing is missing"
    );
    assert_eq!(array(&get(&applied, "typing_stopped")).length(), 0);
    let added = array(&get(&applied, "added"));
    assert_eq!(added.length(), 3);
    let first = added.get(0);
    assert_plain_object(&first, &STORED_KEYS);
    assert_eq!(
        get(&first, "message_id").as_string().as_deref(),
        Some("m_5")
    );
    assert_eq!(get(&first, "room_id").as_string().as_deref(), Some(ROOM));
    assert_eq!(get(&first, "seq").as_f64(), Some(5.0));
    assert_eq!(get(&first, "user_id").as_string().as_deref(), Some(ADA));
    assert_eq!(get(&first, "text").as_string().as_deref(), Some("text 5"));
    assert_eq!(get(&first, "sent_at").as_f64(), Some(1_760_000_000_005.0));
    assert_eq!(
        get(&first, "client_id").as_string().as_deref(),
        Some("c-ada-5")
    );
    assert_eq!(get(&first, "status").as_string().as_deref(), Some("sent"));

    assert_eq!(room.older_cursor(), Some(5.0));
    assert!(room.has_older());
    assert_eq!(room.catch_up_cursor(), 7.0);
    assert_eq!(message_count(&room), 3);
    assert_eq!(room.unread_count(), 3.0);
    assert_eq!(array(&room.messages().unwrap()).length(), 3);
}

#[wasm_bindgen_test]
fn a_gap_sets_catch_up_after_as_a_number() {
    let mut room = room();
    room.apply_latest_page(page(1..=3), false, 0.0).unwrap();
    assert_eq!(room.older_cursor(), None);
    let applied = room.apply_created(js(&message_json(6)), 0.0).unwrap();
    assert_eq!(get(&applied, "catch_up_after").as_f64(), Some(3.0));
    let caught = room.apply_catch_up_page(page(4..=6), false, 0.0).unwrap();
    assert!(!has(&caught, "catch_up_after"));
    assert_eq!(array(&get(&caught, "added")).length(), 2);
    let live = room.apply_created(js(&message_json(7)), 0.0).unwrap();
    assert_eq!(array(&get(&live, "added")).length(), 1);
    assert_eq!(room.catch_up_cursor(), 7.0);
}

#[wasm_bindgen_test]
fn a_pending_message_has_null_id_and_seq() {
    let mut room = room();
    room.apply_latest_page(page(1..=1), false, 0.0).unwrap();
    let pending = room.begin_send("c-1", "hi", 1234.0).unwrap();
    assert_plain_object(&pending, &STORED_KEYS);
    assert!(get(&pending, "message_id").is_null());
    assert!(get(&pending, "seq").is_null());
    assert_eq!(
        get(&pending, "status").as_string().as_deref(),
        Some("sending")
    );
    assert_eq!(get(&pending, "sent_at").as_f64(), Some(1234.0));
    assert_eq!(get(&pending, "user_id").as_string().as_deref(), Some(ME));

    let sends = array(&room.pending_sends().unwrap());
    assert_eq!(sends.length(), 1);
    assert_plain_object(&sends.get(0), &["client_id", "text"]);

    room.send_failed("c-1");
    let failed = message_with_client_id(&room, "c-1").expect("the failed send is listed");
    assert_eq!(
        get(&failed, "status").as_string().as_deref(),
        Some("failed")
    );
    assert_eq!(room.retry("c-1").unwrap(), "hi");
    assert!(message_with_client_id(&room, "c-unknown").is_none());

    let stored = js(&format!(
        r#"{{"message_id":"m_2","room_id":"{ROOM}","seq":2,"user_id":"{ME}","text":"hi","sent_at":99,"client_id":"c-1"}}"#
    ));
    let applied = room.send_succeeded("c-1", stored.clone(), 0.0).unwrap();
    let added = array(&get(&applied, "added"));
    assert_eq!(
        get(&added.get(0), "status").as_string().as_deref(),
        Some("sent")
    );
    assert_eq!(get(&added.get(0), "seq").as_f64(), Some(2.0));
    // The event after the response adds nothing.
    let again = room.apply_created(stored, 0.0).unwrap();
    assert_eq!(array(&get(&again, "added")).length(), 0);
    assert_eq!(message_count(&room), 2);
    assert_eq!(array(&room.pending_sends().unwrap()).length(), 0);
}

#[wasm_bindgen_test]
fn a_ciphertext_message_keeps_its_object_and_a_null_text() {
    let mut room = room();
    let encrypted = js(&format!(
        r#"{{"message_id":"m_1","room_id":"{ROOM}","seq":1,"user_id":"{ADA}","ciphertext":{{"v":1,"ct":"AAAA"}},"sent_at":5,"client_id":"c-x"}}"#
    ));
    let applied = room.apply_created(encrypted, 0.0).unwrap();
    let message = array(&get(&applied, "added")).get(0);
    assert!(get(&message, "text").is_null());
    let ciphertext = get(&message, "ciphertext");
    assert_plain_object(&ciphertext, &["ct", "v"]);
    assert_eq!(get(&ciphertext, "v").as_f64(), Some(1.0));
}

#[wasm_bindgen_test]
fn bad_text_is_a_coded_error_and_shows_nothing() {
    let mut room = room();
    assert_js_error(room.begin_send("c-1", "", 0.0).unwrap_err(), "invalid_text");
    assert_js_error(
        room.begin_send("c-1", "bell\u{7}", 0.0).unwrap_err(),
        "invalid_text",
    );
    assert_js_error(
        room.begin_send("c-1", &"x".repeat(4001), 0.0).unwrap_err(),
        "text_too_large",
    );
    assert_js_error(
        room.begin_send("bad id", "hi", 0.0).unwrap_err(),
        "invalid_client_id",
    );
    assert_eq!(message_count(&room), 0);
    assert_js_error(room.retry("c-1").unwrap_err(), "unknown_client_id");
}

#[wasm_bindgen_test]
fn malformed_messages_are_coded_errors_not_panics() {
    let mut room = room();
    let without_seq = js(&format!(
        r#"{{"message_id":"m_1","room_id":"{ROOM}","user_id":"{ADA}","text":"x","sent_at":1,"client_id":"c"}}"#
    ));
    assert_js_error(
        room.apply_created(without_seq, 0.0).unwrap_err(),
        "invalid_message",
    );
    for bad in [
        JsValue::from_str("m_1"),
        JsValue::NULL,
        JsValue::UNDEFINED,
        JsValue::from_f64(7.0),
        js(r#"{"seq":"7"}"#),
    ] {
        assert_js_error(room.apply_created(bad, 0.0).unwrap_err(), "invalid_message");
    }
    // A page that is not an array, or holds one bad message, is refused whole.
    assert_js_error(
        room.apply_latest_page(js(r#"{"messages":[]}"#), false, 0.0)
            .unwrap_err(),
        "invalid_message",
    );
    let mixed = js(&format!("[{}, 42]", message_json(1)));
    assert_js_error(
        room.apply_latest_page(mixed, false, 0.0).unwrap_err(),
        "invalid_message",
    );
    assert_js_error(
        room.apply_created(JsValue::from_str("{not json"), 0.0)
            .unwrap_err(),
        "invalid_message",
    );
    // Another room's message.
    let foreign = js(&message_json(1).replace(ROOM, "r_other"));
    assert_js_error(
        room.apply_created(foreign, 0.0).unwrap_err(),
        "invalid_message",
    );
    assert_eq!(message_count(&room), 0);
    // The room still works afterwards.
    room.apply_latest_page(page(1..=2), false, 0.0).unwrap();
    assert_eq!(message_count(&room), 2);
}

#[wasm_bindgen_test]
fn typing_crosses_as_booleans_strings_and_numbers() {
    let mut room = room();
    assert!(room.typing_input(0.0));
    assert!(!room.typing_input(1000.0));
    assert!(room.typing_stop());
    assert!(room.typing_received(ADA, true, 1000.0));
    assert!(!room.typing_received(ME, true, 1000.0));
    assert_eq!(room.typing_users(), vec![ADA.to_owned()]);
    assert_eq!(room.next_typing_deadline(), Some(6000.0));
    assert!(room.expire_typing(5999.0).is_empty());
    assert_eq!(room.expire_typing(6000.0), vec![ADA.to_owned()]);
    assert_eq!(room.next_typing_deadline(), None);
}

#[wasm_bindgen_test]
fn reads_cross_as_numbers_and_a_plain_object() {
    let mut room = room();
    room.apply_latest_page(page(1..=4), false, 0.0).unwrap();
    room.set_read_state(1.0, 3.0, 4.0);
    assert_eq!(room.unread_count(), 3.0);
    assert_eq!(room.mark_read("m_3"), Some(3.0));
    assert_eq!(room.mark_read("m_2"), None);
    assert_eq!(room.unread_count(), 1.0);
    assert!(room.receipt_received(ADA, 2.0));
    assert!(!room.receipt_received(ADA, 1.0));
    let positions = room.read_positions().unwrap();
    assert_plain_object(&positions, &[ADA, ME]);
    assert_eq!(get(&positions, ADA).as_f64(), Some(2.0));
    assert_eq!(get(&positions, ME).as_f64(), Some(3.0));
}
