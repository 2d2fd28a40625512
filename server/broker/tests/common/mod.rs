//! Shared helpers: a broker on a real socket, a WebSocket client that speaks
//! protocol 7, and a minimal HTTP/1.1 client for the REST API. Every wait has
//! a timeout so a broken broker fails a test instead of hanging it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use domvia_broker::{AppCredentials, Broker, Limits};
use domvia_realtime::protocol::{
    authorize_presence_channel, authorize_private_channel, sign_query, Frame,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

pub const APP_ID: &str = "4242";
pub const KEY: &str = "test-key";
pub const SECRET: &str = "test-secret";

/// The longest any single wait may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// A broker serving on 127.0.0.1 with a random port.
pub struct Server {
    pub broker: Broker,
    pub addr: SocketAddr,
}

pub async fn start(limits: Limits) -> Server {
    let broker = Broker::new(
        AppCredentials {
            id: APP_ID.into(),
            key: KEY.into(),
            secret: SECRET.into(),
        },
        limits,
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = broker.router();
    tokio::spawn(async move {
        axum::serve(listener, router).await.ok();
    });
    Server { broker, addr }
}

/// What a client read next.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    Frame(Frame),
    /// The connection closed, with the close code when there was a close frame.
    Closed(Option<u16>),
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub ws: Socket,
    pub socket_id: String,
}

/// Opens a WebSocket to `path_and_query` without reading anything.
pub async fn open(addr: SocketAddr, path_and_query: &str) -> Socket {
    let url = format!("ws://{addr}{path_and_query}");
    let (ws, _) = timeout(WAIT, connect_async(url))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    ws
}

/// Reads the next frame or close from a raw socket.
pub async fn receive(ws: &mut Socket) -> Received {
    loop {
        let next = timeout(WAIT, ws.next())
            .await
            .expect("nothing received in time");
        match next {
            None | Some(Err(_)) => return Received::Closed(None),
            Some(Ok(Message::Text(text))) => {
                let frame = Frame::decode(text.as_str())
                    .unwrap_or_else(|err| panic!("the broker sent {text:?}: {err}"));
                return Received::Frame(frame);
            }
            Some(Ok(Message::Close(frame))) => {
                return Received::Closed(frame.map(|frame| u16::from(frame.code)));
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Reads until the socket closes; returns the close code and the events seen.
pub async fn receive_close(ws: &mut Socket) -> (Option<u16>, Vec<Frame>) {
    let mut frames = Vec::new();
    loop {
        match receive(ws).await {
            Received::Frame(frame) => frames.push(frame),
            Received::Closed(code) => return (code, frames),
        }
    }
}

pub fn ws_path() -> String {
    format!("/app/{KEY}?protocol=7&client=js&version=8.6.0&flash=false")
}

impl Client {
    /// Connects and reads `pusher:connection_established`.
    pub async fn connect(server: &Server) -> Client {
        let mut ws = open(server.addr, &ws_path()).await;
        let frame = match receive(&mut ws).await {
            Received::Frame(frame) => frame,
            other => panic!("expected connection_established, got {other:?}"),
        };
        assert_eq!(frame.event, "pusher:connection_established");
        let socket_id = frame
            .data
            .as_ref()
            .and_then(|data| data.get("socket_id"))
            .and_then(domvia_realtime::json::Value::as_str)
            .expect("socket_id")
            .to_owned();
        Client { ws, socket_id }
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        let text: String = text.into();
        timeout(WAIT, self.ws.send(Message::text(text)))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_text(frame.to_string()).await;
    }

    pub async fn next(&mut self) -> Received {
        receive(&mut self.ws).await
    }

    /// The next frame, which must be `event`.
    pub async fn expect(&mut self, event: &str) -> Frame {
        match self.next().await {
            Received::Frame(frame) if frame.event == event => frame,
            other => panic!("expected {event}, got {other:?}"),
        }
    }

    /// The next frame must be `pusher:error` with `code`; returns its message.
    pub async fn expect_error(&mut self, code: u64) -> String {
        let frame = self.expect("pusher:error").await;
        let data = frame.data.unwrap_or_default();
        assert_eq!(data["code"], json!(code), "{data}");
        data["message"].as_str().unwrap_or_default().to_owned()
    }

    /// Nothing arrives for `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        if let Ok(next) = timeout(quiet, self.ws.next()).await {
            panic!("expected silence, got {next:?}");
        }
    }

    /// Reads until the socket closes; returns the close code.
    pub async fn expect_close(&mut self) -> Option<u16> {
        receive_close(&mut self.ws).await.0
    }

    /// A ping answered by a pong proves the connection is open and in order.
    pub async fn ping(&mut self) {
        self.send(json!({"event": "pusher:ping", "data": {}})).await;
        self.expect("pusher:pong").await;
    }

    pub async fn subscribe_with(
        &mut self,
        channel: &str,
        auth: Option<&str>,
        channel_data: Option<&str>,
    ) -> Frame {
        let mut data = json!({ "channel": channel });
        if let Some(auth) = auth {
            data["auth"] = json!(auth);
        }
        if let Some(channel_data) = channel_data {
            data["channel_data"] = json!(channel_data);
        }
        self.send(json!({"event": "pusher:subscribe", "data": data}))
            .await;
        match self.next().await {
            Received::Frame(frame) => frame,
            other => panic!("expected a subscription answer, got {other:?}"),
        }
    }

    /// Subscribes to a public channel; returns the answer frame.
    pub async fn subscribe(&mut self, channel: &str) -> Frame {
        self.subscribe_with(channel, Some(""), None).await
    }

    /// Subscribes to a private channel with a valid signature.
    pub async fn subscribe_private(&mut self, channel: &str) -> Frame {
        let auth = authorize_private_channel(KEY, SECRET, &self.socket_id, channel).unwrap();
        self.subscribe_with(channel, Some(&auth.auth), None).await
    }

    /// Subscribes to a presence channel as `user_id` with a valid signature.
    pub async fn subscribe_presence(&mut self, channel: &str, user_id: &str) -> Frame {
        let info = json!({ "name": format!("User {user_id}") });
        let auth = authorize_presence_channel(
            KEY,
            SECRET,
            &self.socket_id,
            channel,
            user_id,
            Some(&info.into()),
        )
        .unwrap();
        self.subscribe_with(channel, Some(&auth.auth), auth.channel_data.as_deref())
            .await
    }

    pub async fn close(mut self) {
        timeout(WAIT, self.ws.close(None)).await.ok();
        // Read the close reply so the broker sees a clean close.
        timeout(WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await
        .ok();
    }
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A raw HTTP/1.1 exchange; returns the status and the body (JSON, or a
/// string when it is not JSON).
pub async fn http(addr: SocketAddr, method: &str, target: &str, body: &[u8]) -> (u16, Value) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        // A broker may answer before reading a refused body; that is fine.
        stream.write_all(body).await.ok();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok();
        response
    };
    let response = timeout(WAIT, exchange).await.expect("HTTP timed out");
    parse_response(&response)
}

fn parse_response(response: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let chunked = text.split_once("\r\n\r\n").is_some_and(|(head, _)| {
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, value)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A REST request signed for the test app at `auth_timestamp`.
pub async fn signed_at(
    addr: SocketAddr,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &[u8],
    auth_timestamp: u64,
) -> (u16, Value) {
    let query = sign_query(
        KEY,
        SECRET,
        method,
        path,
        params,
        Some(body),
        auth_timestamp,
    );
    http(addr, method, &format!("{path}?{query}"), body).await
}

/// A REST request signed for the test app now.
pub async fn signed(
    addr: SocketAddr,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    signed_at(addr, method, path, params, body, now_unix()).await
}

/// `POST /apps/{id}/events` with a JSON body.
pub async fn trigger(addr: SocketAddr, event: &Value) -> (u16, Value) {
    let path = format!("/apps/{APP_ID}/events");
    signed(addr, "POST", &path, &[], event.to_string().as_bytes()).await
}

/// The `code` of a REST error body.
pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no code>")
}
