//! openraft's `RaftNetwork`: Raft messages as bincode inside the `RaftService` gRPC.
//! AppendEntries go over one stream per replication stream ([`append_stream`]);
//! votes and snapshots are plain calls.
//!
//! A transport failure is reported as `Unreachable`, so openraft backs off
//! instead of hammering a dead peer; an error raised by the remote Raft is
//! passed through as `RemoteError`.

use std::sync::Arc;

use chat_proto::raft::Payload;
use chat_proto::raft::raft_service_client::RaftServiceClient;
use openraft::error::{InstallSnapshotError, NetworkError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use super::append_stream::{self, AppendStream};
use crate::metrics::{MethodLabel, RaftRpcMetrics};
use crate::store::{Durability, decode, encode};
use crate::typ::{Node, NodeId, RaftError, RpcError, TypeConfig};

/// Creates one [`Connection`] per replication stream openraft opens.
#[derive(Debug, Clone)]
pub struct Network {
    /// How peer ports are reached (mutual TLS).
    pub dialer: super::peer::PeerDialer,
    pub metrics: RaftRpcMetrics,
    /// The local log's durability: a commit index is sent only once the
    /// log is on disk through it (see `store::Durability`).
    pub durability: Arc<Durability>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Connection {
        let client = self.dialer.channel(&node.addr).map(super::peer::raft_service);
        Connection {
            target,
            client: client.map_err(|e| e.to_string()),
            appends: None,
            durability: self.durability.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

pub struct Connection {
    target: NodeId,
    client: Result<RaftServiceClient<Channel>, String>,
    appends: Option<AppendStream>,
    durability: Arc<Durability>,
    metrics: RaftRpcMetrics,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

/// Which `RaftService` method a call goes to.
enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl Connection {
    async fn call<Req, Resp, E>(&mut self, method: Method, req: &Req, option: &RPCOption) -> Result<Resp, RpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => return Err(openraft::error::RPCError::Unreachable(Unreachable::new(&TransportError(e.clone())))),
        };
        let started = std::time::Instant::now();
        let payload = Payload { data: encode(req) };
        let (reply, name) = match method {
            Method::AppendEntries => {
                let call = append_stream::call(&mut self.appends, client, payload);
                let reply = tokio::time::timeout(option.hard_ttl(), call).await.unwrap_or_else(|_| {
                    Err(tonic::Status::deadline_exceeded(format!("no AppendEntries reply in {:?}", option.hard_ttl())))
                });
                (reply, "AppendEntries")
            }
            Method::Vote => (client.vote(with_timeout(payload, option)).await.map(tonic::Response::into_inner), "Vote"),
            Method::InstallSnapshot => (
                client.install_snapshot(with_timeout(payload, option)).await.map(tonic::Response::into_inner),
                "InstallSnapshot",
            ),
        };
        self.metrics.round_trip.get_or_create(&MethodLabel { method: name }).observe(started.elapsed().as_secs_f64());
        let reply = reply.map_err(|status| match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                openraft::error::RPCError::Unreachable(Unreachable::new(&TransportError(status.to_string())))
            }
            _ => openraft::error::RPCError::Network(NetworkError::new(&TransportError(status.to_string()))),
        })?;
        let result: Result<Resp, RaftError<E>> = decode(&reply.data)
            .map_err(|e| openraft::error::RPCError::Network(NetworkError::new(&TransportError(e.to_string()))))?;
        result.map_err(|e| openraft::error::RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

fn with_timeout(payload: Payload, option: &RPCOption) -> tonic::Request<Payload> {
    let mut request = tonic::Request::new(payload);
    request.set_timeout(option.hard_ttl());
    request
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        // openraft may count this leader's own entries committed before they
        // are synced here; a follower told so could apply an entry this node
        // can still lose. Usually the sync is long done by now.
        if let Some(committed) = rpc.leader_commit {
            let synced = self.durability.durable_through(committed.index);
            if tokio::time::timeout(option.hard_ttl(), synced).await.is_err() {
                let waited = TransportError(format!("the local log was not synced within {:?}", option.hard_ttl()));
                return Err(openraft::error::RPCError::Unreachable(Unreachable::new(&waited)));
            }
        }
        self.call(Method::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        self.call(Method::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RpcError> {
        self.call(Method::Vote, &rpc, &option).await
    }
}
