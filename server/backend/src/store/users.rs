//! Users: the demo sign-in makes a name an account.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// A user as stored and as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct User {
    pub id: String,
    pub name: String,
}

fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        name: row.get(1)?,
    })
}

/// The user with this id and their session generation, if any.
pub(crate) fn find_with_generation(
    conn: &Connection,
    user_id: &str,
) -> rusqlite::Result<Option<(User, u64)>> {
    conn.query_row(
        "SELECT id, name, session_generation FROM users WHERE id = ?1",
        params![user_id],
        |row| {
            Ok((
                user_from_row(row)?,
                row.get::<_, i64>(2)?.max(0).unsigned_abs(),
            ))
        },
    )
    .optional()
}

/// Ends every session of `user_id`: tokens of an older generation no longer
/// verify. Returns the new generation.
pub(crate) fn revoke_sessions(conn: &Connection, user_id: &str) -> rusqlite::Result<u64> {
    conn.query_row(
        "UPDATE users SET session_generation = session_generation + 1 WHERE id = ?1 RETURNING session_generation",
        params![user_id],
        |row| Ok(row.get::<_, i64>(0)?.max(0).unsigned_abs()),
    )
}

/// Whether a user with this id exists.
pub(crate) fn exists(conn: &Connection, user_id: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM users WHERE id = ?1",
            params![user_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The user of that name, created as `new_id` at `now_ms` the first time.
/// Run it in an immediate transaction, so that two first sign-ins with one
/// name cannot both insert.
pub(crate) fn find_or_create_by_name(
    conn: &Connection,
    name: &str,
    new_id: &str,
    now_ms: i64,
) -> rusqlite::Result<User> {
    let existing: Option<String> = conn
        .query_row(
            "SELECT id FROM users WHERE name = ?1",
            params![name],
            |row| row.get(0),
        )
        .optional()?;
    let id = match existing {
        Some(id) => id,
        None => {
            conn.execute(
                "INSERT INTO users (id, name, created_at) VALUES (?1, ?2, ?3)",
                params![new_id, name, now_ms],
            )?;
            new_id.to_owned()
        }
    };
    Ok(User {
        id,
        name: name.to_owned(),
    })
}

/// Users other than `except` whose name starts with `prefix` (ASCII
/// case-insensitive: SQLite's `LIKE`), by name, at most `limit`.
pub(crate) fn search_by_name_prefix(
    conn: &Connection,
    prefix: &str,
    except: &str,
    limit: usize,
) -> rusqlite::Result<Vec<User>> {
    let mut statement = conn.prepare(
        "SELECT id, name FROM users WHERE name LIKE ?1 ESCAPE '\\' AND id <> ?2 ORDER BY name LIMIT ?3",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let users = statement
        .query_map(params![like_prefix(prefix), except, limit], user_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(users)
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_database;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_prefix("a%b_c\\"), "a\\%b\\_c\\\\%");
    }

    #[test]
    fn a_name_is_one_account() {
        let conn = test_database();
        let ada = find_or_create_by_name(&conn, "Ada", "u_1", 1).unwrap();
        assert_eq!(ada.id, "u_1");
        let again = find_or_create_by_name(&conn, "Ada", "u_2", 2).unwrap();
        assert_eq!(again, ada);
        assert_eq!(find_with_generation(&conn, "u_1").unwrap(), Some((ada, 0)));
        assert!(exists(&conn, "u_1").unwrap());
        assert!(!exists(&conn, "u_2").unwrap());
        assert_eq!(find_with_generation(&conn, "u_2").unwrap(), None);
    }

    #[test]
    fn search_matches_a_literal_prefix_and_skips_the_searcher() {
        let conn = test_database();
        for (id, name) in [
            ("u_1", "ann"),
            ("u_2", "Anna"),
            ("u_3", "a_b"),
            ("u_4", "axb"),
        ] {
            find_or_create_by_name(&conn, name, id, 1).unwrap();
        }
        let names = |prefix: &str, except: &str, limit: usize| -> Vec<String> {
            search_by_name_prefix(&conn, prefix, except, limit)
                .unwrap()
                .into_iter()
                .map(|user| user.name)
                .collect()
        };
        assert_eq!(names("AN", "u_9", 20), ["Anna", "ann"]);
        assert_eq!(names("an", "u_1", 20), ["Anna"]);
        assert_eq!(names("a_", "u_9", 20), ["a_b"]);
        assert_eq!(names("a", "u_9", 2).len(), 2);
    }
}
