//! `ClusterServiceImpl`: this node's view of the cluster (GetStatus, and
//! WatchStatus pushing it on change), served on both ports — clients find the
//! leader with it, the operator routes to the leader with it.

use std::sync::Arc;

use chat_proto::cluster::cluster_service_server::ClusterService;
use chat_proto::cluster::*;
use openraft::ServerState;
use tonic::{Request, Response, Status};

use tokio::sync::watch;

use super::observe::observe;
use super::status_watch::{Pace, StatusStream, StatusWatches};
use crate::metrics::Metrics;
use crate::node::{ChatNode, Status as NodeStatus};

pub struct ClusterServiceImpl {
    node: Arc<ChatNode>,
    metrics: Arc<Metrics>,
    watches: StatusWatches,
    /// Becomes true when the server stops accepting: open WatchStatus streams end.
    stopping: watch::Receiver<bool>,
}

impl ClusterServiceImpl {
    pub fn new(
        node: Arc<ChatNode>,
        metrics: Arc<Metrics>,
        watches: StatusWatches,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self { node, metrics, watches, stopping }
    }
}

fn role(state: ServerState) -> Role {
    match state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Shutdown,
    }
}

/// The wire form of a node's view. Addresses are public ones (what clients
/// dial) with the peer ones beside them.
pub fn to_proto(s: &NodeStatus) -> GetStatusResponse {
    GetStatusResponse {
        node_id: s.id,
        address: s.address.api.clone(),
        peer_address: s.address.addr.clone(),
        role: role(s.state) as i32,
        term: s.term,
        leader_id: s.leader.as_ref().map(|(id, _)| *id),
        leader_address: s.leader.as_ref().map(|(_, n)| n.api.clone()).unwrap_or_default(),
        last_log_index: s.last_log_index,
        commit_index: s.committed_index,
        applied_index: s.applied_index,
        members: members(s),
        snapshot_index: s.snapshot_index,
        purged_index: s.purged_index,
        leader_since_ms: s.leader_since_ms,
    }
}

pub fn members(s: &NodeStatus) -> Vec<Member> {
    s.members
        .iter()
        .map(|(id, node, voter, matched)| Member {
            id: *id,
            address: node.api.clone(),
            peer_address: node.addr.clone(),
            voter: *voter,
            matched_index: *matched,
        })
        .collect()
}

#[tonic::async_trait]
impl ClusterService for ClusterServiceImpl {
    async fn get_status(&self, _request: Request<GetStatusRequest>) -> Result<Response<GetStatusResponse>, Status> {
        observe(&self.metrics, "GetStatus", async { Ok(Response::new(to_proto(&self.node.status().await))) }).await
    }

    type WatchStatusStream = StatusStream;

    async fn watch_status(
        &self,
        request: Request<WatchStatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, Status> {
        observe(&self.metrics, "WatchStatus", async {
            let pace = Pace::from_request(request.get_ref())?;
            Ok(Response::new(self.watches.open(self.node.clone(), pace, self.stopping.clone())?))
        })
        .await
    }
}
