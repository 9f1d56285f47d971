//! Prometheus metrics of one node: RPC counts and latencies, Raft state, stored data.
//!
//! RPC metrics are recorded as requests finish; Raft and storage gauges are
//! refreshed when `/metrics` is scraped, so they cost nothing in between.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub method: &'static str,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub port: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    pub role: &'static str,
}

/// How the Raft log's WAL syncs behave: how long each takes and how many
/// appends it covers. Recorded by the flusher thread.
#[derive(Clone, Debug)]
pub struct FlushMetrics {
    pub sync_seconds: Histogram,
    pub appends_per_sync: Histogram,
    /// How long an apply or an AppendEntries waited for the leader's own
    /// written-ahead entries to be synced (see `store::Durability`); zero when
    /// they already were, which is the usual case.
    pub durable_wait_seconds: Histogram,
}

impl Default for FlushMetrics {
    fn default() -> Self {
        Self {
            sync_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            appends_per_sync: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            durable_wait_seconds: Histogram::new(exponential_buckets(0.00001, 2.0, 18)),
        }
    }
}

/// Raft RPC timing on both ends, by method: the sender's round trip and the
/// receiver's time inside openraft. Their difference is transport and queueing.
#[derive(Clone, Debug)]
pub struct RaftRpcMetrics {
    pub round_trip: Family<MethodLabel, Histogram>,
    pub handled: Family<MethodLabel, Histogram>,
}

impl Default for RaftRpcMetrics {
    fn default() -> Self {
        let histogram = || Histogram::new(exponential_buckets(0.00005, 2.0, 18));
        Self { round_trip: Family::new_with_constructor(histogram), handled: Family::new_with_constructor(histogram) }
    }
}

pub struct Metrics {
    registry: Registry,
    pub flush: FlushMetrics,
    /// Commands per proposed Raft entry (see `proposer`).
    pub batch_commands: Histogram,
    pub raft_rpc: RaftRpcMetrics,
    pub rpc_requests: Family<RpcLabels, Counter>,
    pub rpc_duration: Family<MethodLabel, Histogram>,
    /// Connections closed before a request: failed or slow TLS handshakes, shed ones.
    pub tls_refused: Family<RefusedLabels, Counter>,
    pub term: Gauge,
    pub role: Family<RoleLabel, Gauge>,
    pub last_log_index: Gauge,
    pub committed_index: Gauge,
    pub applied_index: Gauge,
    pub snapshot_index: Gauge,
    pub members: Gauge,
    pub accounts: Gauge,
    pub messages: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("chat");
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        registry.register("rpc_requests", "gRPC requests served, by method and status code", rpc_requests.clone());
        let rpc_duration = Family::<MethodLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        registry.register("rpc_duration_seconds", "gRPC request latency, by method", rpc_duration.clone());
        let tls_refused = Family::<RefusedLabels, Counter>::default();
        registry.register(
            "tls_refused_connections",
            "Connections closed before carrying a request, by port and reason (handshake, timed_out, shed)",
            tls_refused.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let term = gauge(&mut registry, "raft_term", "Current Raft term");
        let role = Family::<RoleLabel, Gauge>::default();
        registry.register("raft_role", "1 for this node's current Raft role", role.clone());
        let last_log_index = gauge(&mut registry, "raft_last_log_index", "Index of the last log entry");
        let committed_index = gauge(&mut registry, "raft_committed_index", "Index of the last committed entry");
        let applied_index = gauge(&mut registry, "raft_applied_index", "Index of the last applied entry");
        let snapshot_index =
            gauge(&mut registry, "raft_snapshot_index", "Last log index covered by the newest snapshot");
        let members = gauge(&mut registry, "raft_members", "Members (voters and learners) in the configuration");
        let accounts = gauge(&mut registry, "accounts", "Accounts stored (RocksDB estimate)");
        let messages = gauge(&mut registry, "messages", "Messages stored (RocksDB estimate)");
        let flush = FlushMetrics::default();
        registry.register("wal_sync_seconds", "Duration of each Raft log WAL sync", flush.sync_seconds.clone());
        registry.register(
            "wal_appends_per_sync",
            "Log appends acknowledged by one WAL sync",
            flush.appends_per_sync.clone(),
        );
        registry.register(
            "wal_durable_wait_seconds",
            "Time an apply or AppendEntries waited for the leader's own log entries to be synced",
            flush.durable_wait_seconds.clone(),
        );
        let batch_commands = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "proposal_batch_commands",
            "Client commands carried by each Raft entry this node proposed as leader",
            batch_commands.clone(),
        );
        let raft_rpc = RaftRpcMetrics::default();
        registry.register(
            "raft_rpc_round_trip_seconds",
            "Raft RPCs this node sent: time until the reply arrived, by method",
            raft_rpc.round_trip.clone(),
        );
        registry.register(
            "raft_rpc_handled_seconds",
            "Raft RPCs this node received: time spent handling them, by method",
            raft_rpc.handled.clone(),
        );
        Self {
            registry,
            flush,
            batch_commands,
            raft_rpc,
            rpc_requests,
            rpc_duration,
            tls_refused,
            term,
            role,
            last_log_index,
            committed_index,
            applied_index,
            snapshot_index,
            members,
            accounts,
            messages,
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
