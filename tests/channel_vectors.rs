#![cfg(not(target_arch = "wasm32"))]
//! `tests/vectors/channels.json`: chat channel names built from room ids, and
//! the exact error (code and message) for ids that cannot make one, as the core
//! gives them. The TypeScript copies of `buildChatChannelName`
//! (`packages/realtime/src/index.ts` before the wasm loads, and
//! `packages/realtime-server/src/channels.ts`) are held to the same file by
//! their node tests.
//!
//! The file is generated from [`INPUTS`] by this test:
//! `DOMVIA_WRITE_VECTORS=1 cargo test --test channel_vectors` rewrites it;
//! every other run regenerates it in memory and fails on any difference.

use domvia_realtime::protocol::{build_chat_channel_name, MAX_CHANNEL_NAME_LEN};
use serde_json::{json, Value};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/channels.json");

/// The room ids to build channel names from, each for a private and a presence
/// channel.
fn inputs() -> Vec<String> {
    let private_room = MAX_CHANNEL_NAME_LEN - "private-chat.room.".len();
    let presence_room = MAX_CHANNEL_NAME_LEN - "presence-chat.room.".len();
    let mut ids: Vec<String> = [
        "room-42",
        "r_1",
        "a",
        // Every character a channel name may hold.
        "AZaz09_-=@,.;",
        "dm.user-1.user-2",
        "",
        "room 42",
        "a/b",
        "bad#name",
        "ok:colon",
        "caf\u{e9}",
        "emoji-\u{1f600}-after",
        "quote\"inside",
        "back\\slash",
        "tab\there",
        "new\nline",
        "nul\u{0}",
        "ctrl\u{1}\u{1f}",
        "del\u{7f}",
        "zero\u{200b}width",
        "\u{301}combining",
        "private-chat.room.x",
    ]
    .iter()
    .map(|id| id.to_string())
    .collect();
    ids.push("a".repeat(presence_room));
    ids.push("a".repeat(private_room));
    ids.push("a".repeat(private_room + 1));
    ids.push("a".repeat(250));
    // A bad character is reported before the length.
    ids.push(format!("{}#", "a".repeat(200)));
    ids
}

/// What the core answers for one input, as a vector case.
fn case(room_id: &str, presence: bool) -> Value {
    match build_chat_channel_name(room_id, presence) {
        Ok(channel) => json!({ "room_id": room_id, "presence": presence, "channel": channel }),
        Err(error) => json!({
            "room_id": room_id,
            "presence": presence,
            "error": { "code": error.code(), "message": error.to_string() },
        }),
    }
}

fn generate() -> Value {
    let cases: Vec<Value> = inputs()
        .iter()
        .flat_map(|id| [case(id, false), case(id, true)])
        .collect();
    json!({
        "_about": "Chat channel names from room ids: buildChatChannelName(room_id, { presence }) gives `channel` or throws `error` (code and exact message). Generated from the Rust core (src/protocol/channel.rs) by `DOMVIA_WRITE_VECTORS=1 cargo test --test channel_vectors`; tests/channel_vectors.rs regenerates and compares on every run, and the TypeScript copies are checked against this file.",
        "cases": cases,
    })
}

#[test]
fn the_file_is_what_the_core_answers() {
    let generated = generate();
    let text = serde_json::to_string_pretty(&generated).expect("serialize") + "\n";
    if std::env::var_os("DOMVIA_WRITE_VECTORS").is_some_and(|v| v == "1") {
        std::fs::write(FILE, &text).unwrap_or_else(|e| panic!("write {FILE}: {e}"));
        println!("wrote {FILE}");
        return;
    }
    let stored = std::fs::read_to_string(FILE).unwrap_or_else(|e| panic!("read {FILE}: {e}"));
    let stored: Value =
        serde_json::from_str(&stored).unwrap_or_else(|e| panic!("parse {FILE}: {e}"));
    let (Some(stored_cases), Some(cases)) =
        (stored["cases"].as_array(), generated["cases"].as_array())
    else {
        panic!("{FILE} has no \"cases\" list");
    };
    for (stored, case) in stored_cases.iter().zip(cases) {
        assert_eq!(
            stored, case,
            "a case differs from the core (DOMVIA_WRITE_VECTORS=1 regenerates the file)"
        );
    }
    assert_eq!(
        stored_cases.len(),
        cases.len(),
        "the file has another number of cases than the inputs"
    );
    assert_eq!(stored, generated);
}

#[test]
fn the_cases_cover_names_and_every_kind_of_error() {
    let cases = generate()["cases"].as_array().expect("cases").clone();
    let reasons = [
        "it is empty",
        "is not allowed",
        "that fit in a private channel name",
        "that fit in a presence channel name",
    ];
    for reason in reasons {
        assert!(
            cases.iter().any(|c| c["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(reason))),
            "no case fails with {reason:?}"
        );
    }
    assert!(cases.iter().filter(|c| c.get("channel").is_some()).count() >= 8);
}
