//! The database: the only place that speaks SQL.
//!
//! One module per part of the schema, each a set of typed functions on a
//! `&Connection` (a `&Transaction` derefs to one). Routes open one
//! transaction per request ([`crate::Backend::read`] or
//! [`crate::Backend::write`]) and call these inside it; the functions neither
//! open nor commit transactions themselves, so a route composes several into
//! one atomic step.
//!
//! - [`schema`]: creating, migrating and checkpointing the database.
//! - [`users`]: accounts (a name is an account).
//! - [`rooms`]: rooms, members and read positions.
//! - [`messages`]: messages and history pages.
//! - [`e2ee`]: device records, epochs and key shares.
//! - [`outbox`]: events waiting to be published.

pub(crate) mod e2ee;
pub(crate) mod messages;
pub(crate) mod outbox;
pub(crate) mod rooms;
pub(crate) mod schema;
pub(crate) mod users;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::ApiError;

/// Runs `work` in one transaction: committed if it returns `Ok`, rolled back
/// if it fails.
pub(crate) fn in_transaction<T>(
    conn: &mut Connection,
    behavior: TransactionBehavior,
    work: impl FnOnce(&Transaction<'_>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let tx = conn.transaction_with_behavior(behavior)?;
    let value = work(&tx)?;
    tx.commit()?;
    Ok(value)
}

/// A fresh in-memory database with the current schema.
#[cfg(test)]
pub(crate) fn test_database() -> Connection {
    schema::open(":memory:").expect("an in-memory database opens")
}
