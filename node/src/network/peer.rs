//! Channels to other nodes and the calls a follower makes on the leader.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chat_proto::cluster::GetStatusRequest;
use chat_proto::cluster::cluster_service_client::ClusterServiceClient;
use chat_proto::cluster::membership_service_client::MembershipServiceClient;
use chat_proto::raft::raft_service_client::RaftServiceClient;
use chat_proto::raft::{CampaignRequest, Payload, ReadIndexRequest};
use chat_tls::Live;
use chat_tls::connect::{Tcp, connector};
use rustls::ClientConfig;
use tonic::transport::{Channel, Endpoint};

use crate::command::{Command, Written};
use crate::election::{PreVoteRequest, PreVoteResponse};
use crate::error::{Error, Result};
use crate::proposer::ProposeError;
use crate::store::{decode, encode};
use crate::typ::NodeId;

/// How long to wait for a connection (TCP and TLS handshake) to a peer before calling it unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How this node reaches other members' peer ports: mutual TLS with its own
/// certificate, or plaintext when run with `--insecure-peer-plaintext`.
#[derive(Debug, Clone)]
pub struct PeerDialer {
    tls: Option<Live<ClientConfig>>,
}

impl PeerDialer {
    /// Mutual TLS with the (rotating) client configuration `tls`.
    pub fn tls(tls: Live<ClientConfig>) -> Self {
        Self { tls: Some(tls) }
    }

    /// No TLS: only for a node started with the explicit, logged opt-out.
    pub fn plaintext() -> Self {
        Self { tls: None }
    }

    /// A lazily connecting channel to the peer port at `addr` (`host:port`).
    /// No I/O happens here; the first call connects, and a broken connection
    /// is re-established on use (with the certificates current then).
    ///
    /// # Errors
    /// If `addr` is not a valid authority.
    pub fn channel(&self, addr: &str) -> Result<Channel> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::invalid(format!("address {addr:?} is not host:port: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        Ok(match &self.tls {
            Some(tls) => endpoint.connect_with_connector_lazy(connector(Tcp, tls.clone())),
            None => endpoint.connect_lazy(),
        })
    }
}

/// The largest Raft message either end accepts (a batch of entries, a
/// snapshot chunk, a forwarded command); the server's decoding limit too.
pub const MAX_RAFT_MESSAGE: usize = 64 << 20;

/// A `RaftService` client on `channel`, with [`MAX_RAFT_MESSAGE`] both ways.
pub fn raft_service(channel: Channel) -> RaftServiceClient<Channel> {
    RaftServiceClient::new(channel)
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE)
}

/// One channel per peer address, made on first use and kept: a follower
/// forwards every write and read-index request to the leader, and a new
/// connection per call would cost a TCP, TLS and HTTP/2 handshake each time.
#[derive(Debug)]
pub struct Peers {
    dialer: PeerDialer,
    /// A std Mutex: only held to look up or insert, never across an await.
    channels: Mutex<HashMap<String, Channel>>,
}

impl Peers {
    pub fn new(dialer: PeerDialer) -> Self {
        Self { dialer, channels: Mutex::default() }
    }

    /// The kept channel to the peer port at `addr`.
    ///
    /// # Errors
    /// If `addr` is not a valid authority.
    pub fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let c = self.dialer.channel(addr)?;
        channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    fn raft_client(&self, addr: &str) -> Result<RaftServiceClient<Channel>> {
        Ok(raft_service(self.channel(addr)?))
    }

    /// A `MembershipService` client on the peer port at `addr`.
    ///
    /// # Errors
    /// If `addr` is not a valid authority.
    pub fn membership(&self, addr: &str) -> Result<MembershipServiceClient<Channel>> {
        Ok(MembershipServiceClient::new(self.channel(addr)?))
    }

    /// Whether the node at `addr` answers, as node `id`, within a second.
    pub async fn answers_as(&self, addr: &str, id: NodeId) -> bool {
        let Ok(channel) = self.channel(addr) else { return false };
        let request = within(GetStatusRequest {}, Duration::from_secs(1));
        let mut client = ClusterServiceClient::new(channel);
        let call = client.get_status(request);
        matches!(tokio::time::timeout(Duration::from_secs(1), call).await, Ok(Ok(r)) if r.get_ref().node_id == id)
    }

    /// Proposes `cmd` through the leader at `addr`. The inner result is the
    /// leader's answer: `NotLeader` means it proposed nothing.
    ///
    /// # Errors
    /// `Unavailable` if the leader cannot be reached.
    pub async fn forward(
        &self,
        addr: &str,
        cmd: &Command,
        timeout: Duration,
    ) -> Result<std::result::Result<Written, ProposeError>> {
        let reply = self.raft_client(addr)?.forward(payload(cmd, timeout)).await.map_err(Error::from)?;
        Ok(decode(&reply.into_inner().data)?)
    }

    /// Asks the leader at `addr` for a read index.
    ///
    /// # Errors
    /// `Unavailable` if the leader cannot be reached or cannot confirm its leadership.
    pub async fn read_index(&self, addr: &str, timeout: Duration) -> Result<u64> {
        let request = within(ReadIndexRequest {}, timeout);
        Ok(self.raft_client(addr)?.read_index(request).await.map_err(Error::from)?.into_inner().index)
    }

    /// Tells the node at `addr` to start an election now (leader hand-over).
    ///
    /// # Errors
    /// If the node cannot be reached.
    pub async fn campaign(&self, addr: &str, from: NodeId, timeout: Duration) -> Result<()> {
        self.raft_client(addr)?.campaign(within(CampaignRequest { from }, timeout)).await.map_err(Error::from)?;
        Ok(())
    }

    /// Asks the voter at `addr` whether it would vote for us now (no term changes).
    ///
    /// # Errors
    /// If the voter cannot be reached or does not answer within `timeout`.
    pub async fn pre_vote(&self, addr: &str, ask: &PreVoteRequest, timeout: Duration) -> Result<PreVoteResponse> {
        let reply = self.raft_client(addr)?.pre_vote(payload(ask, timeout)).await.map_err(Error::from)?;
        Ok(decode(&reply.into_inner().data)?)
    }
}

/// A request carrying `message`, to be answered within `timeout` (sent as `grpc-timeout`).
fn within<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// [`within`] for the calls whose message is a bincode-encoded `value`.
fn payload<T: serde::Serialize>(value: &T, timeout: Duration) -> tonic::Request<Payload> {
    within(Payload { data: encode(value) }, timeout)
}
