//! Durable messages with a gap-free per-room `seq`, history pages and read
//! receipts.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde::Serialize;
use serde_json::{json, Value};

use super::e2ee::epoch_coverage;
use super::rooms::{member_room, room_channel};
use crate::error::ApiError;
use crate::extract::{
    opaque_object, path, query_integer, query_params, socket_id_header, Body, CurrentUser,
};
use crate::{ids, Backend};

/// The longest plaintext message, in UTF-8 bytes.
pub(crate) const MAX_TEXT_BYTES: usize = 4000;

/// The largest ciphertext object, serialized as compact JSON, in bytes.
pub(crate) const MAX_CIPHERTEXT_BYTES: usize = 6 * 1024;

/// The default and largest history page.
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 100;

/// A stored message, as the API and the `message.created` event show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Message {
    pub message_id: String,
    pub room_id: String,
    pub seq: i64,
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ciphertext: Option<Value>,
    pub sent_at: i64,
    pub client_id: String,
}

const MESSAGE_COLUMNS: &str =
    "message_id, room_id, seq, sender_id, text, ciphertext, sent_at, client_id";

fn message_from_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    let ciphertext: Option<String> = row.get(5)?;
    Ok(Message {
        message_id: row.get(0)?,
        room_id: row.get(1)?,
        seq: row.get(2)?,
        user_id: row.get(3)?,
        text: row.get(4)?,
        // Stored by us from a parsed object, so it parses back; a damaged row
        // shows as null rather than failing the whole page.
        ciphertext: ciphertext.map(|text| serde_json::from_str(&text).unwrap_or(Value::Null)),
        sent_at: row.get(6)?,
        client_id: row.get(7)?,
    })
}

/// The highest `seq` in a room (0 when it has no messages).
pub(crate) fn latest_seq(conn: &Connection, room_id: &str) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE room_id = ?1",
        params![room_id],
        |row| row.get(0),
    )
}

/// The newest message of a room, if any.
pub(crate) fn last_message(conn: &Connection, room_id: &str) -> rusqlite::Result<Option<Message>> {
    conn.query_row(
        &format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = ?1 ORDER BY seq DESC LIMIT 1"
        ),
        params![room_id],
        message_from_row,
    )
    .optional()
}

/// Messages after `last_read_seq` that `user_id` did not send.
pub(crate) fn unread_count(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
    last_read_seq: i64,
) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COUNT(*) FROM messages WHERE room_id = ?1 AND seq > ?2 AND sender_id <> ?3",
        params![room_id, last_read_seq, user_id],
        |row| row.get(0),
    )
}

/// What a send request carries: plaintext or an opaque ciphertext object.
#[derive(Debug, Clone, PartialEq)]
enum Content {
    Text(String),
    Ciphertext(Value, String),
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
            if text.len() > MAX_TEXT_BYTES {
                return Err(ApiError::too_large(
                    "text_too_large",
                    format!(
                        "unable to send the message; its text is {} bytes, more than {MAX_TEXT_BYTES}",
                        text.len()
                    ),
                ));
            }
            if text.is_empty() {
                return Err(ApiError::bad_request(
                    "invalid_text",
                    "unable to send the message; its text is empty",
                ));
            }
            // Control characters other than tab and line breaks have no place
            // in chat text, and would blow up the escaped size of the event.
            if text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
            {
                return Err(ApiError::bad_request(
                    "invalid_text",
                    "unable to send the message; its text contains control characters",
                ));
            }
            Ok(Content::Text(text.clone()))
        }
        (None, Some(ciphertext)) => {
            let serialized = opaque_object(
                Some(ciphertext),
                "ciphertext",
                MAX_CIPHERTEXT_BYTES,
                "invalid_ciphertext",
                "ciphertext_too_large",
            )?;
            Ok(Content::Ciphertext(ciphertext.clone(), serialized))
        }
    }
}

fn same_content(stored: &Message, content: &Content) -> bool {
    match content {
        Content::Text(text) => stored.text.as_deref() == Some(text.as_str()),
        Content::Ciphertext(value, _) => stored.ciphertext.as_ref() == Some(value),
    }
}

/// An envelope is accepted only in the room's current epoch (its plaintext
/// integer `epoch`), and only while that epoch covers the current member
/// devices: else 409 `epoch_stale`, with `current_epoch` and
/// `needs_new_epoch` (true: the current epoch predates a change of the
/// member devices, or there is none; false: the envelope's epoch is not the
/// current one).
fn check_epoch(conn: &Connection, room_id: &str, envelope: &Value) -> Result<(), ApiError> {
    let (current, covers) = epoch_coverage(conn, room_id)?;
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
        (false, Content::Ciphertext(..)) => Err(room_not_encrypted("send the message")),
        _ => Ok(()),
    }
}

/// 400 `room_not_encrypted`: the room is plaintext, so it takes no
/// ciphertext and has no epochs.
pub(crate) fn room_not_encrypted(action: &str) -> ApiError {
    ApiError::bad_request(
        "room_not_encrypted",
        format!("unable to {action}; the room is not end-to-end encrypted"),
    )
}

/// `POST /api/rooms/{room_id}/messages` `{"client_id", "text" | "ciphertext"}`:
/// stores the message (201), then publishes `message.created`. The same
/// `client_id` again returns the stored message (200), or 409 if the content
/// differs. A new ciphertext must be in a current epoch ([`check_epoch`]).
pub(crate) async fn send(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    headers: HeaderMap,
    room_id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let room_id = path(room_id)?;
    let client_id = body.string("client_id", "invalid_client_id")?.to_owned();
    if !ids::is_token_id(&client_id) {
        return Err(ApiError::bad_request(
            "invalid_client_id",
            "unable to send the message; client_id must be 1 to 64 characters of [A-Za-z0-9_-]",
        ));
    }
    let content = content(&body)?;
    let message_id = ids::random_id("m_")?;
    let (created, message) = backend
        .db(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let room = member_room(&tx, &room_id, &me.id)?;
            check_room_kind(room.encrypted, &content)?;
            let existing = tx
                .query_row(
                    &format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages
                         WHERE room_id = ?1 AND sender_id = ?2 AND client_id = ?3"
                    ),
                    params![room_id, me.id, client_id],
                    message_from_row,
                )
                .optional()?;
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
            if let Content::Ciphertext(envelope, _) = &content {
                check_epoch(&tx, &room_id, envelope)?;
            }
            let seq = latest_seq(&tx, &room_id)? + 1;
            let sent_at = ids::now_ms();
            let (text, ciphertext) = match &content {
                Content::Text(text) => (Some(text.as_str()), None),
                Content::Ciphertext(_, serialized) => (None, Some(serialized.as_str())),
            };
            tx.execute(
                "INSERT INTO messages (room_id, seq, message_id, sender_id, client_id, text, ciphertext, sent_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![room_id, seq, message_id, me.id, client_id, text, ciphertext, sent_at],
            )?;
            tx.commit()?;
            let (text, ciphertext) = match content {
                Content::Text(text) => (Some(text), None),
                Content::Ciphertext(value, _) => (None, Some(value)),
            };
            Ok((
                true,
                Message {
                    message_id,
                    room_id,
                    seq,
                    user_id: me.id,
                    text,
                    ciphertext,
                    sent_at,
                    client_id,
                },
            ))
        })
        .await?;
    if !created {
        return Ok((StatusCode::OK, Json(message)));
    }
    let data = serde_json::to_value(&message).map_err(ApiError::internal)?;
    backend
        .publish(
            &room_channel(&message.room_id)?,
            "message.created",
            &data,
            socket_id_header(&headers).as_deref(),
        )
        .await;
    Ok((StatusCode::CREATED, Json(message)))
}

/// Which page of history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Latest,
    Before(i64),
    After(i64),
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
    let (messages, has_more) = backend
        .db(move |conn| {
            let tx = conn.transaction()?;
            member_room(&tx, &room_id, &me.id)?;
            let (condition, order, cursor) = match page {
                Page::Latest => ("", "DESC", 0),
                Page::Before(seq) => ("AND seq < ?2", "DESC", seq),
                Page::After(seq) => ("AND seq > ?2", "ASC", seq),
            };
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = ?1 {condition}
                 ORDER BY seq {order} LIMIT ?3"
            );
            let mut statement = tx.prepare(&sql)?;
            // One more than asked tells whether there is more.
            let rows = statement.query_map(params![room_id, cursor, limit + 1], message_from_row);
            // ?2 is unused for the latest page; SQLite binds it anyway.
            let mut messages = rows?.collect::<Result<Vec<_>, _>>()?;
            let has_more = messages.len() as i64 > limit;
            messages.truncate(limit as usize);
            if order == "DESC" {
                messages.reverse();
            }
            Ok((messages, has_more))
        })
        .await?;
    Ok(Json(json!({ "messages": messages, "has_more": has_more })))
}

/// `POST /api/rooms/{room_id}/read` `{"seq"}`: moves my read position forward
/// (never back) and publishes `receipt.updated` when it moved.
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
    let user_id = me.id.clone();
    let (last_read_seq, unread, advanced) = backend
        .db(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            member_room(&tx, &room_id, &me.id)?;
            let latest = latest_seq(&tx, &room_id)?;
            if seq > latest {
                return Err(ApiError::bad_request(
                    "invalid_seq",
                    "unable to mark the room read; seq is past the room's latest message",
                )
                .with("latest_seq", latest));
            }
            let current: i64 = tx.query_row(
                "SELECT last_read_seq FROM room_members WHERE room_id = ?1 AND user_id = ?2",
                params![room_id, me.id],
                |row| row.get(0),
            )?;
            let advanced = if seq > current {
                tx.execute(
                    "UPDATE room_members SET last_read_seq = ?3 WHERE room_id = ?1 AND user_id = ?2",
                    params![room_id, me.id, seq],
                )?;
                let message_id: String = tx.query_row(
                    "SELECT message_id FROM messages WHERE room_id = ?1 AND seq = ?2",
                    params![room_id, seq],
                    |row| row.get(0),
                )?;
                Some((room_id.clone(), message_id))
            } else {
                None
            };
            let last_read_seq = seq.max(current);
            let unread = unread_count(&tx, &room_id, &me.id, last_read_seq)?;
            tx.commit()?;
            Ok((last_read_seq, unread, advanced))
        })
        .await?;
    if let Some((room_id, message_id)) = advanced {
        let event = json!({
            "room_id": room_id,
            "user_id": user_id,
            "seq": last_read_seq,
            "message_id": message_id,
        });
        backend
            .publish(
                &room_channel(&room_id)?,
                "receipt.updated",
                &event,
                socket_id_header(&headers).as_deref(),
            )
            .await;
    }
    Ok(Json(
        json!({ "last_read_seq": last_read_seq, "unread_count": unread }),
    ))
}
