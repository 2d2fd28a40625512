//! Durable messages with a gap-free per-room `seq`, history pages and read
//! receipts.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use rusqlite::Connection;
use serde_json::{json, Value};

use domvia_realtime::chat::{validate_client_id, validate_text};
use domvia_realtime::protocol::Error as CoreError;

use crate::channels::room_channel;
use crate::error::ApiError;
use crate::extract::{
    opaque_object, path, query_integer, query_params, socket_id_header, Body, ClientIp, CurrentUser,
};
use crate::limits::Action;
use crate::store::messages::{self, Message, Page};
use crate::store::{e2ee, rooms};
use crate::{ids, Backend};

/// The largest ciphertext object, serialized as compact JSON, in bytes.
pub(crate) const MAX_CIPHERTEXT_BYTES: usize = 6 * 1024;

/// The default and largest history page.
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 100;

/// A send the core's checks refuse, answered with the core's code and
/// message: 413 for text over the limit, else 400.
fn refused_send(error: CoreError) -> ApiError {
    match error {
        CoreError::TextTooLarge { .. } => ApiError::too_large(error.code(), error.to_string()),
        _ => ApiError::bad_request(error.code(), error.to_string()),
    }
}

/// What a send request carries: plaintext or an opaque ciphertext object.
#[derive(Debug, Clone, PartialEq)]
enum Content {
    Text(String),
    Ciphertext(Value),
}

fn content(body: &Body) -> Result<Content, ApiError> {
    match (body.0.get("text"), body.0.get("ciphertext")) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "invalid_message",
            "unable to send the message; give either text or ciphertext, not both",
        )),
        (None, None) => Err(ApiError::bad_request(
            "invalid_message",
            "unable to send the message; it needs text or ciphertext",
        )),
        (Some(text), None) => {
            let Value::String(text) = text else {
                return Err(ApiError::bad_request(
                    "invalid_text",
                    "unable to send the message; text must be a string",
                ));
            };
            // The same checks as the SDK runs before it sends (1 to 4000
            // bytes, no control characters but tab and line breaks).
            validate_text(text).map_err(refused_send)?;
            Ok(Content::Text(text.clone()))
        }
        (None, Some(ciphertext)) => {
            opaque_object(
                Some(ciphertext),
                "ciphertext",
                MAX_CIPHERTEXT_BYTES,
                "invalid_ciphertext",
                "ciphertext_too_large",
            )?;
            Ok(Content::Ciphertext(ciphertext.clone()))
        }
    }
}

fn same_content(stored: &Message, content: &Content) -> bool {
    match content {
        Content::Text(text) => stored.text.as_deref() == Some(text.as_str()),
        Content::Ciphertext(value) => stored.ciphertext.as_ref() == Some(value),
    }
}

/// An envelope is accepted only in the room's current epoch (its plaintext
/// integer `epoch`), and only while that epoch covers the current member
/// devices: else 409 `epoch_stale`, with `current_epoch` and
/// `needs_new_epoch` (true: the current epoch predates a change of the
/// member devices, or there is none; false: the envelope's epoch is not the
/// current one).
fn check_epoch(conn: &Connection, room_id: &str, envelope: &Value) -> Result<(), ApiError> {
    let (current, covers) = e2ee::epoch_coverage(conn, room_id)?;
    let claimed = envelope.get("epoch").and_then(Value::as_i64);
    if covers && claimed == Some(current) {
        return Ok(());
    }
    let reason = if !covers {
        "the room's member devices changed since its current epoch; create a new epoch"
    } else {
        "the ciphertext is not in the room's current epoch"
    };
    Err(ApiError::conflict(
        "epoch_stale",
        format!("unable to send the message; {reason}"),
    )
    .with("current_epoch", current)
    .with("needs_new_epoch", !covers))
}

/// An encrypted room takes only ciphertext (400 `encryption_required`: a
/// client that forgot to encrypt must not leak the text into a room whose
/// members expect encryption), a plaintext room only text (400
/// `room_not_encrypted`: its members could not read it).
fn check_room_kind(encrypted: bool, content: &Content) -> Result<(), ApiError> {
    match (encrypted, content) {
        (true, Content::Text(_)) => Err(ApiError::bad_request(
            "encryption_required",
            "unable to send the message; the room is end-to-end encrypted, so it takes only ciphertext",
        )),
        (false, Content::Ciphertext(_)) => Err(ApiError::room_not_encrypted("send the message")),
        _ => Ok(()),
    }
}

/// `POST /api/rooms/{room_id}/messages` `{"client_id", "text" | "ciphertext"}`:
/// stores the message (201) and, in the same transaction, its
/// `message.created` event in the outbox. The same
/// `client_id` again returns the stored message (200), or 409 if the content
/// differs. A new ciphertext must be in a current epoch ([`check_epoch`]).
pub(crate) async fn send(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    room_id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    backend.check_rate(Action::Send, Some(&me.id), ip)?;
    let room_id = path(room_id)?;
    let client_id = body.string("client_id", "invalid_client_id")?.to_owned();
    validate_client_id(&client_id).map_err(refused_send)?;
    let content = content(&body)?;
    let message_id = ids::random_id("m_")?;
    let socket_id = socket_id_header(&headers);
    let (created, message) = backend
        .write(move |tx, outbox| {
            let room = rooms::member_room(tx, &room_id, &me.id)?;
            check_room_kind(room.encrypted, &content)?;
            let existing = messages::find_by_client_id(tx, &room_id, &me.id, &client_id)?;
            if let Some(existing) = existing {
                if same_content(&existing, &content) {
                    return Ok((false, existing));
                }
                return Err(ApiError::conflict(
                    "client_id_conflict",
                    "unable to send the message; this client_id was already used for different content",
                )
                .with("message_id", existing.message_id));
            }
            if let Content::Ciphertext(envelope) = &content {
                check_epoch(tx, &room_id, envelope)?;
            }
            let (text, ciphertext) = match content {
                Content::Text(text) => (Some(text), None),
                Content::Ciphertext(value) => (None, Some(value)),
            };
            let message = Message {
                message_id,
                seq: messages::latest_seq(tx, &room_id)? + 1,
                room_id,
                user_id: me.id,
                text,
                ciphertext,
                sent_at: ids::now_ms(),
                client_id,
            };
            messages::insert(tx, &message)?;
            let data = serde_json::to_value(&message).map_err(ApiError::internal)?;
            outbox.publish(
                tx,
                &room_channel(&message.room_id)?,
                "message.created",
                &data,
                socket_id.as_deref(),
            )?;
            Ok((true, message))
        })
        .await?;
    if !created {
        return Ok((StatusCode::OK, Json(message)));
    }
    Ok((StatusCode::CREATED, Json(message)))
}

/// `GET /api/rooms/{room_id}/messages?before=&after=&limit=`: a page of
/// messages, ascending by seq, and whether there are more in the direction
/// of travel.
pub(crate) async fn history(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    room_id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let room_id = path(room_id)?;
    let params = query_params(query.as_deref());
    let limit = query_integer(&params, "limit")?.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("unable to read the limit parameter; it must be 1 to {MAX_PAGE}"),
        ));
    }
    let page = match (
        query_integer(&params, "before")?,
        query_integer(&params, "after")?,
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "unable to read the history; give before or after, not both",
            ))
        }
        (Some(before), None) => Page::Before(before),
        (None, Some(after)) => Page::After(after),
        (None, None) => Page::Latest,
    };
    let limit = usize::try_from(limit).map_err(ApiError::internal)?;
    let (messages, has_more) = backend
        .read(move |tx| {
            rooms::member_room(tx, &room_id, &me.id)?;
            Ok(messages::page(tx, &room_id, page, limit)?)
        })
        .await?;
    Ok(Json(json!({ "messages": messages, "has_more": has_more })))
}

/// `POST /api/rooms/{room_id}/read` `{"seq"}`: moves my read position forward
/// (never back) and publishes `receipt.updated` when it moved. The event
/// carries the room's `latest_seq`, so a member whose connection missed a
/// `message.created` learns of it from the next receipt.
pub(crate) async fn mark_read(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    headers: HeaderMap,
    room_id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let room_id = path(room_id)?;
    let seq = body.integer("seq", "invalid_seq")?;
    if seq < 0 {
        return Err(ApiError::bad_request(
            "invalid_seq",
            "unable to mark the room read; seq must not be negative",
        ));
    }
    let socket_id = socket_id_header(&headers);
    let (last_read_seq, unread) = backend
        .write(move |tx, outbox| {
            rooms::member_room(tx, &room_id, &me.id)?;
            let latest = messages::latest_seq(tx, &room_id)?;
            if seq > latest {
                return Err(ApiError::bad_request(
                    "invalid_seq",
                    "unable to mark the room read; seq is past the room's latest message",
                )
                .with("latest_seq", latest));
            }
            // A member always has a read position; member_room checked that.
            let current = rooms::last_read_seq(tx, &room_id, &me.id)?
                .ok_or_else(|| ApiError::internal("a member has no read position"))?;
            if seq > current {
                rooms::set_last_read_seq(tx, &room_id, &me.id, seq)?;
                let event = json!({
                    "room_id": room_id,
                    "user_id": me.id,
                    "seq": seq,
                    "message_id": messages::message_id_at(tx, &room_id, seq)?,
                    "latest_seq": latest,
                });
                outbox.publish(
                    tx,
                    &room_channel(&room_id)?,
                    "receipt.updated",
                    &event,
                    socket_id.as_deref(),
                )?;
            }
            let last_read_seq = seq.max(current);
            let unread = messages::unread_count(tx, &room_id, &me.id, last_read_seq)?;
            Ok((last_read_seq, unread))
        })
        .await?;
    Ok(Json(
        json!({ "last_read_seq": last_read_seq, "unread_count": unread }),
    ))
}
