//! Taking a backup: `AdminService.Backup` from one member's peer port, as an
//! admin (or the operator), into a file that is complete and verified or not
//! there at all.
//!
//! The bytes go to `FILE.partial`, each chunk hashed as it arrives; only when
//! the member's closing SHA-256 and size match is the file synced and renamed
//! to `FILE`. A cut stream, a member that stops mid-way or a corrupted byte
//! leaves no `FILE` behind that a restore could mistake for a backup.

use std::path::{Path, PathBuf};

pub use chat_proto::cluster::BackupEnd;
use chat_proto::cluster::admin_service_client::AdminServiceClient;
use chat_proto::cluster::{BackupRequest, backup_chunk};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tonic::transport::Channel;

use crate::error::{Error, Result};

/// The largest chunk a member may send (it sends 64 KiB).
const MAX_CHUNK: usize = 4 << 20;

/// Streams a backup over `channel` (a member's peer port, mutual TLS with an
/// admin certificate) into `file`; returns what the member said it sent.
///
/// # Errors
/// `Rejected` (e.g. PERMISSION_DENIED for a certificate that is not an
/// admin's), `Unavailable` for a cut stream, `Invalid` for a file that
/// cannot be written or a backup whose checksum or size do not match.
pub async fn backup(channel: Channel, file: &Path) -> Result<BackupEnd> {
    let partial = partial_path(file);
    let outcome = receive(channel, &partial, file).await;
    if outcome.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    outcome
}

async fn receive(channel: Channel, partial: &Path, file: &Path) -> Result<BackupEnd> {
    let written = |e: std::io::Error| Error::Invalid(format!("writing {}: {e}", partial.display()));
    let mut stream = AdminServiceClient::new(channel)
        .max_decoding_message_size(MAX_CHUNK + 1024)
        .backup(BackupRequest {})
        .await
        .map_err(status)?
        .into_inner();
    let mut out = tokio::fs::File::create(partial).await.map_err(written)?;
    let mut hash = Sha256::new();
    let mut size = 0u64;
    loop {
        let chunk = stream
            .message()
            .await
            .map_err(status)?
            .ok_or_else(|| Error::Unavailable("the backup stream ended before its checksum".into()))?;
        match chunk.part {
            Some(backup_chunk::Part::Data(data)) => {
                hash.update(&data);
                size += data.len() as u64;
                out.write_all(&data).await.map_err(written)?;
            }
            Some(backup_chunk::Part::End(end)) => {
                if end.sha256 != hash.finalize().as_slice() || end.size != size {
                    return Err(Error::Invalid(format!(
                        "the backup arrived damaged: {size} bytes whose SHA-256 differs from the member's ({} bytes)",
                        end.size
                    )));
                }
                out.sync_all().await.map_err(written)?;
                drop(out);
                tokio::fs::rename(partial, file)
                    .await
                    .map_err(|e| Error::Invalid(format!("renaming to {}: {e}", file.display())))?;
                return Ok(end);
            }
            None => return Err(Error::Invalid("the member sent an empty backup chunk".into())),
        }
    }
}

fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    file.with_file_name(name)
}

fn status(s: tonic::Status) -> Error {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            Error::Unavailable(s.message().to_string())
        }
        _ => Error::Rejected(s),
    }
}
