//! The embedded broker's handling of client frames (`Session::on_text`, what
//! every WebSocket text message reaches), on two connections of one broker:
//! raw text, and subscribe/signin frames carrying valid signatures (so that
//! the fuzzer gets past the auth checks into presence and relay), client
//! events and unsubscribes. Never panics, and everything the broker sends
//! back or relays is a frame `Frame::decode` reads.
#![no_main]

use arbitrary::Arbitrary;
use domvia_broker::fuzzing::SocketSession;
use domvia_broker::{AppCredentials, Broker, Limits};
use domvia_realtime::json_value as json;
use domvia_realtime::protocol::{
    authenticate_user, authorize_presence_channel, authorize_private_channel, Frame,
};
use libfuzzer_sys::fuzz_target;

const KEY: &str = "fuzz-key";
const SECRET: &str = "fuzz-secret";
const CHANNELS: [&str; 6] = [
    "chat",
    "private-chat.room.r1",
    "presence-chat.room.r1",
    "private-encrypted-x",
    "presence-a",
    "private-a",
];

#[derive(Arbitrary, Debug)]
enum Channel {
    Known(u8),
    Any(String),
}

impl Channel {
    fn name(&self) -> String {
        match self {
            Channel::Known(at) => CHANNELS[usize::from(*at) % CHANNELS.len()].to_owned(),
            Channel::Any(name) => name.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Auth {
    Missing,
    /// Signed for this connection: private, or presence with this member.
    Signed {
        user_id: String,
        user_info: Option<String>,
    },
    Raw {
        auth: String,
        channel_data: Option<String>,
    },
}

#[derive(Arbitrary, Debug)]
enum Step {
    Raw {
        second: bool,
        text: String,
    },
    Subscribe {
        second: bool,
        channel: Channel,
        auth: Auth,
    },
    Unsubscribe {
        second: bool,
        channel: Channel,
    },
    ClientEvent {
        second: bool,
        channel: Channel,
        event: String,
        data: String,
    },
    Signin {
        second: bool,
        user_data: String,
        signed: bool,
    },
}

fn subscribe_frame(socket_id: &str, channel: &str, auth: &Auth) -> String {
    let mut data = json!({ "channel": channel });
    match auth {
        Auth::Missing => {}
        Auth::Signed { user_id, user_info } => {
            let info = user_info
                .as_deref()
                .and_then(|text| domvia_realtime::json::from_str(text).ok());
            let signed = authorize_private_channel(KEY, SECRET, socket_id, channel).or_else(|_| {
                authorize_presence_channel(KEY, SECRET, socket_id, channel, user_id, info.as_ref())
            });
            if let Ok(signed) = signed {
                data["auth"] = signed.auth.into();
                if let Some(channel_data) = signed.channel_data {
                    data["channel_data"] = channel_data.into();
                }
            }
        }
        Auth::Raw { auth, channel_data } => {
            data["auth"] = auth.clone().into();
            if let Some(channel_data) = channel_data {
                data["channel_data"] = channel_data.clone().into();
            }
        }
    }
    Frame::new("pusher:subscribe")
        .with_data(data)
        .encode_inline()
}

fn signin_frame(socket_id: &str, user_data: &str, signed: bool) -> String {
    let parsed = domvia_realtime::json::from_str(user_data).ok();
    let data = match parsed.and_then(|value| authenticate_user(KEY, SECRET, socket_id, &value).ok())
    {
        Some(auth) if signed => json!({ "auth": auth.auth, "user_data": auth.user_data }),
        _ => json!({ "auth": format!("{KEY}:00"), "user_data": user_data }),
    };
    Frame::new("pusher:signin").with_data(data).encode_inline()
}

fn check(frames: &[String]) {
    for frame in frames {
        if let Err(err) = Frame::decode(frame) {
            panic!("the broker sent a frame it cannot read ({err}): {frame}");
        }
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let app = AppCredentials {
        id: "1".into(),
        key: KEY.into(),
        secret: SECRET.into(),
    };
    let limits = Limits {
        client_events_per_second: 0,
        max_presence_members: 4,
        max_channels_per_connection: 4,
        max_event_data_bytes: 256,
        max_presence_user_info_bytes: 128,
        ..Limits::default()
    };
    let broker = Broker::new(app, limits);
    let (Some(mut conn_a), Some(mut conn_b)) =
        (SocketSession::open(&broker), SocketSession::open(&broker))
    else {
        panic!("a new broker refused a connection");
    };
    for step in steps.iter().take(64) {
        let (to_second, text) = match step {
            Step::Raw { second, text } => (*second, text.clone()),
            Step::Subscribe {
                second,
                channel,
                auth,
            } => {
                let session = if *second { &conn_b } else { &conn_a };
                (
                    *second,
                    subscribe_frame(session.socket_id(), &channel.name(), auth),
                )
            }
            Step::Unsubscribe { second, channel } => (
                *second,
                Frame::new("pusher:unsubscribe")
                    .with_data(json!({ "channel": channel.name() }))
                    .encode_inline(),
            ),
            Step::ClientEvent {
                second,
                channel,
                event,
                data,
            } => {
                let data =
                    domvia_realtime::json::from_str(data).unwrap_or_else(|_| data.clone().into());
                (
                    *second,
                    Frame::new(format!("client-{event}"))
                        .with_channel(channel.name())
                        .with_data(data)
                        .encode_inline(),
                )
            }
            Step::Signin {
                second,
                user_data,
                signed,
            } => {
                let session = if *second { &conn_b } else { &conn_a };
                (
                    *second,
                    signin_frame(session.socket_id(), user_data, *signed),
                )
            }
        };
        let session = if to_second { &mut conn_b } else { &mut conn_a };
        check(&session.on_text(&text));
        check(&conn_a.delivered());
        check(&conn_b.delivered());
    }
});
