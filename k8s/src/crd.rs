//! The `ReplicatedChat` custom resource (group `chat.replicated.dev`, version
//! `v1alpha1`). `crds/` holds the CRD generated from these types by
//! `chat-operator crdgen`; a test fails if the two drift.
//!
//! Defaults live in serde attributes so they reach the CRD schema too: the API
//! server fills them in, and `kubectl get -o yaml` shows what is in effect.
//! Only type-level rules are in the schema (replicas ≥ 1, enums); everything
//! else (an empty image, a malformed quantity, inconsistent Raft timing) is
//! judged by the operator, which answers with a Degraded condition and an Event
//! naming the field, instead of a bare API rejection.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Raft-replicated chat cluster: a StatefulSet of `chat-node` pods whose
/// membership the operator keeps equal to `replicas`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "chat.replicated.dev",
    version = "v1alpha1",
    kind = "ReplicatedChat",
    plural = "replicatedchats",
    shortname = "rchat",
    category = "all",
    doc = "A Raft-replicated chat cluster managed by chat-operator",
    namespaced,
    status = "ReplicatedChatStatus",
    derive = "PartialEq",
    scale = r#"{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.replicas","labelSelectorPath":".status.selector"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Leader","type":"string","jsonPath":".status.leader"}"#,
    printcolumn = r#"{"name":"Term","type":"integer","jsonPath":".status.term"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ReplicatedChatSpec {
    /// Number of Raft voters. Odd numbers make the most of each pod: 4 tolerates
    /// no more failures than 3.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1))]
    pub replicas: i32,
    /// Read replicas: members in their own StatefulSet that never vote (Raft
    /// learners, never promoted). They serve SESSION and STALE reads and
    /// Subscribe, forward writes, and no commit waits for them.
    #[serde(default)]
    #[schemars(range(min = 0, max = 32))]
    pub read_replicas: i32,
    /// The chat-node image.
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    #[serde(default)]
    pub storage: StorageSpec,
    /// CPU and memory of each node container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default)]
    pub raft: RaftSpec,
    #[serde(default)]
    pub service: ServiceSpec,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Replaces the default, which prefers spreading pods across nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
    /// Certificates. By default the operator makes a CA for this cluster and
    /// issues (and renews) every certificate from it; set both Secrets to
    /// bring your own, e.g. from cert-manager.
    #[serde(default, skip_serializing_if = "TlsSpec::is_default")]
    pub tls: TlsSpec,
    /// Who may reach the nodes. The peer port (Raft, membership) always
    /// admits only this cluster's pods and the operator's.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
    /// How the cluster starts, once in its life: empty (default), or restored
    /// from a backup (`kubectl chat backup`). Read only until the cluster is
    /// founded; changing it later does nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<BootstrapSpec>,
    /// Scheduled backups to a PersistentVolumeClaim (a CronJob running
    /// `kubectl-chat backup` with the cluster's admin certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
    /// The web console (`chat-console`: the cluster live, and a chat window):
    /// a Deployment and a ClusterIP Service `<name>-console` serving HTTPS on
    /// port 8088. Reach it with `kubectl port-forward svc/<name>-console 8088`
    /// and https://localhost:8088/ (trust the CA in ConfigMap `<name>-ca`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<ConsoleSpec>,
}

/// The web console. Turning it off scales its Deployment to zero (kept).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleSpec {
    #[serde(default)]
    pub enabled: bool,
    /// An image with `/usr/local/bin/chat-console`. Default: `spec.image`
    /// (the chat-node image carries the console).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPU and memory of the console container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// A Secret with the console's HTTPS certificate (`tls.crt`, `tls.key`,
    /// `ca.crt`: cert-manager's layout). Default: the operator issues one from
    /// the cluster's CA into `<name>-console-tls` and renews it. Required
    /// with `spec.tls` (the operator then holds no CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
}

/// Scheduled backups: `<claimName>/<name>-<UTC time>.backup`, the newest
/// `keep` kept. Removing this section suspends the CronJob.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// When, in cron syntax (e.g. `0 3 * * *`: daily at 03:00 in the cluster's time zone).
    pub schedule: String,
    /// The PersistentVolumeClaim the backups are written to (ReadWriteOnce is enough).
    pub claim_name: String,
    /// How many backups of this cluster to keep there.
    #[serde(default = "default_backups_kept")]
    #[schemars(range(min = 1, max = 1000))]
    pub keep: u32,
    /// The Secret with the admin certificate (ca.crt, tls.crt, tls.key;
    /// common name chat-admin). Default: the operator's `<name>-admin-tls`;
    /// required with `spec.tls` (the operator then issues none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_secret: Option<String>,
}

fn default_backups_kept() -> u32 {
    7
}

/// Where a new cluster's first state comes from.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapSpec {
    /// Restore pod 0 from a backup file on a PersistentVolumeClaim (mounted
    /// read-only into pod 0 alone: the cluster runs one pod until it is
    /// founded, then the others join and receive the state from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_backup: Option<FromBackup>,
}

/// A backup file on a PersistentVolumeClaim in the cluster's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FromBackup {
    /// The PersistentVolumeClaim holding the file.
    pub claim_name: String,
    /// The file's path inside the claim, relative (e.g. `backups/chat-2026-12-02.backup`).
    pub path: String,
}

/// The NetworkPolicy the operator renders for the cluster's pods.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Render it (default). Turn off only where you manage policies yourself.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Who may reach the public port and the HTTP port (health, metrics):
    /// NetworkPolicy peers. Empty (default): every pod in the cluster's
    /// namespace. A NodePort or LoadBalancer Service needs the clients' IP
    /// blocks here (e.g. `[{ipBlock: {cidr: 0.0.0.0/0}}]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients_from: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
}

fn default_true() -> bool {
    true
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self { enabled: true, clients_from: Vec::new() }
    }
}

/// Certificates you bring instead of the operator's. Each Secret holds
/// `ca.crt`, `tls.crt` and `tls.key` (cert-manager's layout), both signed by
/// the same CA; the operator renews nothing here.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.nodeSecret) == has(self.operatorSecret)").message(
    "bring both nodeSecret and operatorSecret (certificates of one CA), or neither and the operator issues them"
))]
pub struct TlsSpec {
    /// Mounted into every node. Common name `chat-node`; DNS names
    /// `*.<name>-peers.<namespace>.svc` and the client Service's; usable for
    /// both server and client authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_secret: Option<String>,
    /// What the operator presents to the nodes: common name `chat-operator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_secret: Option<String>,
}

impl TlsSpec {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn default_replicas() -> i32 {
    3
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// Each node's persistent volume.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Fixed at creation: a StatefulSet's volume claim template cannot change.
    #[serde(default = "default_storage_size")]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "cannot change after creation: a StatefulSet's volume claims are immutable (grow each PVC instead, \
         if its storage class allows expansion)"
    ))]
    pub size: Quantity,
    /// Storage class of the volumes (default: the cluster's default class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// What happens to a removed member's volume after a scale-down: `Delete`
    /// (a later scale-up starts that member fresh) or `Retain` (kept for
    /// inspection; a member that comes back with it rejoins as a learner).
    #[serde(default = "default_on_scale_down")]
    pub on_scale_down: VolumePolicy,
    /// What happens to all volumes when the ReplicatedChat is deleted.
    #[serde(default = "default_on_delete")]
    pub on_delete: VolumePolicy,
}

fn default_storage_size() -> Quantity {
    Quantity("1Gi".into())
}
fn default_on_scale_down() -> VolumePolicy {
    VolumePolicy::Delete
}
fn default_on_delete() -> VolumePolicy {
    VolumePolicy::Delete
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
            on_scale_down: default_on_scale_down(),
            on_delete: default_on_delete(),
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum VolumePolicy {
    Delete,
    Retain,
}

impl VolumePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "Delete",
            Self::Retain => "Retain",
        }
    }
}

/// Raft timing. Heartbeat 100 ms as etcd; election timeout 350–700 ms.
///
/// A follower of a live leader campaigns only once `electionTimeoutMaxMs`
/// (openraft's leader lease) *plus* its own election timeout have passed
/// without a heartbeat: with these defaults 1.05–1.4 s, never sooner than
/// etcd's followers with etcd's defaults (1–2 s), so a slow node is not
/// mistaken for a dead one any more readily. Failover after a crash is that
/// plus one vote round (measured: BENCHMARKS.md).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.electionTimeoutMinMs >= 3 * self.heartbeatMs").message(
        "electionTimeoutMinMs must be at least 3 heartbeats: followers would call elections between heartbeats"
    ),
    validation = Rule::new("self.electionTimeoutMaxMs > self.electionTimeoutMinMs")
        .message("electionTimeoutMaxMs must be above electionTimeoutMinMs")
)]
pub struct RaftSpec {
    #[serde(default = "default_heartbeat_ms")]
    #[schemars(range(min = 1))]
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout; at least 3 heartbeats.
    #[serde(default = "default_election_min_ms")]
    #[schemars(range(min = 1))]
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout; above the lower bound.
    #[serde(default = "default_election_max_ms")]
    #[schemars(range(min = 1))]
    pub election_timeout_max_ms: u64,
    /// Log entries between snapshots.
    #[serde(default = "default_snapshot_threshold")]
    #[schemars(range(min = 1))]
    pub snapshot_threshold: u64,
}

fn default_heartbeat_ms() -> u64 {
    100
}
fn default_election_min_ms() -> u64 {
    350
}
fn default_election_max_ms() -> u64 {
    700
}
fn default_snapshot_threshold() -> u64 {
    10_000
}

impl Default for RaftSpec {
    fn default() -> Self {
        Self {
            heartbeat_ms: default_heartbeat_ms(),
            election_timeout_min_ms: default_election_min_ms(),
            election_timeout_max_ms: default_election_max_ms(),
            snapshot_threshold: default_snapshot_threshold(),
        }
    }
}

/// The client Service (it routes to the leader only).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default = "default_service_type", rename = "type")]
    pub type_: ServiceType,
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

fn default_service_type() -> ServiceType {
    ServiceType::ClusterIP
}
fn default_service_port() -> i32 {
    i32::from(crate::names::GRPC_PORT)
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self { type_: default_service_type(), port: default_service_port() }
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// What the operator observed, written only by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicatedChatStatus {
    /// Raft voters (the scale subresource's replicas).
    #[serde(default)]
    pub replicas: i32,
    /// Members that answer and have applied what the leader committed.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the pods, for the scale subresource (HPA).
    #[serde(default)]
    pub selector: String,
    /// Pod name of the current leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Raft term of the current leader.
    #[serde(default)]
    pub term: u64,
    #[serde(default)]
    pub members: Vec<MemberStatus>,
    /// Set once the cluster has been founded; never founded again after that,
    /// even if every volume is lost.
    #[serde(default)]
    pub bootstrapped: bool,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The CronJob of scheduled backups while `spec.backup` asks for them
    /// (once the section is removed, the operator suspends it and clears this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_backups: Option<String>,
    /// The console's Deployment while `spec.console.enabled` (once turned
    /// off, the operator scales it to zero and clears this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<String>,
}

/// One Raft member as the leader sees it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    pub id: u64,
    pub pod: String,
    /// `voter` or `learner`.
    pub role: String,
    /// Highest log index known replicated to the member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_index: Option<u64>,
}

/// Condition types the operator sets.
pub mod condition {
    pub const AVAILABLE: &str = "Available";
    pub const PROGRESSING: &str = "Progressing";
    pub const DEGRADED: &str = "Degraded";
}
