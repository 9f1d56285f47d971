//! The Raft type configuration and short aliases for openraft's generic types.
//!
//! The node crate owns these (clients never depend on openraft): node ids are
//! `u64` (a StatefulSet ordinal in Kubernetes), a node is its two advertised
//! addresses ([`Node`]).

use crate::command::{Batch, CommandResult};

pub type NodeId = u64;

/// Where a member is reached. Kept in the Raft membership, so every member
/// knows both addresses of every other.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Node {
    /// `host:port` of its peer port: Raft traffic and forwarded calls, mutual TLS.
    pub addr: String,
    /// `host:port` of its public port: what clients are pointed at.
    pub api: String,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{peer: {}, api: {}}}", self.addr, self.api)
    }
}

openraft::declare_raft_types!(
    /// Raft types of replicated-chat: an entry carries a [`Batch`] of commands,
    /// applying it yields one [`CommandResult`] per command.
    pub TypeConfig:
        D = Batch,
        R = Vec<CommandResult>,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, Node>;
pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
pub type RpcError<E = openraft::error::Infallible> = openraft::error::RPCError<NodeId, Node, RaftError<E>>;
pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, Node>;
