#![cfg(not(target_arch = "wasm32"))]
// Random operations and never-panics properties discard results on purpose.
#![allow(clippy::let_underscore_must_use)]
//! The chat room state machine on fake time: history pages, live events and
//! send responses in every order, delivery states, typing, reads. Tests assert
//! on what the room returns and shows, not on its internals.

use std::collections::{BTreeMap, HashSet};

use domvia_realtime::chat::{
    validate_text, Applied, ChatMessage, DeliveryStatus, OutgoingSend, RoomState, StoredMessage,
    TypingSettings, MAX_TEXT_BYTES,
};
use domvia_realtime::json::Value;
use domvia_realtime::json_value as json;
use domvia_realtime::Error;
use proptest::prelude::*;

const ROOM: &str = "r_room";
const ME: &str = "u_me";
const ADA: &str = "u_ada";
const BOB: &str = "u_bob";

const SETTINGS: TypingSettings = TypingSettings {
    throttle_ms: 3000,
    timeout_ms: 5000,
};

// ---- helpers --------------------------------------------------------------

fn room() -> RoomState {
    RoomState::new(ROOM, ME, SETTINGS)
}

/// The stored message `seq` sent by `user_id` (client id `c-<user>-<seq>`).
fn msg(seq: u64, user_id: &str) -> StoredMessage {
    StoredMessage {
        message_id: format!("m_{seq}"),
        room_id: ROOM.into(),
        seq,
        user_id: user_id.into(),
        text: Some(format!("text {seq}")),
        ciphertext: None,
        sent_at: 1_760_000_000_000 + seq,
        client_id: format!("c-{user_id}-{seq}"),
    }
}

/// My stored message `seq` with `client_id` and `text`.
fn mine(seq: u64, client_id: &str, text: &str) -> StoredMessage {
    StoredMessage {
        client_id: client_id.into(),
        text: Some(text.into()),
        ..msg(seq, ME)
    }
}

/// Messages `from..=to` sent by Ada.
fn range(from: u64, to: u64) -> Vec<StoredMessage> {
    (from..=to).map(|seq| msg(seq, ADA)).collect()
}

fn added_seqs(applied: &Applied) -> Vec<u64> {
    applied.added.iter().map(|m| m.seq.unwrap()).collect()
}

/// `(seq, status)` of every shown message, in order.
fn shown(room: &RoomState) -> Vec<(Option<u64>, DeliveryStatus)> {
    room.messages().iter().map(|m| (m.seq, m.status)).collect()
}

fn stored_seqs(room: &RoomState) -> Vec<u64> {
    room.messages().iter().filter_map(|m| m.seq).collect()
}

/// A room whose latest page held `from..=to` (Ada's), older ones existing when `from > 1`.
fn loaded(from: u64, to: u64) -> RoomState {
    let mut room = room();
    room.apply_latest_page(range(from, to), from > 1, 0)
        .unwrap();
    room
}

fn code(result: Result<impl std::fmt::Debug, Error>) -> &'static str {
    result.expect_err("an error").code()
}

fn backend_message() -> Value {
    json!({
        "message_id": "m_0123456789abcdef0123456789abcdef",
        "room_id": ROOM,
        "seq": 7,
        "user_id": ADA,
        "text": "hello",
        "sent_at": 1_760_000_000_000u64,
        "client_id": "c-9d2"
    })
}

// ---- reading backend messages ---------------------------------------------

#[test]
fn reads_a_backend_text_message() {
    let m = StoredMessage::from_json(backend_message()).unwrap();
    assert_eq!(m.message_id, "m_0123456789abcdef0123456789abcdef");
    assert_eq!(m.room_id, ROOM);
    assert_eq!(m.seq, 7);
    assert_eq!(m.user_id, ADA);
    assert_eq!(m.text.as_deref(), Some("hello"));
    assert_eq!(m.ciphertext, None);
    assert_eq!(m.sent_at, 1_760_000_000_000);
    assert_eq!(m.client_id, "c-9d2");
}

#[test]
fn reads_a_ciphertext_message_and_ignores_unknown_fields() {
    let mut value = backend_message();
    value["text"] = Value::Null;
    value["ciphertext"] = json!({"v": 1, "ct": "AAAA"});
    value["extra"] = json!("ignored");
    let m = StoredMessage::from_json(value).unwrap();
    assert_eq!(m.text, None);
    let ciphertext: Value =
        domvia_realtime::json::from_str(m.ciphertext.as_deref().unwrap()).unwrap();
    assert_eq!(ciphertext, json!({"v": 1, "ct": "AAAA"}));
}

#[test]
fn whole_floats_are_integers_as_js_numbers_are() {
    let mut value = backend_message();
    value["seq"] = json!(7.0);
    value["sent_at"] = json!(1_760_000_000_000.0);
    let m = StoredMessage::from_json(value).unwrap();
    assert_eq!((m.seq, m.sent_at), (7, 1_760_000_000_000));
}

#[test]
fn the_largest_exact_js_integer_is_accepted() {
    let mut value = backend_message();
    value["seq"] = json!(9_007_199_254_740_991u64);
    assert_eq!(StoredMessage::from_json(value).unwrap().seq, (1 << 53) - 1);
}

#[test]
fn malformed_messages_are_invalid_message_never_a_panic() {
    let mut cases: Vec<Value> = vec![json!(null), json!("m_1"), json!([1, 2]), json!({})];
    let edits: Vec<(&str, Value)> = vec![
        ("message_id", Value::Null),
        ("message_id", json!("")),
        ("message_id", json!(7)),
        ("room_id", Value::Null),
        ("user_id", json!(false)),
        ("client_id", Value::Null),
        ("seq", Value::Null),
        ("seq", json!(0)),
        ("seq", json!(-1)),
        ("seq", json!(1.5)),
        ("seq", json!("7")),
        ("sent_at", json!(-5)),
        ("sent_at", json!(1e300)),
        ("seq", json!(9_007_199_254_740_992u64)), // 2^53: not exact as a JS number
        ("text", json!(5)),
        ("text", Value::Null), // neither text nor ciphertext
        ("ciphertext", json!("not an object")),
        ("ciphertext", json!({"ct": "x"})), // both text and ciphertext
    ];
    for (field, value) in edits {
        let mut message = backend_message();
        message[field] = value;
        cases.push(message);
    }
    let mut missing = backend_message();
    missing.as_object_mut().unwrap().remove("seq");
    cases.push(missing);
    for case in cases {
        let error = StoredMessage::from_json(case.clone()).expect_err(&case.to_string());
        assert_eq!(error.code(), "invalid_message", "{case}");
        assert!(error
            .to_string()
            .starts_with("unable to read the message; "));
    }
}

#[test]
fn messages_of_another_room_are_refused_whole() {
    let mut room = room();
    let mut page = range(1, 3);
    page[1].room_id = "r_other".into();
    assert_eq!(
        code(room.apply_latest_page(page, false, 0)),
        "invalid_message"
    );
    assert_eq!(room.message_count(), 0, "nothing of the page was applied");

    let mut foreign = msg(1, ADA);
    foreign.room_id = "r_other".into();
    assert_eq!(code(room.apply_created(foreign, 0)), "invalid_message");
    assert_eq!(room.message_count(), 0);
}

// ---- order and dedup ------------------------------------------------------

#[test]
fn out_of_order_events_are_shown_by_seq() {
    let mut room = loaded(1, 2);
    for seq in [5, 3, 6, 4] {
        room.apply_created(msg(seq, ADA), 0).unwrap();
    }
    assert_eq!(stored_seqs(&room), vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn duplicates_by_seq_or_message_id_are_dropped_and_added_once() {
    let mut room = loaded(1, 2);
    let first = room.apply_created(msg(3, ADA), 0).unwrap();
    assert_eq!(added_seqs(&first), vec![3]);
    assert!(room.apply_created(msg(3, ADA), 0).unwrap().added.is_empty());
    // The same message id under another seq (a corrupt copy) is not shown twice.
    let mut same_id = msg(4, ADA);
    same_id.message_id = "m_3".into();
    assert!(room.apply_created(same_id, 0).unwrap().added.is_empty());
    // A catch-up page repeating everything adds nothing.
    let again = room.apply_catch_up_page(range(1, 3), false, 0).unwrap();
    assert!(again.added.is_empty());
    assert_eq!(stored_seqs(&room), vec![1, 2, 3]);
}

#[test]
fn added_is_ascending_even_when_a_page_is_not() {
    let mut room = loaded(1, 1);
    let mut page = range(2, 6);
    page.reverse();
    let applied = room.apply_catch_up_page(page, false, 0).unwrap();
    assert_eq!(added_seqs(&applied), vec![2, 3, 4, 5, 6]);
    assert!(applied
        .added
        .iter()
        .all(|m| m.status == DeliveryStatus::Sent));
}

#[test]
fn the_latest_page_is_added_too() {
    // The room reports it as new; the SDK decides not to fire onMessage for it.
    let mut room = room();
    let applied = room.apply_latest_page(range(8, 10), true, 0).unwrap();
    assert_eq!(added_seqs(&applied), vec![8, 9, 10]);
    assert_eq!(applied.catch_up_after, None);
}

// ---- gaps and catch-up ----------------------------------------------------

#[test]
fn contiguous_events_need_no_catch_up() {
    let mut room = loaded(1, 5);
    assert_eq!(room.catch_up_cursor(), 5);
    for seq in 6..=9 {
        let applied = room.apply_created(msg(seq, BOB), 0).unwrap();
        assert_eq!(applied.catch_up_after, None);
        assert_eq!(room.catch_up_cursor(), seq);
    }
}

#[test]
fn a_gap_asks_for_catch_up_after_the_highest_contiguous_seq() {
    let mut room = loaded(1, 5);
    let applied = room.apply_created(msg(8, ADA), 0).unwrap();
    assert_eq!(added_seqs(&applied), vec![8]);
    assert_eq!(applied.catch_up_after, Some(5));
    assert_eq!(room.catch_up_cursor(), 5);
    // Still missing: every later event says so again.
    assert_eq!(
        room.apply_created(msg(9, ADA), 0).unwrap().catch_up_after,
        Some(5)
    );
    // The catch-up page (after=5) fills the hole and repeats 8 and 9.
    let filled = room.apply_catch_up_page(range(6, 9), false, 0).unwrap();
    assert_eq!(added_seqs(&filled), vec![6, 7]);
    assert_eq!(filled.catch_up_after, None);
    assert_eq!(room.catch_up_cursor(), 9);
    assert_eq!(stored_seqs(&room), (1..=9).collect::<Vec<_>>());
}

#[test]
fn a_hole_filled_by_a_late_event_closes_the_gap() {
    let mut room = loaded(1, 5);
    room.apply_created(msg(7, ADA), 0).unwrap();
    let applied = room.apply_created(msg(6, ADA), 0).unwrap();
    assert_eq!(applied.catch_up_after, None);
    assert_eq!(room.catch_up_cursor(), 7);
}

#[test]
fn catch_up_pages_with_has_more_ask_for_the_next_page() {
    let mut room = loaded(1, 10);
    // After a reconnect: after=10, 100 at a time; here pages of 3.
    let first = room.apply_catch_up_page(range(11, 13), true, 0).unwrap();
    assert_eq!(first.catch_up_after, Some(13));
    let second = room.apply_catch_up_page(range(14, 16), true, 0).unwrap();
    assert_eq!(second.catch_up_after, Some(16));
    let last = room.apply_catch_up_page(range(17, 17), false, 0).unwrap();
    assert_eq!(last.catch_up_after, None);
    assert_eq!(room.catch_up_cursor(), 17);
    // An empty last page (nothing new) is fine too.
    let empty = room.apply_catch_up_page(vec![], false, 0).unwrap();
    assert_eq!(empty, Applied::default());
}

#[test]
fn a_catch_up_page_with_has_more_over_a_hole_asks_from_the_hole() {
    let mut room = loaded(1, 3);
    room.apply_created(msg(9, ADA), 0).unwrap();
    let page = room.apply_catch_up_page(range(4, 5), true, 0).unwrap();
    assert_eq!(page.catch_up_after, Some(5));
}

#[test]
fn events_before_the_latest_page_report_no_gap_until_the_page_sets_the_base() {
    let mut room = room();
    // Subscribed before the history request: an event arrives first.
    let early = room.apply_created(msg(101, ADA), 0).unwrap();
    assert_eq!(added_seqs(&early), vec![101]);
    assert_eq!(early.catch_up_after, None, "no base yet: not a gap from 0");
    assert_eq!(room.catch_up_cursor(), 0);
    // The latest page (51..=100) joins up with it.
    let page = room.apply_latest_page(range(51, 100), true, 0).unwrap();
    assert_eq!(page.added.len(), 50);
    assert_eq!(page.catch_up_after, None);
    assert_eq!(room.catch_up_cursor(), 101);
    assert_eq!(room.older_cursor(), Some(51));
}

#[test]
fn an_early_event_beyond_the_latest_page_is_a_gap() {
    let mut room = room();
    room.apply_created(msg(105, ADA), 0).unwrap();
    let page = room.apply_latest_page(range(51, 100), true, 0).unwrap();
    assert_eq!(page.catch_up_after, Some(100));
}

#[test]
fn an_empty_room_counts_from_zero() {
    let mut room = room();
    let page = room.apply_latest_page(vec![], false, 0).unwrap();
    assert_eq!(page, Applied::default());
    assert_eq!(room.catch_up_cursor(), 0);
    assert_eq!(room.older_cursor(), None);
    assert!(!room.has_older());
    assert_eq!(
        room.apply_created(msg(1, ADA), 0).unwrap().catch_up_after,
        None
    );
    assert_eq!(
        room.apply_created(msg(3, ADA), 0).unwrap().catch_up_after,
        Some(1)
    );
}

#[test]
fn an_empty_room_with_a_missed_first_message_catches_up_from_zero() {
    let mut room = room();
    room.apply_latest_page(vec![], false, 0).unwrap();
    assert_eq!(
        room.apply_created(msg(2, ADA), 0).unwrap().catch_up_after,
        Some(0)
    );
}

// ---- older pages ----------------------------------------------------------

#[test]
fn older_pages_move_the_older_cursor_down_to_the_first_message() {
    let mut room = loaded(101, 150);
    assert!(room.has_older());
    assert_eq!(room.older_cursor(), Some(101));
    let page = room.apply_older_page(range(51, 100), true, 0).unwrap();
    assert_eq!(added_seqs(&page), (51..=100).collect::<Vec<_>>());
    assert_eq!(page.catch_up_after, None);
    assert_eq!(room.older_cursor(), Some(51));
    room.apply_older_page(range(1, 50), false, 0).unwrap();
    assert_eq!(room.older_cursor(), None);
    assert!(!room.has_older());
    assert_eq!(stored_seqs(&room), (1..=150).collect::<Vec<_>>());
    assert_eq!(room.catch_up_cursor(), 150);
}

#[test]
fn a_latest_page_without_more_has_no_older() {
    let room = loaded(1, 20);
    assert_eq!(room.older_cursor(), None);
}

#[test]
fn an_overlapping_older_page_adds_only_what_is_new() {
    let mut room = loaded(41, 60);
    let page = room.apply_older_page(range(21, 45), true, 0).unwrap();
    assert_eq!(added_seqs(&page), (21..=40).collect::<Vec<_>>());
    assert_eq!(room.older_cursor(), Some(21));
}

#[test]
fn older_pages_do_not_move_the_catch_up_cursor_or_report_gaps_below() {
    let mut room = loaded(51, 60);
    room.apply_created(msg(62, ADA), 0).unwrap();
    let page = room.apply_older_page(range(41, 50), true, 0).unwrap();
    assert_eq!(
        page.catch_up_after,
        Some(60),
        "the hole at 61 is still there"
    );
    assert_eq!(room.catch_up_cursor(), 60);
}

// ---- sending --------------------------------------------------------------

#[test]
fn a_send_shows_at_once_as_sending_after_the_stored_messages() {
    let mut room = loaded(1, 2);
    let pending = room.begin_send("c-1", "hi", 5_000).unwrap();
    assert_eq!(
        pending,
        ChatMessage {
            message_id: None,
            room_id: ROOM.into(),
            seq: None,
            user_id: ME.into(),
            text: Some("hi".into()),
            ciphertext: None,
            sent_at: 5_000,
            client_id: "c-1".into(),
            status: DeliveryStatus::Sending,
        }
    );
    room.apply_created(msg(3, ADA), 0).unwrap();
    assert_eq!(
        shown(&room),
        vec![
            (Some(1), DeliveryStatus::Sent),
            (Some(2), DeliveryStatus::Sent),
            (Some(3), DeliveryStatus::Sent),
            (None, DeliveryStatus::Sending),
        ]
    );
    assert_eq!(room.message_count(), 4);
    assert_eq!(
        room.pending_sends(),
        vec![OutgoingSend {
            client_id: "c-1".into(),
            text: "hi".into()
        }]
    );
}

#[test]
fn the_send_response_first_then_the_event_shows_it_once() {
    let mut room = loaded(1, 2);
    room.begin_send("c-1", "hi", 0).unwrap();
    let response = room.send_succeeded("c-1", mine(3, "c-1", "hi"), 0).unwrap();
    assert_eq!(added_seqs(&response), vec![3]);
    assert_eq!(response.added[0].status, DeliveryStatus::Sent);
    let event = room.apply_created(mine(3, "c-1", "hi"), 0).unwrap();
    assert!(event.added.is_empty());
    assert_eq!(stored_seqs(&room), vec![1, 2, 3]);
    assert_eq!(room.message_count(), 3);
    assert!(room.pending_sends().is_empty());
}

#[test]
fn the_event_first_then_the_send_response_shows_it_once() {
    let mut room = loaded(1, 2);
    room.begin_send("c-1", "hi", 0).unwrap();
    let event = room.apply_created(mine(3, "c-1", "hi"), 0).unwrap();
    assert_eq!(added_seqs(&event), vec![3]);
    assert_eq!(room.message_count(), 3, "the pending copy is gone");
    let response = room.send_succeeded("c-1", mine(3, "c-1", "hi"), 0).unwrap();
    assert!(response.added.is_empty());
    assert_eq!(
        shown(&room),
        vec![
            (Some(1), DeliveryStatus::Sent),
            (Some(2), DeliveryStatus::Sent),
            (Some(3), DeliveryStatus::Sent)
        ]
    );
}

#[test]
fn a_catch_up_page_confirms_a_pending_send() {
    let mut room = loaded(1, 2);
    room.begin_send("c-1", "hi", 0).unwrap();
    room.begin_send("c-2", "there", 1).unwrap();
    let page = room
        .apply_catch_up_page(vec![mine(3, "c-1", "hi"), msg(4, ADA)], false, 0)
        .unwrap();
    assert_eq!(added_seqs(&page), vec![3, 4]);
    assert_eq!(
        shown(&room),
        vec![
            (Some(1), DeliveryStatus::Sent),
            (Some(2), DeliveryStatus::Sent),
            (Some(3), DeliveryStatus::Sent),
            (Some(4), DeliveryStatus::Sent),
            (None, DeliveryStatus::Sending),
        ]
    );
    assert_eq!(room.pending_sends()[0].client_id, "c-2");
}

#[test]
fn another_users_message_with_my_client_id_does_not_confirm_mine() {
    let mut room = loaded(1, 1);
    room.begin_send("c-1", "hi", 0).unwrap();
    let mut theirs = msg(2, ADA);
    theirs.client_id = "c-1".into();
    room.apply_created(theirs, 0).unwrap();
    assert_eq!(room.pending_sends().len(), 1);
}

#[test]
fn my_message_from_another_tab_is_a_plain_stored_message() {
    let mut room = loaded(1, 1);
    let applied = room
        .apply_created(mine(2, "c-other-tab", "hey"), 0)
        .unwrap();
    assert_eq!(added_seqs(&applied), vec![2]);
    assert_eq!(applied.added[0].user_id, ME);
    assert!(room.pending_sends().is_empty());
}

#[test]
fn a_failed_send_is_retried_with_its_text_and_client_id() {
    let mut room = loaded(1, 1);
    room.begin_send("c-1", "one", 0).unwrap();
    room.begin_send("c-2", "two", 1).unwrap();
    room.begin_send("c-3", "three", 2).unwrap();
    assert!(room.send_failed("c-2"));
    assert!(!room.send_failed("c-2"), "already failed");
    assert_eq!(
        room.message_by_client_id("c-2").unwrap().status,
        DeliveryStatus::Failed
    );
    let clients: Vec<String> = room
        .pending_sends()
        .into_iter()
        .map(|s| s.client_id)
        .collect();
    assert_eq!(clients, vec!["c-1", "c-3"], "only 'sending', oldest first");

    assert_eq!(room.retry("c-2").unwrap(), "two");
    assert_eq!(
        room.message_by_client_id("c-2").unwrap().status,
        DeliveryStatus::Sending
    );
    let clients: Vec<String> = room
        .pending_sends()
        .into_iter()
        .map(|s| s.client_id)
        .collect();
    assert_eq!(
        clients,
        vec!["c-1", "c-2", "c-3"],
        "keeps its place in send order"
    );
    // The view keeps send order too.
    let texts: Vec<String> = room
        .messages()
        .into_iter()
        .filter(|m| m.seq.is_none())
        .map(|m| m.text.unwrap())
        .collect();
    assert_eq!(texts, vec!["one", "two", "three"]);
}

#[test]
fn retry_rejects_sending_sent_and_unknown_client_ids() {
    let mut room = loaded(1, 1);
    room.begin_send("c-1", "hi", 0).unwrap();
    assert_eq!(
        code(room.retry("c-1")),
        "unknown_client_id",
        "still sending"
    );
    assert_eq!(code(room.retry("c-nope")), "unknown_client_id");
    room.send_succeeded("c-1", mine(2, "c-1", "hi"), 0).unwrap();
    let error = room.retry("c-1").unwrap_err();
    assert_eq!(error.code(), "unknown_client_id", "sent is final");
    assert!(error.to_string().contains("\"c-1\""));
}

#[test]
fn sent_never_goes_back() {
    let mut room = loaded(1, 1);
    room.begin_send("c-1", "hi", 0).unwrap();
    room.apply_created(mine(2, "c-1", "hi"), 0).unwrap();
    assert!(
        !room.send_failed("c-1"),
        "a late failure of a stored send is ignored"
    );
    let m = room.message_by_client_id("c-1").unwrap();
    assert_eq!((m.seq, m.status), (Some(2), DeliveryStatus::Sent));
    assert_eq!(room.message_count(), 2);
    assert!(!room.send_failed("c-unknown"));
}

#[test]
fn a_failed_send_that_turns_out_stored_becomes_sent() {
    let mut room = loaded(1, 1);
    room.begin_send("c-1", "hi", 0).unwrap();
    room.send_failed("c-1");
    let applied = room.apply_created(mine(2, "c-1", "hi"), 0).unwrap();
    assert_eq!(added_seqs(&applied), vec![2]);
    assert_eq!(room.message_count(), 2);
    assert_eq!(code(room.retry("c-1")), "unknown_client_id");
}

#[test]
fn a_send_response_for_another_client_id_is_refused() {
    let mut room = loaded(1, 1);
    room.begin_send("c-1", "hi", 0).unwrap();
    assert_eq!(
        code(room.send_succeeded("c-1", mine(2, "c-2", "hi"), 0)),
        "invalid_message"
    );
    assert_eq!(room.pending_sends().len(), 1);
    assert_eq!(room.message_count(), 2);
}

#[test]
fn a_send_response_retires_its_pending_send_whatever_the_sender_id() {
    let mut room = loaded(1, 1);
    room.begin_send("c-1", "hi", 0).unwrap();
    let mut stored = mine(2, "c-1", "hi");
    stored.user_id = "u_me_as_the_backend_knows_me".into();
    room.send_succeeded("c-1", stored, 0).unwrap();
    assert!(room.pending_sends().is_empty());
    assert_eq!(room.message_count(), 2, "shown once");
}

#[test]
fn client_ids_are_checked_and_never_reused() {
    let mut room = loaded(1, 1);
    room.begin_send("c-1", "hi", 0).unwrap();
    assert_eq!(
        code(room.begin_send("c-1", "again", 0)),
        "invalid_client_id"
    );
    room.send_succeeded("c-1", mine(2, "c-1", "hi"), 0).unwrap();
    assert_eq!(
        code(room.begin_send("c-1", "again", 0)),
        "invalid_client_id"
    );
    for bad in ["", "c 1", "c/1", "ü", &"c".repeat(65)] {
        assert_eq!(
            code(room.begin_send(bad, "hi", 0)),
            "invalid_client_id",
            "{bad:?}"
        );
    }
    room.begin_send(&format!("c-{}", "a".repeat(62)), "hi", 0)
        .unwrap();
    room.begin_send("c-0123456789abcdef0123456789abcdef", "hi", 0)
        .unwrap();
}

#[test]
fn message_by_client_id_finds_pending_and_stored() {
    let mut room = loaded(1, 1);
    assert_eq!(room.message_by_client_id("c-1"), None);
    room.begin_send("c-1", "hi", 0).unwrap();
    assert_eq!(room.message_by_client_id("c-1").unwrap().seq, None);
    room.apply_created(mine(2, "c-1", "hi"), 0).unwrap();
    let stored = room.message_by_client_id("c-1").unwrap();
    assert_eq!(stored.message_id.as_deref(), Some("m_2"));
    // Another user's client id is not mine.
    assert_eq!(room.message_by_client_id("c-u_ada-1"), None);
}

// ---- text validation ------------------------------------------------------

#[test]
fn text_is_checked_as_the_backend_does() {
    assert_eq!(code(validate_text("")), "invalid_text");
    assert!(validate_text("a").is_ok());
    assert!(validate_text(&"a".repeat(MAX_TEXT_BYTES)).is_ok());
    let error = validate_text(&"a".repeat(MAX_TEXT_BYTES + 1)).unwrap_err();
    assert_eq!(error.code(), "text_too_large");
    assert!(error.to_string().contains("4001"), "{error}");
    // Bytes, not characters: 1334 euro signs are 4002 bytes.
    assert_eq!(code(validate_text(&"€".repeat(1334))), "text_too_large");
    assert!(validate_text(&"€".repeat(1333)).is_ok());
    assert!(validate_text("line one\nline two\r\n\tindented").is_ok());
    assert!(
        validate_text(" ").is_ok(),
        "whitespace is text to the backend"
    );
    assert!(validate_text("emoji 👋 and ünïcode").is_ok());
    for (bad, named) in [
        ("\u{0}", "U+0000"),
        ("a\u{7}b", "U+0007"),
        ("\u{1b}[31m", "U+001B"),
        ("del\u{7f}", "U+007F"),
        ("c1\u{85}", "U+0085"),
        ("\u{9f}", "U+009F"),
    ] {
        let error = validate_text(bad).unwrap_err();
        assert_eq!(error.code(), "invalid_text", "{bad:?}");
        assert!(error
            .to_string()
            .starts_with("unable to send the message; "));
        // The message names the character, as U+ and four hex digits.
        assert!(error.to_string().contains(named), "{error}");
    }
}

#[test]
fn a_bad_text_fails_fast_and_shows_nothing() {
    let mut room = loaded(1, 1);
    assert_eq!(code(room.begin_send("c-1", "", 0)), "invalid_text");
    assert_eq!(
        code(room.begin_send("c-2", &"x".repeat(4001), 0)),
        "text_too_large"
    );
    assert_eq!(code(room.begin_send("c-3", "bell\u{7}", 0)), "invalid_text");
    assert_eq!(room.message_count(), 1);
    assert!(room.pending_sends().is_empty());
    // The client ids of refused texts stay free.
    room.begin_send("c-1", "ok", 0).unwrap();
}

// ---- typing: outgoing -----------------------------------------------------

#[test]
fn typing_true_goes_out_at_most_once_per_throttle() {
    let mut room = room();
    assert!(room.typing_input(10_000));
    assert!(!room.typing_input(10_001));
    assert!(!room.typing_input(12_999));
    assert!(room.typing_input(13_000));
    assert!(!room.typing_input(15_999));
    assert!(room.typing_input(16_000));
}

#[test]
fn typing_false_goes_out_once_and_only_after_a_true() {
    let mut room = room();
    assert!(!room.typing_stop(), "nothing to stop");
    room.typing_input(0);
    assert!(room.typing_stop());
    assert!(!room.typing_stop());
    // Typing again right after a stop is news: true goes out at once.
    assert!(room.typing_input(1));
    assert!(!room.typing_input(2));
}

#[test]
fn a_clock_that_jumps_back_does_not_silence_typing() {
    let mut room = room();
    assert!(room.typing_input(100_000));
    assert!(room.typing_input(50_000));
    assert!(!room.typing_input(50_001));
}

#[test]
fn a_zero_throttle_sends_every_input() {
    let mut room = RoomState::new(
        ROOM,
        ME,
        TypingSettings {
            throttle_ms: 0,
            timeout_ms: 5000,
        },
    );
    assert!(room.typing_input(0));
    assert!(room.typing_input(0));
}

// ---- typing: incoming -----------------------------------------------------

#[test]
fn a_user_types_until_their_timeout() {
    let mut room = room();
    assert_eq!(room.next_typing_deadline(), None);
    assert!(room.typing_received(ADA, true, 1_000));
    assert_eq!(room.typing_users(), vec![ADA]);
    assert_eq!(room.next_typing_deadline(), Some(6_000));
    assert!(room.expire_typing(5_999).is_empty());
    assert_eq!(room.expire_typing(6_000), vec![ADA]);
    assert!(room.typing_users().is_empty());
    assert_eq!(room.next_typing_deadline(), None);
    assert!(room.expire_typing(100_000).is_empty(), "expires once");
}

#[test]
fn a_repeated_true_extends_without_a_change() {
    let mut room = room();
    assert!(room.typing_received(ADA, true, 0));
    assert!(!room.typing_received(ADA, true, 3_000));
    assert_eq!(room.next_typing_deadline(), Some(8_000));
    assert!(room.expire_typing(5_000).is_empty());
    assert_eq!(room.expire_typing(8_000), vec![ADA]);
}

#[test]
fn a_false_ends_typing_at_once() {
    let mut room = room();
    assert!(!room.typing_received(ADA, false, 0), "was not typing");
    room.typing_received(ADA, true, 0);
    assert!(room.typing_received(ADA, false, 10));
    assert!(room.typing_users().is_empty());
    assert_eq!(room.next_typing_deadline(), None);
}

#[test]
fn typing_users_keep_the_order_they_started_in() {
    let mut room = room();
    room.typing_received(BOB, true, 0);
    room.typing_received(ADA, true, 100);
    room.typing_received(BOB, true, 200);
    assert_eq!(room.typing_users(), vec![BOB, ADA]);
    assert_eq!(
        room.next_typing_deadline(),
        Some(5_100),
        "Ada's is first now"
    );
    assert_eq!(room.expire_typing(5_100), vec![ADA]);
    assert_eq!(room.next_typing_deadline(), Some(5_200));
}

#[test]
fn several_users_expire_together() {
    let mut room = room();
    room.typing_received(ADA, true, 0);
    room.typing_received(BOB, true, 10);
    let mut expired = room.expire_typing(60_000);
    expired.sort();
    assert_eq!(expired, vec![ADA, BOB]);
}

#[test]
fn my_own_user_id_is_never_typing() {
    let mut room = room();
    assert!(!room.typing_received(ME, true, 0));
    assert!(!room.typing_received("", true, 0));
    assert!(room.typing_users().is_empty());
    assert_eq!(room.next_typing_deadline(), None);
}

#[test]
fn a_users_message_ends_their_typing() {
    let mut room = loaded(1, 1);
    room.typing_received(ADA, true, 0);
    room.typing_received(BOB, true, 0);
    let applied = room.apply_created(msg(2, ADA), 10).unwrap();
    assert_eq!(applied.typing_stopped, vec![ADA]);
    assert_eq!(room.typing_users(), vec![BOB]);
    // A catch-up page's messages are news too.
    let caught = room
        .apply_catch_up_page(vec![msg(3, BOB)], false, 20)
        .unwrap();
    assert_eq!(caught.typing_stopped, vec![BOB]);
    assert!(room.typing_users().is_empty());
}

#[test]
fn old_history_does_not_end_anyones_typing() {
    let mut room = loaded(11, 20);
    room.typing_received(ADA, true, 0);
    let older = room.apply_older_page(range(1, 10), false, 10).unwrap();
    assert!(older.typing_stopped.is_empty());
    assert_eq!(room.typing_users(), vec![ADA]);
    // Nor does a duplicate of a message already shown.
    let duplicate = room.apply_created(msg(20, ADA), 10).unwrap();
    assert!(duplicate.typing_stopped.is_empty());
    assert_eq!(room.typing_users(), vec![ADA]);
}

#[test]
fn applying_messages_reports_typing_that_expired_by_now() {
    let mut room = loaded(1, 1);
    room.typing_received(BOB, true, 0);
    let applied = room.apply_created(msg(2, ADA), 5_000).unwrap();
    assert_eq!(applied.typing_stopped, vec![BOB]);
    assert!(room.expire_typing(5_000).is_empty(), "reported once");
}

#[test]
fn typing_settings_default_to_the_documented_values() {
    assert_eq!(
        TypingSettings::default(),
        TypingSettings {
            throttle_ms: 3000,
            timeout_ms: 5000
        }
    );
}

// ---- reads ----------------------------------------------------------------

#[test]
fn unread_counts_others_messages_after_my_position() {
    let mut room = room();
    let page = vec![
        msg(1, ADA),
        mine(2, "c-1", "mine"),
        msg(3, BOB),
        msg(4, ADA),
    ];
    room.apply_latest_page(page, false, 0).unwrap();
    assert_eq!(room.unread_count(), 3, "my own message is not unread");
    room.begin_send("c-2", "pending", 0).unwrap();
    assert_eq!(room.unread_count(), 3, "nor is a pending one");
    room.apply_created(mine(5, "c-2", "pending"), 0).unwrap();
    assert_eq!(room.unread_count(), 3);
    room.apply_created(msg(6, BOB), 0).unwrap();
    assert_eq!(room.unread_count(), 4);
}

#[test]
fn mark_read_moves_my_position_forward_only() {
    let mut room = loaded(1, 5);
    assert_eq!(room.mark_read("m_3"), Some(3));
    assert_eq!(room.unread_count(), 2);
    assert_eq!(room.my_last_read_seq(), 3);
    assert_eq!(room.mark_read("m_3"), None, "no move");
    assert_eq!(room.mark_read("m_2"), None, "backwards");
    assert_eq!(room.unread_count(), 2);
    assert_eq!(room.mark_read("m_unknown"), None);
    assert_eq!(room.mark_read("m_5"), Some(5));
    assert_eq!(room.unread_count(), 0);
    assert_eq!(room.read_positions().get(ME), Some(&5));
}

#[test]
fn a_pending_message_cannot_be_marked_read() {
    let mut room = loaded(1, 1);
    room.begin_send("c-1", "hi", 0).unwrap();
    assert_eq!(room.mark_read("c-1"), None);
}

#[test]
fn set_read_state_seeds_unread_beyond_the_loaded_history() {
    // 100 unread messages, the newest 50 loaded.
    let mut room = room();
    room.set_read_state(0, 100, 100);
    assert_eq!(room.unread_count(), 100, "before any history");
    room.apply_latest_page(range(51, 100), true, 0).unwrap();
    assert_eq!(room.unread_count(), 100);
    room.apply_created(msg(101, BOB), 0).unwrap();
    assert_eq!(room.unread_count(), 101);
    // Loading older pages does not count anything twice.
    room.apply_older_page(range(1, 50), false, 0).unwrap();
    assert_eq!(room.unread_count(), 101);
    assert_eq!(room.mark_read("m_60"), Some(60));
    assert_eq!(room.unread_count(), 41);
    assert_eq!(room.mark_read("m_101"), Some(101));
    assert_eq!(room.unread_count(), 0);
}

#[test]
fn marking_a_loaded_message_read_reads_the_unloaded_older_ones() {
    let mut room = room();
    room.set_read_state(0, 100, 100);
    room.apply_latest_page(range(51, 100), true, 0).unwrap();
    assert_eq!(room.mark_read("m_60"), Some(60));
    assert_eq!(room.unread_count(), 40);
}

#[test]
fn set_read_state_matches_the_backend_when_all_is_loaded() {
    let mut room = room();
    let mut page = range(1, 42);
    page[40] = mine(41, "c-1", "mine"); // seq 41 is mine
    room.apply_latest_page(page, false, 0).unwrap();
    // The backend: last read 39, unread = 40 and 42 (41 is mine).
    room.set_read_state(39, 2, 42);
    assert_eq!(room.unread_count(), 2);
    assert_eq!(room.read_positions().get(ME), Some(&39));
}

#[test]
fn set_read_state_never_moves_my_position_back() {
    let mut room = loaded(1, 10);
    room.mark_read("m_8");
    room.set_read_state(5, 5, 10); // a stale Room object
    assert_eq!(room.my_last_read_seq(), 8);
    assert_eq!(room.read_positions().get(ME), Some(&8));
    assert_eq!(room.unread_count(), 2);
}

#[test]
fn receipts_only_move_forward() {
    let mut room = loaded(1, 10);
    assert!(room.receipt_received(ADA, 4));
    assert!(!room.receipt_received(ADA, 4));
    assert!(!room.receipt_received(ADA, 2));
    // A member at 0 (seeded from Room.members) is listed, though nothing moved.
    assert!(!room.receipt_received(BOB, 0));
    assert!(room.receipt_received(ADA, 9));
    assert!(!room.receipt_received("", 9));
    let expected: BTreeMap<String, u64> = [(ADA.to_owned(), 9), (BOB.to_owned(), 0)]
        .into_iter()
        .collect();
    assert_eq!(positions_of(&room), expected);
    assert_eq!(
        room.unread_count(),
        10,
        "others' receipts leave my count alone"
    );
}

#[test]
fn a_receipt_for_me_from_another_tab_moves_my_unread_count() {
    let mut room = loaded(1, 10);
    assert!(room.receipt_received(ME, 7));
    assert_eq!(room.unread_count(), 3);
    assert_eq!(room.my_last_read_seq(), 7);
    assert_eq!(room.mark_read("m_6"), None, "already read there");
    assert_eq!(room.mark_read("m_9"), Some(9));
}

// ---- properties -----------------------------------------------------------

/// Ways a set of stored messages can reach a room.
#[derive(Clone, Debug)]
enum Op {
    Created(usize),
    Latest { limit: usize },
    Older { limit: usize },
    CatchUp { after: usize, limit: usize },
    Begin(usize),
    Succeeded(usize),
    Failed(usize),
    Retry(usize),
    MarkRead(usize),
    Receipt { user: usize, seq: usize },
}

fn op(n: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..n).prop_map(Op::Created),
        1 => (1..=n).prop_map(|limit| Op::Latest { limit }),
        1 => (1..=n).prop_map(|limit| Op::Older { limit }),
        2 => (0..=n, 1..=n).prop_map(|(after, limit)| Op::CatchUp { after, limit }),
        2 => (0..n).prop_map(Op::Begin),
        2 => (0..n).prop_map(Op::Succeeded),
        1 => (0..n).prop_map(Op::Failed),
        1 => (0..n).prop_map(Op::Retry),
        1 => (0..n).prop_map(Op::MarkRead),
        1 => (0..3usize, 0..=n).prop_map(|(user, seq)| Op::Receipt { user, seq }),
    ]
}

/// `n` stored messages; those at indexes in `mine` are my sends.
fn server(n: usize, mine_mask: u64) -> Vec<StoredMessage> {
    (1..=n as u64)
        .map(|seq| {
            if mine_mask & (1 << (seq % 64)) != 0 {
                StoredMessage {
                    client_id: format!("c-{seq}"),
                    ..msg(seq, ME)
                }
            } else {
                msg(seq, if seq % 2 == 0 { ADA } else { BOB })
            }
        })
        .collect()
}

/// Checks what the room shows: stored messages strictly ascending by seq,
/// each message id and each of my client ids once, pending ones last.
fn check_view(room: &RoomState) {
    let view = room.messages();
    assert_eq!(view.len(), room.message_count());
    let stored: Vec<&ChatMessage> = view.iter().take_while(|m| m.seq.is_some()).collect();
    assert!(view[stored.len()..]
        .iter()
        .all(|m| m.seq.is_none() && m.message_id.is_none() && m.status != DeliveryStatus::Sent));
    assert!(stored.windows(2).all(|w| w[0].seq < w[1].seq), "ascending");
    assert!(stored.iter().all(|m| m.status == DeliveryStatus::Sent));
    let ids: HashSet<&str> = stored
        .iter()
        .map(|m| m.message_id.as_deref().unwrap())
        .collect();
    assert_eq!(ids.len(), stored.len(), "each message id once");
    let my_client_ids: Vec<&str> = view
        .iter()
        .filter(|m| m.user_id == ME)
        .map(|m| m.client_id.as_str())
        .collect();
    let unique: HashSet<&str> = my_client_ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        my_client_ids.len(),
        "a send is never shown twice"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_interleaving_shows_each_message_once_in_seq_order(
        (n, mine_mask, ops) in (1usize..30).prop_flat_map(|n| {
            (Just(n), any::<u64>(), prop::collection::vec(op(n), 0..60))
        })
    ) {
        let all = server(n, mine_mask);
        let mut room = room();
        let mut added: Vec<u64> = Vec::new();
        let mut positions: BTreeMap<String, u64> = BTreeMap::new();
        let record = |added: &mut Vec<u64>, applied: Applied| {
            assert!(applied.added.windows(2).all(|w| w[0].seq < w[1].seq));
            added.extend(applied.added.iter().map(|m| m.seq.unwrap()));
        };
        for op in ops {
            match op {
                Op::Created(i) => record(&mut added, room.apply_created(all[i].clone(), 0).unwrap()),
                Op::Latest { limit } => {
                    let from = n.saturating_sub(limit);
                    let applied = room.apply_latest_page(all[from..].to_vec(), from > 0, 0).unwrap();
                    record(&mut added, applied);
                }
                Op::Older { limit } => {
                    // What the backend answers to before=<older_cursor>.
                    if let Some(before) = room.older_cursor() {
                        let end = (before - 1) as usize;
                        let start = end.saturating_sub(limit);
                        let applied = room.apply_older_page(all[start..end].to_vec(), start > 0, 0).unwrap();
                        record(&mut added, applied);
                    }
                }
                Op::CatchUp { after, limit } => {
                    let end = (after + limit).min(n);
                    let applied = room.apply_catch_up_page(all[after..end].to_vec(), end < n, 0).unwrap();
                    record(&mut added, applied);
                }
                Op::Begin(i) => {
                    let m = &all[i];
                    if m.user_id == ME {
                        // Refused when the client id is in use already: fine.
                        let _ = room.begin_send(&m.client_id, m.text.as_deref().unwrap(), 0);
                    }
                }
                Op::Succeeded(i) => {
                    let m = &all[i];
                    if m.user_id == ME {
                        record(&mut added, room.send_succeeded(&m.client_id, m.clone(), 0).unwrap());
                    }
                }
                Op::Failed(i) => { room.send_failed(&all[i].client_id); }
                Op::Retry(i) => { let _ = room.retry(&all[i].client_id); }
                Op::MarkRead(i) => { room.mark_read(&all[i].message_id); }
                Op::Receipt { user, seq } => {
                    room.receipt_received([ME, ADA, BOB][user], seq as u64);
                }
            }
            check_view(&room);
            // Read positions only move forward.
            for (user, seq) in room.read_positions() {
                prop_assert!(positions.get(user).is_none_or(|before| before <= seq));
            }
            positions = positions_of(&room);
            prop_assert!(room.unread_count() <= n as u64);
        }

        // Each message was added at most once, and only stored ones.
        let unique: HashSet<u64> = added.iter().copied().collect();
        prop_assert_eq!(unique.len(), added.len());
        prop_assert_eq!(stored_seqs(&room), {
            let mut v: Vec<u64> = unique.into_iter().collect();
            v.sort_unstable();
            v
        });

        // Driven by its own cursors, the room then converges on everything.
        let latest_from = n.saturating_sub(10);
        record(&mut added, room.apply_latest_page(all[latest_from..].to_vec(), latest_from > 0, 0).unwrap());
        let mut guard = 0;
        loop {
            let after = room.catch_up_cursor() as usize;
            let end = (after + 7).min(n);
            let applied = room.apply_catch_up_page(all[after..end].to_vec(), end < n, 0).unwrap();
            let again = applied.catch_up_after;
            record(&mut added, applied);
            if again.is_none() { break; }
            guard += 1;
            prop_assert!(guard < 100);
        }
        while let Some(before) = room.older_cursor() {
            let end = (before - 1) as usize;
            let start = end.saturating_sub(7);
            record(&mut added, room.apply_older_page(all[start..end].to_vec(), start > 0, 0).unwrap());
            guard += 1;
            prop_assert!(guard < 200);
        }
        check_view(&room);
        prop_assert_eq!(stored_seqs(&room), (1..=n as u64).collect::<Vec<_>>());
        prop_assert_eq!(room.catch_up_cursor(), n as u64);
        let unique: HashSet<u64> = added.iter().copied().collect();
        prop_assert_eq!(unique.len(), added.len(), "added exactly once each");
        prop_assert_eq!(added.len(), n);
        // Every send of mine is confirmed now: nothing pending.
        prop_assert_eq!(room.message_count(), n);
    }

    #[test]
    fn typing_changes_pair_up_and_never_list_me(
        signals in prop::collection::vec((0..3usize, any::<bool>(), 0u64..20_000), 0..80)
    ) {
        let mut room = room();
        let mut now = 0;
        let mut typing: HashSet<&str> = HashSet::new();
        for (user, is_typing, step) in signals {
            now += step;
            for expired in room.expire_typing(now) {
                prop_assert!(typing.remove(expired.as_str()));
            }
            let user = [ME, ADA, BOB][user];
            let changed = room.typing_received(user, is_typing, now);
            if user == ME {
                prop_assert!(!changed);
            } else {
                let was = typing.contains(user);
                prop_assert_eq!(changed, was != is_typing);
                if is_typing { typing.insert(user); } else { typing.remove(user); }
            }
            let listed: HashSet<&str> = room.typing_users().iter().map(|u| match u.as_str() {
                ADA => ADA, BOB => BOB, other => panic!("unexpected {other}"),
            }).collect();
            prop_assert_eq!(&listed, &typing);
            prop_assert_eq!(room.next_typing_deadline().is_some(), !typing.is_empty());
            if let Some(deadline) = room.next_typing_deadline() {
                prop_assert!(deadline > now && deadline <= now + SETTINGS.timeout_ms);
            }
        }
    }

    #[test]
    fn outgoing_typing_is_throttled(steps in prop::collection::vec((0u64..4_000, any::<bool>()), 0..80)) {
        let mut room = room();
        let mut now = 0;
        let mut last_true: Option<u64> = None;
        for (step, stop) in steps {
            now += step;
            if stop {
                prop_assert_eq!(room.typing_stop(), last_true.is_some());
                last_true = None;
            } else {
                let sent = room.typing_input(now);
                let expected = last_true.is_none_or(|t| now - t >= SETTINGS.throttle_ms);
                prop_assert_eq!(sent, expected);
                if sent { last_true = Some(now); }
            }
        }
    }
}

/// The room's read positions as a BTreeMap, the model these tests compare with.
fn positions_of(room: &RoomState) -> BTreeMap<String, u64> {
    room.read_positions()
        .iter()
        .map(|(user, seq)| (user.clone(), *seq))
        .collect()
}
