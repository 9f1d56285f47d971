//! The Kubernetes face of replicated-chat, shared by the operator, `kubectl
//! chat` and the e2e suite so that none of them spells a name twice.
//!
//! Layout: [`crd`] (the `ReplicatedChat` resource), [`names`] (names, labels
//! and ports of everything a cluster owns), [`portforward`] (reaching pods
//! through the API server, for clients outside the cluster), [`resolve`]
//! (which ReplicatedChat, which pods to dial), [`routing`] (the leader label,
//! fenced by Raft term), [`view`] (conditions, Events and volumes as people
//! read them), and `testing` (feature
//! `testing`: a scripted mock API server for offline tests).

pub mod crd;
pub mod names;
pub mod portforward;
pub mod resolve;
pub mod routing;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod view;

pub use crd::{ReplicatedChat, ReplicatedChatSpec, ReplicatedChatStatus};
pub use names::ClusterNames;
