//! Assembling and running one node: storage, Raft, the two gRPC servers (the
//! public port and the mutual-TLS peer port) and the HTTP server, joining the
//! cluster, and the one shutdown path.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chat_proto::chat::chat_service_server::ChatServiceServer;
use chat_proto::cluster::JoinClusterRequest;
use chat_proto::cluster::admin_service_server::AdminServiceServer;
use chat_proto::cluster::cluster_service_server::ClusterServiceServer;
use chat_proto::cluster::membership_service_server::MembershipServiceServer;
use chat_proto::raft::raft_service_server::RaftServiceServer;
use chat_tls::config::{self as tls_config, ClientAuth};
use chat_tls::server::OnRefused;
use chat_tls::{Live, Role, TlsDir};
use futures::future::BoxFuture;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Router;

use crate::error::{Error, Result};
use crate::limits::LimitsConfig;
use crate::limits::metadata::{MAX_HEADER_LIST, check_metadata, client_error_statuses};
use crate::metrics::{Metrics, RefusedLabels};
use crate::network::Network;
use crate::network::peer::{self, PeerDialer};
use crate::node::{ChatNode, Timeouts};
use crate::service::status_watch::StatusWatches;
use crate::service::{AdminServiceImpl, ChatServiceImpl, ClusterServiceImpl, MembershipServiceImpl, RaftServiceImpl};
use crate::store::{Db, Durability, Flusher, LogStore, StateMachine};
use crate::typ::{Node, NodeId, Raft};

/// Raft timing. The defaults suit a LAN or one machine: a dead leader is
/// replaced in well under a second.
#[derive(Debug, Clone)]
pub struct RaftTiming {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and purge the log behind it) after this many new entries.
    pub snapshot_threshold: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        Self {
            heartbeat_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            snapshot_threshold: 10_000,
        }
    }
}

/// Everything `chat-node` needs to run one member.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: NodeId,
    /// Where other members (`addr`, the peer port) and clients (`api`, the
    /// public port) reach this node.
    pub advertise: Node,
    pub data_dir: PathBuf,
    /// Found a new one-member cluster if the data dir is fresh.
    pub bootstrap: bool,
    /// Seeds' peer addresses to ask for admission if the data dir is fresh.
    pub join: Vec<String>,
    /// Join as a read replica (a learner never promoted).
    pub read_replica: bool,
    pub raft: RaftTiming,
    pub timeouts: Timeouts,
    pub tls: TlsSettings,
    pub limits: LimitsConfig,
    /// In Kubernetes: label this node's pod when it leads ([`crate::self_label`]).
    pub self_label: Option<chat_k8s::ClusterNames>,
}

/// Where each port's certificates come from.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The peer port's certificates (mutual TLS; also this node's client
    /// certificate towards other members). `None` only with the explicit
    /// `--insecure-peer-plaintext`.
    pub peer: Option<TlsDir>,
    /// The public port's server certificate. `None` only with the explicit `--public-plaintext`.
    pub public: Option<TlsDir>,
    /// How often certificate files are checked for a rotation.
    pub reload_every: Duration,
}

/// The sockets a node serves on, bound by the caller (tests bind port 0).
#[derive(Debug)]
pub struct Listeners {
    /// ChatService, GetStatus: what clients use.
    pub public: TcpListener,
    /// RaftService, MembershipService, GetStatus: members and the operator, mutual TLS.
    pub peer: TcpListener,
    /// /healthz, /readyz, /metrics.
    pub http: Option<TcpListener>,
}

/// The rustls configurations a node serves and dials with, kept current as
/// certificate files rotate.
struct Tls {
    peer_server: Option<Live<ServerConfig>>,
    public_server: Option<Live<ServerConfig>>,
    dialer: PeerDialer,
}

impl Tls {
    /// Loads every certificate now: a node must not start with certificates it cannot use.
    fn load(settings: &TlsSettings) -> Result<Self> {
        let every = settings.reload_every;
        let tls_err = |e: chat_tls::Error| Error::invalid(format!("TLS: {e}"));
        let (peer_server, dialer) = match &settings.peer {
            Some(dir) => {
                let server = chat_tls::watch(dir.clone(), every, |m| tls_config::server(m, ClientAuth::Required));
                let client = chat_tls::watch(dir.clone(), every, tls_config::mutual_client);
                (Some(server.map_err(tls_err)?), PeerDialer::tls(client.map_err(tls_err)?))
            }
            None => {
                tracing::warn!(
                    "INSECURE: the peer port runs without TLS (--insecure-peer-plaintext): anyone who reaches it \
                     can read and take over the cluster"
                );
                (None, PeerDialer::plaintext())
            }
        };
        let public_server = match &settings.public {
            Some(dir) => Some(
                chat_tls::watch(dir.clone(), every, |m| tls_config::server(m, ClientAuth::None)).map_err(tls_err)?,
            ),
            None => {
                tracing::warn!(
                    "the public port runs without TLS (--public-plaintext): passwords and session tokens cross \
                     the network in clear"
                );
                None
            }
        };
        Ok(Self { peer_server, public_server, dialer })
    }
}

/// A running node: its handle, and a way to stop it and wait for the end.
pub struct Running {
    pub node: Arc<ChatNode>,
    pub metrics: Arc<Metrics>,
    task: tokio::task::JoinHandle<Result<()>>,
    stop: watch::Sender<bool>,
}

impl Running {
    /// Runs the graceful shutdown path and waits for it.
    ///
    /// # Errors
    /// Whatever stopping the servers or Raft reported.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.task.await.map_err(|e| Error::Internal(format!("node task: {e}")))?
    }

    /// Waits until the node stops by itself (it does not, unless asked).
    ///
    /// # Errors
    /// Whatever the node's serve loop reported.
    pub async fn wait(self) -> Result<()> {
        self.task.await.map_err(|e| Error::Internal(format!("node task: {e}")))?
    }
}

fn raft_config(cfg: &Config) -> Result<Arc<openraft::Config>> {
    let raft = openraft::Config {
        cluster_name: "replicated-chat".into(),
        heartbeat_interval: cfg.raft.heartbeat_ms,
        election_timeout_min: cfg.raft.election_timeout_min_ms,
        election_timeout_max: cfg.raft.election_timeout_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.raft.snapshot_threshold),
        // Keep some log behind the snapshot so a briefly lagging follower
        // catches up from the log instead of a full snapshot.
        max_in_snapshot_log_to_keep: (cfg.raft.snapshot_threshold / 10).min(1000),
        install_snapshot_timeout: 2000,
        // An entry is a batch of up to `proposer::MAX_BYTES` (256 KiB): 128 of
        // them (32 MiB) fit one Raft message (64 MiB limit).
        max_payload_entries: 128,
        // Elections start from `election::run`, which asks for a pre-vote first.
        enable_elect: false,
        ..Default::default()
    };
    Ok(Arc::new(raft.validate().map_err(|e| Error::invalid(format!("raft timing: {e}")))?))
}

/// Starts a node serving on `listeners`. Returns once it is serving; the
/// cluster work (bootstrap, join) goes on in the background.
///
/// # Errors
/// When the certificates, the data dir or the DB cannot be loaded, or the
/// configuration is invalid.
pub async fn start(cfg: Config, listeners: Listeners) -> Result<Running> {
    let tls = Tls::load(&cfg.tls)?;
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| Error::Storage(format!("creating {}: {e}", cfg.data_dir.display())))?;
    let db = Db::open(&cfg.data_dir.join("db"))
        .map_err(|e| Error::Storage(format!("opening RocksDB in {}: {e}", cfg.data_dir.display())))?;
    let metrics = Arc::new(Metrics::default());
    // Shared by the three: the leader acknowledges its own appends before they
    // are synced, and the state machine and the network wait on this for them.
    let durability = Arc::new(Durability::new(metrics.flush.durable_wait_seconds.clone()));
    let state = StateMachine::new(db.clone(), &cfg.data_dir.join("snapshots"), durability.clone())
        .map_err(|e| Error::Storage(e.to_string()))?;
    let (log_store, flusher) = LogStore::new(db, cfg.id, durability.clone(), metrics.flush.clone());
    let network = Network { dialer: tls.dialer.clone(), metrics: metrics.raft_rpc.clone(), durability };
    let raft = Raft::new(cfg.id, raft_config(&cfg)?, network, log_store, state.clone())
        .await
        .map_err(|e| Error::Internal(format!("starting raft: {e}")))?;
    let node = ChatNode::new(
        cfg.id,
        cfg.advertise.clone(),
        tls.dialer.clone(),
        raft,
        state,
        cfg.timeouts.clone(),
        metrics.batch_commands.clone(),
    );
    let (stop, stopped) = watch::channel(false);

    let task = tokio::spawn(serve(cfg, node.clone(), metrics.clone(), flusher, tls, listeners, stopped));
    Ok(Running { node, metrics, task, stop })
}

async fn serve(
    cfg: Config,
    node: Arc<ChatNode>,
    metrics: Arc<Metrics>,
    flusher: Flusher,
    tls: Tls,
    listeners: Listeners,
    mut stopped: watch::Receiver<bool>,
) -> Result<()> {
    let Listeners { public, peer, http } = listeners;
    tracing::info!(
        id = cfg.id,
        public = ?public.local_addr().ok(),
        peer = ?peer.local_addr().ok(),
        advertise = %cfg.advertise,
        "node serving"
    );

    // Both gRPC servers stop accepting when `grpc_stop` fires and finish
    // in-flight calls; AppendEntries streams end then too (see the service).
    let (grpc_stop_tx, grpc_stop) = watch::channel(false);
    let stop_signal = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    // The public port: strangers. Metadata is bounded per call (with HTTP/2's
    // own limit far above, so an oversized header fails its call, not the
    // connection), and undecodable requests are the caller's error.
    let acks = Arc::new(crate::delivery_acks::DeliveryAcks::default());
    let chat = ChatServiceServer::new(ChatServiceImpl::new(node.clone(), metrics.clone(), &cfg.limits, acks.clone()));
    let (health_reporter, health) = tonic_health::server::health_reporter();
    // Each port has its own WatchStatus streams: strangers filling the public
    // port's cannot starve the operator's leader routing on the peer port.
    let cluster_service = |watches: StatusWatches| {
        ClusterServiceServer::new(ClusterServiceImpl::new(node.clone(), metrics.clone(), watches, grpc_stop.clone()))
    };
    let public_router = grpc_server()
        .http2_max_header_list_size(MAX_HEADER_LIST)
        .add_service(InterceptedService::new(chat, check_metadata))
        .add_service(health)
        .add_service(InterceptedService::new(
            cluster_service(StatusWatches::new(cfg.limits.status_watches)),
            check_metadata,
        ));

    // The peer port: the handshake already refused callers without a
    // certificate of the cluster's CA; each service admits only the roles
    // that need it.
    let enforce = tls.peer_server.is_some();
    let raft = RaftServiceServer::new(RaftServiceImpl::new(node.clone(), metrics.raft_rpc.clone(), grpc_stop.clone()))
        .max_decoding_message_size(peer::MAX_RAFT_MESSAGE);
    let membership = MembershipServiceServer::new(MembershipServiceImpl::new(node.clone(), metrics.clone()));
    let admin = AdminServiceServer::new(AdminServiceImpl::new(node.clone()));
    let peer_router = grpc_server()
        .add_service(InterceptedService::new(raft, chat_tls::require(&[Role::Node], enforce)))
        .add_service(InterceptedService::new(membership, chat_tls::require(&[Role::Node, Role::Operator], enforce)))
        .add_service(InterceptedService::new(admin, chat_tls::require(&[Role::Operator, Role::Admin], enforce)))
        .add_service(cluster_service(StatusWatches::new(cfg.limits.status_watches)));

    let refused = |port: &'static str| -> OnRefused {
        let counters = metrics.tls_refused.clone();
        Arc::new(move |why: chat_tls::server::Refused| {
            counters.get_or_create(&RefusedLabels { port, reason: why.as_str() }).inc();
        })
    };
    let public_task = tokio::spawn(serve_port(
        public_router,
        public,
        tls.public_server,
        ("public", refused("public")),
        stop_signal(grpc_stop.clone()),
    ));
    let peer_task =
        tokio::spawn(serve_port(peer_router, peer, tls.peer_server, ("peer", refused("peer")), stop_signal(grpc_stop)));
    let grpc_task = async move {
        let (public, peer) = tokio::join!(public_task, peer_task);
        for (port, result) in [("public", public), ("peer", peer)] {
            match result {
                Ok(Err(e)) => tracing::warn!(port, error = %e, "gRPC server error"),
                Err(e) => tracing::warn!(port, error = %e, "gRPC server task"),
                Ok(Ok(())) => {}
            }
        }
    };

    let readiness = crate::readiness::Readiness::new(node.clone());
    let http_task = http.map(|listener| {
        let stop = stopped.clone();
        tokio::spawn(crate::http::serve(listener, readiness.clone(), metrics.clone(), stop))
    });

    let membership_task = tokio::spawn(establish(cfg.clone(), node.clone(), stopped.clone()));
    let election_task = tokio::spawn(crate::election::run(node.clone()));
    let leadership_task = tokio::spawn(node.clone().track_leadership());
    let sweeper_task = tokio::spawn(crate::sweeper::run(node.clone(), cfg.limits.clone()));
    let acks_task = tokio::spawn(crate::delivery_acks::run(node.clone(), acks));
    let health_task = tokio::spawn(crate::health::run(readiness, health_reporter, stopped.clone()));
    let self_label_task = cfg.self_label.clone().map(|names| tokio::spawn(crate::self_label::run(node.clone(), names)));

    let _ = stopped.wait_for(|s| *s).await;
    membership_task.abort();

    // The shutdown path, in order:
    // 1. Hand leadership over while still serving, so forwarded writes reach the new leader.
    if node.metrics().current_leader == Some(node.id)
        && node.metrics().membership_config.membership().voter_ids().count() > 1
    {
        match node.hand_over(None).await {
            Ok(to) => tracing::info!(to, "leadership handed over"),
            Err(e) => {
                tracing::warn!(error = %e, "leadership hand-over failed; followers will elect after their timeout")
            }
        }
    }
    // 2. Stop accepting on both ports, finish in-flight calls (health says
    //    NOT_SERVING from the moment the node is told to stop).
    let _ = health_task.await;
    let _ = grpc_stop_tx.send(true);
    if tokio::time::timeout(Duration::from_secs(10), grpc_task).await.is_err() {
        tracing::warn!("in-flight calls did not finish in 10s");
    }
    // 3. Stop Raft, then the log flusher (joined), then RocksDB's background
    //    work: nothing may still be touching the DB when the process exits.
    election_task.abort();
    leadership_task.abort();
    sweeper_task.abort();
    acks_task.abort();
    if let Some(task) = self_label_task {
        task.abort();
    }
    if let Err(e) = node.raft.shutdown().await {
        tracing::warn!(error = %e, "raft shutdown");
    }
    if let Some(task) = http_task {
        task.abort();
    }
    let closing = node.clone();
    tokio::task::spawn_blocking(move || {
        flusher.stop();
        closing.db().quiesce();
    })
    .await
    .map_err(|e| Error::Internal(format!("closing storage: {e}")))?;
    tracing::info!(id = cfg.id, "node stopped");
    Ok(())
}

/// Brings this node into a cluster, per the start-up contract:
/// existing data → resume (and fix our advertised address if it moved);
/// fresh with `bootstrap` → found a one-member cluster; fresh with `join` →
/// ask the seeds until admitted.
async fn establish(cfg: Config, node: Arc<ChatNode>, stopped: watch::Receiver<bool>) {
    let initialized = node.raft.is_initialized().await.unwrap_or(false);
    if initialized {
        let known = node.metrics().membership_config.membership().get_node(&cfg.id).cloned();
        if known.as_ref() == Some(&cfg.advertise) {
            tracing::info!(id = cfg.id, "resuming as an existing member");
            return;
        }
        tracing::info!(id = cfg.id, old = ?known, new = %cfg.advertise, "advertised address changed; asking the cluster to update it");
        let peers: Vec<String> = node
            .metrics()
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != cfg.id)
            .map(|(_, n)| n.addr.clone())
            .collect();
        join_until_admitted(&cfg, &node, &peers, stopped).await;
        return;
    }
    if cfg.bootstrap {
        let members = BTreeMap::from([(cfg.id, cfg.advertise.clone())]);
        match node.raft.initialize(members).await {
            Ok(()) => tracing::info!(id = cfg.id, "bootstrapped a new cluster"),
            Err(e) => tracing::warn!(error = %e, "bootstrap skipped"),
        }
        return;
    }
    if cfg.join.is_empty() {
        tracing::info!(id = cfg.id, "no data, no --bootstrap, no --join: waiting to be added by a member");
        return;
    }
    join_until_admitted(&cfg, &node, &cfg.join, stopped).await;
}

/// Calls JoinCluster on each seed in turn, with capped exponential backoff, until one admits us.
async fn join_until_admitted(cfg: &Config, node: &ChatNode, seeds: &[String], mut stopped: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        for seed in seeds {
            match join_once(cfg, node, seed).await {
                Ok(()) => {
                    tracing::info!(id = cfg.id, %seed, "admitted to the cluster");
                    return;
                }
                Err(e) => tracing::info!(id = cfg.id, %seed, error = %e, "join attempt failed; will retry"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn join_once(cfg: &Config, node: &ChatNode, seed: &str) -> Result<()> {
    let mut client = node.peers().membership(seed)?;
    let mut request = tonic::Request::new(JoinClusterRequest {
        node_id: cfg.id,
        address: cfg.advertise.api.clone(),
        peer_address: cfg.advertise.addr.clone(),
        learner: cfg.read_replica,
    });
    request.set_timeout(cfg.timeouts.catch_up + Duration::from_secs(5));
    client.join_cluster(request).await?;
    Ok(())
}

/// Runs a node until `shutdown` resolves, then stops it gracefully.
///
/// # Errors
/// As [`start`] and [`Running::shutdown`].
pub async fn run(cfg: Config, listeners: Listeners, shutdown: impl Future<Output = ()>) -> Result<()> {
    let running = start(cfg, listeners).await?;
    shutdown.await;
    running.shutdown().await
}

/// Maps tonic's statuses for requests that do not decode onto the caller's fault.
type StatusMap = fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>;
type Layers = tower::layer::util::Stack<tower::util::MapResponseLayer<StatusMap>, tower::layer::util::Identity>;

/// A gRPC server builder as both ports use it.
fn grpc_server() -> tonic::transport::Server<Layers> {
    let map: StatusMap = client_error_statuses::<tonic::body::Body>;
    tonic::transport::Server::builder().layer(tower::util::MapResponseLayer::new(map))
}

/// Serves `router` on `listener` until `stop` resolves: over TLS with the
/// current `tls` configuration (refused connections counted by `on_refused`),
/// or plaintext if there is none. Every accepted
/// connection gets TCP_NODELAY (the builder's `tcp_nodelay` is ignored for a
/// listener we bind ourselves; without it, Nagle holds a response's trailing
/// frame until the peer's delayed ACK, ~40 ms — which was the p99/p999 tail
/// in BENCHMARKS.md).
fn serve_port(
    router: Router<Layers>,
    listener: TcpListener,
    tls: Option<Live<ServerConfig>>,
    (port, on_refused): (&'static str, OnRefused),
    stop: impl Future<Output = ()> + Send + 'static,
) -> BoxFuture<'static, std::result::Result<(), tonic::transport::Error>> {
    match tls {
        Some(tls) => {
            let incoming = chat_tls::server::incoming(listener, tls, port, on_refused);
            Box::pin(router.serve_with_incoming_shutdown(incoming, stop))
        }
        None => {
            let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            Box::pin(router.serve_with_incoming_shutdown(incoming, stop))
        }
    }
}

/// Connections the kernel may queue before we accept them (clamped to
/// `net.core.somaxconn`). tokio's `TcpListener::bind` uses 128, as std does:
/// a burst of more new clients than that (256 at once in the benchmark)
/// overflowed the queue, and each dropped SYN cost its client the kernel's
/// 1 s retransmission timeout. Go servers such as etcd use `somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener, naming the address in the error.
///
/// # Errors
/// When the address is in use or not permitted.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let bind = || {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    bind().map_err(|e: std::io::Error| Error::Internal(format!("binding {addr}: {e}")))
}
