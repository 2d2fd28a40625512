//! Rooms, their members and the members' read positions.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::ApiError;

/// A room as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Room {
    pub id: String,
    /// `"direct"` or `"group"`.
    pub kind: String,
    /// Group rooms only.
    pub name: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    /// End-to-end encrypted: only ciphertext messages (fixed at creation).
    pub encrypted: bool,
}

/// A member of a room, as the room's view lists them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Member {
    pub id: String,
    pub name: String,
    pub joined_at: i64,
    pub last_read_seq: i64,
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

/// The room with this id, if any.
pub(crate) fn find(conn: &Connection, room_id: &str) -> rusqlite::Result<Option<Room>> {
    conn.query_row(
        &format!("SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.id = ?1"),
        params![room_id],
        room_from_row,
    )
    .optional()
}

/// The rooms `user_id` is a member of, in no particular order.
pub(crate) fn of_member(conn: &Connection, user_id: &str) -> rusqlite::Result<Vec<Room>> {
    let mut statement = conn.prepare(&format!(
        "SELECT {ROOM_COLUMNS}
         FROM rooms r JOIN room_members m ON m.room_id = r.id
         WHERE m.user_id = ?1"
    ))?;
    let rooms = statement
        .query_map(params![user_id], room_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rooms)
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
/// such room, 403 `not_a_member` if the user is not in it. Every room route
/// starts with this check.
pub(crate) fn member_room(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
) -> Result<Room, ApiError> {
    let room = find(conn, room_id)?.ok_or_else(|| {
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

/// Whether the two users are members of at least one common room.
pub(crate) fn share_a_room(
    conn: &Connection,
    user_a: &str,
    user_b: &str,
) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM room_members a JOIN room_members b ON a.room_id = b.room_id
             WHERE a.user_id = ?1 AND b.user_id = ?2 LIMIT 1",
            params![user_a, user_b],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The members of a room, by join time then user id.
pub(crate) fn members(conn: &Connection, room_id: &str) -> rusqlite::Result<Vec<Member>> {
    let mut statement = conn.prepare_cached(
        "SELECT u.id, u.name, m.joined_at, m.last_read_seq
         FROM room_members m JOIN users u ON u.id = m.user_id
         WHERE m.room_id = ?1 ORDER BY m.joined_at, u.id",
    )?;
    let members = statement
        .query_map(params![room_id], |row| {
            Ok(Member {
                id: row.get(0)?,
                name: row.get(1)?,
                joined_at: row.get(2)?,
                last_read_seq: row.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(members)
}

/// The key that makes a direct room unique: one plaintext and one encrypted
/// direct room per pair of users, whichever of them asks.
pub(crate) fn direct_key(user_a: &str, user_b: &str, encrypted: bool) -> String {
    let (first, second) = if user_a < user_b {
        (user_a, user_b)
    } else {
        (user_b, user_a)
    };
    if encrypted {
        format!("{first}:{second}:e2ee")
    } else {
        format!("{first}:{second}")
    }
}

/// The id of the direct room with this [`direct_key`], if there is one.
pub(crate) fn find_direct(conn: &Connection, direct_key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT id FROM rooms WHERE direct_key = ?1",
        params![direct_key],
        |row| row.get(0),
    )
    .optional()
}

/// Stores a new room (`direct_key` for direct rooms only) with its first
/// members, who join at the room's creation time.
pub(crate) fn insert<'a>(
    conn: &Connection,
    room: &Room,
    direct_key: Option<&str>,
    members: impl IntoIterator<Item = &'a str>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO rooms (id, kind, name, created_by, created_at, direct_key, encrypted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            room.id,
            room.kind,
            room.name,
            room.created_by,
            room.created_at,
            direct_key,
            room.encrypted
        ],
    )?;
    for user_id in members {
        add_member(conn, &room.id, user_id, room.created_at)?;
    }
    Ok(())
}

/// Adds a user who is not a member yet.
pub(crate) fn add_member(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
    joined_at: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO room_members (room_id, user_id, joined_at) VALUES (?1, ?2, ?3)",
        params![room_id, user_id, joined_at],
    )?;
    Ok(())
}

/// Removes a member; false if they were not one.
pub(crate) fn remove_member(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "DELETE FROM room_members WHERE room_id = ?1 AND user_id = ?2",
        params![room_id, user_id],
    )? > 0)
}

/// A member's read position (the highest seq they have read), or `None` if
/// they are not a member.
pub(crate) fn last_read_seq(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT last_read_seq FROM room_members WHERE room_id = ?1 AND user_id = ?2",
        params![room_id, user_id],
        |row| row.get(0),
    )
    .optional()
}

/// Sets a member's read position. Callers move it only forward.
pub(crate) fn set_last_read_seq(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
    seq: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE room_members SET last_read_seq = ?3 WHERE room_id = ?1 AND user_id = ?2",
        params![room_id, user_id, seq],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_database;
    use crate::store::users::find_or_create_by_name;

    fn group(id: &str, created_by: &str) -> Room {
        Room {
            id: id.into(),
            kind: "group".into(),
            name: Some("Team".into()),
            created_by: created_by.into(),
            created_at: 10,
            encrypted: false,
        }
    }

    #[test]
    fn member_room_tells_missing_rooms_from_outsiders() {
        let conn = test_database();
        for (id, name) in [("u_1", "Ada"), ("u_2", "Bob"), ("u_3", "Cy")] {
            find_or_create_by_name(&conn, name, id, 1).unwrap();
        }
        let room = group("r_1", "u_1");
        insert(&conn, &room, None, ["u_1", "u_2"]).unwrap();
        assert_eq!(member_room(&conn, "r_1", "u_2").unwrap(), room);
        assert_eq!(
            member_room(&conn, "r_1", "u_3").unwrap_err().code(),
            "not_a_member"
        );
        assert_eq!(
            member_room(&conn, "r_9", "u_1").unwrap_err().code(),
            "room_not_found"
        );
        assert!(share_a_room(&conn, "u_1", "u_2").unwrap());
        assert!(!share_a_room(&conn, "u_1", "u_3").unwrap());
        assert_eq!(of_member(&conn, "u_2").unwrap(), [room]);
    }

    #[test]
    fn members_join_leave_and_keep_read_positions() {
        let conn = test_database();
        for (id, name) in [("u_1", "Ada"), ("u_2", "Bob")] {
            find_or_create_by_name(&conn, name, id, 1).unwrap();
        }
        insert(&conn, &group("r_1", "u_1"), None, ["u_1"]).unwrap();
        add_member(&conn, "r_1", "u_2", 20).unwrap();
        set_last_read_seq(&conn, "r_1", "u_2", 3).unwrap();
        assert_eq!(
            members(&conn, "r_1").unwrap(),
            [
                Member {
                    id: "u_1".into(),
                    name: "Ada".into(),
                    joined_at: 10,
                    last_read_seq: 0
                },
                Member {
                    id: "u_2".into(),
                    name: "Bob".into(),
                    joined_at: 20,
                    last_read_seq: 3
                },
            ]
        );
        assert_eq!(last_read_seq(&conn, "r_1", "u_2").unwrap(), Some(3));
        assert!(remove_member(&conn, "r_1", "u_2").unwrap());
        assert!(!remove_member(&conn, "r_1", "u_2").unwrap());
        assert_eq!(last_read_seq(&conn, "r_1", "u_2").unwrap(), None);
    }

    #[test]
    fn a_pair_has_one_direct_key_per_kind() {
        assert_eq!(direct_key("u_b", "u_a", false), "u_a:u_b");
        assert_eq!(direct_key("u_a", "u_b", false), "u_a:u_b");
        assert_eq!(direct_key("u_b", "u_a", true), "u_a:u_b:e2ee");
    }
}
