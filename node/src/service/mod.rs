//! The gRPC services one node serves, all on one port.
//!
//! - [`chat`]: `ChatServiceImpl`, the public chat API.
//! - [`cluster`]: `ClusterServiceImpl`, status and membership.
//! - [`raft`]: `RaftServiceImpl`, node-to-node Raft traffic and forwarding.
//! - [`auth`]: session tokens in request metadata.
//! - [`observe`]: per-RPC metrics and logs.

pub mod auth;
pub mod chat;
pub mod cluster;
pub mod observe;
pub mod raft;

pub use chat::ChatServiceImpl;
pub use cluster::ClusterServiceImpl;
pub use raft::RaftServiceImpl;
