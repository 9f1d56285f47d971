//! Growing delays after failed logins. After `free` failures for a username,
//! each further failure locks it for twice as long as the last (1 s, 2 s,
//! 4 s … up to `max`); a login during the lock is refused before any
//! password is checked. A success clears the record; records of quiet
//! usernames are forgotten after [`FORGET_AFTER`].
//!
//! Unknown usernames are tracked exactly like known ones, and a login for
//! one still computes an argon2 hash (see the login handler), so neither the
//! answer nor its timing says whether an account exists.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A username with no failure for this long starts over.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Usernames tracked at most; past it, forgotten records go first, then the oldest.
pub const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug)]
pub struct LoginThrottle {
    free: u32,
    max: Duration,
    /// A std Mutex: held for a map lookup or update, never across an await.
    records: Mutex<HashMap<String, Record>>,
}

impl LoginThrottle {
    pub fn new(free: u32, max: Duration) -> Self {
        Self { free, max, records: Mutex::default() }
    }

    /// May `username` try a password now?
    ///
    /// # Errors
    /// `ResourceExhausted` with the time left while it is locked.
    pub fn check(&self, username: &str, now: Instant) -> Result<()> {
        let records = self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match records.get(username).and_then(|r| r.locked_until) {
            Some(until) if until > now => {
                let left = until - now;
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                Err(Error::ResourceExhausted(format!("too many failed logins for {username:?}; try again in {secs} s")))
            }
            _ => Ok(()),
        }
    }

    /// Records a failed login; returns how long the username is now locked.
    pub fn failed(&self, username: &str, now: Instant) -> Duration {
        let mut records = self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if records.len() >= MAX_TRACKED && !records.contains_key(username) {
            records.retain(|_, r| now.duration_since(r.last_failure) < FORGET_AFTER);
            if records.len() >= MAX_TRACKED
                && let Some(oldest) = records.iter().min_by_key(|(_, r)| r.last_failure).map(|(k, _)| k.clone())
            {
                records.remove(&oldest);
            }
        }
        let record = records.entry(username.to_string()).or_insert(Record {
            failures: 0,
            last_failure: now,
            locked_until: None,
        });
        if now.duration_since(record.last_failure) >= FORGET_AFTER {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        let over = record.failures.saturating_sub(self.free);
        let lock =
            if over == 0 { Duration::ZERO } else { Duration::from_secs(1u64 << (over - 1).min(16)).min(self.max) };
        record.locked_until = (!lock.is_zero()).then(|| now + lock);
        lock
    }

    /// A successful login clears the username's record.
    pub fn succeeded(&self, username: &str) {
        self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(username);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_after_the_free_failures_and_a_success_clears_them() {
        let throttle = LoginThrottle::new(3, Duration::from_secs(30));
        let t0 = Instant::now();
        let locks: Vec<u64> = (0..9).map(|_| throttle.failed("alice", t0).as_secs()).collect();
        assert_eq!(locks, [0, 0, 0, 1, 2, 4, 8, 16, 30]);
        let err = throttle.check("alice", t0 + Duration::from_secs(10)).unwrap_err();
        assert!(matches!(err, Error::ResourceExhausted(_)) && err.to_string().contains("try again in 20 s"), "{err}");
        assert!(throttle.check("alice", t0 + Duration::from_secs(31)).is_ok(), "the lock ends");
        assert!(throttle.check("bob", t0).is_ok(), "per username");
        throttle.succeeded("alice");
        assert_eq!(throttle.failed("alice", t0), Duration::ZERO, "a success starts over");
    }

    #[test]
    fn old_failures_are_forgotten() {
        let throttle = LoginThrottle::new(1, Duration::from_secs(30));
        let t0 = Instant::now();
        throttle.failed("alice", t0);
        assert_eq!(throttle.failed("alice", t0 + FORGET_AFTER), Duration::ZERO);
    }

    #[test]
    fn the_map_is_bounded() {
        let throttle = LoginThrottle::new(3, Duration::from_secs(30));
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED + 10 {
            throttle.failed(&format!("u{i}"), t0 + Duration::from_micros(i as u64));
        }
        assert_eq!(throttle.records.lock().unwrap().len(), MAX_TRACKED);
    }
}
