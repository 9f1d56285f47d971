//! The wire protocol of replicated-chat, shared by the node, the client and the operator.
//!
//! - [`chat`]: the public `ChatService` (accounts, sessions, messages, subscribe).
//! - [`cluster`]: `ClusterService` (status, both ports) and `MembershipService`
//!   (membership, leader transfer; peer port only).
//! - [`raft`]: `RaftService`, node-to-node traffic; only the node speaks it.
//!
//! This crate only generates code and holds small helpers about the wire; it has
//! no dependency on Raft or storage, so clients stay light.

pub mod chat {
    tonic::include_proto!("chat.v1");
}

pub mod cluster {
    tonic::include_proto!("chat.cluster.v1");
}

pub mod raft {
    tonic::include_proto!("chat.raft.v1");
}

/// Metadata key carrying the session token, as `Bearer <token>`.
pub const AUTHORIZATION: &str = "authorization";

/// Metadata key a node sets on NOT_FOUND/UNAVAILABLE answers when it is not the
/// leader and knows who is: the leader's `host:port`.
pub const LEADER_HINT: &str = "x-chat-leader";

/// Response metadata of every ChatService call: the index of the state it
/// reflects (a write's log index, a read's applied index). A client sends the
/// highest it has seen as `min_index` with SESSION reads.
pub const INDEX_HEADER: &str = "chat-index";
