//! Rooms and membership: direct (two users, one room per pair and kind) and
//! group rooms, each with a private channel and a presence channel, and
//! either plaintext or end-to-end encrypted for life.

use std::collections::BTreeSet;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use rusqlite::Connection;
use serde_json::{json, Value};

use crate::channels::{room_channel, room_presence_channel};
use crate::error::ApiError;
use crate::extract::{path, socket_id_header, Body, ClientIp, CurrentUser};
use crate::limits::Action;
use crate::names::clean_name;
use crate::store::rooms::{self, Room};
use crate::store::{e2ee, messages, users};
use crate::{ids, Backend};

/// The longest group room name, in characters (after trimming).
const MAX_ROOM_NAME_CHARS: usize = 80;

/// The most member ids one request may list.
const MAX_MEMBER_IDS: usize = 100;

/// The JSON of a room as `viewer` sees it.
fn room_view(conn: &Connection, room: &Room, viewer: &str) -> Result<Value, ApiError> {
    let last_read_seq = rooms::last_read_seq(conn, &room.id, viewer)?.unwrap_or(0);
    Ok(json!({
        "room_id": room.id,
        "kind": room.kind,
        "name": room.name,
        "created_by": room.created_by,
        "created_at": room.created_at,
        "encrypted": room.encrypted,
        "channel_name": room_channel(&room.id)?,
        "presence_channel_name": room_presence_channel(&room.id)?,
        "members": rooms::members(conn, &room.id)?,
        "last_message": messages::last_message(conn, &room.id)?,
        "latest_seq": messages::latest_seq(conn, &room.id)?,
        "last_read_seq": last_read_seq,
        "unread_count": messages::unread_count(conn, &room.id, viewer, last_read_seq)?,
    }))
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
    ClientIp(ip): ClientIp,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    backend.check_rate(Action::CreateRoom, Some(&me.id), ip)?;
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
                .write(move |tx, _| {
                    if !users::exists(tx, &other)? {
                        return Err(unknown_user(&other));
                    }
                    let direct_key = rooms::direct_key(&me.id, &other, encrypted);
                    let (status, room) = match rooms::find_direct(tx, &direct_key)? {
                        Some(id) => {
                            let room = rooms::find(tx, &id)?
                                .ok_or_else(|| ApiError::internal("a direct room vanished"))?;
                            (StatusCode::OK, room)
                        }
                        None => {
                            let room = Room {
                                id: room_id,
                                kind: "direct".into(),
                                name: None,
                                created_by: me.id.clone(),
                                created_at: ids::now_ms(),
                                encrypted,
                            };
                            rooms::insert(tx, &room, Some(&direct_key), [&*me.id, &*other])?;
                            (StatusCode::CREATED, room)
                        }
                    };
                    Ok((status, room_view(tx, &room, &me.id)?))
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
            )?;
            let mut members: BTreeSet<String> = member_ids.into_iter().collect();
            members.remove(&me.id);
            let view = backend
                .write(move |tx, _| {
                    for user in &members {
                        if !users::exists(tx, user)? {
                            return Err(unknown_user(user));
                        }
                    }
                    let room = Room {
                        id: room_id,
                        kind: "group".into(),
                        name: Some(name),
                        created_by: me.id.clone(),
                        created_at: ids::now_ms(),
                        encrypted,
                    };
                    let creator_first = std::iter::once(&me.id).chain(&members);
                    rooms::insert(tx, &room, None, creator_first.map(String::as_str))?;
                    room_view(tx, &room, &me.id)
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
        .read(move |tx| {
            let rooms = rooms::of_member(tx, &me.id)?;
            let mut views = rooms
                .iter()
                .map(|room| room_view(tx, room, &me.id))
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
        .read(move |tx| {
            let room = rooms::member_room(tx, &room_id, &me.id)?;
            room_view(tx, &room, &me.id)
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
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    room_id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    backend.check_rate(Action::AddMember, Some(&me.id), ip)?;
    let room_id = path(room_id)?;
    let user_id = body.string("user_id", "invalid_user_id")?.to_owned();
    let socket_id = socket_id_header(&headers);
    let (added, view) = backend
        .write(move |tx, outbox| {
            let room = rooms::member_room(tx, &room_id, &me.id)?;
            if room.kind != "group" {
                return Err(direct_room_is_fixed());
            }
            if !users::exists(tx, &user_id)? {
                return Err(unknown_user(&user_id));
            }
            let added = !rooms::is_member(tx, &room.id, &user_id)?;
            if added {
                rooms::add_member(tx, &room.id, &user_id, ids::now_ms())?;
                e2ee::room_devices_changed(tx, &room.id)?;
                outbox.publish(
                    tx,
                    &room_channel(&room.id)?,
                    "member.added",
                    &json!({ "room_id": room.id, "user_id": user_id }),
                    socket_id.as_deref(),
                )?;
            }
            let view = room_view(tx, &room, &me.id)?;
            Ok((added, view))
        })
        .await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
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
    let socket_id = socket_id_header(&headers);
    let (removed, room_id, user_id) = backend
        .write(move |tx, outbox| {
            let room = rooms::member_room(tx, &room_id, &me.id)?;
            if room.kind != "group" {
                return Err(direct_room_is_fixed());
            }
            if user_id != me.id && room.created_by != me.id {
                return Err(ApiError::forbidden(
                    "not_room_creator",
                    "unable to remove the member; only the room's creator may remove others",
                ));
            }
            let removed = rooms::remove_member(tx, &room.id, &user_id)?;
            if removed {
                e2ee::room_devices_changed(tx, &room.id)?;
                outbox.publish(
                    tx,
                    &room_channel(&room.id)?,
                    "member.removed",
                    &json!({ "room_id": room.id, "user_id": user_id }),
                    socket_id.as_deref(),
                )?;
                // The removed user's open sockets are still subscribed to
                // the room's channels: close them (after the event above), so
                // their clients reconnect and are refused the room.
                outbox.terminate_connections(tx, &user_id)?;
            }
            Ok((removed, room.id, user_id))
        })
        .await?;
    Ok(Json(
        json!({ "room_id": room_id, "user_id": user_id, "removed": removed }),
    ))
}
