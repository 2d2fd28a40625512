//! End-to-end encryption behind JS classes: `E2eeDevice`, `E2eeRoomSession`
//! (the room's policy: the TS layer pumps its actions) and `safetyNumber`,
//! over the pure core in `src/e2ee`; with the `e2ee-primitives` feature also
//! the primitives under the session, `E2eeRoom` and `E2eeKnownDevices`, for
//! the wasm tests and bench/e2ee.mjs (the release module leaves them out).
//!
//! Thin like `chat.rs`: objects (device records, key shares, envelopes) cross
//! as JSON text (`JSON.stringify` in, the core's JSON reader, then its writer
//! and `JSON.parse` out: src/e2ee/json.rs, so this module links no
//! serde_json), errors are DomViaErrors with the core's `e2ee_*` codes, and no
//! JS is called back. Randomness is
//! `crypto.getRandomValues` through getrandom, handed to the core as its
//! injected rng. Secrets are zeroized in wasm memory as the core does it; what
//! JS holds (`exportSecret`, `exportState`) is the caller's to protect.

#[cfg(feature = "e2ee-primitives")]
use crate::error::quoted;
#[cfg(feature = "e2ee-primitives")]
use crate::vec_map::VecMap;
use std::convert::Infallible;

use js_sys::{Array, Object, Reflect, Uint8Array, JSON};
use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

use crate::e2ee::json::Json;
#[cfg(feature = "e2ee-primitives")]
use crate::e2ee::json::JsonWriter;
use crate::e2ee::rand_core::{TryCryptoRng, TryRng};
use crate::e2ee::session::{Action, EncryptedMessage, Event, Failure, StaleEpoch};
use crate::e2ee::{safety_number as core_safety_number, DeviceKeys, DeviceRecord, RoomSession};
#[cfg(feature = "e2ee-primitives")]
use crate::e2ee::{DeviceCheck, Envelope, KeyShare, KnownDevices, RoomKeys, MAX_EPOCH};
use crate::protocol::Error;

use super::{js_error, to_u64};

#[wasm_bindgen(typescript_custom_section)]
const E2EE_TYPES: &str = r#"
/** A new epoch's shares, the body of `POST /api/rooms/{id}/epochs`. */
export interface E2eeNewEpoch {
  epoch: number;
  shares: { device_id: string; share: object }[];
}
/** An action of an `E2eeRoomSession` (see `poll`): the TS layer carries it out and answers. */
export type E2eeSessionAction =
  | { type: "request"; id: number; method: "GET" | "POST"; path: string; body?: object; operation: string }
  | { type: "lock"; id: number }
  | { type: "persist"; id: number; room_state?: string; known_devices?: string }
  | { type: "ledger_check"; id: number; keys: { sender_user_id: string; message_id: string }[] }
  | { type: "ledger_record"; id: number; entries: { sender_user_id: string; message_id: string; backend_message_id: string }[] }
  | { type: "unlock" }
  | { type: "sealed"; op: number; client_id: string; envelope: object }
  | { type: "opened"; op: number; message_id: string; ok: true; text: string }
  | { type: "opened"; op: number; message_id: string; ok: false; code: string; message: string }
  | { type: "done"; op: number }
  | { type: "safety_numbers"; op: number; numbers: { device_id: string; safety_number: string }[] }
  | { type: "key_change"; user_id: string; device_id: string }
  | { type: "failed"; op: number; code: string; message: string };
/** An opened message: compare `user_id` and `message_id` with the backend's `user_id` and `client_id`. */
export interface E2eeOpenedMessage {
  text: string;
  user_id: string;
  device_id: string;
  message_id: string;
  epoch: number;
}
"#;

/// This device's keys: generated once, persisted (encrypted) by the caller.
#[wasm_bindgen(js_name = E2eeDevice)]
pub struct E2eeDevice {
    keys: DeviceKeys,
}

#[wasm_bindgen(js_class = E2eeDevice)]
impl E2eeDevice {
    /// New keys from `crypto.getRandomValues`.
    pub fn generate(user_id: &str, device_id: &str) -> Result<E2eeDevice, JsValue> {
        let keys = with_rng(|rng| DeviceKeys::generate(user_id, device_id, rng))?;
        Ok(E2eeDevice { keys })
    }

    /// Keys from the 64 bytes of `exportSecret`; throws `e2ee_invalid_key`
    /// for another length.
    pub fn restore(user_id: &str, device_id: &str, secret: Vec<u8>) -> Result<E2eeDevice, JsValue> {
        let secret = Zeroizing::new(secret);
        if secret.len() != 64 {
            return Err(js_error(&Error::E2eeInvalidKey {
                reason: "a device secret has 64 bytes".into(),
            }));
        }
        let mut x25519 = Zeroizing::new([0u8; 32]);
        let mut ed25519 = Zeroizing::new([0u8; 32]);
        x25519.copy_from_slice(&secret[..32]);
        ed25519.copy_from_slice(&secret[32..]);
        let keys = DeviceKeys::from_secrets(user_id, device_id, &x25519, &ed25519)
            .map_err(|e| js_error(&e))?;
        Ok(E2eeDevice { keys })
    }

    /// The 64 secret bytes, for encrypted persistence only.
    #[wasm_bindgen(js_name = exportSecret)]
    pub fn export_secret(&self) -> Uint8Array {
        // Copied straight into a JS array; the wasm copy is zeroized on drop.
        Uint8Array::from(&self.keys.secret_bytes()[..])
    }

    /// The signed device record (the body `{record}` of `PUT /api/devices/{id}`).
    #[wasm_bindgen(unchecked_return_type = "object")]
    pub fn record(&self) -> Result<JsValue, JsValue> {
        from_json(&self.keys.record().to_json_string())
    }

    #[wasm_bindgen(getter, js_name = userId)]
    pub fn user_id(&self) -> String {
        self.keys.user_id().to_owned()
    }

    #[wasm_bindgen(getter, js_name = deviceId)]
    pub fn device_id(&self) -> String {
        self.keys.device_id().to_owned()
    }

    /// 20 hex digits in five groups of four.
    #[wasm_bindgen(getter)]
    pub fn fingerprint(&self) -> String {
        self.keys.fingerprint()
    }
}

/// One room's encryption policy (`e2ee::RoomSession`): methods feed it user
/// calls, answers and the time; `poll()` returns its actions as plain
/// objects for the TS layer to carry out. No JS is called from here.
#[wasm_bindgen(js_name = E2eeRoomSession)]
pub struct E2eeRoomSession {
    session: RoomSession<SessionRng>,
}

#[wasm_bindgen(js_class = E2eeRoomSession)]
impl E2eeRoomSession {
    /// A session for `room_id` on the device `me` (its keys are copied).
    #[wasm_bindgen(constructor)]
    pub fn new(room_id: &str, me: &E2eeDevice) -> Result<E2eeRoomSession, JsValue> {
        let session =
            RoomSession::new(room_id, me.keys.clone(), SessionRng).map_err(|e| js_error(&e))?;
        Ok(E2eeRoomSession { session })
    }

    /// Installs the room's current epoch, or creates one that includes this
    /// device when it has no share of it. Returns the operation's id.
    pub fn join(&mut self, now_ms: f64) -> f64 {
        self.session.join(to_u64(now_ms)) as f64
    }

    pub fn seal(&mut self, now_ms: f64, client_id: &str, text: &str) -> f64 {
        self.session.seal(to_u64(now_ms), client_id, text) as f64
    }

    /// After `409 epoch_stale` with the answer's `current_epoch` and `needs_new_epoch`.
    pub fn reseal(
        &mut self,
        now_ms: f64,
        client_id: &str,
        text: &str,
        current_epoch: f64,
        needs_new_epoch: bool,
    ) -> f64 {
        let stale = StaleEpoch {
            current_epoch: to_u64(current_epoch),
            needs_new_epoch,
        };
        self.session.reseal(to_u64(now_ms), client_id, text, stale) as f64
    }

    /// A stored message: the backend's `message_id`, `user_id`, `client_id`,
    /// `sent_at` and the envelope (its `ciphertext`).
    pub fn open(
        &mut self,
        now_ms: f64,
        message_id: &str,
        user_id: &str,
        client_id: &str,
        sent_at_ms: f64,
        #[wasm_bindgen(unchecked_param_type = "object")] envelope: JsValue,
    ) -> f64 {
        let message = EncryptedMessage {
            message_id: message_id.to_owned(),
            user_id: user_id.to_owned(),
            client_id: client_id.to_owned(),
            sent_at_ms: to_u64(sent_at_ms),
            // Not JSON: the session refuses it with `e2ee_malformed`.
            envelope: json_text(&envelope, "the envelope").unwrap_or_default(),
        };
        self.session.open(to_u64(now_ms), message) as f64
    }

    /// `epoch.created`, `member.added` or `member.removed` with its data.
    #[wasm_bindgen(js_name = roomEvent)]
    pub fn room_event(&mut self, now_ms: f64, event: &str, data: JsValue) {
        let data = json_text(&data, "the event data").unwrap_or_default();
        self.session.room_event(to_u64(now_ms), event, &data);
    }

    #[wasm_bindgen(js_name = acceptDeviceChange)]
    pub fn accept_device_change(&mut self, now_ms: f64, user_id: &str, device_id: &str) -> f64 {
        self.session
            .accept_device_change(to_u64(now_ms), user_id, device_id) as f64
    }

    #[wasm_bindgen(js_name = safetyNumbers)]
    pub fn safety_numbers(&mut self, now_ms: f64, user_id: &str) -> f64 {
        self.session.safety_numbers(to_u64(now_ms), user_id) as f64
    }

    pub fn close(&mut self) {
        self.session.close();
    }

    /// Whether no operation runs or waits.
    #[wasm_bindgen(getter, js_name = isIdle)]
    pub fn is_idle(&self) -> bool {
        self.session.is_idle()
    }

    /// The lock is held: the stored texts that changed since this session read or wrote them.
    pub fn locked(
        &mut self,
        now_ms: f64,
        id: f64,
        room_state: Option<String>,
        known_devices: Option<String>,
    ) {
        let room_state = room_state.map(Zeroizing::new);
        self.session.locked(
            to_u64(now_ms),
            to_u64(id),
            room_state.as_deref().map(String::as_str),
            known_devices.as_deref(),
        );
    }

    /// An HTTP answer with its parsed JSON body (`null` for none).
    pub fn response(&mut self, now_ms: f64, id: f64, status: u16, body: JsValue) {
        let body = json_text(&body, "the answer").unwrap_or_default();
        self.session
            .response(to_u64(now_ms), to_u64(id), status, &body);
    }

    /// A request without a usable answer, or refused with `code`.
    #[wasm_bindgen(js_name = requestFailed)]
    pub fn request_failed(&mut self, now_ms: f64, id: f64, code: &str, message: &str) {
        self.session
            .request_failed(to_u64(now_ms), to_u64(id), code, message);
    }

    /// A `persist` or `ledger_record` was written.
    pub fn stored(&mut self, now_ms: f64, id: f64) {
        self.session.stored(to_u64(now_ms), to_u64(id));
    }

    /// The ledger's backend message id per key of a `ledger_check` (undefined: none).
    #[wasm_bindgen(js_name = ledgerResult)]
    pub fn ledger_result(
        &mut self,
        now_ms: f64,
        id: f64,
        #[wasm_bindgen(unchecked_param_type = "(string | undefined)[]")] found: JsValue,
    ) {
        let found = Array::from(&found).iter().map(|v| v.as_string()).collect();
        self.session
            .ledger_result(to_u64(now_ms), to_u64(id), found);
    }

    /// The lock, a read or a write failed.
    #[wasm_bindgen(js_name = storageFailed)]
    pub fn storage_failed(&mut self, now_ms: f64, id: f64, code: &str, message: &str) {
        self.session
            .storage_failed(to_u64(now_ms), to_u64(id), code, message);
    }

    /// Every action since the last call, oldest first.
    #[wasm_bindgen(unchecked_return_type = "E2eeSessionAction[]")]
    pub fn poll(&mut self) -> Result<Array, JsValue> {
        let out = Array::new();
        while let Some(action) = self.session.poll_action() {
            out.push(&action_object(action)?);
        }
        Ok(out)
    }
}

/// `crypto.getRandomValues` as the session's fallible rng: a failure is
/// the session's `e2ee_random_unavailable`, never a panic.
struct SessionRng;

#[derive(Debug)]
struct RandomUnavailable;

impl std::fmt::Display for RandomUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("crypto.getRandomValues is unavailable")
    }
}

impl std::error::Error for RandomUnavailable {}

impl TryRng for SessionRng {
    type Error = RandomUnavailable;

    fn try_next_u32(&mut self) -> Result<u32, RandomUnavailable> {
        let mut bytes = [0u8; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, RandomUnavailable> {
        let mut bytes = [0u8; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), RandomUnavailable> {
        getrandom::fill(dst).map_err(|_| RandomUnavailable)
    }
}

impl TryCryptoRng for SessionRng {}

/// A session action as a plain object (`E2eeSessionAction`).
fn action_object(action: Action) -> Result<JsValue, JsValue> {
    let object = Object::new();
    let kind = match action {
        Action::Request(request) => {
            set(&object, "id", &(request.id as f64).into());
            set(&object, "method", &request.method.as_str().into());
            set(&object, "path", &request.path.into());
            if let Some(body) = request.body {
                set(&object, "body", &from_json(&body)?);
            }
            set(&object, "operation", &request.operation.into());
            "request"
        }
        Action::Lock { id } => {
            set(&object, "id", &(id as f64).into());
            "lock"
        }
        Action::Persist {
            id,
            room_state,
            known_devices,
        } => {
            set(&object, "id", &(id as f64).into());
            if let Some(state) = room_state {
                set(&object, "room_state", &state.as_str().into());
            }
            if let Some(state) = known_devices {
                set(&object, "known_devices", &state.into());
            }
            "persist"
        }
        Action::LedgerCheck { id, keys } => {
            set(&object, "id", &(id as f64).into());
            let list = Array::new();
            for key in keys {
                let entry = Object::new();
                set(&entry, "sender_user_id", &key.sender_user_id.into());
                set(&entry, "message_id", &key.message_id.into());
                list.push(&entry);
            }
            set(&object, "keys", &list);
            "ledger_check"
        }
        Action::LedgerRecord { id, entries } => {
            set(&object, "id", &(id as f64).into());
            let list = Array::new();
            for (key, backend_message_id) in entries {
                let entry = Object::new();
                set(&entry, "sender_user_id", &key.sender_user_id.into());
                set(&entry, "message_id", &key.message_id.into());
                set(&entry, "backend_message_id", &backend_message_id.into());
                list.push(&entry);
            }
            set(&object, "entries", &list);
            "ledger_record"
        }
        Action::Unlock => "unlock",
        Action::Emit(event) => event_fields(&object, event)?,
    };
    set(&object, "type", &kind.into());
    Ok(object.into())
}

fn event_fields(object: &Object, event: Event) -> Result<&'static str, JsValue> {
    let failure = |object: &Object, failure: Failure| {
        set(object, "code", &failure.code.into());
        set(object, "message", &failure.message.into());
    };
    Ok(match event {
        Event::Sealed {
            op,
            client_id,
            envelope,
        } => {
            set(object, "op", &(op as f64).into());
            set(object, "client_id", &client_id.into());
            set(object, "envelope", &from_json(&envelope)?);
            "sealed"
        }
        Event::Opened {
            op,
            message_id,
            result,
        } => {
            set(object, "op", &(op as f64).into());
            set(object, "message_id", &message_id.into());
            set(object, "ok", &result.is_ok().into());
            match result {
                Ok(text) => set(object, "text", &Zeroizing::new(text).as_str().into()),
                Err(error) => failure(object, error),
            }
            "opened"
        }
        Event::Done { op } => {
            set(object, "op", &(op as f64).into());
            "done"
        }
        Event::SafetyNumbers { op, numbers } => {
            set(object, "op", &(op as f64).into());
            let list = Array::new();
            for number in numbers {
                let entry = Object::new();
                set(&entry, "device_id", &number.device_id.into());
                set(&entry, "safety_number", &number.safety_number.into());
                list.push(&entry);
            }
            set(object, "numbers", &list);
            "safety_numbers"
        }
        Event::KeyChange { user_id, device_id } => {
            set(object, "user_id", &user_id.into());
            set(object, "device_id", &device_id.into());
            "key_change"
        }
        Event::Failed { op, failure: error } => {
            set(object, "op", &(op as f64).into());
            failure(object, error);
            "failed"
        }
    })
}

#[cfg(feature = "e2ee-primitives")]
/// One room's epochs, members and seen message ids on this device.
#[wasm_bindgen(js_name = E2eeRoom)]
pub struct E2eeRoom {
    keys: RoomKeys,
    /// Device records already signature-checked, by their compact JSON text:
    /// the member list is passed on every send, and checking each signature
    /// every time would dominate the send in a large room.
    verified: VecMap<String, DeviceRecord>,
}

#[cfg(feature = "e2ee-primitives")]
/// The most records the verified cache holds before it starts over.
const VERIFIED_CACHE_LIMIT: usize = 4096;

#[cfg(feature = "e2ee-primitives")]
#[wasm_bindgen(js_class = E2eeRoom)]
impl E2eeRoom {
    /// Throws `e2ee_malformed` for an invalid room id.
    #[wasm_bindgen(constructor)]
    pub fn new(room_id: &str) -> Result<E2eeRoom, JsValue> {
        Ok(E2eeRoom::from_keys(
            RoomKeys::new(room_id).map_err(|e| js_error(&e))?,
        ))
    }

    /// From `exportState()`'s text; throws `e2ee_malformed` (or
    /// `e2ee_unsupported_version`), also when it belongs to another room.
    pub fn restore(room_id: &str, state: &str) -> Result<E2eeRoom, JsValue> {
        let keys = RoomKeys::restore_state(state).map_err(|e| js_error(&e))?;
        if keys.room_id() != room_id {
            return Err(js_error(&Error::E2eeMalformed {
                reason: format!("the state belongs to room {}", quoted(keys.room_id())),
            }));
        }
        Ok(E2eeRoom::from_keys(keys))
    }

    /// Epochs with their secrets and members (not the seen ids: the caller
    /// keeps those in its replay ledger): encrypt before storing.
    #[wasm_bindgen(js_name = exportState)]
    pub fn export_state(&self) -> String {
        // The JS string is a copy; the wasm text is zeroized on drop.
        String::from(self.keys.export_state().as_str())
    }

    /// The newest installed epoch; undefined before the first.
    #[wasm_bindgen(getter, js_name = currentEpoch)]
    pub fn current_epoch(&self) -> Option<f64> {
        self.keys.current_epoch().map(|epoch| epoch as f64)
    }

    /// Whether an epoch must be created before the next send, given the
    /// room's member device records (`GET /api/rooms/{id}/devices` `[].record`).
    #[wasm_bindgen(js_name = needsNewEpoch)]
    pub fn needs_new_epoch(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "object[]")] records: JsValue,
    ) -> Result<bool, JsValue> {
        let records = self.records_from_js(&records)?;
        Ok(self.keys.needs_new_epoch(&records))
    }

    /// Creates epoch `epoch` for the member devices and holds it as pending
    /// (not used until `commitEpoch`). Returns the body to POST.
    #[wasm_bindgen(js_name = createEpoch, unchecked_return_type = "E2eeNewEpoch")]
    pub fn create_epoch(
        &mut self,
        me: &E2eeDevice,
        epoch: f64,
        created_at_ms: f64,
        #[wasm_bindgen(unchecked_param_type = "object[]")] records: JsValue,
    ) -> Result<JsValue, JsValue> {
        let epoch = to_epoch(epoch)?;
        let records = self.records_from_js(&records)?;
        let keys = &mut self.keys;
        let shares = with_rng(|rng| {
            keys.begin_epoch(&me.keys, epoch, to_u64(created_at_ms), &records, rng)
        })?;
        // Keys in byte order, as everywhere in the core's JSON.
        let mut json = JsonWriter::with_capacity(64 + 640 * shares.len());
        json.begin_object()
            .key("epoch")
            .u64(epoch)
            .key("shares")
            .begin_array();
        for share in &shares {
            json.begin_object()
                .key("device_id")
                .string(share.recipient_device_id())
                .key("share");
            share.write_json(&mut json);
            json.end_object();
        }
        json.end_array().end_object();
        from_json(&json.finish())
    }

    /// After the backend's 201: installs the pending epoch with its members.
    /// Throws `e2ee_unknown_epoch` when that epoch is not pending.
    #[wasm_bindgen(js_name = commitEpoch)]
    pub fn commit_epoch(
        &mut self,
        epoch: f64,
        #[wasm_bindgen(unchecked_param_type = "object[]")] records: JsValue,
    ) -> Result<(), JsValue> {
        let epoch = to_epoch(epoch)?;
        let records = self.records_from_js(&records)?;
        self.keys
            .commit_epoch(epoch, &records)
            .map_err(|e| js_error(&e))
    }

    /// After a 409: drops the pending epoch.
    #[wasm_bindgen(js_name = discardEpoch)]
    pub fn discard_epoch(&mut self) {
        self.keys.discard_epoch();
    }

    /// Opens this device's share of an epoch, checked against its creator's
    /// record, and installs it with the epoch's member records. Returns the epoch.
    #[wasm_bindgen(js_name = openShare)]
    pub fn open_share(
        &mut self,
        me: &E2eeDevice,
        #[wasm_bindgen(unchecked_param_type = "object")] share: JsValue,
        #[wasm_bindgen(unchecked_param_type = "object")] creator_record: JsValue,
        #[wasm_bindgen(unchecked_param_type = "object[]")] records: JsValue,
    ) -> Result<f64, JsValue> {
        let share_text = json_text(&share, "the key share")?;
        let share =
            KeyShare::read(&parse(&share_text, "the key share")?).map_err(|e| js_error(&e))?;
        let creator = record_from_js(&creator_record)?;
        let records = self.records_from_js(&records)?;
        let key = share.open(&me.keys, &creator).map_err(|e| js_error(&e))?;
        let epoch = key.epoch();
        self.keys
            .install_epoch(key, &records)
            .map_err(|e| js_error(&e))?;
        Ok(epoch as f64)
    }

    #[wasm_bindgen(js_name = hasEpoch)]
    pub fn has_epoch(&self, epoch: f64) -> bool {
        to_epoch(epoch).is_ok_and(|epoch| self.keys.has_epoch(epoch))
    }

    /// Encrypts text (kind `text`) for the current epoch; the envelope is the
    /// message's `ciphertext`. Throws `e2ee_no_epoch`, `e2ee_content_too_large`.
    #[wasm_bindgen(unchecked_return_type = "object")]
    pub fn seal(&self, me: &E2eeDevice, client_id: &str, text: &str) -> Result<JsValue, JsValue> {
        let keys = &self.keys;
        let envelope =
            with_rng(|rng| keys.seal(&me.keys, client_id, "text", text.as_bytes(), rng))?;
        from_json(&envelope.to_json_string())
    }

    /// Checks and decrypts an envelope with the backend's `sent_at` and
    /// `message_id`. Re-opening the same backend message is allowed; the
    /// same sender message id under another backend id throws `e2ee_replay`.
    #[wasm_bindgen(unchecked_return_type = "E2eeOpenedMessage")]
    pub fn open(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "object")] envelope: JsValue,
        sent_at_ms: f64,
        backend_message_id: &str,
    ) -> Result<JsValue, JsValue> {
        let envelope = envelope_from_js(&envelope)?;
        // Before opening, so a message refused here is not remembered as
        // seen (the kind is bound into the associated data: no forgery).
        if envelope.kind() != "text" {
            return Err(js_error(&Error::E2eeMalformed {
                reason: format!("messages of kind {} are not text", quoted(envelope.kind())),
            }));
        }
        let opened = self
            .keys
            .open(&envelope, to_u64(sent_at_ms), backend_message_id)
            .map_err(|e| js_error(&e))?;
        let content = Zeroizing::new(opened.content);
        let Ok(text) = std::str::from_utf8(&content) else {
            return Err(js_error(&Error::E2eeMalformed {
                reason: "the text is not UTF-8".into(),
            }));
        };
        let result = Object::new();
        set(&result, "text", &text.into());
        set(&result, "user_id", &opened.sender_user_id.into());
        set(&result, "device_id", &opened.sender_device_id.into());
        set(&result, "message_id", &opened.message_id.into());
        set(&result, "epoch", &(opened.epoch as f64).into());
        Ok(result.into())
    }

    /// The epoch of an envelope, without opening it (to fetch its share first).
    #[wasm_bindgen(js_name = epochOf)]
    pub fn epoch_of(
        &self,
        #[wasm_bindgen(unchecked_param_type = "object")] envelope: JsValue,
    ) -> Result<f64, JsValue> {
        Ok(envelope_from_js(&envelope)?.epoch() as f64)
    }
}

#[cfg(feature = "e2ee-primitives")]
impl E2eeRoom {
    fn from_keys(keys: RoomKeys) -> Self {
        E2eeRoom {
            keys,
            verified: VecMap::new(),
        }
    }

    /// Device records from a JS array, each signature-checked once per room.
    fn records_from_js(&mut self, records: &JsValue) -> Result<Vec<DeviceRecord>, JsValue> {
        let text = json_text(records, "the device records")?;
        let Json::Array(values) = parse(&text, "the device records")? else {
            return Err(malformed("the device records must be an array"));
        };
        if self.verified.len() + values.len() > VERIFIED_CACHE_LIMIT {
            self.verified.clear();
        }
        let mut out = Vec::with_capacity(values.len());
        for value in &values {
            let text = value.to_compact_string();
            if let Some(record) = self.verified.get(&text) {
                out.push(record.clone());
                continue;
            }
            let record = DeviceRecord::read(value).map_err(|e| js_error(&e))?;
            self.verified.insert(text, record.clone());
            out.push(record);
        }
        Ok(out)
    }
}

#[cfg(feature = "e2ee-primitives")]
/// The devices seen so far, pinned on first use.
#[wasm_bindgen(js_name = E2eeKnownDevices)]
pub struct E2eeKnownDevices {
    known: KnownDevices,
}

#[cfg(feature = "e2ee-primitives")]
impl Default for E2eeKnownDevices {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "e2ee-primitives")]
#[wasm_bindgen(js_class = E2eeKnownDevices)]
impl E2eeKnownDevices {
    #[wasm_bindgen(constructor)]
    pub fn new() -> E2eeKnownDevices {
        E2eeKnownDevices {
            known: KnownDevices::new(),
        }
    }

    /// From `exportState()`'s text; throws `e2ee_malformed`.
    pub fn restore(state: &str) -> Result<E2eeKnownDevices, JsValue> {
        let known = KnownDevices::restore_state(state).map_err(|e| js_error(&e))?;
        Ok(E2eeKnownDevices { known })
    }

    /// The pinned public keys (no secrets).
    #[wasm_bindgen(js_name = exportState)]
    pub fn export_state(&self) -> String {
        self.known.export_state()
    }

    /// Pins a new device (`"new"`), accepts a known one with the same keys
    /// (`"unchanged"`); throws `e2ee_device_key_changed` when its keys changed.
    #[wasm_bindgen(unchecked_return_type = "\"new\" | \"unchanged\"")]
    pub fn check(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "object")] record: JsValue,
    ) -> Result<String, JsValue> {
        let record = record_from_js(&record)?;
        match self.known.check(&record).map_err(|e| js_error(&e))? {
            DeviceCheck::New => Ok("new".into()),
            DeviceCheck::Unchanged => Ok("unchanged".into()),
        }
    }

    /// Pins the record's keys in place of the old ones (the user accepted).
    #[wasm_bindgen(js_name = acceptChange)]
    pub fn accept_change(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "object")] record: JsValue,
    ) -> Result<(), JsValue> {
        let record = record_from_js(&record)?;
        self.known.accept_change(&record);
        Ok(())
    }
}

/// The safety number of two device records: 30 digits in six groups of five,
/// the same on both sides.
#[wasm_bindgen(js_name = safetyNumber)]
pub fn safety_number(
    #[wasm_bindgen(unchecked_param_type = "object")] a: JsValue,
    #[wasm_bindgen(unchecked_param_type = "object")] b: JsValue,
) -> Result<String, JsValue> {
    Ok(core_safety_number(
        &record_from_js(&a)?,
        &record_from_js(&b)?,
    ))
}

// ---- randomness -------------------------------------------------------------

/// `crypto.getRandomValues` as the core's rng. The core's rng cannot fail, so
/// a failure is recorded (the bytes are zeros) and the whole operation's
/// result is discarded by [`with_rng`] instead of panicking.
struct BrowserRng {
    failed: bool,
}

impl TryRng for BrowserRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0u8; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0u8; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        if getrandom::fill(dst).is_err() {
            dst.fill(0);
            self.failed = true;
        }
        Ok(())
    }
}

impl TryCryptoRng for BrowserRng {}

fn with_rng<T>(f: impl FnOnce(&mut BrowserRng) -> Result<T, Error>) -> Result<T, JsValue> {
    let mut rng = BrowserRng { failed: false };
    let result = f(&mut rng);
    if rng.failed {
        let error = js_sys::Error::new(
            "unable to draw random bytes; crypto.getRandomValues is unavailable",
        );
        error.set_name("DomViaError");
        set(&error, "code", &"e2ee_random_unavailable".into());
        return Err(error.into());
    }
    result.map_err(|e| js_error(&e))
}

// ---- conversions ------------------------------------------------------------

fn malformed(reason: &str) -> JsValue {
    js_error(&Error::E2eeMalformed {
        reason: reason.to_owned(),
    })
}

/// A JS value's `JSON.stringify` text.
fn json_text(value: &JsValue, what: &str) -> Result<String, JsValue> {
    JSON::stringify(value)
        .ok()
        .and_then(|text| text.as_string())
        .ok_or_else(|| malformed(&format!("{what} must be a plain JSON value")))
}

/// [`json_text`]'s text read by the core's JSON reader.
fn parse<'a>(text: &'a str, what: &str) -> Result<Json<'a>, JsValue> {
    Json::parse(text).ok_or_else(|| malformed(&format!("{what} must be a plain JSON value")))
}

fn record_from_js(value: &JsValue) -> Result<DeviceRecord, JsValue> {
    let text = json_text(value, "the device record")?;
    DeviceRecord::read(&parse(&text, "the device record")?).map_err(|e| js_error(&e))
}

#[cfg(feature = "e2ee-primitives")]
fn envelope_from_js(value: &JsValue) -> Result<Envelope, JsValue> {
    let text = json_text(value, "the envelope")?;
    Envelope::from_json_str(&text).map_err(|e| js_error(&e))
}

/// Plain JS objects from the core's JSON text.
fn from_json(text: &str) -> Result<JsValue, JsValue> {
    JSON::parse(text).map_err(|_| malformed("it cannot be represented in JavaScript"))
}

fn set(object: &JsValue, key: &str, value: &JsValue) {
    // Reflect::set on a fresh plain object cannot fail.
    Reflect::set(object, &key.into(), value).ok();
}

#[cfg(feature = "e2ee-primitives")]
/// A JS number as an epoch: an integer from 1 to 2^53 - 1, else `e2ee_malformed`.
fn to_epoch(n: f64) -> Result<u64, JsValue> {
    if n.fract() == 0.0 && n >= 1.0 && n <= MAX_EPOCH as f64 {
        Ok(n as u64)
    } else {
        Err(malformed("epoch must be an integer from 1 to 2^53 - 1"))
    }
}
