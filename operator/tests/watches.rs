//! What the running controller asks of the API server besides reconciles: it
//! checks the CRD is installed, then lists and watches its objects. Every such
//! request must be allowed by the chart's ClusterRole; and the leader watch
//! (the fast path) must move the label and wake a reconcile when a real
//! cluster elects a new leader.

#[path = "fixtures/rbac.rs"]
mod rbac;
#[path = "fixtures/standin.rs"]
mod standin;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use chat_client::TcpDial;
use chat_k8s::ReplicatedChat;
use chat_k8s::testing::{list, mock_client};
use chat_k8s_standin::StandIn;
use chat_operator::controller;
use chat_operator::metrics::Metrics;
use chat_operator::nodes::{Nodes, fixed};
use chat_proto::cluster::Role;
use chat_testkit::{TestCluster, chat_node_binary, eventually};
use futures::StreamExt;
use http::Method;
use kube::runtime::reflector::ObjectRef;
use standin::{PODS, fast_path, labelled, pod, seen};

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
async fn the_fast_path_moves_the_label_to_a_new_leader_and_wakes_a_reconcile() {
    let mut cluster = TestCluster::empty(chat_node_binary(), &[]);
    for id in 0..3 {
        cluster.add_node(id);
    }
    cluster.wait_voters(3).await;
    let old = cluster.leader().await;
    let api = StandIn::start().await;
    for id in 0..3 {
        api.put(&format!("{PODS}/demo-{id}"), pod(id));
    }
    let (routing, mut wake) = fast_path(&api, &cluster);
    let object: ObjectRef<ReplicatedChat> = ObjectRef::new("demo").within("chat");
    routing.update(object.clone(), seen(3));
    eventually("the leader labelled", Duration::from_secs(10), || async {
        (labelled(&api) == [format!("demo-{old}")]).then_some(())
    })
    .await;
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), wake.next()).await.unwrap(), Some(object.clone()));

    let mut changes = api.subscribe();
    cluster.kill(old);
    let (new, term) = elected(&cluster, old).await;
    eventually("the label on the new leader", Duration::from_secs(10), || async {
        (labelled(&api) == [format!("demo-{new}")]).then_some(())
    })
    .await;
    // The old label went before the new one came: never two.
    let mut on = std::collections::BTreeSet::from([format!("demo-{old}")]);
    while let Ok(change) = changes.try_recv() {
        if change.key.resource == "pods" {
            let name = change.key.name.clone();
            if change.object["metadata"]["labels"]["chat.replicated.dev/role"] == "leader" {
                on.insert(name);
            } else {
                on.remove(&name);
            }
            assert!(on.len() <= 1, "two pods labelled at once: {on:?}");
        }
    }
    let lease = api.get("/apis/coordination.k8s.io/v1/namespaces/chat/leases/demo-leader").expect("the lease");
    assert_eq!(lease["spec"]["holderIdentity"], format!("demo-{new}"));
    assert_eq!(lease["metadata"]["annotations"]["chat.replicated.dev/term"], term.to_string());
    let woken = tokio::time::timeout(Duration::from_secs(5), wake.next()).await.unwrap();
    assert_eq!(woken, Some(object.clone()), "a reconcile to update status.leader");
    routing.forget(&object);
    assert!(!routing.is_watching(&object));
}

/// The new leader and its term, once a surviving node reports one.
async fn elected(cluster: &TestCluster, old: u64) -> (u64, u64) {
    eventually("a new leader", Duration::from_secs(20), || async {
        for id in cluster.running() {
            if let Some(s) = cluster.status(id).await.filter(|s| s.role == Role::Leader as i32 && id != old) {
                return Some((id, s.term));
            }
        }
        None
    })
    .await
}
