//! A rolling upgrade, leader last, on real processes: the real controller
//! (`controller::run`) against the stand-in API server and a real cluster,
//! while a client writes without pause through the client library.
//!
//! The test plays the two parts of Kubernetes the stand-in lacks: the
//! StatefulSet controller (each StatefulSet's status names the revision of
//! its current template; a new template is a new revision) and the kubelet
//! (a deleted pod's node gets SIGTERM and starts again on its volume — the
//! "new image" — and its pod is made again from the new revision, Ready once
//! the node's own /readyz says so). Then `spec.image` changes, and:
//!
//! - every member ends on the new revision, the status says so;
//! - no write failed, and every acknowledged write is in the conversation once;
//! - leadership changed exactly once (one `LeaderHandedOver`; its election in one term, or a few tries).
//!
//! And the two requests `kubectl chat` makes through annotations: promote a
//! pod, restart every pod.

#[path = "fixtures/standin.rs"]
mod standin;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chat_client::{Client, ReadConsistency};
use chat_k8s::ClusterNames;
use chat_k8s::names::{PROMOTE_ANNOTATION, REPLICA_ID_BASE, RESTARTED_AT_ANNOTATION};
use chat_k8s_standin::{Change, StandIn};
use chat_operator::controller;
use chat_operator::metrics::Metrics;
use chat_operator::rollout::REVISION_LABEL;
use chat_proto::cluster::Role;
use chat_testkit::{TestCluster, chat_node_binary, eventually, http_get};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use standin::{PODS, RCHAT, nodes, seed};
use tokio::sync::broadcast::error::RecvError;

/// The revision every seeded pod runs: the first template each StatefulSet shows.
const FIRST: &str = "rev-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_voters_and_a_read_replica_upgrade_leader_last_losing_no_write() {
    upgrade(3, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_voters_upgrade_leader_last_losing_no_write() {
    upgrade(5, 0).await;
}

/// `kubectl chat promote` and `kubectl chat restart` ask through annotations
/// on the ReplicatedChat: the operator hands leadership to the pod named,
/// then restarts every pod, leader last, without losing a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_promotion_then_a_restart_asked_through_annotations() {
    let names = ClusterNames::new("demo", "chat");
    let mut cluster = TestCluster::empty(chat_node_binary(), &[]);
    for id in 0..3 {
        cluster.add_node(id);
    }
    cluster.wait_voters(3).await;
    let api = StandIn::start().await;
    seed(
        &api,
        &cluster,
        json!({"image": "chat-node:v1", "replicas": 3}),
        (0..3).map(|id| pod(&names, id, FIRST, true)),
    );
    let mut kube = Kubernetes { api: &api, names: names.clone(), revisions: HashMap::new() };
    let mut changes = api.subscribe();
    let run = operator(&api, &cluster);
    settle(&mut kube, &mut cluster, &mut changes, &[0, 1, 2], FIRST).await;

    let before = cluster.leader().await;
    let chosen = (before + 1) % 3;
    let mut rchat = api.get(RCHAT).unwrap();
    rchat["metadata"]["annotations"] = json!({PROMOTE_ANNOTATION: names.pod(chosen)});
    api.put(RCHAT, rchat);
    eventually("the promotion", Duration::from_secs(30), || async {
        let leads = cluster.status(chosen).await.is_some_and(|s| s.role == Role::Leader as i32);
        let asked = !api.get(RCHAT).unwrap()["metadata"]["annotations"][PROMOTE_ANNOTATION].is_null();
        (leads && !asked).then_some(())
    })
    .await;
    assert_eq!(events(&api, "Promoted"), [format!("demo-{before} → demo-{chosen}, as asked")]);

    let writer = Writer::start(&cluster).await;
    writer.wait_for(10).await;
    let mut rchat = api.get(RCHAT).unwrap();
    rchat["metadata"]["annotations"] = json!({RESTARTED_AT_ANNOTATION: "2026-12-02T22:00:00Z"});
    api.put(RCHAT, rchat);
    settle(&mut kube, &mut cluster, &mut changes, &[0, 1, 2], "rev-2").await;
    let (acked, failed) = writer.stop().await;
    assert!(failed.is_empty(), "writes failed during the restart: {failed:?}");
    let restarts = events(&api, "UpgradingPod");
    assert_eq!(restarts.len(), 3, "{restarts:?}");
    assert!(restarts[2].contains(&format!("demo-{chosen} ")), "the leader last: {restarts:?}");
    eprintln!("promoted demo-{chosen}, then restarted {restarts:?} with {} writes acknowledged", acked.len());
    run.abort();
}

async fn upgrade(voters: u64, replicas: u64) {
    let names = ClusterNames::new("demo", "chat");
    let mut cluster = TestCluster::empty(chat_node_binary(), &[]);
    for id in 0..voters {
        cluster.add_node(id);
    }
    cluster.wait_voters(usize::try_from(voters).unwrap()).await;
    for k in 0..replicas {
        cluster.add_read_replica(REPLICA_ID_BASE + k);
    }
    cluster.wait_members(usize::try_from(voters).unwrap(), usize::try_from(replicas).unwrap()).await;
    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();

    let api = StandIn::start().await;
    let spec = json!({"image": "chat-node:v1", "replicas": voters, "readReplicas": replicas});
    seed(&api, &cluster, spec, ids.iter().map(|&id| pod(&names, id, FIRST, true)));
    let mut kube = Kubernetes { api: &api, names: names.clone(), revisions: HashMap::new() };
    let mut changes = api.subscribe();
    let run = operator(&api, &cluster);

    // Settled on the first template.
    let before = cluster.leader().await;
    let term = cluster.status(before).await.unwrap().term;
    settle(&mut kube, &mut cluster, &mut changes, &ids, FIRST).await;

    let writer = Writer::start(&cluster).await;
    writer.wait_for(20).await;
    let mut rchat = api.get(RCHAT).unwrap();
    rchat["spec"]["image"] = json!("chat-node:v2");
    api.put(RCHAT, rchat);
    settle(&mut kube, &mut cluster, &mut changes, &ids, "rev-2").await;
    let token = writer.token.clone();
    let (acked, failed) = writer.stop().await;

    // One leadership change: one hand-over, to another member.
    let after = cluster.leader().await;
    let now = cluster.status(after).await.unwrap().term;
    let hand_overs = events(&api, "LeaderHandedOver");
    let restarts = events(&api, "UpgradingPod");
    eprintln!(
        "{voters} voters + {replicas} replicas: {} writes acknowledged, {} failed; leader demo-{before} (term {term}) \
         → demo-{after} (term {now}); restarts {restarts:?}; hand-overs {hand_overs:?}",
        acked.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "writes failed during the upgrade: {failed:?}");
    assert!(acked.len() >= 20, "too few writes to tell ({})", acked.len());
    assert_eq!(hand_overs.len(), 1, "one hand-over: {hand_overs:?}");
    assert_ne!(after, before, "the old leader keeps leading after its restart");
    // The target's first election is normally won (it pre-votes first). A
    // voter still catching up after its restart keeps getting AppendEntries,
    // which can renew its lease between the target's pre-vote and its vote;
    // the target then tries again, a term each: a few, never churn.
    assert!(
        now > term && now <= term + 3,
        "one hand-over, in at most three tries: from term {term} to {now}; elections seen:\n{}",
        elections(&cluster)
    );
    assert_eq!(restarts.len(), ids.len(), "each member restarted once: {restarts:?}");
    assert!(restarts.last().unwrap().contains(&format!("demo-{before} ")), "the old leader last: {restarts:?}");

    // Every acknowledged write is there, once.
    let reader = Client::new(cluster.addrs(), cluster.client_options()).unwrap().with_token(token);
    let mut bodies: Vec<String> = Vec::new();
    let mut before_id = 0;
    loop {
        let page = reader.read("bob", 1000, before_id, ReadConsistency::Linearizable).await.unwrap();
        let Some(oldest) = page.first() else { break };
        before_id = oldest.id;
        bodies.extend(page.iter().map(|m| m.body.clone()));
    }
    for body in &acked {
        assert_eq!(bodies.iter().filter(|b| *b == body).count(), 1, "{body} stored {bodies:?}");
    }
    run.abort();
}

/// The real controller against `api`, reaching `cluster`'s nodes.
fn operator(api: &StandIn, cluster: &TestCluster) -> tokio::task::JoinHandle<anyhow::Result<()>> {
    tokio::spawn(controller::run(
        api.client("chat"),
        nodes(cluster),
        "chat-system".into(),
        Arc::new(Metrics::default()),
        Arc::new(AtomicBool::new(false)),
    ))
}

/// Plays the StatefulSet controller and the kubelet until every member's pod
/// runs `revision`, is Ready, and the operator's status reports no progress
/// left to make.
async fn settle(
    kube: &mut Kubernetes<'_>,
    cluster: &mut TestCluster,
    changes: &mut tokio::sync::broadcast::Receiver<Change>,
    ids: &[u64],
    revision: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no end to the rollout to {revision}: {:#?}",
            kube.api.get(RCHAT)
        );
        match tokio::time::timeout(Duration::from_millis(200), changes.recv()).await {
            Ok(Ok(change)) => kube.react(cluster, &change).await,
            Ok(Err(RecvError::Lagged(_))) => {}
            Ok(Err(RecvError::Closed)) => panic!("the stand-in stopped"),
            Err(_) => {}
        }
        let pods_current = ids.iter().all(|&id| {
            kube.api.get(&format!("{PODS}/{}", kube.names.pod(id))).is_some_and(|p| {
                p["metadata"]["labels"][REVISION_LABEL] == revision && p["status"]["conditions"][0]["status"] == "True"
            })
        });
        let rchat = kube.api.get(RCHAT).unwrap_or_default();
        let steady = rchat["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Progressing" && c["status"] == "False"));
        if pods_current && steady {
            return;
        }
    }
}

/// What the stand-in lacks: a StatefulSet controller and a kubelet.
struct Kubernetes<'a> {
    api: &'a StandIn,
    names: ClusterNames,
    /// (StatefulSet, template) → revision, in order of appearance.
    revisions: HashMap<(String, String), String>,
}

impl Kubernetes<'_> {
    async fn react(&mut self, cluster: &mut TestCluster, change: &Change) {
        match (change.key.resource.as_str(), change.kind) {
            ("statefulsets", "ADDED" | "MODIFIED") => self.statefulset(&change.object).await,
            ("pods", "DELETED") => self.recreate(cluster, &change.key.name).await,
            _ => {}
        }
    }

    /// The StatefulSet controller's part: the status names the current template's revision.
    async fn statefulset(&mut self, object: &Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let template = object["spec"]["template"].to_string();
        let seen = self.revisions.keys().filter(|(n, _)| *n == name).count();
        let revision = self.revisions.entry((name.clone(), template)).or_insert_with(|| format!("rev-{}", seen + 1));
        let generation = object["metadata"]["generation"].clone();
        if object["status"]["updateRevision"] == **revision && object["status"]["observedGeneration"] == generation {
            return;
        }
        let status = json!({"status": {"observedGeneration": generation, "updateRevision": revision}});
        let api: Api<StatefulSet> = Api::namespaced(self.api.client("chat"), "chat");
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    }

    /// The kubelet's part: the node stops as a pod's container does (SIGTERM),
    /// starts again on its volume, and its pod comes back from the StatefulSet's
    /// current revision, Ready once the node says so.
    async fn recreate(&mut self, cluster: &mut TestCluster, pod_name: &str) {
        let Some(id) = self.names.id_of(pod_name) else { return };
        let statefulset =
            if id >= REPLICA_ID_BASE { self.names.replica_statefulset() } else { self.names.statefulset() };
        let sts = self.api.get(&format!("/apis/apps/v1/namespaces/chat/statefulsets/{statefulset}")).unwrap();
        let revision = sts["status"]["updateRevision"].as_str().unwrap().to_string();
        cluster.terminate(id);
        cluster.restart(id);
        self.api.put(&format!("{PODS}/{pod_name}"), pod(&self.names, id, &revision, false));
        let http = cluster.node(id).http.clone();
        eventually(&format!("{pod_name} ready"), Duration::from_secs(60), || async {
            (http_get(&http, "/readyz").await.0 == 200).then_some(())
        })
        .await;
        let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let pods: Api<Pod> = Api::namespaced(self.api.client("chat"), "chat");
        pods.patch_status(pod_name, &PatchParams::default(), &Patch::Merge(&ready)).await.unwrap();
    }
}

/// Member `id`'s pod as the StatefulSet controller makes it from `revision`.
fn pod(names: &ClusterNames, id: u64, revision: &str, ready: bool) -> Value {
    let mut labels = json!({"app.kubernetes.io/name": "replicated-chat", "app.kubernetes.io/instance": "demo",
        REVISION_LABEL: revision});
    if id >= REPLICA_ID_BASE {
        labels["chat.replicated.dev/read-replica"] = json!("true");
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": names.pod(id), "labels": labels},
        "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

/// What each node logged about votes and leaders (for a failure's message).
fn elections(cluster: &TestCluster) -> String {
    let mut out = String::new();
    for node in &cluster.nodes {
        for line in cluster.log_of(node.id).lines().filter(|l| l.contains("vote") || l.contains("leader")) {
            out.push_str(&format!("[{}] {line}\n", node.id));
        }
    }
    out
}

/// The notes of the operator's Events with this reason, oldest first.
fn events(api: &StandIn, reason: &str) -> Vec<String> {
    api.store()
        .list("events.k8s.io", "events", Some("chat"))
        .iter()
        .filter(|e| e["reason"] == reason)
        .map(|e| e["note"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A client that sends one message after another through the client library
/// until stopped, recording what was acknowledged and what failed.
struct Writer {
    token: String,
    stop: Arc<AtomicBool>,
    acked: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Writer {
    async fn start(cluster: &TestCluster) -> Self {
        let client = Client::new(cluster.addrs(), cluster.client_options()).unwrap();
        client.register("alice", "correct horse battery").await.unwrap();
        client.register("bob", "correct horse battery").await.unwrap();
        let token = client.login("alice", "correct horse battery").await.unwrap();
        let client = client.with_token(token.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (stop, acked) = (stop.clone(), acked.clone());
            async move {
                let mut failed = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let body = format!("m{i}");
                    match client.send_with_id("bob", &body, &format!("w{i}")).await {
                        Ok(_) => acked.lock().unwrap().push(body),
                        Err(e) => failed.push(format!("{body}: {e}")),
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                failed
            }
        });
        Self { token, stop, acked, task }
    }

    async fn wait_for(&self, writes: usize) {
        eventually("the writer going", Duration::from_secs(30), || async {
            (self.acked.lock().unwrap().len() >= writes).then_some(())
        })
        .await;
    }

    /// (acknowledged, failed).
    async fn stop(self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failed = self.task.await.unwrap();
        let acked = self.acked.lock().unwrap().clone();
        (acked, failed)
    }
}
