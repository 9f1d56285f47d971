//! A client for replicated-chat clusters.
//!
//! - [`Client`]: connects given seed addresses, finds the leader with
//!   `ClusterService.GetStatus`, remembers every member as a fallback, and
//!   retries through leader changes under one overall deadline.
//! - Sends carry a client-chosen request id that the cluster de-duplicates,
//!   so a retry after a failover never delivers a message twice.
//! - [`Client::subscribe`] resumes from the last message it yielded after a
//!   reconnect: no gap, no duplicate.
//!
//! Layout: [`error`] (the error type and exit-code classes), [`dial`] (how a
//! member address is reached: TLS or plaintext, over TCP or a caller's transport), [`discovery`]
//! (who leads, which members exist), [`retry`] (what may be retried, backoff),
//! [`client`] (the calls), [`subscribe`] (the resuming stream), [`load`] (a
//! SendMessage load generator for benchmarks), [`backup`] (an admin's verified
//! backup to a file), [`json`] (the message JSON contract).

pub mod backup;
pub mod client;
pub mod dial;
pub mod discovery;
pub mod error;
pub mod json;
pub mod load;
pub mod retry;
pub mod subscribe;

pub use chat_proto::chat::{Conversation, Message, ReadConsistency};
pub use chat_proto::cluster::GetStatusResponse as NodeStatus;
pub use client::{Client, ClientOptions, ClusterStatus, MemberStatus};
pub use dial::{Dial, Security, TcpDial};
pub use error::{Error, Result};
