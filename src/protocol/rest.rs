//! Signed requests to the broker's HTTP API (`POST /apps/{app_id}/events` and
//! friends), as the Pusher server libraries sign them.
//!
//! The query carries `auth_key`, `auth_timestamp`, `auth_version=1.0`,
//! `body_md5` (hex MD5 of a non-empty body) and the request's own parameters.
//! The string to sign is
//!
//! ```text
//! UPPERCASE_METHOD \n path \n key=value&key=value...
//! ```
//!
//! with the parameters sorted by key and their values unescaped; the hex
//! HMAC-SHA256 of it goes last as `auth_signature`.

use std::collections::BTreeMap;

use md5::{Digest, Md5};

use super::mac::{sign_hex, verify_hex};
use super::{hex, Error};

/// How far `auth_timestamp` may be from the verifier's clock, in seconds, either
/// way. Pusher's own API allows 600 s.
pub const AUTH_TIMESTAMP_WINDOW_SECS: u64 = 600;

/// The only `auth_version` there is.
pub const AUTH_VERSION: &str = "1.0";

/// The parameters the signature scheme owns; caller parameters with these
/// names are ignored by [`sign_query`].
const RESERVED: [&str; 5] = [
    "auth_key",
    "auth_timestamp",
    "auth_version",
    "body_md5",
    "auth_signature",
];

/// Lowercase hex MD5 of `body`, the `body_md5` parameter.
pub fn md5_hex(body: &[u8]) -> String {
    hex::encode(&Md5::digest(body))
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is,
/// and `+` stays a plus (the Pusher libraries do not form-encode).
fn percent_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            if let [hi, lo, after @ ..] = tail {
                if let (Some(hi), Some(lo)) = (hex::nibble(*hi), hex::nibble(*lo)) {
                    out.push((hi << 4) | lo);
                    rest = after;
                    continue;
                }
            }
        }
        out.push(byte);
        rest = tail;
    }
    out
}

/// The string to sign: `METHOD\npath\nk=v&k=v` over sorted parameters.
fn string_to_sign<'a>(
    method: &str,
    path: &str,
    sorted_params: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(method.to_ascii_uppercase().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(path.as_bytes());
    out.push(b'\n');
    for (i, (key, value)) in sorted_params.enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(key);
        out.push(b'=');
        out.extend_from_slice(value);
    }
    out
}

/// Signs a REST API request and returns its query string (without `?`).
///
/// `params` are the request's own query parameters (such as `info`); their
/// keys are lowercased, a repeated key keeps its last value, and keys the
/// scheme owns (`auth_*`, `body_md5`) are ignored. `body_md5` is added when
/// `body` is given and non-empty. The parameters come out sorted by key with
/// `auth_signature` last, values percent-encoded except for unreserved
/// characters, so that the query is a valid URL for any value while ordinary
/// values appear exactly as the Pusher libraries write them.
pub fn sign_query(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: Option<&[u8]>,
    auth_timestamp: u64,
) -> String {
    let mut sorted: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in params {
        let name = name.to_ascii_lowercase();
        if !RESERVED.contains(&name.as_str()) {
            sorted.insert(name, (*value).to_owned());
        }
    }
    sorted.insert("auth_key".into(), key.to_owned());
    sorted.insert("auth_timestamp".into(), auth_timestamp.to_string());
    sorted.insert("auth_version".into(), AUTH_VERSION.to_owned());
    if let Some(body) = body.filter(|body| !body.is_empty()) {
        sorted.insert("body_md5".into(), md5_hex(body));
    }
    let message = string_to_sign(
        method,
        path,
        sorted.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
    );
    let signature = sign_hex(secret.as_bytes(), &message);
    let mut query = String::new();
    for (name, value) in &sorted {
        query.push_str(&hex::percent_encode(name, hex::UNRESERVED));
        query.push('=');
        query.push_str(&hex::percent_encode(value, hex::UNRESERVED));
        query.push('&');
    }
    query.push_str("auth_signature=");
    query.push_str(&signature);
    query
}

/// Checks a signed REST API request, as the broker does.
///
/// `raw_query` is the query string as received (a leading `?` is allowed);
/// `body` is the raw body (empty for none); `now_unix` is the verifier's clock
/// in seconds. Checks, in order: `auth_key` equals `key`
/// ([`Error::AuthKeyMismatch`]); `auth_timestamp` is within
/// [`AUTH_TIMESTAMP_WINDOW_SECS`] of `now_unix` ([`Error::TimestampOutOfWindow`]);
/// `auth_version` is 1.0 ([`Error::UnsupportedAuthVersion`]); `auth_signature`
/// is present; `body_md5` is present for a non-empty body and, when present,
/// matches the body ([`Error::BodyMd5Mismatch`]); then the signature over all
/// other parameters (keys lowercased, sorted), compared in constant time
/// ([`Error::InvalidSignature`], also for a repeated parameter). A missing
/// parameter is [`Error::MissingAuthParam`].
pub fn verify_query(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    raw_query: &str,
    body: &[u8],
    now_unix: u64,
) -> Result<(), Error> {
    let query = raw_query.strip_prefix('?').unwrap_or(raw_query);
    let mut params: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let mut name = percent_decode(name);
        name.make_ascii_lowercase();
        if params.insert(name, percent_decode(value)).is_some() {
            return Err(Error::InvalidSignature);
        }
    }
    let required = |name: &'static str| {
        params
            .get(name.as_bytes())
            .map(Vec::as_slice)
            .ok_or(Error::MissingAuthParam { name })
    };

    if required("auth_key")? != key.as_bytes() {
        return Err(Error::AuthKeyMismatch);
    }
    let timestamp = std::str::from_utf8(required("auth_timestamp")?)
        .ok()
        .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|text| text.parse::<u64>().ok())
        .ok_or(Error::TimestampOutOfWindow)?;
    if timestamp.abs_diff(now_unix) > AUTH_TIMESTAMP_WINDOW_SECS {
        return Err(Error::TimestampOutOfWindow);
    }
    if required("auth_version")? != AUTH_VERSION.as_bytes() {
        return Err(Error::UnsupportedAuthVersion);
    }
    let signature =
        std::str::from_utf8(required("auth_signature")?).map_err(|_| Error::InvalidSignature)?;
    match params.get(b"body_md5".as_slice()) {
        Some(body_md5) if !body_md5.eq_ignore_ascii_case(md5_hex(body).as_bytes()) => {
            return Err(Error::BodyMd5Mismatch);
        }
        None if !body.is_empty() => return Err(Error::MissingAuthParam { name: "body_md5" }),
        Some(_) | None => {}
    }

    let message = string_to_sign(
        method,
        path,
        params
            .iter()
            .filter(|(name, _)| name.as_slice() != b"auth_signature")
            .map(|(name, value)| (name.as_slice(), value.as_slice())),
    );
    verify_hex(secret.as_bytes(), &message, signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";
    const NOW: u64 = 1_700_000_000;

    fn verify(query: &str, body: &[u8]) -> Result<(), Error> {
        verify_query(KEY, SECRET, "POST", "/apps/3/events", query, body, NOW)
    }

    #[test]
    fn md5_of_known_inputs() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn percent_coding() {
        assert_eq!(hex::percent_encode("aZ09-._~", hex::UNRESERVED), "aZ09-._~");
        assert_eq!(
            hex::percent_encode("a b&c=d+é", hex::UNRESERVED),
            "a%20b%26c%3Dd%2B%C3%A9"
        );
        assert_eq!(
            percent_decode("a%20b%26c%3Dd%2B%C3%a9"),
            "a b&c=d+é".as_bytes()
        );
        assert_eq!(percent_decode("100%"), b"100%");
        assert_eq!(percent_decode("%zz%4"), b"%zz%4");
        assert_eq!(percent_decode("a+b"), b"a+b");
    }

    #[test]
    fn odd_values_survive_signing_and_verifying() {
        let params = [
            ("Info", "user_count,subscription_count"),
            ("q", "a b&c=d+é%"),
        ];
        let query = sign_query(
            KEY,
            SECRET,
            "post",
            "/apps/3/events",
            &params,
            Some(b"{}"),
            NOW,
        );
        assert!(
            query.contains("info=user_count%2Csubscription_count"),
            "{query}"
        );
        assert_eq!(verify(&query, b"{}"), Ok(()));
        assert_eq!(verify(&format!("?{query}"), b"{}"), Ok(()));
        assert_eq!(verify(&format!("&{query}&"), b"{}"), Ok(()));
    }

    #[test]
    fn reserved_caller_params_are_ignored() {
        let query = sign_query(
            KEY,
            SECRET,
            "GET",
            "/apps/3/channels",
            &[
                ("auth_key", "evil"),
                ("AUTH_SIGNATURE", "x"),
                ("body_md5", "y"),
            ],
            None,
            NOW,
        );
        assert!(!query.contains("evil"));
        assert_eq!(query.matches("auth_signature=").count(), 1);
        assert!(!query.contains("body_md5"));
        assert_eq!(
            verify_query(KEY, SECRET, "GET", "/apps/3/channels", &query, b"", NOW),
            Ok(())
        );
    }

    #[test]
    fn empty_body_has_no_md5() {
        let with_empty = sign_query(KEY, SECRET, "GET", "/p", &[], Some(b""), NOW);
        let without = sign_query(KEY, SECRET, "GET", "/p", &[], None, NOW);
        assert_eq!(with_empty, without);
        assert!(!without.contains("body_md5"));
    }

    #[test]
    fn each_check_has_its_error() {
        let body = b"{\"name\":\"e\"}";
        let query = sign_query(KEY, SECRET, "POST", "/apps/3/events", &[], Some(body), NOW);
        assert_eq!(verify(&query, body), Ok(()));
        let without = |name: &str| {
            query
                .split('&')
                .filter(|pair| !pair.starts_with(&format!("{name}=")))
                .collect::<Vec<_>>()
                .join("&")
        };
        for name in [
            "auth_key",
            "auth_timestamp",
            "auth_version",
            "auth_signature",
            "body_md5",
        ] {
            let expected = Error::MissingAuthParam {
                name: RESERVED.into_iter().find(|n| *n == name).unwrap(),
            };
            assert_eq!(verify(&without(name), body), Err(expected), "{name}");
        }
        assert_eq!(
            verify(&query.replace(KEY, "other"), body),
            Err(Error::AuthKeyMismatch)
        );
        assert_eq!(
            verify(&query.replace("auth_version=1.0", "auth_version=2.0"), body),
            Err(Error::UnsupportedAuthVersion)
        );
        assert_eq!(
            verify(
                &query.replace("auth_timestamp=1700000000", "auth_timestamp=x"),
                body
            ),
            Err(Error::TimestampOutOfWindow)
        );
        assert_eq!(
            verify(
                &query.replace("auth_timestamp=1700000000", "auth_timestamp=+1700000000"),
                body
            ),
            Err(Error::TimestampOutOfWindow)
        );
        assert_eq!(verify(&query, b"{}"), Err(Error::BodyMd5Mismatch));
        assert_eq!(
            verify(&format!("{query}&extra=1"), body),
            Err(Error::InvalidSignature)
        );
        assert_eq!(
            verify(&format!("{query}&auth_key={KEY}"), body),
            Err(Error::InvalidSignature),
            "a repeated parameter"
        );
        assert_eq!(
            verify_query(KEY, SECRET, "GET", "/apps/3/events", &query, body, NOW),
            Err(Error::InvalidSignature)
        );
        assert_eq!(
            verify_query(KEY, SECRET, "post", "/apps/3/events", &query, body, NOW),
            Ok(()),
            "the method is uppercased"
        );
        assert_eq!(
            verify_query(
                KEY,
                "other secret",
                "POST",
                "/apps/3/events",
                &query,
                body,
                NOW
            ),
            Err(Error::InvalidSignature)
        );
    }

    #[test]
    fn body_md5_on_an_empty_body_must_match() {
        let query = sign_query(KEY, SECRET, "POST", "/apps/3/events", &[], Some(b"x"), NOW);
        assert_eq!(verify(&query, b""), Err(Error::BodyMd5Mismatch));
    }

    #[test]
    fn window_edges() {
        let query = sign_query(KEY, SECRET, "GET", "/p", &[], None, NOW);
        let at = |now| verify_query(KEY, SECRET, "GET", "/p", &query, b"", now);
        assert_eq!(at(NOW - AUTH_TIMESTAMP_WINDOW_SECS), Ok(()));
        assert_eq!(at(NOW + AUTH_TIMESTAMP_WINDOW_SECS), Ok(()));
        assert_eq!(
            at(NOW - AUTH_TIMESTAMP_WINDOW_SECS - 1),
            Err(Error::TimestampOutOfWindow)
        );
        assert_eq!(
            at(NOW + AUTH_TIMESTAMP_WINDOW_SECS + 1),
            Err(Error::TimestampOutOfWindow)
        );
        assert_eq!(at(0), Err(Error::TimestampOutOfWindow));
        assert_eq!(at(u64::MAX), Err(Error::TimestampOutOfWindow));
    }
}
