//! `chat-node`: a chat server whose every write is a Raft log entry.
//!
//! Layout, one idea per module:
//! - [`typ`]: the openraft type configuration and aliases.
//! - [`command`]: what the log carries, and what applying it returns.
//! - [`store`]: RocksDB-backed Raft log, state machine, snapshots and queries.
//! - [`network`]: Raft RPC client and follower → leader calls.
//! - [`node`]: [`node::ChatNode`], write routing, read barriers, membership, hand-over.
//! - [`proposer`]: batching client commands into Raft entries.
//! - [`read_index`]: one leadership-confirming round for many linearizable reads.
//! - [`sweeper`]: the leader's housekeeping (expired sessions, old request ids).
//! - [`delivery_acks`]: delivery receipts from Subscribe streams and reads, batched into one entry.
//! - [`election`]: when to start an election — openraft's timer, behind a pre-vote.
//! - [`service`]: the gRPC services (`ChatService`, `ClusterService`, `MembershipService`, `AdminService`,
//!   `RaftService`).
//! - [`limits`]: abuse limits of the public API (hashing, login delays, streams, metadata).
//! - [`server`]: assembling and running a node; the shutdown path.
//! - [`self_label`]: in Kubernetes, the elected node labels its own pod (term-fenced).
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`; [`health`]: the gRPC health service;
//!   [`readiness`]: what both call ready (a short election does not count against it).
//! - [`metrics`], [`telemetry`]: observability.
//! - [`validate`]: input rules; [`error`]: the error type and its gRPC mapping.
//! - [`cli`]: flags and environment; [`dev`]: the local multi-node playground.
//! - [`restore`]: a new one-member cluster's data dir from a backup.

pub mod cli;
pub mod command;
pub mod delivery_acks;
pub mod dev;
pub mod election;
pub mod error;
pub mod health;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod network;
pub mod node;
pub mod proposer;
pub mod read_index;
pub mod readiness;
pub mod restore;
pub mod self_label;
pub mod server;
pub mod service;
pub mod store;
pub mod sweeper;
pub mod telemetry;
pub mod typ;
pub mod validate;
