//! The chat state machine: openraft's `RaftStateMachine` over the state column families.
//!
//! Each entry is applied in its own `WriteBatch` together with the new
//! last-applied log id (and membership), so after any crash the state and
//! the point it reflects agree. Those writes are not synced: the log entries
//! they come from are, and replaying them is deterministic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use rocksdb::WriteBatch;
use tokio::io::AsyncSeekExt;
use tokio::sync::broadcast;

use super::apply::{self, Delivered};
use super::keys::{self, cf};
use super::{Db, decode, encode, write_err};
use crate::command::{Applied, CommandResult};
use crate::typ::{Entry, LogId, NodeId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// How many delivered messages a slow subscriber may fall behind before it
/// re-reads from the DB instead (see the chat service's Subscribe).
const EVENT_BUFFER: usize = 4096;

#[derive(Debug, Clone)]
pub struct StateMachine {
    db: Db,
    snapshot_dir: PathBuf,
    events: broadcast::Sender<Arc<Delivered>>,
}

impl StateMachine {
    /// # Errors
    /// When the snapshot directory cannot be created.
    pub fn new(db: Db, snapshot_dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(snapshot_dir)?;
        // A crash while building leaves a partial file behind; it is never read, so drop it.
        for file in std::fs::read_dir(snapshot_dir)?.flatten() {
            if file.path().extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(file.path());
            }
        }
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Ok(Self { db, snapshot_dir: snapshot_dir.to_path_buf(), events })
    }

    /// Messages as they are applied, for Subscribe.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Delivered>> {
        self.events.subscribe()
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn snapshot_path(&self, snapshot_id: &str) -> PathBuf {
        self.snapshot_dir.join(format!("{snapshot_id}.snap"))
    }

    /// Records `meta` as the current snapshot and removes every older snapshot file.
    fn set_current_snapshot(&self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.db.put_synced(cf::RAFT, keys::raft::SNAPSHOT_META, meta)?;
        let keep = self.snapshot_path(&meta.snapshot_id);
        if let Ok(dir) = std::fs::read_dir(&self.snapshot_dir) {
            for file in dir.flatten() {
                if file.path() != keep && file.path().extension().is_some_and(|e| e == "snap") {
                    let _ = std::fs::remove_file(file.path());
                }
            }
        }
        Ok(())
    }
}

fn snapshot_err(meta: Option<&SnapshotMeta>, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::<NodeId>::write_snapshot(meta.map(|m| m.signature()), openraft::AnyError::new(&e)).into()
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.db.get::<LogId>(cf::META, keys::meta::LAST_APPLIED)?;
        let membership = self.db.get::<StoredMembership>(cf::META, keys::meta::MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut results = Vec::new();
        for entry in entries {
            let mut batch = WriteBatch::default();
            let mut delivered = None;
            let result = match &entry.payload {
                EntryPayload::Blank => Ok(Applied::Done),
                EntryPayload::Normal(cmd) => {
                    let outcome = apply::apply(&self.db, &mut batch, entry.log_id.index, cmd)?;
                    delivered = outcome.delivered;
                    outcome.result
                }
                EntryPayload::Membership(m) => {
                    let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                    batch.put_cf(self.db.cf(cf::META), keys::meta::MEMBERSHIP, encode(&stored));
                    Ok(Applied::Done)
                }
            };
            batch.put_cf(self.db.cf(cf::META), keys::meta::LAST_APPLIED, encode(&entry.log_id));
            self.db.raw().write(batch).map_err(write_err)?;
            if let Some(d) = delivered {
                // No receivers is fine: nobody is subscribed right now.
                let _ = self.events.send(Arc::new(d));
            }
            results.push(result);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        // Anonymous: the OS removes it if we crash mid-transfer.
        let file = tempfile::tempfile_in(&self.snapshot_dir).map_err(|e| snapshot_err(None, e))?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        tracing::info!(snapshot = %meta.snapshot_id, last_log_id = ?meta.last_log_id, "installing snapshot");
        let path = self.snapshot_path(&meta.snapshot_id);
        let copy = async {
            snapshot.seek(std::io::SeekFrom::Start(0)).await?;
            let mut out = tokio::fs::File::create(&path).await?;
            tokio::io::copy(&mut snapshot, &mut out).await?;
            out.sync_all().await
        };
        copy.await.map_err(|e| snapshot_err(Some(meta), e))?;
        let db = self.db.clone();
        let read_path = path.clone();
        let batch = tokio::task::spawn_blocking(move || super::snapshot::read_into_batch(&db, &read_path))
            .await
            .map_err(|e| snapshot_err(Some(meta), e))?
            .map_err(|e| snapshot_err(Some(meta), e))?;
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        self.db.raw().write_opt(batch, &opts).map_err(write_err)?;
        self.set_current_snapshot(meta)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let Some(meta) = self.db.get::<SnapshotMeta>(cf::RAFT, keys::raft::SNAPSHOT_META)? else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(self.snapshot_path(&meta.snapshot_id))
            .await
            .map_err(|e| snapshot_err(Some(&meta), e))?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(file) }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let db = self.db.clone();
        let tmp = self.snapshot_dir.join(format!("building-{}.tmp", uuid::Uuid::new_v4()));
        let tmp_for_writer = tmp.clone();
        let described = tokio::task::spawn_blocking(move || {
            super::snapshot::write(&db, &tmp_for_writer, &[keys::meta::LAST_APPLIED, keys::meta::MEMBERSHIP])
        })
        .await
        .map_err(|e| snapshot_err(None, e))?
        .map_err(|e| snapshot_err(None, e))?;
        let last_log_id = described[0].as_deref().map(decode::<LogId>).transpose()?;
        let last_membership = described[1].as_deref().map(decode::<StoredMembership>).transpose()?.unwrap_or_default();
        let snapshot_id = match last_log_id {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, uuid::Uuid::new_v4().simple()),
            None => format!("empty-{}", uuid::Uuid::new_v4().simple()),
        };
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
        let path = self.snapshot_path(&meta.snapshot_id);
        std::fs::rename(&tmp, &path).map_err(|e| snapshot_err(Some(&meta), e))?;
        self.set_current_snapshot(&meta)?;
        tracing::info!(snapshot = %meta.snapshot_id, "built snapshot");
        let file = tokio::fs::File::open(&path).await.map_err(|e| snapshot_err(Some(&meta), e))?;
        Ok(Snapshot { meta, snapshot: Box::new(file) })
    }
}
