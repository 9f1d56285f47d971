//! logs: every pod's log of the cluster (voters and read replicas), one
//! stream, each line prefixed by its pod. Without `--follow` the lines are
//! merged in time order (by the kubelet's timestamps); with it, printed as
//! they arrive from any pod.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::{Api, ResourceExt};

use crate::connect::KubeCluster;

/// The node's container in every pod.
pub const CONTAINER: &str = "chat-node";

#[derive(Debug, Args)]
pub struct Logs {
    /// Keep printing new lines as the pods write them.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only lines newer than this (e.g. 10m, 1h).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// The last N lines of each pod.
    #[arg(long)]
    pub tail: Option<i64>,
}

impl Logs {
    pub async fn run(self, kube: &KubeCluster) -> anyhow::Result<()> {
        let pods = cluster_pods(kube).await?;
        let api: Api<Pod> = Api::namespaced(kube.kube.clone(), &kube.names.namespace);
        let params = LogParams {
            container: Some(CONTAINER.into()),
            follow: self.follow,
            since_seconds: self.since.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX).max(1)),
            tail_lines: self.tail,
            timestamps: true,
            ..LogParams::default()
        };
        if !self.follow {
            let mut lines = Vec::new();
            for pod in &pods {
                let text = api.logs(pod, &params).await.with_context(|| format!("reading the log of {pod}"))?;
                lines.extend(text.lines().map(|l| (split_timestamp(l).0.to_string(), pod.clone(), l.to_string())));
            }
            // RFC 3339 timestamps of one format sort as text; stable for equal ones.
            lines.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, pod, line) in lines {
                println!("[{pod}] {}", split_timestamp(&line).1);
            }
            return Ok(());
        }
        let mut streams = Vec::new();
        for pod in pods {
            let reader = api.log_stream(&pod, &params).await.with_context(|| format!("following the log of {pod}"))?;
            streams.push(reader.lines().map_ok(move |line| (pod.clone(), line)).boxed());
        }
        let mut merged = futures::stream::select_all(streams);
        while let Some(next) = merged.next().await {
            let (pod, line) = next.context("reading a pod's log")?;
            println!("[{pod}] {}", split_timestamp(&line).1);
        }
        Ok(())
    }
}

/// The cluster's pods (voters and read replicas), by name.
pub async fn cluster_pods(kube: &KubeCluster) -> anyhow::Result<Vec<String>> {
    let api: Api<Pod> = Api::namespaced(kube.kube.clone(), &kube.names.namespace);
    let listed = api.list(&ListParams::default().labels(&kube.names.selector_string())).await?;
    let mut names: Vec<String> = listed.items.iter().map(ResourceExt::name_any).collect();
    names.sort();
    Ok(names)
}

/// `(timestamp, rest)` of a line the kubelet prefixed with its timestamp.
pub fn split_timestamp(line: &str) -> (&str, &str) {
    match line.split_once(' ') {
        Some((at, rest)) if at.len() >= 20 && at.as_bytes()[4] == b'-' && at.contains('T') => (at, rest),
        _ => ("", line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubelet_timestamp_is_split_off_and_anything_else_kept() {
        assert_eq!(
            split_timestamp("2026-12-02T22:00:00.123456789Z {\"level\":\"INFO\"}"),
            ("2026-12-02T22:00:00.123456789Z", "{\"level\":\"INFO\"}")
        );
        assert_eq!(split_timestamp("no timestamp here"), ("", "no timestamp here"));
        assert_eq!(split_timestamp(""), ("", ""));
    }
}
