//! The protocol core against the Pusher vectors in `tests/vectors/pusher/` (a
//! copy of the shared vectors), produced by the `pusher` npm server library.
//! The vectors are read at test time so every implementation is held to the
//! same files.

use domvia_realtime::protocol::{
    authenticate_user, authorize_presence_channel, authorize_private_channel, sign_query,
    verify_channel_auth, verify_query, verify_user_auth, verify_webhook, webhook_signature,
    AUTH_TIMESTAMP_WINDOW_SECS,
};
use serde_json::Value;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/pusher/");

fn load(name: &str) -> Value {
    let path = format!("{VECTORS}{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

fn entries<'a>(value: &'a Value, section: &str) -> &'a [Value] {
    let list = value
        .get(section)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no {section} list"));
    assert!(!list.is_empty(), "the {section} section is empty");
    list
}

/// `text` with its last character replaced by a different one of the same class
/// (digit, lowercase letter, other), so it stays plausible but differs by one.
fn one_char_changed(text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let last = chars.pop().expect("a non-empty string");
    let changed = match last {
        '0'..='8' | 'a'..='y' | 'A'..='Y' => char::from(last as u8 + 1),
        '9' => '0',
        'z' => 'a',
        'Z' => 'A',
        _ => 'x',
    };
    assert_ne!(changed, last);
    chars.push(changed);
    chars.into_iter().collect()
}

/// `auth` (`key:signature`) with one character of the key changed.
fn key_changed(auth: &str) -> String {
    let (key, signature) = auth.split_once(':').expect("key:signature");
    format!("{}:{signature}", one_char_changed(key))
}

struct App {
    key: String,
    secret: String,
}

fn app(auth: &Value) -> App {
    App {
        key: str_at(auth, "/app/key").to_owned(),
        secret: str_at(auth, "/app/secret").to_owned(),
    }
}

fn check_private(auth: &Value, app: &App) -> usize {
    let list = entries(auth, "private");
    for entry in list {
        let socket_id = str_at(entry, "/socket_id");
        let channel = str_at(entry, "/channel_name");
        let expected = str_at(entry, "/response/auth");
        let got = authorize_private_channel(&app.key, &app.secret, socket_id, channel)
            .unwrap_or_else(|e| panic!("{channel}: {e}"));
        assert_eq!(got.auth, expected, "{channel}");
        assert_eq!(got.channel_data, None);
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            entry["response"],
            "{channel}: the response body"
        );

        let verify = |socket_id: &str, channel: &str, auth: &str, key: &str| {
            verify_channel_auth(key, &app.secret, socket_id, channel, auth, None)
        };
        assert_eq!(verify(socket_id, channel, expected, &app.key), Ok(()));
        assert!(verify(&one_char_changed(socket_id), channel, expected, &app.key).is_err());
        assert!(verify(socket_id, &one_char_changed(channel), expected, &app.key).is_err());
        assert!(verify(socket_id, channel, &one_char_changed(expected), &app.key).is_err());
        assert!(verify(socket_id, channel, &key_changed(expected), &app.key).is_err());
        assert!(verify(socket_id, channel, expected, &one_char_changed(&app.key)).is_err());
    }
    list.len()
}

fn check_presence(auth: &Value, app: &App) -> usize {
    let list = entries(auth, "presence");
    for entry in list {
        let socket_id = str_at(entry, "/socket_id");
        let channel = str_at(entry, "/channel_name");
        let user_id = str_at(entry, "/presence_data/user_id");
        let user_info: Option<domvia_realtime::json::Value> = entry
            .pointer("/presence_data/user_info")
            .map(|info| info.clone().into());
        let expected_auth = str_at(entry, "/response/auth");
        let expected_data = str_at(entry, "/response/channel_data");
        let got = authorize_presence_channel(
            &app.key,
            &app.secret,
            socket_id,
            channel,
            user_id,
            user_info.as_ref(),
        )
        .unwrap_or_else(|e| panic!("{channel}: {e}"));
        assert_eq!(got.auth, expected_auth, "{channel}");
        assert_eq!(
            got.channel_data.as_deref(),
            Some(expected_data),
            "{channel}"
        );
        assert_eq!(serde_json::to_value(&got).unwrap(), entry["response"]);

        let verify = |socket_id: &str, channel: &str, auth: &str, key: &str, data: &str| {
            verify_channel_auth(key, &app.secret, socket_id, channel, auth, Some(data))
        };
        let (s, c, a, k, d) = (
            socket_id,
            channel,
            expected_auth,
            app.key.as_str(),
            expected_data,
        );
        assert_eq!(verify(s, c, a, k, d), Ok(()));
        assert!(verify(&one_char_changed(s), c, a, k, d).is_err());
        assert!(verify(s, &one_char_changed(c), a, k, d).is_err());
        assert!(verify(s, c, &one_char_changed(a), k, d).is_err());
        assert!(verify(s, c, &key_changed(a), k, d).is_err());
        assert!(verify(s, c, a, &one_char_changed(k), d).is_err());
        assert!(verify(s, c, a, k, &d.replacen(user_id, "someone-else", 1)).is_err());
        assert!(verify_channel_auth(k, &app.secret, s, c, a, None).is_err());
    }
    list.len()
}

fn check_user(auth: &Value, app: &App) -> usize {
    let list = entries(auth, "user");
    for entry in list {
        let socket_id = str_at(entry, "/socket_id");
        let expected_auth = str_at(entry, "/response/auth");
        let expected_data = str_at(entry, "/response/user_data");
        let got = authenticate_user(
            &app.key,
            &app.secret,
            socket_id,
            &entry["user_data"].clone().into(),
        )
        .unwrap_or_else(|e| panic!("{socket_id}: {e}"));
        assert_eq!(got.auth, expected_auth);
        assert_eq!(got.user_data, expected_data);
        assert_eq!(serde_json::to_value(&got).unwrap(), entry["response"]);

        let verify = |socket_id: &str, auth: &str, key: &str, data: &str| {
            verify_user_auth(key, &app.secret, socket_id, auth, data)
        };
        let (s, a, k, d) = (socket_id, expected_auth, app.key.as_str(), expected_data);
        assert_eq!(verify(s, a, k, d), Ok(()));
        assert!(verify(&one_char_changed(s), a, k, d).is_err());
        assert!(verify(s, &one_char_changed(a), k, d).is_err());
        assert!(verify(s, &key_changed(a), k, d).is_err());
        assert!(verify(s, a, &one_char_changed(k), d).is_err());
        assert!(verify(s, a, k, &d.replacen("user", "usex", 1)).is_err());
    }
    list.len()
}

fn check_webhook(auth: &Value, app: &App) -> usize {
    let list = entries(auth, "webhook");
    for entry in list {
        let body = str_at(entry, "/body").as_bytes();
        let header_key = str_at(entry, "/header_key");
        let header_signature = str_at(entry, "/header_signature");
        assert_eq!(webhook_signature(&app.secret, body), header_signature);
        assert_eq!(
            verify_webhook(&app.key, &app.secret, header_key, header_signature, body),
            Ok(())
        );
        for i in [0, body.len() / 2, body.len() - 1] {
            let mut flipped = body.to_vec();
            flipped[i] ^= 0x01;
            assert!(
                verify_webhook(
                    &app.key,
                    &app.secret,
                    header_key,
                    header_signature,
                    &flipped
                )
                .is_err(),
                "body byte {i} flipped"
            );
        }
        for i in [0, header_signature.len() / 2, header_signature.len() - 1] {
            let mut flipped = header_signature.as_bytes().to_vec();
            flipped[i] = if flipped[i] == b'0' { b'1' } else { b'0' };
            let flipped = String::from_utf8(flipped).unwrap();
            assert!(
                verify_webhook(&app.key, &app.secret, header_key, &flipped, body).is_err(),
                "signature character {i} changed"
            );
        }
        assert!(verify_webhook(
            &app.key,
            &app.secret,
            &one_char_changed(header_key),
            header_signature,
            body
        )
        .is_err());
    }
    list.len()
}

fn check_rest(rest: &Value, app: &App) -> usize {
    let list = rest.as_array().expect("rest.json is a list");
    assert!(!list.is_empty(), "rest.json is empty");
    for entry in list {
        let method = str_at(entry, "/method");
        let path = str_at(entry, "/path");
        let timestamp = entry["auth_timestamp"].as_u64().expect("auth_timestamp");
        let expected = str_at(entry, "/query");
        let body = entry.get("body").and_then(Value::as_str).map(str::as_bytes);
        let params: Vec<(&str, &str)> = entry
            .get("params")
            .and_then(Value::as_object)
            .map(|params| {
                params
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str().expect("string param")))
                    .collect()
            })
            .unwrap_or_default();

        let query = sign_query(
            &app.key,
            &app.secret,
            method,
            path,
            &params,
            body,
            timestamp,
        );
        assert_eq!(query, expected, "{method} {path} at {timestamp}");

        let raw_body = body.unwrap_or_default();
        let verify = |query: &str, body: &[u8], now: u64| {
            verify_query(&app.key, &app.secret, method, path, query, body, now)
        };
        let window = AUTH_TIMESTAMP_WINDOW_SECS;
        assert_eq!(window, 600);
        assert_eq!(verify(expected, raw_body, timestamp), Ok(()));
        assert_eq!(verify(expected, raw_body, timestamp - window), Ok(()));
        assert_eq!(verify(expected, raw_body, timestamp + window), Ok(()));
        assert!(verify(expected, raw_body, timestamp - window - 1).is_err());
        assert!(verify(expected, raw_body, timestamp + window + 1).is_err());

        // A changed body (or a body where none was signed).
        let mut changed_body = raw_body.to_vec();
        match changed_body.last_mut() {
            Some(last) => *last ^= 0x01,
            None => changed_body.extend_from_slice(b"{}"),
        }
        assert!(verify(expected, &changed_body, timestamp).is_err());

        // Each parameter changed by one character, one at a time.
        let pairs: Vec<&str> = expected.split('&').collect();
        for (i, pair) in pairs.iter().enumerate() {
            let mut changed = pairs.clone();
            let replaced = one_char_changed(pair);
            changed[i] = &replaced;
            assert!(
                verify(&changed.join("&"), raw_body, timestamp).is_err(),
                "{replaced} accepted"
            );
        }
        // A parameter added, and the signature removed.
        assert!(verify(&format!("{expected}&extra=1"), raw_body, timestamp).is_err());
        let unsigned: Vec<&str> = pairs
            .iter()
            .copied()
            .filter(|pair| !pair.starts_with("auth_signature="))
            .collect();
        assert!(verify(&unsigned.join("&"), raw_body, timestamp).is_err());
        // Another method or path.
        let other_method = if method == "GET" { "POST" } else { "GET" };
        assert!(verify_query(
            &app.key,
            &app.secret,
            other_method,
            path,
            expected,
            raw_body,
            timestamp
        )
        .is_err());
        assert!(verify_query(
            &app.key,
            &app.secret,
            method,
            &one_char_changed(path),
            expected,
            raw_body,
            timestamp
        )
        .is_err());
    }
    list.len()
}

/// Runs one section's check and asserts that it checked something, so an empty
/// or renamed section cannot pass.
fn run(section: &str, check: fn(&Value, &App) -> usize, file: &str) {
    let auth = load("auth.json");
    let vectors = load(file);
    let checked = check(&vectors, &app(&auth));
    println!("{section}: {checked} vectors checked");
    assert!(checked > 0, "no {section} vectors were checked");
}

#[test]
fn private_channel_vectors() {
    run("private", check_private, "auth.json");
}

#[test]
fn presence_channel_vectors() {
    run("presence", check_presence, "auth.json");
}

#[test]
fn user_signin_vectors() {
    run("user", check_user, "auth.json");
}

#[test]
fn webhook_vectors() {
    run("webhook", check_webhook, "auth.json");
}

#[test]
fn rest_vectors() {
    run("rest", check_rest, "rest.json");
}
