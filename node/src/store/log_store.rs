//! The Raft log in RocksDB: openraft's `RaftLogStorage` and `RaftLogReader`.
//!
//! Durability: `append` writes the batch without syncing (so the entries are
//! readable at once, as openraft requires) and hands the completion callback
//! to a flusher thread, which syncs the WAL and acknowledges — keeping fsync
//! off the async runtime. The flusher would cover every append waiting with
//! one sync, but openraft 0.9 never has more than one waiting: its Raft task
//! awaits each append's flush before it does anything else (including
//! replicating the new entries). So it is one fsync per append, and what
//! groups writes is the proposer putting many commands in one entry.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::keys::{self, cf};
use super::{Db, decode, encode, read_err, write_err};
use crate::metrics::FlushMetrics;
use crate::typ::{Entry, LogId, StorageError, TypeConfig, Vote};

/// What the flusher thread is asked to do.
enum Flush {
    /// Acknowledge this append once the WAL holding it is synced.
    Append(LogFlushed<TypeConfig>),
    /// Sync what is pending, then end.
    Stop,
}

/// The log store. Cheap to clone: openraft asks for separate readers.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Db,
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
    pub fn new(db: Db, metrics: FlushMetrics) -> (Self, Flusher) {
        let (tx, rx) = mpsc::channel::<Flush>();
        let flush_db = db.downgrade();
        // A plain thread, not a tokio task: fsync blocks, and it must never
        // stall the runtime that drives Raft and gRPC.
        let thread = std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flush_loop(flush_db, rx, metrics))
            .expect("spawning the log flusher thread");
        (Self { db, flusher: tx.clone() }, Flusher { tx, thread: Some(thread) })
    }

    fn last_purged(&self) -> Result<Option<LogId>, StorageError> {
        self.db.get(cf::RAFT, keys::raft::LAST_PURGED)
    }
}

fn flush_loop(db: super::WeakDb, rx: mpsc::Receiver<Flush>, metrics: FlushMetrics) {
    let mut stopping = false;
    while !stopping && let Ok(first) = rx.recv() {
        let mut waiting = Vec::new();
        for request in std::iter::once(first).chain(rx.try_iter()) {
            match request {
                Flush::Append(callback) => waiting.push(callback),
                Flush::Stop => stopping = true,
            }
        }
        // Every entry of every waiting append was written before its callback
        // was queued, so this one sync covers them all.
        // Upgraded only while syncing: appends come from a live Raft, whose
        // LogStore holds the DB open, so this is never the last handle.
        let started = std::time::Instant::now();
        let result = match db.upgrade() {
            Some(db) => db.raw().flush_wal(true).map_err(std::io::Error::other),
            None => Err(std::io::Error::other("the database is closed")),
        };
        metrics.sync_seconds.observe(started.elapsed().as_secs_f64());
        metrics.appends_per_sync.observe(waiting.len() as f64);
        for callback in waiting {
            callback.log_io_completed(result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())));
        }
    }
}

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
        let from = keys::index(start);
        let mut entries = Vec::new();
        for item in self.db.raw().iterator_cf(self.db.cf(cf::LOG), IteratorMode::From(&from, Direction::Forward)) {
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
        let last_purged_log_id = self.last_purged()?;
        let last = self.db.raw().iterator_cf(self.db.cf(cf::LOG), IteratorMode::End).next();
        let last_log_id = match last {
            Some(item) => Some(decode::<Entry>(&item.map_err(read_err)?.1)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// Synced: a node must never vote twice in one term, even across a crash.
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.db.put_synced(cf::RAFT, keys::raft::VOTE, vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.db.get(cf::RAFT, keys::raft::VOTE)
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
        for entry in entries {
            batch.put_cf(&log, keys::index(entry.log_id.index), encode(&entry));
        }
        self.db.raw().write(batch).map_err(write_err)?;
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
