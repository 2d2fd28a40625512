//! The SQLite schema and how a connection is opened.
//!
//! The schema version lives in `PRAGMA user_version`; [`open`] creates or
//! migrates to [`SCHEMA_VERSION`] and refuses a newer database.

use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::BackendError;

/// The schema version this code writes.
pub(crate) const SCHEMA_VERSION: i64 = 6;

/// Version 1: users, rooms, members with read positions, messages with a
/// gap-free per-room `seq`, and the opaque E2EE records.
const SCHEMA_V1: &str = "
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE rooms (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
    name        TEXT,
    created_by  TEXT NOT NULL REFERENCES users(id),
    created_at  INTEGER NOT NULL,
    -- 'smaller_user_id:larger_user_id' for direct rooms, NULL for groups.
    direct_key  TEXT UNIQUE
);

CREATE TABLE room_members (
    room_id        TEXT NOT NULL REFERENCES rooms(id),
    user_id        TEXT NOT NULL REFERENCES users(id),
    joined_at      INTEGER NOT NULL,
    last_read_seq  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX room_members_by_user ON room_members(user_id, room_id);

CREATE TABLE messages (
    room_id     TEXT NOT NULL REFERENCES rooms(id),
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    message_id  TEXT NOT NULL UNIQUE,
    sender_id   TEXT NOT NULL REFERENCES users(id),
    client_id   TEXT NOT NULL,
    text        TEXT,
    ciphertext  TEXT,
    sent_at     INTEGER NOT NULL,
    CHECK ((text IS NULL) <> (ciphertext IS NULL)),
    UNIQUE (room_id, seq),
    UNIQUE (room_id, sender_id, client_id)
);

CREATE TABLE devices (
    device_id   TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    record      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX devices_by_user ON devices(user_id);

CREATE TABLE epochs (
    room_id     TEXT NOT NULL REFERENCES rooms(id),
    epoch       INTEGER NOT NULL CHECK (epoch >= 1),
    created_by  TEXT NOT NULL REFERENCES users(id),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (room_id, epoch)
);

CREATE TABLE key_shares (
    room_id     TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    device_id   TEXT NOT NULL,
    share       TEXT NOT NULL,
    PRIMARY KEY (room_id, epoch, device_id),
    FOREIGN KEY (room_id, epoch) REFERENCES epochs(room_id, epoch)
);
";

/// Version 2: the member-device version of each room, and the version each
/// epoch was created for, so that a message in an epoch older than the
/// current member devices is refused. It changes whenever a room's member
/// devices change (a member added or removed, a device of a member created
/// or replaced with another record). Epochs from version 1 have none (NULL):
/// they match no room version, so the first encrypted send after the upgrade
/// needs a new epoch (whether the members changed since is unknown).
const SCHEMA_V2: &str = "
ALTER TABLE rooms ADD COLUMN member_devices_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE epochs ADD COLUMN member_devices_version INTEGER;
";

/// Version 3: the member devices each epoch was created for, as they were
/// then (`epoch_devices`: a snapshot of their device records), so that a
/// device installing an older epoch checks it against that epoch's devices
/// rather than the current ones. Epochs from before have none recorded
/// (`devices_recorded` 0): their devices are unknown.
const SCHEMA_V3: &str = "
ALTER TABLE epochs ADD COLUMN devices_recorded INTEGER NOT NULL DEFAULT 0;
CREATE TABLE epoch_devices (
    room_id     TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    device_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users(id),
    record      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (room_id, epoch, device_id),
    FOREIGN KEY (room_id, epoch) REFERENCES epochs(room_id, epoch)
) WITHOUT ROWID;
";

/// Version 4: whether a room is end-to-end encrypted, fixed when it is
/// created: an encrypted room refuses plaintext messages and a plaintext room
/// refuses ciphertext, so a client that forgot `encrypted: true` cannot leak a
/// message in clear into a room whose members expect encryption. A pair of
/// users may have one direct room of each kind (`direct_key` ends in `:e2ee`
/// for the encrypted one). Rooms from before that have epochs or ciphertext
/// were used encrypted, so they become encrypted rooms.
const SCHEMA_V4: &str = "
ALTER TABLE rooms ADD COLUMN encrypted INTEGER NOT NULL DEFAULT 0 CHECK (encrypted IN (0, 1));
UPDATE rooms SET encrypted = 1
 WHERE id IN (SELECT room_id FROM epochs)
    OR id IN (SELECT room_id FROM messages WHERE ciphertext IS NOT NULL);
UPDATE rooms SET direct_key = direct_key || ':e2ee'
 WHERE encrypted = 1 AND direct_key IS NOT NULL;
";

/// Version 5: the outbox of events to publish (see `store::outbox`), written
/// in the same transaction as the change each describes. AUTOINCREMENT so that
/// an id is never reused: the publisher deletes "through" the last id it sent.
const SCHEMA_V5: &str = "
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    channel     TEXT NOT NULL,
    name        TEXT NOT NULL,
    data        TEXT NOT NULL,
    socket_id   TEXT,
    created_at  INTEGER NOT NULL
);
";

/// Version 6: revocation. A user's `session_generation` is signed into every
/// session token and bumped on sign-out, which revokes them all. An outbox row
/// with `terminate_user` set asks the broker to close that user's connections
/// (after a removal or sign-out), in order with the events around it.
const SCHEMA_V6: &str = "
ALTER TABLE users ADD COLUMN session_generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN terminate_user TEXT;
";

/// Opens `database` (a path or `:memory:`) with WAL, `synchronous=FULL`,
/// foreign keys and a 5 s busy timeout, then creates or migrates the schema.
pub(crate) fn open(database: &str) -> Result<Connection, BackendError> {
    let mut conn = if database == ":memory:" {
        Connection::open_in_memory()?
    } else {
        Connection::open(database)?
    };
    conn.busy_timeout(Duration::from_secs(5))?;
    // journal_mode answers with the mode in effect ("memory" for :memory:).
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    migrate(&mut conn)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), BackendError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(BackendError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < 1 {
        tx.execute_batch(SCHEMA_V1)?;
    }
    if version < 2 {
        tx.execute_batch(SCHEMA_V2)?;
    }
    if version < 3 {
        tx.execute_batch(SCHEMA_V3)?;
    }
    if version < 4 {
        tx.execute_batch(SCHEMA_V4)?;
    }
    if version < 5 {
        tx.execute_batch(SCHEMA_V5)?;
    }
    if version < 6 {
        tx.execute_batch(SCHEMA_V6)?;
    }
    // Later versions add `if version < N { ... }` steps here.
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    tx.commit()?;
    Ok(())
}

/// Writes the whole WAL into the database file and truncates it.
pub(crate) fn checkpoint(conn: &Connection) -> Result<(), BackendError> {
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
    if busy != 0 {
        return Err(BackendError::CheckpointBlocked);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_the_schema_once() {
        let mut conn = open(":memory:").unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        migrate(&mut conn).unwrap();
        let fk: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |row| row.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        checkpoint(&conn).unwrap();
    }

    #[test]
    fn migrates_version_1() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO users VALUES ('u_a', 'Ada', 1);
             INSERT INTO rooms VALUES ('r_a', 'group', 'Team', 'u_a', 1, NULL);
             INSERT INTO epochs VALUES ('r_a', 1, 'u_a', 2);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let (room, epoch): (i64, Option<i64>) = conn
            .query_row(
                "SELECT r.member_devices_version, e.member_devices_version
                 FROM rooms r JOIN epochs e ON e.room_id = r.id",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((room, epoch), (0, None));
        let recorded: i64 = conn
            .query_row("SELECT devices_recorded FROM epochs", [], |row| row.get(0))
            .unwrap();
        assert_eq!(recorded, 0);
    }

    #[test]
    fn migrates_version_2() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.execute_batch(SCHEMA_V2).unwrap();
        conn.execute_batch(
            "PRAGMA user_version = 2;
             INSERT INTO users VALUES ('u_a', 'Ada', 1);
             INSERT INTO rooms VALUES ('r_a', 'group', 'Team', 'u_a', 1, NULL, 3);
             INSERT INTO epochs VALUES ('r_a', 1, 'u_a', 2, 3);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let (covered, recorded, snapshot): (i64, i64, i64) = conn
            .query_row(
                "SELECT member_devices_version, devices_recorded,
                        (SELECT COUNT(*) FROM epoch_devices)
                 FROM epochs",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap();
        assert_eq!((covered, recorded, snapshot), (3, 0, 0));
    }

    #[test]
    fn migrates_version_3_marking_rooms_used_encrypted() {
        let mut conn = Connection::open_in_memory().unwrap();
        for step in [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3] {
            conn.execute_batch(step).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 3;
             INSERT INTO users VALUES ('u_a', 'Ada', 1), ('u_b', 'Bob', 1);
             INSERT INTO rooms VALUES
               ('r_plain', 'direct', NULL, 'u_a', 1, 'u_a:u_b', 0),
               ('r_epoch', 'group', 'Keys', 'u_a', 1, NULL, 0),
               ('r_sealed', 'group', 'Sealed', 'u_a', 1, NULL, 0);
             INSERT INTO epochs VALUES ('r_epoch', 1, 'u_a', 2, 0, 0);
             INSERT INTO messages VALUES ('r_sealed', 1, 'm_1', 'u_a', 'c-1', NULL, '{}', 3);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let rooms: Vec<(String, i64, Option<String>)> = conn
            .prepare("SELECT id, encrypted, direct_key FROM rooms ORDER BY id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rooms,
            [
                ("r_epoch".to_owned(), 1, None),
                ("r_plain".to_owned(), 0, Some("u_a:u_b".to_owned())),
                ("r_sealed".to_owned(), 1, None),
            ]
        );
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        assert!(matches!(
            migrate(&mut conn),
            Err(BackendError::SchemaTooNew { found: 99, .. })
        ));
    }
}
