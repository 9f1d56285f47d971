//! Durable storage: the Raft log and the chat state machine in one RocksDB.
//!
//! - [`keys`]: key encoding and column family names.
//! - [`log_store`]: openraft's `RaftLogStorage` (log entries, vote, purge).
//! - [`durability`]: which of the log is on disk, for a leader that
//!   acknowledges its own appends before syncing them.
//! - [`state_machine`]: openraft's `RaftStateMachine`: applies commands, builds
//!   and installs snapshots.
//! - [`apply`]: the chat logic of applying one command to a write batch.
//! - [`query`]: read-only views of the chat state used by the gRPC handlers.
//! - [`snapshot`]: the on-disk snapshot file format.
//! - [`format`]: the state's layout number, so another build's data is refused, not misread.
//!
//! One DB with column families rather than two DBs: there is a single WAL, so a
//! synced write (a log append, a vote) also makes durable every state machine
//! write before it, and recovery always sees a prefix of history.

// openraft's storage traits return its `StorageError` (224 bytes) by value;
// the helpers here use the same type so `?` flows into the trait methods
// without a conversion at every call. Errors are rare; the size is irrelevant.
#![allow(clippy::result_large_err)]

pub mod apply;
pub mod durability;
pub mod format;
pub mod keys;
pub mod log_store;
pub mod query;
pub mod snapshot;
pub mod state_machine;

use std::path::Path;
use std::sync::Arc;

use openraft::{AnyError, StorageIOError};
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Options};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::typ::{NodeId, StorageError};

pub use durability::Durability;
pub use log_store::{Flusher, LogStore};
pub use state_machine::StateMachine;

/// A shared handle on the node's RocksDB.
#[derive(Clone)]
pub struct Db {
    inner: Arc<rocksdb::DB>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.inner.path()).finish()
    }
}

impl Db {
    /// Opens (or creates) the DB under `dir` with every column family.
    ///
    /// # Errors
    /// When RocksDB cannot open the directory (permissions, corruption, another
    /// process holds its lock), or it holds state in another build's layout ([`format`]).
    pub fn open(dir: &Path) -> Result<Self, format::OpenError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Recovery replays the WAL up to the first damaged record and stops: we
        // keep a consistent prefix rather than refuse to start after a power cut.
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        opts.increase_parallelism(2);
        // Reuse old WAL files instead of growing new ones: an fdatasync of an
        // already-allocated file need not update the inode, so it can skip the
        // filesystem journal (RocksDB's own advice). Its effect on our tail is
        // not established yet (BENCHMARKS.md: one run better, one not).
        // Compatible with point-in-time recovery: recycled records carry their
        // log number, so old data reads as the end of the log.
        opts.set_recycle_log_file_num(4);
        let cfs = keys::cf::ALL.iter().map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
        let db = Self { inner: Arc::new(DB::open_cf_descriptors(&opts, dir, cfs)?) };
        format::check_or_mark(&db)?;
        Ok(db)
    }

    /// A handle that does not keep the DB open (see [`WeakDb`]).
    pub fn downgrade(&self) -> WeakDb {
        WeakDb(Arc::downgrade(&self.inner))
    }

    pub fn raw(&self) -> &rocksdb::DB {
        &self.inner
    }

    /// A column family handle.
    ///
    /// # Panics
    /// If `name` is not one of [`keys::cf::ALL`], all of which `open` creates: a programming error.
    pub fn cf(&self, name: &str) -> &ColumnFamily {
        self.inner.cf_handle(name).unwrap_or_else(|| panic!("column family {name} is created at open"))
    }

    /// Reads and decodes one value.
    pub fn get<T: DeserializeOwned>(&self, cf: &str, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.inner.get_pinned_cf(self.cf(cf), key).map_err(read_err)? {
            None => Ok(None),
            Some(bytes) => decode(&bytes).map(Some),
        }
    }

    /// A point-in-time view for queries that read more than one key: every read
    /// through it sees the same applied state, even while later entries are
    /// being applied (without it, a scan followed by lookups can see half of a
    /// command — found by the chaos checker: a read showing one of two
    /// messages an atomic delete removed).
    pub fn view(&self) -> View<'_> {
        View { db: self, snapshot: self.inner.snapshot() }
    }

    /// Writes one value and syncs the WAL before returning (for Raft's own records).
    pub fn put_synced<T: Serialize>(&self, cf: &str, key: &[u8], value: &T) -> Result<(), StorageError> {
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        self.inner.put_cf_opt(self.cf(cf), key, encode(value), &opts).map_err(write_err)
    }

    pub fn path(&self) -> &Path {
        self.inner.path()
    }

    /// Syncs the WAL and stops RocksDB's background flushes and compactions,
    /// waiting for running ones: the last step before the process may exit.
    pub fn quiesce(&self) {
        if let Err(e) = self.inner.flush_wal(true) {
            tracing::warn!(error = %e, "final WAL sync");
        }
        self.inner.cancel_all_background_work(true);
    }
}

/// See [`Db::view`].
pub struct View<'a> {
    db: &'a Db,
    snapshot: rocksdb::Snapshot<'a>,
}

impl<'a> View<'a> {
    /// Reads and decodes one value as of the view.
    pub fn get<T: DeserializeOwned>(&self, cf: &str, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.snapshot.get_pinned_cf(self.db.cf(cf), key).map_err(read_err)? {
            None => Ok(None),
            Some(bytes) => decode(&bytes).map(Some),
        }
    }

    /// Iterates a column family as of the view.
    pub fn iterator(
        &self,
        cf: &str,
        opts: rocksdb::ReadOptions,
        mode: rocksdb::IteratorMode<'_>,
    ) -> rocksdb::DBIteratorWithThreadMode<'_, DB> {
        self.snapshot.iterator_cf_opt(self.db.cf(cf), opts, mode)
    }
}

/// A non-owning DB handle for threads that must never be the one to close
/// RocksDB: a DB closed on a detached thread can race process exit, and RocksDB
/// then aborts ("pthread lock: Invalid argument").
#[derive(Debug, Clone)]
pub struct WeakDb(std::sync::Weak<rocksdb::DB>);

impl WeakDb {
    pub fn upgrade(&self) -> Option<Db> {
        self.0.upgrade().map(|inner| Db { inner })
    }
}

/// Values are bincode: compact, fast, and stable for the types we store.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serialize(value).expect("bincode serialization of in-memory values cannot fail")
}

/// Decodes what [`encode`] wrote, and nothing else: bytes left over after the
/// value (which plain `bincode::deserialize` accepts) are an error, and no
/// length inside may claim more than [`MAX_DECODE`] bytes, so a hostile
/// payload can neither smuggle data nor make us allocate gigabytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .reject_trailing_bytes()
        .with_limit(MAX_DECODE)
        .deserialize(bytes)
        .map_err(|e| read_err(*e))
}

/// The most any decoded value may occupy (a Raft message's limit).
pub const MAX_DECODE: u64 = 64 << 20;

pub fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::<NodeId>::read(AnyError::new(&e)).into()
}

pub fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::<NodeId>::write(AnyError::new(&e)).into()
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;
    use crate::typ::TypeConfig;

    #[test]
    fn a_view_keeps_seeing_the_state_it_was_taken_at() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        let messages = keys::cf::MESSAGES;
        for id in [1u64, 2] {
            db.raw().put_cf(db.cf(messages), keys::index(id), encode(&id)).unwrap();
        }
        let view = db.view();
        // An atomic batch removing both, applied after the view was taken.
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete_cf(db.cf(messages), keys::index(1));
        batch.delete_cf(db.cf(messages), keys::index(2));
        db.raw().write(batch).unwrap();
        assert_eq!(view.get::<u64>(messages, &keys::index(1)).unwrap(), Some(1));
        assert_eq!(view.get::<u64>(messages, &keys::index(2)).unwrap(), Some(2));
        let scanned = view.iterator(messages, rocksdb::ReadOptions::default(), rocksdb::IteratorMode::Start).count();
        assert_eq!(scanned, 2);
        assert_eq!(db.view().get::<u64>(messages, &keys::index(1)).unwrap(), None);
    }

    #[test]
    fn decode_takes_exactly_what_encode_wrote() {
        let cmd = crate::command::Command::CloseSession { token_hash: [7; 32] };
        let bytes = encode(&cmd);
        assert_eq!(decode::<crate::command::Command>(&bytes).unwrap(), cmd);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode::<crate::command::Command>(&trailing).is_err(), "trailing bytes are refused");
        // 8 MB of zeros decoded as a CreateAccount with empty fields before this check.
        assert!(decode::<crate::command::Command>(&vec![0u8; 8 << 20]).is_err());
        // A string claiming 2^62 bytes is refused by the limit, not attempted.
        let mut huge = vec![0u8; 4];
        huge.extend_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(decode::<crate::command::Command>(&huge).is_err());
    }

    /// A fresh DB in a temp dir per case; the dir is the guard that keeps it alive.
    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().map_err(write_err)?;
            let db = Db::open(&dir.path().join("db")).map_err(write_err)?;
            let durability = Arc::new(Durability::default());
            let state =
                StateMachine::new(db.clone(), &dir.path().join("snapshots"), durability.clone()).map_err(write_err)?;
            // The flusher thread ends by itself once every LogStore clone is gone.
            let (log, _) = LogStore::new(db, 0, durability, crate::metrics::FlushMetrics::default());
            Ok((dir, log, state))
        }
    }

    /// openraft's own conformance suite for log stores and state machines:
    /// log state, truncation, purge, votes, membership, snapshots.
    #[test]
    fn passes_the_openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }
}
