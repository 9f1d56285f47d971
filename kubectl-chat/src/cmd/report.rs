//! report: one `.tar.gz` with what a bug report needs — the ReplicatedChat,
//! its StatefulSets, pods, volumes and Events, every node's and the
//! operator's log, and each member's GetStatus. Never a Secret. What cannot
//! be collected (no right to list the operator's pods, a member that does
//! not answer) is listed in `errors.txt` instead of failing the report: a
//! broken cluster is when a report is wanted most.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use chat_k8s::ReplicatedChat;
use chat_k8s::names::OPERATOR_POD_LABEL;
use clap::Args;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{ListParams, LogParams};
use kube::{Api, ResourceExt};
use serde::Serialize;
use serde_json::json;

use crate::cli::Output;
use crate::cmd::admin::report;
use crate::cmd::logs::{CONTAINER, cluster_pods};
use crate::connect::{Connection, KubeCluster, Target};
use chat_k8s::view::cluster_events;

#[derive(Debug, Args)]
pub struct Report {
    /// The archive to write (default: report-<cluster>-<unix seconds>.tar.gz).
    pub file: Option<PathBuf>,
}

/// The archive's files as they are collected, and what could not be.
#[derive(Default)]
struct Archive {
    files: Vec<(String, Vec<u8>)>,
    errors: Vec<String>,
}

impl Archive {
    fn json(&mut self, path: &str, value: &impl Serialize) {
        match serde_json::to_vec_pretty(value) {
            Ok(bytes) => self.files.push((path.into(), bytes)),
            Err(e) => self.errors.push(format!("{path}: {e}")),
        }
    }

    fn or_note<T>(&mut self, what: &str, outcome: anyhow::Result<T>) -> Option<T> {
        outcome.map_err(|e| self.errors.push(format!("{what}: {e:#}"))).ok()
    }
}

impl Report {
    pub async fn run(
        self,
        target: &Target<'_>,
        kube: &KubeCluster,
        output: Output,
        deadline: Duration,
    ) -> anyhow::Result<()> {
        let names = &kube.names;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let file = self.file.unwrap_or_else(|| PathBuf::from(format!("report-{}-{now}.tar.gz", names.cluster)));
        if file.exists() {
            anyhow::bail!("{} exists: a report never overwrites a file", file.display());
        }
        let mut archive = Archive::default();
        let ns = &names.namespace;
        let client = &kube.kube;

        let rchats: Api<ReplicatedChat> = Api::namespaced(client.clone(), ns);
        if let Some(rchat) = archive.or_note("the ReplicatedChat", rchats.get(&names.cluster).await.map_err(Into::into))
        {
            archive.json("replicatedchat.json", &rchat);
        }
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
        for name in [names.statefulset(), names.replica_statefulset()] {
            let found = archive.or_note(&format!("StatefulSet {name}"), sets.get_opt(&name).await.map_err(Into::into));
            if let Some(Some(set)) = found {
                archive.json(&format!("statefulsets/{name}.json"), &set);
            }
        }
        let selected = ListParams::default().labels(&names.selector_string());
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        if let Some(list) = archive.or_note("pods", pods.list(&selected).await.map_err(Into::into)) {
            archive.json("pods.json", &list.items);
        }
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        if let Some(list) = archive.or_note("volumes", pvcs.list(&selected).await.map_err(Into::into)) {
            archive.json("volumes.json", &list.items);
        }
        if let Some(events) =
            archive.or_note("events", cluster_events(&kube.kube, &kube.names).await.map_err(Into::into))
        {
            archive.json("events.json", &events);
        }

        // Logs: every node, then the operator's pods (any namespace, if we may list them).
        let with_timestamps = |container: Option<&str>| LogParams {
            container: container.map(str::to_string),
            timestamps: true,
            ..LogParams::default()
        };
        let node_pods = archive.or_note("the cluster's pods", cluster_pods(kube).await).unwrap_or_default();
        for pod in node_pods {
            let log = pods.logs(&pod, &with_timestamps(Some(CONTAINER))).await;
            if let Some(text) = archive.or_note(&format!("log of {pod}"), log.map_err(Into::into)) {
                archive.files.push((format!("logs/{pod}.log"), text.into_bytes()));
            }
        }
        let operators: Api<Pod> = Api::all(client.clone());
        let listed = operators.list(&ListParams::default().labels(&format!("{OPERATOR_POD_LABEL}=true"))).await;
        for pod in
            archive.or_note("the operator's pods", listed.map_err(Into::into)).map(|l| l.items).unwrap_or_default()
        {
            let (name, pod_ns) = (pod.name_any(), pod.namespace().unwrap_or_default());
            let api: Api<Pod> = Api::namespaced(client.clone(), &pod_ns);
            let log = api.logs(&name, &with_timestamps(None)).await;
            if let Some(text) = archive.or_note(&format!("log of {pod_ns}/{name}"), log.map_err(Into::into)) {
                archive.files.push((format!("logs/operator/{pod_ns}-{name}.log"), text.into_bytes()));
            }
        }

        // Each member's own view, through the same tunnels as every command.
        let status = async {
            let connection = Connection::open(target, deadline).await?;
            anyhow::Ok(connection.client.cluster_status().await?)
        };
        if let Some(status) = archive.or_note("GetStatus of the members", status.await) {
            archive.files.push(("status.json".into(), crate::output::status_json(&status).into_bytes()));
        }

        let errors = archive.errors.len();
        if errors > 0 {
            let text = archive.errors.join("\n") + "\n";
            archive.files.push(("errors.txt".into(), text.into_bytes()));
        }
        write(&file, &format!("report-{}", names.cluster), &archive.files, now)
            .with_context(|| format!("writing {}", file.display()))?;
        let count = archive.files.len();
        report(
            output,
            json!({"file": file, "files": count, "errors": archive.errors}),
            &format!(
                "report written to {}: {count} files{}",
                file.display(),
                if errors > 0 {
                    format!(" ({errors} things could not be collected: see errors.txt)")
                } else {
                    String::new()
                }
            ),
        )
    }
}

/// A gzipped tar of `files` under the directory `root`, written whole or not at all.
fn write(file: &std::path::Path, root: &str, files: &[(String, Vec<u8>)], mtime: u64) -> anyhow::Result<()> {
    let partial = file.with_extension("partial");
    let out = std::fs::File::create(&partial)?;
    let result = (|| {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(out, flate2::Compression::default()));
        for (path, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(mtime);
            tar.append_data(&mut header, format!("{root}/{path}"), bytes.as_slice())?;
        }
        tar.into_inner()?.finish()?.sync_all()?;
        std::fs::rename(&partial, file)?;
        anyhow::Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}
