//! Which of the local log is on disk, for a leader that writes its own log in
//! parallel with replicating it (Raft thesis §10.2.1).
//!
//! Why: openraft 0.9 awaits the leader's log flush before it replicates the
//! new entries, so every write paid the leader's fsync and then the
//! follower's, one after the other. So the log store acknowledges the
//! leader's *own* new entries to openraft as soon as they are written (they
//! are in the OS, so a process crash keeps them), and syncs them in the
//! background. openraft then counts the leader toward the commit quorum
//! before its copy is on disk. What keeps every write durable on a majority
//! before anyone can see it is this tracker, consulted in two places:
//!
//! 1. the state machine applies an entry only once the local log is durable
//!    through it — so a client is answered, and a read is served, only after
//!    the leader's copy and a quorum's are on disk;
//! 2. an AppendEntries tells a follower a commit index only once the local log
//!    is durable through it — so no follower applies an entry the leader could
//!    still lose.
//!
//! An entry the leader loses to a power failure before its sync was thus
//! never applied anywhere nor acknowledged: like any uncommitted entry, the
//! next leader keeps or drops it. Entries a follower appends are synced before
//! openraft hears of them, as before, and are never tracked here.

use std::collections::VecDeque;
use std::sync::Mutex;

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::watch;

/// Appends acknowledged before their sync, and how far the syncs have come.
#[derive(Debug)]
pub struct Durability {
    /// Unsynced appends in order: (first index, ticket). Tickets increase.
    unsynced: Mutex<Unsynced>,
    /// The highest ticket whose append is synced.
    synced: watch::Sender<u64>,
    /// Seconds each `durable_through` waited (zero when it did not).
    waits: Histogram,
}

#[derive(Debug, Default)]
struct Unsynced {
    appends: VecDeque<(u64, u64)>,
    last_ticket: u64,
}

impl Default for Durability {
    fn default() -> Self {
        Self::new(Histogram::new([0.0]))
    }
}

impl Durability {
    /// A tracker that records how long each wait took in `waits`.
    pub fn new(waits: Histogram) -> Self {
        Self { unsynced: Mutex::default(), synced: watch::Sender::new(0), waits }
    }

    /// Records an append starting at log index `first`, written but not yet
    /// synced. Returns its ticket, for [`Durability::synced`].
    pub fn written(&self, first: u64) -> u64 {
        let mut unsynced = self.lock();
        unsynced.last_ticket += 1;
        let ticket = unsynced.last_ticket;
        unsynced.appends.push_back((first, ticket));
        ticket
    }

    /// Every append up to `ticket` is synced.
    pub fn synced(&self, ticket: u64) {
        self.synced.send_if_modified(|synced| {
            let newer = ticket > *synced;
            *synced = (*synced).max(ticket);
            newer
        });
    }

    /// Waits until the local log is durable through `index`. Returns at once
    /// when no unsynced append holds an entry at or below it.
    pub async fn durable_through(&self, index: u64) {
        let Some(ticket) = self.ticket_covering(index) else {
            self.waits.observe(0.0);
            return;
        };
        let started = std::time::Instant::now();
        let mut synced = self.synced.subscribe();
        // The sender lives in `self`, which outlives this call: never closed.
        let _ = synced.wait_for(|synced| *synced >= ticket).await;
        self.waits.observe(started.elapsed().as_secs_f64());
    }

    /// The ticket to wait for before `index` is durable: the latest unsynced
    /// append that starts at or below it (appends before it are synced no
    /// later, as one sync covers every write before it).
    fn ticket_covering(&self, index: u64) -> Option<u64> {
        let synced = *self.synced.borrow();
        let mut unsynced = self.lock();
        while unsynced.appends.front().is_some_and(|&(_, ticket)| ticket <= synced) {
            unsynced.appends.pop_front();
        }
        unsynced.appends.iter().rev().find(|&&(first, _)| first <= index).map(|&(_, ticket)| ticket)
    }

    /// How many appends were ever recorded as written ahead of their sync.
    #[cfg(test)]
    pub fn written_ahead(&self) -> u64 {
        self.lock().last_ticket
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Unsynced> {
        self.unsynced.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// Whether `durable_through(index)` returns before `synced` is called:
    /// polled once, without waiting.
    fn already_durable(d: &Durability, index: u64) -> bool {
        use futures::FutureExt;
        d.durable_through(index).now_or_never().is_some()
    }

    #[test]
    fn nothing_written_ahead_means_everything_is_durable() {
        let d = Durability::default();
        assert!(already_durable(&d, 0));
        assert!(already_durable(&d, u64::MAX));
    }

    #[test]
    fn an_entry_is_durable_once_the_append_holding_it_is_synced() {
        let d = Durability::default();
        let first = d.written(10); // entries 10..=14
        let second = d.written(15); // entries 15..
        assert!(already_durable(&d, 9), "below every unsynced append");
        assert!(!already_durable(&d, 10));
        assert!(!already_durable(&d, 20));
        d.synced(first);
        assert!(already_durable(&d, 14));
        assert!(!already_durable(&d, 15));
        d.synced(second);
        assert!(already_durable(&d, 1_000));
    }

    #[test]
    fn a_sync_covers_every_append_before_it() {
        let d = Durability::default();
        d.written(1);
        let last = d.written(2);
        d.synced(last);
        assert!(already_durable(&d, 1));
        // An older ticket reported late does not move the mark back.
        d.synced(1);
        assert!(already_durable(&d, 2));
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_the_sync_lands() {
        let d = Arc::new(Durability::default());
        let ticket = d.written(7);
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.durable_through(7).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        d.synced(ticket);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken by the sync").unwrap();
    }
}
