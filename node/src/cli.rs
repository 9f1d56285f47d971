//! The `chat-node` command line. Every flag can also come from the environment
//! as `CHAT_<FLAG>`, which is how the operator configures pods.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use chat_k8s::ClusterNames;
use chat_tls::TlsDir;

use crate::error::{Error, Result};
use crate::limits::LimitsConfig;
use crate::node::Timeouts;
use crate::server::{Config, RaftTiming, TlsSettings};
use crate::typ::{Node, NodeId};
use crate::validate;

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
    /// Make a data dir from a backup (`kubectl chat backup`): it starts as a
    /// new one-member cluster with every account and message, ready to grow
    /// through JoinCluster. Takes the node's own flags (--id, --advertise,
    /// --peer-advertise, --data-dir; or their CHAT_* variables and POD_NAME).
    Restore(Box<RestoreArgs>),
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file.
    #[arg(long)]
    pub from: PathBuf,
    /// Do nothing (exit 0) when the data dir already holds a database,
    /// instead of failing: for an init container that runs at every start.
    #[arg(long)]
    pub skip_if_present: bool,
    /// Restore only on the node with this id (and do nothing, exit 0, on the
    /// others): a StatefulSet's pods share one template, and only pod 0
    /// founds the restored cluster.
    #[arg(long)]
    pub only_id: Option<NodeId>,
    #[command(flatten)]
    pub node: NodeArgs,
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
    /// Node id. May be left out in a StatefulSet pod: the ordinal at the end
    /// of POD_NAME is used, plus --id-offset.
    #[arg(long, env = "CHAT_ID")]
    pub id: Option<NodeId>,
    /// Added to the POD_NAME ordinal (a read replicas' StatefulSet numbers its
    /// pods from 0 too; their ids must not meet the voters').
    #[arg(long, env = "CHAT_ID_OFFSET", default_value_t = 0)]
    pub id_offset: NodeId,
    /// Join as a read replica: a Raft learner that never votes and is never
    /// promoted; it serves reads and Subscribe, and forwards writes.
    #[arg(long, env = "CHAT_READ_REPLICA")]
    pub read_replica: bool,
    /// Address the public gRPC server (ChatService, GetStatus) binds.
    #[arg(long, env = "CHAT_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,
    /// host:port clients use to reach this node. Defaults to --listen when
    /// that is a concrete address.
    #[arg(long, env = "CHAT_ADVERTISE")]
    pub advertise: Option<String>,
    /// Address the peer gRPC server (Raft, membership; mutual TLS) binds.
    #[arg(long, env = "CHAT_PEER_LISTEN", default_value = "0.0.0.0:50052")]
    pub peer_listen: SocketAddr,
    /// host:port other members use to reach this node's peer port. Defaults
    /// to --peer-listen when that is a concrete address, else to the host of
    /// --advertise with the port of --peer-listen.
    #[arg(long, env = "CHAT_PEER_ADVERTISE")]
    pub peer_advertise: Option<String>,
    /// Directory with ca.crt, tls.crt and tls.key (a mounted TLS Secret): the
    /// peer port's mutual TLS, and the public port's certificate unless
    /// --public-tls-dir is given. Rotated files are picked up without a restart.
    #[arg(long, env = "CHAT_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Directory with the public port's certificate (tls.crt, tls.key; ca.crt
    /// is read too), e.g. one issued for a public name.
    #[arg(long, env = "CHAT_PUBLIC_TLS_DIR")]
    pub public_tls_dir: Option<PathBuf>,
    /// Serve the public port without TLS (logged as a warning): passwords and
    /// tokens then cross the network in clear.
    #[arg(long, env = "CHAT_PUBLIC_PLAINTEXT")]
    pub public_plaintext: bool,
    /// Serve and dial the peer port without TLS (logged as a warning). Anyone
    /// who reaches the port can then take over the cluster: for isolated
    /// networks and debugging only.
    #[arg(long, env = "CHAT_INSECURE_PEER_PLAINTEXT")]
    pub insecure_peer_plaintext: bool,
    /// How often certificate files are checked for a rotation.
    #[arg(long, env = "CHAT_TLS_RELOAD_MS", default_value_t = 5000)]
    pub tls_reload_ms: u64,
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
    /// argon2 hashes (sign-ups, logins) computed at once; default: one core fewer than the machine's (1–8).
    #[arg(long, env = "CHAT_HASHING_CONCURRENCY")]
    pub hashing_concurrency: Option<usize>,
    /// Sign-ups and logins that may wait for a hashing slot; more get RESOURCE_EXHAUSTED.
    #[arg(long, env = "CHAT_HASHING_QUEUE", default_value_t = 64)]
    pub hashing_queue: usize,
    /// Failed logins per username before growing delays (1 s, 2 s, 4 s …) lock it.
    #[arg(long, env = "CHAT_LOGIN_FREE_FAILURES", default_value_t = 3)]
    pub login_free_failures: u32,
    /// The longest such a delay grows.
    #[arg(long, env = "CHAT_LOGIN_MAX_DELAY_MS", default_value_t = 30_000)]
    pub login_max_delay_ms: u64,
    /// Subscribe streams one session may hold open on this node.
    #[arg(long, env = "CHAT_SUBSCRIBES_PER_SESSION", default_value_t = 16)]
    pub subscribes_per_session: usize,
    /// Subscribe streams this node serves at once.
    #[arg(long, env = "CHAT_SUBSCRIBES_PER_NODE", default_value_t = 10_000)]
    pub subscribes_per_node: usize,
    /// A session unused for this long expires (each use renews it).
    #[arg(long, env = "CHAT_SESSION_TTL_SECS", default_value_t = 24 * 3600)]
    pub session_ttl_secs: u64,
    /// Sessions one account may hold; a further login ends the oldest.
    #[arg(long, env = "CHAT_MAX_SESSIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sessions: u32,
    /// How long a SendMessage request_id is remembered (retries within it are exactly-once).
    #[arg(long, env = "CHAT_DEDUP_WINDOW_SECS", default_value_t = 24 * 3600)]
    pub dedup_window_secs: u64,
    /// How often the leader sweeps expired sessions and request ids.
    #[arg(long, env = "CHAT_SWEEP_MS", default_value_t = 600_000)]
    pub sweep_ms: u64,
    /// WatchStatus streams this node serves at once, on each port (counted apart:
    /// strangers on the public port cannot take the operator's on the peer port).
    #[arg(long, env = "CHAT_MAX_STATUS_WATCHES", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_status_watches: u64,
    /// How long a joining member may take to catch up before the join fails
    /// (and the learner it added is removed again).
    #[arg(long, env = "CHAT_JOIN_CATCH_UP_MS", default_value_t = 60_000)]
    pub join_catch_up_ms: u64,
    /// In Kubernetes: the ReplicatedChat this pod belongs to. Set, the node
    /// labels its own pod `chat.replicated.dev/role=leader` whenever it is
    /// elected (fenced by the `<cluster>-leader` Lease and the Raft term), so
    /// the client Service follows the leader even while the operator is down.
    /// The operator sets it, with a Role allowing exactly that.
    #[arg(long, env = "CHAT_KUBE_CLUSTER")]
    pub kube_cluster: Option<String>,
    /// The namespace of `--kube-cluster` (in a pod: its own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub kube_namespace: String,
}

impl NodeArgs {
    /// This node's id and the addresses it advertises (public and peer).
    ///
    /// # Errors
    /// No id (and no POD_NAME ending in an ordinal), or an address that is
    /// missing or not host:port.
    pub fn identity(&self, pod_name: Option<&str>) -> Result<(NodeId, Node)> {
        let id = match (self.id, pod_name) {
            (Some(id), _) => id,
            (None, Some(pod)) => ordinal(pod)
                .ok_or_else(|| {
                    Error::invalid(format!("--id is not set and POD_NAME {pod:?} does not end in -<ordinal>"))
                })?
                .checked_add(self.id_offset)
                .ok_or_else(|| Error::invalid("--id-offset: the id it gives overflows"))?,
            (None, None) => return Err(Error::invalid("--id is required (or POD_NAME ending in -<ordinal>)")),
        };
        let advertise = match &self.advertise {
            Some(a) => a.clone(),
            None if !self.listen.ip().is_unspecified() => self.listen.to_string(),
            None => return Err(Error::invalid("--advertise is required when --listen is a wildcard address")),
        };
        validate::host_port("--advertise", &advertise)?;
        let peer_advertise = match &self.peer_advertise {
            Some(a) => a.clone(),
            None if !self.peer_listen.ip().is_unspecified() => self.peer_listen.to_string(),
            None => match advertise.rsplit_once(':') {
                Some((host, _)) => format!("{host}:{}", self.peer_listen.port()),
                None => return Err(Error::invalid("--peer-advertise is required")),
            },
        };
        validate::host_port("--peer-advertise", &peer_advertise)?;
        Ok((id, Node { addr: peer_advertise, api: advertise }))
    }

    /// Resolves defaults that depend on the environment (id from POD_NAME, advertise from listen).
    ///
    /// # Errors
    /// `InvalidArgument` naming the flag that is missing or inconsistent.
    pub fn into_config(self, pod_name: Option<&str>) -> Result<Config> {
        let (id, advertise) = self.identity(pod_name)?;
        if self.bootstrap && !self.join.is_empty() {
            return Err(Error::invalid("--bootstrap and --join exclude each other: found a cluster, or join one"));
        }
        if self.bootstrap && self.read_replica {
            return Err(Error::invalid("--read-replica cannot --bootstrap: a cluster is founded by a voter"));
        }
        let join: Vec<String> = self.join.into_iter().filter(|s| !s.trim().is_empty()).collect();
        for seed in &join {
            validate::host_port("--join", seed)?;
        }
        let peer_tls = match (self.tls_dir.as_ref(), self.insecure_peer_plaintext) {
            (Some(dir), false) => Some(TlsDir::new(dir)),
            (None, true) => None,
            (Some(_), true) => {
                return Err(Error::invalid("--tls-dir and --insecure-peer-plaintext exclude each other"));
            }
            (None, false) => {
                return Err(Error::invalid(
                    "--tls-dir is required: the peer port serves mutual TLS (--insecure-peer-plaintext turns \
                     that off, for isolated networks only)",
                ));
            }
        };
        let public_tls = match (self.public_tls_dir.or(self.tls_dir), self.public_plaintext) {
            (_, true) => None,
            (Some(dir), false) => Some(TlsDir::new(dir)),
            (None, false) => {
                return Err(Error::invalid(
                    "--tls-dir or --public-tls-dir is required: the public port serves TLS (--public-plaintext \
                     turns that off)",
                ));
            }
        };
        Ok(Config {
            id,
            advertise,
            data_dir: self.data_dir,
            bootstrap: self.bootstrap,
            read_replica: self.read_replica,
            join,
            raft: RaftTiming {
                heartbeat_ms: self.heartbeat_ms,
                election_timeout_min_ms: self.election_timeout_min_ms,
                election_timeout_max_ms: self.election_timeout_max_ms,
                snapshot_threshold: self.snapshot_threshold,
            },
            timeouts: Timeouts {
                request: Duration::from_millis(self.request_timeout_ms),
                catch_up: Duration::from_millis(self.join_catch_up_ms),
                ..Timeouts::default()
            },
            limits: LimitsConfig {
                hashing_concurrency: self.hashing_concurrency.unwrap_or(LimitsConfig::default().hashing_concurrency),
                hashing_queue: self.hashing_queue,
                login_free_failures: self.login_free_failures,
                login_max_delay: Duration::from_millis(self.login_max_delay_ms),
                subscribes_per_session: self.subscribes_per_session,
                subscribes_per_node: self.subscribes_per_node,
                session_ttl: Duration::from_secs(self.session_ttl_secs.max(1)),
                max_sessions: self.max_sessions,
                dedup_window: Duration::from_secs(self.dedup_window_secs),
                sweep_every: Duration::from_millis(self.sweep_ms.max(100)),
                status_watches: usize::try_from(self.max_status_watches).unwrap_or(usize::MAX),
            },
            tls: TlsSettings {
                peer: peer_tls,
                public: public_tls,
                reload_every: Duration::from_millis(self.tls_reload_ms.max(100)),
            },
            self_label: self.kube_cluster.map(|cluster| ClusterNames::new(cluster, self.kube_namespace)),
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
        let cfg = parse(&["--advertise", "demo-3.demo-peers:50051", "--tls-dir", "/tls"])
            .into_config(Some("demo-3"))
            .unwrap();
        assert_eq!(cfg.id, 3);
        assert_eq!(
            cfg.advertise,
            Node { addr: "demo-3.demo-peers:50052".into(), api: "demo-3.demo-peers:50051".into() }
        );
        let err = parse(&["--advertise", "a:1", "--tls-dir", "/tls"]).into_config(Some("demo")).unwrap_err();
        assert!(err.to_string().contains("POD_NAME"), "{err}");
    }

    #[test]
    fn advertise_defaults_to_a_concrete_listen_address() {
        let cfg =
            parse(&["--id", "1", "--listen", "127.0.0.1:7000", "--peer-listen", "127.0.0.1:7001", "--tls-dir", "/t"])
                .into_config(None)
                .unwrap();
        assert_eq!(cfg.advertise, Node { addr: "127.0.0.1:7001".into(), api: "127.0.0.1:7000".into() });
        let err = parse(&["--id", "1", "--tls-dir", "/t"]).into_config(None).unwrap_err();
        assert!(err.to_string().contains("--advertise"), "{err}");
    }

    #[test]
    fn join_takes_a_comma_separated_list() {
        let cfg = parse(&["--id", "1", "--advertise", "a:1", "--join", "b:1,c:1", "--tls-dir", "/t"])
            .into_config(None)
            .unwrap();
        assert_eq!(cfg.join, vec!["b:1", "c:1"]);
        let both = ["--id", "1", "--advertise", "a:1", "--join", "b:1", "--bootstrap", "--tls-dir", "/t"];
        assert!(parse(&both).into_config(None).is_err());
        let err = parse(&["--id", "1", "--advertise", "a:1", "--join", "http://b:1", "--tls-dir", "/t"])
            .into_config(None)
            .unwrap_err();
        assert!(err.to_string().contains("--join"), "{err}");
    }

    #[test]
    fn tls_is_required_unless_explicitly_turned_off() {
        let base = ["--id", "1", "--advertise", "a:1"];
        let with = |extra: &[&str]| {
            let args: Vec<&str> = base.iter().chain(extra).copied().collect();
            parse(&args).into_config(None)
        };
        let err = with(&[]).unwrap_err().to_string();
        assert!(err.contains("--tls-dir is required"), "{err}");
        let err = with(&["--insecure-peer-plaintext"]).unwrap_err().to_string();
        assert!(err.contains("--public-tls-dir"), "{err}");
        let cfg = with(&["--insecure-peer-plaintext", "--public-plaintext"]).unwrap();
        assert!(cfg.tls.peer.is_none() && cfg.tls.public.is_none());
        let cfg = with(&["--tls-dir", "/t"]).unwrap();
        assert_eq!(cfg.tls.peer, Some(TlsDir::new("/t")));
        assert_eq!(cfg.tls.public, Some(TlsDir::new("/t")));
        let cfg = with(&["--tls-dir", "/t", "--public-tls-dir", "/p"]).unwrap();
        assert_eq!(cfg.tls.public, Some(TlsDir::new("/p")));
        assert!(with(&["--tls-dir", "/t", "--insecure-peer-plaintext"]).is_err());
    }
}
