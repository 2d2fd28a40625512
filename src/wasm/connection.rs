//! The browser side of a realtime connection: runs the pure
//! [`Connection`](crate::connection::Connection) machine's actions with a
//! web-sys `WebSocket` and gloo timers, and hands its notices to one JS
//! listener (the TypeScript layer dispatches them to channels). The auth
//! requests go out the way the chat session's do: the sink's `authorize` asks
//! the TypeScript layer to POST to the endpoint (its headers, params and
//! `headersProvider` are app options that live there), and the answer comes
//! back through `channelAuthorized`/`userAuthenticated`, where the core checks
//! it. So no fetch, futures executor or header plumbing is in the wasm.
//!
//! A chat room's channel events go to the room's session in this module
//! ([`Route`], `routeToSession`), and to the listener only when the app listens too.
//!
//! Borrow discipline: the machine's `RefCell` is borrowed only to feed it one
//! input or to pop one action, never while JS runs, so a listener may call back
//! into the connection (for example `trigger` from a message handler).

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use crate::chat::RoomSession;
use crate::json::{Map, Value};
use crate::vec_map::VecMap;
use gloo_timers::callback::Timeout;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use crate::connection::{Action, ChannelState, Connection, Notice, Options};
use crate::protocol::{self, Error};

use super::chat::{self, ChatRoomSession};
use super::{js_error, js_number_as_u64, json_from_js, JsonObject};

#[wasm_bindgen]
extern "C" {
    /// The global `queueMicrotask`, in windows and workers alike.
    #[wasm_bindgen(js_name = queueMicrotask)]
    fn queue_microtask(callback: &JsValue);

    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error_value(message: &str, error: &JsValue);

    /// Where notices go: `{ message(channel, event, dataJson, userId),
    /// notice(noticeJson), authorize(socketId, channel) }`. Channel messages,
    /// the hot path, arrive as plain arguments; the rarer notices as the JSON
    /// text of one object with a `type`; auth requests to make as `authorize` calls.
    #[wasm_bindgen(typescript_type = "NoticeSink")]
    #[derive(Clone)]
    pub type NoticeSink;

    /// `channel`, `event` and `user_id` are JS strings (or undefined) from
    /// [`js_name`]'s cache.
    #[wasm_bindgen(method, catch, js_name = message)]
    fn message(
        this: &NoticeSink,
        channel: &JsValue,
        event: &JsValue,
        data_json: Option<&str>,
        user_id: &JsValue,
    ) -> Result<(), JsValue>;

    /// A notice as JSON text (see [`notice_json`]).
    #[wasm_bindgen(method, catch, js_name = notice)]
    fn notice(this: &NoticeSink, notice_json: &str) -> Result<(), JsValue>;

    #[wasm_bindgen(method, catch, js_name = authorize)]
    fn authorize(this: &NoticeSink, socket_id: &str, channel: Option<&str>) -> Result<(), JsValue>;
}

#[wasm_bindgen(typescript_custom_section)]
const NOTICE_SINK_TYPE: &str = r#"
/** Receives a connection's notices; see RealtimeConnection.setListener. */
export interface NoticeSink {
  message(channel: string | undefined, event: string, dataJson: string | undefined, userId: string | undefined): void;
  /** A notice as JSON text: `{"type": ..., ...}` (`JSON.parse` it). */
  notice(noticeJson: string): void;
  /**
   * POST the auth request for `channel` (undefined: the user authentication
   * for `pusher:signin`), then hand the answer to `channelAuthorized` or
   * `userAuthenticated` (status 0 when there was none).
   */
  authorize(socketId: string, channel: string | undefined): void;
}
"#;

/// A JS event handler owned by Rust.
type EventHandler = Closure<dyn FnMut(web_sys::Event)>;

/// The open WebSocket and the closures it calls.
struct OpenSocket {
    socket: WebSocket,
    _on_open: EventHandler,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl OpenSocket {
    /// Closes the socket, detaches its handlers at once, and frees the closures
    /// once the current call stack (which may be one of them) has returned.
    fn retire(self, code: u16, reason: &str) {
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        // close(code, reason) throws for a code other than 1000 or 3000-4999, or
        // a reason over 123 bytes; the socket must close all the same.
        if self
            .socket
            .close_with_code_and_reason(code, reason)
            .is_err()
        {
            // close() without arguments cannot throw.
            self.socket.close().ok();
        }
        drop_later(self);
    }
}

/// Drops `value` from a microtask: a closure or timer may be the very code that
/// is running now, and must not be freed under its own feet. The callback is a
/// once-closure that frees itself when it runs, which a microtask always does.
fn drop_later<T: 'static>(value: T) {
    queue_microtask(&Closure::once_into_js(move || drop(value)));
}

struct Shared {
    machine: RefCell<Connection>,
    /// The app key, to check that an auth endpoint signed for this app.
    app_key: String,
    socket: RefCell<Option<OpenSocket>>,
    /// Increments with every socket, so events of an abandoned socket are ignored.
    socket_generation: Cell<u32>,
    /// The running timers, by `Timer::index`: an array, since a HashMap would
    /// pull hashing into the wasm for four keys.
    timers: RefCell<[Option<Timeout>; 4]>,
    listener: RefCell<Option<NoticeSink>>,
    online_listener: RefCell<Option<EventHandler>>,
    disposed: Cell<bool>,
    /// See [`js_name`].
    js_names: RefCell<VecMap<String, JsValue>>,
    /// Chat sessions fed their channels' events here (see [`Route`]).
    routes: RefCell<Vec<Route>>,
    next_route_id: Cell<u32>,
}

/// A chat room session that takes its channel's events straight from the
/// socket: the connection and the session are in this one module, so a
/// room's messages and typing signals reach the session without crossing to
/// JS and back (four strings out and the data in again per event, a third of
/// a busy room's script time before). Only `wake(event)` is called, for the
/// TS layer to carry out the session's actions; it answers whether the app
/// listens to that event on the channel too.
struct Route {
    id: u32,
    channel: String,
    /// `chat::ROOM_EVENTS` | `chat::TYPING_EVENTS`.
    kinds: u8,
    session: Rc<RefCell<RoomSession>>,
    wake: js_sys::Function,
}

/// The most names [`js_name`] keeps before it starts over: a busy presence
/// room's member ids fit.
const JS_NAME_CACHE_LIMIT: usize = 512;

/// The JS string for a name that recurs on every channel message (channel
/// and event names, sender ids), made once: each otherwise costs a
/// TextDecoder call per message, which profiles showed among the largest
/// costs of a busy room (bench/chat.mjs, BENCH_PROFILE=1).
fn js_name(shared: &Shared, name: Option<&str>) -> JsValue {
    let Some(name) = name else {
        return JsValue::UNDEFINED;
    };
    let mut names = shared.js_names.borrow_mut();
    if let Some(value) = names.get(name) {
        return value.clone();
    }
    if names.len() >= JS_NAME_CACHE_LIMIT {
        names.clear();
    }
    let value = JsValue::from_str(name);
    names.insert(name.to_owned(), value.clone());
    value
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// A realtime connection to a Pusher-protocol broker. Created by the TS layer.
#[wasm_bindgen(js_name = RealtimeConnection)]
pub struct RealtimeConnection {
    shared: Rc<Shared>,
}

#[wasm_bindgen(js_class = RealtimeConnection)]
impl RealtimeConnection {
    /// `options` is the TS layer's validated config: `{ key, host, port?, forceTLS?,
    /// clientEvents?, userAuthentication?, activityTimeoutMs?, pongTimeoutMs?,
    /// unavailableTimeoutMs? }`. (The auth endpoints, headers and params are
    /// the TS layer's: it makes the requests.)
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "object")] options: JsValue,
    ) -> Result<RealtimeConnection, JsValue> {
        // As JSON: one JSON.stringify instead of an import call per field.
        let options = json_from_js(&options)
            .ok_or_else(|| config_error("the options are not a plain object"))?;
        let key = string_option(&options, "key")?.ok_or_else(|| config_error("key is required"))?;
        let host =
            string_option(&options, "host")?.ok_or_else(|| config_error("host is required"))?;
        let mut machine_options = Options::new(key.clone(), host);
        machine_options.port =
            number_option(&options, "port")?.map(|port| u16::try_from(port).unwrap_or(u16::MAX));
        machine_options.force_tls = bool_option(&options, "forceTLS").unwrap_or(false);
        // Absent: the core's default (off), stated once in `Options`.
        if let Some(client_events) = bool_option(&options, "clientEvents") {
            machine_options.client_events = client_events;
        }
        if let Some(ms) = number_option(&options, "activityTimeoutMs")? {
            machine_options.activity_timeout_ms = Some(ms);
        }
        if let Some(ms) = number_option(&options, "pongTimeoutMs")? {
            machine_options.pong_timeout_ms = ms;
        }
        if let Some(ms) = number_option(&options, "unavailableTimeoutMs")? {
            machine_options.unavailable_timeout_ms = ms;
        }
        machine_options.user_authentication =
            bool_option(&options, "userAuthentication").unwrap_or(false);
        // Jitter needs spread, not secrecy: Math.random is enough for a seed.
        let seed = (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64;
        let shared = Rc::new(Shared {
            machine: RefCell::new(Connection::new(machine_options, seed)),
            app_key: key,
            socket: RefCell::new(None),
            socket_generation: Cell::new(0),
            timers: RefCell::new([None, None, None, None]),
            listener: RefCell::new(None),
            online_listener: RefCell::new(None),
            disposed: Cell::new(false),
            js_names: RefCell::new(VecMap::new()),
            routes: RefCell::new(Vec::new()),
            next_route_id: Cell::new(0),
        });
        listen_for_online(&shared);
        Ok(RealtimeConnection { shared })
    }

    /// The one sink that receives every notice (see [`NoticeSink`]).
    #[wasm_bindgen(js_name = setListener)]
    pub fn set_listener(&self, listener: Option<NoticeSink>) {
        *self.shared.listener.borrow_mut() = listener;
    }

    /// `initialized`, `connecting`, `connected`, `unavailable`, `failed` or `disconnected`.
    #[wasm_bindgen(getter)]
    pub fn state(&self) -> String {
        self.shared.machine.borrow().state().as_str().to_owned()
    }

    /// The broker's id for this connection, once connected.
    #[wasm_bindgen(getter, js_name = socketId)]
    pub fn socket_id(&self) -> Option<String> {
        self.shared.machine.borrow().socket_id().map(str::to_owned)
    }

    pub fn connect(&self) {
        if self.shared.disposed.get() {
            return;
        }
        self.shared.machine.borrow_mut().connect(now_ms());
        run(&self.shared);
    }

    pub fn disconnect(&self) {
        self.shared.machine.borrow_mut().disconnect(now_ms());
        run(&self.shared);
    }

    pub fn subscribe(&self, channel: &str) -> Result<(), JsValue> {
        let subscribed = self
            .shared
            .machine
            .borrow_mut()
            .subscribe(now_ms(), channel);
        run(&self.shared);
        subscribed.map_err(|error| js_error(&error))
    }

    pub fn unsubscribe(&self, channel: &str) {
        // The channel's events stop here, for its sessions as for its listeners.
        self.shared
            .routes
            .borrow_mut()
            .retain(|route| route.channel != channel);
        self.shared
            .machine
            .borrow_mut()
            .unsubscribe(now_ms(), channel);
        run(&self.shared);
    }

    /// `subscribing`, `subscribed`, `failed`, `unsubscribed`, or undefined for an unknown channel.
    #[wasm_bindgen(js_name = channelState)]
    pub fn channel_state(&self, channel: &str) -> Option<String> {
        self.shared
            .machine
            .borrow()
            .channel_state(channel)
            .map(|state: ChannelState| state.as_str().to_owned())
    }

    /// A presence channel's members as JSON text: `{"me": id|null, "members": {id: info}}`.
    #[wasm_bindgen(js_name = membersJson)]
    pub fn members_json(&self, channel: &str) -> Option<String> {
        let machine = self.shared.machine.borrow();
        let members = machine.members(channel)?;
        // Inserts, not collect(): collecting into a map instantiates a sort.
        let mut map = Map::new();
        for (id, info) in &members.members {
            map.insert(id.clone(), info.clone().unwrap_or(Value::Null));
        }
        let me = members.me.clone().map_or(Value::Null, Value::String);
        Some(Value::object([("me", me), ("members", Value::Object(map))]).to_json())
    }

    /// Sends a client event now, on this call's stack; `data_json` is JSON text.
    pub fn trigger(&self, channel: &str, event: &str, data_json: &str) -> Result<(), JsValue> {
        let sent = self
            .shared
            .machine
            .borrow_mut()
            .trigger_json(channel, event, data_json);
        run(&self.shared);
        sent.map_err(|error| js_error(&error))
    }

    /// Feeds `channel`'s chat events (`kinds`: 1 the room's own events, 2
    /// `client-typing`, 3 both) to `session` inside the wasm, calling
    /// `wake(event)` after each; the listener gets such an event only when a
    /// wake answers true (the app listens to it as well). Returns the id to
    /// `unroute` with; unsubscribing the channel ends its routes too.
    #[wasm_bindgen(js_name = routeToSession)]
    pub fn route_to_session(
        &self,
        channel: &str,
        session: &ChatRoomSession,
        kinds: u8,
        #[wasm_bindgen(unchecked_param_type = "(event: string) => boolean")] wake: js_sys::Function,
    ) -> u32 {
        let id = self.shared.next_route_id.get().wrapping_add(1);
        self.shared.next_route_id.set(id);
        if !self.shared.disposed.get() {
            self.shared.routes.borrow_mut().push(Route {
                id,
                channel: channel.to_owned(),
                kinds: kinds & (chat::ROOM_EVENTS | chat::TYPING_EVENTS),
                session: session.shared(),
                wake,
            });
        }
        id
    }

    pub fn unroute(&self, id: u32) {
        self.shared
            .routes
            .borrow_mut()
            .retain(|route| route.id != id);
    }

    /// The answer to an `authorize(socketId, channel)`: the endpoint's status
    /// and body, or status 0 and why there was none. The core checks the
    /// signature's key and shape before the subscribe goes out.
    #[wasm_bindgen(js_name = channelAuthorized)]
    pub fn channel_authorized(&self, channel: &str, socket_id: &str, status: u16, body: &str) {
        if self.shared.disposed.get() {
            return;
        }
        let outcome = auth_answer(status, body).and_then(|body| {
            protocol::parse_channel_auth_response(&self.shared.app_key, channel, body)
                .map_err(|error| (Some(status), error.to_string()))
        });
        {
            let mut machine = self.shared.machine.borrow_mut();
            match outcome {
                Ok(auth) => machine.auth_succeeded(now_ms(), channel, socket_id, auth),
                Err((status, message)) => {
                    machine.auth_failed(now_ms(), channel, socket_id, status, &message)
                }
            }
        }
        run(&self.shared);
    }

    /// The answer to an `authorize(socketId, undefined)` (user authentication),
    /// as for [`RealtimeConnection::channel_authorized`].
    #[wasm_bindgen(js_name = userAuthenticated)]
    pub fn user_authenticated(&self, socket_id: &str, status: u16, body: &str) {
        if self.shared.disposed.get() {
            return;
        }
        let outcome = auth_answer(status, body).and_then(|body| parse_user_auth(status, body));
        {
            let mut machine = self.shared.machine.borrow_mut();
            match outcome {
                Ok(auth) => machine.user_auth_succeeded(now_ms(), socket_id, auth),
                Err((status, message)) => {
                    machine.user_auth_failed(now_ms(), socket_id, status, &message)
                }
            }
        }
        run(&self.shared);
    }

    /// Releases the socket, timers and every closure. The connection is unusable after.
    pub fn dispose(&self) {
        if self.shared.disposed.replace(true) {
            return;
        }
        self.shared.machine.borrow_mut().disconnect(now_ms());
        run(&self.shared);
        release(&self.shared);
    }
}

impl Drop for RealtimeConnection {
    fn drop(&mut self) {
        self.dispose();
    }
}

/// Drops everything that could call back into `shared`.
fn release(shared: &Rc<Shared>) {
    let open = shared.socket.borrow_mut().take();
    if let Some(open) = open {
        open.retire(1000, "disposed");
    }
    let timers = std::mem::take(&mut *shared.timers.borrow_mut());
    for timer in timers.into_iter().flatten() {
        drop_later(timer.cancel());
    }
    if let Some(listener) = shared.online_listener.borrow_mut().take() {
        if let Some(window) = web_sys::window() {
            // removeEventListener does not throw, whatever it is given.
            window
                .remove_event_listener_with_callback("online", listener.as_ref().unchecked_ref())
                .ok();
        }
    }
    *shared.listener.borrow_mut() = None;
    shared.js_names.borrow_mut().clear();
    shared.routes.borrow_mut().clear();
}

fn listen_for_online(shared: &Rc<Shared>) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let weak = Rc::downgrade(shared);
    let listener = Closure::<dyn FnMut(web_sys::Event)>::new(move |_event| {
        with_live(&weak, |shared| {
            shared.machine.borrow_mut().network_online(now_ms());
            run(shared);
        });
    });
    if window
        .add_event_listener_with_callback("online", listener.as_ref().unchecked_ref())
        .is_ok()
    {
        *shared.online_listener.borrow_mut() = Some(listener);
    }
}

fn with_live(weak: &Weak<Shared>, f: impl FnOnce(&Rc<Shared>)) {
    if let Some(shared) = weak.upgrade() {
        if !shared.disposed.get() {
            f(&shared);
        }
    }
}

/// Runs the machine's actions until it has none, then returns.
fn run(shared: &Rc<Shared>) {
    loop {
        // The borrow ends with this statement: nothing below runs under it.
        let action = shared.machine.borrow_mut().poll_action();
        let Some(action) = action else { return };
        match action {
            Action::OpenSocket { url } => open_socket(shared, &url),
            Action::Send { text } => {
                let socket = shared.socket.borrow();
                if let Some(open) = socket.as_ref() {
                    // A failed send surfaces as the socket's close event.
                    open.socket.send_with_str(&text).ok();
                }
            }
            Action::CloseSocket { code, reason } => {
                let open = shared.socket.borrow_mut().take();
                if let Some(open) = open {
                    open.retire(code, &reason);
                }
            }
            Action::StartTimer { timer, delay_ms } => {
                let weak = Rc::downgrade(shared);
                let delay = u32::try_from(delay_ms).unwrap_or(u32::MAX);
                let timeout = Timeout::new(delay, move || {
                    with_live(&weak, |shared| {
                        let fired = shared.timers.borrow_mut()[timer.index()].take();
                        drop_later(fired);
                        shared.machine.borrow_mut().timer_fired(now_ms(), timer);
                        run(shared);
                    });
                });
                let replaced = shared.timers.borrow_mut()[timer.index()].replace(timeout);
                if let Some(replaced) = replaced {
                    drop_later(replaced.cancel());
                }
            }
            Action::CancelTimer { timer } => {
                let cancelled = shared.timers.borrow_mut()[timer.index()].take();
                if let Some(cancelled) = cancelled {
                    drop_later(cancelled.cancel());
                }
            }
            Action::Authorize { channel, socket_id } => {
                request_auth(shared, &socket_id, Some(&channel))
            }
            Action::AuthenticateUser { socket_id } => request_auth(shared, &socket_id, None),
            Action::Notify(notice) => notify(shared, &notice),
        }
    }
}

fn parse_user_auth(status: u16, body: &str) -> Result<protocol::UserAuth, (Option<u16>, String)> {
    let invalid = || {
        (
            Some(status),
            "the user authentication endpoint returned no auth and user_data".to_owned(),
        )
    };
    let value: Value = crate::json::from_str(body).map_err(|_| invalid())?;
    match (value.get("auth"), value.get("user_data")) {
        (Some(Value::String(auth)), Some(Value::String(user_data))) => Ok(protocol::UserAuth {
            auth: auth.clone(),
            user_data: user_data.clone(),
        }),
        _ => Err(invalid()),
    }
}

fn open_socket(shared: &Rc<Shared>, url: &str) {
    // Abandon any previous socket first; its late events must not reach the machine.
    let old = shared.socket.borrow_mut().take();
    if let Some(old) = old {
        old.retire(1000, "replaced");
    }
    let generation = shared.socket_generation.get().wrapping_add(1);
    shared.socket_generation.set(generation);
    let socket = match WebSocket::new(url) {
        Ok(socket) => socket,
        Err(error) => {
            console_error_value("domvia-realtime: unable to open a WebSocket", &error);
            // Report it as an abnormal close so the machine backs off and retries.
            shared
                .machine
                .borrow_mut()
                .socket_closed(now_ms(), 1006, "unable to open a WebSocket");
            return;
        }
    };
    let on_open = {
        let weak = Rc::downgrade(shared);
        Closure::<dyn FnMut(web_sys::Event)>::new(move |_event| {
            with_current_socket(&weak, generation, |shared| {
                shared.machine.borrow_mut().socket_opened(now_ms());
                run(shared);
            });
        })
    };
    let on_message = {
        let weak = Rc::downgrade(shared);
        Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            with_current_socket(&weak, generation, |shared| {
                let text = event.data().as_string().unwrap_or_default();
                shared.machine.borrow_mut().socket_message(now_ms(), &text);
                run(shared);
            });
        })
    };
    let on_close = {
        let weak = Rc::downgrade(shared);
        Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
            with_current_socket(&weak, generation, |shared| {
                let closed = shared.socket.borrow_mut().take();
                drop_later(closed);
                shared
                    .machine
                    .borrow_mut()
                    .socket_closed(now_ms(), event.code(), &event.reason());
                run(shared);
            });
        })
    };
    socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    *shared.socket.borrow_mut() = Some(OpenSocket {
        socket,
        _on_open: on_open,
        _on_message: on_message,
        _on_close: on_close,
    });
}

fn with_current_socket(weak: &Weak<Shared>, generation: u32, f: impl FnOnce(&Rc<Shared>)) {
    with_live(weak, |shared| {
        if shared.socket_generation.get() == generation {
            f(shared);
        }
    });
}

/// Asks the TS layer to make an auth request (see [`NoticeSink`]).
fn request_auth(shared: &Rc<Shared>, socket_id: &str, channel: Option<&str>) {
    let sink = shared.listener.borrow().clone();
    let Some(sink) = sink else { return };
    if let Err(thrown) = sink.authorize(socket_id, channel) {
        console_error_value("domvia-realtime: the auth request could not start", &thrown);
    }
}

/// An auth endpoint's answer: the body of a 2xx, else the failure as the
/// machine reports it (no status when there was no answer at all).
fn auth_answer(status: u16, body: &str) -> Result<&str, (Option<u16>, String)> {
    match status {
        0 => Err((None, body.to_owned())),
        200..=299 => Ok(body),
        _ => Err((Some(status), endpoint_error_message(status, body))),
    }
}

/// The endpoint's own message when it sent `{"error":{"message"}}` or `{"message"}`.
fn endpoint_error_message(status: u16, body: &str) -> String {
    let parsed: Option<Value> = crate::json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|value| {
        value
            .get("error")
            .and_then(|error| error.get("message"))
            .or_else(|| value.get("message"))
            .and_then(Value::as_str)
    });
    match message {
        Some(message) => format!("the auth endpoint refused ({status}): {message}"),
        None => format!("the auth endpoint refused ({status})"),
    }
}

/// Feeds a channel event to the sessions routed from `channel`, waking each
/// one fed. `None` when none took it; else whether a wake asked for the event
/// to reach the JS listener as well.
fn feed_routes(
    shared: &Shared,
    channel: &str,
    event: &str,
    data: Option<&str>,
    user_id: Option<&str>,
) -> Option<bool> {
    // Copied out first: a wake may route or unroute (a listener leaving the room).
    let routed: Vec<(u8, Rc<RefCell<RoomSession>>, js_sys::Function)> = shared
        .routes
        .borrow()
        .iter()
        .filter(|route| route.channel == channel)
        .map(|route| (route.kinds, Rc::clone(&route.session), route.wake.clone()))
        .collect();
    let mut outcome = None;
    for (kinds, session, wake) in routed {
        if chat::feed_channel_event(&session, kinds, event, data, user_id, now_ms()) {
            let listened = match wake.call1(&JsValue::UNDEFINED, &js_name(shared, Some(event))) {
                Ok(answer) => answer.is_truthy(),
                Err(thrown) => {
                    console_error_value(
                        "domvia-realtime: a listener threw; the SDK goes on",
                        &thrown,
                    );
                    false
                }
            };
            outcome = Some(outcome.unwrap_or(false) || listened);
        }
    }
    outcome
}

/// Hands a notice to the JS sink; a throwing listener is reported, never fatal.
fn notify(shared: &Rc<Shared>, notice: &Notice) {
    if let Notice::Message {
        channel: Some(channel),
        event,
        data,
        user_id,
    } = notice
    {
        let routes = !shared.routes.borrow().is_empty();
        if routes
            && feed_routes(shared, channel, event, data.as_deref(), user_id.as_deref())
                == Some(false)
        {
            return;
        }
    }
    let sink = shared.listener.borrow().clone();
    let Some(sink) = sink else { return };
    let delivered = match notice {
        Notice::Message {
            channel,
            event,
            data,
            user_id,
        } => sink.message(
            &js_name(shared, channel.as_deref()),
            &js_name(shared, Some(event)),
            data.as_deref(),
            &js_name(shared, user_id.as_deref()),
        ),
        other => sink.notice(&notice_json(other)),
    };
    if let Err(thrown) = delivered {
        console_error_value(
            "domvia-realtime: a listener threw; the SDK goes on",
            &thrown,
        );
    }
}

/// A notice as JSON text, which the TS layer parses once (`JSON.parse` is
/// native): `type` and the notice's fields; a member's `user_info` goes in
/// as the JSON it is (`userInfo`), `user_data` as the text the broker signed
/// (`userDataJson`). Channel messages take the direct `NoticeSink.message`
/// path instead; their JSON form is kept so every notice has one.
fn notice_json(notice: &Notice) -> String {
    let mut out = String::new();
    match notice {
        Notice::StateChange {
            previous,
            current,
            reason,
        } => JsonObject::typed(&mut out, "state_change")
            .str("previous", previous.as_str())
            .str("current", current.as_str())
            .opt_str("reason", reason.as_deref())
            .end(),
        Notice::Subscribed { channel } => JsonObject::typed(&mut out, "subscribed")
            .str("channel", channel)
            .end(),
        Notice::SubscriptionError {
            channel,
            status,
            message,
        } => {
            let mut object = JsonObject::typed(&mut out, "subscription_error");
            object.str("channel", channel).str("message", message);
            if let Some(status) = status {
                object.u64("status", u64::from(*status));
            }
            object.end();
        }
        Notice::MemberAdded {
            channel,
            user_id,
            user_info,
        }
        | Notice::MemberRemoved {
            channel,
            user_id,
            user_info,
        } => {
            let kind = if matches!(notice, Notice::MemberAdded { .. }) {
                "member_added"
            } else {
                "member_removed"
            };
            let mut object = JsonObject::typed(&mut out, kind);
            object.str("channel", channel).str("userId", user_id);
            if let Some(info) = user_info {
                info.push_json(object.key("userInfo"));
            }
            object.end();
        }
        Notice::Message {
            channel,
            event,
            data,
            user_id,
        } => JsonObject::typed(&mut out, "message")
            .opt_str("channel", channel.as_deref())
            .str("event", event)
            .opt_str("dataJson", data.as_deref())
            .opt_str("userId", user_id.as_deref())
            .end(),
        Notice::Error { code, message } => {
            let mut object = JsonObject::typed(&mut out, "error");
            object.str("message", message);
            if let Some(code) = code {
                object.u64("code", u64::from(*code));
            }
            object.end();
        }
        Notice::SignedIn { user_data } => JsonObject::typed(&mut out, "signed_in")
            .str("userDataJson", user_data)
            .end(),
    }
    out
}

fn config_error(reason: &str) -> JsValue {
    js_error(&Error::InvalidConfig {
        reason: reason.to_owned(),
    })
}

/// A string option; absent or null is `None`.
fn string_option(options: &Value, name: &str) -> Result<Option<String>, JsValue> {
    match options.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(config_error(&format!("{name} must be a string"))),
    }
}

/// A number option, fractions dropped; absent is `None`. `JSON.stringify`
/// writes NaN and the infinities as null, so null is refused like them.
fn number_option(options: &Value, name: &str) -> Result<Option<u64>, JsValue> {
    match options.get(name) {
        None => Ok(None),
        Some(value @ Value::Number(number)) if !number.as_str().starts_with('-') => {
            Ok(js_number_as_u64(value))
        }
        Some(_) => Err(config_error(&format!(
            "{name} must be a non-negative number"
        ))),
    }
}

fn bool_option(options: &Value, name: &str) -> Option<bool> {
    match options.get(name) {
        Some(Value::Bool(value)) => Some(*value),
        _ => None,
    }
}
