//! One WebSocket connection: `GET /app/{key}?protocol=7&...`.
//!
//! Each connection runs as one task (the reader: frames in, keep-alive timers)
//! plus one writer task that drains the connection's bounded queue into the
//! socket. Everyone else (other connections, the REST API, shutdown) talks to
//! a connection only through its [`Outlet`]: queue a frame or ask it to close.

use std::collections::VecDeque;
use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domvia_realtime::json::Value;
use domvia_realtime::protocol::{
    event, parse_presence_channel_data, validate_channel_name, verify_channel_auth,
    verify_user_auth, ChannelKind, Event, Frame, PresenceMember, CLIENT_EVENT_PREFIX,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, timeout, Instant};

use crate::error::ApiError;
use crate::state::{Closing, ConnId, NotRelayed, Outlet, Queued, Refusal, Unwelcome};
use crate::{Inner, Limits};

/// The protocol versions the broker speaks (`?protocol=`).
const PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

/// How long writing the last frames and the close frame may take.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How long the connection waits for the peer's close reply.
const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(1);

/// The largest outbound queue, whatever the limits say.
const MAX_QUEUE: usize = 1 << 20;

/// The read buffer each connection reserves up front. tungstenite's default
/// (128 KiB) made every idle socket cost ~114 KB; frames are small, and the
/// buffer grows for a larger one (up to `max_frame_bytes`).
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// `pusher:error` codes that leave the socket open.
const CODE_RATE_LIMITED: u16 = 4301;
const CODE_REJECTED: u16 = 4302;
const CODE_MALFORMED: u16 = 4303;

/// The longest client-event name, in bytes: the REST API's limit on event
/// names, so that a name a client may send is one the server could send too,
/// and a client cannot make the broker relay 64 KiB names to every subscriber.
const MAX_CLIENT_EVENT_NAME_BYTES: usize = 200;

/// The start of `name`, short enough to quote in an error message.
fn name_preview(name: &str) -> &str {
    const PREVIEW_BYTES: usize = 40;
    let end = name
        .char_indices()
        .map(|(at, c)| at + c.len_utf8())
        .take_while(|end| *end <= PREVIEW_BYTES)
        .last()
        .unwrap_or(0);
    &name[..end]
}

/// A timeout in seconds from the limits: at least 1 s, at most `u32::MAX` s
/// (what `activity_timeout` can announce).
fn seconds(secs: u64) -> Duration {
    Duration::from_secs(secs.clamp(1, u64::from(u32::MAX)))
}

/// The instant `wait` from now, or a year from now if that overflows.
fn after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Whether the request may open a connection, decided before the upgrade.
enum Admission {
    Open,
    /// Send `pusher:error` with `code` and `message`, then close with `code`.
    Refuse {
        code: u16,
        reason: &'static str,
        message: String,
    },
}

/// The value of query parameter `name` (no percent-decoding: the values the
/// broker reads are plain numbers).
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn admission(inner: &Inner, key: Option<&str>, query: &str) -> Admission {
    if key != Some(inner.app.key.as_str()) {
        return Admission::Refuse {
            code: 4001,
            reason: "Unknown app key",
            message: format!(
                "unable to connect; app key {:?} is not known to this broker",
                key.unwrap_or_default()
            ),
        };
    }
    let protocol = query_param(query, "protocol").and_then(|value| value.parse::<u32>().ok());
    if !protocol.is_some_and(|version| PROTOCOLS.contains(&version)) {
        return Admission::Refuse {
            code: 4007,
            reason: "Unsupported protocol version",
            message: format!(
                "unable to connect; protocol version {:?} is not supported (use 7)",
                query_param(query, "protocol").unwrap_or_default()
            ),
        };
    }
    Admission::Open
}

/// `GET /app/{key}`: upgrades to a WebSocket and runs the connection.
pub(crate) async fn upgrade(
    State(inner): State<Arc<Inner>>,
    key: Result<Path<String>, axum::extract::rejection::PathRejection>,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    if inner.hub.is_shutting_down() {
        // An HTTP error, not a 4200 close: pusher-js reconnects at once after
        // 4200, which would spin until the server is gone; a failed upgrade
        // makes it back off.
        return ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "shutting_down",
            message: "unable to connect; the broker is shutting down".to_owned(),
        }
        .into_response();
    }
    let key = key.ok().map(|Path(key)| key);
    let admission = admission(&inner, key.as_deref(), query.as_deref().unwrap_or(""));
    let max = inner.limits.max_frame_bytes.max(1);
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| run(inner, socket, admission))
}

/// The text of a `pusher:error`.
fn error_frame(code: u16, message: String) -> Utf8Bytes {
    Utf8Bytes::from(
        Event::Error {
            message,
            code: Some(code),
        }
        .to_frame()
        .encode(),
    )
}

fn close_message(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// Reads until the peer's close reply (or anything ends), for a short while.
async fn await_close_reply(
    stream: &mut (impl StreamExt<Item = Result<Message, axum::Error>> + Unpin),
) {
    // No reply within the wait: the socket is dropped all the same.
    timeout(CLOSE_REPLY_WAIT, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await
    .ok();
}

/// Explains and closes a connection that may not open.
async fn refuse(mut socket: WebSocket, code: u16, reason: &'static str, message: String) {
    let sent = timeout(CLOSE_GRACE, async {
        socket
            .send(Message::Text(error_frame(code, message)))
            .await?;
        socket.send(close_message(code, reason)).await
    })
    .await;
    if matches!(sent, Ok(Ok(()))) {
        await_close_reply(&mut socket).await;
    }
}

/// Unregisters the connection when dropped, however the task ends.
struct Registration {
    inner: Arc<Inner>,
    id: ConnId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.inner.hub.unregister(self.id);
    }
}

async fn run(inner: Arc<Inner>, socket: WebSocket, admission: Admission) {
    let _task = inner.task_guard();
    if let Admission::Refuse {
        code,
        reason,
        message,
    } = admission
    {
        refuse(socket, code, reason, message).await;
        return;
    }
    let (queue_tx, queue_rx) =
        mpsc::channel(inner.limits.outbound_queue_messages.clamp(1, MAX_QUEUE));
    let (closing_tx, closing_rx) = watch::channel(None);
    let outlet = Outlet::new(queue_tx, closing_tx, inner.limits.outbound_queue_bytes);
    let (id, socket_id) = match inner.hub.register(outlet.clone()) {
        Ok(registered) => registered,
        Err(Unwelcome::OverCapacity) => {
            let message = "unable to connect; the broker is over capacity, try again later";
            refuse(socket, 4100, "Over capacity", message.to_owned()).await;
            return;
        }
        Err(Unwelcome::ShuttingDown) => {
            // Upgraded just as the broker began to stop: reconnect after a backoff.
            let message = "unable to connect; the broker is shutting down";
            refuse(socket, 4100, "Server is shutting down", message.to_owned()).await;
            return;
        }
    };
    let registration = Registration {
        inner: Arc::clone(&inner),
        id,
    };
    let (sink, mut stream) = socket.split();
    let activity_timeout = seconds(inner.limits.activity_timeout_secs).as_secs();
    outlet.send(Utf8Bytes::from(
        Event::ConnectionEstablished {
            socket_id: socket_id.clone(),
            activity_timeout: u32::try_from(activity_timeout).unwrap_or(u32::MAX),
        }
        .to_frame()
        .encode(),
    ));
    let mut writer = tokio::spawn(write_loop(sink, queue_rx, closing_rx.clone()));

    let subscribe_by = match inner.limits.subscribe_timeout_secs {
        0 => None,
        secs => Some(after(seconds(secs))),
    };
    let mut session = Session {
        client_events: RateWindow::new(inner.limits.client_events_per_second),
        subscribe_by,
        inner,
        outlet,
        id,
        socket_id,
        replies: Vec::new(),
        close_after: None,
    };
    session.read_loop(&mut stream, closing_rx).await;
    // The connection is gone from every channel before its socket closes.
    drop(registration);
    session.outlet.close(Closing::Quiet);
    drop(session);
    let sent_close = match timeout(CLOSE_GRACE + Duration::from_secs(1), &mut writer).await {
        Ok(Ok(sent_close)) => sent_close,
        Ok(Err(_)) => false,
        Err(_) => {
            writer.abort();
            false
        }
    };
    if sent_close {
        await_close_reply(&mut stream).await;
    }
}

/// Writes queued messages until the connection closes. Returns true when it
/// sent a close frame.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Queued>,
    mut closing: watch::Receiver<Option<Closing>>,
) -> bool {
    let closing_now = loop {
        tokio::select! {
            biased;
            _ = closing.changed() => break closing.borrow().clone(),
            message = queue.recv() => {
                let Some(Queued { message, bytes }) = message else {
                    break closing.borrow().clone();
                };
                // `bytes` stay taken from the budget until the send is done.
                let send = sink.send(message);
                tokio::pin!(send);
                tokio::select! {
                    biased;
                    _ = closing.changed() => {
                        let closing_now = closing.borrow().clone();
                        // A flushing close still delivers the message in flight.
                        if matches!(closing_now, Some(Closing::Frame { flush: true, .. })) {
                            // Sent, failed or timed out: the close follows either way.
                            timeout(CLOSE_GRACE, send).await.ok();
                        }
                        break closing_now;
                    }
                    sent = &mut send => if sent.is_err() {
                        return false;
                    },
                }
                drop(bytes);
            }
        }
    };
    let Some(Closing::Frame {
        code,
        reason,
        flush,
    }) = closing_now
    else {
        return false;
    };
    let finished = timeout(CLOSE_GRACE, async {
        if flush {
            while let Ok(queued) = queue.try_recv() {
                sink.send(queued.message).await?;
            }
        }
        sink.send(close_message(code, reason)).await
    })
    .await;
    matches!(finished, Ok(Ok(())))
}

/// Which close code a read error deserves, if any.
fn read_error_close(err: &axum::Error) -> Option<(u16, &'static str)> {
    let source = err.source()?;
    match source.downcast_ref::<tungstenite::Error>()? {
        tungstenite::Error::Capacity(_) => Some((1009, "Message too big")),
        tungstenite::Error::Utf8(_) => Some((1007, "Invalid UTF-8 in a text message")),
        tungstenite::Error::Protocol(_) => Some((1002, "WebSocket protocol error")),
        _ => None,
    }
}

/// The client events of one connection in the last second, for the rate limit.
struct RateWindow {
    per_second: u32,
    sent: VecDeque<Instant>,
}

impl RateWindow {
    fn new(per_second: u32) -> RateWindow {
        RateWindow {
            per_second,
            sent: VecDeque::new(),
        }
    }

    /// True when one more event fits in the one-second window ending `now`.
    fn allows(&mut self, now: Instant) -> bool {
        if self.per_second == 0 {
            return true;
        }
        while self
            .sent
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= Duration::from_secs(1))
        {
            self.sent.pop_front();
        }
        self.sent.len() < usize::try_from(self.per_second).unwrap_or(usize::MAX)
    }

    fn record(&mut self, now: Instant) {
        if self.per_second != 0 {
            self.sent.push_back(now);
        }
    }
}

/// The size of event `data` as the limits count it: the bytes of a string,
/// or the compact JSON of anything else.
fn data_len(data: Option<&Value>) -> usize {
    match data {
        None => 0,
        Some(Value::String(text)) => text.len(),
        Some(other) => other.to_string().len(),
    }
}

/// Checks a client event against everything but the subscription and the
/// rate limit; returns its channel, or the `pusher:error` code and message.
fn check_client_event<'a>(limits: &Limits, frame: &'a Frame) -> Result<&'a str, (u16, String)> {
    let name = frame.event.as_str();
    if name.len() > MAX_CLIENT_EVENT_NAME_BYTES {
        // Quote only the start: echoing the name would send it back whole.
        return Err((
            CODE_REJECTED,
            format!(
                "unable to send client event {:?}...; the name has {} bytes, more than the limit of {MAX_CLIENT_EVENT_NAME_BYTES}",
                name_preview(name),
                name.len()
            ),
        ));
    }
    let reject = |reason: String| {
        (
            CODE_REJECTED,
            format!("unable to send client event {name:?}; {reason}"),
        )
    };
    if !limits.client_events_enabled {
        return Err(reject(
            "client events are disabled on this broker".to_owned(),
        ));
    }
    let Some(channel) = frame.channel.as_deref() else {
        return Err((
            CODE_MALFORMED,
            format!("unable to read event {name:?}; the frame has no channel"),
        ));
    };
    match ChannelKind::of(channel) {
        ChannelKind::Private | ChannelKind::Presence => {}
        ChannelKind::Public => {
            return Err(reject(format!(
                "{channel:?} is a public channel; client events need a private or presence channel"
            )))
        }
        ChannelKind::PrivateEncrypted => {
            return Err(reject(format!(
                "{channel:?} is an encrypted channel, which does not carry client events"
            )))
        }
    }
    let size = data_len(frame.data.as_ref());
    if size > limits.max_event_data_bytes {
        return Err(reject(format!(
            "data has {size} bytes, more than the limit of {}",
            limits.max_event_data_bytes
        )));
    }
    Ok(channel)
}

/// The reading side of one established connection.
struct Session {
    inner: Arc<Inner>,
    outlet: Outlet,
    id: ConnId,
    socket_id: String,
    client_events: RateWindow,
    /// When the connection is closed unless it has subscribed to a channel by
    /// then (`None`: it has, or there is no such deadline).
    subscribe_by: Option<Instant>,
    /// Replies to the client's frames, not yet in the outbound queue.
    replies: Vec<Utf8Bytes>,
    /// A close to request once `replies` are queued.
    close_after: Option<Closing>,
}

impl Session {
    /// Queues a reply to the client; [`Session::flush`] delivers it.
    fn send(&mut self, event: &Event) {
        self.replies
            .push(Utf8Bytes::from(event.to_frame().encode()));
    }

    fn error(&mut self, code: u16, message: String) {
        self.replies.push(error_frame(code, message));
    }

    /// Closes the connection once the queued replies are delivered.
    fn close_after_replies(&mut self, closing: Closing) {
        self.close_after.get_or_insert(closing);
    }

    /// Moves the replies into the outbound queue, waiting for room, so that a
    /// client flooding the broker without reading slows only itself down.
    /// Returns false when the connection is to end.
    async fn flush(&mut self, closing: &mut watch::Receiver<Option<Closing>>) -> bool {
        let wait = seconds(self.inner.limits.pong_timeout_secs);
        for text in std::mem::take(&mut self.replies) {
            tokio::select! {
                biased;
                _ = closing.changed() => return false,
                queued = self.outlet.send_reply(text) => if !queued {
                    return false;
                },
                () = tokio::time::sleep(wait) => {
                    self.outlet.close(Closing::over_capacity());
                    return false;
                }
            }
        }
        match self.close_after.take() {
            Some(closing) => {
                self.outlet.close(closing);
                false
            }
            None => true,
        }
    }

    async fn read_loop(
        &mut self,
        stream: &mut SplitStream<WebSocket>,
        mut closing: watch::Receiver<Option<Closing>>,
    ) {
        let limits = &self.inner.limits;
        let activity = seconds(limits.activity_timeout_secs);
        let pong_wait = seconds(limits.pong_timeout_secs);
        let mut deadline = after(activity);
        let mut pinged = false;
        loop {
            tokio::select! {
                _ = closing.changed() => return,
                () = sleep_until_some(self.subscribe_by) => {
                    // Connected and never subscribed: the broker would never
                    // deliver it anything. 42xx: pusher-js reconnects at once,
                    // so a client that was only slow loses nothing.
                    self.error(
                        4202,
                        "closing the connection; it subscribed to no channel within the subscribe timeout".to_owned(),
                    );
                    self.close_after_replies(Closing::Frame {
                        code: 4202,
                        reason: "Closed after inactivity: no subscription",
                        flush: true,
                    });
                }
                () = sleep_until(deadline) => {
                    if pinged {
                        self.outlet.close(Closing::Frame {
                            code: 4201,
                            reason: "Pong reply not received",
                            flush: true,
                        });
                        return;
                    }
                    self.send(&Event::Ping);
                    pinged = true;
                    deadline = after(pong_wait);
                }
                next = stream.next() => {
                    let message = match next {
                        None => return,
                        Some(Err(err)) => {
                            if let Some((code, reason)) = read_error_close(&err) {
                                self.outlet.close(Closing::Frame { code, reason, flush: true });
                            }
                            return;
                        }
                        Some(Ok(message)) => message,
                    };
                    pinged = false;
                    deadline = after(activity);
                    match message {
                        Message::Text(text) => self.on_text(text.as_str()),
                        Message::Binary(_) => self.error(
                            CODE_MALFORMED,
                            "unable to decode frame; binary messages are not supported, send JSON text".to_owned(),
                        ),
                        Message::Ping(_) | Message::Pong(_) => {}
                        Message::Close(_) => return,
                    }
                    // Many messages can arrive in one read without touching
                    // the runtime; give other connections their turn.
                    tokio::task::consume_budget().await;
                }
            }
            if !self.flush(&mut closing).await {
                return;
            }
        }
    }

    fn on_text(&mut self, text: &str) {
        let frame = match Frame::decode(text) {
            Ok(frame) => frame,
            Err(err) => return self.error(CODE_MALFORMED, err.to_string()),
        };
        match frame.event.as_str() {
            event::PING => self.send(&Event::Pong),
            event::PONG => {}
            event::SUBSCRIBE | event::UNSUBSCRIBE | event::SIGNIN => {
                match Event::from_frame(frame) {
                    Ok(Event::Subscribe {
                        channel,
                        auth,
                        channel_data,
                    }) => self.subscribe(channel, auth, channel_data),
                    Ok(Event::Unsubscribe { channel }) => {
                        self.inner.hub.unsubscribe(self.id, &channel);
                    }
                    Ok(Event::Signin { auth, user_data }) => self.sign_in(&auth, user_data),
                    Ok(_) => {}
                    Err(err) => self.error(CODE_MALFORMED, err.to_string()),
                }
            }
            name if name.starts_with(CLIENT_EVENT_PREFIX) => self.client_event(frame),
            name if name.starts_with("pusher:") || name.starts_with("pusher_internal:") => self
                .error(
                    CODE_REJECTED,
                    format!(
                        "unable to handle event {:?}; clients may not send it to the broker",
                        name_preview(name)
                    ),
                ),
            name => self.error(
                CODE_REJECTED,
                format!(
                    "unable to send event {:?}; events from clients need the \"client-\" prefix",
                    name_preview(name)
                ),
            ),
        }
    }

    fn subscription_error(&mut self, channel: String, refusal: Refusal) {
        self.send(&Event::SubscriptionError {
            channel,
            error_type: Some(refusal.error_type.to_owned()),
            error: Some(refusal.message),
            status: Some(refusal.status),
        });
    }

    /// Checks the auth of a private or presence subscription; returns the
    /// presence member for presence channels.
    fn authorize(
        &self,
        channel: &str,
        kind: ChannelKind,
        auth: Option<&str>,
        channel_data: Option<&str>,
    ) -> Result<Option<PresenceMember>, Refusal> {
        let auth_error = |reason: String| Refusal {
            status: 401,
            error_type: "AuthError",
            message: format!("unable to subscribe to channel {channel:?}; {reason}"),
        };
        let auth = auth
            .filter(|auth| !auth.is_empty())
            .ok_or_else(|| auth_error("the subscription has no auth signature".to_owned()))?;
        let app = &self.inner.app;
        verify_channel_auth(
            &app.key,
            &app.secret,
            &self.socket_id,
            channel,
            auth,
            channel_data,
        )
        .map_err(|err| auth_error(err.to_string()))?;
        if kind != ChannelKind::Presence {
            return Ok(None);
        }
        let bad_data = |reason: &str| Refusal {
            status: 400,
            error_type: "InvalidChannelData",
            message: format!("unable to subscribe to channel {channel:?}; {reason}"),
        };
        let member =
            parse_presence_channel_data(channel_data.unwrap_or_default()).map_err(|_| {
                bad_data("channel_data is not a JSON object with a non-empty string user_id")
            })?;
        let info_len = member
            .user_info
            .as_ref()
            .map_or(0, |info| info.to_string().len());
        let limit = self.inner.limits.max_presence_user_info_bytes;
        if info_len > limit {
            return Err(Refusal {
                status: 413,
                error_type: "LimitReached",
                message: format!(
                    "unable to subscribe to channel {channel:?}; user_info has {info_len} bytes, more than the limit of {limit}"
                ),
            });
        }
        Ok(Some(member))
    }

    fn subscribe(&mut self, channel: String, auth: Option<String>, channel_data: Option<String>) {
        let kind = match validate_channel_name(&channel) {
            Ok(kind) => kind,
            Err(err) => {
                let refusal = Refusal {
                    status: 400,
                    error_type: "InvalidChannel",
                    message: err.to_string(),
                };
                return self.subscription_error(channel, refusal);
            }
        };
        let member = if kind.requires_auth() {
            match self.authorize(&channel, kind, auth.as_deref(), channel_data.as_deref()) {
                Ok(member) => member,
                Err(refusal) => return self.subscription_error(channel, refusal),
            }
        } else {
            None
        };
        match self.inner.hub.subscribe(self.id, &channel, member) {
            Ok(presence) => {
                self.subscribe_by = None;
                self.send(&Event::SubscriptionSucceeded { channel, presence });
            }
            Err(refusal) => self.subscription_error(channel, refusal),
        }
    }

    /// `pusher:signin`: a valid signature gets `pusher:signin_success`; an
    /// invalid one closes the connection with 4009, as Pusher does.
    fn sign_in(&mut self, auth: &str, user_data: String) {
        let app = &self.inner.app;
        let verified = verify_user_auth(&app.key, &app.secret, &self.socket_id, auth, &user_data);
        let user_id = domvia_realtime::json::from_str(&user_data)
            .ok()
            .and_then(|data| data.get("id").and_then(Value::as_str).map(str::to_owned))
            .filter(|id| !id.is_empty());
        match (verified, user_id) {
            (Ok(()), Some(user_id)) => {
                // A signed-in connection is an authorized one (as in Pusher's
                // "authorized connections"): the app knows it, and may keep
                // it open with no room subscribed yet.
                self.subscribe_by = None;
                self.inner.hub.signed_in(self.id, &user_id);
                self.send(&Event::SigninSuccess { user_data });
            }
            (Ok(()), None) => {
                self.error(
                    4009,
                    "unable to sign in; user_data needs a non-empty string id".to_owned(),
                );
                self.close_after_replies(Closing::Frame {
                    code: 4009,
                    reason: "Connection not authorized",
                    flush: true,
                });
            }
            (Err(err), _) => {
                self.error(4009, format!("unable to sign in; {err}"));
                self.close_after_replies(Closing::Frame {
                    code: 4009,
                    reason: "Connection not authorized",
                    flush: true,
                });
            }
        }
    }

    fn client_event(&mut self, frame: Frame) {
        let name = frame.event.as_str();
        let channel = match check_client_event(&self.inner.limits, &frame) {
            Ok(channel) => channel,
            Err((code, message)) => return self.error(code, message),
        };
        let now = Instant::now();
        if !self.client_events.allows(now) {
            return self.error(
                CODE_RATE_LIMITED,
                "Client event rejected due to rate limit".to_owned(),
            );
        }
        let relayed = self.inner.hub.relay(self.id, channel, |user_id| {
            let mut out = Frame::new(name).with_channel(channel);
            out.data = frame.data.clone();
            out.user_id = user_id.map(str::to_owned);
            out.encode()
        });
        match relayed {
            Ok(_) => self.client_events.record(now),
            Err(NotRelayed::NotSubscribed) => {
                let message = format!(
                    "unable to send client event {name:?}; the connection is not subscribed to {channel:?}"
                );
                self.error(CODE_REJECTED, message);
            }
        }
    }
}

/// A connection without a socket for the fuzz targets in `fuzz/` (feature
/// `fuzzing`): frames go to the same [`Session::on_text`] a WebSocket's text
/// messages reach. Not part of the API.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use super::*;

    /// One registered connection of a broker, fed text frames directly.
    pub struct SocketSession {
        session: Session,
        queue: mpsc::Receiver<Queued>,
        // Declared after `session` so that the connection leaves the hub on drop.
        _registration: Registration,
    }

    impl SocketSession {
        /// Registers a connection with `broker`, as an accepted upgrade does.
        /// `None` when the broker refuses it (over capacity, shutting down).
        pub fn open(broker: &crate::Broker) -> Option<SocketSession> {
            let inner = Arc::clone(&broker.inner);
            let (queue_tx, queue) = mpsc::channel(MAX_QUEUE);
            let (closing_tx, _) = watch::channel(None);
            let outlet = Outlet::new(queue_tx, closing_tx, inner.limits.outbound_queue_bytes);
            let (id, socket_id) = inner.hub.register(outlet.clone()).ok()?;
            Some(SocketSession {
                session: Session {
                    client_events: RateWindow::new(inner.limits.client_events_per_second),
                    // No deadline: a fuzz input is one short burst of frames.
                    subscribe_by: None,
                    inner: Arc::clone(&inner),
                    outlet,
                    id,
                    socket_id,
                    replies: Vec::new(),
                    close_after: None,
                },
                queue,
                _registration: Registration { inner, id },
            })
        }

        /// The socket id the broker gave this connection.
        pub fn socket_id(&self) -> &str {
            &self.session.socket_id
        }

        /// Handles one text message; returns the replies to it.
        pub fn on_text(&mut self, text: &str) -> Vec<String> {
            self.session.on_text(text);
            std::mem::take(&mut self.session.replies)
                .into_iter()
                .map(|reply| reply.as_str().to_owned())
                .collect()
        }

        /// The frames other connections' events queued for this one.
        pub fn delivered(&mut self) -> Vec<String> {
            let mut out = Vec::new();
            // Dropping each `Queued` gives its bytes back to the budget.
            while let Ok(Queued { message, .. }) = self.queue.try_recv() {
                if let Message::Text(text) = message {
                    out.push(text.as_str().to_owned());
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_query_params() {
        let query = "protocol=7&client=js&version=8.6.0&flag";
        assert_eq!(query_param(query, "protocol"), Some("7"));
        assert_eq!(query_param(query, "version"), Some("8.6.0"));
        assert_eq!(query_param(query, "flag"), Some(""));
        assert_eq!(query_param(query, "missing"), None);
        assert_eq!(query_param("", "protocol"), None);
    }

    #[test]
    fn rate_window_slides() {
        let start = Instant::now();
        let mut window = RateWindow::new(2);
        assert!(window.allows(start));
        window.record(start);
        window.record(start + Duration::from_millis(500));
        assert!(!window.allows(start + Duration::from_millis(900)));
        assert!(window.allows(start + Duration::from_millis(1000)));
        window.record(start + Duration::from_millis(1000));
        assert!(!window.allows(start + Duration::from_millis(1400)));
        let mut unlimited = RateWindow::new(0);
        for _ in 0..100 {
            unlimited.record(start);
            assert!(unlimited.allows(start));
        }
    }

    #[test]
    fn name_previews_cut_on_a_character_boundary() {
        assert_eq!(name_preview("client-x"), "client-x");
        let long = format!("client-{}", "é".repeat(100));
        let preview = name_preview(&long);
        assert!(preview.len() <= 40 && preview.len() >= 39, "{preview}");
        assert!(long.starts_with(preview));
    }

    #[test]
    fn data_sizes() {
        assert_eq!(data_len(None), 0);
        assert_eq!(data_len(Some(&Value::from("abc"))), 3);
        assert_eq!(data_len(Some(&serde_json::json!({"a": 1}).into())), 7);
    }
}
