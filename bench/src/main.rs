//! `chat-bench`: measure replicated-chat against etcd on this machine.
//!
//!   cargo build --release -p chat-node -p chat-bench
//!   target/release/chat-bench vs-etcd --clients 1,16,64,256 --count 4000 --kills 5

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "chat-bench", version, about = "Benchmarks replicated-chat against etcd on this machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Throughput and latency of SendMessage vs etcd Put at several concurrencies, then failover.
    VsEtcd {
        /// Concurrent clients per level (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
        clients: Vec<usize>,
        /// Operations per level, for each system.
        #[arg(long, default_value_t = 4000)]
        count: usize,
        /// Leader kills per system for the failover distribution.
        #[arg(long, default_value_t = 5)]
        kills: usize,
        /// Run every level this many times and also print per-level medians.
        #[arg(long, default_value_t = 1)]
        rounds: usize,
        /// Alternate the two systems in up to this many slices per level (A B B A …), so
        /// that a drift in the machine's speed weighs on both alike; 1 runs each level whole.
        #[arg(long, default_value_t = 8)]
        slices: usize,
        #[command(flatten)]
        systems: Systems,
        /// Also draw the results as SVG charts into this directory
        /// (throughput.svg, p99.svg, failover.svg).
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// A read-heavy mix (9 reads : 1 write) at each read level, with and without read replicas, vs etcd.
    ReadMix {
        /// Concurrent clients per level (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        clients: Vec<usize>,
        /// Operations per level and read level.
        #[arg(long, default_value_t = 3000)]
        count: usize,
        /// Read replicas next to the 3 voters, one chat run each (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "0,2")]
        replicas: Vec<u64>,
        /// Rounds of every measurement, the read levels taking turns (medians reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// During the write-only comparison, hold every chat member to this many CPUs
        /// (a cgroup each; needs root): members as if on machines of their own.
        #[arg(long)]
        member_cpus: Option<f64>,
        #[command(flatten)]
        systems: Systems,
    },
    /// The operator's CPU and API writes while its clusters are idle.
    OperatorIdle {
        /// ReplicatedChats the operator manages.
        #[arg(long, default_value_t = 20)]
        clusters: usize,
        /// Pods per cluster (real chat-node processes, shared by every cluster).
        #[arg(long, default_value_t = 5)]
        pods: u64,
        /// The idle window measured.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// The chat-node binary (default: next to this one).
        #[arg(long)]
        chat_node: Option<PathBuf>,
    },
}

/// The two systems a comparison runs, and how.
#[derive(Debug, Args)]
struct Systems {
    /// The chat-node binary (default: next to this one).
    #[arg(long)]
    chat_node: Option<PathBuf>,
    /// The etcd binary (Debian: `apt install etcd-server`).
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd: PathBuf,
    /// Run both systems with TLS (chat-node's default; etcd set up alike);
    /// without, both run plaintext.
    #[arg(long)]
    tls: bool,
}

impl Systems {
    /// (chat-node, etcd, tls), the binaries resolved.
    fn resolve(self) -> anyhow::Result<(PathBuf, PathBuf, bool)> {
        Ok((chat_node_binary(self.chat_node)?, etcd_binary(self.etcd)?, self.tls))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // RUST_LOG=chat_client=debug shows every client retry (and why).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::VsEtcd { clients, count, kills, rounds, slices, systems, svg } => {
            let (chat_node, etcd, tls) = systems.resolve()?;
            let options = chat_bench::compare::Options {
                chat_node,
                etcd,
                clients: clients.clone(),
                count,
                kills,
                rounds,
                slices,
                tls,
            };
            let (rows, chat_failovers, etcd_failovers) = chat_bench::compare::run(&options).await?;
            if let Some(dir) = svg {
                let levels = chat_bench::compare::medians(&clients, &rows);
                for file in chat_bench::chart::write(&dir, &levels, &chat_failovers, &etcd_failovers)? {
                    println!("chart: {}", file.display());
                }
            }
            Ok(())
        }
        Command::ReadMix { clients, count, replicas, rounds, member_cpus, systems } => {
            let (chat_node, etcd, tls) = systems.resolve()?;
            let options =
                chat_bench::read_mix::Options { chat_node, etcd, clients, count, replicas, rounds, tls, member_cpus };
            chat_bench::read_mix::run(&options).await
        }
        Command::OperatorIdle { clusters, pods, seconds, chat_node } => {
            let chat_node = chat_node_binary(chat_node)?;
            let options = chat_bench::operator_idle::Options { chat_node, clusters, pods, seconds };
            let idle = chat_bench::operator_idle::run(&options).await?;
            let share = idle.cpu.as_secs_f64() / idle.window.as_secs_f64() * 100.0;
            println!(
                "operator idle: {clusters} clusters × {pods} pods, {:.0?}: CPU {:.2?} ({share:.2}% of a core), \
                 {} reconciles, {} API writes",
                idle.window, idle.cpu, idle.reconciles, idle.api_writes
            );
            Ok(())
        }
    }
}

/// `--chat-node`, or the chat-node next to this binary; it must exist.
fn chat_node_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("chat-node"),
    };
    anyhow::ensure!(path.exists(), "{} not found: build it (cargo build --release -p chat-node)", path.display());
    Ok(path)
}

/// `--etcd`; it must exist.
fn etcd_binary(path: PathBuf) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(path.exists(), "{} not found: apt install etcd-server", path.display());
    Ok(path)
}
