//! Signatures that authorize a connection: private and presence channel auth,
//! user sign-in, and webhooks.
//!
//! A channel auth is `"{key}:" + hex(HMAC-SHA256(secret, message))`, where the
//! message is `socket_id:channel_name` for a private channel and
//! `socket_id:channel_name:channel_data` for a presence channel. A user sign-in
//! signs `socket_id::user::user_data`. A webhook signs its raw body. The app
//! server signs; the broker verifies; the browser only checks the shape of what
//! its auth endpoint returned.

use crate::json::{rsplit_once_ascii, split_once_ascii, Value};
use serde::Serialize;

use super::mac::{sign_hex, verify_hex};
use super::{hex, validate_channel_name, ChannelKind, Error};

/// What a channel auth endpoint returns, and what the client puts in
/// `pusher:subscribe`: serializes to `{"auth":..}` or `{"auth":..,"channel_data":..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelAuth {
    /// `key:signature`.
    pub auth: String,
    /// The signed presence data (JSON text), for presence channels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_data: Option<String>,
}

/// What a user authentication endpoint returns, and what the client puts in
/// `pusher:signin`: serializes to `{"auth":..,"user_data":..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserAuth {
    /// `key:signature`.
    pub auth: String,
    /// The signed user data (JSON text).
    pub user_data: String,
}

/// A presence member, as read from signed `channel_data`.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceMember {
    /// The non-empty user id.
    pub user_id: String,
    /// The optional public information about the user.
    pub user_info: Option<Value>,
}

/// Checks that a socket id has the form the brokers issue: digits, a dot,
/// digits (`^\d+\.\d+$`, ASCII digits only).
pub fn validate_socket_id(socket_id: &str) -> Result<(), Error> {
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    match split_once_ascii(socket_id, |b| b == b'.') {
        Some((left, right)) if digits(left) && digits(right) => Ok(()),
        _ => Err(Error::InvalidSocketId),
    }
}

fn signed(key: &str, secret: &str, message: &str) -> String {
    format!("{key}:{}", sign_hex(secret.as_bytes(), message.as_bytes()))
}

/// Signs a subscription to a private (or private-encrypted) channel.
///
/// Only call this after checking that the signed-in user may join the channel:
/// the signature is the whole access control.
pub fn authorize_private_channel(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel_name: &str,
) -> Result<ChannelAuth, Error> {
    validate_socket_id(socket_id)?;
    match validate_channel_name(channel_name)? {
        ChannelKind::Private | ChannelKind::PrivateEncrypted => Ok(ChannelAuth {
            auth: signed(key, secret, &format!("{socket_id}:{channel_name}")),
            channel_data: None,
        }),
        ChannelKind::Public | ChannelKind::Presence => Err(Error::WrongChannelKind {
            channel: channel_name.to_owned(),
            expected: "private or private-encrypted",
        }),
    }
}

/// The presence `channel_data` JSON: `{"user_id":..,"user_info":..}` in that
/// order, without `user_info` when it is `None`.
fn presence_channel_data(user_id: &str, user_info: Option<&Value>) -> String {
    let mut out = String::from("{\"user_id\":");
    out.push_str(&Value::from(user_id).to_string());
    if let Some(user_info) = user_info {
        out.push_str(",\"user_info\":");
        out.push_str(&user_info.to_string());
    }
    out.push('}');
    out
}

/// Signs a subscription to a presence channel as member `user_id`.
///
/// Only call this after checking that the signed-in user is `user_id` and may
/// join the channel. The broker announces `user_id` and `user_info` to the
/// other members and stamps `user_id` on the member's client events.
pub fn authorize_presence_channel(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel_name: &str,
    user_id: &str,
    user_info: Option<&Value>,
) -> Result<ChannelAuth, Error> {
    validate_socket_id(socket_id)?;
    if validate_channel_name(channel_name)? != ChannelKind::Presence {
        return Err(Error::WrongChannelKind {
            channel: channel_name.to_owned(),
            expected: "presence",
        });
    }
    if user_id.is_empty() {
        return Err(Error::InvalidUserData);
    }
    let channel_data = presence_channel_data(user_id, user_info);
    let auth = signed(
        key,
        secret,
        &format!("{socket_id}:{channel_name}:{channel_data}"),
    );
    Ok(ChannelAuth {
        auth,
        channel_data: Some(channel_data),
    })
}

/// Signs a user sign-in (`pusher:signin`). `user_data` must be a JSON object
/// with a non-empty string `id`; it is signed as its compact JSON text.
pub fn authenticate_user(
    key: &str,
    secret: &str,
    socket_id: &str,
    user_data: &Value,
) -> Result<UserAuth, Error> {
    validate_socket_id(socket_id)?;
    match user_data.get("id") {
        Some(Value::String(id)) if user_data.is_object() && !id.is_empty() => {}
        _ => return Err(Error::InvalidUserData),
    }
    let user_data = user_data.to_string();
    Ok(UserAuth {
        auth: signed(key, secret, &format!("{socket_id}::user::{user_data}")),
        user_data,
    })
}

/// Splits `key:signature`, checking the key.
fn signature_for<'a>(key: &str, auth: &'a str) -> Result<&'a str, Error> {
    let (auth_key, signature) = rsplit_once_ascii(auth, b':').ok_or(Error::InvalidSignature)?;
    if auth_key != key {
        return Err(Error::AuthKeyMismatch);
    }
    Ok(signature)
}

/// Checks the `auth` (and `channel_data`) of a `pusher:subscribe`, as the broker
/// does, comparing the MAC in constant time.
///
/// A presence channel needs `channel_data`
/// ([`Error::MissingAuthParam`] otherwise); read the member from it with
/// [`parse_presence_channel_data`] once it is verified.
pub fn verify_channel_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel_name: &str,
    auth: &str,
    channel_data: Option<&str>,
) -> Result<(), Error> {
    if channel_data.is_none() && ChannelKind::of(channel_name) == ChannelKind::Presence {
        return Err(Error::MissingAuthParam {
            name: "channel_data",
        });
    }
    let signature = signature_for(key, auth)?;
    let message = match channel_data {
        Some(channel_data) => format!("{socket_id}:{channel_name}:{channel_data}"),
        None => format!("{socket_id}:{channel_name}"),
    };
    verify_hex(secret.as_bytes(), message.as_bytes(), signature)
}

/// Checks the `auth` of a `pusher:signin` against its `user_data` text, as the
/// broker does, comparing the MAC in constant time.
pub fn verify_user_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    auth: &str,
    user_data: &str,
) -> Result<(), Error> {
    let signature = signature_for(key, auth)?;
    let message = format!("{socket_id}::user::{user_data}");
    verify_hex(secret.as_bytes(), message.as_bytes(), signature)
}

/// Reads the member from presence `channel_data`: a JSON object with a
/// non-empty string `user_id` and an optional `user_info`.
pub fn parse_presence_channel_data(channel_data: &str) -> Result<PresenceMember, Error> {
    let value: Value = crate::json::from_str(channel_data).map_err(|_| Error::InvalidUserData)?;
    let Value::Object(mut map) = value else {
        return Err(Error::InvalidUserData);
    };
    match map.remove("user_id") {
        Some(Value::String(user_id)) if !user_id.is_empty() => Ok(PresenceMember {
            user_id,
            user_info: map.remove("user_info"),
        }),
        _ => Err(Error::InvalidUserData),
    }
}

/// The `X-Pusher-Signature` of a webhook body: hex HMAC-SHA256 of the raw body.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    sign_hex(secret.as_bytes(), body)
}

/// Checks a webhook's `X-Pusher-Key` and `X-Pusher-Signature` headers against
/// its raw body, comparing the MAC in constant time.
pub fn verify_webhook(
    key: &str,
    secret: &str,
    header_key: &str,
    header_signature: &str,
    body: &[u8],
) -> Result<(), Error> {
    if header_key != key {
        return Err(Error::AuthKeyMismatch);
    }
    verify_hex(secret.as_bytes(), body, header_signature)
}

fn bad_response(reason: &str) -> Error {
    Error::InvalidAuthResponse {
        reason: reason.to_owned(),
    }
}

/// Reads what a channel auth endpoint returned, in the browser, before it goes
/// into `pusher:subscribe`.
///
/// The body must be a JSON object with a string `auth` of the form
/// `{app_key}:{64 lowercase hex digits}`; an auth signed for another key fails
/// with [`Error::AuthKeyMismatch`] (the server uses another app's credentials).
/// For a presence channel it also needs a string `channel_data` holding a JSON
/// object with a non-empty string `user_id`. Everything else is
/// [`Error::InvalidAuthResponse`]. The reasons never quote the body.
pub fn parse_channel_auth_response(
    app_key: &str,
    channel_name: &str,
    body: &str,
) -> Result<ChannelAuth, Error> {
    let value: Value =
        crate::json::from_str(body).map_err(|_| bad_response("the response is not JSON"))?;
    let Value::Object(map) = value else {
        return Err(bad_response("the response is not a JSON object"));
    };
    let Some(Value::String(auth)) = map.get("auth") else {
        return Err(bad_response("the response has no string auth"));
    };
    let well_formed =
        rsplit_once_ascii(auth, b':').filter(|(_, signature)| hex::is_lower_hex(signature, 64));
    let Some((signed_key, _)) = well_formed else {
        return Err(bad_response(
            "auth is not of the form \"key:signature\" with a 64-digit lowercase hex signature",
        ));
    };
    if signed_key != app_key {
        return Err(Error::AuthKeyMismatch);
    }
    let channel_data = match map.get("channel_data") {
        None | Some(Value::Null) => None,
        Some(Value::String(channel_data)) => Some(channel_data.clone()),
        Some(_) => return Err(bad_response("channel_data is not a string")),
    };
    if ChannelKind::of(channel_name) == ChannelKind::Presence {
        let Some(channel_data) = &channel_data else {
            return Err(bad_response("a presence channel needs channel_data"));
        };
        parse_presence_channel_data(channel_data).map_err(|_| {
            bad_response("channel_data is not a JSON object with a non-empty string user_id")
        })?;
    }
    Ok(ChannelAuth {
        auth: auth.clone(),
        channel_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::json;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    #[test]
    fn socket_ids() {
        for good in ["1.2", "1234.1234", "0.0", "99999999999999999999.1"] {
            assert_eq!(validate_socket_id(good), Ok(()), "{good}");
        }
        for bad in [
            "", ".", "1.", ".1", "1.2.3", "a.1", "1.b", " 1.2", "1.2\n", "+1.2", "١.١", "12",
        ] {
            assert_eq!(
                validate_socket_id(bad),
                Err(Error::InvalidSocketId),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn private_auth_checks_its_inputs() {
        let ok = authorize_private_channel(KEY, SECRET, "1234.1234", "private-foobar").unwrap();
        assert_eq!(
            ok.auth,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        assert_eq!(
            Value::from(serde_json::to_value(&ok).unwrap()),
            json!({ "auth": ok.auth })
        );
        assert!(authorize_private_channel(KEY, SECRET, "1.1", "private-encrypted-x").is_ok());
        assert_eq!(
            authorize_private_channel(KEY, SECRET, "1.1", "public"),
            Err(Error::WrongChannelKind {
                channel: "public".into(),
                expected: "private or private-encrypted"
            })
        );
        assert_eq!(
            authorize_private_channel(KEY, SECRET, "1.1", "presence-x")
                .unwrap_err()
                .code(),
            "wrong_channel_kind"
        );
        assert_eq!(
            authorize_private_channel(KEY, SECRET, "1.1", "private-")
                .unwrap_err()
                .code(),
            "invalid_channel_name"
        );
        assert_eq!(
            authorize_private_channel(KEY, SECRET, "1", "private-x"),
            Err(Error::InvalidSocketId)
        );
    }

    #[test]
    fn presence_auth_builds_channel_data() {
        let info = json!({"name": "Mr. Channels"});
        let ok = authorize_presence_channel(
            KEY,
            SECRET,
            "1234.1234",
            "presence-foobar",
            "10",
            Some(&info),
        )
        .unwrap();
        assert_eq!(
            ok.channel_data.as_deref(),
            Some(r#"{"user_id":"10","user_info":{"name":"Mr. Channels"}}"#)
        );
        assert_eq!(
            Value::from(serde_json::to_value(&ok).unwrap()),
            json!({ "auth": ok.auth, "channel_data": ok.channel_data })
        );
        let bare =
            authorize_presence_channel(KEY, SECRET, "1.1", "presence-x", "a\"b", None).unwrap();
        assert_eq!(bare.channel_data.as_deref(), Some(r#"{"user_id":"a\"b"}"#));
        assert_eq!(
            verify_channel_auth(
                KEY,
                SECRET,
                "1.1",
                "presence-x",
                &bare.auth,
                bare.channel_data.as_deref()
            ),
            Ok(())
        );
        assert_eq!(
            authorize_presence_channel(KEY, SECRET, "1.1", "presence-x", "", None),
            Err(Error::InvalidUserData)
        );
        assert_eq!(
            authorize_presence_channel(KEY, SECRET, "1.1", "private-x", "u", None)
                .unwrap_err()
                .code(),
            "wrong_channel_kind"
        );
        assert_eq!(
            authorize_presence_channel(KEY, SECRET, "x", "presence-x", "u", None),
            Err(Error::InvalidSocketId)
        );
    }

    #[test]
    fn user_auth_needs_an_id() {
        let ok = authenticate_user(KEY, SECRET, "1.1", &json!({"id": "u1"})).unwrap();
        assert_eq!(ok.user_data, r#"{"id":"u1"}"#);
        assert_eq!(
            verify_user_auth(KEY, SECRET, "1.1", &ok.auth, &ok.user_data),
            Ok(())
        );
        assert_eq!(
            verify_user_auth(KEY, SECRET, "1.2", &ok.auth, &ok.user_data),
            Err(Error::InvalidSignature)
        );
        for bad in [
            json!(null),
            json!("u1"),
            json!({}),
            json!({"id": ""}),
            json!({"id": 1}),
            json!([{"id": "u"}]),
        ] {
            assert_eq!(
                authenticate_user(KEY, SECRET, "1.1", &bad),
                Err(Error::InvalidUserData),
                "{bad}"
            );
        }
        assert_eq!(
            authenticate_user(KEY, SECRET, "", &json!({"id": "u"})),
            Err(Error::InvalidSocketId)
        );
    }

    #[test]
    fn verify_channel_auth_rejects_malformed_auth() {
        let ok = authorize_private_channel(KEY, SECRET, "1.1", "private-x").unwrap();
        assert_eq!(
            verify_channel_auth(KEY, SECRET, "1.1", "private-x", &ok.auth, None),
            Ok(())
        );
        let signature = ok.auth.rsplit_once(':').unwrap().1;
        for (auth, expected) in [
            (signature.to_owned(), Error::InvalidSignature),
            (format!("other:{signature}"), Error::AuthKeyMismatch),
            (format!(":{signature}"), Error::AuthKeyMismatch),
            (format!("{KEY}:"), Error::InvalidSignature),
            (format!("{KEY}:zz"), Error::InvalidSignature),
            (
                format!("{KEY}:{}", &signature[..63]),
                Error::InvalidSignature,
            ),
            (format!("{KEY}:{signature}00"), Error::InvalidSignature),
            (String::new(), Error::InvalidSignature),
        ] {
            assert_eq!(
                verify_channel_auth(KEY, SECRET, "1.1", "private-x", &auth, None),
                Err(expected),
                "{auth:?}"
            );
        }
        // Signed without channel_data, presented with some: rejected.
        assert_eq!(
            verify_channel_auth(KEY, SECRET, "1.1", "private-x", &ok.auth, Some("{}")),
            Err(Error::InvalidSignature)
        );
        assert_eq!(
            verify_channel_auth(KEY, SECRET, "1.1", "presence-x", &ok.auth, None),
            Err(Error::MissingAuthParam {
                name: "channel_data"
            })
        );
    }

    #[test]
    fn webhooks() {
        let signature = webhook_signature(SECRET, b"{}");
        assert_eq!(signature.len(), 64);
        assert_eq!(verify_webhook(KEY, SECRET, KEY, &signature, b"{}"), Ok(()));
        assert_eq!(
            verify_webhook(KEY, SECRET, "other", &signature, b"{}"),
            Err(Error::AuthKeyMismatch)
        );
        assert_eq!(
            verify_webhook(KEY, SECRET, KEY, &signature, b"{ }"),
            Err(Error::InvalidSignature)
        );
        assert_eq!(
            verify_webhook(KEY, SECRET, KEY, "not hex", b"{}"),
            Err(Error::InvalidSignature)
        );
    }

    #[test]
    fn presence_channel_data() {
        assert_eq!(
            parse_presence_channel_data(r#"{"user_id":"u","user_info":{"a":1}}"#),
            Ok(PresenceMember {
                user_id: "u".into(),
                user_info: Some(json!({"a": 1}))
            })
        );
        assert_eq!(
            parse_presence_channel_data(r#"{"user_id":"u"}"#),
            Ok(PresenceMember {
                user_id: "u".into(),
                user_info: None
            })
        );
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"user_id":""}"#,
            r#"{"user_id":1}"#,
            r#"{"user_id":null}"#,
        ] {
            assert_eq!(
                parse_presence_channel_data(bad),
                Err(Error::InvalidUserData),
                "{bad}"
            );
        }
    }

    #[test]
    fn auth_responses() {
        let sig = "a".repeat(64);
        let auth = format!("{KEY}:{sig}");
        let body = json!({ "auth": auth }).to_string();
        assert_eq!(
            parse_channel_auth_response(KEY, "private-x", &body),
            Ok(ChannelAuth {
                auth: auth.clone(),
                channel_data: None
            })
        );
        let presence = json!({ "auth": auth, "channel_data": "{\"user_id\":\"u\"}" }).to_string();
        assert_eq!(
            parse_channel_auth_response(KEY, "presence-x", &presence),
            Ok(ChannelAuth {
                auth: auth.clone(),
                channel_data: Some("{\"user_id\":\"u\"}".into())
            })
        );
        let other_key = json!({ "auth": format!("otherkey:{sig}") }).to_string();
        let err = parse_channel_auth_response(KEY, "private-x", &other_key).unwrap_err();
        assert_eq!(err, Error::AuthKeyMismatch);
        assert!(err.to_string().contains("another app key"));

        let bad_bodies = [
            "<html>502</html>".to_owned(),
            "[]".to_owned(),
            "{}".to_owned(),
            json!({ "auth": 1 }).to_string(),
            json!({ "auth": sig }).to_string(),
            json!({ "auth": format!("{KEY}:{}", "A".repeat(64)) }).to_string(),
            json!({ "auth": format!("{KEY}:{}", "a".repeat(63)) }).to_string(),
            json!({ "auth": format!("{KEY}:{}g", "a".repeat(63)) }).to_string(),
            json!({ "auth": auth, "channel_data": {"user_id": "u"} }).to_string(),
        ];
        for body in &bad_bodies {
            let err = parse_channel_auth_response(KEY, "private-x", body).unwrap_err();
            assert_eq!(err.code(), "invalid_auth_response", "{body}");
            assert!(!err.to_string().contains("html"), "the body is not quoted");
        }
        let bad_presence = [
            json!({ "auth": auth }).to_string(),
            json!({ "auth": auth, "channel_data": null }).to_string(),
            json!({ "auth": auth, "channel_data": "not json" }).to_string(),
            json!({ "auth": auth, "channel_data": "{\"user_id\":\"\"}" }).to_string(),
            json!({ "auth": auth, "channel_data": "{\"user_id\":5}" }).to_string(),
        ];
        for body in &bad_presence {
            let err = parse_channel_auth_response(KEY, "presence-x", body).unwrap_err();
            assert_eq!(err.code(), "invalid_auth_response", "{body}");
        }
    }
}
