//! What the operator costs while nothing changes: the real controller
//! (`chat_operator::controller::run`) in this process, `clusters`
//! ReplicatedChats of `pods` pods each, against the stand-in API server (also
//! in this process: what it serves is the operator's doing) and `pods` real
//! `chat-node` processes that every cluster's pods map to — each node serves
//! one WatchStatus stream per cluster, as each pod would in Kubernetes.
//!
//! Settles (every cluster's status names a leader), then measures this
//! process's CPU time, the reconciles and the API writes over `seconds`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use chat_client::{Security, TcpDial};
use chat_k8s_standin::StandIn;
use chat_operator::metrics::Metrics;
use chat_operator::nodes::{Nodes, PodAddress, fixed};
use chat_testkit::TestCluster;
use serde_json::json;

pub struct Options {
    pub chat_node: PathBuf,
    pub clusters: usize,
    pub pods: u64,
    pub seconds: u64,
}

/// What one idle window cost.
#[derive(Debug)]
pub struct Idle {
    pub cpu: Duration,
    pub window: Duration,
    pub reconciles: u64,
    pub api_writes: usize,
}

/// # Errors
/// When the clusters do not settle within two minutes.
pub async fn run(options: &Options) -> anyhow::Result<Idle> {
    let mut nodes = TestCluster::empty(&options.chat_node, &[]);
    for id in 0..options.pods {
        nodes.add_node(id);
    }
    nodes.wait_voters(usize::try_from(options.pods)?).await;
    let api = StandIn::start().await;
    for c in 0..options.clusters {
        seed(&api, &nodes, &format!("demo-{c}"), options.pods);
    }
    let addresses: BTreeMap<u64, PodAddress> =
        nodes.nodes.iter().map(|n| (n.id, PodAddress { public: n.addr.clone(), peer: n.peer.clone() })).collect();
    let dial = Nodes::new(Arc::new(|s: Security| Arc::new(TcpDial::new(s))), fixed(addresses));
    let metrics = Arc::new(Metrics::default());
    let controller = tokio::spawn(chat_operator::controller::run(
        api.client("chat"),
        dial,
        "chat-system".into(),
        metrics.clone(),
        Arc::new(AtomicBool::new(false)),
    ));

    let settled_by = Instant::now() + Duration::from_secs(120);
    loop {
        let led = (0..options.clusters)
            .filter(|c| api.get(&rchat_path(&format!("demo-{c}"))).is_some_and(|o| o["status"]["leader"].is_string()))
            .count();
        if led == options.clusters {
            break;
        }
        anyhow::ensure!(Instant::now() < settled_by, "{led} of {} clusters settled in 120 s", options.clusters);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the settling reconciles' echoes pass.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let me = std::process::id();
    let (cpu0, reconciles0, version0, started) =
        (crate::cpu::used(me).unwrap_or_default(), metrics.reconciles.get(), api.store().version(), Instant::now());
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;
    let idle = Idle {
        cpu: crate::cpu::used(me).unwrap_or_default().saturating_sub(cpu0),
        window: started.elapsed(),
        reconciles: metrics.reconciles.get() - reconciles0,
        api_writes: api.history().iter().filter(|c| c.resource_version > version0).count(),
    };
    controller.abort();
    Ok(idle)
}

fn rchat_path(name: &str) -> String {
    format!("/apis/chat.replicated.dev/v1alpha1/namespaces/chat/replicatedchats/{name}")
}

/// A founded ReplicatedChat `name`, its pods, and its CA (the test kit's, so
/// the operator's certificate is one the nodes accept).
fn seed(api: &StandIn, nodes: &TestCluster, name: &str, pods: u64) {
    let rchat = json!({
        "apiVersion": "chat.replicated.dev/v1alpha1", "kind": "ReplicatedChat",
        "metadata": {"name": name, "namespace": "chat"},
        "spec": {"image": "chat-node:dev", "replicas": pods},
        "status": {"bootstrapped": true},
    });
    api.put(&rchat_path(name), rchat);
    for id in 0..pods {
        let pod = format!("{name}-{id}");
        api.put(
            &format!("/api/v1/namespaces/chat/pods/{pod}"),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod,
                "labels": {"app.kubernetes.io/name": "replicated-chat", "app.kubernetes.io/instance": name}}}),
        );
    }
    let object: chat_k8s::ReplicatedChat =
        serde_json::from_value(api.get(&rchat_path(name)).expect("just put")).expect("a ReplicatedChat");
    let ca = &nodes.tls.ca;
    let secret = chat_operator::resources::certificates::ca_secret(&object, ca.cert_pem(), &ca.key_pem());
    api.put(&format!("/api/v1/namespaces/chat/secrets/{name}-ca"), serde_json::to_value(secret).expect("JSON"));
}
