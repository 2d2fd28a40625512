//! Byte-level building blocks of the format: strict base64url, length-prefixed
//! transcripts (associated data, signature and HKDF inputs), id checks and the
//! JSON object reader shared by device records, key shares and envelopes.

use std::borrow::Cow;

use super::json::Json;
use crate::error::{quoted, Error};

/// The format version every object carries as `"v"`.
pub const FORMAT_VERSION: u64 = 1;

/// The most bytes of a room, user, device or message id.
pub const MAX_ID_BYTES: usize = 64;

/// The most bytes of a message kind.
pub const MAX_KIND_BYTES: usize = 32;

/// The largest epoch number: JSON numbers stay exact in JavaScript up to 2^53 - 1.
pub const MAX_EPOCH: u64 = (1 << 53) - 1;

pub(crate) fn malformed(reason: impl Into<String>) -> Error {
    Error::E2eeMalformed {
        reason: reason.into(),
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url (RFC 4648 section 5) without padding.
pub fn b64u_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    push_b64u(&mut out, bytes);
    out
}

/// Appends `bytes` as unpadded base64url.
pub(crate) fn push_b64u(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.chunks(3) {
        let n = match chunk.len() {
            3 => (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]),
            2 => (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8),
            _ => u32::from(chunk[0]) << 16,
        };
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
}

fn sextet(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    } as u32)
}

/// Strict base64url without padding: only the URL-safe alphabet, no `=`, no
/// whitespace, and the unused low bits of the last character must be zero, so
/// every byte string has exactly one accepted encoding.
pub fn b64u_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= sextet(c)? << (18 - 6 * i);
        }
        let produced = chunk.len() - 1;
        // The bits below the last produced byte must be zero (canonical form).
        if n & ((1u32 << (24 - 8 * produced)) - 1) != 0 {
            return None;
        }
        for i in 0..produced {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// A transcript of length-prefixed fields: each variable field is its length as
/// a 4-byte big-endian integer followed by its bytes; integers are 8-byte
/// big-endian; fixed-size keys are appended raw.
#[derive(Default)]
pub(crate) struct Transcript(Vec<u8>);

impl Transcript {
    pub(crate) fn new(label: &str) -> Self {
        let mut t = Transcript(Vec::with_capacity(256));
        t.bytes(label.as_bytes());
        t
    }

    pub(crate) fn bytes(&mut self, field: &[u8]) -> &mut Self {
        // Every field is bounded far below 4 GiB by the checks before it.
        self.0
            .extend_from_slice(&(field.len() as u32).to_be_bytes());
        self.0.extend_from_slice(field);
        self
    }

    pub(crate) fn str(&mut self, field: &str) -> &mut Self {
        self.bytes(field.as_bytes())
    }

    pub(crate) fn u64(&mut self, value: u64) -> &mut Self {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub(crate) fn raw(&mut self, fixed: &[u8]) -> &mut Self {
        self.0.extend_from_slice(fixed);
        self
    }

    pub(crate) fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// Checks a room, user, device or message id: 1 to 64 bytes of
/// `[A-Za-z0-9_.:-]`.
pub fn validate_id(field: &str, id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(malformed(format!(
            "{field} must have 1 to {MAX_ID_BYTES} bytes"
        )));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    {
        return Err(malformed(format!(
            "{field} may only contain A-Z, a-z, 0-9, '_', '-', '.' and ':'"
        )));
    }
    Ok(())
}

/// Checks a message kind: 1 to 32 bytes of `[a-z0-9_.-]`.
pub fn validate_kind(kind: &str) -> Result<(), Error> {
    if kind.is_empty()
        || kind.len() > MAX_KIND_BYTES
        || !kind.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
    {
        return Err(malformed(format!(
            "kind must have 1 to {MAX_KIND_BYTES} bytes of a-z, 0-9, '_', '-' and '.'"
        )));
    }
    Ok(())
}

pub(crate) fn validate_epoch(epoch: u64) -> Result<(), Error> {
    if epoch == 0 || epoch > MAX_EPOCH {
        return Err(malformed("epoch must be an integer from 1 to 2^53 - 1"));
    }
    Ok(())
}

/// Reads one of the format's JSON objects: checks `"v"` first (an unknown
/// version is `e2ee_unsupported_version` whatever else the object holds), then
/// that it has exactly the expected fields.
pub(crate) struct Fields<'a> {
    object: &'a Json<'a>,
    what: &'static str,
}

impl<'a> Fields<'a> {
    pub(crate) fn read(
        value: &'a Json<'a>,
        what: &'static str,
        expected: &[&str],
    ) -> Result<Self, Error> {
        let members = Self::members(value, what)?;
        match value.get("v") {
            Some(v) if v.as_u64() == Some(FORMAT_VERSION) => {}
            Some(v) => {
                // As serde_json showed it, except that a fraction or exponent
                // is shown as written and object members in text order.
                return Err(Error::E2eeUnsupportedVersion {
                    what,
                    version: v.to_compact_string(),
                });
            }
            None => return Err(malformed(format!("a {what} lacks its version \"v\""))),
        }
        Self::check_keys(value, members, what, expected)
    }

    /// Reads an object nested in a versioned one (its version was checked
    /// there): exactly the expected fields, no `"v"`.
    pub(crate) fn read_nested(
        value: &'a Json<'a>,
        what: &'static str,
        expected: &[&str],
    ) -> Result<Self, Error> {
        let members = Self::members(value, what)?;
        if value.get("v").is_some() {
            return Err(malformed(format!("a {what} has an unknown field \"v\"")));
        }
        Self::check_keys(value, members, what, expected)
    }

    fn members(
        value: &'a Json<'a>,
        what: &'static str,
    ) -> Result<&'a [(Cow<'a, str>, Json<'a>)], Error> {
        value
            .as_object()
            .ok_or_else(|| malformed(format!("a {what} must be a JSON object")))
    }

    fn check_keys(
        object: &'a Json<'a>,
        members: &[(Cow<'a, str>, Json<'a>)],
        what: &'static str,
        expected: &[&str],
    ) -> Result<Self, Error> {
        // The first unknown key in byte order, the one serde_json's sorted
        // map named.
        let unknown = members
            .iter()
            .map(|(key, _)| key.as_ref())
            .filter(|key| *key != "v" && !expected.contains(key))
            .min();
        if let Some(key) = unknown {
            return Err(malformed(format!(
                "a {what} has an unknown field {key}",
                key = quoted(key)
            )));
        }
        Ok(Fields { object, what })
    }

    pub(crate) fn list(&self, key: &str) -> Result<&'a [Json<'a>], Error> {
        self.get(key)?.as_array().ok_or_else(|| {
            malformed(format!(
                "{key} of a {} must be an array",
                self.what,
                key = quoted(key)
            ))
        })
    }

    fn get(&self, key: &str) -> Result<&'a Json<'a>, Error> {
        self.object
            .get(key)
            .ok_or_else(|| malformed(format!("a {} lacks {key}", self.what, key = quoted(key))))
    }

    pub(crate) fn str(&self, key: &str) -> Result<&'a str, Error> {
        self.get(key)?.as_str().ok_or_else(|| {
            malformed(format!(
                "{key} of a {} must be a string",
                self.what,
                key = quoted(key)
            ))
        })
    }

    pub(crate) fn id(&self, key: &str) -> Result<String, Error> {
        let id = self.str(key)?;
        validate_id(key, id)?;
        Ok(id.to_owned())
    }

    pub(crate) fn u64(&self, key: &str) -> Result<u64, Error> {
        self.get(key)?.as_u64().ok_or_else(|| {
            malformed(format!(
                "{key} of a {} must be a non-negative integer",
                self.what,
                key = quoted(key)
            ))
        })
    }

    pub(crate) fn epoch(&self, key: &str) -> Result<u64, Error> {
        let epoch = self.u64(key)?;
        validate_epoch(epoch)?;
        Ok(epoch)
    }

    pub(crate) fn bytes(&self, key: &str) -> Result<Vec<u8>, Error> {
        b64u_decode(self.str(key)?).ok_or_else(|| {
            malformed(format!(
                "{key} of a {} is not canonical unpadded base64url",
                self.what,
                key = quoted(key)
            ))
        })
    }

    pub(crate) fn array<const N: usize>(&self, key: &str) -> Result<[u8; N], Error> {
        self.bytes(key)?.try_into().map_err(|_| {
            malformed(format!(
                "{key} of a {} must decode to {N} bytes",
                self.what,
                key = quoted(key)
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(b64u_encode(plain.as_bytes()), encoded);
            assert_eq!(b64u_decode(encoded).unwrap(), plain.as_bytes());
        }
        assert_eq!(b64u_encode(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn base64url_rejects_non_canonical() {
        for bad in ["Zh", "Zm9=", "Zm9v=", "Z", "Zm+v", "Zm/v", "Zm9 v", "Zm9\n"] {
            assert_eq!(b64u_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ids_and_kinds() {
        assert!(validate_id("room_id", "r_0123").is_ok());
        assert!(validate_id("room_id", "").is_err());
        assert!(validate_id("room_id", &"a".repeat(65)).is_err());
        assert!(validate_id("room_id", "a b").is_err());
        assert!(validate_kind("text").is_ok());
        assert!(validate_kind("Text").is_err());
    }
}
