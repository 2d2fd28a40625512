//! WebSocket frames: the JSON envelope `{"event", "channel", "data", "user_id"}`.

use crate::json::{ascii_slice, Json, Value};

use super::Error;

/// One WebSocket message of the protocol, before its event is interpreted.
///
/// # The `data` rule
///
/// On the wire `data` is either a JSON string that holds JSON text (what Pusher
/// servers send, and what [`encode`](Frame::encode) writes) or a plain JSON value
/// (what pusher-js sends for `pusher:subscribe` and client events, and what
/// [`encode_inline`](Frame::encode_inline) writes). [`decode`](Frame::decode)
/// accepts both: a string `data` is parsed as JSON when it is JSON text, and kept
/// as a string value when it is not; any other value is kept as it is.
///
/// So that every frame survives the trip, both encoders write a string value as
/// the JSON text of that string (`"x"` goes out as `"\"x\""`), never bare:
/// otherwise a string that happens to look like JSON (`"{}"`, `"1"`, `"null"`)
/// would come back as an object, number or null. pusher-js decodes such data
/// back to the same string. Round trips hold for data nested less than about
/// 120 levels deep; the reader refuses deeper input, as serde_json did.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The event name, such as `pusher:subscribe` or `client-typing`.
    pub event: String,
    /// The channel the event belongs to, if any.
    pub channel: Option<String>,
    /// The decoded event data, if any.
    pub data: Option<Value>,
    /// The sender, stamped by the broker on client events in presence channels.
    pub user_id: Option<String>,
}

/// The prefix of events that clients send to each other through the broker.
pub const CLIENT_EVENT_PREFIX: &str = "client-";

fn malformed(reason: &str) -> Error {
    Error::MalformedFrame {
        reason: reason.to_owned(),
    }
}

/// Compact JSON text of a string.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_json_string(&mut out, text);
    out
}

/// Appends `text` as a JSON string, escaped exactly as serde_json escapes it
/// (`"`, `\` and control characters only), without building a `Value` first.
pub(crate) fn push_json_string(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (at, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(ascii_slice(text, start, at));
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            out.push_str(escape);
        }
        start = at + 1;
    }
    out.push_str(ascii_slice(text, start, text.len()));
    out.push('"');
}

/// Applies the `data` rule: a string holding JSON text becomes that JSON.
fn decode_data(data: Value) -> Value {
    match data {
        Value::String(text) => match crate::json::from_str(&text) {
            Ok(inner) => inner,
            Err(_) => Value::String(text),
        },
        other => other,
    }
}

impl Frame {
    /// A frame with only an event name.
    pub fn new(event: impl Into<String>) -> Frame {
        Frame {
            event: event.into(),
            channel: None,
            data: None,
            user_id: None,
        }
    }

    /// This frame with `channel` set.
    pub fn with_channel(mut self, channel: impl Into<String>) -> Frame {
        self.channel = Some(channel.into());
        self
    }

    /// This frame with `data` set.
    pub fn with_data(mut self, data: Value) -> Frame {
        self.data = Some(data);
        self
    }

    /// This frame with `user_id` set.
    pub fn with_user_id(mut self, user_id: impl Into<String>) -> Frame {
        self.user_id = Some(user_id.into());
        self
    }

    /// True for a `client-` event, sent by one client to the others.
    pub fn is_client_event(&self) -> bool {
        self.event.starts_with(CLIENT_EVENT_PREFIX)
    }

    /// Decodes a frame from WebSocket text, in either the server or the client
    /// form (see the `data` rule on [`Frame`]).
    ///
    /// Fails with [`Error::MalformedFrame`] when the text is not a JSON object,
    /// has no string `event`, or has a `channel` or `user_id` that is neither a
    /// string nor null. Other members are ignored.
    pub fn decode(text: &str) -> Result<Frame, Error> {
        // The one envelope reader, the client's, with `data` then built.
        RawFrame::decode(text).map(RawFrame::into_frame)
    }

    /// Encodes the frame as a server sends it: `data` is a JSON string holding
    /// the JSON text of the data. Absent fields are left out.
    pub fn encode(&self) -> String {
        self.write(|data| json_string(&data.to_string()))
    }

    /// Encodes the frame as pusher-js sends it to the server: `data` is plain
    /// JSON, except that a string is written as the JSON text of the string
    /// (see the `data` rule on [`Frame`]). Absent fields are left out.
    pub fn encode_inline(&self) -> String {
        self.write(|data| match data {
            Value::String(text) => json_string(&json_string(text)),
            other => other.to_string(),
        })
    }

    fn write(&self, data_json: impl Fn(&Value) -> String) -> String {
        let data = self.data.as_ref().map(data_json);
        write_frame(
            &self.event,
            self.channel.as_deref(),
            data.as_deref(),
            self.user_id.as_deref(),
        )
    }
}

/// A decoded frame whose `data` is not yet built into a [`Value`]: what a
/// client reads, so that an app event's data reaches the app as JSON text
/// without being built and written out again (and keeps its key order).
#[derive(Debug)]
pub(crate) struct RawFrame<'a> {
    pub(crate) event: String,
    pub(crate) channel: Option<String>,
    /// The `data` member as read: strings without escapes borrow the text.
    pub(crate) data: Option<Json<'a>>,
    pub(crate) user_id: Option<String>,
}

impl<'a> RawFrame<'a> {
    /// Decodes the envelope as [`Frame::decode`] does, with the same errors
    /// (both use the one reader, so they agree on every text, numbers beyond
    /// the f64 range included), but leaves `data` as read.
    ///
    /// The tree of one pass of the reader is kept, and the members taken
    /// from it: checking the text, then scanning it for the members and
    /// reading each again was most of a received message's cost in the wasm.
    pub(crate) fn decode(text: &'a str) -> Result<RawFrame<'a>, Error> {
        let Some(json) = Json::parse(text) else {
            return Err(malformed("it is not JSON"));
        };
        let Json::Object(members) = json else {
            return Err(malformed("it is not a JSON object"));
        };
        let (mut event, mut channel, mut data, mut user_id) = (None, None, None, None);
        for (key, value) in members {
            // A later duplicate member wins, as in a serde_json::Map.
            match &*key {
                "event" => event = Some(value),
                "channel" => channel = Some(value),
                "data" => data = Some(value),
                "user_id" => user_id = Some(value),
                _ => {}
            }
        }
        let event = match event {
            Some(Json::String(event)) => event.into_owned(),
            Some(_) => return Err(malformed("event is not a string")),
            None => return Err(malformed("it has no event")),
        };
        Ok(RawFrame {
            event,
            channel: optional_text(channel, "channel")?,
            data,
            user_id: optional_text(user_id, "user_id")?,
        })
    }

    /// The frame with `data` built by the `data` rule.
    pub(crate) fn into_frame(self) -> Frame {
        Frame {
            event: self.event,
            channel: self.channel,
            data: self.data.map(|data| decode_data(Value::from_read(data))),
            user_id: self.user_id,
        }
    }

    /// The JSON text of `data` by the `data` rule (see [`data_json`]).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn data_json(&self) -> Option<String> {
        self.data.clone().map(data_json)
    }
}

/// The JSON text of a frame's `data` by the `data` rule, without building a
/// value: a string holding JSON text becomes that text (as the sender wrote
/// it, spacing and key order kept, and moved rather than copied), any other
/// string or value its compact JSON text (key order and numbers as written).
pub(crate) fn data_json(data: Json<'_>) -> String {
    match data {
        Json::String(inner) if is_json(&inner) => inner.into_owned(),
        other => other.to_compact_string(),
    }
}

/// Takes an optional string member as read; `null` counts as absent.
fn optional_text(member: Option<Json<'_>>, key: &str) -> Result<Option<String>, Error> {
    match member {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(text)) => Ok(Some(text.into_owned())),
        Some(_) => Err(Error::MalformedFrame {
            reason: format!("{key} is not a string"),
        }),
    }
}

/// Whether `text` is one JSON value (surrounding whitespace allowed).
pub(crate) fn is_json(text: &str) -> bool {
    Json::parse(text).is_some()
}

/// The frame text with `data_json` written as it is: the one place that lays
/// out the envelope, for frames and for client events whose data is already
/// JSON text.
pub(crate) fn write_frame(
    event: &str,
    channel: Option<&str>,
    data_json: Option<&str>,
    user_id: Option<&str>,
) -> String {
    let mut out = String::with_capacity(
        48 + event.len()
            + channel.map_or(0, str::len)
            + data_json.map_or(0, str::len)
            + user_id.map_or(0, str::len),
    );
    out.push_str("{\"event\":");
    push_json_string(&mut out, event);
    if let Some(channel) = channel {
        out.push_str(",\"channel\":");
        push_json_string(&mut out, channel);
    }
    if let Some(data) = data_json {
        out.push_str(",\"data\":");
        out.push_str(data);
    }
    if let Some(user_id) = user_id {
        out.push_str(",\"user_id\":");
        push_json_string(&mut out, user_id);
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::json;

    fn round_trips(frame: &Frame) {
        assert_eq!(
            Frame::decode(&frame.encode()).as_ref(),
            Ok(frame),
            "{}",
            frame.encode()
        );
        assert_eq!(
            Frame::decode(&frame.encode_inline()).as_ref(),
            Ok(frame),
            "{}",
            frame.encode_inline()
        );
    }

    #[test]
    fn decodes_server_frames_with_double_encoded_data() {
        let text = r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":120}"}"#;
        let frame = Frame::decode(text).unwrap();
        assert_eq!(frame.event, "pusher:connection_established");
        assert_eq!(frame.channel, None);
        assert_eq!(
            frame.data,
            Some(json!({"socket_id": "123.456", "activity_timeout": 120}))
        );
    }

    #[test]
    fn decodes_client_frames_with_inline_data() {
        let text = r#"{"event":"pusher:subscribe","data":{"auth":"","channel":"chat"}}"#;
        let frame = Frame::decode(text).unwrap();
        assert_eq!(frame.data, Some(json!({"auth": "", "channel": "chat"})));
    }

    #[test]
    fn keeps_non_json_string_data_as_a_string() {
        let frame = Frame::decode(r#"{"event":"e","data":"hello"}"#).unwrap();
        assert_eq!(frame.data, Some(json!("hello")));
        let frame = Frame::decode(r#"{"event":"e","data":"{broken"}"#).unwrap();
        assert_eq!(frame.data, Some(json!("{broken")));
    }

    #[test]
    fn reads_user_id_and_channel() {
        let text = r#"{"event":"client-typing","channel":"presence-x","data":"{}","user_id":"u1"}"#;
        let frame = Frame::decode(text).unwrap();
        assert_eq!(
            frame,
            Frame::new("client-typing")
                .with_channel("presence-x")
                .with_data(json!({}))
                .with_user_id("u1")
        );
        assert!(frame.is_client_event());
        let nulls = Frame::decode(r#"{"event":"e","channel":null,"user_id":null}"#).unwrap();
        assert_eq!(nulls, Frame::new("e"));
    }

    #[test]
    fn rejects_malformed_frames() {
        for text in [
            "",
            "not json",
            "[]",
            "\"event\"",
            "null",
            "{}",
            r#"{"event":1}"#,
            r#"{"event":null}"#,
            r#"{"event":"e","channel":1}"#,
            r#"{"event":"e","channel":{}}"#,
            r#"{"event":"e","user_id":42}"#,
            r#"{"event":"e"} trailing"#,
        ] {
            let err = Frame::decode(text).unwrap_err();
            assert_eq!(err.code(), "malformed_frame", "{text:?}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            "{{\"event\":\"e\",\"data\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(Frame::decode(&deep).is_err());
        let inner = "[".repeat(100_000) + &"]".repeat(100_000);
        let text = format!("{{\"event\":\"e\",\"data\":{}}}", json_string(&inner));
        let frame = Frame::decode(&text).unwrap();
        assert_eq!(frame.data, Some(Value::String(inner)));
    }

    #[test]
    fn escapes_strings_as_serde_json_does() {
        let mut text: String = (0u8..0x80).map(char::from).collect();
        text.push_str("é\u{2028}\u{1F600}\u{7ff}");
        for sample in [text.as_str(), "", "plain", "\"\\", "a\u{0}b"] {
            assert_eq!(json_string(sample), serde_json::to_string(sample).unwrap());
        }
    }

    #[test]
    fn encodes_both_forms() {
        let frame = Frame::new("pusher:subscribe").with_data(json!({"channel": "chat"}));
        assert_eq!(
            frame.encode(),
            r#"{"event":"pusher:subscribe","data":"{\"channel\":\"chat\"}"}"#
        );
        assert_eq!(
            frame.encode_inline(),
            r#"{"event":"pusher:subscribe","data":{"channel":"chat"}}"#
        );
        assert_eq!(
            Frame::new("pusher:ping").encode(),
            r#"{"event":"pusher:ping"}"#
        );
        let full = Frame::new("client-x")
            .with_channel("private-a")
            .with_data(json!(1))
            .with_user_id("u");
        assert_eq!(
            full.encode(),
            r#"{"event":"client-x","channel":"private-a","data":"1","user_id":"u"}"#
        );
    }

    #[test]
    fn strings_that_look_like_json_stay_strings() {
        for text in [
            "{}", "\"{}\"", "1", "null", "true", "[1]", "", " ", "hello", "\"", "\\",
        ] {
            let frame = Frame::new("e").with_data(Value::String(text.into()));
            round_trips(&frame);
        }
        let frame = Frame::new("e").with_data(json!("x"));
        assert_eq!(frame.encode(), r#"{"event":"e","data":"\"x\""}"#);
        assert_eq!(frame.encode_inline(), r#"{"event":"e","data":"\"x\""}"#);
    }

    #[test]
    fn round_trips_assorted_frames() {
        let datas = [
            json!(null),
            json!(0),
            json!(-1),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(0.1),
            json!(1e300),
            json!(-2.5e-308),
            json!([]),
            json!({}),
            json!({"a": [1, "b", {"c": null}], "\"q\"": "é\u{1F600}\n\u{0}"}),
        ];
        for data in datas {
            round_trips(&Frame::new("e").with_data(data));
        }
        round_trips(&Frame::new(""));
        round_trips(
            &Frame::new("é\"\\\u{7f}\u{1}")
                .with_channel("\u{2028}")
                .with_user_id("\"}"),
        );
    }

    #[test]
    fn data_json_means_the_frames_data_and_keeps_its_text() {
        let cases = [
            r#"{"event":"e","channel":"c","data":"{\"b\":1, \"a\":[2]}","user_id":"u"}"#,
            r#"{"event":"e","data":{"b":1,"a":"x"},"extra":[1,{"y":null}]}"#,
            r#"{"event":"e","data":"not json"}"#,
            r#"{"event":"e","data":"\"quoted\""}"#,
            r#"{"event":"e","data":7.5,"channel":null}"#,
            r#"{"event":"e","event":"later","data":"1"}"#,
            r#"{"event":"e"}"#,
            r##" { "ev\u0065nt" : "e" , "data" : [ 1 , {"}":"]\\\""} , -1.5e3, true ] , "x":null } "##,
            r#"{"event":"e","user_id":"u","data":"{\"a\":\"\\\"}\"}"}"#,
        ];
        for text in cases {
            let raw = RawFrame::decode(text).unwrap();
            let data_json = raw.data_json();
            let frame = Frame::decode(text).unwrap();
            // The text means the same data as the parsed frame has.
            let data = data_json
                .as_deref()
                .map(|t| crate::json::from_str(t).unwrap());
            assert_eq!(data, frame.data, "{text}");
        }
        // The envelope: a later duplicate wins, an escaped key is its text.
        let frame = Frame::decode(cases[0]).unwrap();
        assert_eq!(
            (
                frame.event.as_str(),
                frame.channel.as_deref(),
                frame.user_id.as_deref()
            ),
            ("e", Some("c"), Some("u"))
        );
        assert_eq!(Frame::decode(cases[5]).unwrap().event, "later");
        assert_eq!(Frame::decode(cases[7]).unwrap().event, "e");
        // The sender's key order and spacing survive.
        let raw = RawFrame::decode(cases[0]).unwrap();
        assert_eq!(raw.data_json().as_deref(), Some(r#"{"b":1, "a":[2]}"#));
        let raw = RawFrame::decode(cases[1]).unwrap();
        assert_eq!(raw.data_json().as_deref(), Some(r#"{"b":1,"a":"x"}"#));
        assert_eq!(
            RawFrame::decode(cases[2]).unwrap().data_json().as_deref(),
            Some(r#""not json""#)
        );
    }

    #[test]
    fn a_frame_that_is_not_an_envelope_fails_with_its_reason() {
        for (text, reason) in [
            ("", "it is not JSON"),
            ("{", "it is not JSON"),
            (r#"{"event":"e"} x"#, "it is not JSON"),
            // Numbers beyond the f64 range too, as serde_json refuses them.
            (r#"{"event":"client-x","data":1e400}"#, "it is not JSON"),
            ("[1,2]", "it is not a JSON object"),
            ("7", "it is not a JSON object"),
            ("null", "it is not a JSON object"),
            (r#""x""#, "it is not a JSON object"),
            ("{}", "it has no event"),
            (r#"{"event":5}"#, "event is not a string"),
            (r#"{"event":"e","channel":5}"#, "channel is not a string"),
            (r#"{"event":"e","user_id":{}}"#, "user_id is not a string"),
        ] {
            assert_eq!(
                Frame::decode(text).unwrap_err(),
                malformed(reason),
                "{text}"
            );
        }
    }
}
