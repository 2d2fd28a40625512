//! Typing indicators: my outgoing signal, throttled, and who else is typing,
//! each until a deadline.

/// How often my typing signal goes out and how long another user's lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypingSettings {
    /// `is_typing: true` goes out at most once per this many ms while typing.
    pub throttle_ms: u64,
    /// Another user stops typing this many ms after their last `true`.
    pub timeout_ms: u64,
}

impl Default for TypingSettings {
    /// The documented defaults: a 3 s throttle and a 5 s timeout (longer than
    /// the throttle, so a steady typist's indicator never flickers off).
    fn default() -> TypingSettings {
        TypingSettings {
            throttle_ms: 3000,
            timeout_ms: 5000,
        }
    }
}

/// The typing state of one room.
#[derive(Clone, Debug)]
pub(crate) struct Typing {
    settings: TypingSettings,
    /// When my last `is_typing: true` went out; None when none is standing
    /// (never sent, or a `false` followed it).
    my_true_sent_at: Option<u64>,
    /// Who is typing and until when, in the order they started: a UI lists
    /// "Ada and Bob are typing" without reshuffling. Bounded by the room's
    /// members (each at most once) and emptied by expiry.
    others: Vec<(String, u64)>,
}

impl Typing {
    pub(crate) fn new(settings: TypingSettings) -> Typing {
        Typing {
            settings,
            my_true_sent_at: None,
            others: Vec::new(),
        }
    }

    /// I typed: true when `is_typing: true` should go out now.
    pub(crate) fn input(&mut self, now_ms: u64) -> bool {
        if let Some(sent_at) = self.my_true_sent_at {
            // A clock that went backwards (now < sent_at) sends again rather
            // than staying silent until it catches up.
            if now_ms >= sent_at && now_ms - sent_at < self.settings.throttle_ms {
                return false;
            }
        }
        self.my_true_sent_at = Some(now_ms);
        true
    }

    /// I stopped (or sent a message): true when `is_typing: false` should go
    /// out, that is once after a `true`.
    pub(crate) fn stop(&mut self) -> bool {
        self.my_true_sent_at.take().is_some()
    }

    /// Another user's signal; true when their state changed. A repeated
    /// `true` only extends the deadline.
    pub(crate) fn received(&mut self, user_id: &str, is_typing: bool, now_ms: u64) -> bool {
        let position = self.others.iter().position(|(id, _)| id == user_id);
        match (position, is_typing) {
            (Some(i), true) => {
                self.others[i].1 = now_ms.saturating_add(self.settings.timeout_ms);
                false
            }
            (None, true) => {
                let deadline = now_ms.saturating_add(self.settings.timeout_ms);
                self.others.push((user_id.to_owned(), deadline));
                true
            }
            (Some(i), false) => {
                self.others.remove(i);
                true
            }
            (None, false) => false,
        }
    }

    /// Ends `user_id`'s typing (their message arrived); true when they were typing.
    pub(crate) fn clear(&mut self, user_id: &str) -> bool {
        let before = self.others.len();
        self.others.retain(|(id, _)| id != user_id);
        self.others.len() != before
    }

    /// Removes and returns everyone whose deadline is at or before `now_ms`.
    pub(crate) fn expire(&mut self, now_ms: u64) -> Vec<String> {
        let mut expired = Vec::new();
        self.others.retain(|(id, deadline)| {
            let keep = *deadline > now_ms;
            if !keep {
                expired.push(id.clone());
            }
            keep
        });
        expired
    }

    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.others.iter().map(|(_, deadline)| *deadline).min()
    }

    pub(crate) fn ids(&self) -> Vec<&str> {
        self.others.iter().map(|(id, _)| id.as_str()).collect()
    }
}
