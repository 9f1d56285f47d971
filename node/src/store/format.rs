//! Which layout of the chat state a data dir or a snapshot holds.
//!
//! Until a first release the state's key layout may change between builds
//! without a migration (README, "Compatibility"). Read by a build that
//! expects another layout, a data dir or a snapshot would not fail loudly:
//! pages would come back empty or wrong, or a read would fail to decode
//! deep inside a request. So the state carries its layout's number in
//! `meta` (which every snapshot and backup copies), and a node refuses a
//! data dir, a snapshot sent by a leader, or a backup to restore whose
//! number is not its own — by name, before serving anything from it.

use super::Db;
use super::keys::{self, cf};

/// The layout this build reads and writes.
///
/// - 1 (no marker): conversations as `(pair, id) → ()`, each message looked
///   up by id.
/// - 2: conversations newest first, `(pair, !id) → message`.
pub const CURRENT: u32 = 2;

/// A data dir or snapshot this build cannot read.
#[derive(Debug, thiserror::Error)]
#[error("{what} holds chat state in layout {found}, this build reads layout {CURRENT}: it was written by another build; recreate the member (README, \"Compatibility\")", found = found.map_or_else(|| "1 (no marker)".to_owned(), |n| n.to_string()))]
pub struct Mismatch {
    pub what: String,
    pub found: Option<u32>,
}

/// Checks a just-opened DB: an empty one (no log, no Raft records, no
/// state) is marked as [`CURRENT`]; any other must carry that mark.
///
/// # Errors
/// [`Mismatch`] for a DB in another layout; RocksDB's errors as they come.
pub fn check_or_mark(db: &Db) -> Result<(), OpenError> {
    let raw = db.raw();
    let found = match raw.get_pinned_cf(db.cf(cf::META), keys::meta::STATE_FORMAT)? {
        Some(bytes) => match super::decode::<u32>(&bytes) {
            Ok(CURRENT) => return Ok(()),
            other => other.ok(),
        },
        None => {
            let empty = [cf::LOG, cf::RAFT, cf::META]
                .into_iter()
                .all(|name| raw.iterator_cf(db.cf(name), rocksdb::IteratorMode::Start).next().is_none());
            if empty {
                let mut sync = rocksdb::WriteOptions::default();
                sync.set_sync(true);
                raw.put_cf_opt(db.cf(cf::META), keys::meta::STATE_FORMAT, super::encode(&CURRENT), &sync)?;
                return Ok(());
            }
            None
        }
    };
    Err(Mismatch { what: db.path().display().to_string(), found }.into())
}

/// Why [`Db::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    RocksDb(#[from] rocksdb::Error),
    #[error(transparent)]
    Format(#[from] Mismatch),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_db_is_marked_and_opens_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        drop(Db::open(&path).unwrap());
        let db = Db::open(&path).unwrap();
        assert_eq!(db.get::<u32>(cf::META, keys::meta::STATE_FORMAT).unwrap(), Some(CURRENT));
    }

    #[test]
    fn a_db_of_another_layout_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let db = Db::open(&path).unwrap();
            db.raw().put_cf(db.cf(cf::META), keys::meta::STATE_FORMAT, crate::store::encode(&1u32)).unwrap();
        }
        let e = Db::open(&path).unwrap_err().to_string();
        assert!(e.contains("layout 1") && e.contains(&format!("layout {CURRENT}")), "{e}");
    }

    #[test]
    fn a_db_written_before_markers_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let db = Db::open(&path).unwrap();
            db.raw().delete_cf(db.cf(cf::META), keys::meta::STATE_FORMAT).unwrap();
            db.raw().put_cf(db.cf(cf::RAFT), keys::raft::VOTE, b"old").unwrap();
        }
        let e = Db::open(&path).unwrap_err().to_string();
        assert!(e.contains("no marker"), "{e}");
    }
}
