//! backup: `AdminService.Backup` from one member into a file, verified.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use std::time::SystemTime;

use anyhow::{Context, bail};
use chat_client::{Dial, Security, TcpDial};
use chat_k8s::names::{READ_ONLY_LABEL, label_selector};
use chat_k8s::portforward::PortForwardDial;
use chat_tls::Material;
use clap::Args;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::cli::Output;
use crate::cmd::admin::report;
use crate::connect::{KubeCluster, Target};

#[derive(Debug, Args)]
pub struct Backup {
    /// Where to write the backup (written as FILE.partial, renamed once verified).
    #[arg(required_unless_present = "to_dir")]
    pub file: Option<PathBuf>,
    /// Write DIR/<prefix>-<UTC time>.backup instead of FILE (scheduled backups).
    #[arg(long, conflicts_with = "file")]
    pub to_dir: Option<PathBuf>,
    /// The file name prefix with --to-dir (default: the cluster's name in kube mode, else "chat").
    #[arg(long, requires = "to_dir")]
    pub prefix: Option<String>,
    /// With --to-dir: afterwards keep only the newest N backups of this prefix there.
    #[arg(long, requires = "to_dir", value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: Option<u64>,
    /// The member to copy: a pod name in kube mode (default: a follower, to
    /// spare the leader); its peer address HOST:PORT in direct mode
    /// (required; several, comma-separated, are tried in turn).
    #[arg(long, value_delimiter = ',')]
    pub member: Vec<String>,
    /// A directory with ca.crt, tls.crt and tls.key of an admin certificate
    /// (common name chat-admin). Kube mode reads the operator's
    /// <name>-admin-tls Secret instead; direct mode requires it.
    #[arg(long)]
    pub admin_tls_dir: Option<PathBuf>,
}

impl Backup {
    pub async fn run(self, target: &Target<'_>, output: Output) -> anyhow::Result<()> {
        let kube_mode = target.addrs.is_empty() && self.member.iter().all(|m| !m.contains(':'));
        // Opened once, in kube mode: it names the default prefix and the tunnel.
        let kube = if kube_mode { Some(KubeCluster::open(target).await?) } else { None };
        let file = match (&self.file, &self.to_dir) {
            (Some(file), _) => file.clone(),
            (None, Some(dir)) => {
                let prefix = match (&self.prefix, &kube) {
                    (Some(prefix), _) => prefix.clone(),
                    (None, Some(kube)) => kube.names.cluster.clone(),
                    (None, None) => "chat".into(),
                };
                dir.join(format!("{prefix}-{}.backup", compact_utc(SystemTime::now())))
            }
            (None, None) => bail!("name a FILE or --to-dir DIR"),
        };
        if file.exists() {
            bail!("{} exists: a backup never overwrites a file", file.display());
        }
        let (end, from) = match &kube {
            Some(kube) => {
                let (channel, pod) = self.through_kubernetes(kube).await?;
                (chat_client::backup::backup(channel, &file).await?, pod)
            }
            None => self.direct(&file).await?,
        };
        let pruned = match (&self.to_dir, self.keep) {
            (Some(dir), Some(keep)) => prune(dir, file.file_name(), keep)?,
            _ => Vec::new(),
        };
        let sha256: String = end.sha256.iter().map(|b| format!("{b:02x}")).collect();
        let value = json!({"file": file, "member": from, "bytes": end.size, "index": end.applied_index,
                           "sha256": sha256, "pruned": pruned});
        let mut text = format!(
            "backup of {from} at index {} written to {}: {} bytes, sha256 {sha256}",
            end.applied_index,
            file.display(),
            end.size
        );
        if !pruned.is_empty() {
            text.push_str(&format!("; removed {} older: {}", pruned.len(), pruned.join(", ")));
        }
        report(output, value, &text)
    }

    /// Direct mode: each --member in turn until one answers.
    async fn direct(&self, file: &Path) -> anyhow::Result<(chat_client::backup::BackupEnd, String)> {
        if self.member.is_empty() {
            bail!("direct mode: --member HOST:PORT names the member's peer port to copy");
        }
        let Some(dir) = &self.admin_tls_dir else {
            bail!("direct mode: --admin-tls-dir DIR (ca.crt, tls.crt, tls.key of a chat-admin certificate)");
        };
        let dial = TcpDial::new(Security::mutual(dir).context("--admin-tls-dir")?);
        let mut unavailable = Vec::new();
        for member in &self.member {
            let channel = dial.dial(member, Duration::from_secs(5))?;
            match chat_client::backup::backup(channel, file).await {
                Ok(end) => return Ok((end, member.clone())),
                Err(e) if e.is_unavailable() => unavailable.push(format!("{member}: {e}")),
                Err(e) => return Err(e.into()),
            }
        }
        Err(chat_client::Error::Unavailable(unavailable.join("; ")).into())
    }

    /// A port-forward to the member's peer port, presenting the operator's admin certificate.
    async fn through_kubernetes(&self, kube: &KubeCluster) -> anyhow::Result<(tonic::transport::Channel, String)> {
        let names = &kube.names;
        let material = match &self.admin_tls_dir {
            Some(dir) => chat_tls::TlsDir::new(dir).load().context("--admin-tls-dir")?,
            None => {
                let secrets: Api<Secret> = Api::namespaced(kube.kube.clone(), &names.namespace);
                let secret = secrets.get(&names.admin_secret()).await.with_context(|| {
                    format!("reading Secret {} (the operator's admin certificate)", names.admin_secret())
                })?;
                let part = |key: &str| {
                    secret
                        .data
                        .as_ref()
                        .and_then(|d| d.get(key))
                        .map(|b| b.0.clone())
                        .with_context(|| format!("Secret {} has no {key}", names.admin_secret()))
                };
                Material::from_pem(&part("ca.crt")?, &part("tls.crt")?, &part("tls.key")?, &names.admin_secret())?
            }
        };
        let pod = match self.member.first() {
            Some(pod) => pod.clone(),
            None => {
                let pods: Api<Pod> = Api::namespaced(kube.kube.clone(), &names.namespace);
                let mut followers = names.selector_labels();
                followers.insert(READ_ONLY_LABEL.into(), "true".into());
                let listed = pods.list(&ListParams::default().labels(&label_selector(&followers))).await?;
                let any = pods.list(&ListParams::default().labels(&names.selector_string())).await?;
                match listed.items.first().or(any.items.first()) {
                    Some(p) => p.name_any(),
                    None => bail!("no pod of {} to back up from", names.cluster),
                }
            }
        };
        let Some(id) = names.id_of(&pod) else { bail!("{pod} is not a pod of {}", names.cluster) };
        let security = Security::with_identity(&material)?;
        let dial = PortForwardDial::new(kube.kube.clone(), names.namespace.clone(), security);
        let channel = Arc::new(dial).dial(&names.pod_peer_address(id), Duration::from_secs(10))?;
        Ok((channel, pod))
    }
}

/// `20261202T220707Z`: sorts as it happened, safe in any file name.
fn compact_utc(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string().replace(['-', ':'], "")
}

/// Removes all but the newest `keep` backups in `dir` named like `written`
/// (`<prefix>-<compact UTC>.backup`); returns the names removed.
fn prune(dir: &Path, written: Option<&std::ffi::OsStr>, keep: u64) -> anyhow::Result<Vec<String>> {
    let written = written.and_then(|n| n.to_str()).context("the backup's file name")?;
    let prefix = written.rsplit_once('-').map(|(p, _)| format!("{p}-")).context("a --to-dir file name")?;
    let stamp = |name: &str| {
        name.strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".backup"))
            .is_some_and(|t| t.len() == 16 && t.as_bytes()[8] == b'T' && t.ends_with('Z'))
    };
    let mut ours: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| stamp(name))
        .collect();
    ours.sort();
    let surplus = ours.len().saturating_sub(usize::try_from(keep).unwrap_or(usize::MAX));
    let old: Vec<String> = ours.into_iter().take(surplus).filter(|name| name != written).collect();
    for name in &old {
        std::fs::remove_file(dir.join(name)).with_context(|| format!("removing {name}"))?;
    }
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_time_and_pruning_keeps_the_newest_of_one_prefix() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_249_227);
        assert_eq!(compact_utc(at), "20261202T220707Z");
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "demo-20261201T000000Z.backup",
            "demo-20261202T000000Z.backup",
            "demo-20261203T000000Z.backup",
            "other-20261130T000000Z.backup",
            "demo-notes.txt",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let removed = prune(dir.path(), Some("demo-20261203T000000Z.backup".as_ref()), 2).unwrap();
        assert_eq!(removed, ["demo-20261201T000000Z.backup"]);
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "demo-20261202T000000Z.backup",
                "demo-20261203T000000Z.backup",
                "demo-notes.txt",
                "other-20261130T000000Z.backup"
            ]
        );
    }
}
