//! `ClusterServiceImpl`: status and membership. Membership changes run on the
//! leader; any other member forwards them there, so callers (the operator, a
//! joining node) may talk to whichever member they reach.

use std::sync::Arc;
use std::time::Duration;

use chat_proto::cluster::cluster_service_client::ClusterServiceClient;
use chat_proto::cluster::cluster_service_server::ClusterService;
use chat_proto::cluster::*;
use openraft::ServerState;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::observe::observe;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::network::peer;
use crate::node::{ChatNode, Status as NodeStatus};
use crate::typ::NodeId;

/// How long a membership call may wait for a leader to exist before giving up.
const FIND_LEADER: Duration = Duration::from_secs(10);

pub struct ClusterServiceImpl {
    node: Arc<ChatNode>,
    metrics: Arc<Metrics>,
}

impl ClusterServiceImpl {
    pub fn new(node: Arc<ChatNode>, metrics: Arc<Metrics>) -> Self {
        Self { node, metrics }
    }

    /// The leader's client, or `None` if this node is the leader. Waits for an election if needed.
    async fn leader_client(&self) -> Result<Option<ClusterServiceClient<tonic::transport::Channel>>> {
        let deadline = Instant::now() + FIND_LEADER;
        let mut metrics = self.node.raft.metrics();
        loop {
            match self.node.leader() {
                Some((id, _)) if id == self.node.id => return Ok(None),
                Some((_, addr)) => return Ok(Some(ClusterServiceClient::new(peer::channel(&addr)?))),
                None => {
                    if tokio::time::timeout_at(deadline, metrics.changed()).await.is_err() {
                        return Err(Error::unavailable("no leader elected: the cluster has no quorum"));
                    }
                }
            }
        }
    }

    async fn members(&self) -> Vec<Member> {
        to_proto(&self.node.status().await).members
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

fn to_proto(s: &NodeStatus) -> GetStatusResponse {
    GetStatusResponse {
        node_id: s.id,
        address: s.address.clone(),
        role: role(s.state) as i32,
        term: s.term,
        leader_id: s.leader.as_ref().map(|(id, _)| *id),
        leader_address: s.leader.as_ref().map(|(_, a)| a.clone()).unwrap_or_default(),
        last_log_index: s.last_log_index,
        commit_index: s.committed_index,
        applied_index: s.applied_index,
        members: s
            .members
            .iter()
            .map(|(id, address, voter, matched)| Member {
                id: *id,
                address: address.clone(),
                voter: *voter,
                matched_index: *matched,
            })
            .collect(),
        snapshot_index: s.snapshot_index,
        purged_index: s.purged_index,
    }
}

fn check_id(node_id: NodeId) -> Result<()> {
    // Ids are StatefulSet ordinals in Kubernetes; 0 is valid, only absurd values are refused.
    if node_id == u64::MAX {
        return Err(Error::invalid("node_id must be below 2^64-1"));
    }
    Ok(())
}

#[tonic::async_trait]
impl ClusterService for ClusterServiceImpl {
    async fn get_status(&self, _request: Request<GetStatusRequest>) -> Result<Response<GetStatusResponse>, Status> {
        observe(&self.metrics, "GetStatus", async { Ok(Response::new(to_proto(&self.node.status().await))) }).await
    }

    #[tracing::instrument(skip_all)]
    async fn initialize(&self, _request: Request<InitializeRequest>) -> Result<Response<InitializeResponse>, Status> {
        observe(&self.metrics, "Initialize", async {
            let founded = self.node.initialize().await?;
            Ok(Response::new(InitializeResponse { members: self.members().await, founded }))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(node_id = request.get_ref().node_id, address = %request.get_ref().address))]
    async fn join_cluster(
        &self,
        request: Request<JoinClusterRequest>,
    ) -> Result<Response<JoinClusterResponse>, Status> {
        observe(&self.metrics, "JoinCluster", async {
            let JoinClusterRequest { node_id, address } = request.into_inner();
            check_id(node_id)?;
            if address.is_empty() {
                return Err(Error::invalid("address must be host:port"));
            }
            peer::channel(&address)?;
            match self.leader_client().await? {
                Some(mut leader) => Ok(leader.join_cluster(JoinClusterRequest { node_id, address }).await?),
                None => {
                    self.node.join(node_id, address).await?;
                    Ok(Response::new(JoinClusterResponse { members: self.members().await }))
                }
            }
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(node_id = request.get_ref().node_id))]
    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<RemoveMemberResponse>, Status> {
        observe(&self.metrics, "RemoveMember", async {
            let node_id = request.into_inner().node_id;
            check_id(node_id)?;
            let mut leader = self.leader_client().await?;
            if leader.is_none() && node_id == self.node.id {
                // Removing the leader: hand over first, then let the new leader remove us.
                self.node.hand_over(None).await?;
                leader = self.leader_client().await?;
            }
            match leader {
                Some(mut leader) => Ok(leader.remove_member(RemoveMemberRequest { node_id }).await?),
                None => {
                    self.node.remove(node_id).await?;
                    Ok(Response::new(RemoveMemberResponse { members: self.members().await }))
                }
            }
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(to = request.get_ref().to))]
    async fn transfer_leader(
        &self,
        request: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        observe(&self.metrics, "TransferLeader", async {
            let to = request.into_inner().to;
            match self.leader_client().await? {
                Some(mut leader) => Ok(leader.transfer_leader(TransferLeaderRequest { to }).await?),
                None => {
                    let new_leader_id = self.node.hand_over(to).await?;
                    Ok(Response::new(TransferLeaderResponse { new_leader_id }))
                }
            }
        })
        .await
    }
}
