//! Rooms and membership: direct (two users, one room per pair and kind) and
//! group rooms, each with a private channel and a presence channel, and
//! either plaintext or end-to-end encrypted for life.

use std::collections::BTreeSet;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::{json, Value};

use domvia_realtime::protocol::build_chat_channel_name;

use super::e2ee::room_devices_changed;
use super::messages::{last_message, latest_seq, unread_count};
use super::session::clean_name;
use crate::error::ApiError;
use crate::extract::{path, socket_id_header, Body, CurrentUser};
use crate::{ids, Backend};

/// The longest group room name, in characters (after trimming).
const MAX_ROOM_NAME_CHARS: usize = 80;

/// The most member ids one request may list.
const MAX_MEMBER_IDS: usize = 100;

/// A room as stored.
#[derive(Debug, Clone)]
pub(crate) struct Room {
    pub id: String,
    pub kind: String,
    pub name: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    /// End-to-end encrypted: only ciphertext messages (fixed at creation).
    pub encrypted: bool,
}

const ROOM_COLUMNS: &str = "r.id, r.kind, r.name, r.created_by, r.created_at, r.encrypted";

fn room_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Room> {
    Ok(Room {
        id: row.get(0)?,
        kind: row.get(1)?,
        name: row.get(2)?,
        created_by: row.get(3)?,
        created_at: row.get(4)?,
        encrypted: row.get(5)?,
    })
}

fn find_room(conn: &Connection, room_id: &str) -> rusqlite::Result<Option<Room>> {
    conn.query_row(
        &format!("SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.id = ?1"),
        params![room_id],
        room_from_row,
    )
    .optional()
}

/// Whether `user_id` is a member of `room_id`.
pub(crate) fn is_member(conn: &Connection, room_id: &str, user_id: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM room_members WHERE room_id = ?1 AND user_id = ?2",
            params![room_id, user_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The room, if `user_id` is a member: 404 `room_not_found` if there is no
/// such room, 403 `not_a_member` if the user is not in it.
pub(crate) fn member_room(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
) -> Result<Room, ApiError> {
    let room = find_room(conn, room_id)?.ok_or_else(|| {
        ApiError::not_found(
            "room_not_found",
            "unable to find the room; there is no such room",
        )
    })?;
    if !is_member(conn, room_id, user_id)? {
        return Err(ApiError::forbidden(
            "not_a_member",
            "unable to access the room; you are not a member",
        ));
    }
    Ok(room)
}

/// The private channel of a room: `private-chat.room.{room_id}`.
pub(crate) fn room_channel(room_id: &str) -> Result<String, ApiError> {
    build_chat_channel_name(room_id, false).map_err(ApiError::internal)
}

/// The JSON of a room as `viewer` sees it.
pub(crate) fn room_view(conn: &Connection, room: &Room, viewer: &str) -> Result<Value, ApiError> {
    let mut statement = conn.prepare_cached(
        "SELECT u.id, u.name, m.joined_at, m.last_read_seq
         FROM room_members m JOIN users u ON u.id = m.user_id
         WHERE m.room_id = ?1 ORDER BY m.joined_at, u.id",
    )?;
    let members = statement
        .query_map(params![room.id], |row| {
            Ok(json!({
                "id": row.get::<_, String>(0)?,
                "name": row.get::<_, String>(1)?,
                "joined_at": row.get::<_, i64>(2)?,
                "last_read_seq": row.get::<_, i64>(3)?,
            }))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let last_read_seq: i64 = conn
        .query_row(
            "SELECT last_read_seq FROM room_members WHERE room_id = ?1 AND user_id = ?2",
            params![room.id, viewer],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or(0);
    Ok(json!({
        "room_id": room.id,
        "kind": room.kind,
        "name": room.name,
        "created_by": room.created_by,
        "created_at": room.created_at,
        "encrypted": room.encrypted,
        "channel_name": room_channel(&room.id)?,
        "presence_channel_name": build_chat_channel_name(&room.id, true).map_err(ApiError::internal)?,
        "members": members,
        "last_message": last_message(conn, &room.id)?,
        "latest_seq": latest_seq(conn, &room.id)?,
        "last_read_seq": last_read_seq,
        "unread_count": unread_count(conn, &room.id, viewer, last_read_seq)?,
    }))
}

fn user_exists(conn: &Connection, user_id: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM users WHERE id = ?1",
            params![user_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn unknown_user(user_id: &str) -> ApiError {
    ApiError::bad_request(
        "unknown_user",
        "unable to use the member ids; a user does not exist",
    )
    .with("user_id", user_id)
}

fn member_ids(body: &Body) -> Result<Vec<String>, ApiError> {
    let invalid = |reason: &str| {
        ApiError::bad_request(
            "invalid_member_ids",
            format!("unable to read member_ids; {reason}"),
        )
    };
    let Some(Value::Array(items)) = body.0.get("member_ids") else {
        return Err(invalid("it must be an array of user ids"));
    };
    if items.len() > MAX_MEMBER_IDS {
        return Err(invalid(&format!(
            "it lists more than {MAX_MEMBER_IDS} users"
        )));
    }
    items
        .iter()
        .map(|item| match item {
            Value::String(id) if !id.is_empty() => Ok(id.clone()),
            _ => Err(invalid("every item must be a non-empty string")),
        })
        .collect()
}

/// `POST /api/rooms`: a direct room with one other user (the existing one of
/// that pair and kind if any: 200) or a group room (201); `encrypted: true`
/// makes it end-to-end encrypted for life.
pub(crate) async fn create(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let kind = body.string("kind", "invalid_kind")?;
    let member_ids = member_ids(&body)?;
    let encrypted = body.optional_bool("encrypted", false, "invalid_encrypted")?;
    let room_id = ids::random_id("r_")?;
    match kind {
        "direct" => {
            let [other] = member_ids.as_slice() else {
                return Err(ApiError::bad_request(
                    "invalid_member_ids",
                    "unable to create a direct room; member_ids must hold exactly one other user",
                ));
            };
            if *other == me.id {
                return Err(ApiError::bad_request(
                    "invalid_member_ids",
                    "unable to create a direct room; the other member cannot be yourself",
                ));
            }
            let other = other.clone();
            let (status, view) = backend
                .db(move |conn| {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    if !user_exists(&tx, &other)? {
                        return Err(unknown_user(&other));
                    }
                    let (first, second) = if me.id < other {
                        (&me.id, &other)
                    } else {
                        (&other, &me.id)
                    };
                    // One plaintext and one encrypted direct room per pair.
                    let direct_key = if encrypted {
                        format!("{first}:{second}:e2ee")
                    } else {
                        format!("{first}:{second}")
                    };
                    let existing: Option<String> = tx
                        .query_row(
                            "SELECT id FROM rooms WHERE direct_key = ?1",
                            params![direct_key],
                            |row| row.get(0),
                        )
                        .optional()?;
                    let (status, id) = match existing {
                        Some(id) => (StatusCode::OK, id),
                        None => {
                            let now = ids::now_ms();
                            tx.execute(
                                "INSERT INTO rooms (id, kind, name, created_by, created_at, direct_key, encrypted)
                                 VALUES (?1, 'direct', NULL, ?2, ?3, ?4, ?5)",
                                params![room_id, me.id, now, direct_key, encrypted],
                            )?;
                            for user in [&me.id, &other] {
                                tx.execute(
                                    "INSERT INTO room_members (room_id, user_id, joined_at) VALUES (?1, ?2, ?3)",
                                    params![room_id, user, now],
                                )?;
                            }
                            (StatusCode::CREATED, room_id)
                        }
                    };
                    let room = find_room(&tx, &id)?
                        .ok_or_else(|| ApiError::internal("a direct room vanished"))?;
                    let view = room_view(&tx, &room, &me.id)?;
                    tx.commit()?;
                    Ok((status, view))
                })
                .await?;
            Ok((status, Json(view)))
        }
        "group" => {
            let name = clean_name(
                body.string("name", "invalid_room_name")?,
                MAX_ROOM_NAME_CHARS,
                "invalid_room_name",
                "room name",
            )?
            .to_owned();
            let mut members: BTreeSet<String> = member_ids.into_iter().collect();
            members.remove(&me.id);
            let view = backend
                .db(move |conn| {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    for user in &members {
                        if !user_exists(&tx, user)? {
                            return Err(unknown_user(user));
                        }
                    }
                    let now = ids::now_ms();
                    tx.execute(
                        "INSERT INTO rooms (id, kind, name, created_by, created_at, direct_key, encrypted)
                         VALUES (?1, 'group', ?2, ?3, ?4, NULL, ?5)",
                        params![room_id, name, me.id, now, encrypted],
                    )?;
                    for user in std::iter::once(&me.id).chain(&members) {
                        tx.execute(
                            "INSERT INTO room_members (room_id, user_id, joined_at) VALUES (?1, ?2, ?3)",
                            params![room_id, user, now],
                        )?;
                    }
                    let room = find_room(&tx, &room_id)?
                        .ok_or_else(|| ApiError::internal("a new room vanished"))?;
                    let view = room_view(&tx, &room, &me.id)?;
                    tx.commit()?;
                    Ok(view)
                })
                .await?;
            Ok((StatusCode::CREATED, Json(view)))
        }
        _ => Err(ApiError::bad_request(
            "invalid_kind",
            "unable to create a room; kind must be \"direct\" or \"group\"",
        )),
    }
}

/// `GET /api/rooms`: my rooms, most recently active first.
pub(crate) async fn list(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let rooms = backend
        .db(move |conn| {
            let tx = conn.transaction()?;
            let rooms = {
                let mut statement = tx.prepare(&format!(
                    "SELECT {ROOM_COLUMNS}
                     FROM rooms r JOIN room_members m ON m.room_id = r.id
                     WHERE m.user_id = ?1"
                ))?;
                let rooms = statement
                    .query_map(params![me.id], room_from_row)?
                    .collect::<Result<Vec<_>, _>>()?;
                rooms
            };
            let mut views = rooms
                .iter()
                .map(|room| room_view(&tx, room, &me.id))
                .collect::<Result<Vec<_>, _>>()?;
            views.sort_by_cached_key(|view| {
                let active = view
                    .pointer("/last_message/sent_at")
                    .or_else(|| view.get("created_at"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                let id = view
                    .get("room_id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                (std::cmp::Reverse(active), id)
            });
            Ok(views)
        })
        .await?;
    Ok(Json(json!({ "rooms": rooms })))
}

/// `GET /api/rooms/{room_id}`.
pub(crate) async fn show(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    room_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let room_id = path(room_id)?;
    let view = backend
        .db(move |conn| {
            let tx = conn.transaction()?;
            let room = member_room(&tx, &room_id, &me.id)?;
            room_view(&tx, &room, &me.id)
        })
        .await?;
    Ok(Json(view))
}

fn direct_room_is_fixed() -> ApiError {
    ApiError::forbidden(
        "direct_room",
        "unable to change the members; a direct room always has the same two members",
    )
}

/// `POST /api/rooms/{room_id}/members` `{"user_id"}`: any member of a group
/// room may add a user (201; 200 if already a member).
pub(crate) async fn add_member(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    headers: HeaderMap,
    room_id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let room_id = path(room_id)?;
    let user_id = body.string("user_id", "invalid_user_id")?.to_owned();
    let (added, view, room_id, user_id) = backend
        .db(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let room = member_room(&tx, &room_id, &me.id)?;
            if room.kind != "group" {
                return Err(direct_room_is_fixed());
            }
            if !user_exists(&tx, &user_id)? {
                return Err(unknown_user(&user_id));
            }
            let added = !is_member(&tx, &room.id, &user_id)?;
            if added {
                tx.execute(
                    "INSERT INTO room_members (room_id, user_id, joined_at) VALUES (?1, ?2, ?3)",
                    params![room.id, user_id, ids::now_ms()],
                )?;
                room_devices_changed(&tx, &room.id)?;
            }
            let view = room_view(&tx, &room, &me.id)?;
            tx.commit()?;
            Ok((added, view, room.id, user_id))
        })
        .await?;
    if !added {
        return Ok((StatusCode::OK, Json(view)));
    }
    let event = json!({ "room_id": room_id, "user_id": user_id });
    backend
        .publish(
            &room_channel(&room_id)?,
            "member.added",
            &event,
            socket_id_header(&headers).as_deref(),
        )
        .await;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `DELETE /api/rooms/{room_id}/members/{user_id}`: a member may remove
/// themself, the creator may remove anyone. Messages stay.
pub(crate) async fn remove_member(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    headers: HeaderMap,
    member: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let (room_id, user_id) = path(member)?;
    let (removed, room_id, user_id) = backend
        .db(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let room = member_room(&tx, &room_id, &me.id)?;
            if room.kind != "group" {
                return Err(direct_room_is_fixed());
            }
            if user_id != me.id && room.created_by != me.id {
                return Err(ApiError::forbidden(
                    "not_room_creator",
                    "unable to remove the member; only the room's creator may remove others",
                ));
            }
            let removed = tx.execute(
                "DELETE FROM room_members WHERE room_id = ?1 AND user_id = ?2",
                params![room.id, user_id],
            )? > 0;
            if removed {
                room_devices_changed(&tx, &room.id)?;
            }
            tx.commit()?;
            Ok((removed, room.id, user_id))
        })
        .await?;
    let event = json!({ "room_id": room_id, "user_id": user_id });
    if removed {
        backend
            .publish(
                &room_channel(&room_id)?,
                "member.removed",
                &event,
                socket_id_header(&headers).as_deref(),
            )
            .await;
    }
    Ok(Json(
        json!({ "room_id": room_id, "user_id": user_id, "removed": removed }),
    ))
}
