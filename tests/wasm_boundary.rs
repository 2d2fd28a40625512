//! The wasm boundary in a real headless Chromium (wasm-bindgen-test,
//! `run_in_browser`): the exports answer as the native core does, the core's
//! signatures are right when compiled to wasm, and core errors reach JS as real
//! `Error` objects with a `code`.
//!
//! Run with: wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver
//!   --mode no-install . --test wasm_boundary
#![cfg(target_arch = "wasm32")]

use domvia_realtime::protocol;
use domvia_realtime::wasm;
use serde_json::Value;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

// Browser tests cannot read files at run time, so the Pusher vectors are
// compiled in from tests/vectors, the same files the native tests read.
const AUTH_VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/pusher/auth.json"
));
const REST_VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/pusher/rest.json"
));

fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {field} is a string"))
}

/// Asserts `thrown` is a JS `Error` named DomViaError whose `code` is `code`.
fn assert_js_error(thrown: JsValue, code: &str) {
    let error = thrown
        .dyn_into::<js_sys::Error>()
        .expect("a real JS Error object");
    assert_eq!(String::from(error.name()), "DomViaError");
    let thrown_code = js_sys::Reflect::get(&error, &"code".into()).unwrap();
    assert_eq!(thrown_code.as_string().as_deref(), Some(code));
    assert!(
        String::from(error.message()).len() > 10,
        "the message explains the failure"
    );
}

#[wasm_bindgen_test]
fn version_is_the_crate_version() {
    assert_eq!(wasm::version(), domvia_realtime::VERSION);
}

#[wasm_bindgen_test]
fn chat_channel_names_match_the_native_core() {
    let room_ids = [
        "room-42",
        "a_b-c=d@e,f.g;h",
        "R",
        "",
        "has space",
        "slash/room",
        "ünï",
        "x#y",
    ];
    for room_id in room_ids {
        for presence in [false, true] {
            let native = protocol::build_chat_channel_name(room_id, presence);
            let boundary = wasm::build_chat_channel_name(room_id, presence);
            match native {
                Ok(name) => assert_eq!(boundary.ok(), Some(name)),
                Err(error) => assert_js_error(boundary.unwrap_err(), error.code()),
            }
        }
    }
    assert_eq!(
        wasm::build_chat_channel_name("room-42", false).unwrap(),
        "private-chat.room.room-42"
    );
    assert_eq!(
        wasm::build_chat_channel_name("room-42", true).unwrap(),
        "presence-chat.room.room-42"
    );
}

#[wasm_bindgen_test]
fn a_bad_room_id_reaches_js_as_an_error_with_its_code() {
    assert_js_error(
        wasm::build_chat_channel_name("room 42", false).unwrap_err(),
        "invalid_room_id",
    );
    let too_long = "r".repeat(200);
    assert_js_error(
        wasm::build_chat_channel_name(&too_long, false).unwrap_err(),
        "invalid_room_id",
    );
}

#[wasm_bindgen_test]
fn channel_kinds_and_close_actions_match_the_native_core() {
    for name in [
        "my-channel",
        "private-a",
        "presence-a",
        "private-encrypted-a",
        "private-",
        "bad name",
        "",
    ] {
        match protocol::validate_channel_name(name) {
            Ok(kind) => assert_eq!(wasm::validate_channel_name(name).unwrap(), kind.as_str()),
            Err(error) => {
                assert_js_error(wasm::validate_channel_name(name).unwrap_err(), error.code())
            }
        }
    }
    let expected = [
        (1000, "backoff"),
        (1006, "backoff"),
        (4000, "fail"),
        (4099, "fail"),
        (4100, "backoff"),
        (4199, "backoff"),
        (4200, "reconnect_now"),
        (4299, "reconnect_now"),
        (4301, "keep_socket"),
        (4399, "keep_socket"),
    ];
    for (code, action) in expected {
        assert_eq!(wasm::close_action(code), action, "close code {code}");
    }
}

#[wasm_bindgen_test]
fn every_shared_signature_vector_holds_in_wasm() {
    let vectors: Value = serde_json::from_str(AUTH_VECTORS).expect("auth.json");
    let app = &vectors["app"];
    let (key, secret) = (str_of(app, "key"), str_of(app, "secret"));
    let mut checked = 0;

    for case in vectors["private"].as_array().expect("private vectors") {
        let auth = protocol::authorize_private_channel(
            key,
            secret,
            str_of(case, "socket_id"),
            str_of(case, "channel_name"),
        )
        .expect("authorize");
        assert_eq!(auth.auth, str_of(&case["response"], "auth"));
        checked += 1;
    }
    for case in vectors["presence"].as_array().expect("presence vectors") {
        let member = &case["presence_data"];
        let user_info: Option<domvia_realtime::json::Value> =
            member.get("user_info").map(|info| info.clone().into());
        let auth = protocol::authorize_presence_channel(
            key,
            secret,
            str_of(case, "socket_id"),
            str_of(case, "channel_name"),
            str_of(member, "user_id"),
            user_info.as_ref(),
        )
        .expect("authorize presence");
        assert_eq!(auth.auth, str_of(&case["response"], "auth"));
        assert_eq!(
            auth.channel_data.as_deref(),
            Some(str_of(&case["response"], "channel_data"))
        );

        // The browser-side check (the connection's, before the subscribe goes
        // out) accepts what the trusted server signed ...
        let body = serde_json::to_string(&case["response"]).unwrap();
        let parsed =
            protocol::parse_channel_auth_response(key, str_of(case, "channel_name"), &body)
                .expect("parse");
        assert_eq!(parsed.auth, str_of(&case["response"], "auth"));
        // ... and names a server that signed with another app's key.
        let refused = protocol::parse_channel_auth_response(
            "another-key",
            str_of(case, "channel_name"),
            &body,
        )
        .unwrap_err();
        assert_eq!(refused.code(), "auth_key_mismatch");
        checked += 1;
    }
    for case in vectors["user"].as_array().expect("user vectors") {
        let auth = protocol::authenticate_user(
            key,
            secret,
            str_of(case, "socket_id"),
            &case["user_data"].clone().into(),
        )
        .expect("sign in");
        assert_eq!(auth.auth, str_of(&case["response"], "auth"));
        assert_eq!(auth.user_data, str_of(&case["response"], "user_data"));
        checked += 1;
    }
    for case in vectors["webhook"].as_array().expect("webhook vectors") {
        let body = str_of(case, "body").as_bytes();
        assert_eq!(
            protocol::webhook_signature(secret, body),
            str_of(case, "header_signature")
        );
        checked += 1;
    }

    let rest: Value = serde_json::from_str(REST_VECTORS).expect("rest.json");
    for case in rest.as_array().expect("rest vectors") {
        let params: Vec<(&str, &str)> = case
            .get("params")
            .and_then(Value::as_object)
            .map(|params| {
                params
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
                    .collect()
            })
            .unwrap_or_default();
        let query = protocol::sign_query(
            key,
            secret,
            str_of(case, "method"),
            str_of(case, "path"),
            &params,
            case.get("body").and_then(Value::as_str).map(str::as_bytes),
            case["auth_timestamp"].as_u64().unwrap(),
        );
        assert_eq!(query, str_of(case, "query"));
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} vectors were checked");
}

#[wasm_bindgen_test]
fn a_malformed_auth_response_is_a_coded_error() {
    let channel = "private-chat.room.room-42";
    for body in [
        "",
        "not json",
        "[]",
        "{}",
        r#"{"auth":42}"#,
        r#"{"auth":"278d425bdf160c739803:nothex"}"#,
    ] {
        let refused = protocol::parse_channel_auth_response("278d425bdf160c739803", channel, body)
            .unwrap_err();
        assert_eq!(refused.code(), "invalid_auth_response");
    }
}
