//! Durable messages with a gap-free per-room `seq`.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use serde_json::Value;

/// A stored message, as the API and the `message.created` event show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
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

/// The message a sender already sent with this idempotency key, if any.
pub(crate) fn find_by_client_id(
    conn: &Connection,
    room_id: &str,
    sender_id: &str,
    client_id: &str,
) -> rusqlite::Result<Option<Message>> {
    conn.query_row(
        &format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
             WHERE room_id = ?1 AND sender_id = ?2 AND client_id = ?3"
        ),
        params![room_id, sender_id, client_id],
        message_from_row,
    )
    .optional()
}

/// The id of the message at `seq`.
pub(crate) fn message_id_at(
    conn: &Connection,
    room_id: &str,
    seq: i64,
) -> rusqlite::Result<String> {
    conn.query_row(
        "SELECT message_id FROM messages WHERE room_id = ?1 AND seq = ?2",
        params![room_id, seq],
        |row| row.get(0),
    )
}

/// Stores a message. Its `seq` must be the room's [`latest_seq`] + 1 and the
/// transaction immediate, so that seqs stay gap-free; the ciphertext is
/// stored as its compact JSON text.
pub(crate) fn insert(conn: &Connection, message: &Message) -> rusqlite::Result<()> {
    let ciphertext = message.ciphertext.as_ref().map(Value::to_string);
    conn.execute(
        "INSERT INTO messages (room_id, seq, message_id, sender_id, client_id, text, ciphertext, sent_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            message.room_id,
            message.seq,
            message.message_id,
            message.user_id,
            message.client_id,
            message.text,
            ciphertext,
            message.sent_at
        ],
    )?;
    Ok(())
}

/// Which page of history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Page {
    Latest,
    Before(i64),
    After(i64),
}

/// A page of at most `limit` messages, ascending by seq, and whether there
/// are more in the direction of travel (older for `Latest` and `Before`,
/// newer for `After`).
pub(crate) fn page(
    conn: &Connection,
    room_id: &str,
    page: Page,
    limit: usize,
) -> rusqlite::Result<(Vec<Message>, bool)> {
    let (condition, newest_first, cursor) = match page {
        Page::Latest => ("", true, 0),
        Page::Before(seq) => ("AND seq < ?2", true, seq),
        Page::After(seq) => ("AND seq > ?2", false, seq),
    };
    let order = if newest_first { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = ?1 {condition}
         ORDER BY seq {order} LIMIT ?3"
    );
    let mut statement = conn.prepare(&sql)?;
    // One more than asked tells whether there is more. ?2 is unused for the
    // latest page; SQLite binds it anyway.
    let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
    let mut messages = statement
        .query_map(params![room_id, cursor, fetch], message_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let has_more = messages.len() > limit;
    messages.truncate(limit);
    if newest_first {
        messages.reverse();
    }
    Ok((messages, has_more))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::rooms::{self, Room};
    use crate::store::test_database;
    use crate::store::users::find_or_create_by_name;

    /// A room `r_1` with members `u_1` and `u_2`, and messages 1..=`count`
    /// from `u_1`.
    fn room_with_messages(count: i64) -> Connection {
        let conn = test_database();
        for (id, name) in [("u_1", "Ada"), ("u_2", "Bob")] {
            find_or_create_by_name(&conn, name, id, 1).unwrap();
        }
        let room = Room {
            id: "r_1".into(),
            kind: "group".into(),
            name: Some("Team".into()),
            created_by: "u_1".into(),
            created_at: 1,
            encrypted: false,
        };
        rooms::insert(&conn, &room, None, ["u_1", "u_2"]).unwrap();
        for seq in 1..=count {
            insert(&conn, &text_message(seq, "u_1", &format!("c{seq}"))).unwrap();
        }
        conn
    }

    fn text_message(seq: i64, sender: &str, client_id: &str) -> Message {
        Message {
            message_id: format!("m_{seq}"),
            room_id: "r_1".into(),
            seq,
            user_id: sender.into(),
            text: Some(format!("hello {seq}")),
            ciphertext: None,
            sent_at: 100 + seq,
            client_id: client_id.into(),
        }
    }

    fn seqs(page: (Vec<Message>, bool)) -> (Vec<i64>, bool) {
        (page.0.iter().map(|m| m.seq).collect(), page.1)
    }

    #[test]
    fn pages_are_ascending_and_tell_whether_there_is_more() {
        let conn = room_with_messages(5);
        let read = |which, limit| seqs(page(&conn, "r_1", which, limit).unwrap());
        assert_eq!(read(Page::Latest, 2), (vec![4, 5], true));
        assert_eq!(read(Page::Latest, 5), (vec![1, 2, 3, 4, 5], false));
        assert_eq!(read(Page::Before(4), 2), (vec![2, 3], true));
        assert_eq!(read(Page::Before(3), 2), (vec![1, 2], false));
        assert_eq!(read(Page::After(1), 3), (vec![2, 3, 4], true));
        assert_eq!(read(Page::After(3), 3), (vec![4, 5], false));
        assert_eq!(read(Page::After(5), 3), (vec![], false));
    }

    #[test]
    fn counts_and_lookups() {
        let conn = room_with_messages(3);
        assert_eq!(latest_seq(&conn, "r_1").unwrap(), 3);
        assert_eq!(latest_seq(&conn, "r_9").unwrap(), 0);
        assert_eq!(last_message(&conn, "r_1").unwrap().unwrap().seq, 3);
        assert_eq!(last_message(&conn, "r_9").unwrap(), None);
        // Only others' messages count as unread.
        assert_eq!(unread_count(&conn, "r_1", "u_2", 1).unwrap(), 2);
        assert_eq!(unread_count(&conn, "r_1", "u_1", 0).unwrap(), 0);
        assert_eq!(message_id_at(&conn, "r_1", 2).unwrap(), "m_2");
        assert_eq!(
            find_by_client_id(&conn, "r_1", "u_1", "c2").unwrap(),
            Some(text_message(2, "u_1", "c2"))
        );
        assert_eq!(find_by_client_id(&conn, "r_1", "u_2", "c2").unwrap(), None);
    }

    #[test]
    fn ciphertext_round_trips_as_json() {
        let conn = room_with_messages(0);
        let sealed = Message {
            text: None,
            ciphertext: Some(json!({ "epoch": 1, "ct": "abc" })),
            ..text_message(1, "u_2", "c1")
        };
        insert(&conn, &sealed).unwrap();
        assert_eq!(last_message(&conn, "r_1").unwrap(), Some(sealed));
    }
}
