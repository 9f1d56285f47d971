//! [`Client`]: the chat calls, routed to the leader and retried through
//! leader changes under one deadline per call.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chat_proto::chat::chat_service_client::ChatServiceClient;
use chat_proto::chat::*;
use chat_proto::cluster::Role;
use chat_proto::{AUTHORIZATION, INDEX_HEADER, LEADER_HINT};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::dial::{Dial, Security, TcpDial};
use crate::discovery::Discovery;
use crate::error::{Error, Result};
use crate::retry::{Backoff, Idempotence, should_retry};

/// How a [`Client`] connects and how long it tries. Built with
/// [`ClientOptions::new`]: there is no default [`Security`], a caller says
/// whom it trusts (or that it wants plaintext).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// TLS and the CA to verify members against, or plaintext.
    pub security: Security,
    /// Overall time budget of one call, retries included.
    pub deadline: Duration,
    /// TCP connect timeout per attempt.
    pub connect_timeout: Duration,
    /// Send calls to the leader the cluster reports (true), or always to the
    /// seeds and let the node forward (false: for addresses the client cannot
    /// dial, e.g. pod DNS names behind a port-forward).
    pub follow_leader: bool,
    /// STALE reads refuse (UNAVAILABLE) a member that has not heard from a
    /// leader within this long; `None`: any age.
    pub max_staleness: Option<Duration>,
}

impl ClientOptions {
    /// A 15 s deadline per call, 1 s per connection attempt, following the leader.
    pub fn new(security: Security) -> Self {
        Self {
            security,
            deadline: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(1),
            follow_leader: true,
            max_staleness: None,
        }
    }
}

/// A handle on a cluster. Cheap to clone; clones share discovery state.
#[derive(Debug, Clone)]
pub struct Client {
    discovery: Arc<Discovery>,
    options: ClientOptions,
    token: Option<String>,
    /// The highest `chat-index` any response has carried: SESSION reads ask
    /// for at least this state (read-your-writes, monotonic reads). Shared by
    /// the clones of a client.
    seen: Arc<AtomicU64>,
    /// Whose turn it is among the members, for reads any member serves.
    turn: Arc<AtomicUsize>,
}

/// Where a call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// The leader (writes, linearizable reads: a follower would forward or ask it anyway).
    Leader,
    /// Any member, in turn (SESSION and STALE reads).
    AnyMember,
}

impl Route {
    fn for_read(consistency: ReadConsistency) -> Self {
        match consistency {
            ReadConsistency::Linearizable => Route::Leader,
            ReadConsistency::Session | ReadConsistency::Stale => Route::AnyMember,
        }
    }
}

/// One member as `cluster_status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub id: u64,
    pub address: String,
    /// leader, follower, learner, candidate, or unreachable.
    pub role: String,
    pub voter: bool,
    pub term: u64,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// When it became leader (Unix ms, its clock); 0 unless it leads.
    pub leader_since_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    pub leader_id: Option<u64>,
    pub term: u64,
    pub members: Vec<MemberStatus>,
}

impl Client {
    /// A client for the cluster reachable at `seeds` (`host:port`). Connects lazily.
    ///
    /// # Errors
    /// `Invalid` for an empty or malformed seed list.
    pub fn new(seeds: Vec<String>, options: ClientOptions) -> Result<Self> {
        let dial = Arc::new(TcpDial::new(options.security.clone()));
        Self::with_dial(seeds, options, dial)
    }

    /// A client that reaches members through `dial` (e.g. a Kubernetes
    /// port-forward) instead of direct TCP.
    ///
    /// # Errors
    /// `Invalid` for an empty or malformed seed list.
    pub fn with_dial(seeds: Vec<String>, options: ClientOptions, dial: Arc<dyn Dial>) -> Result<Self> {
        let discovery = Arc::new(Discovery::new(seeds, dial, options.connect_timeout)?);
        Ok(Self { discovery, options, token: None, seen: Arc::default(), turn: Arc::default() })
    }

    /// The same client, with STALE reads bounded by `max` (see [`ClientOptions::max_staleness`]).
    pub fn with_max_staleness(mut self, max: Option<Duration>) -> Self {
        self.options.max_staleness = max;
        self
    }

    /// The same client, acting for the session `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The highest state index this client has seen (its session's position).
    pub fn seen_index(&self) -> u64 {
        self.seen.load(Ordering::Acquire)
    }

    /// Carries on a session's position from elsewhere (e.g. a saved session).
    pub fn observe_index(&self, index: u64) {
        self.seen.fetch_max(index, Ordering::AcqRel);
    }

    /// How this client secures its connections (for more clients like it).
    pub fn security(&self) -> &Security {
        &self.options.security
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// Where the next attempt goes: the leader, or — for reads any member
    /// serves (SESSION, STALE) — the members in turn, so reads spread over
    /// the cluster and a member that cannot serve one is skipped on retry.
    async fn target(&self, attempt: usize, route: Route) -> Result<String> {
        if route == Route::AnyMember && self.options.follow_leader {
            let members = self.discovery.candidates();
            let turn = self.turn.fetch_add(1, Ordering::Relaxed);
            return Ok(members[turn % members.len()].clone());
        }
        if self.options.follow_leader {
            self.discovery.leader().await
        } else {
            let seeds = self.discovery.seeds();
            Ok(seeds[attempt % seeds.len()].clone())
        }
    }

    /// Runs `call` against the leader, retrying through leader changes until the deadline.
    pub(crate) async fn call<T, F, Fut>(&self, idempotence: Idempotence, call: F) -> Result<T>
    where
        F: FnMut(ChatServiceClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        self.call_via(idempotence, Route::Leader, call).await
    }

    /// [`Client::call`], sent where `route` says.
    async fn call_via<T, F, Fut>(&self, idempotence: Idempotence, route: Route, mut call: F) -> Result<T>
    where
        F: FnMut(ChatServiceClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.options.deadline;
        let mut backoff = Backoff::default();
        let mut attempt = 0;
        loop {
            let status = match self.target(attempt, route).await {
                Ok(addr) => {
                    let client =
                        ChatServiceClient::new(self.discovery.channel(&addr)?).max_decoding_message_size(64 << 20);
                    match call(client).await {
                        Ok(response) => {
                            if let Some(index) = response.metadata().get(INDEX_HEADER).and_then(|v| v.to_str().ok())
                                && let Ok(index) = index.parse()
                            {
                                self.observe_index(index);
                            }
                            return Ok(response.into_inner());
                        }
                        Err(status) => status,
                    }
                }
                Err(Error::Unavailable(m)) => Status::unavailable(format!("no leader: {m}")),
                Err(e) => return Err(e),
            };
            attempt += 1;
            let retry = should_retry(&status, idempotence);
            let delay = backoff.next_delay();
            if !retry || Instant::now() + delay >= deadline {
                return Err(match status.code() {
                    tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Unknown
                    | tonic::Code::Cancelled => Error::Unavailable(status.message().to_string()),
                    _ => Error::Rejected(status),
                });
            }
            tracing::debug!(attempt, code = ?status.code(), message = status.message(), "retrying");
            self.discovery.forget_leader();
            if let Some(hint) = status.metadata().get(LEADER_HINT).and_then(|v| v.to_str().ok()) {
                self.discovery.set_leader(hint);
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// The session's `authorization` metadata value.
    pub(crate) fn auth_value(&self) -> Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> {
        let token = self.token.as_deref().ok_or(Error::NotLoggedIn)?;
        format!("Bearer {token}").parse().map_err(|_| Error::Invalid("session token is not valid metadata".into()))
    }

    /// [`Client::call`] for a request that carries the session token.
    async fn authed_call<M, T, F, Fut>(&self, idempotence: Idempotence, msg: M, call: F) -> Result<T>
    where
        M: Clone,
        F: FnMut(ChatServiceClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        self.authed_call_via(idempotence, Route::Leader, msg, call).await
    }

    /// [`Client::authed_call`], sent where `route` says.
    async fn authed_call_via<M, T, F, Fut>(
        &self,
        idempotence: Idempotence,
        route: Route,
        msg: M,
        mut call: F,
    ) -> Result<T>
    where
        M: Clone,
        F: FnMut(ChatServiceClient<Channel>, Request<M>) -> Fut,
        Fut: Future<Output = std::result::Result<Response<T>, Status>>,
    {
        let auth = self.auth_value()?;
        self.call_via(idempotence, route, |client| {
            let mut request = Request::new(msg.clone());
            request.metadata_mut().insert(AUTHORIZATION, auth.clone());
            call(client, request)
        })
        .await
    }

    /// Creates an account.
    ///
    /// # Errors
    /// `Rejected` with ALREADY_EXISTS or INVALID_ARGUMENT; `Unavailable`.
    pub async fn register(&self, username: &str, password: &str) -> Result<()> {
        let msg = CreateAccountRequest { username: username.into(), password: password.into() };
        self.call(Idempotence::Unsafe, |mut c| {
            let msg = msg.clone();
            async move { c.create_account(msg).await }
        })
        .await
        .map(|_| ())
    }

    /// Logs in; returns the session token (also use [`Client::with_token`]).
    ///
    /// # Errors
    /// `Rejected` with UNAUTHENTICATED for a wrong name or password; `Unavailable`.
    pub async fn login(&self, username: &str, password: &str) -> Result<String> {
        let msg = LoginRequest { username: username.into(), password: password.into() };
        // Safe: a retried login at worst opens a second session.
        let response = self
            .call(Idempotence::Safe, |mut c| {
                let msg = msg.clone();
                async move { c.login(msg).await }
            })
            .await?;
        Ok(response.token)
    }

    /// Ends this client's session.
    ///
    /// # Errors
    /// `NotLoggedIn`, `Rejected` (UNAUTHENTICATED if already ended), `Unavailable`.
    pub async fn logout(&self) -> Result<()> {
        self.authed_call(Idempotence::Unsafe, LogoutRequest {}, |mut c, r| async move { c.logout(r).await })
            .await
            .map(|_| ())
    }

    /// Sends a message. One request id covers every retry, so the message is
    /// delivered exactly once even if a leader dies mid-call.
    ///
    /// # Errors
    /// `Rejected` (NOT_FOUND recipient, INVALID_ARGUMENT body, UNAUTHENTICATED); `Unavailable`.
    pub async fn send(&self, to: &str, body: &str) -> Result<SendMessageResponse> {
        self.send_with_id(to, body, &uuid::Uuid::new_v4().to_string()).await
    }

    /// [`Client::send`] with a caller-chosen request id (at most 64 bytes).
    ///
    /// # Errors
    /// As [`Client::send`].
    pub async fn send_with_id(&self, to: &str, body: &str, request_id: &str) -> Result<SendMessageResponse> {
        let msg = SendMessageRequest { to: to.into(), body: body.into(), request_id: request_id.into() };
        self.authed_call(Idempotence::Safe, msg, |mut c, r| async move { c.send_message(r).await }).await
    }

    /// The newest `limit` messages with `with` below `before_id` (0: newest), oldest first.
    ///
    /// # Errors
    /// `Rejected`, `Unavailable`.
    pub async fn read(
        &self,
        with: &str,
        limit: u32,
        before_id: u64,
        consistency: ReadConsistency,
    ) -> Result<Vec<Message>> {
        let (min_index, max_staleness_ms) = self.read_bounds(consistency);
        let msg = ReadConversationRequest {
            with: with.into(),
            limit,
            before_id,
            consistency: consistency as i32,
            min_index,
            max_staleness_ms,
        };
        let route = Route::for_read(consistency);
        let response = self
            .authed_call_via(Idempotence::Safe, route, msg, |mut c, r| async move { c.read_conversation(r).await })
            .await?;
        Ok(response.messages)
    }

    /// Conversations with unread counts, most recent first (linearizable).
    ///
    /// # Errors
    /// `Rejected`, `Unavailable`.
    pub async fn inbox(&self) -> Result<Vec<Conversation>> {
        self.inbox_at(ReadConsistency::Linearizable).await
    }

    /// [`Client::inbox`] at `consistency`.
    ///
    /// # Errors
    /// `Rejected`, `Unavailable`.
    pub async fn inbox_at(&self, consistency: ReadConsistency) -> Result<Vec<Conversation>> {
        let (min_index, max_staleness_ms) = self.read_bounds(consistency);
        let msg = ListConversationsRequest { consistency: consistency as i32, min_index, max_staleness_ms };
        let route = Route::for_read(consistency);
        let response = self
            .authed_call_via(Idempotence::Safe, route, msg, |mut c, r| async move { c.list_conversations(r).await })
            .await?;
        Ok(response.conversations)
    }

    /// What a read at `consistency` sends: the session's position for
    /// SESSION, the staleness bound for STALE.
    fn read_bounds(&self, consistency: ReadConsistency) -> (u64, u32) {
        match consistency {
            ReadConsistency::Session => (self.seen_index(), 0),
            // 0 means unbounded on the wire: a bound rounds up to at least 1 ms.
            ReadConsistency::Stale => {
                (0, self.options.max_staleness.map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)))
            }
            ReadConsistency::Linearizable => (0, 0),
        }
    }

    /// Marks messages from `with` up to `up_to_id` (0: all) as read; returns how many.
    ///
    /// # Errors
    /// `Rejected`, `Unavailable`.
    pub async fn mark_read(&self, with: &str, up_to_id: u64) -> Result<u64> {
        let msg = MarkReadRequest { with: with.into(), up_to_id };
        let response = self.authed_call(Idempotence::Safe, msg, |mut c, r| async move { c.mark_read(r).await }).await?;
        Ok(response.marked)
    }

    /// Deletes messages the caller sent or received; all or nothing.
    ///
    /// # Errors
    /// `Rejected` (NOT_FOUND, PERMISSION_DENIED), `Unavailable`.
    pub async fn delete_messages(&self, ids: &[u64]) -> Result<u64> {
        let msg = DeleteMessagesRequest { ids: ids.to_vec() };
        let response =
            self.authed_call(Idempotence::Unsafe, msg, |mut c, r| async move { c.delete_messages(r).await }).await?;
        Ok(response.deleted)
    }

    /// Deletes the caller's account and every message it sent or received.
    ///
    /// # Errors
    /// `Rejected`, `Unavailable`.
    pub async fn delete_account(&self) -> Result<u64> {
        let response =
            self.authed_call(Idempotence::Unsafe, DeleteAccountRequest {}, |mut c, r| async move {
                c.delete_account(r).await
            })
            .await?;
        Ok(response.messages_deleted)
    }

    /// One page of usernames matching `pattern`; the second value is the next page token ("" at the end).
    ///
    /// # Errors
    /// `Rejected` (INVALID_ARGUMENT pattern), `Unavailable`.
    pub async fn users(&self, pattern: &str, page_size: u32, page_token: &str) -> Result<(Vec<String>, String)> {
        let msg = ListAccountsRequest {
            pattern: pattern.into(),
            page_size,
            page_token: page_token.into(),
            ..Default::default()
        };
        let response =
            self.authed_call(Idempotence::Safe, msg, |mut c, r| async move { c.list_accounts(r).await }).await?;
        Ok((response.usernames, response.next_page_token))
    }

    /// Every member's own view, gathered from the member list the cluster reports.
    /// Members that do not answer are listed as `unreachable`.
    ///
    /// # Errors
    /// `Unavailable` when no member answers at all.
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        let mut first = None;
        for addr in self.discovery.candidates() {
            if let Ok(s) = self.discovery.status_of(&addr).await {
                first = Some(s);
                break;
            }
        }
        let first = first.ok_or_else(|| Error::Unavailable("no member answered GetStatus".into()))?;
        let mut members = Vec::new();
        for m in &first.members {
            let view =
                if m.id == first.node_id { Ok(first.clone()) } else { self.discovery.status_of(&m.address).await };
            members.push(match view {
                Ok(s) => MemberStatus {
                    id: m.id,
                    address: m.address.clone(),
                    role: role_name(s.role).into(),
                    voter: m.voter,
                    term: s.term,
                    last_log_index: s.last_log_index,
                    commit_index: s.commit_index,
                    applied_index: s.applied_index,
                    leader_since_ms: s.leader_since_ms,
                },
                Err(_) => MemberStatus {
                    id: m.id,
                    address: m.address.clone(),
                    role: "unreachable".into(),
                    voter: m.voter,
                    term: 0,
                    last_log_index: 0,
                    commit_index: 0,
                    applied_index: 0,
                    leader_since_ms: 0,
                },
            });
        }
        // The leader of the highest term any member reports wins.
        let leader = members.iter().filter(|m| m.role == "leader").max_by_key(|m| m.term);
        let term = members.iter().map(|m| m.term).max().unwrap_or(first.term);
        Ok(ClusterStatus { leader_id: leader.map(|m| m.id), term, members })
    }
}

fn role_name(role: i32) -> &'static str {
    match Role::try_from(role).unwrap_or(Role::Unknown) {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Learner => "learner",
        Role::Shutdown | Role::Unknown => "unreachable",
    }
}
