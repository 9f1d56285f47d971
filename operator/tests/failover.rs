//! How long the client Service waits for a new leader, measured: real node
//! processes, kill -9 of the leader over and over, the stand-in API server
//! holding the pods and the leader Lease. Three ways to route:
//!
//! - the operator's fast path alone (nodes do not label themselves);
//! - the operator stopped: the elected node labels its own pod;
//! - both at once, racing through the same fenced protocol.
//!
//! Each round records election → label, where "election" is the moment a
//! WatchStatus stream from a surviving node first reports the new leader and
//! "label" the moment the API server stored the new leader's label. Every
//! round also checks, over every write the API server took, that no two pods
//! were ever labelled at once. The delays are printed (p50/p99, see
//! BENCHMARKS.md); the test asserts what must hold, not how fast.

#[path = "fixtures/standin.rs"]
mod standin;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_k8s_standin::{Change, StandIn};
use chat_proto::cluster::cluster_service_client::ClusterServiceClient;
use chat_proto::cluster::{Role, WatchStatusRequest};
use chat_testkit::{TestCluster, chat_node_binary, eventually};
use standin::{PODS, ROLE, fast_path, labelled, pod};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operators_fast_path_labels_each_new_leader() {
    let delays = failovers(20, Routing::Operator).await;
    report("operator fast path: election → label", &delays);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_operator_stopped_the_elected_node_labels_itself() {
    let delays = failovers(20, Routing::Nodes).await;
    report("operator stopped, node self-label: election → label", &delays);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_operator_and_the_nodes_racing_never_label_two_pods() {
    let delays = failovers(10, Routing::Both).await;
    report("operator and nodes together: election → label", &delays);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Routing {
    Operator,
    Nodes,
    Both,
}

/// Kills the leader `rounds` times; returns each round's election → label delay.
async fn failovers(rounds: usize, routing: Routing) -> Vec<Duration> {
    let api = StandIn::start().await;
    let kube_dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(kube_dir.path(), "chat");
    let kubeconfig = kubeconfig.to_str().unwrap().to_string();
    let self_label = [("CHAT_KUBE_CLUSTER", "demo"), ("POD_NAMESPACE", "chat"), ("KUBECONFIG", kubeconfig.as_str())];
    let env: &[(&str, &str)] = if routing == Routing::Operator { &[] } else { &self_label };
    let mut cluster = TestCluster::empty(chat_node_binary(), env);
    for id in 0..3 {
        api.put(&format!("{PODS}/demo-{id}"), pod(id));
        cluster.add_node(id);
    }
    cluster.wait_voters(3).await;
    // Keep the fast path (and its streams) alive for the whole test.
    let _operator = (routing != Routing::Nodes).then(|| fast_path(&api, &cluster));
    let first = cluster.leader().await;
    eventually("the first leader labelled", Duration::from_secs(20), || async {
        (labelled(&api) == [pod_name(first)]).then_some(())
    })
    .await;

    let clock = ElectionClock::start(&cluster);
    let mut delays = Vec::new();
    for round in 0..rounds {
        let old = cluster.leader().await;
        let mut changes = api.subscribe();
        cluster.kill(old);
        let (new, term, elected_at) = clock.next_leader_after(old).await;
        let labelled_at = loop {
            let change = tokio::time::timeout(Duration::from_secs(20), changes.recv())
                .await
                .unwrap_or_else(|_| panic!("round {round}: demo-{new} (term {term}) was never labelled"))
                .expect("the change feed");
            if is_label_of(&change, new) {
                break change.at;
            }
        };
        let delay = labelled_at.saturating_duration_since(elected_at);
        eprintln!("round {round}: demo-{old} killed, demo-{new} elected in term {term}, labelled {delay:?} later");
        delays.push(delay);
        assert_eq!(labelled(&api), [pod_name(new)]);
        cluster.restart(old);
        // Back as a follower of whoever leads by then (another election may have followed).
        eventually("the old leader back as a follower", Duration::from_secs(30), || async {
            cluster
                .status(old)
                .await
                .filter(|s| s.leader_id.is_some_and(|l| l != old) && s.role == Role::Follower as i32)
        })
        .await;
    }
    assert_never_two_labels(&api.history());
    delays
}

fn pod_name(id: u64) -> String {
    format!("demo-{id}")
}

fn is_label_of(change: &Change, id: u64) -> bool {
    change.key.resource == "pods"
        && change.key.name == pod_name(id)
        && change.object["metadata"]["labels"][ROLE] == "leader"
}

/// Replays every write: at no point may two pods carry the label.
fn assert_never_two_labels(history: &[Change]) {
    let mut on = BTreeSet::new();
    for change in history.iter().filter(|c| c.key.resource == "pods") {
        if change.object["metadata"]["labels"][ROLE] == "leader" {
            on.insert(change.key.name.clone());
        } else {
            on.remove(&change.key.name);
        }
        assert!(on.len() <= 1, "two pods labelled after write {}: {on:?}", change.resource_version);
    }
}

/// When each (leader, term) was first reported by any node, as WatchStatus
/// streams from every node push it (redialled after a node restarts).
struct ElectionClock {
    seen: Arc<Mutex<HashMap<(u64, u64), Instant>>>,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ElectionClock {
    fn start(cluster: &TestCluster) -> Self {
        let seen: Arc<Mutex<HashMap<(u64, u64), Instant>>> = Arc::default();
        let tasks = cluster
            .nodes
            .iter()
            .map(|n| {
                let channel = cluster.tls.channel(&n.addr);
                let seen = seen.clone();
                tokio::spawn(async move {
                    loop {
                        let mut client = ClusterServiceClient::new(channel.clone());
                        let request = WatchStatusRequest { min_interval_ms: 60_000, heartbeat_ms: 0 };
                        if let Ok(stream) = client.watch_status(request).await {
                            let mut stream = stream.into_inner();
                            while let Ok(Some(s)) = stream.message().await {
                                if let Some(leader) = s.leader_id {
                                    seen.lock().unwrap().entry((leader, s.term)).or_insert_with(Instant::now);
                                }
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                })
            })
            .collect();
        Self { seen, _tasks: tasks }
    }

    /// The first leader other than `old` in a term newer than any `old` led, with when it was first seen.
    async fn next_leader_after(&self, old: u64) -> (u64, u64, Instant) {
        let old_term = self.seen.lock().unwrap().keys().filter(|(l, _)| *l == old).map(|(_, t)| *t).max().unwrap_or(0);
        eventually("a new leader", Duration::from_secs(20), || async {
            let seen = self.seen.lock().unwrap();
            seen.iter()
                .filter(|((leader, term), _)| *leader != old && *term > old_term)
                .min_by_key(|(_, at)| **at)
                .map(|(&(leader, term), &at)| (leader, term, at))
        })
        .await
    }
}

fn report(what: &str, delays: &[Duration]) {
    let mut sorted = delays.to_vec();
    sorted.sort();
    let pick = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q).round() as usize];
    eprintln!("{what}: n={} p50={:?} p99={:?} max={:?}", sorted.len(), pick(0.5), pick(0.99), sorted.last().unwrap());
}
