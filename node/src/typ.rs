//! The Raft type configuration and short aliases for openraft's generic types.
//!
//! The node crate owns these (clients never depend on openraft): node ids are
//! `u64` (a StatefulSet ordinal in Kubernetes), a node is its advertised address.

use crate::command::{Batch, CommandResult};

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// Raft types of replicated-chat: an entry carries a [`Batch`] of commands,
    /// applying it yields one [`CommandResult`] per command.
    pub TypeConfig:
        D = Batch,
        R = Vec<CommandResult>,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Node = openraft::BasicNode;
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
