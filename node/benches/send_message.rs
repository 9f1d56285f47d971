//! SendMessage throughput and latency on a 3-node loopback cluster of real
//! `chat-node` processes (fsync on), at 1, 16 and 64 concurrent clients.
//!
//! Run: `cargo bench -p chat-node --bench send_message` (env `BENCH_MESSAGES`
//! sets the count per concurrency level, default 4000). The load generator is
//! `chat_client::load` — the same one `kubectl chat bench` uses: each client has
//! its own connection to the leader; bodies are 200 bytes.

use chat_client::Client;
use chat_testkit::{PASSWORD, TestCluster};

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` (and test runners) probing for tests: none here.
    }
    let total: usize = std::env::var("BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    let cluster = TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 3, &[("RUST_LOG", "warn")]).await;
    let seeds = cluster.addrs();
    let client = Client::new(seeds.clone(), cluster.client_options()).unwrap();
    client.register("sender", PASSWORD).await.unwrap();
    client.register("receiver", PASSWORD).await.unwrap();
    let token = client.login("sender", PASSWORD).await.unwrap();
    let body = "x".repeat(200);

    println!("SendMessage, 3 nodes on loopback, fsync on, 200-byte bodies, {total} messages per level");
    println!("{:>8} {:>12} {:>10} {:>10} {:>10}", "clients", "msgs/s", "p50", "p99", "p999");
    for clients in [1usize, 16, 64] {
        let r =
            chat_client::load::send_load(&seeds, &cluster.tls.security(), &token, "receiver", &body, clients, total)
                .await
                .expect("load run");
        println!("{clients:>8} {:>12.0} {:>10.2?} {:>10.2?} {:>10.2?}", r.per_second(), r.p50, r.p99, r.p999);
    }
}
