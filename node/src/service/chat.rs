//! `ChatServiceImpl`: the public chat API.
//!
//! Writes are validated here, prepared (hashes, timestamps, request ids) and
//! committed through [`ChatNode::write`]; reads pass a read barrier, resolve
//! the session against the applied state and query it.
//!
//! Every caller may be a stranger: a handler that needs a session reads the
//! token before looking at anything else, usernames are folded to lower case,
//! and what a caller can make the node spend is bounded (`crate::limits`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chat_proto::INDEX_HEADER;
use chat_proto::chat::chat_service_server::ChatService;
use chat_proto::chat::*;
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::auth;
use super::observe::observe;
use crate::command::{Applied, Command, Rejection, now_ms};
use crate::delivery_acks::DeliveryAcks;
use crate::error::{Error, Result};
use crate::limits::LimitsConfig;
use crate::limits::hashing::Hashing;
use crate::limits::logins::LoginThrottle;
use crate::limits::subscriptions::Subscriptions;
use crate::metrics::Metrics;
use crate::node::{ChatNode, Consistency};
use crate::store::query::{self, MessageView, Session};
use crate::validate;

/// Subscribe reads the backlog from the DB in pages of this many messages.
const BACKLOG_PAGE: usize = 256;

pub struct ChatServiceImpl {
    node: Arc<ChatNode>,
    metrics: Arc<Metrics>,
    hashing: Hashing,
    logins: LoginThrottle,
    subscriptions: Arc<Subscriptions>,
    /// Checked against when a login names no account, so that it costs as
    /// much as one that does (no telling accounts apart by timing).
    decoy_hash: String,
    session_ttl: Duration,
    max_sessions: u32,
    /// Sessions whose renewal this node has proposed and not seen applied:
    /// one renewal at a time per session. A std Mutex, never held across an await.
    renewing: Arc<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>>,
    /// Delivery receipts this node's streams and reads produce, batched.
    acks: Arc<DeliveryAcks>,
}

impl ChatServiceImpl {
    pub fn new(node: Arc<ChatNode>, metrics: Arc<Metrics>, limits: &LimitsConfig, acks: Arc<DeliveryAcks>) -> Self {
        Self {
            node,
            metrics,
            hashing: Hashing::new(limits.hashing_concurrency, limits.hashing_queue),
            logins: LoginThrottle::new(limits.login_free_failures, limits.login_max_delay),
            subscriptions: Subscriptions::new(limits.subscribes_per_session, limits.subscribes_per_node),
            decoy_hash: auth::hash_password("decoy password, never a real one")
                .expect("argon2 hashes with its defaults"),
            session_ttl: limits.session_ttl,
            max_sessions: limits.max_sessions,
            renewing: Arc::default(),
            acks,
        }
    }

    /// Checks the session of `token` as this node knows it and keeps it alive
    /// (for writes): an expired one is refused here (apply has no clock to
    /// tell); a session this node has not seen yet is left for apply to judge.
    fn touch(&self, token: &[u8; 32]) -> Result<()> {
        let Some(session) = query::session(self.node.db(), token)? else { return Ok(()) };
        if session.expires_at_ms <= now_ms() {
            return Err(Error::Rejected(Rejection::InvalidSession));
        }
        self.renew_if_due(token, &session);
        Ok(())
    }

    /// Renews a live `session` in the background once less than half its
    /// lifetime is left (one renewal at a time per session).
    fn renew_if_due(&self, token: &[u8; 32], session: &Session) {
        let now = now_ms();
        let ttl = i64::try_from(self.session_ttl.as_millis()).unwrap_or(i64::MAX);
        if session.expires_at_ms - now < ttl / 2 && self.lock_renewing().insert(*token) {
            let (node, renewing, token) = (self.node.clone(), self.renewing.clone(), *token);
            tokio::spawn(async move {
                let renew = Command::RenewSession { token_hash: token, expires_at_ms: now.saturating_add(ttl) };
                if let Err(e) = node.write(renew).await {
                    tracing::debug!(error = %e, "session renewal failed; the next use retries");
                }
                renewing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&token);
            });
        }
    }

    /// The user of the live session of `token`, renewed if due.
    fn session_user(&self, token: &[u8; 32]) -> Result<String> {
        let session = query::live_session(self.node.db(), token, now_ms())??;
        self.renew_if_due(token, &session);
        Ok(session.username)
    }

    fn lock_renewing(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<[u8; 32]>> {
        self.renewing.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Commits a command and turns a rejection into an error. Returns the
    /// outcome and the log index it was committed at.
    async fn commit(&self, cmd: Command) -> Result<(Applied, u64)> {
        let written = self.node.write(cmd).await?;
        Ok((written.result?, written.index))
    }

    /// Passes the read barrier, then resolves the session of `token` (read
    /// from the request before anything else). The read's index is taken
    /// after its query ([`ChatServiceImpl::read_index`]).
    async fn reader(&self, token: &[u8; 32], consistency: Consistency) -> Result<String> {
        self.node.read_barrier(consistency).await?;
        self.session_user(token)
    }

    /// The `chat-index` of a read: taken after the query, from the state
    /// itself ([`query::applied_through`]), so never below what it showed.
    fn read_index(&self) -> Result<u64> {
        Ok(query::applied_through(self.node.db())?)
    }

    /// A write on behalf of the session of `token`.
    async fn commit_for(&self, token: &[u8; 32], cmd: Command) -> Result<(Applied, u64)> {
        self.touch(token)?;
        self.commit(cmd).await
    }
}

/// A read's consistency from its request fields, validated.
fn consistency_of(value: i32, min_index: u64, max_staleness_ms: u32) -> Result<Consistency> {
    let level = ReadConsistency::try_from(value)
        .map_err(|_| Error::invalid(format!("consistency: {value} is not a ReadConsistency")))?;
    if max_staleness_ms != 0 && level != ReadConsistency::Stale {
        return Err(Error::invalid("max_staleness_ms: only STALE reads are bounded by staleness"));
    }
    Ok(match level {
        // A linearizable read reflects every index the client has seen anyway.
        ReadConsistency::Linearizable => Consistency::Linearizable,
        ReadConsistency::Session => Consistency::Session { min_index },
        ReadConsistency::Stale => Consistency::Stale {
            max_staleness: (max_staleness_ms > 0).then(|| Duration::from_millis(u64::from(max_staleness_ms))),
        },
    })
}

/// `message` as a response carrying `index` in its `chat-index` header.
fn indexed<T>(message: T, index: u64) -> Response<T> {
    let mut response = Response::new(message);
    response.metadata_mut().insert(INDEX_HEADER, index.into());
    response
}

impl From<MessageView> for Message {
    fn from(v: MessageView) -> Self {
        Message {
            id: v.id,
            from: v.message.from,
            to: v.message.to,
            body: v.message.body,
            sent_at_ms: v.message.sent_at_ms,
            read: v.read,
            delivered: v.delivered,
        }
    }
}

fn count(applied: Applied) -> u64 {
    match applied {
        Applied::Count(n) => n,
        _ => 0,
    }
}

type MessageStream = Pin<Box<dyn Stream<Item = Result<Message, Status>> + Send>>;

#[tonic::async_trait]
impl ChatService for ChatServiceImpl {
    #[tracing::instrument(skip_all, fields(username = %request.get_ref().username))]
    async fn create_account(
        &self,
        request: Request<CreateAccountRequest>,
    ) -> Result<Response<CreateAccountResponse>, Status> {
        observe(&self.metrics, "CreateAccount", async {
            let CreateAccountRequest { username, password } = request.into_inner();
            let username = validate::canonical_username("username", &username)?;
            validate::password(&password)?;
            let password_hash = self.hashing.run(move || auth::hash_password(&password)).await??;
            let (_, index) =
                self.commit(Command::CreateAccount { username, password_hash, created_at_ms: now_ms() }).await?;
            Ok(indexed(CreateAccountResponse {}, index))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(username = %request.get_ref().username))]
    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<LoginResponse>, Status> {
        observe(&self.metrics, "Login", async {
            let LoginRequest { username, password } = request.into_inner();
            let username = validate::canonical_username("username", &username)?;
            validate::password_length(&password)?;
            self.logins.check(&username, std::time::Instant::now())?;
            // Queue for the hash first: a caller refused here costs nothing more.
            let place = self.hashing.enter()?;
            self.node.read_barrier(Consistency::Linearizable).await?;
            // An unknown user's login checks the decoy hash: same work, same answer.
            let account = query::account(self.node.db(), &username)?;
            let known = account.is_some();
            let phc = account.map_or_else(|| self.decoy_hash.clone(), |a| a.password_hash);
            let matches = place.run(move || auth::verify_password(&password, &phc)).await?;
            if !(known && matches) {
                let locked = self.logins.failed(&username, std::time::Instant::now());
                tracing::info!(%username, locked_for = ?locked, "failed login");
                return Err(Error::Unauthenticated("wrong username or password".into()));
            }
            self.logins.succeeded(&username);
            let (token, token_hash) = auth::new_token();
            let now = now_ms();
            let ttl = i64::try_from(self.session_ttl.as_millis()).unwrap_or(i64::MAX);
            let (_, index) = self
                .commit(Command::OpenSession {
                    username: username.clone(),
                    token_hash,
                    created_at_ms: now,
                    expires_at_ms: now.saturating_add(ttl),
                    max_sessions: self.max_sessions,
                })
                .await?;
            Ok(indexed(LoginResponse { token, username }, index))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn logout(&self, request: Request<LogoutRequest>) -> Result<Response<LogoutResponse>, Status> {
        observe(&self.metrics, "Logout", async {
            let token_hash = auth::token_hash(&request)?;
            let (_, index) = self.commit(Command::CloseSession { token_hash }).await?;
            Ok(indexed(LogoutResponse {}, index))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_account(
        &self,
        request: Request<DeleteAccountRequest>,
    ) -> Result<Response<DeleteAccountResponse>, Status> {
        observe(&self.metrics, "DeleteAccount", async {
            let token_hash = auth::token_hash(&request)?;
            let (applied, index) = self.commit_for(&token_hash, Command::DeleteAccount { token_hash }).await?;
            Ok(indexed(DeleteAccountResponse { messages_deleted: count(applied) }, index))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn list_accounts(
        &self,
        request: Request<ListAccountsRequest>,
    ) -> Result<Response<ListAccountsResponse>, Status> {
        observe(&self.metrics, "ListAccounts", async {
            let token = auth::token_hash(&request)?;
            let pattern = validate::glob(&request.get_ref().pattern)?;
            let limit = validate::page_size("page_size", request.get_ref().page_size, 100, 1000)?;
            let after = validate::page_token(&request.get_ref().page_token)?;
            let r = request.get_ref();
            self.reader(&token, consistency_of(r.consistency, r.min_index, r.max_staleness_ms)?).await?;
            let (usernames, more) = query::list_accounts(self.node.db(), &pattern, &after, limit)?;
            let index = self.read_index()?;
            let next_page_token = if more { usernames.last().cloned().unwrap_or_default() } else { String::new() };
            Ok(indexed(ListAccountsResponse { usernames, next_page_token }, index))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(to = %request.get_ref().to))]
    async fn send_message(
        &self,
        request: Request<SendMessageRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        observe(&self.metrics, "SendMessage", async {
            let token_hash = auth::token_hash(&request)?;
            let SendMessageRequest { to, body, request_id } = request.into_inner();
            let to = validate::canonical_username("to", &to)?;
            validate::body(&body)?;
            validate::request_id(&request_id)?;
            // Without a client id, mint one: our own retries across a leader change stay exactly-once.
            let request_id = if request_id.is_empty() { uuid::Uuid::new_v4().to_string() } else { request_id };
            let cmd = Command::SendMessage { token_hash, to, body, sent_at_ms: now_ms(), request_id };
            match self.commit_for(&token_hash, cmd).await? {
                (Applied::Sent { id, sent_at_ms }, index) => Ok(indexed(SendMessageResponse { id, sent_at_ms }, index)),
                (other, _) => Err(Error::Internal(format!("unexpected result of SendMessage: {other:?}"))),
            }
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(with = %request.get_ref().with))]
    async fn read_conversation(
        &self,
        request: Request<ReadConversationRequest>,
    ) -> Result<Response<ReadConversationResponse>, Status> {
        observe(&self.metrics, "ReadConversation", async {
            let token = auth::token_hash(&request)?;
            let r = request.get_ref();
            let with = validate::canonical_username("with", &r.with)?;
            let limit = validate::page_size("limit", r.limit, 50, 1000)?;
            let user = self.reader(&token, consistency_of(r.consistency, r.min_index, r.max_staleness_ms)?).await?;
            let views = query::read_conversation(self.node.db(), &user, &with, r.before_id, limit)?;
            let index = self.read_index()?;
            // The recipient has now seen these: delivered.
            if let Some(newest) = views.iter().filter(|v| v.message.to == user && !v.delivered).map(|v| v.id).max() {
                self.acks.note(&user, newest);
            }
            Ok(indexed(ReadConversationResponse { messages: views.into_iter().map(Message::from).collect() }, index))
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(with = %request.get_ref().with))]
    async fn mark_read(&self, request: Request<MarkReadRequest>) -> Result<Response<MarkReadResponse>, Status> {
        observe(&self.metrics, "MarkRead", async {
            let token_hash = auth::token_hash(&request)?;
            let MarkReadRequest { with, up_to_id } = request.into_inner();
            let with = validate::canonical_username("with", &with)?;
            let (applied, index) =
                self.commit_for(&token_hash, Command::MarkRead { token_hash, with, up_to_id }).await?;
            Ok(indexed(MarkReadResponse { marked: count(applied) }, index))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn delete_messages(
        &self,
        request: Request<DeleteMessagesRequest>,
    ) -> Result<Response<DeleteMessagesResponse>, Status> {
        observe(&self.metrics, "DeleteMessages", async {
            let token_hash = auth::token_hash(&request)?;
            let ids = request.into_inner().ids;
            validate::delete_ids(&ids)?;
            if ids.contains(&0) {
                return Err(Error::Rejected(Rejection::NoSuchMessage(0)));
            }
            let (applied, index) = self.commit_for(&token_hash, Command::DeleteMessages { token_hash, ids }).await?;
            Ok(indexed(DeleteMessagesResponse { deleted: count(applied) }, index))
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn list_conversations(
        &self,
        request: Request<ListConversationsRequest>,
    ) -> Result<Response<ListConversationsResponse>, Status> {
        observe(&self.metrics, "ListConversations", async {
            let token = auth::token_hash(&request)?;
            let r = request.get_ref();
            let user = self.reader(&token, consistency_of(r.consistency, r.min_index, r.max_staleness_ms)?).await?;
            let conversations = query::list_conversations(self.node.db(), &user)?
                .into_iter()
                .map(|c| Conversation { partner: c.partner, unread: c.unread, last_message_id: c.last_message_id })
                .collect();
            let index = self.read_index()?;
            Ok(indexed(ListConversationsResponse { conversations }, index))
        })
        .await
    }

    type SubscribeStream = MessageStream;

    /// Streams the caller's incoming messages after `after_id`: first the
    /// backlog from the DB, then live ones as they are applied on *this* node
    /// (any node serves it, followers included). The live channel is joined
    /// before the backlog is read, and ids only grow, so nothing falls between
    /// the two and nothing is sent twice.
    #[tracing::instrument(skip_all)]
    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        observe(&self.metrics, "Subscribe", async {
            let token = auth::token_hash(&request)?;
            let place = self.subscriptions.open(token)?;
            // With the client's index: the backlog starts from state it has seen
            // (refused, as a SESSION read is, if this node cannot reach it).
            // Without: best effort — a follower cut off from the leader still
            // streams what it has.
            let min_index = request.get_ref().min_index;
            if min_index > 0 {
                self.node.read_barrier(Consistency::Session { min_index }).await?;
            } else if let Err(e) = self.node.read_barrier(Consistency::Linearizable).await {
                tracing::debug!(error = %e, "subscribe without read barrier");
            }
            let user = self.session_user(&token)?;
            let mut live = self.node.state().subscribe();
            let db = self.node.db().clone();
            let acks = self.acks.clone();
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Message, Status>>(BACKLOG_PAGE);
            let mut last = request.into_inner().after_id;
            tokio::spawn(async move {
                // Held for as long as the stream is served.
                let _place = place;
                // A stream lives no longer than its session: checked before each
                // delivery, so a logout or account deletion ends it.
                let session_ended =
                    || !matches!(query::session_user(&db, &token, now_ms()), Ok(Ok(ref u)) if *u == user);
                let unauthenticated = || Status::unauthenticated("session ended (logged out or account deleted)");
                'backlog: loop {
                    // Catch up from the DB until it has nothing newer.
                    loop {
                        if session_ended() {
                            let _ = tx.send(Err(unauthenticated())).await;
                            return;
                        }
                        let page = match query::inbox_after(&db, &user, last, BACKLOG_PAGE) {
                            Ok(page) => page,
                            Err(e) => {
                                let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                                return;
                            }
                        };
                        let full = page.len() == BACKLOG_PAGE;
                        for mut view in page {
                            last = view.id;
                            // Sent on the recipient's own stream: delivered by this send.
                            view.delivered = true;
                            if tx.send(Ok(view.into())).await.is_err() {
                                return;
                            }
                            acks.note(&user, last);
                        }
                        if !full {
                            break;
                        }
                    }
                    // Then follow the live feed.
                    loop {
                        let event = tokio::select! {
                            event = live.recv() => event,
                            _ = tx.closed() => return,
                        };
                        match event {
                            Ok(d) if d.message.to == user && d.id > last => {
                                if session_ended() {
                                    let _ = tx.send(Err(unauthenticated())).await;
                                    return;
                                }
                                last = d.id;
                                // Sent on the recipient's own stream: delivered by this very send.
                                let view =
                                    MessageView { id: d.id, message: d.message.clone(), read: false, delivered: true };
                                if tx.send(Ok(view.into())).await.is_err() {
                                    return;
                                }
                                acks.note(&user, last);
                            }
                            Ok(_) => {}
                            // Fell behind the live feed: the DB has everything, resume from it.
                            Err(RecvError::Lagged(_)) => continue 'backlog,
                            Err(RecvError::Closed) => return,
                        }
                    }
                }
            });
            Ok(Response::new(Box::pin(ReceiverStream::new(rx)) as MessageStream))
        })
        .await
    }
}
