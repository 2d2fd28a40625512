//! End-to-end encryption storage: device records, room epochs and key
//! shares. All opaque JSON objects: this server checks size, ownership and
//! membership, never content.

use std::collections::BTreeSet;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde::Serialize;
use serde_json::{json, Value};

use super::messages::room_not_encrypted;
use super::rooms::{member_room, room_channel};
use crate::error::ApiError;
use crate::extract::{opaque_object, path, query_params, socket_id_header, Body, CurrentUser};
use crate::{ids, Backend};

/// The largest device record and key share, serialized, in bytes.
const MAX_RECORD_BYTES: usize = 4 * 1024;
const MAX_SHARE_BYTES: usize = 4 * 1024;

/// The most shares one epoch may carry.
const MAX_SHARES: usize = 1000;

/// A device record, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Device {
    device_id: String,
    user_id: String,
    record: Value,
    updated_at: i64,
}

const DEVICE_COLUMNS: &str = "d.device_id, d.user_id, d.record, d.updated_at";

fn device_from_row(row: &Row<'_>) -> rusqlite::Result<Device> {
    let record: String = row.get(2)?;
    Ok(Device {
        device_id: row.get(0)?,
        user_id: row.get(1)?,
        record: serde_json::from_str(&record).unwrap_or(Value::Null),
        updated_at: row.get(3)?,
    })
}

fn check_device_id(device_id: &str) -> Result<(), ApiError> {
    if ids::is_token_id(device_id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_device_id",
            "unable to use the device id; it must be 1 to 64 characters of [A-Za-z0-9_-]",
        ))
    }
}

fn not_your_device() -> ApiError {
    ApiError::forbidden(
        "device_not_owned",
        "unable to use the device; it belongs to another user or does not exist",
    )
}

fn device_owner(conn: &Connection, device_id: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT user_id FROM devices WHERE device_id = ?1",
        params![device_id],
        |row| row.get(0),
    )
    .optional()
}

/// Notes that the member devices of `room_id` changed (a member added or
/// removed): its current epoch no longer covers them. Only encrypted rooms
/// have epochs, so only they keep the version.
pub(crate) fn room_devices_changed(conn: &Connection, room_id: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE rooms SET member_devices_version = member_devices_version + 1
         WHERE id = ?1 AND encrypted = 1",
        params![room_id],
    )?;
    Ok(())
}

/// Notes that a device of `user_id` was created or changed: the member
/// devices of every encrypted room of theirs changed.
fn user_devices_changed(conn: &Connection, user_id: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE rooms SET member_devices_version = member_devices_version + 1
         WHERE encrypted = 1 AND id IN (SELECT room_id FROM room_members WHERE user_id = ?1)",
        params![user_id],
    )?;
    Ok(())
}

/// A room's current epoch (0 before the first) and whether it was created
/// for the room's current member devices (false when there is none, or it
/// predates a change of them, or it was created before schema version 2).
pub(crate) fn epoch_coverage(conn: &Connection, room_id: &str) -> rusqlite::Result<(i64, bool)> {
    let current = current_epoch_of(conn, room_id)?;
    if current == 0 {
        return Ok((0, false));
    }
    let covers: bool = conn.query_row(
        "SELECT e.member_devices_version IS r.member_devices_version
         FROM epochs e JOIN rooms r ON r.id = e.room_id
         WHERE e.room_id = ?1 AND e.epoch = ?2",
        params![room_id, current],
        |row| row.get(0),
    )?;
    Ok((current, covers))
}

/// `PUT /api/devices/{device_id}` `{"record"}`: creates (201) or replaces (200)
/// one of my device records.
pub(crate) async fn put_device(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    device_id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    let device_id = path(device_id)?;
    check_device_id(&device_id)?;
    let record = opaque_object(
        body.0.get("record"),
        "record",
        MAX_RECORD_BYTES,
        "invalid_record",
        "record_too_large",
    )?;
    let record_value = body.0.get("record").cloned().unwrap_or_default();
    let (created, device) = backend
        .db(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let stored: Option<(String, String)> = tx
                .query_row(
                    "SELECT user_id, record FROM devices WHERE device_id = ?1",
                    params![device_id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            // Both texts are serde_json's compact form of a value (object
            // keys sorted), so equal texts are equal values.
            let (created, changed) = match stored {
                Some((owner, _)) if owner != me.id => return Err(not_your_device()),
                Some((_, previous)) => (false, previous != record),
                None => (true, true),
            };
            let now = ids::now_ms();
            tx.execute(
                "INSERT INTO devices (device_id, user_id, record, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (device_id) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at",
                params![device_id, me.id, record, now],
            )?;
            // Registering the same record again (every page load does) is no change.
            if changed {
                user_devices_changed(&tx, &me.id)?;
            }
            tx.commit()?;
            Ok((
                created,
                Device {
                    device_id,
                    user_id: me.id,
                    record: record_value,
                    updated_at: now,
                },
            ))
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(device)))
}

/// `GET /api/users/{user_id}/devices`: my devices, or those of a user who
/// shares a room with me (403 `forbidden` otherwise, also for unknown users).
pub(crate) async fn user_devices(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    user_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<Device>>, ApiError> {
    let user_id = path(user_id)?;
    let devices = backend
        .db(move |conn| {
            let tx = conn.transaction()?;
            let visible = user_id == me.id
                || tx
                    .query_row(
                        "SELECT 1 FROM room_members a JOIN room_members b ON a.room_id = b.room_id
                         WHERE a.user_id = ?1 AND b.user_id = ?2 LIMIT 1",
                        params![me.id, user_id],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some();
            if !visible {
                return Err(ApiError::forbidden(
                    "forbidden",
                    "unable to list the user's devices; you share no room with them",
                ));
            }
            let mut statement = tx.prepare(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.user_id = ?1 ORDER BY d.device_id"
            ))?;
            let devices = statement
                .query_map(params![user_id], device_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(devices)
        })
        .await?;
    Ok(Json(devices))
}

/// The devices of a room's current members, by user then device id.
fn member_devices(conn: &Connection, room_id: &str) -> rusqlite::Result<Vec<Device>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices d JOIN room_members m ON m.user_id = d.user_id
         WHERE m.room_id = ?1 ORDER BY d.user_id, d.device_id"
    ))?;
    let devices = statement
        .query_map(params![room_id], device_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(devices)
}

/// `GET /api/rooms/{room_id}/devices`: every member's devices.
pub(crate) async fn room_devices(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    room_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<Device>>, ApiError> {
    let room_id = path(room_id)?;
    let devices = backend
        .db(move |conn| {
            let tx = conn.transaction()?;
            member_room(&tx, &room_id, &me.id)?;
            Ok(member_devices(&tx, &room_id)?)
        })
        .await?;
    Ok(Json(devices))
}

fn parse_epoch(epoch: &str) -> Result<i64, ApiError> {
    match epoch.parse::<i64>() {
        Ok(epoch) if epoch >= 1 => Ok(epoch),
        _ => Err(ApiError::bad_request(
            "invalid_epoch",
            "unable to read the epoch; it must be an integer >= 1",
        )),
    }
}

/// `GET /api/rooms/{room_id}/epochs/{epoch}/devices`: the member devices the
/// epoch was created for, as they were then (by user then device id).
pub(crate) async fn epoch_devices(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    room_epoch: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Vec<Device>>, ApiError> {
    let (room_id, epoch) = path(room_epoch)?;
    let epoch = parse_epoch(&epoch)?;
    let devices = backend
        .db(move |conn| {
            let tx = conn.transaction()?;
            member_room(&tx, &room_id, &me.id)?;
            let recorded: Option<bool> = tx
                .query_row(
                    "SELECT devices_recorded FROM epochs WHERE room_id = ?1 AND epoch = ?2",
                    params![room_id, epoch],
                    |row| row.get(0),
                )
                .optional()?;
            match recorded {
                None => {
                    return Err(ApiError::not_found(
                        "epoch_not_found",
                        "unable to find the epoch; the room has no such epoch",
                    ))
                }
                Some(false) => return Err(ApiError::not_found(
                    "epoch_devices_unknown",
                    "unable to list the epoch's devices; it was created before they were recorded",
                )),
                Some(true) => {}
            }
            let mut statement = tx.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM epoch_devices d
                 WHERE d.room_id = ?1 AND d.epoch = ?2 ORDER BY d.user_id, d.device_id"
            ))?;
            let devices = statement
                .query_map(params![room_id, epoch], device_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(devices)
        })
        .await?;
    Ok(Json(devices))
}

fn current_epoch_of(conn: &Connection, room_id: &str) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COALESCE(MAX(epoch), 0) FROM epochs WHERE room_id = ?1",
        params![room_id],
        |row| row.get(0),
    )
}

/// `GET /api/rooms/{room_id}/epoch`: `{"epoch"}`, 0 before the first.
pub(crate) async fn current_epoch(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    room_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let room_id = path(room_id)?;
    let epoch = backend
        .db(move |conn| {
            let tx = conn.transaction()?;
            member_room(&tx, &room_id, &me.id)?;
            Ok(current_epoch_of(&tx, &room_id)?)
        })
        .await?;
    Ok(Json(json!({ "epoch": epoch })))
}

fn read_shares(body: &Body) -> Result<Vec<(String, String)>, ApiError> {
    let invalid = |reason: &str| {
        ApiError::bad_request("invalid_shares", format!("unable to read shares; {reason}"))
    };
    let Some(Value::Array(items)) = body.0.get("shares") else {
        return Err(invalid("it must be an array of {\"device_id\", \"share\"}"));
    };
    if items.len() > MAX_SHARES {
        return Err(invalid(&format!("there are more than {MAX_SHARES}")));
    }
    let mut seen = BTreeSet::new();
    let mut shares = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(item) = item else {
            return Err(invalid("every item must be an object"));
        };
        let Some(Value::String(device_id)) = item.get("device_id") else {
            return Err(invalid("every item needs a string device_id"));
        };
        check_device_id(device_id)?;
        if !seen.insert(device_id.clone()) {
            return Err(invalid("a device id appears twice").with("device_id", device_id.clone()));
        }
        let share = opaque_object(
            item.get("share"),
            "share",
            MAX_SHARE_BYTES,
            "invalid_shares",
            "share_too_large",
        )?;
        shares.push((device_id.clone(), share));
    }
    Ok(shares)
}

/// `POST /api/rooms/{room_id}/epochs` `{"epoch", "shares"}`: compare-and-set.
/// Accepted (201) only when `epoch` is the current epoch + 1 (else 409
/// `epoch_conflict`) and the shares are for exactly the current member devices
/// (else 409 `shares_incomplete`); then publishes `epoch.created`.
pub(crate) async fn create_epoch(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    headers: HeaderMap,
    room_id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let room_id = path(room_id)?;
    let epoch = body.integer("epoch", "invalid_epoch")?;
    if epoch < 1 {
        return Err(ApiError::bad_request(
            "invalid_epoch",
            "unable to create the epoch; epochs start at 1",
        ));
    }
    let shares = read_shares(&body)?;
    let created = backend
        .db(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !member_room(&tx, &room_id, &me.id)?.encrypted {
                return Err(room_not_encrypted("create the epoch"));
            }
            let current = current_epoch_of(&tx, &room_id)?;
            if epoch != current + 1 {
                return Err(ApiError::conflict(
                    "epoch_conflict",
                    "unable to create the epoch; it must be exactly the current epoch + 1",
                )
                .with("current_epoch", current));
            }
            let expected: BTreeSet<String> = member_devices(&tx, &room_id)?
                .into_iter()
                .map(|device| device.device_id)
                .collect();
            let given: BTreeSet<String> = shares.iter().map(|(id, _)| id.clone()).collect();
            let missing: Vec<&String> = expected.difference(&given).collect();
            let unexpected: Vec<&String> = given.difference(&expected).collect();
            if !missing.is_empty() || !unexpected.is_empty() {
                return Err(ApiError::conflict(
                    "shares_incomplete",
                    "unable to create the epoch; the shares must be for exactly the current members' devices",
                )
                .with("missing_device_ids", json!(missing))
                .with("unexpected_device_ids", json!(unexpected)));
            }
            let now = ids::now_ms();
            tx.execute(
                "INSERT INTO epochs (room_id, epoch, created_by, created_at, member_devices_version, devices_recorded)
                 SELECT ?1, ?2, ?3, ?4, member_devices_version, 1 FROM rooms WHERE id = ?1",
                params![room_id, epoch, me.id, now],
            )?;
            // The member devices the epoch covers, as they are now (exactly the shares' devices).
            tx.execute(
                "INSERT INTO epoch_devices (room_id, epoch, device_id, user_id, record, updated_at)
                 SELECT ?1, ?2, d.device_id, d.user_id, d.record, d.updated_at
                 FROM devices d JOIN room_members m ON m.user_id = d.user_id
                 WHERE m.room_id = ?1",
                params![room_id, epoch],
            )?;
            {
                let mut insert = tx.prepare(
                    "INSERT INTO key_shares (room_id, epoch, device_id, share) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (device_id, share) in &shares {
                    insert.execute(params![room_id, epoch, device_id, share])?;
                }
            }
            tx.commit()?;
            Ok(json!({
                "room_id": room_id,
                "epoch": epoch,
                "created_by": me.id,
                "created_at": now,
            }))
        })
        .await?;
    let room_id = created
        .get("room_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let event = json!({ "room_id": room_id, "epoch": epoch });
    backend
        .publish(
            &room_channel(room_id)?,
            "epoch.created",
            &event,
            socket_id_header(&headers).as_deref(),
        )
        .await;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `GET /api/rooms/{room_id}/epochs/{epoch}/shares?device_id=`: the share of
/// one of my devices, for a member.
pub(crate) async fn key_share(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    room_epoch: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (room_id, epoch) = path(room_epoch)?;
    let epoch = parse_epoch(&epoch)?;
    let params = query_params(query.as_deref());
    let device_id = params
        .get("device_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    check_device_id(&device_id)?;
    let share = backend
        .db(move |conn| {
            let tx = conn.transaction()?;
            member_room(&tx, &room_id, &me.id)?;
            if device_owner(&tx, &device_id)?.as_deref() != Some(me.id.as_str()) {
                return Err(not_your_device());
            }
            let share: Option<String> = tx
                .query_row(
                    "SELECT share FROM key_shares WHERE room_id = ?1 AND epoch = ?2 AND device_id = ?3",
                    params![room_id, epoch, device_id],
                    |row| row.get(0),
                )
                .optional()?;
            let share = share.ok_or_else(|| {
                ApiError::not_found(
                    "share_not_found",
                    "unable to find a key share for this device in this epoch",
                )
            })?;
            Ok(json!({
                "room_id": room_id,
                "epoch": epoch,
                "device_id": device_id,
                "share": serde_json::from_str::<Value>(&share).unwrap_or(Value::Null),
            }))
        })
        .await?;
    Ok(Json(share))
}
