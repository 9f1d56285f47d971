//! Talking to the chat nodes on their peer ports: observe every pod's view
//! (ClusterService), found the cluster, add and remove members, hand
//! leadership over (MembershipService).
//!
//! In the cluster the operator dials pod DNS names directly; run out of
//! cluster (development), it dials through port-forwards ([`chat_k8s::portforward`]).
//! Either way over mutual TLS with a certificate of each cluster's own CA
//! ([`Nodes::secure`], from `certificates`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_client::{Dial, Security};
use chat_k8s::ClusterNames;
use chat_proto::cluster::cluster_service_client::ClusterServiceClient;
use chat_proto::cluster::membership_service_client::MembershipServiceClient;
use chat_proto::cluster::{
    GetStatusRequest, GetStatusResponse, InitializeRequest, JoinClusterRequest, Member, RemoveMemberRequest, Role,
    TransferLeaderRequest, WatchStatusRequest,
};
use futures::future::join_all;
use tonic::transport::Channel;

use crate::error::{Error, Result};

/// How long one pod gets to answer GetStatus.
const STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// A join returns once the new member has caught up; a large snapshot takes a
/// while. The call is idempotent, so a timeout only means "ask again later".
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
const CHANGE_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A WatchStatus stream's heartbeat: the longest a live node stays silent.
pub const WATCH_HEARTBEAT: Duration = Duration::from_secs(10);

/// Where a pod is reached: its public port (what clients are told) and its
/// peer port (what the operator and the other members dial).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddress {
    pub public: String,
    pub peer: String,
}

/// Where each member is reached: its pod DNS name (the default), or a fixed
/// map for tests running nodes on loopback.
pub type AddressBook = Arc<dyn Fn(&ClusterNames, u64) -> PodAddress + Send + Sync>;

/// The default address book: `<pod>.<peers>.<ns>.svc:<port>`, what pods advertise.
pub fn pod_dns() -> AddressBook {
    Arc::new(|names: &ClusterNames, ordinal| PodAddress {
        public: names.pod_address(ordinal),
        peer: names.pod_peer_address(ordinal),
    })
}

/// One pod's answer (or silence).
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub ordinal: u64,
    /// Its peer address: where the operator asked.
    pub address: String,
    /// `None` when the pod did not answer.
    pub status: Option<GetStatusResponse>,
}

impl PodView {
    /// Answers, but belongs to no cluster: an empty volume.
    pub fn is_blank(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.members.is_empty())
    }

    pub fn is_leader(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.role == Role::Leader as i32)
    }
}

/// Every pod's view at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub pods: Vec<PodView>,
}

impl Observation {
    /// The leader of the highest term any pod reports. A restarted old leader
    /// briefly claims its old term; the newer term wins.
    pub fn leader(&self) -> Option<&PodView> {
        self.pods.iter().filter(|p| p.is_leader()).max_by_key(|p| p.status.as_ref().map_or(0, |s| s.term))
    }

    /// The membership as the leader knows it.
    pub fn members(&self) -> Option<&[Member]> {
        Some(&self.leader()?.status.as_ref()?.members)
    }

    /// True once any pod reports belonging to a cluster.
    pub fn any_member(&self) -> bool {
        self.pods.iter().any(|p| p.status.as_ref().is_some_and(|s| !s.members.is_empty()))
    }

    pub fn pod(&self, ordinal: u64) -> Option<&PodView> {
        self.pods.iter().find(|p| p.ordinal == ordinal)
    }
}

/// Makes the dialer that reaches a cluster's nodes with its certificates.
pub type DialFactory = Arc<dyn Fn(Security) -> Arc<dyn Dial> + Send + Sync>;

/// How one cluster's nodes are reached.
struct Link {
    /// Identifies the certificates `dial` presents: new ones drop the channels.
    key: String,
    dial: Arc<dyn Dial>,
    /// One lazily connecting channel per address, reused by every call: the
    /// leader watch polls every pod several times a second.
    channels: HashMap<String, Channel>,
}

/// The operator's handle on the nodes of every cluster.
#[derive(Clone)]
pub struct Nodes {
    dial: DialFactory,
    addresses: AddressBook,
    /// Per cluster (`namespace/name`). A std Mutex: only held to look up or
    /// insert, never across an await.
    clusters: Arc<Mutex<HashMap<String, Link>>>,
}

impl Nodes {
    pub fn new(dial: DialFactory, addresses: AddressBook) -> Self {
        Self { dial, addresses, clusters: Arc::default() }
    }

    /// Sets how the nodes of `names` are reached. `key` identifies the
    /// certificates in `security`: the same key keeps the open channels, a new
    /// one (a rotated CA or operator certificate) replaces them.
    pub fn secure(&self, names: &ClusterNames, key: &str, security: Security) {
        let mut clusters = self.clusters.lock().unwrap_or_else(|p| p.into_inner());
        let cluster = cluster_key(names);
        if clusters.get(&cluster).is_some_and(|link| link.key == key) {
            return;
        }
        let link = Link { key: key.to_string(), dial: (self.dial)(security), channels: HashMap::new() };
        clusters.insert(cluster, link);
    }

    /// Forgets a deleted cluster's channels.
    pub fn forget(&self, names: &ClusterNames) {
        self.clusters.lock().unwrap_or_else(|p| p.into_inner()).remove(&cluster_key(names));
    }

    /// Pod `ordinal`'s peer address: where the operator reaches it.
    pub fn address(&self, names: &ClusterNames, ordinal: u64) -> String {
        (self.addresses)(names, ordinal).peer
    }

    fn channel(&self, names: &ClusterNames, addr: &str) -> Result<Channel> {
        let mut clusters = self.clusters.lock().unwrap_or_else(|p| p.into_inner());
        let link = clusters.get_mut(&cluster_key(names)).ok_or_else(|| {
            Error::Node(format!("no certificates loaded for {}/{} yet", names.namespace, names.cluster))
        })?;
        if let Some(c) = link.channels.get(addr) {
            return Ok(c.clone());
        }
        let c = link.dial.dial(addr, CONNECT_TIMEOUT).map_err(|e| Error::Node(e.to_string()))?;
        link.channels.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    fn client(&self, names: &ClusterNames, addr: &str) -> Result<ClusterServiceClient<Channel>> {
        Ok(ClusterServiceClient::new(self.channel(names, addr)?))
    }

    fn membership(&self, names: &ClusterNames, addr: &str) -> Result<MembershipServiceClient<Channel>> {
        Ok(MembershipServiceClient::new(self.channel(names, addr)?))
    }

    /// Asks every pod in `ordinals` for its view, all at once.
    pub async fn observe(&self, names: &ClusterNames, ordinals: &[u64]) -> Observation {
        let asks = ordinals.iter().map(|&ordinal| async move {
            let address = self.address(names, ordinal);
            let status = match self.client(names, &address) {
                Ok(mut client) => {
                    let mut request = tonic::Request::new(GetStatusRequest {});
                    request.set_timeout(STATUS_TIMEOUT);
                    match tokio::time::timeout(STATUS_TIMEOUT, client.get_status(request)).await {
                        Ok(Ok(response)) => Some(response.into_inner()),
                        _ => None,
                    }
                }
                Err(_) => None,
            };
            PodView { ordinal, address, status }
        });
        Observation { pods: join_all(asks).await }
    }

    /// Opens pod `ordinal`'s WatchStatus stream: its view now and whenever
    /// role, term, leader or membership change (index-only movement at most
    /// once a minute: the leader routing does not need it), and a heartbeat
    /// every [`WATCH_HEARTBEAT`].
    ///
    /// # Errors
    /// `Node` when the pod cannot be reached or refuses.
    pub async fn watch(&self, names: &ClusterNames, ordinal: u64) -> Result<tonic::Streaming<GetStatusResponse>> {
        let mut client = self.client(names, &self.address(names, ordinal))?;
        let heartbeat_ms = u32::try_from(WATCH_HEARTBEAT.as_millis()).unwrap_or(u32::MAX);
        let request = WatchStatusRequest { min_interval_ms: 60_000, heartbeat_ms };
        call(CONNECT_TIMEOUT + STATUS_TIMEOUT, client.watch_status(request)).await
    }

    /// Founds the cluster on pod `ordinal`. Returns whether it founded one
    /// (false: it already belonged to a cluster).
    ///
    /// # Errors
    /// `Node` when the pod cannot be reached or refuses.
    pub async fn initialize(&self, names: &ClusterNames, ordinal: u64) -> Result<bool> {
        let mut client = self.membership(names, &self.address(names, ordinal))?;
        let response = call(CHANGE_TIMEOUT, client.initialize(InitializeRequest {})).await?;
        Ok(response.founded)
    }

    /// Adds pod `ordinal` through the leader at `leader`: learner, caught up,
    /// then voter — or, with `learner`, a read replica that stays a learner.
    ///
    /// # Errors
    /// `Node` on failure or timeout (safe to retry).
    pub async fn join(&self, leader: &str, names: &ClusterNames, ordinal: u64, learner: bool) -> Result<Vec<Member>> {
        let PodAddress { public, peer } = (self.addresses)(names, ordinal);
        let request = JoinClusterRequest { node_id: ordinal, address: public, peer_address: peer, learner };
        let mut client = self.membership(names, leader)?;
        Ok(call(JOIN_TIMEOUT, client.join_cluster(request)).await?.members)
    }

    /// Removes member `id` through the leader at `leader`.
    ///
    /// # Errors
    /// `Node` on failure or timeout (safe to retry).
    pub async fn remove(&self, names: &ClusterNames, leader: &str, id: u64) -> Result<Vec<Member>> {
        let mut client = self.membership(names, leader)?;
        Ok(call(CHANGE_TIMEOUT, client.remove_member(RemoveMemberRequest { node_id: id })).await?.members)
    }

    /// Hands leadership from the leader at `leader` to `to` (or the most caught-up voter).
    ///
    /// # Errors
    /// `Node` on failure or timeout.
    pub async fn transfer_leader(&self, names: &ClusterNames, leader: &str, to: Option<u64>) -> Result<u64> {
        let mut client = self.membership(names, leader)?;
        Ok(call(CHANGE_TIMEOUT, client.transfer_leader(TransferLeaderRequest { to })).await?.new_leader_id)
    }
}

async fn call<T>(
    within: Duration,
    rpc: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(within, rpc).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(Error::Node(format!("{:?}: {}", status.code(), status.message()))),
        Err(_) => Err(Error::Node(format!("no answer within {within:?}"))),
    }
}

fn cluster_key(names: &ClusterNames) -> String {
    format!("{}/{}", names.namespace, names.cluster)
}

/// A fixed address book (tests): ordinal → addresses.
pub fn fixed(addresses: BTreeMap<u64, PodAddress>) -> AddressBook {
    Arc::new(move |_: &ClusterNames, ordinal| {
        addresses
            .get(&ordinal)
            .cloned()
            .unwrap_or_else(|| PodAddress { public: "unknown:1".into(), peer: "unknown:2".into() })
    })
}
