//! End-to-end encryption storage: device records, room epochs and key
//! shares. All opaque JSON objects: this server checks size, ownership and
//! membership, never content.

use std::collections::BTreeSet;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use crate::channels::room_channel;
use crate::error::ApiError;
use crate::extract::{opaque_object, path, query_params, socket_id_header, Body, CurrentUser};
use crate::limits::Action;
use crate::store::e2ee::{self, Device};
use crate::store::rooms;
use crate::{ids, Backend};

/// The largest device record and key share, serialized, in bytes.
const MAX_RECORD_BYTES: usize = 4 * 1024;
const MAX_SHARE_BYTES: usize = 4 * 1024;

/// The most shares one epoch may carry.
const MAX_SHARES: usize = 1000;

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

/// `PUT /api/devices/{device_id}` `{"record"}`: creates (201) or replaces (200)
/// one of my device records.
pub(crate) async fn put_device(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    device_id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
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
    let limiter = backend.clone();
    let max_devices = backend.limits().devices_per_user.max(1);
    let (created, device, evicted) = backend
        .write(move |tx, _| {
            let stored = e2ee::find_device_record(tx, &device_id)?;
            // Both texts are serde_json's compact form of a value (object
            // keys sorted), so equal texts are equal values.
            let (created, changed) = match stored {
                Some((owner, _)) if owner != me.id => return Err(not_your_device()),
                Some((_, previous)) => (false, previous != record),
                None => (true, true),
            };
            // Registering the same record again (every page load does) is no
            // change: it costs nothing and only refreshes `updated_at`.
            if changed {
                limiter.check_rate(Action::DeviceChange, Some(&me.id), None)?;
            }
            // A new device beyond the cap replaces the user's least recently
            // registered ones, so one member cannot grow the shares every
            // epoch of their rooms needs.
            let evicted = if created {
                e2ee::remove_oldest_devices(tx, &me.id, max_devices - 1)?
            } else {
                Vec::new()
            };
            let now = ids::now_ms();
            e2ee::upsert_device(tx, &device_id, &me.id, &record, now)?;
            if changed {
                e2ee::user_devices_changed(tx, &me.id)?;
            }
            Ok((
                created,
                Device {
                    device_id,
                    user_id: me.id,
                    record: record_value,
                    updated_at: now,
                },
                evicted,
            ))
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut body = serde_json::to_value(&device).map_err(ApiError::internal)?;
    body["evicted_device_ids"] = json!(evicted);
    Ok((status, Json(body)))
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
        .read(move |tx| {
            let visible = user_id == me.id || rooms::share_a_room(tx, &me.id, &user_id)?;
            if !visible {
                return Err(ApiError::forbidden(
                    "forbidden",
                    "unable to list the user's devices; you share no room with them",
                ));
            }
            Ok(e2ee::user_devices(tx, &user_id)?)
        })
        .await?;
    Ok(Json(devices))
}

/// `GET /api/rooms/{room_id}/devices`: every member's devices.
pub(crate) async fn room_devices(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    room_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<Device>>, ApiError> {
    let room_id = path(room_id)?;
    let devices = backend
        .read(move |tx| {
            rooms::member_room(tx, &room_id, &me.id)?;
            Ok(e2ee::member_devices(tx, &room_id)?)
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
        .read(move |tx| {
            rooms::member_room(tx, &room_id, &me.id)?;
            match e2ee::epoch_devices_recorded(tx, &room_id, epoch)? {
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
            Ok(e2ee::epoch_devices(tx, &room_id, epoch)?)
        })
        .await?;
    Ok(Json(devices))
}

/// `GET /api/rooms/{room_id}/epoch`: `{"epoch"}`, 0 before the first.
pub(crate) async fn current_epoch(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    room_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let room_id = path(room_id)?;
    let epoch = backend
        .read(move |tx| {
            rooms::member_room(tx, &room_id, &me.id)?;
            Ok(e2ee::current_epoch(tx, &room_id)?)
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
/// (else 409 `shares_incomplete`); then publishes `epoch.created` (through the outbox).
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
    let socket_id = socket_id_header(&headers);
    let created = backend
        .write(move |tx, outbox| {
            if !rooms::member_room(tx, &room_id, &me.id)?.encrypted {
                return Err(ApiError::room_not_encrypted("create the epoch"));
            }
            let current = e2ee::current_epoch(tx, &room_id)?;
            if epoch != current + 1 {
                return Err(ApiError::conflict(
                    "epoch_conflict",
                    "unable to create the epoch; it must be exactly the current epoch + 1",
                )
                .with("current_epoch", current));
            }
            let expected: BTreeSet<String> = e2ee::member_devices(tx, &room_id)?
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
            // The epoch also keeps the member devices it covers, as they are
            // now (exactly the shares' devices).
            e2ee::insert_epoch(tx, &room_id, epoch, &me.id, now, &shares)?;
            outbox.publish(
                tx,
                &room_channel(&room_id)?,
                "epoch.created",
                &json!({ "room_id": room_id, "epoch": epoch }),
                socket_id.as_deref(),
            )?;
            Ok(json!({
                "room_id": room_id,
                "epoch": epoch,
                "created_by": me.id,
                "created_at": now,
            }))
        })
        .await?;
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
        .read(move |tx| {
            rooms::member_room(tx, &room_id, &me.id)?;
            if e2ee::device_owner(tx, &device_id)?.as_deref() != Some(me.id.as_str()) {
                return Err(not_your_device());
            }
            let share = e2ee::key_share(tx, &room_id, epoch, &device_id)?.ok_or_else(|| {
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
