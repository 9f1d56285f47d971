//! The console's shared state: the cluster client and the browser sessions.

use std::sync::Arc;

use chat_client::Client;
use tokio::sync::Semaphore;

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
}

impl ConsoleState {
    /// Logins and registrations in flight at most; more get RESOURCE_EXHAUSTED.
    pub const MAX_LOGINS: usize = 8;

    pub fn new(client: Client, secure_cookie: bool) -> Self {
        ConsoleState {
            client,
            sessions: Arc::default(),
            secure_cookie,
            logins: Arc::new(Semaphore::new(Self::MAX_LOGINS)),
        }
    }
}

impl axum::extract::FromRef<ConsoleState> for Arc<Sessions> {
    fn from_ref(state: &ConsoleState) -> Self {
        Arc::clone(&state.sessions)
    }
}
