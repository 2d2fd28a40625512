//! Bounded random bodies to every route that takes one: never a 5xx.

use axum::http::Method;
use serde_json::{json, Map, Value};

use crate::harness::*;

/// splitmix64: small, deterministic, good enough to shake the input space.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const FIELDS: &[&str] = &[
    "name",
    "kind",
    "member_ids",
    "user_id",
    "client_id",
    "text",
    "ciphertext",
    "seq",
    "epoch",
    "shares",
    "device_id",
    "share",
    "record",
    "socket_id",
    "channel_name",
    "id",
    "before",
];

struct Fuzzer {
    rng: Rng,
    /// Real ids, so that random bodies sometimes get past validation.
    known: Vec<String>,
}

impl Fuzzer {
    fn string(&mut self) -> String {
        match self.rng.below(12) {
            0 => String::new(),
            1 => self.rng.pick(&self.known).clone(),
            2 => format!("{}.{}", self.rng.below(1000), self.rng.below(1000)),
            3 => "x".repeat(self.rng.below(5000)),
            4 => "é🙂\u{0}\u{1b}\"\\".repeat(self.rng.below(8)),
            5 => format!("private-chat.room.{}", self.rng.pick(&self.known)),
            6 => format!("presence-chat.room.{}", self.rng.pick(&self.known)),
            7 => (*self
                .rng
                .pick(&["direct", "group", "public", "private-x", "-1", "1e400"]))
            .to_owned(),
            _ => {
                let len = self.rng.below(20);
                (0..len)
                    .map(|_| char::from(b' ' + (self.rng.below(95) as u8)))
                    .collect()
            }
        }
    }

    fn value(&mut self, depth: usize) -> Value {
        let choice = if depth == 0 {
            self.rng.below(6)
        } else {
            self.rng.below(8)
        };
        match choice {
            0 => Value::Null,
            1 => Value::Bool(self.rng.below(2) == 0),
            2 => json!(*self
                .rng
                .pick(&[0_i64, 1, 2, -1, 7, 100, 101, i64::MAX, i64::MIN])),
            3 => json!(self.rng.next() as f64 / 3.0),
            4 | 5 => Value::String(self.string()),
            6 => Value::Array(
                (0..self.rng.below(5))
                    .map(|_| self.value(depth - 1))
                    .collect(),
            ),
            _ => Value::Object(self.object(depth - 1)),
        }
    }

    fn object(&mut self, depth: usize) -> Map<String, Value> {
        let mut map = Map::new();
        for _ in 0..self.rng.below(6) {
            let key = if self.rng.below(5) == 0 {
                self.string()
            } else {
                (*self.rng.pick(FIELDS)).to_owned()
            };
            let value = self.value(depth);
            map.insert(key, value);
        }
        map
    }

    /// A body: usually a JSON object, sometimes another JSON value, a form,
    /// or raw bytes.
    fn body(&mut self) -> (&'static str, Vec<u8>) {
        match self.rng.below(10) {
            0 => ("application/json", self.value(3).to_string().into_bytes()),
            1 => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                for _ in 0..self.rng.below(4) {
                    let key = *self.rng.pick(FIELDS);
                    let value = self.string();
                    form.append_pair(key, &value);
                }
                (
                    "application/x-www-form-urlencoded",
                    form.finish().into_bytes(),
                )
            }
            2 => {
                let len = self.rng.below(64);
                let bytes = (0..len).map(|_| self.rng.next() as u8).collect();
                (
                    *self.rng.pick(&[
                        "application/json",
                        "text/plain",
                        "application/x-www-form-urlencoded",
                    ]),
                    bytes,
                )
            }
            _ => (
                "application/json",
                Value::Object(self.object(3)).to_string().into_bytes(),
            ),
        }
    }
}

#[tokio::test]
async fn random_bodies_never_cause_a_server_error() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let bob = app.sign_in("Bob").await;
    let room = app.group(&ada, &[&bob]).await;
    app.send(&room, &ada, "seed", "hello").await.expect(201);
    let sealed = app.encrypted_group(&ada, &[&bob]).await;
    app.call(
        Method::PUT,
        "/api/devices/ada-1",
        Some(&ada.token),
        Some(json!({ "record": {} })),
    )
    .await
    .expect(201);
    let mut fuzz = Fuzzer {
        rng: Rng(0x00D0_3B1A),
        known: vec![
            ada.id.clone(),
            bob.id.clone(),
            room.clone(),
            sealed.clone(),
            "ada-1".into(),
            "1.1".into(),
        ],
    };
    let routes = [
        (Method::POST, "/api/session".to_owned()),
        (Method::POST, "/api/rooms".to_owned()),
        (Method::POST, format!("/api/rooms/{room}/members")),
        (Method::POST, format!("/api/rooms/{room}/messages")),
        (Method::POST, format!("/api/rooms/{room}/read")),
        (Method::POST, format!("/api/rooms/{room}/epochs")),
        (Method::POST, format!("/api/rooms/{sealed}/messages")),
        (Method::POST, format!("/api/rooms/{sealed}/epochs")),
        (Method::PUT, "/api/devices/ada-1".to_owned()),
        (Method::PUT, "/api/devices/fuzz-dev".to_owned()),
        (Method::POST, "/realtime/auth".to_owned()),
        (Method::POST, "/realtime/user-auth".to_owned()),
        (Method::POST, "/api/rooms/r_unknown/messages".to_owned()),
    ];
    let mut statuses = std::collections::BTreeMap::new();
    for (method, uri) in &routes {
        for i in 0..120 {
            let (content_type, body) = fuzz.body();
            let token = match i % 5 {
                0 => None,
                1 => Some(bob.token.as_str()),
                _ => Some(ada.token.as_str()),
            };
            let reply = app
                .raw(
                    method.clone(),
                    uri,
                    token,
                    content_type,
                    Some(body.clone()),
                    &[],
                )
                .await;
            assert!(
                reply.status.as_u16() < 500,
                "{method} {uri} with {:?} gave {}: {:#}",
                String::from_utf8_lossy(&body),
                reply.status,
                reply.body
            );
            if reply.status.is_client_error() {
                assert!(
                    reply.body.pointer("/error/code").is_some(),
                    "{method} {uri}: {:#}",
                    reply.body
                );
            }
            *statuses.entry(reply.status.as_u16()).or_insert(0) += 1;
        }
    }
    // Some random bodies got through, most did not.
    assert!(statuses.keys().any(|s| *s < 300), "{statuses:?}");
    assert!(
        statuses.get(&400).copied().unwrap_or(0) > 100,
        "{statuses:?}"
    );

    // Random query strings and path segments on the GET routes.
    for _ in 0..200 {
        let junk: String = fuzz
            .string()
            .chars()
            .filter(|c| !c.is_control() && *c != '#')
            .collect();
        let junk = form_urlencoded::byte_serialize(junk.as_bytes()).collect::<String>();
        for uri in [
            format!("/api/rooms/{room}/messages?before={junk}&limit={junk}"),
            format!("/api/rooms/{room}/messages?after={junk}"),
            format!("/api/users?query={junk}"),
            format!("/api/rooms/{junk}"),
            format!("/api/rooms/{room}/epochs/{junk}/shares?device_id={junk}"),
            format!("/api/rooms/{room}/epochs/{junk}/devices"),
            format!("/api/users/{junk}/devices"),
        ] {
            let reply = app.get(&uri, &ada).await;
            assert!(reply.status.as_u16() < 500, "GET {uri}: {}", reply.status);
        }
    }
}
