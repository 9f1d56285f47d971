//! `AdminServiceImpl`: day-two operations, on the peer port, for the operator
//! and admins (certificates with common name `chat-operator` or `chat-admin`)
//! only — a chat user's session token opens nothing here.
//!
//! Backup writes the state as one RocksDB point-in-time view sees it to a
//! temporary snapshot file (the format Raft snapshots use, so restoring
//! reuses the code that installs them), then streams the file and its
//! SHA-256. Writes go on meanwhile; the view does not move. One backup at a
//! time per node: each holds a view (which pins RocksDB files) and a file as
//! large as the state.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chat_proto::cluster::admin_service_server::AdminService;
use chat_proto::cluster::{BackupChunk, BackupEnd, BackupRequest, backup_chunk};
use futures::Stream;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::node::ChatNode;
use crate::store::keys;
use crate::store::snapshot;

/// Bytes of the file per message.
pub const CHUNK: usize = 64 * 1024;
/// How long a caller may leave a chunk unread before the backup is
/// abandoned: a stalled caller must not hold the one backup slot (and a
/// file as large as the state) for good.
pub const STALL: Duration = Duration::from_secs(60);

type BackupStream = Pin<Box<dyn Stream<Item = Result<BackupChunk, Status>> + Send>>;

pub struct AdminServiceImpl {
    node: Arc<ChatNode>,
    /// One backup at a time.
    running: Arc<Semaphore>,
}

impl AdminServiceImpl {
    pub fn new(node: Arc<ChatNode>) -> Self {
        Self { node, running: Arc::new(Semaphore::new(1)) }
    }
}

#[tonic::async_trait]
impl AdminService for AdminServiceImpl {
    type BackupStream = BackupStream;

    async fn backup(&self, _request: Request<BackupRequest>) -> Result<Response<Self::BackupStream>, Status> {
        let permit = self
            .running
            .clone()
            .try_acquire_owned()
            .map_err(|_| Status::resource_exhausted("a backup of this node is already running; one at a time"))?;
        // Named `*.tmp` in the snapshot directory: a crash mid-backup leaves
        // nothing the next start does not remove.
        let file = tempfile::Builder::new()
            .prefix("backup-")
            .suffix(".tmp")
            .tempfile_in(self.node.state().snapshot_dir())
            .map_err(|e| Status::internal(format!("backup file: {e}")))?;
        let db = self.node.db().clone();
        let path = file.path().to_path_buf();
        let described = tokio::task::spawn_blocking(move || snapshot::write(&db, &path, &[keys::meta::LAST_APPLIED]))
            .await
            .map_err(|e| Status::internal(format!("backup: {e}")))?
            .map_err(|e| Status::internal(format!("backup: {e}")))?;
        let applied_index = described[0]
            .as_deref()
            .map(crate::store::decode::<crate::typ::LogId>)
            .transpose()
            .map_err(|e| Status::internal(format!("backup: {e}")))?
            .map_or(0, |id| id.index);
        tracing::info!(applied_index, "backup written; streaming it");

        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            // Both live until the stream ends: the permit and the file.
            let _permit = permit;
            let mut input = match tokio::fs::File::open(file.path()).await {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.send(Err(Status::internal(format!("backup file: {e}")))).await;
                    return;
                }
            };
            let mut hash = Sha256::new();
            let mut size = 0u64;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match input.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(format!("reading the backup file: {e}")))).await;
                        return;
                    }
                };
                hash.update(&buf[..n]);
                size += n as u64;
                let chunk = BackupChunk { part: Some(backup_chunk::Part::Data(buf[..n].to_vec())) };
                match tokio::time::timeout(STALL, tx.send(Ok(chunk))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return, // The caller went away.
                    Err(_) => {
                        tracing::warn!(read = size, "backup abandoned: the caller read nothing for {STALL:?}");
                        return;
                    }
                }
            }
            let end = BackupEnd { sha256: hash.finalize().to_vec(), size, applied_index };
            let _ = tx.send(Ok(BackupChunk { part: Some(backup_chunk::Part::End(end)) })).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
