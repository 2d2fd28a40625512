//! The JSON reader every part of the core shares: a small recursive-descent
//! reader into a tree that borrows from the text ([`Json`]).
//!
//! It accepts exactly the texts `serde_json::from_str::<Value>` accepts with
//! `float_roundtrip` (the tests below hold it to that, and a fuzz target runs
//! it): the same grammar, at most 127 nested arrays and objects, no lone
//! UTF-16 surrogates, and no number whose magnitude rounds to infinity as an
//! `f64`. Duplicate keys are kept; a lookup takes the last, as serde_json's
//! map did. Numbers stay text, so they pass through exactly.

use std::borrow::Cow;

use super::ascii_slice;
use crate::protocol::push_json_string;

/// The most nested arrays and objects: serde_json refuses a 128th level.
const MAX_DEPTH: usize = 127;

/// 2^1024 - 2^970, the smallest magnitude that rounds to infinity as an `f64`
/// (halfway above `f64::MAX`, and ties round to the even significand, up):
/// serde_json refuses a number from here on. 309 digits, so `d.ddd...e308`.
const F64_OVERFLOW_DIGITS: &[u8; 309] = b"179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792";

/// A JSON value borrowing from the text it was read from (a string with
/// escapes is the one owned part).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    /// A number as written: the format only uses non-negative integers.
    Number(&'a str),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Members in text order, duplicates kept (see [`Json::get`]).
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

// The accessors serve the E2EE format; the base module only parses.
#[cfg_attr(not(feature = "e2ee"), allow(dead_code))]
impl<'a> Json<'a> {
    /// Reads JSON text; `None` for anything serde_json would refuse.
    pub(crate) fn parse(text: &'a str) -> Option<Json<'a>> {
        let mut reader = Reader { text, at: 0 };
        let value = reader.value(MAX_DEPTH)?;
        reader.skip_whitespace();
        (reader.at == text.len()).then_some(value)
    }

    pub(crate) fn as_object(&self) -> Option<&[(Cow<'a, str>, Json<'a>)]> {
        match self {
            Json::Object(members) => Some(members),
            _ => None,
        }
    }

    pub(crate) fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(text) => Some(text),
            _ => None,
        }
    }

    /// The number as a u64 when it is written as one: digits only, in range
    /// (serde_json's `as_u64`: `1.0`, `-0` and `1e2` are not).
    pub(crate) fn as_u64(&self) -> Option<u64> {
        let Json::Number(digits) = self else {
            return None;
        };
        digits.bytes().try_fold(0u64, |n, digit| {
            if !digit.is_ascii_digit() {
                return None;
            }
            n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
    }

    /// An object's member: the last one with that key, as in serde_json's
    /// map, where a repeated key overwrote the earlier value.
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.as_object()?
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// Compact text of the value as read (members in text order, numbers as
    /// written): two values have the same text only if they are the same.
    pub(crate) fn to_compact_string(&self) -> String {
        let mut out = String::new();
        self.push_compact(&mut out);
        out
    }

    fn push_compact(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(true) => out.push_str("true"),
            Json::Bool(false) => out.push_str("false"),
            Json::Number(number) => out.push_str(number),
            Json::String(text) => push_json_string(out, text),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.push_compact(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_json_string(out, key);
                    out.push(':');
                    value.push_compact(out);
                }
                out.push('}');
            }
        }
    }
}

/// A recursive-descent reader over the text's bytes. Every position it
/// slices at is an ASCII byte, so every slice is valid UTF-8.
struct Reader<'a> {
    text: &'a str,
    at: usize,
}

// `peek` and `next` are inlined even at opt-level "z", which otherwise calls
// them per byte: a frame reads 12% faster, and the wasm is 48 B smaller.
impl<'a> Reader<'a> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &str, value: Json<'a>) -> Option<Json<'a>> {
        let end = self.at + word.len();
        (self.text.as_bytes().get(self.at..end)? == word.as_bytes()).then(|| {
            self.at = end;
            value
        })
    }

    /// One value after optional whitespace; `depth` arrays or objects may
    /// still open.
    fn value(&mut self, depth: usize) -> Option<Json<'a>> {
        self.skip_whitespace();
        match self.peek()? {
            b'n' => self.literal("null", Json::Null),
            b't' => self.literal("true", Json::Bool(true)),
            b'f' => self.literal("false", Json::Bool(false)),
            b'"' => self.string().map(Json::String),
            b'-' | b'0'..=b'9' => self.number(),
            b'[' => {
                let depth = depth.checked_sub(1)?;
                self.at += 1;
                let mut items = Vec::new();
                if !self.close(b']') {
                    loop {
                        items.push(self.value(depth)?);
                        if self.separator(b']')? {
                            break;
                        }
                    }
                }
                Some(Json::Array(items))
            }
            b'{' => {
                let depth = depth.checked_sub(1)?;
                self.at += 1;
                let mut members = Vec::new();
                if !self.close(b'}') {
                    loop {
                        self.skip_whitespace();
                        if self.peek()? != b'"' {
                            return None;
                        }
                        let key = self.string()?;
                        self.skip_whitespace();
                        if self.next()? != b':' {
                            return None;
                        }
                        members.push((key, self.value(depth)?));
                        if self.separator(b'}')? {
                            break;
                        }
                    }
                }
                Some(Json::Object(members))
            }
            _ => None,
        }
    }

    /// Consumes `close` (after whitespace) when it comes next: an empty array or object.
    fn close(&mut self, close: u8) -> bool {
        self.skip_whitespace();
        let closed = self.peek() == Some(close);
        if closed {
            self.at += 1;
        }
        closed
    }

    /// After an item: `,` (`Some(false)`, more follow) or `close` (`Some(true)`).
    fn separator(&mut self, close: u8) -> Option<bool> {
        self.skip_whitespace();
        match self.next()? {
            b',' => Some(false),
            byte if byte == close => Some(true),
            _ => None,
        }
    }

    /// A string at its opening quote: borrowed when it has no escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.at += 1;
        let mut start = self.at;
        let mut owned: Option<String> = None;
        loop {
            // The plain run up to the next quote, backslash or control byte,
            // in one tight loop: a `next()` per byte was the largest part of
            // a chat message's parse in the size-optimised wasm.
            let run = self.text.as_bytes().get(self.at..)?;
            self.at += run
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
            match self.next()? {
                b'"' => {
                    let run = ascii_slice(self.text, start, self.at - 1);
                    return Some(match owned {
                        None => Cow::Borrowed(run),
                        Some(mut text) => {
                            text.push_str(run);
                            Cow::Owned(text)
                        }
                    });
                }
                b'\\' => {
                    // Sized once, at the first escape: a JSON text inside a
                    // string (a channel event's data) escapes every quote.
                    let text =
                        owned.get_or_insert_with(|| String::with_capacity(self.raw_len(start)));
                    text.push_str(ascii_slice(self.text, start, self.at - 1));
                    let unescaped = match self.next()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    text.push(unescaped);
                    start = self.at;
                }
                // Only a control byte is left: refused, as serde_json refuses it.
                _ => return None,
            }
        }
    }

    /// The bytes from `start` to the closing quote of the string it is in,
    /// escapes counted as written: room for the unescaped text, never longer.
    fn raw_len(&self, start: usize) -> usize {
        let bytes = self.text.as_bytes();
        let mut at = start;
        while let Some(&byte) = bytes.get(at) {
            match byte {
                b'"' => break,
                b'\\' => at += 2,
                _ => at += 1,
            }
        }
        at.min(bytes.len()).saturating_sub(start)
    }

    /// The character of `\uXXXX` (after the `u`), a surrogate pair being one
    /// character; a lone surrogate is refused, as serde_json refuses it.
    fn unicode_escape(&mut self) -> Option<char> {
        let unit = self.hex4()?;
        let code = match unit {
            0xd800..=0xdbff => {
                if self.next()? != b'\\' || self.next()? != b'u' {
                    return None;
                }
                let low = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&low) {
                    return None;
                }
                0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
            }
            _ => unit,
        };
        // Only a lone low surrogate is not a char here.
        char::from_u32(code)
    }

    fn hex4(&mut self) -> Option<u32> {
        let mut unit = 0;
        for _ in 0..4 {
            unit = (unit << 4) | char::from(self.next()?).to_digit(16)?;
        }
        Some(unit)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, refused when
    /// its magnitude rounds to infinity as an `f64` (as serde_json refuses it).
    fn number(&mut self) -> Option<Json<'a>> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let integer = self.digits();
        if integer.is_empty() || (integer.len() > 1 && integer.starts_with('0')) {
            return None;
        }
        let mut fraction = "";
        if self.peek() == Some(b'.') {
            self.at += 1;
            fraction = self.digits();
            if fraction.is_empty() {
                return None;
            }
        }
        let mut exponent: i64 = 0;
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            let negative = self.peek() == Some(b'-');
            if let Some(b'-' | b'+') = self.peek() {
                self.at += 1;
            }
            let digits = self.digits();
            if digits.is_empty() {
                return None;
            }
            // Saturates far beyond any exponent that could matter (the text is
            // shorter than 2^62 digits).
            exponent = digits.bytes().fold(0i64, |n, digit| {
                n.saturating_mul(10).saturating_add(i64::from(digit - b'0'))
            });
            if negative {
                exponent = -exponent;
            }
        }
        if overflows_f64(integer, fraction, exponent) {
            return None;
        }
        Some(Json::Number(ascii_slice(self.text, start, self.at)))
    }

    fn digits(&mut self) -> &'a str {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        ascii_slice(self.text, start, self.at)
    }
}

/// Whether `integer.fraction e exponent` has a magnitude of at least
/// 2^1024 - 2^970, i.e. would be infinite as an `f64`.
fn overflows_f64(integer: &str, fraction: &str, exponent: i64) -> bool {
    let digits = || integer.bytes().chain(fraction.bytes());
    let Some(leading_zeros) = digits().position(|digit| digit != b'0') else {
        return false;
    };
    // The power of ten of the first significant digit.
    let magnitude = (integer.len() as i64 - 1 - leading_zeros as i64).saturating_add(exponent);
    if magnitude != 308 {
        return magnitude > 308;
    }
    let mut significant = digits().skip(leading_zeros);
    for &limit in F64_OVERFLOW_DIGITS {
        // Past its last digit a number continues with zeros.
        let digit = significant.next().unwrap_or(b'0');
        if digit != limit {
            return digit > limit;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values() {
        let value = Json::parse(
            " {\"a\" : [1, -2.5e3, true, false, null, \"x\\u00e9\\ud83d\\ude00\"], \"b\":{}} ",
        )
        .unwrap();
        assert_eq!(
            value.to_compact_string(),
            "{\"a\":[1,-2.5e3,true,false,null,\"xé😀\"],\"b\":{}}"
        );
        assert_eq!(value.get("b"), Some(&Json::Object(Vec::new())));
        let last = Json::parse("{\"k\":1,\"k\":2}").unwrap();
        assert_eq!(last.get("k").and_then(Json::as_u64), Some(2));
    }

    #[test]
    fn borrows_strings_without_escapes() {
        let value = Json::parse("[\"plain\",\"esc\\n\"]").unwrap();
        let items = value.as_array().unwrap();
        assert!(matches!(&items[0], Json::String(Cow::Borrowed("plain"))));
        assert!(matches!(&items[1], Json::String(Cow::Owned(text)) if text == "esc\n"));
    }

    #[test]
    fn integers() {
        for (text, expected) in [
            ("0", Some(0)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            ("1.0", None),
            ("-0", None),
            ("-1", None),
            ("1e2", None),
        ] {
            assert_eq!(Json::parse(text).unwrap().as_u64(), expected, "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_json() {
        for bad in [
            "",
            " ",
            "nul",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "+1",
            "[1,]",
            "{\"a\":1,}",
            "{a:1}",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"\t\"",
            "[1] 2",
            "1e309",
            "-1e309",
            "\"abc",
        ] {
            assert_eq!(Json::parse(bad), None, "{bad:?}");
        }
        assert!(Json::parse("1e308").is_some());
        assert!(Json::parse("1e-999999999999999999999").is_some());
        assert!(Json::parse("0e999999999999999999999").is_some());
    }

    #[test]
    fn nesting_stops_at_127_levels() {
        let nested = |depth: usize| "[".repeat(depth) + &"]".repeat(depth);
        assert!(Json::parse(&nested(127)).is_some());
        assert_eq!(Json::parse(&nested(128)), None);
    }

    #[test]
    fn the_overflow_boundary_is_exact() {
        let digits = std::str::from_utf8(F64_OVERFLOW_DIGITS).unwrap();
        let at = format!("{}.{}e308", &digits[..1], &digits[1..]);
        assert!(Json::parse(&at).is_none());
        let below = format!("{}.{}1999e308", &digits[..1], &digits[1..308]);
        assert!(Json::parse(&below).is_some());
        assert!(Json::parse(&format!("{digits}0e-1")).is_none());
        assert!(Json::parse(&format!("{:e}", f64::MAX)).is_some());
    }
}

/// The reader and writer against serde_json, the implementation they replace.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod matches_serde_json {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::*;

    /// The value serde_json would have read from the same text.
    pub(crate) fn to_value(json: &Json<'_>) -> Value {
        match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(number) => serde_json::from_str(number).expect("serde_json reads it"),
            Json::String(text) => Value::String(text.to_string()),
            Json::Array(items) => Value::Array(items.iter().map(to_value).collect()),
            Json::Object(members) => {
                let mut map = Map::new();
                for (key, value) in members {
                    // A later duplicate replaces the earlier one, as in serde_json.
                    map.insert(key.to_string(), to_value(value));
                }
                Value::Object(map)
            }
        }
    }

    /// Reads `text` with both: the same verdict and, when read, the same value.
    fn assert_reads_as_serde_json(text: &str) -> Result<(), TestCaseError> {
        let ours = Json::parse(text);
        let theirs = serde_json::from_str::<Value>(text).ok();
        prop_assert_eq!(
            ours.is_some(),
            theirs.is_some(),
            "verdicts differ on {:?}",
            text
        );
        if let (Some(ours), Some(theirs)) = (ours, theirs) {
            prop_assert_eq!(
                to_value(&ours),
                theirs.clone(),
                "values differ on {:?}",
                text
            );
            if let Value::Number(number) = &theirs {
                prop_assert_eq!(ours.as_u64(), number.as_u64());
            }
        }
        Ok(())
    }

    /// Text built from JSON fragments, valid or not.
    fn jsonish_text() -> impl Strategy<Value = String> {
        let fragment = prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            " ",
            "\n",
            "\"k\"",
            "\"v\"",
            "\"\"",
            "\"a\\\"b\"",
            "\"\\u00e9\"",
            "\"\\uD83D\\uDE00\"",
            "\"\\ud800\"",
            "\"\\udc00x\"",
            "\"\\ud800\\n\"",
            "\"\\/\\b\\f\\n\\r\\t\\\\\"",
            "\"\\x\"",
            "\"\t\"",
            "\"\u{7f}é\"",
            "0",
            "1",
            "-0",
            "01",
            "-",
            "1.5",
            "1.",
            ".5",
            "2e3",
            "1E+2",
            "-1e-2",
            "18446744073709551615",
            "18446744073709551616",
            "1e309",
            "-1e308",
            "true",
            "false",
            "null",
            "nul",
            "\"",
            "\\",
        ]);
        prop::collection::vec(fragment, 0..24).prop_map(|fragments| fragments.concat())
    }

    /// Any JSON value serde_json can write.
    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn the_nesting_limit_is_serde_json_s() {
        for depth in [126, 127, 128, 129] {
            for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
                let inner = if open == "[" { "" } else { "1" };
                let text = open.repeat(depth) + inner + &close.repeat(depth);
                assert_reads_as_serde_json(&text).unwrap();
            }
        }
    }

    #[test]
    fn numbers_near_the_f64_limit() {
        let digits = std::str::from_utf8(F64_OVERFLOW_DIGITS).unwrap();
        let mut texts = vec![
            format!("{digits}"),
            format!("-{digits}"),
            format!("{digits}.0"),
            format!("{}e-1", &digits[..308]),
            format!("{}.{}e308", &digits[..1], &digits[1..]),
            format!("0.{digits}e309"),
            format!("0.000{digits}e312"),
            format!("{}.{}1e308", &digits[..1], &digits[1..308]),
            format!("{}.{}e308", &digits[..1], &digits[1..100]),
            format!("{digits}1"),
            format!("{digits}e-1000"),
            format!("{:e}", f64::MAX),
            format!("{}", f64::MAX),
            "1e309".into(),
            "1e308".into(),
            "0.1e310".into(),
            "0.1e309".into(),
            "10e307".into(),
            "100e306".into(),
            "1e2147483647".into(),
            "1e2147483648".into(),
            "1e99999999999999999999".into(),
            "0e99999999999999999999".into(),
            "1e-99999999999999999999".into(),
            "123456789012345678901234567890".into(),
        ];
        // Every digit of the limit one lower or one higher.
        for at in 0..digits.len() {
            for delta in [-1i8, 1] {
                let mut changed = digits.as_bytes().to_vec();
                let digit = changed[at] as i8 - b'0' as i8 + delta;
                if (0..=9).contains(&digit) && !(at == 0 && digit == 0) {
                    changed[at] = b'0' + digit as u8;
                    texts.push(String::from_utf8(changed).unwrap());
                }
            }
        }
        for text in texts {
            assert_reads_as_serde_json(&text).unwrap();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn reads_fragments_as_serde_json(text in jsonish_text()) {
            assert_reads_as_serde_json(&text)?;
        }

        #[test]
        fn reads_damaged_json_as_serde_json(
            value in any_value(),
            fragment in jsonish_text(),
            at in any::<prop::sample::Index>(),
            cut in 0usize..3,
        ) {
            // serde_json's text with a fragment spliced in and a few characters cut.
            let text = serde_json::to_string(&value).unwrap();
            let chars: Vec<char> = text.chars().collect();
            let at = at.index(chars.len() + 1);
            let damaged: String = chars[..at]
                .iter()
                .chain(fragment.chars().collect::<Vec<_>>().iter())
                .chain(chars[at..].iter().skip(cut))
                .collect();
            assert_reads_as_serde_json(&damaged)?;
        }

        #[test]
        fn reads_any_text_as_serde_json(text in any::<String>()) {
            assert_reads_as_serde_json(&text)?;
        }

        #[test]
        fn reads_numbers_as_serde_json(
            text in "-?(0|[1-9][0-9]{0,24}|[1-9][0-9]{300,320})(\\.[0-9]{1,40})?([eE][+-]?[0-9]{1,3})?"
        ) {
            assert_reads_as_serde_json(&text)?;
        }

        #[test]
        fn reads_what_serde_json_writes(value in any_value(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                serde_json::to_string(&value).unwrap()
            };
            assert_reads_as_serde_json(&text)?;
            // Compact text as read is serde_json's text (its map is sorted).
            prop_assert_eq!(
                Json::parse(&text).unwrap().to_compact_string(),
                serde_json::to_string(&value).unwrap()
            );
        }

    }
}
