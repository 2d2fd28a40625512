//! End-to-end encryption behind JS classes: `E2eeDevice`, `E2eeRoom`,
//! `E2eeKnownDevices` and `safetyNumber`, over the pure core in `src/e2ee`.
//!
//! Thin like `chat.rs`: objects (device records, key shares, envelopes) cross
//! as JSON text (`JSON.stringify` in, the core's JSON reader, then its writer
//! and `JSON.parse` out: src/e2ee/json.rs, so this module links no
//! serde_json), errors are DomViaErrors with the core's `e2ee_*` codes, and no
//! JS is called back. Randomness is
//! `crypto.getRandomValues` through getrandom, handed to the core as its
//! injected rng. Secrets are zeroized in wasm memory as the core does it; what
//! JS holds (`exportSecret`, `exportState`) is the caller's to protect.

use std::collections::BTreeMap;
use std::convert::Infallible;

use js_sys::{Object, Reflect, Uint8Array, JSON};
use wasm_bindgen::prelude::*;
use zeroize::Zeroizing;

use crate::e2ee::json::{Json, JsonWriter};
use crate::e2ee::rand_core::{TryCryptoRng, TryRng};
use crate::e2ee::{
    safety_number as core_safety_number, DeviceCheck, DeviceKeys, DeviceRecord, Envelope, KeyShare,
    KnownDevices, RoomKeys, MAX_EPOCH,
};
use crate::protocol::Error;

use super::{js_error, to_u64};

#[wasm_bindgen(typescript_custom_section)]
const E2EE_TYPES: &str = r#"
/** A new epoch's shares, the body of `POST /api/rooms/{id}/epochs`. */
export interface E2eeNewEpoch {
  epoch: number;
  shares: { device_id: string; share: object }[];
}
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

/// One room's epochs, members and seen message ids on this device.
#[wasm_bindgen(js_name = E2eeRoom)]
pub struct E2eeRoom {
    keys: RoomKeys,
    /// Device records already signature-checked, by their compact JSON text:
    /// the member list is passed on every send, and checking each signature
    /// every time would dominate the send in a large room.
    verified: BTreeMap<String, DeviceRecord>,
}

/// The most records the verified cache holds before it starts over.
const VERIFIED_CACHE_LIMIT: usize = 4096;

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
                reason: format!("the state belongs to room {:?}", keys.room_id()),
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
                reason: format!("messages of kind {:?} are not text", envelope.kind()),
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

impl E2eeRoom {
    fn from_keys(keys: RoomKeys) -> Self {
        E2eeRoom {
            keys,
            verified: BTreeMap::new(),
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

/// The devices seen so far, pinned on first use.
#[wasm_bindgen(js_name = E2eeKnownDevices)]
pub struct E2eeKnownDevices {
    known: KnownDevices,
}

impl Default for E2eeKnownDevices {
    fn default() -> Self {
        Self::new()
    }
}

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
    let _ = Reflect::set(object, &key.into(), value);
}

/// A JS number as an epoch: an integer from 1 to 2^53 - 1, else `e2ee_malformed`.
fn to_epoch(n: f64) -> Result<u64, JsValue> {
    if n.fract() == 0.0 && n >= 1.0 && n <= MAX_EPOCH as f64 {
        Ok(n as u64)
    } else {
        Err(malformed("epoch must be an integer from 1 to 2^53 - 1"))
    }
}
