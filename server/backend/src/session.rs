//! Session tokens: `{user_id}.{generation}.{expires_unix}.{hex HMAC-SHA256}`.
//!
//! The MAC covers a domain tag, the user id, the user's session generation
//! and the expiry, under the configured session secret; it is checked in
//! constant time. The generation is the user's `session_generation` when the
//! token was issued: signing out bumps it, which revokes every token of that
//! user at once (the caller compares it with the stored one).

use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::ids::{hex, unhex};

/// The name of the session cookie.
pub(crate) const COOKIE_NAME: &str = "domvia_session";

/// How long a token (and the cookie) lasts: 30 days.
pub(crate) const TOKEN_TTL_SECS: u64 = 30 * 24 * 60 * 60;

/// Separates the domain tag from the signed fields, so these MACs cannot be
/// confused with anything else signed under the same secret.
const DOMAIN: &str = "domvia-backend session v2";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], user_id: &str, generation: u64, expires: u64) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(format!("{DOMAIN}\n{user_id}\n{generation}\n{expires}").as_bytes());
    Some(mac)
}

/// What a valid token says: whose it is and which of their session
/// generations it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claims {
    pub user_id: String,
    pub generation: u64,
}

/// A token for `user_id` in session generation `generation`, valid for
/// [`TOKEN_TTL_SECS`] from `now_unix`. `None` only if the MAC cannot be keyed
/// (never for HMAC).
pub(crate) fn issue(
    secret: &[u8],
    user_id: &str,
    generation: u64,
    now_unix: u64,
) -> Option<String> {
    let expires = now_unix.saturating_add(TOKEN_TTL_SECS);
    let tag = mac(secret, user_id, generation, expires)?
        .finalize()
        .into_bytes();
    Some(format!("{user_id}.{generation}.{expires}.{}", hex(&tag)))
}

/// The claims of a well-formed, correctly signed, unexpired token. Whether
/// its generation is still the user's is for the caller to check.
pub(crate) fn verify(secret: &[u8], token: &str, now_unix: u64) -> Option<Claims> {
    let mut parts = token.rsplitn(4, '.');
    let (tag, expires, generation, user_id) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let user_id_ok = !user_id.is_empty()
        && user_id.len() <= 64
        && user_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let number_ok = |text: &str| {
        !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit())
    };
    if !user_id_ok || !number_ok(expires) || !number_ok(generation) || tag.len() != 64 {
        return None;
    }
    let expires: u64 = expires.parse().ok()?;
    let generation: u64 = generation.parse().ok()?;
    let tag = unhex(tag)?;
    mac(secret, user_id, generation, expires)?
        .verify_slice(&tag)
        .ok()?;
    (expires > now_unix).then(|| Claims {
        user_id: user_id.to_owned(),
        generation,
    })
}

/// The session token of a request: `Authorization: Bearer <token>` if there is
/// an Authorization header, else the `domvia_session` cookie.
pub(crate) fn token_of(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().ok()?.trim();
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|token| !token.is_empty());
    }
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, token)| token.trim().trim_matches('"'))
        .filter(|token| !token.is_empty())
}

/// The `Set-Cookie` value that stores `token`.
pub(crate) fn set_cookie(token: &str) -> String {
    format!("{COOKIE_NAME}={token}; HttpOnly; SameSite=Lax; Path=/; Max-Age={TOKEN_TTL_SECS}")
}

/// The `Set-Cookie` value that removes the session cookie.
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_700_000_000;

    #[test]
    fn issued_tokens_verify_until_they_expire() {
        let token = issue(SECRET, "u_1", 3, NOW).unwrap();
        let claims = Claims {
            user_id: "u_1".into(),
            generation: 3,
        };
        assert_eq!(verify(SECRET, &token, NOW), Some(claims.clone()));
        assert_eq!(
            verify(SECRET, &token, NOW + TOKEN_TTL_SECS - 1),
            Some(claims)
        );
        assert_eq!(verify(SECRET, &token, NOW + TOKEN_TTL_SECS), None);
        assert_eq!(
            verify(b"another secret, 32 bytes long!!!", &token, NOW),
            None
        );
    }

    #[test]
    fn modified_tokens_fail() {
        let token = issue(SECRET, "u_1", 3, NOW).unwrap();
        let (user, rest) = token.split_once('.').unwrap();
        let (generation, rest) = rest.split_once('.').unwrap();
        let (expires, tag) = rest.split_once('.').unwrap();
        let later: u64 = expires.parse::<u64>().unwrap() + 1;
        let mut flipped = tag.to_owned().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        for bad in [
            format!("u_2.{generation}.{expires}.{tag}"),
            format!("{user}.4.{expires}.{tag}"),
            format!("{user}.{generation}.{later}.{tag}"),
            format!("{user}.{generation}.{expires}.{flipped}"),
            format!("{user}.{generation}.{expires}.{}", &tag[..62]),
            format!("{user}.{generation}.{expires}"),
            // The v1 form, without a generation.
            format!("{user}.{expires}.{tag}"),
            format!("{user}.{generation}.+{expires}.{tag}"),
            format!("{user}.-{generation}.{expires}.{tag}"),
            format!("{user}.{generation}.{expires}.{}", tag.to_uppercase()).replace(user, "U_1"),
            String::new(),
            "....".into(),
            "é.é.é.é".into(),
        ] {
            assert_eq!(verify(SECRET, &bad, NOW), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_bearer_then_cookie() {
        let mut headers = HeaderMap::new();
        assert_eq!(token_of(&headers), None);
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=b; domvia_session=tok1; c=d"),
        );
        assert_eq!(token_of(&headers), Some("tok1"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer tok2"));
        assert_eq!(token_of(&headers), Some("tok2"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(token_of(&headers), None);
    }
}
