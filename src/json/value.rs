//! An owned JSON value for frames, events and chat objects: what serde_json's
//! `Value` was to the core, without serde_json in the wasm module.
//!
//! It keeps the parts of serde_json's behaviour the protocol relies on:
//! objects are maps ordered by key (serde_json without `preserve_order`), so
//! compact text has its keys in byte order and a repeated key keeps the last
//! value; strings are escaped by [`push_json_string`], as serde_json escapes.
//! It differs in one way, on purpose: a number is kept as the text it was
//! read as (`1.50` stays `1.50`, `1e2` stays `1e2`), so data passes through the
//! core byte for byte, where serde_json rewrote it through an `f64`.

use std::fmt;

use super::read::Json;
use super::split_once_ascii;
use crate::protocol::push_json_string;
use crate::vec_map::VecMap;

/// A JSON object: members ordered by key. (Generic only so that code written
/// for serde_json's `Map<String, Value>` reads the same.)
pub type Map<K = String, V = Value> = VecMap<K, V>;

/// A JSON number, as its text (always valid JSON number syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number(String);

impl Number {
    /// The number as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number as a u64 when it is written as one: digits only, in range
    /// (serde_json's `as_u64`: `1.0`, `-0` and `1e2` are not).
    pub fn as_u64(&self) -> Option<u64> {
        self.0.bytes().try_fold(0u64, |n, digit| {
            if !digit.is_ascii_digit() {
                return None;
            }
            n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
    }

    /// The number's value when it is a whole number from 0 to `u64::MAX`,
    /// however it is written (`7`, `7.0`, `7e0`, `0.7e1`, `-0`): what a JS
    /// number that is an integer may arrive as from another language.
    pub fn as_whole_u64(&self) -> Option<u64> {
        let (negative, text) = match self.0.strip_prefix('-') {
            Some(text) => (true, text),
            None => (false, self.0.as_str()),
        };
        let (mantissa, exponent) = match split_once_ascii(text, |b| b == b'e' || b == b'E') {
            Some((mantissa, exponent)) => (mantissa, exponent.parse::<i64>().ok()?),
            None => (text, 0),
        };
        let (integer, fraction) =
            split_once_ascii(mantissa, |b| b == b'.').unwrap_or((mantissa, ""));
        // How many of the digits come before the decimal point.
        let point = (integer.len() as i64).checked_add(exponent)?;
        let mut value: u64 = 0;
        for (i, digit) in integer.bytes().chain(fraction.bytes()).enumerate() {
            let digit = u64::from(digit - b'0');
            if (i as i64) < point {
                value = value.checked_mul(10)?.checked_add(digit)?;
            } else if digit != 0 {
                return None;
            }
        }
        // An exponent past the last digit appends zeros.
        let zeros = point - (integer.len() + fraction.len()) as i64;
        if zeros > 0 && value != 0 {
            for _ in 0..zeros.min(20) {
                value = value.checked_mul(10)?;
            }
            if zeros > 20 {
                return None;
            }
        }
        (!negative || value == 0).then_some(value)
    }

    /// The number as the wasm boundary reads a JS number into a u64 (`to_u64`
    /// in src/wasm): fractions dropped, negatives 0, beyond `u64::MAX`
    /// saturated. For the text `JSON.stringify` writes, which has an exponent
    /// only below 1e-6 or from 1e21 on; pure, so that it is tested natively.
    pub fn saturating_u64(&self) -> u64 {
        let text = self.0.as_str();
        if text.starts_with('-') {
            return 0;
        }
        if let Some(whole) = self.as_whole_u64() {
            return whole;
        }
        match split_once_ascii(text, |b| b == b'e' || b == b'E') {
            Some((_, exponent)) if exponent.starts_with('-') => 0,
            Some(_) => u64::MAX,
            None => split_once_ascii(text, |b| b == b'.')
                .map_or(text, |(integer, _)| integer)
                .parse()
                .unwrap_or(u64::MAX),
        }
    }

    /// The number as an i64 when it is written as an integer in range.
    pub fn as_i64(&self) -> Option<i64> {
        match self.0.strip_prefix('-') {
            Some(digits) => {
                let magnitude = Number(digits.to_owned()).as_u64()?;
                0i64.checked_sub_unsigned(magnitude)
            }
            None => i64::try_from(self.as_u64()?).ok(),
        }
    }

    /// True when the number is written as an integer in u64 range.
    pub fn is_u64(&self) -> bool {
        self.as_u64().is_some()
    }

    /// True when the number is written as an integer in i64 range.
    pub fn is_i64(&self) -> bool {
        self.as_i64().is_some()
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<u64> for Number {
    fn from(n: u64) -> Number {
        Number(n.to_string())
    }
}

/// A JSON value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(Map),
}

/// JSON text that could not be read: what serde_json would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError;

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not valid JSON")
    }
}

impl std::error::Error for ParseError {}

/// Reads JSON text (surrounding whitespace allowed) into a value.
pub fn from_str(text: &str) -> Result<Value, ParseError> {
    Json::parse(text).map(Value::from_read).ok_or(ParseError)
}

impl Value {
    pub(crate) fn from_read(json: Json<'_>) -> Value {
        match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Number(text) => Value::Number(Number(text.to_owned())),
            Json::String(text) => Value::String(text.into_owned()),
            Json::Array(items) => Value::Array(items.into_iter().map(Value::from_read).collect()),
            Json::Object(members) => {
                let mut map = Map::new();
                for (key, value) in members {
                    // A later duplicate replaces the earlier one, as in serde_json.
                    map.insert(key.into_owned(), Value::from_read(value));
                }
                Value::Object(map)
            }
        }
    }

    /// An object of these members (a later repeated key wins).
    pub fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
        let mut map = Map::new();
        for (key, value) in members {
            map.insert(key.to_owned(), value);
        }
        Value::Object(map)
    }

    /// The string, for a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// The number as a u64, for an integer written as one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// The number as an i64, for an integer written as one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    /// The boolean, for a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The members, for an object.
    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    /// The members to change, for an object.
    pub fn as_object_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    /// The items, for an array.
    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_string(&self) -> bool {
        matches!(self, Value::String(_))
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Value::Object(_))
    }

    pub fn is_array(&self) -> bool {
        matches!(self, Value::Array(_))
    }

    pub fn is_number(&self) -> bool {
        matches!(self, Value::Number(_))
    }

    pub fn is_u64(&self) -> bool {
        self.as_u64().is_some()
    }

    /// An object's member; `None` for anything else.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_object()?.get(key)
    }

    /// An object's member to change; `None` for anything else.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.as_object_mut()?.get_mut(key)
    }

    /// Takes the value out, leaving null.
    pub fn take(&mut self) -> Value {
        std::mem::take(self)
    }

    /// Appends the compact JSON text of the value.
    pub fn push_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(true) => out.push_str("true"),
            Value::Bool(false) => out.push_str("false"),
            Value::Number(n) => out.push_str(&n.0),
            Value::String(text) => push_json_string(out, text),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.push_json(out);
                }
                out.push(']');
            }
            Value::Object(map) => {
                out.push('{');
                for (i, (key, value)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_json_string(out, key);
                    out.push(':');
                    value.push_json(out);
                }
                out.push('}');
            }
        }
    }

    /// The compact JSON text of the value (what serde_json's `to_string` wrote,
    /// numbers as read).
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.push_json(&mut out);
        out
    }
}

/// `{}` formats the compact JSON text, as serde_json's `Value` did.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::String(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::String(text)
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Value {
        Value::Number(Number::from(n))
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Value {
        Value::from(u64::from(n))
    }
}

impl From<u16> for Value {
    fn from(n: u16) -> Value {
        Value::from(u64::from(n))
    }
}

impl From<usize> for Value {
    fn from(n: usize) -> Value {
        Value::Number(Number(n.to_string()))
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Number(Number(n.to_string()))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<Map> for Value {
    fn from(map: Map) -> Value {
        Value::Object(map)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Value {
        value.map_or(Value::Null, Into::into)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Value {
        Value::Array(items.into_iter().map(Into::into).collect())
    }
}

impl std::ops::Index<&str> for Value {
    type Output = Value;
    /// An object's member, or null (serde_json's indexing, which never panics).
    fn index(&self, key: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(key).unwrap_or(&NULL)
    }
}

impl std::ops::IndexMut<&str> for Value {
    /// An object's member to set, added as null when absent. Anything that is
    /// not an object becomes an empty one first (serde_json panicked there;
    /// this never does).
    fn index_mut(&mut self, key: &str) -> &mut Value {
        if !self.is_object() {
            *self = Value::Object(Map::new());
        }
        match self {
            Value::Object(map) => map.get_or_insert_with(key.to_owned(), || Value::Null),
            _ => unreachable!("made an object above"),
        }
    }
}

impl PartialEq<&str> for Value {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

/// The JSON the value is, for serde serializers (the servers' responses, the
/// tests' comparisons). A number that is not an integer goes as an `f64`.
impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => serializer.serialize_u64(u),
                (None, Some(i)) => serializer.serialize_i64(i),
                // The reader only keeps numbers that are finite as an f64.
                _ => serializer.serialize_f64(n.0.parse().unwrap_or(0.0)),
            },
            Value::String(text) => serializer.serialize_str(text),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for (key, value) in map.iter() {
                    out.serialize_entry(key, value)?;
                }
                out.end()
            }
        }
    }
}

/// Interop with serde_json for native code (the servers, the tests): the
/// same JSON through its text, exactly. Not in the wasm modules, which are
/// built without the `serde-json` feature.
#[cfg(feature = "serde-json")]
mod serde_json_interop {
    use super::{from_str, Value};

    impl From<serde_json::Value> for Value {
        fn from(value: serde_json::Value) -> Value {
            from_str(&value.to_string()).expect("serde_json writes valid JSON")
        }
    }

    impl From<Value> for serde_json::Value {
        fn from(value: Value) -> serde_json::Value {
            serde_json::from_str(&value.to_json()).expect("the core writes valid JSON")
        }
    }

    impl From<&Value> for serde_json::Value {
        fn from(value: &Value) -> serde_json::Value {
            serde_json::from_str(&value.to_json()).expect("the core writes valid JSON")
        }
    }

    /// Equal when they are the same JSON (the tests compare frames with
    /// `json!` values). The conversion is the comparison: there is no
    /// cheaper common form, hence the allow.
    #[allow(clippy::cmp_owned)]
    impl PartialEq<serde_json::Value> for Value {
        fn eq(&self, other: &serde_json::Value) -> bool {
            serde_json::Value::from(self) == *other
        }
    }

    #[allow(clippy::cmp_owned)]
    impl PartialEq<Value> for serde_json::Value {
        fn eq(&self, other: &Value) -> bool {
            *self == serde_json::Value::from(other)
        }
    }

    /// Read through serde_json's value, so that any deserializer gives the same
    /// value as the conversion above.
    impl<'de> serde::Deserialize<'de> for Value {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
            serde_json::Value::deserialize(deserializer).map(Value::from)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_compact_text_with_keys_in_order() {
        let value =
            from_str(r#" {"b": [1, -2.5e3, true, null, "x\u00e9"], "a": {}, "b": 7} "#).unwrap();
        assert_eq!(value.to_json(), r#"{"a":{},"b":7}"#);
        assert_eq!(value.to_string(), value.to_json());
        assert_eq!(value.get("b").and_then(Value::as_u64), Some(7));
        assert_eq!(value["missing"], Value::Null);
        let list = from_str(r#"[1.50,1e2,-0,"q\"\u0001"]"#).unwrap();
        assert_eq!(list.to_json(), r#"[1.50,1e2,-0,"q\"\u0001"]"#);
        assert_eq!(from_str("[1,]"), Err(ParseError));
    }

    #[test]
    fn whole_numbers_however_written() {
        for (text, expected) in [
            ("7", Some(7)),
            ("7.0", Some(7)),
            ("7.000", Some(7)),
            ("7e0", Some(7)),
            ("0.7e1", Some(7)),
            ("70e-1", Some(7)),
            ("1e2", Some(100)),
            ("1E+2", Some(100)),
            ("-0", Some(0)),
            ("-0.0e5", Some(0)),
            ("0e999999", Some(0)),
            ("7.5", None),
            ("-1", None),
            ("1e-1", None),
            ("18446744073709551615", Some(u64::MAX)),
            ("1.8446744073709551615e19", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("1e20", None),
            ("1e300", None),
        ] {
            let Value::Number(n) = from_str(text).unwrap() else {
                panic!("{text} is a number")
            };
            assert_eq!(n.as_whole_u64(), expected, "{text}");
        }
    }

    /// What `JSON.stringify` writes for a JS number, read as the boundary's
    /// `to_u64` reads the number itself.
    #[test]
    fn js_numbers_saturate_to_u64() {
        for (text, expected) in [
            ("0", 0),
            ("7", 7),
            ("2.5", 2),
            ("0.999", 0),
            ("-3", 0),
            ("-0", 0),
            ("-2.5", 0),
            ("1e-7", 0),
            ("1.5e-7", 0),
            ("1e21", u64::MAX),
            ("1.8446744073709552e+21", u64::MAX),
            ("18446744073709551615", u64::MAX),
            ("18446744073709551616", u64::MAX),
            ("123456789012345680000", u64::MAX),
            ("9007199254740991", 9_007_199_254_740_991),
        ] {
            let Value::Number(n) = from_str(text).unwrap() else {
                panic!("{text} is a number")
            };
            assert_eq!(n.saturating_u64(), expected, "{text}");
        }
    }

    #[test]
    fn integers() {
        for (text, u, i) in [
            ("0", Some(0), Some(0)),
            ("18446744073709551615", Some(u64::MAX), None),
            ("-9223372036854775808", None, Some(i64::MIN)),
            ("-9223372036854775809", None, None),
            ("-1", None, Some(-1)),
            ("1.0", None, None),
            ("1e2", None, None),
        ] {
            let value = from_str(text).unwrap();
            assert_eq!(value.as_u64(), u, "{text}");
            assert_eq!(value.as_i64(), i, "{text}");
        }
    }
}
