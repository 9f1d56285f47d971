//! `chat-node restore`: a data dir made from a backup, offline, that starts
//! as a new one-member cluster holding every account and message of the
//! backup, ready to grow through JoinCluster.
//!
//! The backup is a snapshot file ([`crate::store::snapshot`]). Restoring
//! installs it as a Raft snapshot would be installed, then rewrites what
//! makes it a *new* cluster: the membership is this node alone (at the
//! addresses it will advertise), the log is empty and purged through the
//! snapshot's index, and the snapshot is rebuilt from the result. So a
//! member that joins later is sent that snapshot — the restored state —
//! never a log that starts after it.
//!
//! The backup's applied index is kept as the new cluster's start: indexes
//! keep growing, and the ids of new messages continue after the restored
//! ones (the id counter is part of the state).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::RaftSnapshotBuilder;
use openraft::{CommittedLeaderId, Membership};

use crate::error::{Error, Result};
use crate::store::keys::{self, cf};
use crate::store::{Db, Durability, StateMachine, snapshot};
use crate::typ::{LogId, Node, NodeId, StoredMembership, Vote};

/// What a restore made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The log index the restored state stands at (the backup's).
    pub index: u64,
}

/// Makes `data_dir` (which must hold no data yet) a one-member cluster of
/// node `id` reached at `address`, holding the backup at `from`.
///
/// # Errors
/// A data dir that already holds a database, a file that is not a complete
/// backup (refused before anything is written to the data dir's state), or
/// storage errors.
pub async fn restore(from: &Path, data_dir: &Path, id: NodeId, address: Node) -> Result<Restored> {
    let db_dir = data_dir.join("db");
    if db_dir.exists() {
        return Err(Error::invalid(format!(
            "{} already holds a database: restore makes a new data dir, it never overwrites one",
            db_dir.display()
        )));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| storage(format!("creating {}: {e}", data_dir.display())))?;
    let db = Db::open(&db_dir).map_err(|e| storage(format!("opening RocksDB in {}: {e}", db_dir.display())))?;
    let outcome = install(&db, from, data_dir, id, address).await;
    if outcome.is_err() {
        // Leave no half-made data dir behind for a node to start on.
        drop(db);
        let _ = std::fs::remove_dir_all(&db_dir);
        let _ = std::fs::remove_dir_all(data_dir.join("snapshots"));
    }
    outcome
}

async fn install(db: &Db, from: &Path, data_dir: &Path, id: NodeId, address: Node) -> Result<Restored> {
    // 1. The state, as a snapshot install writes it (one batch, checked whole first).
    let batch = snapshot::read_into_batch(db, from).map_err(|e| Error::invalid(format!("{}: {e}", from.display())))?;
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    db.raw().write_opt(batch, &sync).map_err(|e| storage(e.to_string()))?;

    // 2. A new cluster of one, standing at the backup's index.
    // A backup taken while an entry was being applied holds its first
    // commands and a marker of how far it got. That marker speaks of the old
    // cluster's log: left in place it would make the new cluster skip
    // commands of its own entry at that index. The part-applied commands were
    // committed; the new cluster starts after them.
    let index = crate::store::query::applied_through(db).map_err(|e| storage(e.to_string()))?.max(1);
    db.raw().delete_cf(db.cf(cf::META), keys::meta::APPLYING).map_err(|e| storage(e.to_string()))?;
    let start = LogId::new(CommittedLeaderId::new(1, id), index);
    let membership = Membership::new(vec![BTreeSet::from([id])], BTreeMap::from([(id, address)]));
    let stored = StoredMembership::new(Some(start), membership);
    db.put_synced(cf::META, keys::meta::LAST_APPLIED, &start).map_err(|e| storage(e.to_string()))?;
    db.put_synced(cf::META, keys::meta::MEMBERSHIP, &stored).map_err(|e| storage(e.to_string()))?;
    db.put_synced(cf::RAFT, keys::raft::VOTE, &Vote::new(1, id)).map_err(|e| storage(e.to_string()))?;
    db.put_synced(cf::RAFT, keys::raft::COMMITTED, &Some(start)).map_err(|e| storage(e.to_string()))?;
    db.put_synced(cf::RAFT, keys::raft::LAST_PURGED, &start).map_err(|e| storage(e.to_string()))?;

    // 3. The snapshot a joining member is sent, built from exactly that.
    let durability = Arc::new(Durability::default());
    let mut state =
        StateMachine::new(db.clone(), &data_dir.join("snapshots"), durability).map_err(|e| storage(e.to_string()))?;
    let built = state.build_snapshot().await.map_err(|e| storage(e.to_string()))?;
    if built.meta.last_log_id != Some(start) {
        return Err(storage(format!("the rebuilt snapshot stands at {:?}, not {start:?}", built.meta.last_log_id)));
    }
    Ok(Restored { index })
}

fn storage(message: String) -> Error {
    Error::Storage(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::encode;

    /// A backup of a state caught mid-entry (entry 7 applied part-way):
    /// restored, it starts after that entry, with no marker left to make the
    /// new cluster's entry 7 skip commands.
    #[tokio::test]
    async fn a_backup_taken_mid_entry_restores_without_its_marker() {
        let work = tempfile::tempdir().unwrap();
        let old = Db::open(&work.path().join("old")).unwrap();
        old.put_synced(cf::META, keys::meta::LAST_APPLIED, &LogId::new(CommittedLeaderId::new(3, 1), 6)).unwrap();
        old.raw().put_cf(old.cf(cf::META), keys::meta::APPLYING, encode(&(7u64, 0usize))).unwrap();
        let file = work.path().join("mid.backup");
        snapshot::write(&old, &file, &[]).unwrap();

        let address = Node { addr: "127.0.0.1:2".into(), api: "127.0.0.1:1".into() };
        let restored = restore(&file, &work.path().join("new"), 0, address).await.unwrap();
        assert_eq!(restored.index, 7, "the new cluster starts after the part-applied entry");
        let db = Db::open(&work.path().join("new").join("db")).unwrap();
        assert_eq!(db.get::<(u64, usize)>(cf::META, keys::meta::APPLYING).unwrap(), None);
        assert_eq!(db.get::<LogId>(cf::META, keys::meta::LAST_APPLIED).unwrap().map(|l| l.index), Some(7));
    }
}
