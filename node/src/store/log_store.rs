//! The Raft log in RocksDB: openraft's `RaftLogStorage` and `RaftLogReader`.
//!
//! Durability: `append` writes the batch without syncing (so the entries are
//! readable at once, as openraft requires) and a flusher thread syncs the WAL
//! — keeping fsync off the async runtime. One sync covers every append
//! waiting for it.
//!
//! When is an append acknowledged to openraft? A follower's, once synced: it
//! answers the leader only after that. The leader's own new entries, as soon
//! as they are written: openraft 0.9 replicates nothing until the leader's
//! append is acknowledged, so waiting for the sync would put the leader's
//! fsync and the followers' one after the other on every write. What keeps
//! those entries from being seen before they are on disk is [`Durability`]
//! (see there for the argument).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, mpsc};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::durability::Durability;
use super::keys::{self, cf};
use super::{Db, decode, encode, read_err, write_err};
use crate::metrics::FlushMetrics;
use crate::typ::{Entry, LogId, NodeId, StorageError, TypeConfig, Vote};

/// What the flusher thread is asked to do.
enum Flush {
    /// Acknowledge this append once the WAL holding it is synced.
    Append(LogFlushed<TypeConfig>),
    /// An append already acknowledged (the leader's own): report its
    /// [`Durability`] ticket synced.
    WrittenAhead(u64),
    /// Sync what is pending, then end.
    Stop,
}

/// The log store. Cheap to clone: openraft asks for separate readers.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Db,
    /// This node: entries it appends as leader are acknowledged before their sync.
    id: NodeId,
    /// The vote as last saved or read: whose term it is.
    vote: Option<Vote>,
    durability: Arc<Durability>,
    flusher: mpsc::Sender<Flush>,
}

/// Owns the flusher thread. [`Flusher::stop`] ends and joins it, so that the
/// thread's DB handle is gone before the process exits: RocksDB aborts
/// ("pthread lock: Invalid argument") if a DB is still closing during exit.
#[derive(Debug)]
pub struct Flusher {
    tx: mpsc::Sender<Flush>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    /// Syncs whatever is pending and waits for the thread to end. Call after Raft has stopped.
    pub fn stop(mut self) {
        let _ = self.tx.send(Flush::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl LogStore {
    /// The log of node `id`. `durability` is shared with the state machine
    /// and the network, which wait on it (see [`Durability`]).
    pub fn new(db: Db, id: NodeId, durability: Arc<Durability>, metrics: FlushMetrics) -> (Self, Flusher) {
        let (tx, rx) = mpsc::channel::<Flush>();
        let flush_db = db.downgrade();
        let flush_durability = durability.clone();
        // A plain thread, not a tokio task: fsync blocks, and it must never
        // stall the runtime that drives Raft and gRPC.
        let thread = std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flush_loop(flush_db, rx, &flush_durability, metrics))
            .expect("spawning the log flusher thread");
        (Self { db, id, vote: None, durability, flusher: tx.clone() }, Flusher { tx, thread: Some(thread) })
    }

    /// The leader id of the current term if this node is its leader: entries
    /// carrying it are this node's own proposals.
    fn leading(&self) -> Option<openraft::LeaderId<NodeId>> {
        let vote = self.vote.as_ref()?;
        (vote.is_committed() && vote.leader_id().voted_for() == Some(self.id)).then_some(*vote.leader_id())
    }
}

fn last_purged(db: &Db) -> Result<Option<LogId>, StorageError> {
    db.get(cf::RAFT, keys::raft::LAST_PURGED)
}

/// The id of the last entry in the log of `db`, or of the last purged one if
/// none is left. (openraft keeps this in memory but does not expose it; a
/// pre-vote compares it.)
///
/// # Errors
/// When the log cannot be read.
pub fn last_log_id(db: &Db) -> Result<Option<LogId>, StorageError> {
    match db.raw().iterator_cf(db.cf(cf::LOG), IteratorMode::End).next() {
        Some(item) => Ok(Some(decode::<Entry>(&item.map_err(read_err)?.1)?.log_id)),
        None => last_purged(db),
    }
}

fn flush_loop(db: super::WeakDb, rx: mpsc::Receiver<Flush>, durability: &Durability, metrics: FlushMetrics) {
    let mut stopping = false;
    while !stopping && let Ok(first) = rx.recv() {
        let mut waiting = Vec::new();
        let (mut written_ahead, mut appends) = (None, 0u32);
        for request in std::iter::once(first).chain(rx.try_iter()) {
            match request {
                Flush::Append(callback) => waiting.push(callback),
                Flush::WrittenAhead(ticket) => written_ahead = Some(ticket),
                Flush::Stop => {
                    stopping = true;
                    continue;
                }
            }
            appends += 1;
        }
        // Every entry of every waiting append was written before its callback
        // was queued, so this one sync covers them all.
        // Upgraded only while syncing: appends come from a live Raft, whose
        // LogStore holds the DB open, so this is never the last handle.
        let started = std::time::Instant::now();
        let (result, closed) = match db.upgrade() {
            Some(db) => (db.raw().flush_wal(true).map_err(std::io::Error::other), false),
            None => (Err(std::io::Error::other("the database is closed")), true),
        };
        metrics.sync_seconds.observe(started.elapsed().as_secs_f64());
        metrics.appends_per_sync.observe(f64::from(appends));
        if let Some(ticket) = written_ahead {
            match &result {
                Ok(()) => durability.synced(ticket),
                // Every handle is gone, so Raft and the state machine are:
                // nothing can apply these entries any more. Not a failed sync.
                Err(_) if closed => {}
                // Raft already counts these entries as written. After a failed
                // fsync the kernel may have dropped them (and a retry can
                // report success anyway), so the only safe course is to start
                // again from what is on disk — as PostgreSQL does.
                Err(e) => {
                    tracing::error!(error = %e, "syncing the Raft log failed; aborting to recover from disk");
                    std::process::abort();
                }
            }
        }
        for callback in waiting {
            callback.log_io_completed(result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())));
        }
    }
}

/// Ranges at most this long are read key by key. Replication and apply read
/// one or a few entries per write at low load, and a point lookup costs a
/// fraction of setting up an iterator (13–21 µs per read, BENCHMARKS.md).
const POINT_READS: u64 = 16;

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => *i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Some(i.saturating_add(1)),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        let log = self.db.cf(cf::LOG);
        let mut entries = Vec::new();
        if let Some(end) = end.filter(|end| end.saturating_sub(start) <= POINT_READS) {
            // Missing keys are skipped, as the iterator would: a range may
            // start below the first entry or end past the last.
            for index in start..end {
                if let Some(value) = self.db.raw().get_pinned_cf(log, keys::index(index)).map_err(read_err)? {
                    entries.push(decode::<Entry>(&value)?);
                }
            }
            return Ok(entries);
        }
        let from = keys::index(start);
        for item in self.db.raw().iterator_cf(log, IteratorMode::From(&from, Direction::Forward)) {
            let (key, value) = item.map_err(read_err)?;
            if !range.contains(&keys::decode_index(&key)) {
                break;
            }
            entries.push(decode::<Entry>(&value)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        Ok(LogState { last_purged_log_id: last_purged(&self.db)?, last_log_id: last_log_id(&self.db)? })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// Synced: a node must never vote twice in one term, even across a crash.
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.db.put_synced(cf::RAFT, keys::raft::VOTE, vote)?;
        self.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.vote = self.db.get(cf::RAFT, keys::raft::VOTE)?;
        Ok(self.vote)
    }

    /// Not synced: losing it only means re-applying entries that are in the log anyway.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.db.raw().put_cf(self.db.cf(cf::RAFT), keys::raft::COMMITTED, encode(&committed)).map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.db.get::<Option<LogId>>(cf::RAFT, keys::raft::COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let log = self.db.cf(cf::LOG);
        let mut batch = WriteBatch::default();
        let leading = self.leading();
        let (mut first, mut own) = (None, leading.is_some());
        for entry in entries {
            first.get_or_insert(entry.log_id.index);
            own &= Some(entry.log_id.leader_id) == leading;
            batch.put_cf(&log, keys::index(entry.log_id.index), encode(&entry));
        }
        self.db.raw().write(batch).map_err(write_err)?;
        if let (Some(first), true) = (first, own) {
            // Registered before openraft hears of it, so anything that commits
            // these entries also finds them unsynced until the flusher is done.
            let ticket = self.durability.written(first);
            callback.log_io_completed(Ok(()));
            // A stopped flusher means the node is shutting down; the entries
            // stay unsynced, and unapplied, like those of any crash.
            let _ = self.flusher.send(Flush::WrittenAhead(ticket));
            return Ok(());
        }
        // The flusher acknowledges once the WAL holding this batch is synced.
        if let Err(mpsc::SendError(Flush::Append(callback))) = self.flusher.send(Flush::Append(callback)) {
            callback.log_io_completed(Err(std::io::Error::other("log flusher stopped")));
        }
        Ok(())
    }

    /// Not synced by itself: the next append's sync covers it (one WAL, in order),
    /// and until then the conflicting entries are not acknowledged to anyone.
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "truncating log");
        self.db
            .raw()
            .delete_range_cf(self.db.cf(cf::LOG), keys::index(log_id.index), keys::index(u64::MAX))
            .map_err(write_err)
    }

    /// Records the purge point first, then deletes: a crash in between leaves
    /// entries below the purge point, which `get_log_state` ignores.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "purging log");
        self.db.put_synced(cf::RAFT, keys::raft::LAST_PURGED, &log_id)?;
        self.db
            .raw()
            .delete_range_cf(self.db.cf(cf::LOG), keys::index(0), keys::index(log_id.index + 1))
            .map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::metrics::FlushMetrics;

    fn entries(term: u64, leader: NodeId, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        indexes
            .map(|i| Entry {
                log_id: LogId::new(CommittedLeaderId::new(term, leader), i),
                payload: EntryPayload::Blank,
            })
            .collect()
    }

    /// Node 1's log, its durability tracker and its flusher.
    fn log_of_node_1() -> (tempfile::TempDir, LogStore, Arc<Durability>, Flusher) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        let durability = Arc::new(Durability::default());
        let (log, flusher) = LogStore::new(db, 1, durability.clone(), FlushMetrics::default());
        (dir, log, durability, flusher)
    }

    #[tokio::test]
    async fn only_the_leaders_own_new_entries_are_acknowledged_before_their_sync() {
        let (_dir, mut log, durability, flusher) = log_of_node_1();
        // Follower of node 2 in term 1: synced first, never written ahead.
        log.save_vote(&Vote::new_committed(1, 2)).await.unwrap();
        log.blocking_append(entries(1, 2, 1..=3)).await.unwrap();
        assert_eq!(durability.written_ahead(), 0);
        // Only a candidate in term 2 (vote not committed): still synced first.
        log.save_vote(&Vote::new(2, 1)).await.unwrap();
        log.blocking_append(entries(2, 1, 4..=4)).await.unwrap();
        assert_eq!(durability.written_ahead(), 0);
        // Leader of term 2: its own entries are written ahead...
        log.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
        log.blocking_append(entries(2, 1, 5..=6)).await.unwrap();
        assert_eq!(durability.written_ahead(), 1);
        // ...but not entries of another leader's term that it is sent.
        log.blocking_append(entries(1, 2, 7..=7)).await.unwrap();
        assert_eq!(durability.written_ahead(), 1);
        // The flusher syncs what was written ahead.
        tokio::time::timeout(std::time::Duration::from_secs(5), durability.durable_through(6)).await.unwrap();
        flusher.stop();
    }

    #[tokio::test]
    async fn the_term_it_leads_is_known_again_after_a_restart() {
        let (dir, mut log, _, flusher) = log_of_node_1();
        log.save_vote(&Vote::new_committed(3, 1)).await.unwrap();
        drop(log);
        flusher.stop();
        let db = Db::open(&dir.path().join("db")).unwrap();
        let durability = Arc::new(Durability::default());
        let (mut log, flusher) = LogStore::new(db, 1, durability.clone(), FlushMetrics::default());
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new_committed(3, 1)));
        log.blocking_append(entries(3, 1, 1..=1)).await.unwrap();
        assert_eq!(durability.written_ahead(), 1);
        flusher.stop();
    }

    #[tokio::test]
    async fn short_and_long_ranges_read_the_same_entries() {
        let (_dir, mut log, _durability, flusher) = log_of_node_1();
        log.save_vote(&Vote::new_committed(1, 2)).await.unwrap();
        log.blocking_append(entries(1, 2, 1..=40)).await.unwrap();
        let indexes = |found: Vec<Entry>| found.iter().map(|e| e.log_id.index).collect::<Vec<_>>();
        // Point reads (at most POINT_READS long), also around the ends of the log.
        assert_eq!(indexes(log.try_get_log_entries(3..6).await.unwrap()), vec![3, 4, 5]);
        assert_eq!(indexes(log.try_get_log_entries(0..3).await.unwrap()), vec![1, 2]);
        assert_eq!(indexes(log.try_get_log_entries(38..=45).await.unwrap()), vec![38, 39, 40]);
        assert_eq!(indexes(log.try_get_log_entries(41..43).await.unwrap()), Vec::<u64>::new());
        // The iterator (longer or unbounded ranges) agrees.
        assert_eq!(indexes(log.try_get_log_entries(2..40).await.unwrap()), (2..40).collect::<Vec<_>>());
        assert_eq!(indexes(log.try_get_log_entries(30..).await.unwrap()), (30..=40).collect::<Vec<_>>());
        let one_too_long = log.try_get_log_entries(10..=10 + POINT_READS).await.unwrap();
        assert_eq!(indexes(one_too_long), (10..=10 + POINT_READS).collect::<Vec<_>>());
        flusher.stop();
    }
}
