//! `MembershipServiceImpl`: founding the cluster, joins, removals and leader
//! transfer. Served only on the peer port, to callers whose certificate names
//! a node or the operator. Changes run on the leader; any other member
//! forwards them there, so callers may talk to whichever member they reach.

use std::sync::Arc;
use std::time::Duration;

use chat_proto::cluster::membership_service_client::MembershipServiceClient;
use chat_proto::cluster::membership_service_server::MembershipService;
use chat_proto::cluster::*;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::cluster::members;
use super::observe::observe;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::node::ChatNode;
use crate::typ::{Node, NodeId};
use crate::validate;

/// How long a membership call may wait for a leader to exist before giving up.
const FIND_LEADER: Duration = Duration::from_secs(10);

pub struct MembershipServiceImpl {
    node: Arc<ChatNode>,
    metrics: Arc<Metrics>,
}

impl MembershipServiceImpl {
    pub fn new(node: Arc<ChatNode>, metrics: Arc<Metrics>) -> Self {
        Self { node, metrics }
    }

    /// The leader's client, or `None` if this node is the leader. Waits for an election if needed.
    async fn leader_client(&self) -> Result<Option<MembershipServiceClient<Channel>>> {
        let deadline = Instant::now() + FIND_LEADER;
        let mut metrics = self.node.raft.metrics();
        loop {
            match self.node.leader() {
                Some((id, _)) if id == self.node.id => return Ok(None),
                Some((_, leader)) => return Ok(Some(self.node.peers().membership(&leader.addr)?)),
                None => {
                    if tokio::time::timeout_at(deadline, metrics.changed()).await.is_err() {
                        return Err(Error::unavailable("no leader elected: the cluster has no quorum"));
                    }
                }
            }
        }
    }

    async fn members(&self) -> Vec<Member> {
        members(&self.node.status().await)
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
impl MembershipService for MembershipServiceImpl {
    #[tracing::instrument(skip_all)]
    async fn initialize(&self, _request: Request<InitializeRequest>) -> Result<Response<InitializeResponse>, Status> {
        observe(&self.metrics, "Initialize", async {
            let founded = self.node.initialize().await?;
            Ok(Response::new(InitializeResponse { members: self.members().await, founded }))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(node_id = request.get_ref().node_id))]
    async fn join_cluster(
        &self,
        request: Request<JoinClusterRequest>,
    ) -> Result<Response<JoinClusterResponse>, Status> {
        observe(&self.metrics, "JoinCluster", async {
            let JoinClusterRequest { node_id, address, peer_address, learner } = request.into_inner();
            check_id(node_id)?;
            validate::host_port("address", &address)?;
            validate::host_port("peer_address", &peer_address)?;
            match self.leader_client().await? {
                Some(mut leader) => {
                    Ok(leader.join_cluster(JoinClusterRequest { node_id, address, peer_address, learner }).await?)
                }
                None => {
                    // Run to the end even if the caller gives up: a join
                    // abandoned half-way would skip removing the learner it added.
                    let node = self.node.clone();
                    let joining = Node { addr: peer_address, api: address };
                    tokio::spawn(async move { node.join(node_id, joining, learner).await })
                        .await
                        .map_err(|e| Error::Internal(format!("join task: {e}")))??;
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
