//! Abuse limits of the public API. Every caller of the public port may be a
//! stranger; what they can make a node spend is bounded here, and going past
//! a bound is answered RESOURCE_EXHAUSTED naming the limit.
//!
//! - [`hashing`]: argon2 work (sign-ups, logins) at most a few at a time, a bounded queue behind.
//! - [`logins`]: growing delays after failed logins, per username, whether it exists or not.
//! - [`subscriptions`]: Subscribe streams per session and per node.
//! - [`metadata`]: request metadata size; decode and size failures as the right status.
//!
//! Sessions expire when unused ([`LimitsConfig::session_ttl`]) and are capped
//! per account; de-duplication records expire after a window: those live in
//! the replicated state (`Command::{OpenSession, RenewSession, Expire}`).
//!
//! These are per node: a client spreading attempts over members gets each
//! member's allowance (the cluster's members are few).

pub mod hashing;
pub mod logins;
pub mod metadata;
pub mod subscriptions;

use std::time::Duration;

/// Every limit, with the defaults a node starts with (each a flag of `chat-node`).
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// argon2 hashes computed at once (each takes ~19 MiB and a core for ~20 ms).
    /// Default: one core fewer than the machine has (at least one, at most 8),
    /// so a burst of logins never takes every core from Raft.
    pub hashing_concurrency: usize,
    /// Sign-ups and logins waiting for a hashing slot; more are refused.
    pub hashing_queue: usize,
    /// Failed logins for a username before delays start.
    pub login_free_failures: u32,
    /// The longest a username is locked after repeated failures.
    pub login_max_delay: Duration,
    /// Subscribe streams one session may hold open.
    pub subscribes_per_session: usize,
    /// Subscribe streams one node serves at once.
    pub subscribes_per_node: usize,
    /// A session unused for this long expires; each use moves its expiry
    /// (renewed in the log once less than half of it is left).
    pub session_ttl: Duration,
    /// Sessions one account may hold; logging in once more ends the oldest.
    pub max_sessions: u32,
    /// How long a SendMessage `request_id` is remembered for exactly-once retries.
    pub dedup_window: Duration,
    /// How often the leader sweeps expired sessions and de-duplication records.
    pub sweep_every: Duration,
    /// WatchStatus streams one node serves at once on each port (the public
    /// port's and the peer port's are counted apart).
    pub status_watches: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            hashing_concurrency: std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1))
                .clamp(1, 8),
            hashing_queue: 64,
            login_free_failures: 3,
            login_max_delay: Duration::from_secs(30),
            subscribes_per_session: 16,
            subscribes_per_node: 10_000,
            session_ttl: Duration::from_secs(24 * 3600),
            max_sessions: 16,
            dedup_window: Duration::from_secs(24 * 3600),
            sweep_every: Duration::from_secs(600),
            status_watches: 256,
        }
    }
}
