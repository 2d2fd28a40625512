//! Frame decoding on both sides of the wire, from arbitrary text:
//! - the one envelope reader (`Frame::decode`, what the broker reads from
//!   clients, on `RawFrame::decode`, what the SDK reads from servers) never
//!   panics, and the client's JSON text of the data means the data
//!   `Frame::decode` built;
//! - a decoded frame round-trips through both encoders;
//! - a typed event read from a frame round-trips through `Event::to_frame`;
//! - the client's connection machine takes the text as a server message.
#![no_main]

use domvia_realtime::connection::{Connection, Options};
use domvia_realtime::protocol::fuzzing::decode_raw_frame;
use domvia_realtime::protocol::{Event, Frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let server = Frame::decode(text);
    // The client reads the envelope with the same reader; the data's JSON
    // text, as the app gets it, is built another way and means the same data.
    if let (Ok(frame), Ok((_, data_json))) = (&server, decode_raw_frame(text)) {
        let data = data_json
            .as_deref()
            .map(|json| domvia_realtime::json::from_str(json).expect("data_json is JSON"));
        assert_eq!(data.as_ref(), frame.data.as_ref(), "data_json differs");
    }
    if let Ok(frame) = server {
        assert_eq!(Frame::decode(&frame.encode()).as_ref(), Ok(&frame));
        assert_eq!(Frame::decode(&frame.encode_inline()).as_ref(), Ok(&frame));
        if let Ok(event) = Event::from_frame(frame) {
            let again = Event::from_frame(event.to_frame());
            assert_eq!(again.as_ref(), Ok(&event));
            let text = event.to_frame().encode();
            assert_eq!(Frame::decode(&text).and_then(Event::from_frame), Ok(event));
        }
    }
    // The connection machine, connected, reads the text as a server message.
    let mut connection = Connection::new(Options::new("key", "localhost"), 7);
    connection.connect(0);
    connection.socket_opened(1);
    connection.socket_message(2, r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":120}"}"#);
    connection.subscribe(3, "chat").ok();
    connection.subscribe(3, "presence-chat.room.r1").ok();
    while connection.poll_action().is_some() {}
    for line in text.split('\n') {
        connection.socket_message(4, line);
        while connection.poll_action().is_some() {}
    }
});
