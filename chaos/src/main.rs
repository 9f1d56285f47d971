//! `chat-chaos`: a long, seeded chaos run against real chat-node processes.
//!
//!   cargo build --release -p chat-node -p chat-chaos
//!   target/release/chat-chaos --seed 7 --nodes 5 --duration 300s --max-faults 200

use std::path::PathBuf;
use std::time::Duration;

use chat_chaos::nemesis::Fault;
use chat_chaos::run::{Config, run};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "chat-chaos", version, about = "Faults under load, then a linearizability and durability check")]
struct Cli {
    /// Seed of the fault schedule and the clients' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Cluster size (3 or 5).
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Read replicas next to the voters (faults hit them too).
    #[arg(long, default_value_t = 0)]
    read_replicas: u64,
    #[arg(long, default_value_t = 6)]
    clients: usize,
    #[arg(long, default_value_t = 4)]
    users: usize,
    /// How long clients run and faults are injected.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    duration: Duration,
    /// Upper bound on injected faults.
    #[arg(long, default_value_t = 100)]
    max_faults: usize,
    /// The chat-node binary (default: next to this one).
    #[arg(long)]
    chat_node: Option<PathBuf>,
    /// The nodes' log filter (`RUST_LOG` syntax), e.g. "info,openraft=info" to
    /// follow elections; with CHAT_KEEP_TEST_DIRS=1 the logs stay on disk.
    #[arg(long, default_value = "warn")]
    node_log: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let binary = match cli.chat_node {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("chat-node"),
    };
    anyhow::ensure!(binary.exists(), "{} not found: cargo build --release -p chat-node", binary.display());
    let config = Config {
        seed: cli.seed,
        nodes: cli.nodes,
        read_replicas: cli.read_replicas,
        clients: cli.clients,
        users: cli.users,
        duration: cli.duration,
        max_faults: cli.max_faults,
        faults: Fault::ALL.to_vec(),
        node_log: cli.node_log,
    };
    println!(
        "chaos: seed {} · {} nodes · {} clients · {:?}",
        config.seed, config.nodes, config.clients, config.duration
    );
    let report = run(&binary, &config).await;
    print!("{report}");
    anyhow::ensure!(report.anomalies.is_empty(), "{} anomalies", report.anomalies.len());
    Ok(())
}
