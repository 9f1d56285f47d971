//! The `chat-node` command line. Every flag can also come from the environment
//! as `CHAT_<FLAG>`, which is how the operator configures pods.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::{Error, Result};
use crate::node::Timeouts;
use crate::server::{Config, RaftTiming};
use crate::typ::NodeId;

#[derive(Debug, Parser)]
#[command(name = "chat-node", version, about = "A Raft-replicated chat server", args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a local N-node cluster on loopback with an interactive prompt.
    Dev(crate::dev::DevArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format; the level comes from RUST_LOG (default: info).
    #[arg(long, env = "CHAT_LOG_FORMAT", value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Node id. May be left out in a StatefulSet pod: the ordinal at the end of POD_NAME is used.
    #[arg(long, env = "CHAT_ID")]
    pub id: Option<NodeId>,
    /// Address the gRPC server (client API and Raft) binds.
    #[arg(long, env = "CHAT_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,
    /// host:port other members and clients use to reach this node. Defaults to --listen
    /// when that is a concrete address.
    #[arg(long, env = "CHAT_ADVERTISE")]
    pub advertise: Option<String>,
    /// Where the Raft log, state and snapshots live.
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "./chat-data")]
    pub data_dir: PathBuf,
    /// Found a new one-member cluster if the data dir is empty.
    #[arg(long, env = "CHAT_BOOTSTRAP")]
    pub bootstrap: bool,
    /// Seeds to join through if the data dir is empty (comma-separated host:port).
    #[arg(long, env = "CHAT_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,
    /// Address of the HTTP server for /healthz, /readyz and /metrics.
    #[arg(long, env = "CHAT_HTTP")]
    pub http: Option<SocketAddr>,
    /// Raft heartbeat interval.
    #[arg(long, env = "CHAT_HEARTBEAT_MS", default_value_t = 50)]
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout.
    #[arg(long, env = "CHAT_ELECTION_TIMEOUT_MIN_MS", default_value_t = 150)]
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout.
    #[arg(long, env = "CHAT_ELECTION_TIMEOUT_MAX_MS", default_value_t = 300)]
    pub election_timeout_max_ms: u64,
    /// Entries between snapshots; the log is purged behind each snapshot.
    #[arg(long, env = "CHAT_SNAPSHOT_THRESHOLD", default_value_t = 10_000)]
    pub snapshot_threshold: u64,
    /// Time budget of a write or linearizable read before it fails with UNAVAILABLE.
    #[arg(long, env = "CHAT_REQUEST_TIMEOUT_MS", default_value_t = 5000)]
    pub request_timeout_ms: u64,
}

impl NodeArgs {
    /// Resolves defaults that depend on the environment (id from POD_NAME, advertise from listen).
    ///
    /// # Errors
    /// `InvalidArgument` naming the flag that is missing or inconsistent.
    pub fn into_config(self, pod_name: Option<&str>) -> Result<Config> {
        let id = match (self.id, pod_name) {
            (Some(id), _) => id,
            (None, Some(pod)) => ordinal(pod).ok_or_else(|| {
                Error::invalid(format!("--id is not set and POD_NAME {pod:?} does not end in -<ordinal>"))
            })?,
            (None, None) => return Err(Error::invalid("--id is required (or POD_NAME ending in -<ordinal>)")),
        };
        let advertise = match self.advertise {
            Some(a) => a,
            None if !self.listen.ip().is_unspecified() => self.listen.to_string(),
            None => return Err(Error::invalid("--advertise is required when --listen is a wildcard address")),
        };
        if self.bootstrap && !self.join.is_empty() {
            return Err(Error::invalid("--bootstrap and --join exclude each other: found a cluster, or join one"));
        }
        Ok(Config {
            id,
            advertise,
            data_dir: self.data_dir,
            bootstrap: self.bootstrap,
            join: self.join.into_iter().filter(|s| !s.trim().is_empty()).collect(),
            raft: RaftTiming {
                heartbeat_ms: self.heartbeat_ms,
                election_timeout_min_ms: self.election_timeout_min_ms,
                election_timeout_max_ms: self.election_timeout_max_ms,
                snapshot_threshold: self.snapshot_threshold,
            },
            timeouts: Timeouts { request: Duration::from_millis(self.request_timeout_ms), ..Timeouts::default() },
        })
    }
}

/// The StatefulSet ordinal at the end of a pod name: `chat-2` → 2.
pub fn ordinal(pod_name: &str) -> Option<NodeId> {
    let (_, n) = pod_name.rsplit_once('-')?;
    n.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> NodeArgs {
        Cli::try_parse_from(std::iter::once("chat-node").chain(args.iter().copied())).unwrap().node
    }

    #[test]
    fn id_comes_from_the_pod_ordinal() {
        assert_eq!(ordinal("demo-chat-2"), Some(2));
        assert_eq!(ordinal("demo"), None);
        assert_eq!(ordinal("demo-x"), None);
        let cfg = parse(&["--advertise", "demo-3.demo-peers:50051"]).into_config(Some("demo-3")).unwrap();
        assert_eq!(cfg.id, 3);
        let err = parse(&["--advertise", "a:1"]).into_config(Some("demo")).unwrap_err();
        assert!(err.to_string().contains("POD_NAME"), "{err}");
    }

    #[test]
    fn advertise_defaults_to_a_concrete_listen_address() {
        let cfg = parse(&["--id", "1", "--listen", "127.0.0.1:7000"]).into_config(None).unwrap();
        assert_eq!(cfg.advertise, "127.0.0.1:7000");
        let err = parse(&["--id", "1"]).into_config(None).unwrap_err();
        assert!(err.to_string().contains("--advertise"), "{err}");
    }

    #[test]
    fn join_takes_a_comma_separated_list() {
        let cfg = parse(&["--id", "1", "--advertise", "a:1", "--join", "b:1,c:1"]).into_config(None).unwrap();
        assert_eq!(cfg.join, vec!["b:1", "c:1"]);
        assert!(parse(&["--id", "1", "--advertise", "a:1", "--join", "b:1", "--bootstrap"]).into_config(None).is_err());
    }
}
