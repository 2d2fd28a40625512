//! Random identifiers and the wall clock.
//!
//! Ids are a short kind prefix and 128 random bits in lowercase hex, so they are
//! unguessable and always valid chat room ids for `build_chat_channel_name`
//! (only `[a-z0-9_]`).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::ApiError;

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// The bytes of an even-length hex string, or `None`.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some((nibble(pair[0])? << 4) | nibble(pair[1])?))
        .collect()
}

/// `prefix` followed by 128 random bits in hex, such as `r_3f9c...`.
pub(crate) fn random_id(prefix: &str) -> Result<String, ApiError> {
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|error| ApiError::internal(format!("the system random source failed: {error}")))?;
    Ok(format!("{prefix}{}", hex(&bytes)))
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// Whether `text` is 1..=64 characters of `[A-Za-z0-9_-]`: the shape of
/// device ids (the same as the core's client ids, which messages check with
/// `domvia_realtime::chat::validate_client_id`).
pub(crate) fn is_token_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00abFF"), Some(vec![0x00, 0xab, 0xff]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }

    #[test]
    fn random_ids_are_valid_room_ids() {
        let id = random_id("r_").unwrap();
        assert_eq!(id.len(), 34);
        assert!(domvia_realtime::protocol::build_chat_channel_name(&id, true).is_ok());
        assert_ne!(id, random_id("r_").unwrap());
    }

    #[test]
    fn token_ids() {
        assert!(is_token_id("a"));
        assert!(is_token_id(&"A-_9".repeat(16)));
        for bad in ["", "a b", "a.b", "é", &"a".repeat(65)] {
            assert!(!is_token_id(bad), "{bad:?}");
        }
    }
}
