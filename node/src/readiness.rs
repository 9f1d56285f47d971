//! Readiness: what `/readyz` (the kubelet's probe) and the gRPC health
//! service answer. Ready = a member of a cluster, with a leader, caught up to
//! the commit index it knows.
//!
//! "With a leader" tolerates a short election: a voter that saw a leader
//! within [`ELECTION_GRACE`] stays ready while the cluster elects the next
//! one. Otherwise every voter would drop out of the Service's endpoints
//! during every failover, the new leader included, and routing would wait a
//! probe period or more after the election for it to come back. The new
//! leader is ready as soon as it leads (it knows a leader: itself). A node
//! that has not seen a leader since it started is not ready.
//!
//! "Caught up" tolerates the moment between an entry's commit and its apply
//! (every write has one; a new leader's first entry too): a node that was
//! caught up within [`APPLY_GRACE`] stays ready. One far behind — restored
//! from a snapshot, back from a long absence — is not ready until it catches up.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::node::ChatNode;

/// How long a voter that lost its leader stays ready: an election takes
/// well under a second; a cluster without a quorum for longer is not one to
/// send clients to.
pub const ELECTION_GRACE: Duration = Duration::from_secs(5);

/// How long a node that had applied everything committed may lag behind
/// before it counts as catching up.
pub const APPLY_GRACE: Duration = Duration::from_secs(2);

pub struct Readiness {
    node: Arc<ChatNode>,
    /// When a leader was last known, and when this node was last caught up.
    /// A std Mutex: never held across an await.
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    leader: Option<Instant>,
    caught_up: Option<Instant>,
}

impl Readiness {
    pub fn new(node: Arc<ChatNode>) -> Arc<Self> {
        Arc::new(Self { node, seen: Mutex::default() })
    }

    pub fn node(&self) -> &Arc<ChatNode> {
        &self.node
    }

    /// Why this node is not ready to serve, or `None` when it is.
    pub async fn not_ready(&self) -> Option<String> {
        let status = self.node.status().await;
        let member = status.members.iter().any(|(id, ..)| *id == status.id);
        let now = Instant::now();
        let (leaderless_for, lagging_for) = {
            let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if status.leader.is_some() {
                seen.leader = Some(now);
            }
            if status.applied_index >= status.committed_index {
                seen.caught_up = Some(now);
            }
            (seen.leader.map(|at| now.duration_since(at)), seen.caught_up.map(|at| now.duration_since(at)))
        };
        if !member {
            Some("not a member of a cluster yet".to_string())
        } else if leaderless_for.is_none_or(|d| d >= ELECTION_GRACE) {
            Some("no leader".to_string())
        } else if lagging_for.is_none_or(|d| d >= APPLY_GRACE) {
            Some(format!("applying: {} of {}", status.applied_index, status.committed_index))
        } else {
            None
        }
    }
}
