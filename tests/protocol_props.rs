#![cfg(not(target_arch = "wasm32"))]
// Random operations and never-panics properties discard results on purpose.
#![allow(clippy::let_underscore_must_use)]
//! Property tests of the protocol core: round trips, and no panics on any input.

use domvia_realtime::protocol::{
    build_chat_channel_name, chat_room_id, sign_query, validate_channel_name, verify_query,
    ChannelKind, Event, Frame, PresenceSnapshot, WatchlistEvent,
};
use proptest::prelude::*;
use serde_json::{Number, Value};

/// Strings that look like JSON, the hard case of the `data` rule.
fn json_looking_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{}".to_owned()),
        Just("[]".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("\"\"".to_owned()),
        Just("\"{}\"".to_owned()),
        "-?[0-9]{1,20}(\\.[0-9]{1,5})?",
        "\"[a-z{}\\[\\]\"]{0,8}\"",
        "\\{\"[a-z]{0,3}\":[0-9]{1,3}\\}",
        " *(1|\\{\\}) *",
    ]
}

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        2 => "[\"\\\\{}:,a-z\u{0}-\u{1f}\u{7f}\u{2028}\u{1F600}é]{0,12}",
        1 => json_looking_string(),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        (-1000i32..1000, 0u32..4).prop_map(|(n, d)| {
            Value::Number(Number::from_f64(f64::from(n) / 10f64.powi(d as i32)).expect("finite"))
        }),
        any_string().prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any_string(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

const KNOWN_EVENTS: [&str; 15] = [
    "pusher:connection_established",
    "pusher:error",
    "pusher:ping",
    "pusher:pong",
    "pusher:subscribe",
    "pusher:unsubscribe",
    "pusher_internal:subscription_succeeded",
    "pusher:subscription_error",
    "pusher:cache_miss",
    "pusher_internal:subscription_count",
    "pusher_internal:member_added",
    "pusher_internal:member_removed",
    "pusher:signin",
    "pusher:signin_success",
    "pusher_internal:watchlist_events",
];

fn event_name() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any_string(),
        2 => prop::sample::select(&KNOWN_EVENTS[..]).prop_map(str::to_owned),
        1 => "client-[a-z]{1,8}",
    ]
}

/// Data shaped like the protocol's, so that typed parsing gets past the first check.
fn event_data() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("socket_id"),
        Just("activity_timeout"),
        Just("message"),
        Just("code"),
        Just("channel"),
        Just("auth"),
        Just("channel_data"),
        Just("presence"),
        Just("ids"),
        Just("hash"),
        Just("count"),
        Just("type"),
        Just("error"),
        Just("status"),
        Just("subscription_count"),
        Just("user_id"),
        Just("user_info"),
        Just("user_data"),
        Just("events"),
        Just("name"),
        Just("user_ids"),
    ];
    let shaped = json_leaf().prop_recursive(3, 24, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((field.clone(), inner), 0..5).prop_map(|members| {
                Value::Object(
                    members
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            }),
        ]
    });
    prop_oneof![json_value(), shaped]
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        event_name(),
        prop::option::of(any_string()),
        prop::option::of(event_data()),
        prop::option::of(any_string()),
    )
        .prop_map(|(event, channel, data, user_id)| Frame {
            event,
            channel,
            data: data.map(Into::into),
            user_id,
        })
}

/// Typed events with arbitrary field values.
fn typed_event() -> impl Strategy<Value = Event> {
    let s = any_string;
    let os = || prop::option::of(any_string());
    let snapshot = (
        prop::collection::vec(any_string(), 0..4),
        prop::collection::btree_map(any_string(), json_value(), 0..4),
        any::<u32>(),
    )
        .prop_map(|(ids, hash, count)| PresenceSnapshot {
            ids,
            hash: hash
                .into_iter()
                .map(|(id, info)| (id, info.into()))
                .collect(),
            count,
        });
    let watch = prop::collection::vec(
        (s(), prop::collection::vec(any_string(), 0..3))
            .prop_map(|(name, user_ids)| WatchlistEvent { name, user_ids }),
        0..3,
    );
    prop_oneof![
        (s(), any::<u32>()).prop_map(|(socket_id, activity_timeout)| {
            Event::ConnectionEstablished {
                socket_id,
                activity_timeout,
            }
        }),
        (s(), prop::option::of(any::<u16>()))
            .prop_map(|(message, code)| Event::Error { message, code }),
        Just(Event::Ping),
        Just(Event::Pong),
        (s(), os(), os()).prop_map(|(channel, auth, channel_data)| Event::Subscribe {
            channel,
            auth,
            channel_data
        }),
        s().prop_map(|channel| Event::Unsubscribe { channel }),
        (s(), prop::option::of(snapshot))
            .prop_map(|(channel, presence)| Event::SubscriptionSucceeded { channel, presence }),
        (s(), os(), os(), prop::option::of(any::<u16>())).prop_map(
            |(channel, error_type, error, status)| Event::SubscriptionError {
                channel,
                error_type,
                error,
                status
            }
        ),
        s().prop_map(|channel| Event::CacheMiss { channel }),
        (s(), any::<u32>()).prop_map(|(channel, subscription_count)| {
            Event::SubscriptionCount {
                channel,
                subscription_count,
            }
        }),
        (s(), s(), prop::option::of(json_value())).prop_map(|(channel, user_id, user_info)| {
            Event::MemberAdded {
                channel,
                user_id,
                user_info: user_info.map(Into::into),
            }
        }),
        (s(), s()).prop_map(|(channel, user_id)| Event::MemberRemoved { channel, user_id }),
        (s(), s()).prop_map(|(auth, user_data)| Event::Signin { auth, user_data }),
        s().prop_map(|user_data| Event::SigninSuccess { user_data }),
        watch.prop_map(|events| Event::WatchlistEvents { events }),
    ]
}

const NAME_CHARS: &str = "abcXYZ019_-=@,.;";

/// Channel-name-like strings: kind prefixes, allowed characters, some others,
/// and lengths around the 200 limit.
fn channel_like() -> impl Strategy<Value = String> {
    let prefix = prop::sample::select(vec![
        "",
        "private-",
        "presence-",
        "private-encrypted-",
        "private-chat.room.",
        "presence-chat.room.",
        "private-encrypted",
    ]);
    let allowed = prop::collection::vec(
        prop::sample::select(NAME_CHARS.chars().collect::<Vec<_>>()),
        0..8,
    );
    let body = prop_oneof![
        3 => allowed.prop_map(|chars| chars.into_iter().collect::<String>()),
        1 => "[a-z ]{0,4}[#/: é\u{0}][a-z]{0,4}",
        1 => "[a-z0-9]{175,205}",
        1 => any::<String>(),
    ];
    (prefix, body).prop_map(|(prefix, body)| format!("{prefix}{body}"))
}

/// The channel name rule, written independently of the crate.
fn expected_kind(name: &str) -> Option<ChannelKind> {
    let allowed = |c: char| {
        c.is_ascii_lowercase()
            || c.is_ascii_uppercase()
            || c.is_ascii_digit()
            || "_-=@,.;".contains(c)
    };
    let length = name.chars().count();
    if !(1..=200).contains(&length) || !name.chars().all(allowed) {
        return None;
    }
    if ["private-", "presence-", "private-encrypted-"].contains(&name) {
        return None;
    }
    Some(if name.starts_with("private-encrypted-") {
        ChannelKind::PrivateEncrypted
    } else if name.starts_with("private-") {
        ChannelKind::Private
    } else if name.starts_with("presence-") {
        ChannelKind::Presence
    } else {
        ChannelKind::Public
    })
}

fn room_id() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(prop::sample::select(NAME_CHARS.chars().collect::<Vec<_>>()), 0..12)
            .prop_map(|chars| chars.into_iter().collect::<String>()),
        1 => "[a-z]{178,185}",
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frames_round_trip_in_both_forms(frame in frame()) {
        prop_assert_eq!(Frame::decode(&frame.encode()), Ok(frame.clone()), "{}", frame.encode());
        prop_assert_eq!(
            Frame::decode(&frame.encode_inline()),
            Ok(frame.clone()),
            "{}",
            frame.encode_inline()
        );
    }

    #[test]
    fn events_from_any_frame_never_panic_and_typed_ones_round_trip(frame in frame()) {
        if let Ok(event) = Event::from_frame(frame.clone()) {
            if let Event::Custom(custom) = &event {
                prop_assert_eq!(custom, &frame);
            } else {
                prop_assert_eq!(Event::from_frame(event.to_frame()), Ok(event.clone()));
                let text = event.to_frame().encode();
                prop_assert_eq!(Event::from_frame(Frame::decode(&text).unwrap()), Ok(event));
            }
        }
    }

    #[test]
    fn typed_events_round_trip(event in typed_event()) {
        let frame = event.to_frame();
        prop_assert_eq!(frame.event.as_str(), event.name());
        prop_assert_eq!(Event::from_frame(frame.clone()), Ok(event.clone()));
        let server = Frame::decode(&frame.encode()).unwrap();
        prop_assert_eq!(Event::from_frame(server), Ok(event.clone()));
        let inline = Frame::decode(&frame.encode_inline()).unwrap();
        prop_assert_eq!(Event::from_frame(inline), Ok(event));
    }

    #[test]
    fn decode_never_panics_on_strings(text in any::<String>()) {
        let _ = Frame::decode(&text);
    }

    #[test]
    fn decode_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(frame) = Frame::decode(&String::from_utf8_lossy(&bytes)) {
            let _ = Event::from_frame(frame);
        }
    }

    #[test]
    fn decode_never_panics_on_json(value in json_value(), event in event_name()) {
        let _ = Frame::decode(&value.to_string());
        let mut object = serde_json::Map::new();
        object.insert("event".into(), Value::String(event));
        object.insert("data".into(), Value::String(value.to_string()));
        if let Ok(frame) = Frame::decode(&Value::Object(object).to_string()) {
            let _ = Event::from_frame(frame);
        }
    }

    #[test]
    fn chat_channel_names_round_trip(id in room_id(), presence in any::<bool>()) {
        let kind = if presence { ChannelKind::Presence } else { ChannelKind::Private };
        match build_chat_channel_name(&id, presence) {
            Ok(name) => {
                prop_assert_eq!(validate_channel_name(&name), Ok(kind));
                prop_assert_eq!(chat_room_id(&name), Some((id.as_str(), kind)));
            }
            Err(error) => prop_assert_eq!(error.code(), "invalid_room_id"),
        }
    }

    #[test]
    fn chat_room_id_is_injective_per_kind(a in channel_like(), b in channel_like()) {
        if let (Some(x), Some(y)) = (chat_room_id(&a), chat_room_id(&b)) {
            if x == y {
                prop_assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn chat_room_id_only_for_built_names(name in channel_like()) {
        if let Some((id, kind)) = chat_room_id(&name) {
            let rebuilt = build_chat_channel_name(id, kind == ChannelKind::Presence);
            prop_assert_eq!(rebuilt, Ok(name.clone()));
        }
    }

    #[test]
    fn channel_names_follow_the_rule(name in channel_like()) {
        let got = validate_channel_name(&name).ok();
        prop_assert_eq!(got, expected_kind(&name), "{:?}", name);
    }

    #[test]
    fn channel_validation_never_panics(name in any::<String>()) {
        prop_assert_eq!(validate_channel_name(&name).ok(), expected_kind(&name));
    }

    #[test]
    fn verify_query_never_panics(query in any::<String>(), body in any::<Vec<u8>>(), now in any::<u64>()) {
        let _ = verify_query("key", "secret", "POST", "/apps/1/events", &query, &body, now);
    }

    #[test]
    fn verify_query_never_panics_on_query_like_input(
        pairs in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "auth_key", "auth_timestamp", "auth_version", "auth_signature",
                    "body_md5", "AUTH_KEY", "info", "%61uth_key", "",
                ]),
                "[0-9a-f%=+.&]{0,12}|key|1\\.0|1700000000",
            ),
            0..8,
        ),
        now in prop_oneof![Just(1_700_000_000u64), any::<u64>()],
    ) {
        let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = verify_query("key", "secret", "GET", "/p", &query.join("&"), b"", now);
    }

    #[test]
    fn signed_queries_verify(
        params in prop::collection::vec(("[a-z_]{1,8}", any::<String>()), 0..4),
        body in prop::option::of(any::<Vec<u8>>()),
        timestamp in 1_000u64..4_000_000_000,
        method in prop::sample::select(vec!["GET", "POST", "post"]),
    ) {
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let query = sign_query("key", "secret", method, "/apps/1/x", &params, body.as_deref(), timestamp);
        let body = body.unwrap_or_default();
        prop_assert_eq!(
            verify_query("key", "secret", method, "/apps/1/x", &query, &body, timestamp),
            Ok(())
        );
    }
}
