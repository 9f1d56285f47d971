//! SendMessage throughput and latency on a 3-node loopback cluster of real
//! `chat-node` processes (fsync on), at 1, 16 and 64 concurrent clients.
//!
//! Run: `cargo bench -p chat-node --bench send_message` (env `BENCH_MESSAGES`
//! sets the count per concurrency level, default 4000). Each client has its
//! own connection to the leader; bodies are 200 bytes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chat_proto::chat::chat_service_client::ChatServiceClient;
use chat_proto::chat::{CreateAccountRequest, LoginRequest, SendMessageRequest};
use chat_proto::cluster::cluster_service_client::ClusterServiceClient;
use chat_proto::cluster::{GetStatusRequest, Role};
use tonic::transport::{Channel, Endpoint};

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn connect(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}")).unwrap().tcp_nodelay(true).connect().await.unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` (and nextest) probing for tests: none here.
    }
    let total: usize = std::env::var("BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<String> = (0..3).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let mut procs = Procs(Vec::new());
    for (i, addr) in addrs.iter().enumerate() {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat-node"));
        cmd.args(["--id", &(i + 1).to_string(), "--listen", addr])
            .arg("--data-dir")
            .arg(dir.path().join(i.to_string()));
        cmd.env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::null());
        if i == 0 {
            cmd.arg("--bootstrap");
        } else {
            cmd.args(["--join", &addrs[0]]);
        }
        procs.0.push(cmd.spawn().expect("starting chat-node"));
    }

    // Wait for a leader with three voters.
    let deadline = Instant::now() + Duration::from_secs(60);
    let leader = loop {
        assert!(Instant::now() < deadline, "cluster did not form");
        let mut found = None;
        for addr in &addrs {
            let ch = Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
            if let Ok(s) = ClusterServiceClient::new(ch).get_status(GetStatusRequest {}).await {
                let s = s.into_inner();
                if Role::try_from(s.role) == Ok(Role::Leader) && s.members.iter().filter(|m| m.voter).count() == 3 {
                    found = Some(addr.clone());
                }
            }
        }
        if let Some(l) = found {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let mut setup = ChatServiceClient::new(connect(&leader).await);
    for user in ["sender", "receiver"] {
        setup
            .create_account(CreateAccountRequest { username: user.into(), password: "bench-password".into() })
            .await
            .unwrap();
    }
    let token = setup
        .login(LoginRequest { username: "sender".into(), password: "bench-password".into() })
        .await
        .unwrap()
        .into_inner()
        .token;
    let body = "x".repeat(200);

    println!("SendMessage, 3 nodes on loopback, fsync on, 200-byte bodies, {total} messages per level");
    println!("{:>8} {:>12} {:>10} {:>10} {:>10}", "clients", "msgs/s", "p50", "p99", "p999");
    for clients in [1usize, 16, 64] {
        let per_client = total / clients;
        let mut tasks = Vec::new();
        let started = Instant::now();
        for c in 0..clients {
            let channel = connect(&leader).await;
            let (token, body) = (token.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let mut client = ChatServiceClient::new(channel);
                let mut latencies = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let mut req = tonic::Request::new(SendMessageRequest {
                        to: "receiver".into(),
                        body: body.clone(),
                        request_id: format!("{clients}-{c}-{i}"),
                    });
                    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
                    let t = Instant::now();
                    client.send_message(req).await.expect("send failed");
                    latencies.push(t.elapsed());
                }
                latencies
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let elapsed = started.elapsed();
        all.sort();
        println!(
            "{clients:>8} {:>12.0} {:>10.2?} {:>10.2?} {:>10.2?}",
            all.len() as f64 / elapsed.as_secs_f64(),
            percentile(&all, 0.50),
            percentile(&all, 0.99),
            percentile(&all, 0.999)
        );
    }
}
