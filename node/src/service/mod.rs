//! The gRPC services one node serves. The public port: `ChatService` and
//! `ClusterService`; the peer port (mutual TLS): `RaftService`,
//! `MembershipService`, `AdminService` and `ClusterService`.
//!
//! - [`admin`]: `AdminServiceImpl`, backups, for the operator and admins.
//! - [`chat`]: `ChatServiceImpl`, the public chat API.
//! - [`cluster`]: `ClusterServiceImpl`, this node's view (GetStatus, WatchStatus).
//! - [`status_watch`]: WatchStatus streams, pushed on change and bounded in number.
//! - [`membership`]: `MembershipServiceImpl`, founding, joins, removals, leader transfer.
//! - [`raft`]: `RaftServiceImpl`, node-to-node Raft traffic and forwarding.
//! - [`auth`]: session tokens in request metadata.
//! - [`observe`]: per-RPC metrics and logs.

pub mod admin;
pub mod auth;
pub mod chat;
pub mod cluster;
pub mod membership;
pub mod observe;
pub mod raft;
pub mod status_watch;

pub use admin::AdminServiceImpl;
pub use chat::ChatServiceImpl;
pub use cluster::ClusterServiceImpl;
pub use membership::MembershipServiceImpl;
pub use raft::RaftServiceImpl;
