//! Read positions: mine (for the unread count) and everyone's (for "seen by").
//! Every position only moves forward, as the backend's does, so a late or
//! repeated receipt can never make a message unread again.

use crate::vec_map::VecMap;

/// What `GET /api/rooms/{id}` said about my reading when the room loaded.
/// Kept because the room usually has only the newest page loaded: the
/// backend's `unread_count` also counts unread messages older than that page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReadSeed {
    pub(crate) last_read_seq: u64,
    pub(crate) unread_count: u64,
    pub(crate) latest_seq: u64,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Reads {
    pub(crate) seed: Option<ReadSeed>,
    /// Each member's read position (mine too), bounded by the room's members.
    pub(crate) positions: VecMap<String, u64>,
}

impl Reads {
    /// Moves `user_id`'s position forward to `seq`; true when it moved. (A
    /// receipt for me comes from my other tabs and devices: it moves my
    /// position, hence my unread count, too.)
    pub(crate) fn advance(&mut self, user_id: &str, seq: u64) -> bool {
        let position = self.positions.get_or_insert_with(user_id.to_owned(), || 0);
        let moved = seq > *position;
        if moved {
            *position = seq;
        }
        moved
    }

    /// `user_id`'s read position (0 before any).
    pub(crate) fn position(&self, user_id: &str) -> u64 {
        self.positions.get(user_id).copied().unwrap_or(0)
    }
}
