//! Abuse limits: how many devices a user may have, and token-bucket rate
//! limits per user and per client IP for the writes that are cheap to ask
//! for and expensive to keep (accounts, rooms, members, messages, device
//! changes).
//!
//! The buckets live in memory, in one bounded map: a bucket that has filled
//! up again is the same as no bucket, so idle ones are dropped first when the
//! map is full, then the least recently used. A restart forgets them all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// A token bucket: up to `burst` requests at once, refilled at `per_second`
/// requests per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests allowed back to back (at least 1).
    pub burst: u32,
    /// Requests per second in the long run (may be fractional: `0.5` is one
    /// every two seconds).
    pub per_second: f64,
}

impl Rate {
    /// `burst` at once, then `per_minute` per minute.
    pub const fn per_minute(per_minute: u32, burst: u32) -> Rate {
        Rate {
            burst,
            per_second: per_minute as f64 / 60.0,
        }
    }

    /// `burst` at once, then `per_second` per second.
    pub const fn per_second(per_second: u32, burst: u32) -> Rate {
        Rate {
            burst,
            per_second: per_second as f64,
        }
    }
}

/// The backend's abuse limits (`API.md`, "Limits"). `None` turns a rate
/// limit off.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Device records one user may have. Registering one more removes that
    /// user's least recently registered device.
    pub devices_per_user: usize,
    /// Device records a user may create or change (each change makes every
    /// encrypted room of theirs need a new epoch).
    pub device_changes_per_user: Option<Rate>,
    /// `POST /api/session` per client IP (a new name creates an account).
    pub sign_ins_per_ip: Option<Rate>,
    /// `POST /api/rooms` per user and per client IP.
    pub rooms_per_user: Option<Rate>,
    pub rooms_per_ip: Option<Rate>,
    /// `POST /api/rooms/{id}/members` per user and per client IP.
    pub member_adds_per_user: Option<Rate>,
    pub member_adds_per_ip: Option<Rate>,
    /// `POST /api/rooms/{id}/messages` per user and per client IP.
    pub sends_per_user: Option<Rate>,
    pub sends_per_ip: Option<Rate>,
    /// Whether per-IP limits also apply to loopback clients. Off by default:
    /// on a development machine every client is 127.0.0.1, and behind a
    /// reverse proxy on the same host every client would share one bucket
    /// (`X-Forwarded-For` is not trusted). Per-user limits always apply.
    pub limit_loopback: bool,
    /// The most buckets kept in memory.
    pub max_tracked_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            devices_per_user: 10,
            device_changes_per_user: Some(Rate::per_minute(10, 20)),
            sign_ins_per_ip: Some(Rate::per_minute(30, 30)),
            rooms_per_user: Some(Rate::per_minute(60, 30)),
            rooms_per_ip: Some(Rate::per_minute(120, 60)),
            member_adds_per_user: Some(Rate::per_second(2, 100)),
            member_adds_per_ip: Some(Rate::per_second(5, 200)),
            sends_per_user: Some(Rate::per_second(20, 100)),
            sends_per_ip: Some(Rate::per_second(60, 300)),
            limit_loopback: false,
            max_tracked_keys: 100_000,
        }
    }
}

impl Limits {
    /// No rate limits (the device cap stays).
    pub fn without_rate_limits() -> Limits {
        Limits {
            device_changes_per_user: None,
            sign_ins_per_ip: None,
            rooms_per_user: None,
            rooms_per_ip: None,
            member_adds_per_user: None,
            member_adds_per_ip: None,
            sends_per_user: None,
            sends_per_ip: None,
            ..Limits::default()
        }
    }
}

/// What a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Action {
    SignIn,
    CreateRoom,
    AddMember,
    Send,
    DeviceChange,
}

impl Action {
    /// Completes "unable to ...".
    pub(crate) fn operation(self) -> &'static str {
        match self {
            Action::SignIn => "sign in",
            Action::CreateRoom => "create the room",
            Action::AddMember => "add the member",
            Action::Send => "send the message",
            Action::DeviceChange => "store the device",
        }
    }
}

/// Whose requests a bucket counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Subject {
    User(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// When it was last used.
    at: Instant,
    /// When it will be full again (then it is the same as no bucket).
    full_at: Instant,
}

/// Token buckets by (action, subject), at most `max_keys` of them.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<(Action, Subject), Bucket>>,
    max_keys: usize,
}

impl RateLimiter {
    pub(crate) fn new(max_keys: usize) -> RateLimiter {
        RateLimiter {
            buckets: Mutex::new(HashMap::new()),
            max_keys: max_keys.max(1),
        }
    }

    /// Takes one token from the bucket of `(action, subject)`: `Ok`, or
    /// `Err(seconds)` until one is back (at least 1).
    pub(crate) fn take(
        &self,
        action: Action,
        subject: Subject,
        rate: Rate,
        now: Instant,
    ) -> Result<(), u64> {
        let burst = f64::from(rate.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (action, subject);
        if !buckets.contains_key(&key) && buckets.len() >= self.max_keys {
            evict(&mut buckets, now, self.max_keys);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
            full_at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            let refill = if rate.per_second > 0.0 {
                (burst - bucket.tokens) / rate.per_second
            } else {
                f64::from(u32::MAX)
            };
            bucket.full_at = now + std::time::Duration::from_secs_f64(refill.min(1e9));
            return Ok(());
        }
        let wait = if rate.per_second > 0.0 {
            ((1.0 - bucket.tokens) / rate.per_second).ceil()
        } else {
            f64::from(u32::MAX)
        };
        // In range: at least 1 and at most u32::MAX seconds.
        Err(wait.clamp(1.0, f64::from(u32::MAX)) as u64)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Makes room in a full map: drops every bucket that has refilled (the same
/// as no bucket), then, if that was not enough, the least recently used
/// tenth, so an attacker with many keys cannot grow the map, and the sweep
/// runs once per many inserts. Dropping a busy bucket only gives its subject
/// a fresh burst.
fn evict(buckets: &mut HashMap<(Action, Subject), Bucket>, now: Instant, max_keys: usize) {
    buckets.retain(|_, bucket| bucket.full_at > now);
    if buckets.len() < max_keys {
        return;
    }
    let mut times: Vec<Instant> = buckets.values().map(|bucket| bucket.at).collect();
    let cut = (times.len() / 10).max(1).min(times.len() - 1);
    let (_, threshold, _) = times.select_nth_unstable(cut);
    let threshold = *threshold;
    buckets.retain(|_, bucket| bucket.at >= threshold);
    if buckets.len() >= max_keys {
        // Every bucket was touched at the same instant: drop any one.
        if let Some(key) = buckets.keys().next().cloned() {
            buckets.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn user(name: &str) -> Subject {
        Subject::User(name.into())
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(100);
        let rate = Rate::per_second(2, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take(Action::Send, user("a"), rate, t0), Ok(()));
        }
        assert_eq!(limiter.take(Action::Send, user("a"), rate, t0), Err(1));
        // Another subject and another action have their own buckets.
        assert_eq!(limiter.take(Action::Send, user("b"), rate, t0), Ok(()));
        assert_eq!(limiter.take(Action::SignIn, user("a"), rate, t0), Ok(()));
        let later = t0 + Duration::from_millis(500);
        assert_eq!(limiter.take(Action::Send, user("a"), rate, later), Ok(()));
        assert_eq!(limiter.take(Action::Send, user("a"), rate, later), Err(1));
        let slow = Rate::per_minute(1, 1);
        assert_eq!(
            limiter.take(Action::CreateRoom, user("a"), slow, t0),
            Ok(())
        );
        assert_eq!(
            limiter.take(Action::CreateRoom, user("a"), slow, t0),
            Err(60)
        );
    }

    #[test]
    fn the_map_stays_bounded() {
        let limiter = RateLimiter::new(50);
        let rate = Rate::per_second(1, 1);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            limiter
                .take(Action::Send, user(&i.to_string()), rate, now)
                .unwrap();
            assert!(limiter.len() <= 50);
        }
        // The most recent subject is still limited.
        let now = t0 + Duration::from_millis(9_999);
        assert!(limiter.take(Action::Send, user("9999"), rate, now).is_err());
    }
}
