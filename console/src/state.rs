//! The console's shared state: the cluster client and the browser sessions.

use std::sync::Arc;

use chat_client::Client;
use chat_k8s::ClusterNames;
use tokio::sync::Semaphore;

use crate::feed::ClusterFeed;
use crate::session::Sessions;

/// What every route shares.
#[derive(Debug, Clone)]
pub struct ConsoleState {
    /// The cluster, without a token: sessions clone it and add theirs.
    pub client: Client,
    pub sessions: Arc<Sessions>,
    /// Mark the cookie `Secure` (the console is reached over HTTPS).
    pub secure_cookie: bool,
    /// Logins and registrations in flight (each costs the cluster an argon2 hash).
    pub logins: Arc<Semaphore>,
    /// The cluster view, polled once for every viewer.
    pub feed: Arc<ClusterFeed>,
}

/// The ReplicatedChat this console watches, and the API client to read it with.
#[derive(Clone)]
pub struct KubeSource {
    pub client: kube::Client,
    pub names: ClusterNames,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource").field("names", &self.names).finish_non_exhaustive()
    }
}

impl ConsoleState {
    /// Logins and registrations in flight at most; more get RESOURCE_EXHAUSTED.
    pub const MAX_LOGINS: usize = 8;

    pub fn new(client: Client, secure_cookie: bool) -> Self {
        ConsoleState {
            sessions: Arc::default(),
            secure_cookie,
            logins: Arc::new(Semaphore::new(Self::MAX_LOGINS)),
            feed: Arc::new(ClusterFeed::new(client.clone(), None)),
            client,
        }
    }

    /// Also show the ReplicatedChat's conditions and Events.
    pub fn with_kube(mut self, kube: KubeSource) -> Self {
        self.feed = Arc::new(ClusterFeed::new(self.client.clone(), Some(kube)));
        self
    }
}

impl axum::extract::FromRef<ConsoleState> for Arc<Sessions> {
    fn from_ref(state: &ConsoleState) -> Self {
        Arc::clone(&state.sessions)
    }
}
