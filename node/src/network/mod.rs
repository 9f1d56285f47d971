//! Talking to other nodes.
//!
//! - [`raft_client`]: openraft's `RaftNetwork` over the `RaftService` gRPC.
//! - [`peer`]: channels to other nodes, and the follower → leader calls
//!   (forwarding a write, asking for a read index).

pub mod peer;
pub mod raft_client;

pub use raft_client::Network;
