//! End-to-end encryption records: devices, room epochs (with the member
//! devices each was created for) and key shares. Records and shares are
//! opaque JSON objects stored as their compact JSON text.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use serde_json::Value;

/// A device record, as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Device {
    pub device_id: String,
    pub user_id: String,
    pub record: Value,
    pub updated_at: i64,
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

/// A device's owner and its record's JSON text, if the device exists.
pub(crate) fn find_device_record(
    conn: &Connection,
    device_id: &str,
) -> rusqlite::Result<Option<(String, String)>> {
    conn.query_row(
        "SELECT user_id, record FROM devices WHERE device_id = ?1",
        params![device_id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
}

/// The user a device belongs to, if the device exists.
pub(crate) fn device_owner(conn: &Connection, device_id: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT user_id FROM devices WHERE device_id = ?1",
        params![device_id],
        |row| row.get(0),
    )
    .optional()
}

/// Creates or replaces a device record. The caller checked that the device
/// is new or already `user_id`'s: the owner of a stored device never changes.
pub(crate) fn upsert_device(
    conn: &Connection,
    device_id: &str,
    user_id: &str,
    record: &str,
    updated_at: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO devices (device_id, user_id, record, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (device_id) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at",
        params![device_id, user_id, record, updated_at],
    )?;
    Ok(())
}

/// Removes `user_id`'s least recently registered devices (by `updated_at`,
/// which every registration refreshes; then by device id) so that at most
/// `keep` remain; returns their ids. Epochs keep their own snapshot of the
/// devices they were created for (`epoch_devices`), so history stays readable.
pub(crate) fn remove_oldest_devices(
    conn: &Connection,
    user_id: &str,
    keep: usize,
) -> rusqlite::Result<Vec<String>> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    let mut statement = conn.prepare(
        "SELECT device_id FROM devices WHERE user_id = ?1
         ORDER BY updated_at DESC, device_id DESC LIMIT -1 OFFSET ?2",
    )?;
    let mut removed = statement
        .query_map(params![user_id, keep], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    removed.sort();
    for device_id in &removed {
        conn.execute(
            "DELETE FROM devices WHERE device_id = ?1",
            params![device_id],
        )?;
    }
    Ok(removed)
}

/// A user's devices, by device id.
pub(crate) fn user_devices(conn: &Connection, user_id: &str) -> rusqlite::Result<Vec<Device>> {
    let mut statement = conn.prepare(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices d WHERE d.user_id = ?1 ORDER BY d.device_id"
    ))?;
    let devices = statement
        .query_map(params![user_id], device_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(devices)
}

/// The devices of a room's current members, by user then device id.
pub(crate) fn member_devices(conn: &Connection, room_id: &str) -> rusqlite::Result<Vec<Device>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices d JOIN room_members m ON m.user_id = d.user_id
         WHERE m.room_id = ?1 ORDER BY d.user_id, d.device_id"
    ))?;
    let devices = statement
        .query_map(params![room_id], device_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(devices)
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
pub(crate) fn user_devices_changed(conn: &Connection, user_id: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE rooms SET member_devices_version = member_devices_version + 1
         WHERE encrypted = 1 AND id IN (SELECT room_id FROM room_members WHERE user_id = ?1)",
        params![user_id],
    )?;
    Ok(())
}

/// A room's current epoch, 0 before the first.
pub(crate) fn current_epoch(conn: &Connection, room_id: &str) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT COALESCE(MAX(epoch), 0) FROM epochs WHERE room_id = ?1",
        params![room_id],
        |row| row.get(0),
    )
}

/// A room's current epoch (0 before the first) and whether it was created
/// for the room's current member devices (false when there is none, or it
/// predates a change of them, or it was created before schema version 2).
pub(crate) fn epoch_coverage(conn: &Connection, room_id: &str) -> rusqlite::Result<(i64, bool)> {
    let current = current_epoch(conn, room_id)?;
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

/// Whether an epoch recorded its member devices (`None`: no such epoch;
/// `Some(false)`: created before they were recorded).
pub(crate) fn epoch_devices_recorded(
    conn: &Connection,
    room_id: &str,
    epoch: i64,
) -> rusqlite::Result<Option<bool>> {
    conn.query_row(
        "SELECT devices_recorded FROM epochs WHERE room_id = ?1 AND epoch = ?2",
        params![room_id, epoch],
        |row| row.get(0),
    )
    .optional()
}

/// The member devices an epoch was created for, as they were then, by user
/// then device id.
pub(crate) fn epoch_devices(
    conn: &Connection,
    room_id: &str,
    epoch: i64,
) -> rusqlite::Result<Vec<Device>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {DEVICE_COLUMNS} FROM epoch_devices d
         WHERE d.room_id = ?1 AND d.epoch = ?2 ORDER BY d.user_id, d.device_id"
    ))?;
    let devices = statement
        .query_map(params![room_id, epoch], device_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(devices)
}

/// Stores a new epoch with its key shares (`(device_id, share JSON text)`),
/// and snapshots the room's current member devices as the ones it covers.
/// The caller checked, in the same immediate transaction, that `epoch` is
/// the current one + 1 and that the shares are for exactly those devices.
pub(crate) fn insert_epoch(
    conn: &Connection,
    room_id: &str,
    epoch: i64,
    created_by: &str,
    created_at: i64,
    shares: &[(String, String)],
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO epochs (room_id, epoch, created_by, created_at, member_devices_version, devices_recorded)
         SELECT ?1, ?2, ?3, ?4, member_devices_version, 1 FROM rooms WHERE id = ?1",
        params![room_id, epoch, created_by, created_at],
    )?;
    conn.execute(
        "INSERT INTO epoch_devices (room_id, epoch, device_id, user_id, record, updated_at)
         SELECT ?1, ?2, d.device_id, d.user_id, d.record, d.updated_at
         FROM devices d JOIN room_members m ON m.user_id = d.user_id
         WHERE m.room_id = ?1",
        params![room_id, epoch],
    )?;
    let mut insert = conn.prepare(
        "INSERT INTO key_shares (room_id, epoch, device_id, share) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (device_id, share) in shares {
        insert.execute(params![room_id, epoch, device_id, share])?;
    }
    Ok(())
}

/// The JSON text of a device's key share in an epoch, if there is one.
pub(crate) fn key_share(
    conn: &Connection,
    room_id: &str,
    epoch: i64,
    device_id: &str,
) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT share FROM key_shares WHERE room_id = ?1 AND epoch = ?2 AND device_id = ?3",
        params![room_id, epoch, device_id],
        |row| row.get(0),
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::rooms::{self, Room};
    use crate::store::test_database;
    use crate::store::users::find_or_create_by_name;

    /// An encrypted room `r_1` of `u_1` and `u_2`, one device each.
    fn encrypted_room() -> Connection {
        let conn = test_database();
        for (id, name) in [("u_1", "Ada"), ("u_2", "Bob"), ("u_3", "Cy")] {
            find_or_create_by_name(&conn, name, id, 1).unwrap();
        }
        let room = Room {
            id: "r_1".into(),
            kind: "group".into(),
            name: Some("Secret".into()),
            created_by: "u_1".into(),
            created_at: 1,
            encrypted: true,
        };
        rooms::insert(&conn, &room, None, ["u_1", "u_2"]).unwrap();
        upsert_device(&conn, "d_1", "u_1", r#"{"k":1}"#, 5).unwrap();
        upsert_device(&conn, "d_2", "u_2", r#"{"k":2}"#, 5).unwrap();
        conn
    }

    fn shares(device_ids: &[&str]) -> Vec<(String, String)> {
        device_ids
            .iter()
            .map(|id| ((*id).to_owned(), format!(r#"{{"for":"{id}"}}"#)))
            .collect()
    }

    #[test]
    fn an_epoch_covers_the_member_devices_until_they_change() {
        let conn = encrypted_room();
        assert_eq!(epoch_coverage(&conn, "r_1").unwrap(), (0, false));
        insert_epoch(&conn, "r_1", 1, "u_1", 9, &shares(&["d_1", "d_2"])).unwrap();
        assert_eq!(current_epoch(&conn, "r_1").unwrap(), 1);
        assert_eq!(epoch_coverage(&conn, "r_1").unwrap(), (1, true));

        rooms::add_member(&conn, "r_1", "u_3", 10).unwrap();
        room_devices_changed(&conn, "r_1").unwrap();
        assert_eq!(epoch_coverage(&conn, "r_1").unwrap(), (1, false));

        insert_epoch(&conn, "r_1", 2, "u_1", 11, &shares(&["d_1", "d_2"])).unwrap();
        assert_eq!(epoch_coverage(&conn, "r_1").unwrap(), (2, true));
        upsert_device(&conn, "d_2", "u_2", r#"{"k":3}"#, 12).unwrap();
        user_devices_changed(&conn, "u_2").unwrap();
        assert_eq!(epoch_coverage(&conn, "r_1").unwrap(), (2, false));
    }

    #[test]
    fn an_epoch_keeps_its_devices_and_shares() {
        let conn = encrypted_room();
        insert_epoch(&conn, "r_1", 1, "u_1", 9, &shares(&["d_1", "d_2"])).unwrap();
        upsert_device(&conn, "d_1", "u_1", r#"{"k":9}"#, 20).unwrap();
        assert_eq!(epoch_devices_recorded(&conn, "r_1", 1).unwrap(), Some(true));
        assert_eq!(epoch_devices_recorded(&conn, "r_1", 2).unwrap(), None);
        let then = epoch_devices(&conn, "r_1", 1).unwrap();
        assert_eq!(then[0].record, json!({ "k": 1 }));
        assert_eq!(
            member_devices(&conn, "r_1").unwrap()[0].record,
            json!({ "k": 9 })
        );
        assert_eq!(
            key_share(&conn, "r_1", 1, "d_2").unwrap().as_deref(),
            Some(r#"{"for":"d_2"}"#)
        );
        assert_eq!(key_share(&conn, "r_1", 1, "d_3").unwrap(), None);
        assert_eq!(device_owner(&conn, "d_2").unwrap().as_deref(), Some("u_2"));
        assert_eq!(
            find_device_record(&conn, "d_1").unwrap(),
            Some(("u_1".into(), r#"{"k":9}"#.into()))
        );
        assert_eq!(user_devices(&conn, "u_2").unwrap().len(), 1);
    }
}
