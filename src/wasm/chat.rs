//! `ChatRoomState`: the pure [`RoomState`] behind a JS class.
//!
//! Thin by design: each method converts its arguments once, calls the core,
//! and converts the result into plain JS objects with snake_case fields
//! (maps become objects, integers numbers, `None` null or, for optional
//! fields, absent). No chat logic lives here, and no JS is called back, so
//! nothing here can re-enter the room.
//!
//! Objects cross as JSON text: `JSON.stringify` on the way in (then the
//! serde_json parser the protocol already links), the core's own JSON writer
//! and `JSON.parse` on the way out. Both JS functions are native and fast, and
//! this keeps a generic JS-value (de)serializer per type out of the wasm.

use js_sys::JSON;
use serde_json::Value;
use wasm_bindgen::prelude::*;

use crate::chat::{
    read_positions_to_json, Applied, ChatMessage, OutgoingSend, RoomState, StoredMessage,
    TypingSettings,
};
use crate::protocol::Error;

use super::{js_error, to_u64};

#[wasm_bindgen(typescript_custom_section)]
const CHAT_ROOM_TYPES: &str = r#"
/** A message as a chat room shows it; `message_id` and `seq` are null while pending. */
export interface ChatRoomMessage {
  message_id: string | null;
  room_id: string;
  seq: number | null;
  user_id: string;
  text: string | null;
  ciphertext?: object;
  sent_at: number;
  client_id: string;
  status: "sending" | "sent" | "failed";
}
/** What applying stored messages changed. */
export interface ChatRoomApplied {
  /** New to the room, ascending by seq, each once in the room's lifetime. */
  added: ChatRoomMessage[];
  /** Set when messages are missing: fetch `?after=` this seq. */
  catch_up_after?: number;
  /** Users whose typing ended (their message arrived, or it expired by nowMs). */
  typing_stopped: string[];
}
/** A send to POST (again). */
export interface ChatRoomPendingSend {
  client_id: string;
  text: string;
}
"#;

/// One chat room's state: order, dedup, delivery, typing, reads.
#[wasm_bindgen(js_name = ChatRoomState)]
pub struct ChatRoomState {
    room: RoomState,
}

#[wasm_bindgen(js_class = ChatRoomState)]
impl ChatRoomState {
    #[wasm_bindgen(constructor)]
    pub fn new(
        room_id: String,
        my_user_id: String,
        typing_throttle_ms: f64,
        typing_timeout_ms: f64,
    ) -> ChatRoomState {
        ChatRoomState {
            room: RoomState::new(
                room_id,
                my_user_id,
                TypingSettings {
                    throttle_ms: to_u64(typing_throttle_ms),
                    timeout_ms: to_u64(typing_timeout_ms),
                },
            ),
        }
    }

    #[wasm_bindgen(getter, js_name = roomId)]
    pub fn room_id(&self) -> String {
        self.room.room_id().to_owned()
    }

    #[wasm_bindgen(getter, js_name = myUserId)]
    pub fn my_user_id(&self) -> String {
        self.room.my_user_id().to_owned()
    }

    // ---- history, live, catch-up -----------------------------------------

    #[wasm_bindgen(js_name = applyLatestPage, unchecked_return_type = "ChatRoomApplied")]
    pub fn apply_latest_page(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "object[]")] messages: JsValue,
        has_more: bool,
        now_ms: f64,
    ) -> Result<JsValue, JsValue> {
        let messages = messages_from_js(messages)?;
        applied_to_js(
            self.room
                .apply_latest_page(messages, has_more, to_u64(now_ms)),
        )
    }

    #[wasm_bindgen(js_name = applyOlderPage, unchecked_return_type = "ChatRoomApplied")]
    pub fn apply_older_page(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "object[]")] messages: JsValue,
        has_more: bool,
        now_ms: f64,
    ) -> Result<JsValue, JsValue> {
        let messages = messages_from_js(messages)?;
        applied_to_js(
            self.room
                .apply_older_page(messages, has_more, to_u64(now_ms)),
        )
    }

    #[wasm_bindgen(js_name = applyCatchUpPage, unchecked_return_type = "ChatRoomApplied")]
    pub fn apply_catch_up_page(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "object[]")] messages: JsValue,
        has_more: bool,
        now_ms: f64,
    ) -> Result<JsValue, JsValue> {
        let messages = messages_from_js(messages)?;
        applied_to_js(
            self.room
                .apply_catch_up_page(messages, has_more, to_u64(now_ms)),
        )
    }

    /// A `message.created` event's data, as an object.
    #[wasm_bindgen(js_name = applyCreated, unchecked_return_type = "ChatRoomApplied")]
    pub fn apply_created(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "object")] message: JsValue,
        now_ms: f64,
    ) -> Result<JsValue, JsValue> {
        let message = message_from_js(message)?;
        applied_to_js(self.room.apply_created(message, to_u64(now_ms)))
    }

    /// The `before` of the next `loadOlder` request; undefined when there are no older messages.
    #[wasm_bindgen(getter, js_name = olderCursor)]
    pub fn older_cursor(&self) -> Option<f64> {
        self.room.older_cursor().map(|seq| seq as f64)
    }

    #[wasm_bindgen(getter, js_name = hasOlder)]
    pub fn has_older(&self) -> bool {
        self.room.has_older()
    }

    /// The highest contiguous seq (0 when empty): the `after` of a catch-up.
    #[wasm_bindgen(getter, js_name = catchUpCursor)]
    pub fn catch_up_cursor(&self) -> f64 {
        self.room.catch_up_cursor() as f64
    }

    // ---- sending ----------------------------------------------------------

    /// Throws DomViaError `invalid_text`, `text_too_large` or `invalid_client_id`.
    #[wasm_bindgen(js_name = beginSend, unchecked_return_type = "ChatRoomMessage")]
    pub fn begin_send(
        &mut self,
        client_id: &str,
        text: &str,
        now_ms: f64,
    ) -> Result<JsValue, JsValue> {
        let message = self
            .room
            .begin_send(client_id, text, to_u64(now_ms))
            .map_err(|e| js_error(&e))?;
        from_json(&message.to_json())
    }

    #[wasm_bindgen(js_name = sendSucceeded, unchecked_return_type = "ChatRoomApplied")]
    pub fn send_succeeded(
        &mut self,
        client_id: &str,
        #[wasm_bindgen(unchecked_param_type = "object")] stored: JsValue,
        now_ms: f64,
    ) -> Result<JsValue, JsValue> {
        let stored = message_from_js(stored)?;
        applied_to_js(self.room.send_succeeded(client_id, stored, to_u64(now_ms)))
    }

    #[wasm_bindgen(js_name = sendFailed)]
    pub fn send_failed(&mut self, client_id: &str) {
        self.room.send_failed(client_id);
    }

    /// Returns the text to POST again; throws `unknown_client_id` unless the send failed.
    pub fn retry(&mut self, client_id: &str) -> Result<String, JsValue> {
        self.room.retry(client_id).map_err(|e| js_error(&e))
    }

    #[wasm_bindgen(js_name = pendingSends, unchecked_return_type = "ChatRoomPendingSend[]")]
    pub fn pending_sends(&self) -> Result<JsValue, JsValue> {
        from_json(&OutgoingSend::list_to_json(&self.room.pending_sends()))
    }

    // ---- typing -----------------------------------------------------------

    #[wasm_bindgen(js_name = typingInput)]
    pub fn typing_input(&mut self, now_ms: f64) -> bool {
        self.room.typing_input(to_u64(now_ms))
    }

    #[wasm_bindgen(js_name = typingStop)]
    pub fn typing_stop(&mut self) -> bool {
        self.room.typing_stop()
    }

    #[wasm_bindgen(js_name = typingReceived)]
    pub fn typing_received(&mut self, user_id: &str, is_typing: bool, now_ms: f64) -> bool {
        self.room
            .typing_received(user_id, is_typing, to_u64(now_ms))
    }

    #[wasm_bindgen(js_name = expireTyping)]
    pub fn expire_typing(&mut self, now_ms: f64) -> Vec<String> {
        self.room.expire_typing(to_u64(now_ms))
    }

    #[wasm_bindgen(getter, js_name = nextTypingDeadline)]
    pub fn next_typing_deadline(&self) -> Option<f64> {
        self.room.next_typing_deadline().map(|ms| ms as f64)
    }

    #[wasm_bindgen(js_name = typingUsers)]
    pub fn typing_users(&self) -> Vec<String> {
        self.room.typing_users()
    }

    // ---- reads ------------------------------------------------------------

    #[wasm_bindgen(js_name = setReadState)]
    pub fn set_read_state(&mut self, my_last_read_seq: f64, unread_count: f64, latest_seq: f64) {
        self.room.set_read_state(
            to_u64(my_last_read_seq),
            to_u64(unread_count),
            to_u64(latest_seq),
        );
    }

    /// The seq to POST to `/read` when my position moved; undefined otherwise.
    #[wasm_bindgen(js_name = markRead)]
    pub fn mark_read(&mut self, message_id: &str) -> Option<f64> {
        self.room.mark_read(message_id).map(|seq| seq as f64)
    }

    #[wasm_bindgen(js_name = receiptReceived)]
    pub fn receipt_received(&mut self, user_id: &str, seq: f64) -> bool {
        self.room.receipt_received(user_id, to_u64(seq))
    }

    #[wasm_bindgen(js_name = readPositions, unchecked_return_type = "Record<string, number>")]
    pub fn read_positions(&self) -> Result<JsValue, JsValue> {
        from_json(&read_positions_to_json(self.room.read_positions()))
    }

    #[wasm_bindgen(getter, js_name = unreadCount)]
    pub fn unread_count(&self) -> f64 {
        self.room.unread_count() as f64
    }

    // ---- view -------------------------------------------------------------

    /// Stored messages ascending by seq, then pending ones in send order.
    #[wasm_bindgen(unchecked_return_type = "ChatRoomMessage[]")]
    pub fn messages(&self) -> Result<JsValue, JsValue> {
        from_json(&ChatMessage::list_to_json(&self.room.messages()))
    }
}

/// A JS value as serde_json's Value, through `JSON.stringify`. `undefined`,
/// functions and symbols have no JSON text; they fail like a BigInt does.
fn value_from_js(value: &JsValue, what: &str) -> Result<Value, JsValue> {
    let text = JSON::stringify(value)
        .ok()
        .and_then(|text| text.as_string());
    match text {
        Some(text) => parse_json(&text, what),
        None => Err(invalid_message(what)),
    }
}

fn parse_json(text: &str, what: &str) -> Result<Value, JsValue> {
    serde_json::from_str(text).map_err(|e| invalid_message(&format!("{what} ({e})")))
}

fn invalid_message(reason: &str) -> JsValue {
    js_error(&Error::InvalidMessage {
        reason: reason.to_owned(),
    })
}

fn message_from_js(value: JsValue) -> Result<StoredMessage, JsValue> {
    let value = value_from_js(&value, "it is not a plain object")?;
    StoredMessage::from_json(value).map_err(|e| js_error(&e))
}

fn messages_from_js(value: JsValue) -> Result<Vec<StoredMessage>, JsValue> {
    let Value::Array(values) = value_from_js(&value, "messages is not an array of plain objects")?
    else {
        return Err(invalid_message("messages is not an array"));
    };
    // A loop rather than collect() into a Result: one less generic adapter.
    let mut messages = Vec::with_capacity(values.len());
    for value in values {
        messages.push(StoredMessage::from_json(value).map_err(|e| js_error(&e))?);
    }
    Ok(messages)
}

/// Plain JS objects from the core's JSON text.
fn from_json(text: &str) -> Result<JsValue, JsValue> {
    // The core writes valid JSON, so this cannot fail; an error beats a panic.
    JSON::parse(text).map_err(|_| invalid_message("it cannot be represented in JavaScript"))
}

/// An [`Applied`] as a plain JS object, or the error as a DomViaError.
fn applied_to_js(result: Result<Applied, Error>) -> Result<JsValue, JsValue> {
    from_json(&result.map_err(|e| js_error(&e))?.to_json())
}
