//! What the running controller asks of the API server besides reconciles: it
//! checks the CRD is installed, then lists and watches its objects. Every such
//! request must be allowed by the chart's ClusterRole; and the leader watch
//! must wake a reconcile when a real cluster elects a new leader.

#[path = "fixtures/rbac.rs"]
mod rbac;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use chat_client::{Security, TcpDial};
use chat_k8s::testing::{list, mock_client};
use chat_k8s::{ClusterNames, ReplicatedChat};
use chat_operator::controller;
use chat_operator::leader_watch::{LeaderWatch, Seen};
use chat_operator::metrics::Metrics;
use chat_operator::nodes::{Nodes, PodAddress, fixed};
use chat_proto::cluster::Role;
use chat_testkit::{TestCluster, chat_node_binary, eventually};
use futures::StreamExt;
use http::Method;
use kube::runtime::reflector::ObjectRef;

#[tokio::test]
async fn the_controllers_lists_and_watches_are_all_allowed_by_the_chart() {
    let (client, mut api) = mock_client("chat");
    let nodes = Nodes::new(Arc::new(|s| Arc::new(TcpDial::new(s))), fixed(BTreeMap::new()));
    let ready = Arc::new(AtomicBool::new(false));
    let run =
        tokio::spawn(controller::run(client, nodes, "chat-system".into(), Arc::new(Metrics::default()), ready.clone()));
    // Answer every list with an empty list and every watch with an empty stream, for a while.
    let until = Instant::now() + Duration::from_millis(1500);
    let mut seen = BTreeSet::new();
    while Instant::now() < until {
        let Some(call) = api.next_within(Duration::from_millis(100)).await else { continue };
        let (verb, group, resource) = chat_k8s::testing::request_attributes(&call.method, &call.path, &call.query);
        seen.insert(format!("{verb} {group}/{resource}"));
        assert_eq!(call.method, Method::GET, "startup only reads: {} {}", call.method, call.path);
        call.ok(list("Thing", "v1", vec![]));
    }
    run.abort();
    rbac::assert_allowed(&api.seen);
    for resource in ["chat.replicated.dev/replicatedchats", "apps/statefulsets", "/services", "/pods"] {
        for verb in ["list", "watch"] {
            assert!(seen.contains(&format!("{verb} {resource}")), "never saw {verb} {resource}: {seen:?}");
        }
    }
    assert!(ready.load(std::sync::atomic::Ordering::Relaxed), "ready once the CRD answered");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_leader_watch_wakes_a_reconcile_when_a_new_leader_is_elected() {
    let mut cluster = TestCluster::empty(chat_node_binary(), &[]);
    for id in 0..3 {
        cluster.add_node(id);
    }
    cluster.wait_voters(3).await;
    let old = cluster.leader().await;
    let addresses: BTreeMap<u64, PodAddress> =
        cluster.nodes.iter().map(|n| (n.id, PodAddress { public: n.addr.clone(), peer: n.peer.clone() })).collect();
    let nodes = Nodes::new(Arc::new(|s| Arc::new(TcpDial::new(s))), fixed(addresses));
    let names = ClusterNames::new("demo", "chat");
    nodes.secure(&names, "test", Security::Tls(cluster.tls.operator.clone()));
    let (watch, mut wake) = LeaderWatch::new(nodes);
    let object: ObjectRef<ReplicatedChat> = ObjectRef::new("demo").within("chat");
    watch.update(object.clone(), Seen { names, ordinals: vec![0, 1, 2], leader: Some(old) });
    assert!(tokio::time::timeout(Duration::from_millis(800), wake.next()).await.is_err(), "no wake-up while steady");

    let woken = tokio::spawn(async move {
        let object = tokio::time::timeout(Duration::from_secs(20), wake.next()).await.expect("woken").expect("stream");
        (Instant::now(), object)
    });
    cluster.kill(old);
    // When did a new leader appear (as a client polling every 50 ms sees it)?
    let elected = eventually("a new leader", Duration::from_secs(20), || async {
        for id in cluster.running() {
            if cluster.status(id).await.is_some_and(|s| s.role == Role::Leader as i32) {
                return Some(Instant::now());
            }
        }
        None
    })
    .await;
    let (at, woken) = woken.await.unwrap();
    assert_eq!(woken, object);
    let (sign, delay) =
        if at >= elected { ("after", at.duration_since(elected)) } else { ("before", elected.duration_since(at)) };
    eprintln!("leader watch: reconcile requested {delay:?} {sign} the test first saw the new leader");
    watch.forget(&object);
    assert!(!watch.is_watching(&object));
}
