//! A short seeded chaos run as part of the suite: 3 nodes, kills, pauses and
//! membership changes under concurrent clients; the history must be
//! linearizable and durable. The long run is `chat-chaos` (see README).

use std::time::Duration;

use chat_chaos::nemesis::Fault;
use chat_chaos::run::{Config, run};

#[tokio::test(flavor = "multi_thread")]
async fn a_short_seeded_run_finds_no_anomaly() {
    let config = Config {
        seed: 20261121,
        nodes: 3,
        clients: 4,
        users: 3,
        duration: Duration::from_secs(15),
        max_faults: 8,
        faults: Fault::ALL.to_vec(),
    };
    let report = run(&chat_testkit::chat_node_binary(), &config).await;
    eprintln!("{report}");
    assert!(report.anomalies.is_empty(), "{report}");
    assert!(report.faults.len() >= 3, "the nemesis did its job: {report}");
    assert!(report.operations >= 100, "the clients did theirs: {report}");
}
