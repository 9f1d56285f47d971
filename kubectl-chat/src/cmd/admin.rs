//! Admin commands, kube mode only, in the spirit of `kubectl cnpg`: they ask
//! the operator (through annotations on the ReplicatedChat, so Kubernetes
//! RBAC decides who may) or act on pods, and never need a chat login.
//!
//! - `restart`: every pod, one at a time, leader last (the operator's
//!   rolling restart); `restart POD`: that pod (a leader hands over first).
//! - `promote POD`: hand leadership to that voter.
//! - `backup FILE`: a consistent copy of the whole state from one member's
//!   peer port, as an admin (in kube mode the operator's `<name>-admin-tls`
//!   Secret: whoever may read it may back up); also in direct mode, with
//!   `--member HOST:PORT` and `--admin-tls-dir`.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use chat_k8s::ReplicatedChat;
use chat_k8s::names::{PROMOTE_ANNOTATION, RESTARTED_AT_ANNOTATION};
use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::cli::Output;
use crate::connect::{KubeCluster, Target};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Restart every pod, one at a time, leader last (done by the operator); or one pod.
    Restart(Restart),
    /// Hand leadership to a voter (done by the operator).
    Promote(Promote),
    /// Write a consistent backup of the whole state to FILE (writes go on meanwhile).
    Backup(crate::cmd::backup::Backup),
    /// Every pod's log, interleaved, each line prefixed by its pod.
    Logs(crate::cmd::logs::Logs),
    /// One archive with what a bug report needs (never a Secret).
    Report(crate::cmd::report::Report),
}

impl AdminCommand {
    pub async fn run(self, target: &Target<'_>, output: Output, deadline: Duration) -> anyhow::Result<()> {
        match self {
            AdminCommand::Backup(c) => c.run(target, output).await,
            AdminCommand::Restart(c) => c.run(&kube_only(target).await?, output).await,
            AdminCommand::Promote(c) => c.run(&kube_only(target).await?, output, deadline).await,
            AdminCommand::Logs(c) => c.run(&kube_only(target).await?).await,
            AdminCommand::Report(c) => c.run(target, &kube_only(target).await?, output, deadline).await,
        }
    }
}

/// The cluster in kube mode; commands that need Kubernetes have no direct mode.
async fn kube_only(target: &Target<'_>) -> anyhow::Result<KubeCluster> {
    if !target.addrs.is_empty() {
        bail!("restart, promote, logs and report work through Kubernetes: use them in kube mode (without --addr)");
    }
    KubeCluster::open(target).await
}

#[derive(Debug, Args)]
pub struct Restart {
    /// Only this pod (default: every pod, leader last).
    pub pod: Option<String>,
}

impl Restart {
    async fn run(self, kube: &KubeCluster, output: Output) -> anyhow::Result<()> {
        let names = &kube.names;
        let Some(pod) = self.pod else {
            let at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
            annotate(kube, RESTARTED_AT_ANNOTATION, &at).await?;
            return report(
                output,
                json!({"cluster": names.cluster, "restart": "requested", "restartedAt": at}),
                &format!(
                    "restart of {} requested: the operator restarts each pod once the previous one is ready \
                     and caught up, the leader last after handing over (follow with `kubectl chat status`)",
                    names.cluster
                ),
            );
        };
        if names.id_of(&pod).is_none() {
            bail!("{pod} is not a pod of {}", names.cluster);
        }
        let pods: Api<Pod> = Api::namespaced(kube.kube.clone(), &names.namespace);
        pods.delete(&pod, &DeleteParams::default()).await.with_context(|| format!("deleting pod {pod}"))?;
        report(
            output,
            json!({"cluster": names.cluster, "pod": pod, "restart": "deleted"}),
            &format!("{pod} deleted; its StatefulSet makes it again (a leader hands over before it stops)"),
        )
    }
}

/// How long after the operator removed the request its status may take to
/// name the new leader (the same reconcile writes it, a moment later).
const ANSWER_TO_STATUS: Duration = Duration::from_secs(3);

#[derive(Debug, Args)]
pub struct Promote {
    /// The pod that should lead, e.g. demo-2.
    pub pod: String,
    /// Return once asked, without waiting for the hand-over.
    #[arg(long)]
    pub no_wait: bool,
}

impl Promote {
    async fn run(self, kube: &KubeCluster, output: Output, deadline: Duration) -> anyhow::Result<()> {
        let names = &kube.names;
        let Some(id) = names.id_of(&self.pod) else {
            bail!("{} is not a pod of {}", self.pod, names.cluster);
        };
        if id >= chat_k8s::names::REPLICA_ID_BASE {
            bail!("{} is a read replica: only voters lead", self.pod);
        }
        annotate(kube, PROMOTE_ANNOTATION, &self.pod).await?;
        if self.no_wait {
            let text = format!("asked the operator to hand leadership to {}", self.pod);
            return report(output, json!({"cluster": names.cluster, "promote": self.pod, "done": false}), &text);
        }
        // The operator removes the request once it has acted on it (or
        // refused), and then reports the new leader in the status.
        let api: Api<ReplicatedChat> = Api::namespaced(kube.kube.clone(), &names.namespace);
        let until = Instant::now() + deadline;
        let mut answered: Option<Instant> = None;
        loop {
            let cluster = api.get(&names.cluster).await.context("reading the ReplicatedChat")?;
            let leader = cluster.status.as_ref().and_then(|s| s.leader.clone()).unwrap_or_default();
            if leader == self.pod {
                let text = format!("{} leads", self.pod);
                return report(output, json!({"cluster": names.cluster, "promote": self.pod, "done": true}), &text);
            }
            if !cluster.annotations().contains_key(PROMOTE_ANNOTATION) {
                let since = *answered.get_or_insert_with(Instant::now);
                if since.elapsed() > ANSWER_TO_STATUS {
                    bail!(
                        "the operator did not promote {} ({} leads): `kubectl describe rchat {}` shows why",
                        self.pod,
                        if leader.is_empty() { "nobody" } else { &leader },
                        names.cluster
                    );
                }
            }
            if Instant::now() >= until {
                bail!(
                    "the operator has not acted on the request within {deadline:?} (is it running?); it stays \
                     on the ReplicatedChat as {PROMOTE_ANNOTATION}"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Sets one annotation on the ReplicatedChat (a merge patch: nothing else changes).
async fn annotate(kube: &KubeCluster, key: &str, value: &str) -> anyhow::Result<()> {
    let api: Api<ReplicatedChat> = Api::namespaced(kube.kube.clone(), &kube.names.namespace);
    let patch = json!({"metadata": {"annotations": {key: value}}});
    api.patch(&kube.names.cluster, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("annotating ReplicatedChat {}", kube.names.cluster))?;
    Ok(())
}

pub fn report(output: Output, value: serde_json::Value, text: &str) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{value}"),
        Output::Table => println!("{text}"),
    }
    Ok(())
}
