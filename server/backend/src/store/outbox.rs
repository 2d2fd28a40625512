//! The outbox: events to publish, written in the same transaction as the
//! change they describe, and deleted only once the broker accepted them.

use rusqlite::{params, Connection};

/// One event waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutboxEvent {
    /// The row id: the order events are published in.
    pub id: i64,
    pub channel: String,
    pub name: String,
    /// The payload as JSON text (the Pusher API's `data` string).
    pub data: String,
    /// The connection to leave out (the sender's own socket), if any.
    pub socket_id: Option<String>,
    /// Set on a row that is not an event but a request to close every
    /// connection of this user (`terminate_connections`); the other fields
    /// are then empty.
    pub terminate_user: Option<String>,
}

/// Adds an event after every event already waiting.
pub(crate) fn enqueue(
    conn: &Connection,
    channel: &str,
    name: &str,
    data: &str,
    socket_id: Option<&str>,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO outbox (channel, name, data, socket_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![channel, name, data, socket_id, now_ms],
    )?;
    Ok(())
}

/// Adds, after every event already waiting, a request to close the broker
/// connections of `user_id`.
pub(crate) fn enqueue_terminate(
    conn: &Connection,
    user_id: &str,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO outbox (channel, name, data, terminate_user, created_at) VALUES ('', '', '', ?1, ?2)",
        params![user_id, now_ms],
    )?;
    Ok(())
}

/// The `limit` oldest waiting events, oldest first.
pub(crate) fn oldest(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<OutboxEvent>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = conn.prepare_cached(
        "SELECT id, channel, name, data, socket_id, terminate_user FROM outbox ORDER BY id LIMIT ?1",
    )?;
    let rows = statement.query_map(params![limit], |row| {
        Ok(OutboxEvent {
            id: row.get(0)?,
            channel: row.get(1)?,
            name: row.get(2)?,
            data: row.get(3)?,
            socket_id: row.get(4)?,
            terminate_user: row.get(5)?,
        })
    })?;
    rows.collect()
}

/// Removes every event up to and including `id` (they were published, or
/// refused for good).
pub(crate) fn delete_through(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM outbox WHERE id <= ?1", params![id])?;
    Ok(())
}

/// How many events wait.
pub(crate) fn waiting(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM outbox", [], |row| row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_database;

    #[test]
    fn events_leave_in_the_order_they_came() {
        let conn = test_database();
        for (n, channel) in ["a", "b", "a"].iter().enumerate() {
            let socket = (n == 1).then_some("1.2");
            enqueue(&conn, channel, "e", &format!("{{\"n\":{n}}}"), socket, 5).unwrap();
        }
        let first = oldest(&conn, 2).unwrap();
        assert_eq!(
            first
                .iter()
                .map(|e| (e.channel.as_str(), e.data.as_str(), e.socket_id.as_deref()))
                .collect::<Vec<_>>(),
            [("a", "{\"n\":0}", None), ("b", "{\"n\":1}", Some("1.2"))]
        );
        delete_through(&conn, first[1].id).unwrap();
        assert_eq!(waiting(&conn).unwrap(), 1);
        let rest = oldest(&conn, 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].data, "{\"n\":2}");
        // Ids are never reused, so a late delete cannot remove a newer event.
        delete_through(&conn, rest[0].id).unwrap();
        enqueue(&conn, "c", "e", "{}", None, 6).unwrap();
        assert!(oldest(&conn, 1).unwrap()[0].id > rest[0].id);
    }

    #[test]
    fn a_terminate_waits_in_line_with_the_events() {
        let conn = test_database();
        enqueue(&conn, "a", "member.removed", "{}", None, 1).unwrap();
        enqueue_terminate(&conn, "u_bob", 1).unwrap();
        enqueue(&conn, "a", "e", "{}", None, 2).unwrap();
        let rows = oldest(&conn, 10).unwrap();
        let kinds: Vec<_> = rows
            .iter()
            .map(|row| (row.name.as_str(), row.terminate_user.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            [("member.removed", None), ("", Some("u_bob")), ("e", None)]
        );
    }

    #[test]
    fn an_event_is_kept_only_if_its_change_commits() {
        let mut conn = test_database();
        let tx = conn.transaction().unwrap();
        enqueue(&tx, "a", "e", "{}", None, 1).unwrap();
        drop(tx); // rolled back
        assert_eq!(waiting(&conn).unwrap(), 0);
    }
}
