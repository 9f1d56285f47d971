//! Talking to other nodes.
//!
//! - [`raft_client`]: openraft's `RaftNetwork` over the `RaftService` gRPC.
//! - [`append_stream`]: AppendEntries as one long-lived stream per follower.
//! - [`peer`]: channels to other nodes, and the follower → leader calls
//!   (forwarding a write, asking for a read index).

mod append_stream;
pub mod peer;
pub mod raft_client;

pub use raft_client::Network;
