//! backup: `AdminService.Backup` from one member into a file, verified.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    pub file: PathBuf,
    /// The member to copy: a pod name in kube mode (default: a follower, to
    /// spare the leader), its peer address HOST:PORT in direct mode (required).
    #[arg(long)]
    pub member: Option<String>,
    /// A directory with ca.crt, tls.crt and tls.key of an admin certificate
    /// (common name chat-admin). Kube mode reads the operator's
    /// <name>-admin-tls Secret instead; direct mode requires it.
    #[arg(long)]
    pub admin_tls_dir: Option<PathBuf>,
}

impl Backup {
    pub async fn run(self, target: &Target<'_>, output: Output) -> anyhow::Result<()> {
        if self.file.exists() {
            bail!("{} exists: a backup never overwrites a file", self.file.display());
        }
        let (channel, from) = if target.addrs.is_empty() && self.member.as_deref().is_none_or(|m| !m.contains(':')) {
            self.through_kubernetes(target).await?
        } else {
            let Some(member) = self.member.clone() else {
                bail!("direct mode: --member HOST:PORT names the member's peer port to copy");
            };
            let Some(dir) = &self.admin_tls_dir else {
                bail!("direct mode: --admin-tls-dir DIR (ca.crt, tls.crt, tls.key of a chat-admin certificate)");
            };
            let security = Security::mutual(dir).context("--admin-tls-dir")?;
            (TcpDial::new(security).dial(&member, Duration::from_secs(5))?, member)
        };
        let end = chat_client::backup::backup(channel, &self.file).await?;
        let sha256: String = end.sha256.iter().map(|b| format!("{b:02x}")).collect();
        let value = json!({"file": self.file, "member": from, "bytes": end.size, "index": end.applied_index,
                           "sha256": sha256});
        let text = format!(
            "backup of {from} at index {} written to {}: {} bytes, sha256 {sha256}",
            end.applied_index,
            self.file.display(),
            end.size
        );
        report(output, value, &text)
    }

    /// A port-forward to the member's peer port, presenting the operator's admin certificate.
    async fn through_kubernetes(&self, target: &Target<'_>) -> anyhow::Result<(tonic::transport::Channel, String)> {
        let kube = KubeCluster::open(target).await?;
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
        let pod = match &self.member {
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
