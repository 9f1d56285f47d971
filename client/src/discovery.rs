//! Who leads, and which members exist: learned from `GetStatus`, cached, and
//! forgotten as soon as a call suggests it is stale.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_proto::cluster::cluster_service_client::ClusterServiceClient;
use chat_proto::cluster::{GetStatusRequest, GetStatusResponse};
use tonic::transport::Channel;

use crate::dial::Dial;
use crate::error::{Error, Result};

/// How long one member gets to answer `GetStatus` during discovery.
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(1500);

#[derive(Debug)]
pub struct Discovery {
    seeds: Vec<String>,
    dial: Arc<dyn Dial>,
    connect_timeout: Duration,
    /// A std Mutex: held only to copy small values in and out, never across an await.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    leader: Option<String>,
    members: Vec<String>,
    channels: HashMap<String, Channel>,
}

impl Discovery {
    /// # Errors
    /// `Invalid` when no seed is given or a seed is not `host:port`.
    pub fn new(seeds: Vec<String>, dial: Arc<dyn Dial>, connect_timeout: Duration) -> Result<Self> {
        let seeds: Vec<String> = seeds.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        if seeds.is_empty() {
            return Err(Error::Invalid("no cluster address given".into()));
        }
        let d = Self { seeds, dial, connect_timeout, state: Mutex::new(State::default()) };
        for seed in &d.seeds {
            d.channel(seed)?;
        }
        Ok(d)
    }

    pub fn seeds(&self) -> &[String] {
        &self.seeds
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A lazily connecting channel to `addr`, shared by every call to it.
    ///
    /// # Errors
    /// `Invalid` if `addr` is not `host:port`.
    pub fn channel(&self, addr: &str) -> Result<Channel> {
        if let Some(c) = self.lock().channels.get(addr) {
            return Ok(c.clone());
        }
        let channel = self.dial.dial(addr, self.connect_timeout)?;
        self.lock().channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// Addresses to try, most promising first: the leader, known members, seeds.
    pub fn candidates(&self) -> Vec<String> {
        let state = self.lock();
        let mut out: Vec<String> = Vec::new();
        for addr in state.leader.iter().chain(state.members.iter()).chain(self.seeds.iter()) {
            if !out.contains(addr) {
                out.push(addr.clone());
            }
        }
        out
    }

    pub fn set_leader(&self, addr: &str) {
        self.lock().leader = Some(addr.to_string());
    }

    pub fn forget_leader(&self) {
        self.lock().leader = None;
    }

    pub fn cached_leader(&self) -> Option<String> {
        self.lock().leader.clone()
    }

    /// One member's view.
    ///
    /// # Errors
    /// The transport or server error of that one call.
    pub async fn status_of(&self, addr: &str) -> std::result::Result<GetStatusResponse, tonic::Status> {
        let channel = self.channel(addr).map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        let mut request = tonic::Request::new(GetStatusRequest {});
        request.set_timeout(STATUS_TIMEOUT);
        Ok(ClusterServiceClient::new(channel).get_status(request).await?.into_inner())
    }

    /// The leader's address: cached, or asked of each candidate in turn. Learns
    /// the member list from whoever answers.
    ///
    /// # Errors
    /// `Unavailable` when no candidate answers or none knows a leader.
    pub async fn leader(&self) -> Result<String> {
        if let Some(leader) = self.cached_leader() {
            return Ok(leader);
        }
        let mut tried = Vec::new();
        for addr in self.candidates() {
            match self.status_of(&addr).await {
                Ok(status) => {
                    let members: Vec<String> = status.members.iter().map(|m| m.address.clone()).collect();
                    let mut state = self.lock();
                    if !members.is_empty() {
                        state.members = members;
                    }
                    if !status.leader_address.is_empty() {
                        state.leader = Some(status.leader_address.clone());
                        return Ok(status.leader_address);
                    }
                    tried.push(format!("{addr}: no leader known"));
                }
                Err(e) => tried.push(format!("{addr}: {}", e.message())),
            }
        }
        Err(Error::Unavailable(format!("no leader found ({})", tried.join("; "))))
    }
}
