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
    let backed_up = db.get::<LogId>(cf::META, keys::meta::LAST_APPLIED).map_err(|e| storage(e.to_string()))?;
    let index = backed_up.map_or(0, |l| l.index).max(1);
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
