//! Hostile input: bounded loops of random frames and random REST requests
//! from a small deterministic generator. The broker must answer each with an
//! error (never a crash, a hang or a 5xx) and keep serving.

mod common;

use common::{http, start, Client, Received, APP_ID, KEY, SECRET};
use domvia_broker::Limits;
use domvia_realtime::protocol::{
    authorize_presence_channel, authorize_private_channel, sign_query, Frame,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// xorshift64*: small, deterministic, good enough to shake a parser.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Up to `max` random bytes.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// A short string, sometimes a valid channel-ish name, sometimes not.
    fn name(&mut self) -> String {
        const CHARS: &[u8] = b"abcXYZ019_-=@,.;#/ \"\\%\xc3\xa9";
        let prefix = *self.pick(&[
            "",
            "private-",
            "presence-",
            "private-encrypted-",
            "client-",
            "pusher:",
        ]);
        let len = self.below(12);
        let tail: Vec<u8> = (0..len).map(|_| *self.pick(CHARS)).collect();
        format!("{prefix}{}", String::from_utf8_lossy(&tail))
    }

    /// A random JSON value, up to `depth` levels deep.
    fn value(&mut self, depth: usize) -> Value {
        match self.below(if depth == 0 { 6 } else { 9 }) {
            0 => Value::Null,
            1 => json!(self.next() % 2 == 0),
            2 => json!(self.next()),
            3 => json!(-(self.below(1000) as i64)),
            4 => json!(self.name()),
            5 => json!(f64::from(self.below(1000) as u32) / 7.0),
            6 => Value::Array((0..self.below(4)).map(|_| self.value(depth - 1)).collect()),
            _ => {
                let mut map = serde_json::Map::new();
                for _ in 0..self.below(4) {
                    let key = self.pick(&[
                        "channel",
                        "auth",
                        "channel_data",
                        "event",
                        "data",
                        "user_id",
                        "name",
                        "x",
                    ]);
                    map.insert((*key).to_owned(), self.value(depth - 1));
                }
                Value::Object(map)
            }
        }
    }
}

/// One hostile frame: text, or binary when `Err`.
fn hostile_frame(rng: &mut Rng, socket_id: &str) -> Result<String, Vec<u8>> {
    let events = [
        "pusher:subscribe",
        "pusher:unsubscribe",
        "pusher:ping",
        "pusher:pong",
        "pusher:error",
        "pusher_internal:member_added",
        "client-typing",
        "client-",
        "typing",
        "",
    ];
    let text = match rng.below(12) {
        0 => String::from_utf8_lossy(&rng.bytes(64)).into_owned(),
        1 => return Err(rng.bytes(64)),
        2 => {
            let frame = json!({"event": rng.pick(&events), "channel": rng.name(), "data": rng.value(3)}).to_string();
            let cut = rng.below(frame.len() + 1);
            frame.get(..cut).unwrap_or("").to_owned()
        }
        3 => json!({"event": rng.value(2), "channel": rng.value(2), "data": rng.value(2), "user_id": rng.value(1)}).to_string(),
        4 => {
            let huge = *rng.pick(&["1e400", "-1e400", "123456789012345678901234567890", "18446744073709551616", "-0", "1.5e-400"]);
            format!(r#"{{"event":"pusher:subscribe","data":{{"channel":{huge},"auth":{huge}}}}}"#)
        }
        5 => {
            let depth = rng.below(300);
            format!(r#"{{"event":"client-x","channel":"private-a","data":{}{}}}"#, "[".repeat(depth), "]".repeat(depth))
        }
        6 => {
            let data = json!({"channel": rng.name(), "auth": rng.name(), "channel_data": rng.value(2)});
            json!({"event": "pusher:subscribe", "data": data}).to_string()
        }
        7 => {
            // Validly signed private and presence subscriptions, with odd user data.
            let suffix = rng.below(5);
            if rng.next() % 2 == 0 {
                let channel = format!("private-h{suffix}");
                let auth = authorize_private_channel(KEY, SECRET, socket_id, &channel).unwrap();
                json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth.auth}}).to_string()
            } else {
                let channel = format!("presence-h{suffix}");
                let user = format!("u{}", rng.below(4));
                let info = rng.value(2);
                let auth = authorize_presence_channel(KEY, SECRET, socket_id, &channel, &user, Some(&info.into())).unwrap();
                json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth.auth, "channel_data": auth.channel_data}}).to_string()
            }
        }
        8 => {
            let channel = format!("{}-h{}", rng.pick(&["private", "presence", "public"]), rng.below(5));
            json!({"event": rng.pick(&["client-typing", "client-x"]), "channel": channel, "data": rng.value(3), "user_id": rng.name()}).to_string()
        }
        9 => {
            let channel = format!("{}-h{}", rng.pick(&["private", "presence"]), rng.below(5));
            json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}).to_string()
        }
        10 => format!(r#"{{"event":"client-x","channel":"private-h1","data":"{}"}}"#, "y".repeat(rng.below(12_000))),
        _ => {
            let escapes = *rng.pick(&[r#""\ud800""#, r#""\u0000""#, r#""\uDFFF\uD800""#, r#""\x""#, "\"\u{7f}\""]);
            format!(r#"{{"event":{escapes},"channel":{escapes},"data":{escapes}}}"#)
        }
    };
    Ok(text)
}

/// Forwards everything a socket receives into a channel until it closes.
fn drain(
    mut stream: futures_util::stream::SplitStream<common::Socket>,
) -> mpsc::UnboundedReceiver<Received> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(next) = stream.next().await {
            let received = match next {
                Ok(Message::Text(text)) => match Frame::decode(text.as_str()) {
                    Ok(frame) => Received::Frame(frame),
                    Err(err) => panic!("the broker sent {text:?}: {err}"),
                },
                Ok(Message::Close(frame)) => Received::Closed(frame.map(|f| u16::from(f.code))),
                Ok(_) => continue,
                Err(_) => Received::Closed(None),
            };
            let closed = matches!(received, Received::Closed(_));
            if tx.send(received).is_err() || closed {
                return;
            }
        }
        tx.send(Received::Closed(None)).ok();
    });
    rx
}

/// Waits for a `pusher:pong`, failing on a close; returns the events before it.
async fn until_pong(rx: &mut mpsc::UnboundedReceiver<Received>) -> Vec<Frame> {
    let mut frames = Vec::new();
    let found = tokio::time::timeout(common::WAIT, async {
        while let Some(received) = rx.recv().await {
            match received {
                Received::Frame(frame) if frame.event == "pusher:pong" => return true,
                Received::Frame(frame) => frames.push(frame),
                Received::Closed(code) => panic!("the hostile connection closed with {code:?}"),
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "no pong after the hostile frames");
    frames
}

fn count(frames: &[Frame], event: &str, code: Option<u64>) -> usize {
    frames
        .iter()
        .filter(|frame| frame.event == event)
        .filter(|frame| {
            code.is_none_or(|code| {
                frame.data.as_ref().and_then(|data| data.get("code")) == Some(&json!(code).into())
            })
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_frames_never_break_the_broker() {
    let server = start(Limits {
        client_events_per_second: 0,
        max_frame_bytes: 16 * 1024,
        ..Limits::default()
    })
    .await;
    let attacker = Client::connect(&server).await;
    let socket_id = attacker.socket_id.clone();
    let (mut sink, stream) = attacker.ws.split();
    let mut replies = drain(stream);

    // A bystander on the same channels receives whatever gets relayed.
    let mut bystander = Client::connect(&server).await;
    for suffix in 0..5 {
        bystander
            .subscribe_private(&format!("private-h{suffix}"))
            .await;
        bystander
            .subscribe_presence(&format!("presence-h{suffix}"), "bystander")
            .await;
    }
    let (_bystander_sink, bystander_stream) = bystander.ws.split();
    let mut bystander_rx = drain(bystander_stream);

    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for i in 0..2_000 {
        let message = match hostile_frame(&mut rng, &socket_id) {
            Ok(text) => Message::text(text),
            Err(bytes) => Message::binary(bytes),
        };
        let shown = format!("{message:?}");
        let sent = tokio::time::timeout(common::WAIT, sink.send(message))
            .await
            .expect("send timed out");
        if let Err(err) = sent {
            let mut last = Vec::new();
            while let Ok(received) = replies.try_recv() {
                last.push(received);
            }
            let tail = &last[last.len().saturating_sub(3)..];
            panic!("frame {i} ({shown:.200}): the broker dropped the hostile connection ({err}); last replies: {tail:?}");
        }
    }
    sink.send(Message::text(r#"{"event":"pusher:ping","data":{}}"#))
        .await
        .unwrap();
    let frames = until_pong(&mut replies).await;
    // The generator reached every kind of answer.
    assert!(count(&frames, "pusher:error", Some(4303)) > 100);
    assert!(count(&frames, "pusher:error", Some(4302)) > 10);
    assert!(count(&frames, "pusher:subscription_error", None) > 20);
    assert!(count(&frames, "pusher_internal:subscription_succeeded", None) > 10);

    let mut fresh = Client::connect(&server).await;
    fresh.ping().await;
    assert_eq!(server.broker.connection_count(), 3);
    // The bystander's connection is still in order too, and got relayed events.
    let mut relayed = 0;
    let mut members_added = 0;
    while let Ok(received) = bystander_rx.try_recv() {
        match received {
            Received::Frame(frame) if frame.event.starts_with("client-") => relayed += 1,
            Received::Frame(frame) if frame.event == "pusher_internal:member_added" => {
                members_added += 1;
            }
            Received::Frame(_) => {}
            Received::Closed(code) => panic!("the bystander was closed with {code:?}"),
        }
    }
    assert!(relayed > 10, "{relayed} client events relayed");
    assert!(members_added > 0);
}

#[tokio::test]
async fn random_rest_requests_never_get_a_5xx() {
    let server = start(Limits::default()).await;
    let mut subscriber = Client::connect(&server).await;
    subscriber.subscribe("a").await;
    subscriber.subscribe_presence("presence-a", "u1").await;
    let (_sink, stream) = subscriber.ws.split();
    let _received = drain(stream);

    let mut rng = Rng(0xfeed_beef_0bad_cafe);
    let segments = [
        "a",
        "presence-a",
        "private-x",
        "%ZZ",
        "%FF%FE",
        "%2F",
        "a%20b",
        "",
        "..",
        "x%00",
        "%E2%82%AC",
    ];
    for round in 0..400 {
        let app = if rng.next() % 4 == 0 {
            (*rng.pick(&segments)).to_owned()
        } else {
            APP_ID.to_owned()
        };
        let segment = *rng.pick(&segments);
        let path = match rng.below(7) {
            0 => format!("/apps/{app}/events"),
            1 => format!("/apps/{app}/batch_events"),
            2 => format!("/apps/{app}/channels"),
            3 => format!("/apps/{app}/channels/{segment}"),
            4 => format!("/apps/{app}/channels/{segment}/users"),
            5 => format!("/app/{segment}"),
            _ => format!("/apps/{segment}/{segment}/{segment}"),
        };
        let method = *rng.pick(&["GET", "POST", "POST", "PUT", "DELETE"]);
        let body: Vec<u8> = match rng.below(5) {
            0 => Vec::new(),
            1 => rng.bytes(100),
            2 => json!({"batch": (0..rng.below(12)).map(|_| rng.value(2)).collect::<Vec<_>>()})
                .to_string()
                .into_bytes(),
            3 => {
                let mut event = json!({"name": rng.value(1), "data": rng.value(2)});
                if rng.next() % 2 == 0 {
                    event["channel"] = rng.value(1);
                } else {
                    event["channels"] = json!([rng.name(), rng.name()]);
                }
                if rng.next() % 2 == 0 {
                    event["socket_id"] = rng.value(1);
                }
                event.to_string().into_bytes()
            }
            _ => rng.value(3).to_string().into_bytes(),
        };
        let info = *rng.pick(&[
            "",
            "user_count",
            "subscription_count",
            "user_count,subscription_count",
            "bogus",
            "%%%",
        ]);
        let prefix = *rng.pick(&["", "presence-", "private-", "a"]);
        let params = [("info", info), ("filter_by_prefix", prefix)];
        let target = match rng.below(4) {
            0 => format!(
                "{path}?{}",
                String::from_utf8_lossy(&rng.bytes(8))
                    .replace(|c: char| !c.is_ascii_graphic(), "%")
            ),
            1 => path.clone(),
            _ => {
                let timestamp = common::now_unix();
                let query = sign_query(KEY, SECRET, method, &path, &params, Some(&body), timestamp);
                format!("{path}?{query}")
            }
        };
        let (status, reply) = http(server.addr, method, &target, &body).await;
        assert!(
            (200..500).contains(&status),
            "round {round}: {method} {target} -> {status} {reply}"
        );
    }
    let mut fresh = Client::connect(&server).await;
    fresh.ping().await;
}
