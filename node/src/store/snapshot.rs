//! The snapshot file: every key/value of the state column families, read from
//! one RocksDB snapshot so it is consistent with the last-applied log id it
//! carries.
//!
//! Format: the magic `RCHATSN1`, then records `[cf: u8][key len: u32][key]
//! [value len: u32][value]` (lengths big-endian), then a single `0xFF` byte.
//! Streaming records keeps memory flat however large the state grows; the end
//! marker lets a reader tell a complete file from a truncated one.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use rocksdb::{IteratorMode, WriteBatch};

use super::keys::{self, cf};
use super::{Db, format};

const MAGIC: &[u8; 8] = b"RCHATSN1";
const END: u8 = 0xFF;
/// The largest key or value a snapshot may hold. The state's records are a
/// few KiB at most (a 4 KiB message body with its metadata); a length beyond
/// this is a corrupt or hostile file, refused before anything is allocated.
pub const MAX_RECORD: usize = 1 << 20;

/// Writes every state key/value visible in a point-in-time view of `db` to `path`, synced.
/// Returns the values of `meta_keys` in the `meta` column family *as of that view*,
/// so the caller describes the snapshot with exactly the state it holds.
///
/// # Errors
/// I/O errors writing the file, or RocksDB errors reading the state.
pub fn write(db: &Db, path: &Path, meta_keys: &[&[u8]]) -> io::Result<Vec<Option<Vec<u8>>>> {
    let view = db.raw().snapshot();
    let meta = db.cf(cf::META);
    let described =
        meta_keys.iter().map(|k| view.get_cf(meta, k)).collect::<Result<Vec<_>, _>>().map_err(io::Error::other)?;
    let mut out = BufWriter::new(File::create(path)?);
    out.write_all(MAGIC)?;
    for (n, name) in cf::STATE.iter().enumerate() {
        let handle = db.cf(name);
        for item in view.iterator_cf(handle, IteratorMode::Start) {
            let (key, value) = item.map_err(io::Error::other)?;
            out.write_all(&[n as u8])?;
            write_chunk(&mut out, &key)?;
            write_chunk(&mut out, &value)?;
        }
    }
    out.write_all(&[END])?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(described)
}

fn write_chunk(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    if bytes.len() > MAX_RECORD {
        return Err(io::Error::other(format!("a state record of {} bytes is over {MAX_RECORD}", bytes.len())));
    }
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("snapshot record over 4 GiB"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)
}

fn read_chunk(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_RECORD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("snapshot record of {len} bytes is over the {MAX_RECORD}-byte limit"),
        ));
    }
    let mut bytes = vec![0u8; len];
    input.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Builds one batch that replaces the whole state with the snapshot at `path`.
/// Writing that batch is the atomic install: readers see the old state or the new one.
///
/// # Errors
/// `InvalidData` for a file that is not a complete snapshot, or holds state in
/// another build's layout ([`format`]); other I/O errors as they come.
pub fn read_into_batch(db: &Db, path: &Path) -> io::Result<WriteBatch> {
    let mut input = BufReader::new(File::open(path)?);
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a replicated-chat snapshot"));
    }
    let mut batch = WriteBatch::default();
    // The layout the snapshot's state says it is in (None: no marker).
    let mut layout = None;
    for name in cf::STATE {
        // Everything from the empty key to past any key we ever write.
        batch.delete_range_cf(db.cf(name), [].as_slice(), [0xFFu8; 64].as_slice());
    }
    loop {
        let mut tag = [0u8; 1];
        input.read_exact(&mut tag)?;
        if tag[0] == END {
            if layout != Some(format::CURRENT) {
                let what = format!("the snapshot {}", path.display());
                return Err(io::Error::new(io::ErrorKind::InvalidData, format::Mismatch { what, found: layout }));
            }
            return Ok(batch);
        }
        let name = cf::STATE.get(tag[0] as usize).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("unknown column family tag {}", tag[0]))
        })?;
        let key = read_chunk(&mut input)?;
        let value = read_chunk(&mut input)?;
        if *name == cf::META && key == keys::meta::STATE_FORMAT {
            layout = super::decode::<u32>(&value).ok();
        }
        batch.put_cf(db.cf(name), key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_replaces_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let source = Db::open(&dir.path().join("a")).unwrap();
        source.raw().put_cf(source.cf(cf::ACCOUNTS), b"alice", b"1").unwrap();
        source.raw().put_cf(source.cf(cf::MESSAGES), keys::index(9), b"hi").unwrap();
        source.raw().put_cf(source.cf(cf::LOG), keys::index(9), b"not state").unwrap();
        let file = dir.path().join("snap");
        write(&source, &file, &[]).unwrap();

        let target = Db::open(&dir.path().join("b")).unwrap();
        target.raw().put_cf(target.cf(cf::ACCOUNTS), b"stale", b"x").unwrap();
        target.raw().write(read_into_batch(&target, &file).unwrap()).unwrap();

        let get = |name, key: &[u8]| target.raw().get_cf(target.cf(name), key).unwrap();
        assert_eq!(get(cf::ACCOUNTS, b"alice"), Some(b"1".to_vec()));
        assert_eq!(get(cf::MESSAGES, &keys::index(9)), Some(b"hi".to_vec()));
        assert_eq!(get(cf::ACCOUNTS, b"stale"), None, "install replaces, not merges");
        assert_eq!(get(cf::LOG, &keys::index(9)), None, "the log is not part of a snapshot");
    }

    #[test]
    fn a_snapshot_of_another_layout_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("a")).unwrap();
        db.raw().put_cf(db.cf(cf::ACCOUNTS), b"alice", b"1").unwrap();
        let file = dir.path().join("snap");
        for old in [None, Some(1u32)] {
            match old {
                None => db.raw().delete_cf(db.cf(cf::META), keys::meta::STATE_FORMAT).unwrap(),
                Some(n) => {
                    db.raw().put_cf(db.cf(cf::META), keys::meta::STATE_FORMAT, crate::store::encode(&n)).unwrap()
                }
            }
            write(&db, &file, &[]).unwrap();
            let err = read_into_batch(&db, &file).err().unwrap();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(err.to_string().contains("layout 1"), "{err}");
        }
    }

    #[test]
    fn truncated_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("a")).unwrap();
        db.raw().put_cf(db.cf(cf::ACCOUNTS), b"alice", b"1").unwrap();
        let file = dir.path().join("snap");
        write(&db, &file, &[]).unwrap();
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 1]).unwrap();
        assert!(read_into_batch(&db, &file).is_err());
        std::fs::write(&file, b"garbage!").unwrap();
        assert_eq!(read_into_batch(&db, &file).err().map(|e| e.kind()), Some(io::ErrorKind::InvalidData));
    }

    #[test]
    fn a_record_length_past_the_limit_is_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("a")).unwrap();
        let file = dir.path().join("snap");
        // A key claiming 4 GiB - 1 bytes.
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[0, 0xFF, 0xFF, 0xFF, 0xFF]);
        std::fs::write(&file, &bytes).unwrap();
        let err = read_into_batch(&db, &file).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("limit"), "{err}");
    }
}
