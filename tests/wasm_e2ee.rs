//! The E2EE boundary (`E2eeDevice`, `E2eeRoomSession`, `E2eeRoom`,
//! `E2eeKnownDevices`, `safetyNumber`) in a real headless Chromium (wasm-bindgen-test,
//! `run_in_browser`): randomness from `crypto.getRandomValues`, real JS
//! objects in, plain JS objects out, refusals as DomViaErrors with `e2ee_*`
//! codes. The cryptography is tested natively (tests/e2ee.rs); this suite
//! checks the crossing and the flow the SDK drives.
//!
//! Run with: wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver
//!   --mode no-install . --test wasm_e2ee
#![cfg(target_arch = "wasm32")]

use domvia_realtime::wasm::e2ee::{
    safety_number, E2eeDevice, E2eeKnownDevices, E2eeRoom, E2eeRoomSession,
};
use js_sys::{Array, Object, Reflect, JSON};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const ROOM: &str = "r_00112233445566778899aabbccddeeff";
const T0: f64 = 1_760_000_000_000.0;

fn get(object: &JsValue, field: &str) -> JsValue {
    Reflect::get(object, &field.into()).expect("an object")
}

fn set(object: &JsValue, field: &str, value: &JsValue) {
    Reflect::set(object, &field.into(), value).expect("an object");
}

fn string(object: &JsValue, field: &str) -> String {
    get(object, field)
        .as_string()
        .unwrap_or_else(|| panic!("{field} is a string"))
}

fn keys(object: &JsValue) -> Vec<String> {
    let mut keys: Vec<String> = Object::keys(object.unchecked_ref::<Object>())
        .iter()
        .map(|k| k.as_string().unwrap())
        .collect();
    keys.sort();
    keys
}

fn assert_plain_object(value: &JsValue, expected: &[&str]) {
    assert!(value.is_object() && !Array::is_array(value));
    assert!(
        JsValue::from(Object::get_prototype_of(value))
            == JsValue::from(Object::get_prototype_of(&Object::new())),
        "a plain object"
    );
    let mut expected: Vec<String> = expected.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    assert_eq!(keys(value), expected);
}

/// Asserts that the keys of every object in `value` come in byte order: the
/// order the core's JSON has always had (serde_json sorted them), which
/// `JSON.parse` keeps, so the text the backend stores stays byte for byte
/// the same.
fn assert_keys_in_byte_order(value: &JsValue) {
    if Array::is_array(value) {
        Array::from(value).for_each(&mut |item, _, _| assert_keys_in_byte_order(&item));
    } else if value.is_object() {
        let keys: Vec<String> = Object::keys(value.unchecked_ref::<Object>())
            .iter()
            .map(|k| k.as_string().unwrap())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        for key in keys {
            assert_keys_in_byte_order(&get(value, &key));
        }
    }
}

/// A deep copy, as the value would come back from the backend's JSON.
fn copy(value: &JsValue) -> JsValue {
    JSON::parse(&String::from(JSON::stringify(value).unwrap())).unwrap()
}

fn list(values: &[JsValue]) -> JsValue {
    values.iter().collect::<Array>().into()
}

/// Asserts `thrown` is a JS `Error` named DomViaError whose `code` is `code`.
fn assert_code(thrown: JsValue, code: &str) -> String {
    let error = thrown
        .dyn_into::<js_sys::Error>()
        .expect("a real JS Error object");
    assert_eq!(String::from(error.name()), "DomViaError");
    assert_eq!(get(&error, "code").as_string().as_deref(), Some(code));
    let message = String::from(error.message());
    assert!(message.starts_with("unable to "), "{message}");
    message
}

fn device(user_id: &str, device_id: &str) -> E2eeDevice {
    E2eeDevice::generate(user_id, device_id).expect("generate")
}

/// Ada creates epoch 1 for Ada and Bob and commits it; Bob opens his share.
fn two_rooms(ada: &E2eeDevice, bob: &E2eeDevice) -> (E2eeRoom, E2eeRoom) {
    let records = list(&[ada.record().unwrap(), bob.record().unwrap()]);
    let mut ada_room = E2eeRoom::new(ROOM).expect("room");
    let created = ada_room
        .create_epoch(ada, 1.0, T0, records.clone())
        .expect("create");
    ada_room.commit_epoch(1.0, records.clone()).expect("commit");
    let shares: Array = get(&created, "shares").unchecked_into();
    let bob_share = shares
        .iter()
        .find(|s| string(s, "device_id") == "bob-phone")
        .expect("a share for bob");
    let mut bob_room = E2eeRoom::new(ROOM).expect("room");
    let epoch = bob_room
        .open_share(
            bob,
            copy(&get(&bob_share, "share")),
            ada.record().unwrap(),
            copy(&records),
        )
        .expect("open share");
    assert_eq!(epoch, 1.0);
    (ada_room, bob_room)
}

#[wasm_bindgen_test]
fn devices_generate_export_and_restore() {
    let ada = device("u_ada", "ada-laptop");
    assert_eq!(ada.user_id(), "u_ada");
    assert_eq!(ada.device_id(), "ada-laptop");
    let fingerprint = ada.fingerprint();
    assert_eq!(fingerprint.len(), 24);
    assert_eq!(fingerprint.split(' ').count(), 5);

    let record = ada.record().unwrap();
    assert_plain_object(
        &record,
        &["v", "user_id", "device_id", "x25519", "ed25519", "sig"],
    );
    assert_eq!(get(&record, "v").as_f64(), Some(1.0));
    assert_eq!(string(&record, "user_id"), "u_ada");
    assert_keys_in_byte_order(&record);

    let secret = ada.export_secret();
    assert_eq!(secret.length(), 64);
    let restored = E2eeDevice::restore("u_ada", "ada-laptop", secret.to_vec()).unwrap();
    assert_eq!(restored.fingerprint(), fingerprint);
    assert_eq!(
        String::from(JSON::stringify(&restored.record().unwrap()).unwrap()),
        String::from(JSON::stringify(&record).unwrap())
    );
    // Two generations never collide (the randomness is real).
    assert_ne!(device("u_ada", "ada-laptop").fingerprint(), fingerprint);

    assert_code(
        E2eeDevice::restore("u_ada", "ada-laptop", vec![0; 63])
            .err()
            .unwrap(),
        "e2ee_invalid_key",
    );
    assert_code(
        E2eeDevice::generate("u ada", "ada-laptop").err().unwrap(),
        "e2ee_malformed",
    );
}

#[wasm_bindgen_test]
fn an_epoch_is_created_committed_shared_and_used() {
    let (ada, bob) = (device("u_ada", "ada-laptop"), device("u_bob", "bob-phone"));
    let records = list(&[ada.record().unwrap(), bob.record().unwrap()]);
    let mut room = E2eeRoom::new(ROOM).unwrap();
    assert_eq!(room.current_epoch(), None);
    assert!(room.needs_new_epoch(records.clone()).unwrap());
    assert_code(room.seal(&ada, "c-1", "hi").err().unwrap(), "e2ee_no_epoch");

    let created = room.create_epoch(&ada, 1.0, T0, records.clone()).unwrap();
    assert_plain_object(&created, &["epoch", "shares"]);
    assert_keys_in_byte_order(&created);
    assert_eq!(get(&created, "epoch").as_f64(), Some(1.0));
    let shares: Array = get(&created, "shares").unchecked_into();
    assert_eq!(shares.length(), 2);
    assert_plain_object(&shares.get(0), &["device_id", "share"]);
    assert_eq!(string(&shares.get(0), "device_id"), "ada-laptop");
    assert_eq!(
        get(&get(&shares.get(1), "share"), "epoch").as_f64(),
        Some(1.0)
    );
    // Pending: not used before the commit.
    assert_eq!(room.current_epoch(), None);
    assert!(!room.has_epoch(1.0));
    assert_code(
        room.commit_epoch(2.0, records.clone()).err().unwrap(),
        "e2ee_unknown_epoch",
    );
    room.discard_epoch();
    assert_code(
        room.commit_epoch(1.0, records.clone()).err().unwrap(),
        "e2ee_unknown_epoch",
    );
    room.create_epoch(&ada, 1.0, T0, records.clone()).unwrap();
    room.commit_epoch(1.0, records.clone()).unwrap();
    assert_eq!(room.current_epoch(), Some(1.0));
    assert!(room.has_epoch(1.0));
    assert!(!room.has_epoch(2.0));
    assert!(!room.has_epoch(0.5));
    assert!(!room.needs_new_epoch(copy(&records)).unwrap());
    let carol = device("u_carol", "carol-tablet");
    let three = list(&[
        ada.record().unwrap(),
        bob.record().unwrap(),
        carol.record().unwrap(),
    ]);
    assert!(room.needs_new_epoch(three).unwrap());
    assert_code(
        room.create_epoch(&ada, 1.5, T0, records.clone())
            .err()
            .unwrap(),
        "e2ee_malformed",
    );
    assert_code(
        room.needs_new_epoch(JsValue::from_str("x")).err().unwrap(),
        "e2ee_malformed",
    );

    // Bob's share of a second epoch opens only for Bob, against Ada's record.
    let created = room
        .create_epoch(&ada, 2.0, T0 + 1.0, records.clone())
        .unwrap();
    let shares: Array = get(&created, "shares").unchecked_into();
    let mut bob_room = E2eeRoom::new(ROOM).unwrap();
    assert_code(
        bob_room
            .open_share(
                &bob,
                get(&shares.get(0), "share"),
                ada.record().unwrap(),
                records.clone(),
            )
            .err()
            .unwrap(),
        "e2ee_wrong_recipient",
    );
    assert_code(
        bob_room
            .open_share(
                &bob,
                get(&shares.get(1), "share"),
                bob.record().unwrap(),
                records.clone(),
            )
            .err()
            .unwrap(),
        "e2ee_wrong_sender",
    );
    assert_eq!(
        bob_room
            .open_share(
                &bob,
                get(&shares.get(1), "share"),
                ada.record().unwrap(),
                records
            )
            .unwrap(),
        2.0
    );
}

#[wasm_bindgen_test]
fn seal_and_open_round_trip_as_plain_objects() {
    let (ada, bob) = (device("u_ada", "ada-laptop"), device("u_bob", "bob-phone"));
    let (ada_room, mut bob_room) = two_rooms(&ada, &bob);
    let text = "meet at noon ☕ — 🙂";
    let envelope = ada_room.seal(&ada, "c-1", text).unwrap();
    assert_plain_object(
        &envelope,
        &[
            "v",
            "room_id",
            "epoch",
            "sender_user_id",
            "sender_device_id",
            "message_id",
            "kind",
            "nonce",
            "ciphertext",
            "sig",
        ],
    );
    assert_keys_in_byte_order(&envelope);
    assert_eq!(string(&envelope, "kind"), "text");
    assert_eq!(string(&envelope, "message_id"), "c-1");
    let json = String::from(JSON::stringify(&envelope).unwrap());
    assert!(!json.contains("noon"));

    assert_eq!(bob_room.epoch_of(copy(&envelope)).unwrap(), 1.0);
    let opened = bob_room.open(copy(&envelope), T0 + 5.0, "m_1").unwrap();
    assert_plain_object(
        &opened,
        &["text", "user_id", "device_id", "message_id", "epoch"],
    );
    assert_eq!(string(&opened, "text"), text);
    assert_eq!(string(&opened, "user_id"), "u_ada");
    assert_eq!(string(&opened, "device_id"), "ada-laptop");
    assert_eq!(string(&opened, "message_id"), "c-1");
    assert_eq!(get(&opened, "epoch").as_f64(), Some(1.0));

    // Empty text and the largest accepted content round-trip; larger is refused.
    let empty = ada_room.seal(&ada, "c-2", "").unwrap();
    assert_eq!(
        string(&bob_room.open(empty, T0, "m_2").unwrap(), "text"),
        ""
    );
    let big = "x".repeat(4095);
    let sealed = ada_room.seal(&ada, "c-3", &big).unwrap();
    assert_eq!(
        string(&bob_room.open(sealed, T0, "m_3").unwrap(), "text"),
        big
    );
    assert_code(
        ada_room.seal(&ada, "c-4", &"x".repeat(4096)).err().unwrap(),
        "e2ee_content_too_large",
    );
    assert_code(
        ada_room.seal(&ada, "bad id", "x").err().unwrap(),
        "e2ee_malformed",
    );
}

#[wasm_bindgen_test]
fn tampering_and_malformed_envelopes_are_coded_errors() {
    let (ada, bob) = (device("u_ada", "ada-laptop"), device("u_bob", "bob-phone"));
    let (ada_room, mut bob_room) = two_rooms(&ada, &bob);
    let envelope = ada_room.seal(&ada, "c-1", "secret").unwrap();

    let tampered = copy(&envelope);
    let ciphertext = string(&tampered, "ciphertext");
    let flipped = if ciphertext.starts_with('A') {
        "B"
    } else {
        "A"
    };
    set(
        &tampered,
        "ciphertext",
        &format!("{flipped}{}", &ciphertext[1..]).into(),
    );
    assert_code(
        bob_room.open(tampered, T0, "m_1").err().unwrap(),
        "e2ee_bad_signature",
    );
    let moved = copy(&envelope);
    set(&moved, "message_id", &"c-2".into());
    assert_code(
        bob_room.open(moved, T0, "m_1").err().unwrap(),
        "e2ee_bad_signature",
    );
    let unknown = copy(&envelope);
    set(&unknown, "epoch", &7.into());
    assert_eq!(bob_room.epoch_of(unknown.clone()).unwrap(), 7.0);
    assert_code(
        bob_room.open(unknown, T0, "m_1").err().unwrap(),
        "e2ee_unknown_epoch",
    );
    let version = copy(&envelope);
    set(&version, "v", &2.into());
    assert_code(
        bob_room.open(version, T0, "m_1").err().unwrap(),
        "e2ee_unsupported_version",
    );
    for bad in [
        JsValue::from_str("text"),
        JsValue::NULL,
        JsValue::UNDEFINED,
        Object::new().into(),
    ] {
        assert_code(
            bob_room.open(bad.clone(), T0, "m_1").err().unwrap(),
            "e2ee_malformed",
        );
        assert_code(bob_room.epoch_of(bad).err().unwrap(), "e2ee_malformed");
    }
    // The real one still opens after all of that.
    assert_eq!(
        string(&bob_room.open(envelope, T0, "m_1").unwrap(), "text"),
        "secret"
    );
}

#[wasm_bindgen_test]
fn replay_is_keyed_by_the_backend_message_id() {
    let (ada, bob) = (device("u_ada", "ada-laptop"), device("u_bob", "bob-phone"));
    let (ada_room, mut bob_room) = two_rooms(&ada, &bob);
    let envelope = ada_room.seal(&ada, "c-1", "once").unwrap();
    bob_room.open(copy(&envelope), T0, "m_1").unwrap();
    // A history reload opens the same backend message again.
    assert_eq!(
        string(&bob_room.open(copy(&envelope), T0, "m_1").unwrap(), "text"),
        "once"
    );
    // The same envelope stored again under another backend id is a replay.
    let message = assert_code(
        bob_room.open(copy(&envelope), T0, "m_2").err().unwrap(),
        "e2ee_replay",
    );
    assert!(
        message.contains("u_ada") && message.contains("c-1"),
        "{message}"
    );
}

#[wasm_bindgen_test]
fn exported_state_restores_and_keeps_decrypting() {
    let (ada, bob) = (device("u_ada", "ada-laptop"), device("u_bob", "bob-phone"));
    let (ada_room, mut bob_room) = two_rooms(&ada, &bob);
    let first = ada_room.seal(&ada, "c-1", "before").unwrap();
    bob_room.open(copy(&first), T0, "m_1").unwrap();

    let state = bob_room.export_state();
    assert!(!state.contains("before"));
    let mut restored = E2eeRoom::restore(ROOM, &state).unwrap();
    assert_eq!(restored.current_epoch(), Some(1.0));
    assert_eq!(restored.export_state(), state);
    assert_eq!(
        string(&restored.open(copy(&first), T0, "m_1").unwrap(), "text"),
        "before"
    );
    assert_code(
        restored.open(copy(&first), T0, "m_other").err().unwrap(),
        "e2ee_replay",
    );
    let second = ada_room.seal(&ada, "c-2", "after").unwrap();
    assert_eq!(
        string(&restored.open(second, T0 + 1.0, "m_2").unwrap(), "text"),
        "after"
    );
    // The device restores from its secret and still seals for the room.
    let bob_again =
        E2eeDevice::restore("u_bob", "bob-phone", bob.export_secret().to_vec()).unwrap();
    let reply = restored.seal(&bob_again, "c-3", "reply").unwrap();
    let mut ada_room = ada_room;
    assert_eq!(
        string(&ada_room.open(reply, T0 + 2.0, "m_3").unwrap(), "text"),
        "reply"
    );

    assert_code(
        E2eeRoom::restore("r_other", &state).err().unwrap(),
        "e2ee_malformed",
    );
    for bad in ["", "{}", "not json", &state[..state.len() / 2]] {
        assert_code(
            E2eeRoom::restore(ROOM, bad).err().unwrap(),
            "e2ee_malformed",
        );
    }
}

#[wasm_bindgen_test]
fn known_devices_detect_a_key_change() {
    let ada = device("u_ada", "ada-laptop");
    let mut known = E2eeKnownDevices::new();
    assert_eq!(known.check(ada.record().unwrap()).unwrap(), "new");
    assert_eq!(known.check(ada.record().unwrap()).unwrap(), "unchanged");

    let replaced = device("u_ada", "ada-laptop");
    let message = assert_code(
        known.check(replaced.record().unwrap()).err().unwrap(),
        "e2ee_device_key_changed",
    );
    assert!(
        message.contains("u_ada") && message.contains("ada-laptop"),
        "{message}"
    );
    // Still refused after a restore; accepted once the user accepts it.
    let mut restored = E2eeKnownDevices::restore(&known.export_state()).unwrap();
    assert_code(
        restored.check(replaced.record().unwrap()).err().unwrap(),
        "e2ee_device_key_changed",
    );
    restored.accept_change(replaced.record().unwrap()).unwrap();
    assert_eq!(
        restored.check(replaced.record().unwrap()).unwrap(),
        "unchanged"
    );
    assert_code(
        E2eeKnownDevices::restore("[]").err().unwrap(),
        "e2ee_malformed",
    );
    // A forged record (signature broken) is refused before any pinning.
    let forged = copy(&replaced.record().unwrap());
    set(&forged, "device_id", &"ada-phone".into());
    assert_code(known.check(forged).err().unwrap(), "e2ee_bad_signature");
}

#[wasm_bindgen_test]
fn safety_numbers_match_on_both_sides() {
    let (ada, bob) = (device("u_ada", "ada-laptop"), device("u_bob", "bob-phone"));
    let ab = safety_number(ada.record().unwrap(), bob.record().unwrap()).unwrap();
    let ba = safety_number(bob.record().unwrap(), ada.record().unwrap()).unwrap();
    assert_eq!(ab, ba);
    let groups: Vec<&str> = ab.split(' ').collect();
    assert_eq!(groups.len(), 6);
    assert!(groups
        .iter()
        .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())));
    assert_code(
        safety_number(ada.record().unwrap(), JsValue::from_str("x"))
            .err()
            .unwrap(),
        "e2ee_malformed",
    );
}

// ---- E2eeRoomSession: the room's policy, pumped -----------------------------------

/// The session's actions since the last poll, as the plain objects JS gets.
fn poll(session: &mut E2eeRoomSession) -> Vec<JsValue> {
    let actions = session.poll().expect("poll");
    assert!(Array::is_array(&actions));
    actions.iter().collect()
}

fn kind(action: &JsValue) -> String {
    string(action, "type")
}

fn id(action: &JsValue) -> f64 {
    get(action, "id").as_f64().expect("an id")
}

/// A Device object of the backend's lists.
fn device_json(device: &E2eeDevice) -> JsValue {
    let object = Object::new();
    set(&object, "device_id", &device.device_id().into());
    set(&object, "user_id", &device.user_id().into());
    set(&object, "record", &device.record().unwrap());
    object.into()
}

#[wasm_bindgen_test]
fn a_session_asks_for_the_lock_requests_and_storage_and_emits_plain_objects() {
    let (ada, bob) = (device("u_ada", "ada-laptop"), device("u_bob", "bob-phone"));
    let mut session = E2eeRoomSession::new(ROOM, &ada).expect("session");
    let op = session.seal(T0, "c-1", "hello");

    let actions = poll(&mut session);
    assert_eq!(actions.len(), 1);
    assert_plain_object(&actions[0], &["id", "type"]);
    assert_eq!(kind(&actions[0]), "lock");
    session.locked(T0, id(&actions[0]), None, None);

    // Every send reads the member devices and the room's epoch.
    let actions = poll(&mut session);
    assert_eq!(actions.len(), 2);
    for action in &actions {
        assert_plain_object(action, &["id", "method", "operation", "path", "type"]);
        assert_eq!(kind(action), "request");
        assert_eq!(string(action, "method"), "GET");
    }
    assert_eq!(
        string(&actions[0], "path"),
        format!("/api/rooms/{ROOM}/devices")
    );
    assert_eq!(
        string(&actions[1], "path"),
        format!("/api/rooms/{ROOM}/epoch")
    );
    let devices = list(&[device_json(&ada), device_json(&bob)]);
    // Answered out of order.
    let epoch = Object::new();
    set(&epoch, "epoch", &0.into());
    session.response(T0, id(&actions[1]), 200, epoch.into());
    assert!(poll(&mut session).is_empty());
    session.response(T0, id(&actions[0]), 200, devices.clone());

    // Epoch 1, as the body of the POST.
    let actions = poll(&mut session);
    assert_eq!(actions.len(), 1);
    let post = &actions[0];
    assert_plain_object(post, &["body", "id", "method", "operation", "path", "type"]);
    assert_eq!(string(post, "method"), "POST");
    assert_eq!(string(post, "path"), format!("/api/rooms/{ROOM}/epochs"));
    let body = get(post, "body");
    assert_plain_object(&body, &["epoch", "shares"]);
    assert_keys_in_byte_order(&body);
    let shares: Array = get(&body, "shares").unchecked_into();
    let bob_share = shares
        .iter()
        .find(|s| string(s, "device_id") == "bob-phone")
        .expect("a share for bob");
    let mut bob_room = E2eeRoom::new(ROOM).unwrap();
    let records = list(&[ada.record().unwrap(), bob.record().unwrap()]);
    bob_room
        .open_share(
            &bob,
            copy(&get(&bob_share, "share")),
            ada.record().unwrap(),
            records,
        )
        .expect("bob opens his share");
    session.response(T0, id(post), 201, JsValue::NULL);

    // Persisted (keys and pinned devices), then the lock goes and the envelope comes.
    let actions = poll(&mut session);
    assert_eq!(actions.len(), 1);
    assert_plain_object(&actions[0], &["id", "known_devices", "room_state", "type"]);
    assert_eq!(kind(&actions[0]), "persist");
    let state = string(&actions[0], "room_state");
    session.stored(T0, id(&actions[0]));
    let actions = poll(&mut session);
    assert_eq!(
        actions.iter().map(kind).collect::<Vec<_>>(),
        ["unlock", "sealed"]
    );
    assert_plain_object(&actions[1], &["client_id", "envelope", "op", "type"]);
    assert_eq!(get(&actions[1], "op").as_f64(), Some(op));
    let envelope = get(&actions[1], "envelope");
    let opened = bob_room
        .open(copy(&envelope), T0, "m_1")
        .expect("bob opens it");
    assert_eq!(string(&opened, "text"), "hello");
    assert!(session.is_idle());

    // Opening: the ledger is read first, the new id recorded, the sender bound.
    let mut reloaded = E2eeRoomSession::new(ROOM, &ada).expect("session");
    let from_bob = bob_room.seal(&bob, "b-1", "hi ada").unwrap();
    let genuine = reloaded.open(T0, "m_2", "u_bob", "b-1", T0, copy(&from_bob));
    let forged = reloaded.open(T0, "m_3", "u_carol", "b-1", T0, copy(&from_bob));
    let actions = poll(&mut reloaded);
    reloaded.locked(T0, id(&actions[0]), Some(state), None);
    let actions = poll(&mut reloaded);
    assert_eq!(kind(&actions[0]), "ledger_check");
    assert_plain_object(&actions[0], &["id", "keys", "type"]);
    let keys: Array = get(&actions[0], "keys").unchecked_into();
    assert_eq!(keys.length(), 2);
    assert_plain_object(&keys.get(0), &["message_id", "sender_user_id"]);
    reloaded.ledger_result(
        T0,
        id(&actions[0]),
        list(&[JsValue::UNDEFINED, JsValue::UNDEFINED]),
    );
    let actions = poll(&mut reloaded);
    assert_eq!(kind(&actions[0]), "ledger_record");
    let entries: Array = get(&actions[0], "entries").unchecked_into();
    assert_eq!(entries.length(), 1, "only what opened is recorded");
    assert_plain_object(
        &entries.get(0),
        &["backend_message_id", "message_id", "sender_user_id"],
    );
    assert_eq!(string(&entries.get(0), "backend_message_id"), "m_2");
    reloaded.stored(T0, id(&actions[0]));
    let actions = poll(&mut reloaded);
    let opened: Vec<&JsValue> = actions.iter().filter(|a| kind(a) == "opened").collect();
    assert_eq!(opened.len(), 2);
    assert_plain_object(opened[0], &["message_id", "ok", "op", "text", "type"]);
    assert_eq!(get(opened[0], "op").as_f64(), Some(genuine));
    assert_eq!(string(opened[0], "text"), "hi ada");
    assert_plain_object(
        opened[1],
        &["code", "message", "message_id", "ok", "op", "type"],
    );
    assert_eq!(get(opened[1], "op").as_f64(), Some(forged));
    assert_eq!(get(opened[1], "ok"), JsValue::FALSE);
    assert_eq!(string(opened[1], "code"), "e2ee_wrong_sender");

    // A failed request fails the send with its code; a late answer is ignored.
    let op = reloaded.seal(T0, "c-2", "x");
    let actions = poll(&mut reloaded);
    reloaded.locked(T0, id(&actions[0]), None, None);
    let actions = poll(&mut reloaded);
    reloaded.request_failed(
        T0,
        id(&actions[0]),
        "network_error",
        "unable to list the room's devices; offline",
    );
    reloaded.response(T0, id(&actions[1]), 200, JsValue::NULL);
    let actions = poll(&mut reloaded);
    let failed = actions
        .iter()
        .find(|a| kind(a) == "failed")
        .expect("failed");
    assert_plain_object(failed, &["code", "message", "op", "type"]);
    assert_eq!(get(failed, "op").as_f64(), Some(op));
    assert_eq!(string(failed, "code"), "network_error");
    assert!(actions.iter().any(|a| kind(a) == "unlock"));

    // Closing fails what waits.
    let op = reloaded.safety_numbers(T0, "u_bob");
    reloaded.close();
    let actions = poll(&mut reloaded);
    let failed = actions
        .iter()
        .find(|a| kind(a) == "failed")
        .expect("failed");
    assert_eq!(get(failed, "op").as_f64(), Some(op));
    assert_eq!(string(failed, "code"), "e2ee_closed");
}
