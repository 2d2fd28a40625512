//! The outbox relay: one task per backend that publishes the outbox
//! (`store::outbox`) to the broker, oldest first, and deletes an event only
//! once the broker answered 2xx for it.
//!
//! So a broker that refuses (429), restarts, or cannot be reached delays
//! events but never drops them: the relay waits (full-jitter backoff from the
//! protocol core, 100 ms doubling to 10 s, and never less than the broker's
//! `Retry-After`) and sends the same events again. Events leave in the order
//! they were written, all channels in one queue, so each channel's order
//! holds; up to [`MAX_BATCH_EVENTS`] go in one `batch_events` request, so a
//! burst costs a few requests, not one per event. Delivery is at least once
//! (an event sent just before a failed delete is sent again); clients drop
//! duplicates by `message_id`/`seq`.
//!
//! The one exception: a broker that refuses an event itself (400, 413, 422:
//! too large, a bad name) would refuse it forever. The relay then sends the
//! batch's events one at a time to find it, logs and drops that one event,
//! and goes on; the change is stored, so clients still read it from history.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::Notify;

use domvia_realtime::connection::backoff::{self, Jitter};

use crate::ids;
use crate::publisher::{Publisher, MAX_BATCH_EVENTS};
use crate::store::outbox;

/// The first retry waits up to this long; each failure doubles it.
const RETRY_BASE_MS: u64 = 100;
/// The longest wait between two attempts (unless the broker asks for more).
const RETRY_CAP_MS: u64 = 10_000;
/// After a database error, wait this long before reading the outbox again.
const DATABASE_RETRY: Duration = Duration::from_secs(1);
/// A failure streak is logged at its start and then every this many attempts.
const LOG_EVERY: u32 = 20;

/// Starts the relay task on first use and wakes it when events were written.
#[derive(Debug)]
pub(crate) struct Relay {
    publisher: Publisher,
    wake: Arc<Notify>,
    started: AtomicBool,
}

impl Relay {
    pub(crate) fn new(publisher: Publisher) -> Relay {
        Relay {
            publisher,
            wake: Arc::new(Notify::new()),
            started: AtomicBool::new(false),
        }
    }

    /// Tells the relay the outbox may have new events, starting its task on
    /// the current tokio runtime the first time. The task ends once the
    /// backend's database is dropped.
    pub(crate) fn wake(&self, db: &Arc<Mutex<Connection>>) {
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(run(
                Arc::downgrade(db),
                self.publisher.clone(),
                Arc::clone(&self.wake),
            ));
        }
        // A wake with no task waiting is kept (one permit), so an event
        // written while the relay is busy is never overlooked.
        self.wake.notify_one();
    }
}

/// Runs `work` on the database on a blocking thread; `None` once the backend
/// is gone.
async fn with_db<T: Send + 'static>(
    db: &Weak<Mutex<Connection>>,
    work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Option<rusqlite::Result<T>> {
    let db = db.upgrade()?;
    tokio::task::spawn_blocking(move || {
        let conn = db.lock().unwrap_or_else(PoisonError::into_inner);
        work(&conn)
    })
    .await
    .ok()
}

async fn run(db: Weak<Mutex<Connection>>, publisher: Publisher, wake: Arc<Notify>) {
    let mut seed = [0_u8; 8];
    // Only spreads retries out; a fixed seed would still work.
    getrandom::fill(&mut seed).ok();
    let mut jitter = Jitter::new(u64::from_le_bytes(seed));
    let mut failures: u32 = 0;
    // While set, events go one at a time up to this id: a batch holding an
    // event the broker refuses for good is being taken apart to find it.
    let mut one_by_one_through: Option<i64> = None;
    loop {
        let limit = if one_by_one_through.is_some() {
            1
        } else {
            MAX_BATCH_EVENTS
        };
        let mut events = match with_db(&db, move |conn| outbox::oldest(conn, limit)).await {
            None => return,
            Some(Ok(events)) => events,
            Some(Err(error)) => {
                eprintln!("domvia-backend: unable to read the outbox; {error}");
                tokio::time::sleep(DATABASE_RETRY).await;
                continue;
            }
        };
        // A terminate goes alone, in its place in line: the events before it
        // (such as the member.removed that explains it) reach the user first.
        let terminate_at = events.iter().position(|row| row.terminate_user.is_some());
        events.truncate(terminate_at.map_or(events.len(), |at| at.max(1)));
        let Some(last) = events.last().map(|event| event.id) else {
            wake.notified().await;
            continue;
        };
        let sent = match &events[0].terminate_user {
            Some(user_id) => {
                publisher
                    .terminate_connections(user_id, ids::now_unix())
                    .await
            }
            None => publisher.publish_batch(&events, ids::now_unix()).await,
        };
        let published = match sent {
            Ok(()) => {
                if failures > 0 {
                    eprintln!("domvia-backend: publishing again after {failures} failed attempts");
                }
                failures = 0;
                true
            }
            Err(error) if error.retryable() => {
                if failures % LOG_EVERY == 0 {
                    eprintln!(
                        "domvia-backend: unable to publish {} events (attempt {}), will retry; {error}",
                        events.len(),
                        failures + 1
                    );
                }
                let bound = backoff::bound(RETRY_BASE_MS, RETRY_CAP_MS, failures);
                let backoff = Duration::from_millis(jitter.up_to(bound));
                let delay = error
                    .retry_after()
                    .map_or(backoff, |asked| asked.max(backoff));
                failures = failures.saturating_add(1);
                tokio::time::sleep(delay).await;
                continue;
            }
            Err(_) if events.len() > 1 => {
                one_by_one_through = Some(last);
                continue;
            }
            Err(error) if events[0].terminate_user.is_some() => {
                eprintln!(
                    "domvia-backend: the broker refused to terminate a user's connections, skipped (their access ends when their socket does); {error}"
                );
                false
            }
            Err(error) => {
                let event = &events[0];
                eprintln!(
                    "domvia-backend: the broker refused {} on {}, dropped from the outbox (clients read it from history); {error}",
                    event.name, event.channel
                );
                false
            }
        };
        if !published || one_by_one_through.is_some_and(|through| last >= through) {
            one_by_one_through = None;
        }
        match with_db(&db, move |conn| outbox::delete_through(conn, last)).await {
            None => return,
            Some(Ok(())) => {}
            // The events go again: at least once, and clients drop duplicates.
            Some(Err(error)) => {
                eprintln!(
                    "domvia-backend: unable to delete published events from the outbox; {error}"
                );
                tokio::time::sleep(DATABASE_RETRY).await;
            }
        }
    }
}
