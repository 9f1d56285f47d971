//! A short seeded chaos run as part of the suite: 3 voters and a read
//! replica, kills, pauses and membership changes under concurrent clients;
//! the history must be linearizable (session reads: read-your-writes and
//! monotonic per client) and durable. The long run is `chat-chaos` (see README).

use std::time::Duration;

use chat_chaos::nemesis::Fault;
use chat_chaos::run::{Config, run};

#[tokio::test(flavor = "multi_thread")]
async fn a_short_seeded_run_finds_no_anomaly() {
    let config = Config {
        // A schedule that also kills and pauses the read replica (node 4).
        seed: 23,
        nodes: 3,
        read_replicas: 1,
        clients: 4,
        users: 3,
        duration: Duration::from_secs(15),
        max_faults: 8,
        faults: Fault::ALL.to_vec(),
        node_log: "warn".into(),
    };
    let report = run(&chat_testkit::chat_node_binary(), &config).await;
    eprintln!("{report}");
    assert!(report.anomalies.is_empty(), "{report}");
    assert!(report.faults.len() >= 3, "the nemesis did its job: {report}");
    if !report.notes.iter().any(|n| n.contains("partitions unavailable")) {
        assert!(report.faults.iter().any(|f| f.contains("node 4")), "the read replica was hit too: {report}");
    }
    assert!(report.operations >= 100, "the clients did theirs: {report}");
}

/// The partition fault is real: an isolated leader loses its cluster (the
/// others elect a new leader in a higher term) and comes back as a follower.
#[tokio::test(flavor = "multi_thread")]
async fn an_isolated_leader_is_replaced_and_rejoins_after_healing() {
    use std::sync::Arc;

    use chat_chaos::netns::Network;
    use chat_proto::cluster::Role;
    use chat_testkit::{TestCluster, eventually};

    let net = match Network::create(&[1, 2, 3], 99) {
        Ok(net) => Arc::new(net),
        Err(why) => {
            eprintln!("skipped: no network namespaces here ({why})");
            return;
        }
    };
    let cluster = TestCluster::start_placed(chat_testkit::chat_node_binary(), 3, &[], net.placement()).await;
    let old = cluster.leader().await;
    let old_term = cluster.status(old).await.unwrap().term;
    net.isolate(old).unwrap();
    let new = eventually("a new leader among the others", Duration::from_secs(20), || async {
        for id in cluster.running().into_iter().filter(|&id| id != old) {
            if let Some(s) = cluster.status(id).await
                && s.role == Role::Leader as i32
                && s.term > old_term
            {
                return Some(id);
            }
        }
        None
    })
    .await;
    assert_ne!(new, old);
    net.heal(old).unwrap();
    eventually("the old leader back as a follower", Duration::from_secs(20), || async {
        cluster.status(old).await.filter(|s| s.role == Role::Follower as i32 && s.term > old_term).map(|_| ())
    })
    .await;
}
