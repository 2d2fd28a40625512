//! `ChatRoomSession`: the pure [`RoomSession`] behind a JS class.
//!
//! Thin by design: each method converts its arguments once, calls the core,
//! and converts the result into plain JS objects with snake_case fields
//! (maps become objects, integers numbers, `None` null or, for optional
//! fields, absent). No chat logic lives here, and no JS is called back, so
//! nothing here can re-enter the room.
//!
//! Objects cross as JSON text: `JSON.stringify` on the way in (then the
//! core's JSON reader, which the protocol links anyway), the core's own JSON writer
//! and `JSON.parse` on the way out. Both JS functions are native and fast, and
//! this keeps a generic JS-value (de)serializer per type out of the wasm.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::rc::Rc;

use crate::json::Value;
use js_sys::JSON;
use wasm_bindgen::prelude::*;

use crate::chat::json::{push_array, push_u64};
use crate::chat::{
    read_positions_to_json, Action, ChatMessage, Opened, RoomEvent, RoomSession, RoomState,
    SessionConfig, TypingSettings, TAIL_CHECK_MS,
};
use crate::protocol::{is_json, push_json_string, Error};

use super::{js_error, js_number_as_u64, json_from_js, to_u64, JsonObject};

/// A JS value as the core's JSON value; `undefined`, functions and symbols
/// have no JSON text, and fail like a BigInt does.
fn value_from_js(value: &JsValue, what: &str) -> Result<Value, JsValue> {
    json_from_js(value).ok_or_else(|| invalid_message(what))
}

/// Event data as the broker sent it: its JSON, or the text itself as a string
/// when it is not JSON (as the channel's listeners see it), which the session
/// then ignores as malformed like any other wrong shape.
fn event_data(text: &str) -> Value {
    crate::json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn invalid_message(reason: &str) -> JsValue {
    js_error(&Error::InvalidMessage {
        reason: reason.to_owned(),
    })
}

/// Plain JS objects from the core's JSON text.
fn from_json(text: &str) -> Result<JsValue, JsValue> {
    // The core writes valid JSON, so this cannot fail; an error beats a panic.
    JSON::parse(text).map_err(|_| invalid_message("it cannot be represented in JavaScript"))
}

#[wasm_bindgen(typescript_custom_section)]
const CHAT_ROOM_SESSION_TYPES: &str = r#"
/** What a ChatRoomSession asks its caller to do (takeActions). */
export type ChatRoomSessionAction =
  | { type: "request"; id: number; operation: string; method: "GET" | "POST"; path: string; body?: string; with_socket_id: boolean; keepalive: boolean }
  | { type: "timer"; name: string; delay_ms: number }
  | { type: "prepare_encryption"; user_id: string }
  | { type: "seal"; client_id: string; text: string; stale?: { current_epoch: number; needs_new_epoch: boolean } }
  | { type: "open"; message: { message_id: string; user_id: string; client_id: string; sent_at: number; ciphertext: object } }
  | { type: "typing"; data: object }
  | { type: "event"; event: ChatRoomSessionEvent };
/** What a ChatRoomSession reports. */
export type ChatRoomSessionEvent =
  | { type: "ready" }
  | { type: "failed"; code: string; message: string }
  | { type: "changed" }
  | { type: "message"; message: ChatRoomViewMessage }
  | { type: "typing"; user_id: string; is_typing: boolean; verified: boolean }
  | { type: "receipt"; user_id: string; message_id: string; seq: number }
  | { type: "delivered"; client_id: string; message: ChatRoomViewMessage }
  | { type: "send_failed"; client_id: string; code: string; message: string }
  | { type: "older_loaded"; added: number; has_more: boolean }
  | { type: "older_failed"; code: string; message: string }
  | { type: "ignored"; message: string };
/** A message as the room shows it; `decryption_error` when an encrypted one did not open. */
export interface ChatRoomViewMessage {
  message_id: string | null;
  room_id: string;
  seq: number | null;
  user_id: string;
  text: string | null;
  ciphertext?: object;
  sent_at: number;
  client_id: string;
  status: "sending" | "sent" | "failed";
  decryption_error?: { code: string; message: string };
}
/** What changed in the room's message list since a view last read it (viewSince). */
export interface ChatRoomViewDelta {
  /** Pass both to the next viewSince. */
  epoch: number;
  cursor: number;
  /** Drop the stored messages first: `changed` holds all of them. */
  full: boolean;
  /** Stored messages new or changed, ascending by seq: insert or replace each by seq. */
  changed: ChatRoomViewMessage[];
  /** Every pending send, in send order, after the stored messages. */
  pending: ChatRoomViewMessage[];
}
"#;

/// One chat room's policy ([`RoomSession`]): the SDK feeds it what arrives
/// and carries out the actions it returns; it decides everything else.
#[wasm_bindgen(js_name = ChatRoomSession)]
pub struct ChatRoomSession {
    /// Shared with the connection while the room's channel events are routed
    /// to it (`RealtimeConnection.routeToSession`): borrowed only for one
    /// call into the pure session, never while JS runs.
    session: Rc<RefCell<RoomSession>>,
    /// Whether `takeActions` includes the `message` events (`onMessage`):
    /// off while the app has no listener, so a busy room's messages are not
    /// written as JSON and parsed in the page only to be dropped there.
    reports_messages: Cell<bool>,
}

#[wasm_bindgen(js_class = ChatRoomSession)]
impl ChatRoomSession {
    /// `config`: `{room_id, user_id?, encrypted, presence, page_size,
    /// typing_throttle_ms, typing_timeout_ms, tail_check_ms, jitter_seed}`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "object")] config: JsValue,
    ) -> Result<ChatRoomSession, JsValue> {
        let config = value_from_js(&config, "the session config is not a plain object")?;
        let number = |key: &str, default: u64| {
            config
                .get(key)
                .and_then(js_number_as_u64)
                .unwrap_or(default)
        };
        let text = |key: &str| config.get(key).and_then(Value::as_str).map(str::to_owned);
        let Some(room_id) = text("room_id") else {
            return Err(invalid_message("the session config has no room_id"));
        };
        let defaults = TypingSettings::default();
        Ok(ChatRoomSession {
            session: Rc::new(RefCell::new(RoomSession::new(SessionConfig {
                room_id,
                user_id: text("user_id"),
                encrypted: config.get("encrypted") == Some(&Value::Bool(true)),
                presence: config.get("presence") == Some(&Value::Bool(true)),
                page_size: u32::try_from(number("page_size", 50)).unwrap_or(50),
                typing: TypingSettings {
                    throttle_ms: number("typing_throttle_ms", defaults.throttle_ms),
                    timeout_ms: number("typing_timeout_ms", defaults.timeout_ms),
                },
                tail_check_ms: number("tail_check_ms", TAIL_CHECK_MS),
                jitter_seed: number("jitter_seed", 0),
            }))),
            reports_messages: Cell::new(true),
        })
    }

    /// Whether `takeActions` has anything: a check that crosses no string,
    /// so a pump whose input asked for nothing pays no JSON.
    #[wasm_bindgen(getter, js_name = hasActions)]
    pub fn has_actions(&self) -> bool {
        self.view().has_actions()
    }

    /// The actions since the last call, as plain objects.
    #[wasm_bindgen(js_name = takeActions, unchecked_return_type = "ChatRoomSessionAction[]")]
    pub fn take_actions(&self) -> Result<JsValue, JsValue> {
        let mut session = self.session();
        let actions = session.take_actions();
        let session = &*session;
        let reports_messages = self.reports_messages.get();
        let wanted = actions.into_iter().filter(|action| {
            reports_messages || !matches!(action, Action::Emit(RoomEvent::Message(_)))
        });
        let mut out = String::new();
        push_array(&mut out, wanted, |out, action| {
            push_action(session, out, action)
        });
        from_json(&out)
    }

    /// Whether to report `message` events (on at first); see `reports_messages`.
    #[wasm_bindgen(setter, js_name = reportsMessages)]
    pub fn set_reports_messages(&self, reports: bool) {
        self.reports_messages.set(reports);
    }

    pub fn start(&self) {
        self.session().start();
    }

    pub fn subscribed(&self, presence: bool) {
        self.session().subscribed(presence);
    }

    #[wasm_bindgen(js_name = subscriptionRefused)]
    pub fn subscription_refused(&self, channel: &str, status: Option<f64>) {
        let status = status.and_then(|s| u16::try_from(to_u64(s)).ok());
        self.session().subscription_refused(channel, status);
    }

    /// The answer to request `id`: status 0 when there was none (`body` then says why).
    pub fn response(&self, id: f64, status: f64, body: &str, now_ms: f64) {
        let status = u16::try_from(to_u64(status)).unwrap_or(0);
        self.session()
            .response(to_u64(id), status, body, to_u64(now_ms));
    }

    #[wasm_bindgen(js_name = timerFired)]
    pub fn timer_fired(&self, name: &str, now_ms: f64) {
        self.session().timer_fired(name, to_u64(now_ms));
    }

    #[wasm_bindgen(js_name = encryptionPrepared)]
    pub fn encryption_prepared(&self) {
        self.session().encryption_prepared();
    }

    #[wasm_bindgen(js_name = encryptionFailed)]
    pub fn encryption_failed(&self, code: &str, message: &str) {
        self.session().encryption_failed(code, message);
    }

    /// The sealed envelope of a send, as JSON text.
    pub fn sealed(&self, client_id: &str, envelope: &str) {
        self.session().sealed(client_id, envelope);
    }

    #[wasm_bindgen(js_name = sealFailed)]
    pub fn seal_failed(&self, client_id: &str, code: &str, message: &str) {
        self.session().seal_failed(client_id, code, message);
    }

    /// How an encrypted message opened: its text, or (text undefined) a code and message.
    pub fn opened(
        &self,
        message_id: &str,
        text: Option<String>,
        code: &str,
        message: &str,
        now_ms: f64,
    ) {
        let result = match text {
            Some(text) => Opened::Text(text),
            None => Opened::Failed {
                code: code.to_owned(),
                message: message.to_owned(),
            },
        };
        self.session().opened(message_id, result, to_u64(now_ms));
    }

    pub fn reconnected(&self) {
        self.session().reconnected();
    }

    /// Throws DomViaError `invalid_text`, `text_too_large` or `invalid_client_id`.
    pub fn send(&self, client_id: &str, text: &str, now_ms: f64) -> Result<(), JsValue> {
        self.session()
            .send(client_id, text, to_u64(now_ms))
            .map_err(|e| js_error(&e))
    }

    /// Throws `unknown_client_id` unless the send failed.
    pub fn retry(&self, client_id: &str) -> Result<(), JsValue> {
        self.session().retry(client_id).map_err(|e| js_error(&e))
    }

    #[wasm_bindgen(js_name = loadOlder)]
    pub fn load_older(&self) {
        self.session().load_older();
    }

    #[wasm_bindgen(js_name = typingInput)]
    pub fn typing_input(&self, claimed_user_id: Option<String>, now_ms: f64) {
        self.session()
            .typing_input(claimed_user_id.as_deref(), to_u64(now_ms));
    }

    #[wasm_bindgen(js_name = stopTyping)]
    pub fn stop_typing(&self) {
        self.session().stop_typing();
    }

    #[wasm_bindgen(js_name = markRead)]
    pub fn mark_read(&self, message_id: &str) {
        self.session().mark_read(message_id);
    }

    pub fn leave(&self) {
        self.session().leave();
    }

    // ---- the view -----------------------------------------------------------

    /// What the message list gained or changed since the view read
    /// `(epoch, cursor)` (`(0, 0)` at first): a refresh costs what changed,
    /// not the whole history (see `RoomSession::view_since`).
    #[wasm_bindgen(js_name = viewSince, unchecked_return_type = "ChatRoomViewDelta")]
    pub fn view_since(&self, epoch: f64, cursor: f64) -> Result<JsValue, JsValue> {
        let session = self.view();
        let delta = session.view_since(to_u64(epoch), to_u64(cursor));
        let mut out = String::new();
        let mut object = JsonObject::open(&mut out);
        object
            .u64("epoch", delta.epoch)
            .u64("cursor", delta.cursor)
            .bool("full", delta.full);
        let list = object.key("changed");
        push_array(list, &delta.changed, |out, message| {
            push_message(&session, out, message)
        });
        let list = object.key("pending");
        push_array(list, &delta.pending, |out, message| {
            push_message(&session, out, message)
        });
        object.end();
        from_json(&out)
    }

    #[wasm_bindgen(getter, js_name = unreadCount)]
    pub fn unread_count(&self) -> f64 {
        self.view().state().map_or(0.0, |s| s.unread_count() as f64)
    }

    #[wasm_bindgen(getter, js_name = hasOlder)]
    pub fn has_older(&self) -> bool {
        self.view().state().is_some_and(RoomState::has_older)
    }

    #[wasm_bindgen(js_name = readPositions, unchecked_return_type = "Record<string, number>")]
    pub fn read_positions(&self) -> Result<JsValue, JsValue> {
        match self.view().state() {
            Some(state) => from_json(&read_positions_to_json(state.read_positions())),
            None => from_json("{}"),
        }
    }
}

impl ChatRoomSession {
    /// The session, for the connection to feed routed channel events to.
    pub(crate) fn shared(&self) -> Rc<RefCell<RoomSession>> {
        Rc::clone(&self.session)
    }

    // The two borrows, each in one place: inlined, every export would carry
    // its own borrow check and panic path (+4.5 KB of code for ~30 exports).

    #[inline(never)]
    fn session(&self) -> RefMut<'_, RoomSession> {
        self.session.borrow_mut()
    }

    #[inline(never)]
    fn view(&self) -> Ref<'_, RoomSession> {
        self.session.borrow()
    }
}

/// The room's channel events reach the session from the connection, inside
/// the wasm (`feed_channel_event`), never from JS: these are the same inputs
/// for Rust callers (the wasm-bindgen tests), not exports.
impl ChatRoomSession {
    pub fn message_created(&self, data_json: &str, now_ms: f64) -> bool {
        self.channel_event("message.created", data_json, None, now_ms)
    }

    pub fn receipt(&self, data_json: &str, now_ms: f64) -> bool {
        self.channel_event("receipt.updated", data_json, None, now_ms)
    }

    pub fn member_removed(&self, data_json: &str) -> bool {
        self.channel_event("member.removed", data_json, None, 0.0)
    }

    pub fn client_typing(
        &self,
        data_json: &str,
        stamped_user_id: Option<&str>,
        now_ms: f64,
    ) -> bool {
        self.channel_event("client-typing", data_json, stamped_user_id, now_ms)
    }

    fn channel_event(
        &self,
        event: &str,
        data_json: &str,
        user_id: Option<&str>,
        now_ms: f64,
    ) -> bool {
        let kinds = ROOM_EVENTS | TYPING_EVENTS;
        feed_channel_event(
            &self.session,
            kinds,
            event,
            Some(data_json),
            user_id,
            to_u64(now_ms),
        )
    }
}

/// A route's `kinds`: the room's own events (`message.created`,
/// `receipt.updated`, `member.removed`, on the private channel).
pub(crate) const ROOM_EVENTS: u8 = 1;
/// A route's `kinds`: `client-typing` (on the presence channel of a presence
/// room, else the private one).
pub(crate) const TYPING_EVENTS: u8 = 2;

/// Feeds one channel event of a routed channel to its session (the only way
/// these events reach it); false when the route does not take this event.
/// `user_id` is the broker's stamp on a client event.
pub(crate) fn feed_channel_event(
    session: &RefCell<RoomSession>,
    kinds: u8,
    event: &str,
    data_json: Option<&str>,
    user_id: Option<&str>,
    now_ms: u64,
) -> bool {
    let data = || event_data(data_json.unwrap_or("null"));
    // No JS runs while the session is borrowed (see `ChatRoomSession`), so
    // this borrow cannot fail; were it to, the event goes on to the JS
    // listeners like one of an unrouted channel, rather than a panic.
    let Ok(mut session) = session.try_borrow_mut() else {
        return false;
    };
    match event {
        "message.created" if kinds & ROOM_EVENTS != 0 => session.message_created(data(), now_ms),
        "receipt.updated" if kinds & ROOM_EVENTS != 0 => session.receipt(data(), now_ms),
        "member.removed" if kinds & ROOM_EVENTS != 0 => session.member_removed(&data()),
        "client-typing" if kinds & TYPING_EVENTS != 0 => {
            session.client_typing(&data(), user_id, now_ms)
        }
        _ => return false,
    }
    true
}

/// Appends a view message, with its `decryption_error` when opening failed.
fn push_message(session: &RoomSession, out: &mut String, message: &ChatMessage) {
    let error = message
        .message_id
        .as_deref()
        .and_then(|id| session.decryption_error(id));
    let start = out.len();
    message.push_json(out);
    if let Some((code, text)) = error {
        // The message object is still open at its last byte: reopen it.
        if out.len() > start && out.ends_with('}') {
            out.pop();
            out.push_str(",\"decryption_error\":{\"code\":");
            push_json_string(out, code);
            out.push_str(",\"message\":");
            push_json_string(out, text);
            out.push_str("}}");
        }
    }
}

fn push_action(session: &RoomSession, out: &mut String, action: Action) {
    match action {
        Action::Request(r) => {
            let mut object = JsonObject::typed(out, "request");
            object
                .u64("id", r.id)
                .str("operation", r.operation)
                .str("method", r.method)
                .str("path", &r.path)
                .bool("with_socket_id", r.with_socket_id)
                .bool("keepalive", r.keepalive);
            // Absent rather than null: the TS side reads `undefined` as "none".
            if let Some(body) = &r.body {
                object.str("body", body);
            }
            object.end();
        }
        Action::StartTimer { name, delay_ms } => JsonObject::typed(out, "timer")
            .str("name", &name)
            .u64("delay_ms", delay_ms)
            .end(),
        Action::PrepareEncryption { user_id } => {
            JsonObject::typed(out, "prepare_encryption")
                .str("user_id", &user_id)
                .end();
        }
        Action::Seal {
            client_id,
            text,
            stale,
        } => {
            let mut object = JsonObject::typed(out, "seal");
            object.str("client_id", &client_id).str("text", &text);
            if let Some(stale) = stale {
                let out = object.key("stale");
                out.push_str("{\"current_epoch\":");
                push_u64(out, stale.current_epoch);
                out.push_str(",\"needs_new_epoch\":");
                out.push_str(if stale.needs_new_epoch {
                    "true}"
                } else {
                    "false}"
                });
            }
            object.end();
        }
        Action::Open { message } => {
            let mut object = JsonObject::typed(out, "open");
            let inner = object.key("message");
            let mut fields = JsonObject::open(inner);
            fields
                .str("message_id", &message.message_id)
                .str("user_id", &message.user_id);
            fields
                .str("client_id", &message.client_id)
                .u64("sent_at", message.sent_at);
            // The ciphertext is the envelope's JSON text; anything that is
            // not JSON goes as null, and opening it then fails in the TS layer.
            match message.ciphertext.as_deref() {
                Some(text) if is_json(text) => fields.raw("ciphertext", text),
                _ => fields.raw("ciphertext", "null"),
            };
            fields.end();
            object.end();
        }
        Action::SendTyping { data } => {
            JsonObject::typed(out, "typing")
                .raw("data", &data.to_string())
                .end();
        }
        Action::Emit(event) => {
            let mut object = JsonObject::typed(out, "event");
            let inner = object.key("event");
            push_event(session, inner, event);
            object.end();
        }
    }
}

fn push_event(session: &RoomSession, out: &mut String, event: RoomEvent) {
    match event {
        RoomEvent::Ready => JsonObject::typed(out, "ready").end(),
        RoomEvent::Failed { code, message } => JsonObject::typed(out, "failed")
            .str("code", &code)
            .str("message", &message)
            .end(),
        RoomEvent::Changed => JsonObject::typed(out, "changed").end(),
        RoomEvent::Message(message) => {
            let mut object = JsonObject::typed(out, "message");
            push_message(session, object.key("message"), &message);
            object.end();
        }
        RoomEvent::Typing {
            user_id,
            is_typing,
            verified,
        } => JsonObject::typed(out, "typing")
            .str("user_id", &user_id)
            .bool("is_typing", is_typing)
            .bool("verified", verified)
            .end(),
        RoomEvent::Receipt {
            user_id,
            message_id,
            seq,
        } => JsonObject::typed(out, "receipt")
            .str("user_id", &user_id)
            .str("message_id", &message_id)
            .u64("seq", seq)
            .end(),
        RoomEvent::Delivered { client_id, message } => {
            let mut object = JsonObject::typed(out, "delivered");
            object.str("client_id", &client_id);
            push_message(session, object.key("message"), &message);
            object.end();
        }
        RoomEvent::SendFailed {
            client_id,
            code,
            message,
        } => JsonObject::typed(out, "send_failed")
            .str("client_id", &client_id)
            .str("code", &code)
            .str("message", &message)
            .end(),
        RoomEvent::OlderLoaded { added, has_more } => JsonObject::typed(out, "older_loaded")
            .u64("added", added as u64)
            .bool("has_more", has_more)
            .end(),
        RoomEvent::OlderFailed { code, message } => JsonObject::typed(out, "older_failed")
            .str("code", &code)
            .str("message", &message)
            .end(),
        RoomEvent::Ignored { message } => JsonObject::typed(out, "ignored")
            .str("message", &message)
            .end(),
    }
}
