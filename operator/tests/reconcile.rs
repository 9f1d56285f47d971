//! Reconcile, end to end but offline: the Kubernetes API is the scripted mock
//! server (each request's method, path and body asserted), the chat nodes are
//! real `chat-node` processes on loopback. Every request made is also checked
//! against the Helm chart's RBAC rules.
//!
//! Scenarios: create (bootstrap once, joins, steady), scale down
//! (leader handed over first, members removed highest first, the StatefulSet
//! shrinking only after), the leader label moving old-off-then-new-on, a voter
//! that lost its volume, an invalid spec, deletion.

mod fixtures;

use std::collections::BTreeMap;
use std::time::Duration;

use chat_operator::controller::LEGACY_FINALIZER;
use chat_proto::cluster::{Role, TransferLeaderRequest};
use chat_testkit::{TestCluster, chat_node_binary, eventually};
use fixtures::*;
use http::Method;
use serde_json::{Value, json};

/// Pods demo-0..demo-<n-1>, `leader` carrying the leader label.
fn pods(n: u64, leader: Option<u64>) -> Vec<Value> {
    (0..n).map(|i| pod(i, Some(i) == leader)).collect()
}

fn paths(requests: &[Request]) -> Vec<String> {
    requests.iter().map(|r| format!("{} {}", r.method, r.path)).collect()
}

/// A cluster of `n` real nodes (ids 0..n) founded and grown by the test kit itself.
async fn running_cluster(n: u64) -> TestCluster {
    let mut nodes = TestCluster::empty(chat_node_binary(), &[]);
    for id in 0..n {
        nodes.add_node(id);
    }
    nodes.wait_voters(n as usize).await;
    nodes
}

async fn wait_leader(nodes: &TestCluster, id: u64) {
    eventually(&format!("node {id} leads"), Duration::from_secs(20), || async {
        nodes.status(id).await.filter(|s| s.role == Role::Leader as i32).map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_founds_once_and_grows_to_three_voters() {
    let mut nodes = TestCluster::empty(chat_node_binary(), &[]);
    for id in 0..3 {
        nodes.add_bare_node(id);
    }
    let (ctx, mut api) = context(addresses(&nodes), Some(&nodes));

    // 2. Owned objects in order, the StatefulSet at full size, the cluster founded on demo-0.
    let (outcome, requests) = reconcile(&ctx, &mut api, &rchat(json!({}), None), pods(3, None)).await;
    outcome.unwrap();
    let mut expected = vec![format!("GET {PODS}")];
    expected.extend(certificate_requests(true));
    expected.extend(owned_before_pods().iter().map(|p| format!("PATCH {p}")));
    expected.extend([format!("PATCH {STS}"), format!("POST {EVENTS}")]);
    expected.push(format!("PATCH {RCHAT}/status"));
    assert_eq!(paths(&requests), expected);
    assert_eq!(statefulset_replicas(&requests), Some(3));
    let sts = &requests.iter().find(|r| r.is(&Method::PATCH, STS)).unwrap().body;
    assert_eq!(sts["metadata"]["ownerReferences"][0]["kind"], "ReplicatedChat");
    assert_eq!(events(&requests), ["Bootstrapped"]);
    let mut status = status_sent(&requests).unwrap();
    assert_eq!(status["bootstrapped"], true);
    wait_leader(&nodes, 0).await;
    for other in [1, 2] {
        assert!(nodes.status(other).await.unwrap().members.is_empty(), "only demo-0 founded a cluster");
    }

    // 3. Joins, lowest ordinal first; the leader gets its label on the way.
    let mut labelled = None;
    for ordinal in [1u64, 2] {
        let object = rchat(json!({}), Some(status.clone()));
        let (outcome, requests) = reconcile(&ctx, &mut api, &object, pods(3, labelled)).await;
        outcome.unwrap();
        assert!(events(&requests).contains(&"MemberJoined".to_string()), "{requests:#?}");
        let note = requests.iter().find(|r| r.event_reason() == Some("MemberJoined")).unwrap().body["note"].clone();
        assert_eq!(note, format!("demo-{ordinal} joined as a voter"));
        if labelled.is_none() {
            let label = requests.iter().find(|r| r.is(&Method::PATCH, &format!("{PODS}/demo-0"))).expect("labelled");
            assert_eq!(label.body["metadata"]["labels"]["chat.replicated.dev/role"], "leader");
            assert!(events(&requests).contains(&"LeaderChanged".to_string()));
            labelled = Some(0);
        }
        status = status_sent(&requests).unwrap_or(status);
    }
    nodes.wait_voters(3).await;

    // 4. Steady: no event, no label change, and a status that says so.
    let object = rchat(json!({}), Some(status));
    let (outcome, requests) = reconcile(&ctx, &mut api, &object, pods(3, Some(0))).await;
    outcome.unwrap();
    assert_eq!(events(&requests), Vec::<String>::new());
    let status = status_sent(&requests).expect("status changed since the last reconcile");
    assert_eq!((status["replicas"].as_i64(), status["readyReplicas"].as_i64()), (Some(3), Some(3)));
    assert_eq!(status["leader"], "demo-0");
    assert_eq!(status["selector"], "app.kubernetes.io/instance=demo,app.kubernetes.io/name=replicated-chat");
    assert_eq!(condition(&status, "Available")["status"], "True");
    assert_eq!(condition(&status, "Progressing")["status"], "False");
    assert_eq!(condition(&status, "Degraded")["status"], "False");
    assert_eq!(status["members"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_down_hands_over_removes_highest_first_and_only_then_shrinks() {
    let mut nodes = running_cluster(5).await;
    // Put leadership on a member the scale-down removes.
    let leader = nodes.leader().await;
    let mut admin = nodes.membership_client(leader);
    admin.transfer_leader(TransferLeaderRequest { to: Some(4) }).await.unwrap();
    wait_leader(&nodes, 4).await;
    let (ctx, mut api) = context(addresses(&nodes), Some(&nodes));
    let spec = json!({"replicas": 3});
    let status = json!({"bootstrapped": true});

    // 1. The leader is surplus: hand leadership to a member that stays. The StatefulSet keeps 5.
    let object = rchat(spec.clone(), Some(status.clone()));
    let (outcome, requests) = reconcile(&ctx, &mut api, &object, pods(5, Some(4))).await;
    outcome.unwrap();
    assert_eq!(statefulset_replicas(&requests), Some(5));
    assert_eq!(events(&requests), ["LeaderHandedOver"]);
    let new_leader = nodes.leader().await;
    assert!(new_leader < 3, "leadership went to a member that stays, not {new_leader}");

    // 2. Member 4 leaves Raft; the label moves off demo-4 before it goes on the new leader.
    let (outcome, requests) = reconcile(&ctx, &mut api, &object, pods(5, Some(4))).await;
    outcome.unwrap();
    assert_eq!(statefulset_replicas(&requests), Some(5), "pods stay until their members are out");
    let off = requests.iter().position(|r| r.is(&Method::PATCH, &format!("{PODS}/demo-4"))).expect("unlabelled");
    let on =
        requests.iter().position(|r| r.is(&Method::PATCH, &format!("{PODS}/demo-{new_leader}"))).expect("labelled");
    assert!(off < on, "old label removed before the new one is set: {:?}", paths(&requests));
    assert_eq!(requests[off].body["metadata"]["labels"]["chat.replicated.dev/role"], Value::Null);
    assert_eq!(requests[off].body["metadata"]["labels"]["chat.replicated.dev/read-only"], "true");
    assert_eq!(requests[off].body["metadata"]["resourceVersion"], "1", "conditional on the pod as read");
    assert_eq!(events(&requests), ["MemberRemoved", "LeaderChanged"]);
    nodes.kill(4); // what the StatefulSet does once it shrinks

    // 3. Member 3 next; the StatefulSet may drop demo-4 now.
    let (outcome, requests) = reconcile(&ctx, &mut api, &object, pods(4, Some(new_leader))).await;
    outcome.unwrap();
    assert_eq!(statefulset_replicas(&requests), Some(4));
    assert_eq!(events(&requests), ["MemberRemoved"], "{requests:#?}");
    nodes.kill(3);

    // 4. Steady at three voters.
    let (outcome, requests) = reconcile(&ctx, &mut api, &object, pods(3, Some(new_leader))).await;
    outcome.unwrap();
    assert_eq!(statefulset_replicas(&requests), Some(3));
    assert_eq!(events(&requests), Vec::<String>::new());
    let status = status_sent(&requests).unwrap();
    assert_eq!(status["replicas"], 3);
    let s = nodes.status(new_leader).await.unwrap();
    assert_eq!(s.members.iter().map(|m| m.id).collect::<Vec<_>>(), [0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_voter_that_lost_its_volume_is_removed_and_rejoins_as_a_new_member() {
    // Slow heartbeats (long elections too), so the leader usually has not yet
    // repaired the wiped follower by itself when the operator looks.
    let timing = [
        ("CHAT_HEARTBEAT_MS", "1500"),
        ("CHAT_ELECTION_TIMEOUT_MIN_MS", "6000"),
        ("CHAT_ELECTION_TIMEOUT_MAX_MS", "9000"),
    ];
    let mut nodes = TestCluster::empty(chat_node_binary(), &timing);
    for id in 0..3 {
        nodes.add_node(id);
    }
    nodes.wait_voters(3).await;
    let leader = nodes.leader().await;
    let lost = if leader == 2 { 1 } else { 2 };
    nodes.wipe(lost);
    let (ctx, mut api) = context(addresses(&nodes), Some(&nodes));
    let object = rchat(json!({}), Some(json!({"bootstrapped": true})));

    // The operator sees a voter answering with no data: it removes it, then adds it back.
    // (If the leader's replication repaired it first, there is nothing to do: both paths
    // end with the same member, caught up; neither ever founds a second cluster.)
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (outcome, requests) = reconcile(&ctx, &mut api, &object, pods(3, Some(leader))).await;
        outcome.unwrap();
        seen.extend(events(&requests).into_iter().filter(|e| e != "LeaderChanged"));
    }
    eprintln!("membership events after the wipe: {seen:?}");
    assert!(
        seen.is_empty() || seen == ["MemberLostData", "MemberJoined"],
        "evicted and re-joined, or repaired by the leader: {seen:?}"
    );
    nodes.wait_voters(3).await;
    let status = nodes.status(lost).await.unwrap();
    assert!(status.applied_index > 0, "the member caught up");
    assert_eq!(status.members.len(), 3, "it belongs to the one cluster, not one of its own");
}

#[tokio::test]
async fn certificates_are_made_once_renewed_when_stale_and_mounted_by_the_pods() {
    let (ctx, mut api) = context(BTreeMap::new(), None);
    let object = rchat(json!({}), Some(json!({"bootstrapped": true})));

    // First reconcile: a CA of the cluster's own, the nodes' certificate, the public CA.
    let (_, requests) = reconcile(&ctx, &mut api, &object, vec![]).await;
    assert_eq!(all_events(&requests)[..3], ["CACreated", "CertificateIssued", "AdminCertificateIssued"]);
    let admin = api.objects[ADMIN_SECRET].clone();
    let admin_cert = admin["data"]["tls.crt"].as_str().map(|b64| b64.to_string()).unwrap();
    assert!(!admin_cert.is_empty() && admin["type"] == "kubernetes.io/tls", "{admin}");
    let ca = api.objects[CA_SECRET].clone();
    let tls = api.objects[TLS_SECRET].clone();
    assert_eq!(tls["type"], "kubernetes.io/tls");
    assert_eq!(ca["metadata"]["ownerReferences"][0]["kind"], "ReplicatedChat");
    let config_map = &api.objects[CA_CONFIG_MAP];
    assert!(config_map["data"]["ca.crt"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(config_map["data"].get("ca.key").is_none(), "the ConfigMap holds no key");
    let sts = &requests.iter().find(|r| r.is(&Method::PATCH, STS)).expect("StatefulSet applied").body;
    let volume = &sts["spec"]["template"]["spec"]["volumes"][0];
    assert_eq!(volume["secret"]["secretName"], "demo-tls");

    // Steady: read, not rewritten (the CA is never replaced by a new one).
    let (_, requests) = reconcile(&ctx, &mut api, &object, vec![]).await;
    assert_eq!(paths(&requests)[1..5], certificate_requests(false)[..]);
    assert_eq!(api.objects[CA_SECRET], ca);
    assert_eq!(api.objects[ADMIN_SECRET], admin, "the admin certificate is kept while current");
    assert_eq!(api.objects[TLS_SECRET], tls);

    // A certificate issued for other names (or expiring, or of another CA) is replaced.
    api.objects.get_mut(TLS_SECRET).unwrap()["metadata"]["annotations"]["chat.replicated.dev/hosts"] = json!("old");
    let (_, requests) = reconcile(&ctx, &mut api, &object, vec![]).await;
    let renewed = [
        format!("GET {CA_SECRET}"),
        format!("GET {TLS_SECRET}"),
        format!("PATCH {TLS_SECRET}"),
        format!("POST {EVENTS}"),
        // The admin's certificate is current: read, kept.
        format!("GET {ADMIN_SECRET}"),
        format!("PATCH {CA_CONFIG_MAP}"),
    ];
    assert_eq!(paths(&requests)[1..7], renewed[..]);
    let note = requests.iter().find(|r| r.event_reason() == Some("CertificateRenewed")).unwrap().body["note"].clone();
    assert!(note.as_str().unwrap().contains("host names changed"), "{note}");
    assert_ne!(api.objects[TLS_SECRET]["data"]["tls.crt"], tls["data"]["tls.crt"]);
    assert_eq!(api.objects[TLS_SECRET]["data"]["ca.crt"], tls["data"]["ca.crt"], "same CA");
}

/// A merge patch skips absent fields: a leader that is gone must be sent as
/// an explicit null, or `kubectl get rchat` keeps naming it through a loss of quorum.
#[tokio::test]
async fn a_leader_that_is_gone_is_cleared_from_the_status() {
    let (ctx, mut api) = context(BTreeMap::new(), None);
    let object = rchat(json!({}), Some(json!({"bootstrapped": true, "leader": "demo-0", "term": 3})));
    let (outcome, requests) = reconcile(&ctx, &mut api, &object, pods(3, Some(0))).await;
    outcome.unwrap();
    let status = status_sent(&requests).expect("a status patch");
    assert_eq!(status.get("leader"), Some(&Value::Null), "sent as null: {status}");
}

#[tokio::test]
async fn brought_certificates_that_do_not_exist_fail_the_reconcile_with_a_reason() {
    let (ctx, mut api) = context(BTreeMap::new(), None);
    let object = rchat(json!({"tls": {"nodeSecret": "mine", "operatorSecret": "mine-op"}}), None);
    let (outcome, requests) = reconcile(&ctx, &mut api, &object, vec![]).await;
    let err = outcome.unwrap_err();
    assert!(err.contains("\"mine\"") && err.contains("does not exist"), "{err}");
    assert_eq!(paths(&requests), [format!("GET {PODS}"), "GET /api/v1/namespaces/chat/secrets/mine".to_string()]);
    assert!(!api.objects.contains_key(CA_SECRET), "no CA of the operator's own");
}

#[tokio::test]
async fn an_invalid_spec_is_reported_not_rolled_out() {
    let (ctx, mut api) = context(BTreeMap::new(), None);
    let object = rchat(json!({"image": "", "storage": {"size": "lots"}}), None);
    let (outcome, requests) = reconcile(&ctx, &mut api, &object, vec![]).await;
    assert!(outcome.is_ok(), "no crash loop: {outcome:?}");
    assert_eq!(paths(&requests), [format!("GET {PODS}"), format!("POST {EVENTS}"), format!("PATCH {RCHAT}/status")]);
    assert_eq!(requests[1].body["type"], "Warning");
    assert_eq!(requests[1].body["reason"], "InvalidSpec");
    let note = requests[1].body["note"].as_str().unwrap();
    assert!(note.contains("spec.image") && note.contains("spec.storage.size"), "{note}");
    let status = status_sent(&requests).unwrap();
    assert_eq!(condition(&status, "Degraded")["status"], "True");
    assert_eq!(condition(&status, "Degraded")["reason"], "InvalidSpec");
    assert_eq!(status["observedGeneration"], 1);

    // Seen this generation already: the status stays, no second Event.
    let object = rchat(json!({"image": "", "storage": {"size": "lots"}}), Some(status));
    let (_, requests) = reconcile(&ctx, &mut api, &object, vec![]).await;
    assert_eq!(paths(&requests), [format!("GET {PODS}"), format!("PATCH {RCHAT}/status")]);
}

/// Earlier versions put a finalizer on every ReplicatedChat; with it,
/// `kubectl delete` waited for a running operator. It is removed (and only
/// it, conditionally on the version read), before anything else — also from
/// an object being deleted, which then goes at once.
#[tokio::test]
async fn the_legacy_finalizer_is_removed_so_deletion_never_waits_for_the_operator() {
    let (ctx, mut api) = context(BTreeMap::new(), None);
    for deleting in [false, true] {
        let mut object = rchat(json!({}), Some(json!({"bootstrapped": true})));
        object.metadata.finalizers = Some(vec!["example.com/theirs".into(), LEGACY_FINALIZER.into()]);
        if deleting {
            object.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
        }
        let (outcome, requests) = reconcile(&ctx, &mut api, &object, vec![]).await;
        outcome.unwrap();
        assert_eq!(paths(&requests), [format!("PATCH {RCHAT}")]);
        assert_eq!(
            requests[0].body["metadata"],
            json!({"finalizers": ["example.com/theirs"], "resourceVersion": "7"}),
            "deleting: {deleting}"
        );
    }
    // Held by someone else's finalizer, being deleted: nothing of ours to write.
    let mut object = rchat(json!({}), Some(json!({"bootstrapped": true})));
    object.metadata.finalizers = Some(vec!["example.com/theirs".into()]);
    object.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    let (outcome, requests) = reconcile(&ctx, &mut api, &object, vec![]).await;
    outcome.unwrap();
    assert!(requests.is_empty(), "{:?}", paths(&requests));
}

#[tokio::test]
async fn a_statefulset_the_api_server_refuses_is_reported_not_retried_in_a_loop() {
    let (ctx, mut api) = context(BTreeMap::new(), None);
    let object = rchat(json!({}), Some(json!({"bootstrapped": true})));
    let task = tokio::spawn(chat_operator::controller::reconcile(std::sync::Arc::new(object.clone()), ctx.clone()));
    api.next(Method::GET, PODS).await.ok(chat_k8s::testing::list("Pod", "v1", vec![]));
    // The certificates first: a CA and the nodes' certificate are made.
    api.next(Method::GET, CA_SECRET).await.not_found();
    api.next(Method::PATCH, CA_SECRET).await.echo();
    api.next(Method::POST, EVENTS).await.echo();
    api.next(Method::GET, TLS_SECRET).await.not_found();
    api.next(Method::PATCH, TLS_SECRET).await.echo();
    api.next(Method::POST, EVENTS).await.echo();
    api.next(Method::GET, ADMIN_SECRET).await.not_found();
    api.next(Method::PATCH, ADMIN_SECRET).await.echo();
    api.next(Method::POST, EVENTS).await.echo();
    api.next(Method::PATCH, CA_CONFIG_MAP).await.echo();
    for path in owned_before_pods() {
        api.next(Method::PATCH, path).await.echo();
    }
    let message = "StatefulSet.apps \"demo\" is invalid: spec: Forbidden: updates to statefulset spec for fields \
                   other than 'replicas', 'ordinals', 'template', 'updateStrategy' are forbidden";
    api.next(Method::PATCH, STS).await.fail(http::StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message);
    let event = api.next(Method::POST, EVENTS).await;
    assert_eq!((event.body["type"].as_str(), event.body["reason"].as_str()), (Some("Warning"), Some("Refused")));
    assert!(event.body["note"].as_str().unwrap().contains("Forbidden"), "{}", event.body);
    event.echo();
    let status = api.next(Method::PATCH, &format!("{RCHAT}/status")).await;
    assert_eq!(condition(&status.body["status"], "Degraded")["reason"], "Refused");
    status.ok(serde_json::to_value(&object).unwrap());
    let action = task.await.unwrap().expect("a refusal is reported, not returned as an error");
    assert_eq!(action, kube::runtime::controller::Action::await_change());
}

/// A Lease claiming a term no election reached (a hand edit, a bug) would
/// stop every writer for good ("superseded"): the reconcile sees that a
/// majority of voters report older terms, resets it, and routes.
#[tokio::test(flavor = "multi_thread")]
async fn a_lease_claiming_a_term_no_election_reached_is_reset_and_the_leader_routed() {
    let nodes = running_cluster(3).await;
    let leader = nodes.leader().await;
    let term = nodes.status(leader).await.unwrap().term;
    let (ctx, mut api) = context(addresses(&nodes), Some(&nodes));
    let lease = format!("{LEASES}/demo-leader");
    api.objects.insert(
        lease.clone(),
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "demo-leader", "namespace": NS, "resourceVersion": "7",
                            "annotations": {"chat.replicated.dev/term": "1000000"}},
               "spec": {"holderIdentity": "demo-9"}}),
    );
    let object = rchat(json!({}), Some(json!({"bootstrapped": true})));
    let (outcome, requests) = reconcile(&ctx, &mut api, &object, pods(3, None)).await;
    outcome.unwrap();
    assert_eq!(events(&requests), ["LeaseAhead", "LeaderChanged"], "{:#?}", paths(&requests));
    assert_eq!(api.objects[&lease]["metadata"]["annotations"]["chat.replicated.dev/term"], term.to_string());
    assert_eq!(api.objects[&lease]["spec"]["holderIdentity"], format!("demo-{leader}"));
    let label = requests.iter().rfind(|r| r.is(&Method::PATCH, &format!("{PODS}/demo-{leader}"))).expect("labelled");
    assert_eq!(label.body["metadata"]["labels"]["chat.replicated.dev/role"], "leader");
}

/// `readReplicas: 1` on a steady cluster: the replicas' StatefulSet is applied
/// and the replica pod is joined as a learner that is never promoted; the
/// voters' plan is untouched (the replica is not a surplus voter).
#[tokio::test(flavor = "multi_thread")]
async fn a_read_replica_joins_as_a_learner_in_its_own_statefulset() {
    let mut nodes = running_cluster(3).await;
    nodes.add_bare_node(chat_k8s::names::REPLICA_ID_BASE);
    let (ctx, mut api) = context(addresses(&nodes), Some(&nodes));
    let leader = nodes.leader().await;
    let object = rchat(json!({"readReplicas": 1}), Some(json!({"bootstrapped": true})));
    let mut all = pods(3, Some(leader));
    let mut replica = pod(0, false);
    replica["metadata"]["name"] = json!("demo-replica-0");
    all.push(replica);

    let (outcome, requests) = reconcile(&ctx, &mut api, &object, all.clone()).await;
    outcome.unwrap();
    assert_eq!(events(&requests), ["ReadReplicaJoined"], "{:#?}", paths(&requests));
    let sts = requests.iter().find(|r| r.is(&Method::PATCH, &format!("{STS}-replica"))).expect("the replicas' set");
    assert_eq!(sts.body["spec"]["replicas"], 1);
    assert_eq!(statefulset_replicas(&requests), Some(3), "the voters' set is unchanged");
    let members = nodes.status(leader).await.unwrap().members;
    let learner = members.iter().find(|m| m.id == chat_k8s::names::REPLICA_ID_BASE).expect("joined");
    assert!(!learner.voter, "a read replica is never promoted");

    // Steady: nothing more to do, and the status counts 3 voters.
    let (outcome, requests) = reconcile(&ctx, &mut api, &object, all).await;
    outcome.unwrap();
    assert_eq!(events(&requests), Vec::<String>::new());
    let status = status_sent(&requests).unwrap_or_else(|| panic!("{:#?}", paths(&requests)));
    assert_eq!(status["replicas"], 3);
    assert_eq!(condition(&status, "Progressing")["status"], "False");
}

/// `spec.bootstrap.fromBackup`: pod 0 alone, restoring (its template carries
/// the restore), never founded empty in its place; once it serves the
/// restored cluster, it is adopted and the StatefulSet grows without the restore.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_restored_from_a_backup_runs_pod_zero_alone_until_founded() {
    // A backup of a real cluster, taken with the operator's certificate.
    let old = running_cluster(1).await;
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("old.backup");
    let security = chat_client::Security::Tls(old.tls.operator.clone());
    let channel =
        chat_client::Dial::dial(&chat_client::TcpDial::new(security), &old.nodes[0].peer, Duration::from_secs(2))
            .unwrap();
    chat_client::backup::backup(channel, &file).await.unwrap();
    drop(old);

    let spec = json!({"bootstrap": {"fromBackup": {"claimName": "backups", "path": "old.backup"}}});
    let mut nodes = TestCluster::empty(chat_node_binary(), &[]);
    nodes.add_bare_node(0);
    let (ctx, mut api) = context(addresses(&nodes), Some(&nodes));

    // Pod 0 answers with no data (its restore has not run): nothing is founded.
    let (outcome, requests) = reconcile(&ctx, &mut api, &rchat(spec.clone(), None), pods(1, None)).await;
    outcome.unwrap();
    assert_eq!(statefulset_replicas(&requests), Some(1), "pod 0 alone while restoring");
    let sts = &requests.iter().find(|r| r.is(&Method::PATCH, STS)).unwrap().body;
    assert_eq!(sts["spec"]["template"]["spec"]["initContainers"][0]["name"], "restore");
    assert!(events(&requests).is_empty(), "{:?}", events(&requests));
    let status = status_sent(&requests).unwrap();
    assert_eq!(condition(&status, "Progressing")["message"], "waiting for demo-0 to restore the backup");
    assert_eq!(nodes.status(0).await.unwrap().members.len(), 0, "founded empty in place of the backup");

    // The restore runs (as the init container would): pod 0 serves the restored cluster.
    nodes.kill(0);
    let (dir, addr, peer) = (nodes.node(0).dir.clone(), nodes.node(0).addr.clone(), nodes.node(0).peer.clone());
    std::fs::remove_dir_all(&dir).unwrap();
    let out = std::process::Command::new(chat_node_binary())
        .args(["restore", "--only-id", "0", "--id", "0", "--advertise", &addr, "--peer-advertise", &peer])
        .arg("--data-dir")
        .arg(&dir)
        .arg("--from")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    nodes.restart(0);
    wait_leader(&nodes, 0).await;
    let (outcome, requests) = reconcile(&ctx, &mut api, &rchat(spec.clone(), None), pods(1, Some(0))).await;
    outcome.unwrap();
    assert_eq!(events(&requests), ["Restored"]);
    assert_eq!(status_sent(&requests).unwrap()["bootstrapped"], true);

    // Founded: the template drops the restore and the StatefulSet grows.
    let founded = rchat(spec, Some(json!({"bootstrapped": true})));
    let (outcome, requests) = reconcile(&ctx, &mut api, &founded, pods(1, Some(0))).await;
    outcome.unwrap();
    assert_eq!(statefulset_replicas(&requests), Some(3));
    let sts = &requests.iter().find(|r| r.is(&Method::PATCH, STS)).unwrap().body;
    assert!(sts["spec"]["template"]["spec"]["initContainers"].is_null(), "{}", sts["spec"]["template"]["spec"]);
}

/// A changed template (the StatefulSet controller reports a new revision):
/// the reconcile deletes one follower's pod — by uid, so never a pod made
/// again meanwhile — with an Event, and says so in Progressing; the chart's
/// rules allow that delete (checked on every request, as everywhere here).
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_template_restarts_one_follower_by_uid() {
    let nodes = running_cluster(3).await;
    let leader = nodes.leader().await;
    let (ctx, mut api) = context(addresses(&nodes), Some(&nodes));
    api.objects.insert(
        STS.to_string(),
        json!({"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "updateRevision": "demo-new"}}),
    );
    let pods: Vec<Value> = (0..3)
        .map(|id| {
            let mut p = pod(id, id == leader);
            p["metadata"]["uid"] = json!(format!("uid-pod-{id}"));
            p["metadata"]["labels"]["controller-revision-hash"] = json!("demo-old");
            p["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
            p
        })
        .collect();
    let object = rchat(json!({"image": "chat-node:v2"}), Some(json!({"bootstrapped": true})));
    let (outcome, requests) = reconcile(&ctx, &mut api, &object, pods).await;
    outcome.unwrap();
    let deleted: Vec<&Request> = requests.iter().filter(|r| r.method == Method::DELETE).collect();
    assert_eq!(deleted.len(), 1, "one pod at a time: {:?}", paths(&requests));
    let victim = (0..3).rev().find(|&id| id != leader).unwrap();
    assert_eq!(deleted[0].path, format!("{PODS}/demo-{victim}"), "the highest follower first");
    assert_eq!(deleted[0].body["preconditions"]["uid"], format!("uid-pod-{victim}"));
    assert_eq!(events(&requests), ["UpgradingPod"]);
    let status = status_sent(&requests).unwrap();
    assert_eq!(condition(&status, "Progressing")["reason"], "Upgrading");
    let message = condition(&status, "Progressing")["message"].as_str().unwrap().to_string();
    assert!(message.contains(&format!("0 of 3 members updated; restarting demo-{victim}")), "{message}");
}

/// `spec.backup`: a CronJob (allowed by the chart's rules), remembered in the
/// status; once the section is removed, that CronJob is suspended, not
/// deleted, with an Event.
#[tokio::test]
async fn scheduled_backups_are_a_cron_job_suspended_when_the_section_goes() {
    let (ctx, mut api) = context(BTreeMap::new(), None);
    let cron = "/apis/batch/v1/namespaces/chat/cronjobs/demo-backup";
    let asked = rchat(
        json!({"backup": {"schedule": "0 3 * * *", "claimName": "backups", "keep": 3}}),
        Some(json!({"bootstrapped": true})),
    );
    let (outcome, requests) = reconcile(&ctx, &mut api, &asked, vec![]).await;
    outcome.unwrap();
    let applied = requests.iter().find(|r| r.is(&Method::PATCH, cron)).expect("the CronJob applied");
    assert_eq!(applied.body["spec"]["schedule"], "0 3 * * *");
    assert_eq!(applied.body["spec"]["suspend"], false);
    assert_eq!(status_sent(&requests).unwrap()["scheduledBackups"], "demo-backup");

    let gone = rchat(json!({}), Some(json!({"bootstrapped": true, "scheduledBackups": "demo-backup"})));
    let (outcome, requests) = reconcile(&ctx, &mut api, &gone, vec![]).await;
    outcome.unwrap();
    let suspended = requests.iter().find(|r| r.is(&Method::PATCH, cron)).expect("the CronJob suspended");
    assert_eq!(suspended.body, json!({"spec": {"suspend": true}}));
    assert_eq!(events(&requests), ["BackupsSuspended"]);
    assert_eq!(status_sent(&requests).unwrap()["scheduledBackups"], Value::Null, "sent as null: forgotten");
    assert!(requests.iter().all(|r| r.method != Method::DELETE));

    // Never asked for: nothing about backups at all.
    let (_, requests) = reconcile(&ctx, &mut api, &rchat(json!({}), Some(json!({"bootstrapped": true}))), vec![]).await;
    assert!(requests.iter().all(|r| !r.path.contains("cronjobs")), "{:?}", paths(&requests));
}

/// `spec.console`: its HTTPS certificate, a ServiceAccount, Role,
/// RoleBinding, Service and Deployment (each allowed by the chart's rules),
/// remembered in the status;
/// turned off, the Deployment is scaled to zero, not deleted, with an Event.
#[tokio::test]
async fn a_console_is_a_deployment_scaled_to_zero_when_turned_off() {
    let (ctx, mut api) = context(BTreeMap::new(), None);
    let deployment = "/apis/apps/v1/namespaces/chat/deployments/demo-console";
    let asked = rchat(json!({"console": {"enabled": true}}), Some(json!({"bootstrapped": true})));
    let (outcome, requests) = reconcile(&ctx, &mut api, &asked, vec![]).await;
    outcome.unwrap();
    for path in [
        "/api/v1/namespaces/chat/secrets/demo-console-tls",
        "/api/v1/namespaces/chat/serviceaccounts/demo-console",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/chat/roles/demo-console",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/chat/rolebindings/demo-console",
        "/api/v1/namespaces/chat/services/demo-console",
        "/apis/networking.k8s.io/v1/namespaces/chat/networkpolicies/demo-console",
        deployment,
    ] {
        assert!(requests.iter().any(|r| r.is(&Method::PATCH, path)), "{path} applied: {:?}", paths(&requests));
    }
    let applied = requests.iter().find(|r| r.is(&Method::PATCH, deployment)).unwrap();
    assert_eq!(applied.body["spec"]["replicas"], 1);
    assert!(all_events(&requests).contains(&"ConsoleCertificateIssued".to_string()), "{:?}", all_events(&requests));
    assert_eq!(status_sent(&requests).unwrap()["console"], "demo-console");

    let off =
        rchat(json!({"console": {"enabled": false}}), Some(json!({"bootstrapped": true, "console": "demo-console"})));
    let (outcome, requests) = reconcile(&ctx, &mut api, &off, vec![]).await;
    outcome.unwrap();
    let stopped = requests.iter().find(|r| r.is(&Method::PATCH, deployment)).expect("the Deployment scaled down");
    assert_eq!(stopped.body, json!({"spec": {"replicas": 0}}));
    assert_eq!(events(&requests), ["ConsoleStopped"]);
    assert_eq!(status_sent(&requests).unwrap()["console"], Value::Null, "sent as null: forgotten");
    assert!(requests.iter().all(|r| r.method != Method::DELETE));

    // Never asked for: nothing about a console at all.
    let (_, requests) = reconcile(&ctx, &mut api, &rchat(json!({}), Some(json!({"bootstrapped": true}))), vec![]).await;
    assert!(requests.iter().all(|r| !r.path.contains("console")), "{:?}", paths(&requests));
}

/// The Roles the operator makes (the nodes', the console's) grant only what
/// the operator itself holds: on a real API server anything more is refused.
#[test]
fn the_operator_holds_every_right_it_grants() {
    let cluster = rchat(json!({"readReplicas": 2, "console": {"enabled": true}}), None);
    rbac::assert_may_grant(&chat_operator::resources::node_role::role(&cluster, 3, 2));
    rbac::assert_may_grant(&chat_operator::resources::console::role(&cluster));
}
