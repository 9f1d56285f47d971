//! Applying one [`Command`] to the chat state: checks against the applied
//! state, then puts every change into the caller's `WriteBatch`.
//!
//! Runs on every replica for every committed command, so it must be
//! deterministic: it reads only the DB and the command (never the clock or a
//! random source). A message's id comes from a counter in the state itself:
//! 1, 2, 3… in commit order, which is what paging and Subscribe resume on.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rocksdb::WriteBatch;

use super::keys::{self, cf};
use super::query::{Account, Session, StoredMessage, Summary};
use super::{Db, encode};
use crate::command::{Applied, Command, CommandResult, Rejection};
use crate::typ::StorageError;

/// What an applied command tells live subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub id: u64,
    pub message: StoredMessage,
}

/// The outcome of [`apply`]: the client-visible result, plus a message to push
/// to subscribers once the batch is written.
pub struct Outcome {
    pub result: CommandResult,
    pub delivered: Option<Delivered>,
}

impl From<CommandResult> for Outcome {
    fn from(result: CommandResult) -> Self {
        Outcome { result, delivered: None }
    }
}

/// Applies `cmd` into `batch`, against the DB as it is (so the caller writes
/// each command's batch before applying the next).
///
/// # Errors
/// Only storage errors; a refused command is an `Ok` outcome holding a [`Rejection`].
pub fn apply(db: &Db, batch: &mut WriteBatch, cmd: &Command) -> Result<Outcome, StorageError> {
    // Whatever committed it, a command that breaks the API's rules changes nothing.
    if let Err(e) = cmd.check() {
        return Ok(Err(Rejection::Invalid(e.to_string())).into());
    }
    let mut tx = Tx { db, batch, pending_deletes: HashMap::new() };
    Ok(match cmd {
        Command::CreateAccount { username, password_hash, created_at_ms } => {
            if tx.db.get::<Account>(cf::ACCOUNTS, username.as_bytes())?.is_some() {
                return Ok(Err(Rejection::AccountExists(username.clone())).into());
            }
            let account = Account { password_hash: password_hash.clone(), created_at_ms: *created_at_ms };
            tx.put(cf::ACCOUNTS, username.as_bytes(), &account);
            Ok(Applied::Done).into()
        }
        Command::OpenSession { username, token_hash, created_at_ms, expires_at_ms, max_sessions } => {
            if tx.db.get::<Account>(cf::ACCOUNTS, username.as_bytes())?.is_none() {
                return Ok(Err(Rejection::NoSuchAccount(username.clone())).into());
            }
            let session =
                Session { username: username.clone(), created_at_ms: *created_at_ms, expires_at_ms: *expires_at_ms };
            tx.put(cf::SESSIONS, token_hash, &session);
            let key = keys::user_session(username, *created_at_ms, token_hash);
            tx.put(cf::USER_SESSIONS, &key, &());
            // Past the cap, the oldest sessions end (index order: oldest first).
            let others: Vec<Vec<u8>> = tx
                .prefix_keys(cf::USER_SESSIONS, &keys::user_prefix(username))?
                .into_iter()
                .filter(|k| *k != key)
                .collect();
            let over = (others.len() + 1).saturating_sub(*max_sessions as usize);
            for old in &others[..over.min(others.len())] {
                tx.batch.delete_cf(tx.db.cf(cf::USER_SESSIONS), old);
                if let Some(token) = keys::token_of(old) {
                    tx.batch.delete_cf(tx.db.cf(cf::SESSIONS), token);
                }
            }
            Ok(Applied::Done).into()
        }
        Command::RenewSession { token_hash, expires_at_ms } => match super::query::session(tx.db, token_hash)? {
            None => Err(Rejection::InvalidSession).into(),
            Some(mut session) => {
                if *expires_at_ms > session.expires_at_ms {
                    session.expires_at_ms = *expires_at_ms;
                    tx.put(cf::SESSIONS, token_hash, &session);
                }
                Ok(Applied::Done).into()
            }
        },
        Command::Expire { now_ms, requests_before_ms } => {
            Ok(Applied::Count(tx.expire(*now_ms, *requests_before_ms)?)).into()
        }
        Command::CloseSession { token_hash } => match super::query::session(tx.db, token_hash)? {
            None => Err(Rejection::InvalidSession).into(),
            Some(session) => {
                tx.batch.delete_cf(tx.db.cf(cf::SESSIONS), token_hash);
                let key = keys::user_session(&session.username, session.created_at_ms, token_hash);
                tx.batch.delete_cf(tx.db.cf(cf::USER_SESSIONS), key);
                Ok(Applied::Done).into()
            }
        },
        Command::DeleteAccount { token_hash } => match tx.user(token_hash)? {
            Err(r) => Err(r).into(),
            Ok(user) => Ok(Applied::Count(tx.delete_account(&user)?)).into(),
        },
        Command::SendMessage { token_hash, to, body, sent_at_ms, request_id } => {
            let from = match tx.user_at(token_hash, *sent_at_ms)? {
                Err(r) => return Ok(Err(r).into()),
                Ok(user) => user,
            };
            let request_key = keys::pair(&from, request_id);
            if !request_id.is_empty()
                && let Some(sent) = tx.db.get::<Applied>(cf::REQUESTS, &request_key)?
            {
                return Ok(Ok(sent).into());
            }
            if *to == from {
                // One conversation key for both sides would merge their summaries.
                return Ok(Err(Rejection::Invalid("to must name another user, not yourself".into())).into());
            }
            if tx.db.get::<Account>(cf::ACCOUNTS, to.as_bytes())?.is_none() {
                return Ok(Err(Rejection::NoSuchAccount(to.clone())).into());
            }
            let id = tx.db.get::<u64>(cf::META, keys::meta::NEXT_MESSAGE_ID)?.unwrap_or(1);
            tx.put(cf::META, keys::meta::NEXT_MESSAGE_ID, &(id + 1));
            let message =
                StoredMessage { from: from.clone(), to: to.clone(), body: body.clone(), sent_at_ms: *sent_at_ms };
            tx.put(cf::MESSAGES, &keys::index(id), &message);
            tx.put(cf::CONVERSATIONS, &keys::conversation(&from, to, id), &message);
            tx.put(cf::INBOX, &keys::inbox(to, id), &());
            let mut theirs = tx.summary(to, &from)?;
            theirs.unread += 1;
            theirs.last_message_id = id;
            tx.put(cf::SUMMARIES, &keys::pair(to, &from), &theirs);
            let mut mine = tx.summary(&from, to)?;
            mine.last_message_id = id;
            tx.put(cf::SUMMARIES, &keys::pair(&from, to), &mine);
            let sent = Applied::Sent { id, sent_at_ms: *sent_at_ms };
            if !request_id.is_empty() {
                tx.put(cf::REQUESTS, &request_key, &sent);
                tx.put(cf::REQUEST_TIMES, &keys::request_time(*sent_at_ms, &from, request_id), &());
            }
            Outcome { result: Ok(sent), delivered: Some(Delivered { id, message }) }
        }
        Command::MarkRead { token_hash, with, up_to_id } => {
            let user = match tx.user(token_hash)? {
                Err(r) => return Ok(Err(r).into()),
                Ok(user) => user,
            };
            let Some(mut summary) = tx.db.get::<Summary>(cf::SUMMARIES, &keys::pair(&user, with))? else {
                return Ok(Ok(Applied::Count(0)).into());
            };
            let up_to = if *up_to_id == 0 { summary.last_message_id } else { (*up_to_id).min(summary.last_message_id) };
            if up_to <= summary.last_read_id {
                return Ok(Ok(Applied::Count(0)).into());
            }
            let marked = super::query::conversation_range(tx.db, &user, with, summary.last_read_id + 1, up_to)?
                .into_iter()
                .filter(|(_, message)| message.to == user)
                .count() as u64;
            summary.unread = summary.unread.saturating_sub(marked);
            summary.last_read_id = up_to;
            tx.put(cf::SUMMARIES, &keys::pair(&user, with), &summary);
            Ok(Applied::Count(marked)).into()
        }
        Command::MarkDelivered { acks } => {
            // Never past the newest message: a receipt cannot cover the future.
            let newest = tx.db.get::<u64>(cf::META, keys::meta::NEXT_MESSAGE_ID)?.unwrap_or(1).saturating_sub(1);
            // One receipt per user, the highest: the batch is not read back.
            let mut highest: BTreeMap<&str, u64> = BTreeMap::new();
            for (user, id) in acks {
                let entry = highest.entry(user.as_str()).or_default();
                *entry = (*entry).max(*id);
            }
            let mut moved = 0;
            for (user, id) in highest {
                if tx.db.get::<Account>(cf::ACCOUNTS, user.as_bytes())?.is_none() {
                    continue;
                }
                let id = id.min(newest);
                let current = tx.db.get::<u64>(cf::DELIVERED, user.as_bytes())?.unwrap_or(0);
                if id > current {
                    tx.put(cf::DELIVERED, user.as_bytes(), &id);
                    moved += 1;
                }
            }
            Ok(Applied::Count(moved)).into()
        }
        Command::DeleteMessages { token_hash, ids } => {
            let user = match tx.user(token_hash)? {
                Err(r) => return Ok(Err(r).into()),
                Ok(user) => user,
            };
            // Check all, then delete all: a request either fully applies or changes nothing.
            let ids: BTreeSet<u64> = ids.iter().copied().collect();
            let mut doomed = Vec::with_capacity(ids.len());
            for id in ids {
                match tx.db.get::<StoredMessage>(cf::MESSAGES, &keys::index(id))? {
                    None => return Ok(Err(Rejection::NoSuchMessage(id)).into()),
                    Some(m) if m.from != user && m.to != user => return Ok(Err(Rejection::NotYourMessage(id)).into()),
                    Some(m) => doomed.push((id, m)),
                }
            }
            let count = doomed.len() as u64;
            for (id, message) in doomed {
                tx.delete_message(id, &message)?;
            }
            Ok(Applied::Count(count)).into()
        }
    })
}

/// The most sessions, and de-duplication records, one [`Command::Expire`] removes.
pub const EXPIRE_BATCH: usize = 10_000;

/// The batch being built, with the DB it is read against.
struct Tx<'a> {
    db: &'a Db,
    batch: &'a mut WriteBatch,
    /// Message ids deleted in this batch, by summary key: reads go to the DB,
    /// which does not see the batch yet.
    pending_deletes: HashMap<Vec<u8>, BTreeSet<u64>>,
}

impl Tx<'_> {
    fn put<T: serde::Serialize>(&mut self, cf: &str, key: &[u8], value: &T) {
        self.batch.put_cf(self.db.cf(cf), key, encode(value));
    }

    /// The user of a session that exists (its expiry was checked by the node
    /// that accepted the command, which had a clock; apply has none).
    fn user(&self, token_hash: &[u8; 32]) -> Result<Result<String, Rejection>, StorageError> {
        super::query::session_user(self.db, token_hash, i64::MIN)
    }

    /// The user of a session live at `at_ms` (the command's own timestamp).
    fn user_at(&self, token_hash: &[u8; 32], at_ms: i64) -> Result<Result<String, Rejection>, StorageError> {
        super::query::session_user(self.db, token_hash, at_ms)
    }

    /// Every key of `name` starting with `prefix`, in order.
    fn prefix_keys(&self, name: &str, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StorageError> {
        let mut out = Vec::new();
        for item in self.db.raw().prefix_iterator_cf(self.db.cf(name), prefix) {
            let (key, _) = item.map_err(super::read_err)?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push(key.to_vec());
        }
        Ok(out)
    }

    /// Ends sessions expired at `now_ms` and forgets de-duplication records
    /// made before `requests_before_ms`, at most [`EXPIRE_BATCH`] of each (the
    /// next sweep takes the rest). Returns how many records went.
    fn expire(&mut self, now_ms: i64, requests_before_ms: i64) -> Result<u64, StorageError> {
        let mut gone = 0u64;
        let mut sessions = 0;
        for item in self.db.raw().iterator_cf(self.db.cf(cf::SESSIONS), rocksdb::IteratorMode::Start) {
            let (token, value) = item.map_err(super::read_err)?;
            let session: Session = super::decode(&value)?;
            if session.expires_at_ms <= now_ms {
                self.batch.delete_cf(self.db.cf(cf::SESSIONS), &token);
                if let Ok(token) = <[u8; 32]>::try_from(token.as_ref()) {
                    let key = keys::user_session(&session.username, session.created_at_ms, &token);
                    self.batch.delete_cf(self.db.cf(cf::USER_SESSIONS), key);
                }
                sessions += 1;
                if sessions == EXPIRE_BATCH {
                    break;
                }
            }
        }
        gone += sessions as u64;
        let end = keys::time(requests_before_ms);
        for item in
            self.db.raw().iterator_cf(self.db.cf(cf::REQUEST_TIMES), rocksdb::IteratorMode::Start).take(EXPIRE_BATCH)
        {
            let (key, _) = item.map_err(super::read_err)?;
            if key[..] >= end[..] {
                break;
            }
            self.batch.delete_cf(self.db.cf(cf::REQUEST_TIMES), &key);
            self.batch.delete_cf(self.db.cf(cf::REQUESTS), &key[8..]);
            gone += 1;
        }
        Ok(gone)
    }

    fn summary(&self, user: &str, partner: &str) -> Result<Summary, StorageError> {
        Ok(self.db.get(cf::SUMMARIES, &keys::pair(user, partner))?.unwrap_or_default())
    }

    /// Removes one message and its index entries; keeps the recipient's unread count true.
    fn delete_message(&mut self, id: u64, m: &StoredMessage) -> Result<(), StorageError> {
        self.batch.delete_cf(self.db.cf(cf::MESSAGES), keys::index(id));
        self.batch.delete_cf(self.db.cf(cf::CONVERSATIONS), keys::conversation(&m.from, &m.to, id));
        self.batch.delete_cf(self.db.cf(cf::INBOX), keys::inbox(&m.to, id));
        self.recount_unread(&m.to, &m.from, id)
    }

    /// Recomputes `user`'s unread count with `partner`, ignoring `deleted`.
    /// Counting (rather than decrementing) stays right when several messages of
    /// one conversation are deleted in one batch, since reads do not see the batch.
    fn recount_unread(&mut self, user: &str, partner: &str, deleted: u64) -> Result<(), StorageError> {
        let key = keys::pair(user, partner);
        let Some(mut summary) = self.db.get::<Summary>(cf::SUMMARIES, &key)? else {
            return Ok(());
        };
        let pending = self.pending_deletes.entry(key.clone()).or_default();
        pending.insert(deleted);
        let pending = pending.clone();
        let unread = super::query::conversation_range(self.db, user, partner, summary.last_read_id + 1, u64::MAX)?
            .into_iter()
            .filter(|(id, m)| m.to == user && !pending.contains(id))
            .count() as u64;
        summary.unread = unread;
        self.put(cf::SUMMARIES, &key, &summary);
        Ok(())
    }

    /// Deletes every trace of `user`: account, sessions, de-duplication records,
    /// conversation summaries (theirs and their partners') and every message
    /// they sent or received. Returns how many messages went.
    fn delete_account(&mut self, user: &str) -> Result<u64, StorageError> {
        let prefix = keys::user_prefix(user);
        let mut partners = Vec::new();
        for item in self.db.raw().prefix_iterator_cf(self.db.cf(cf::SUMMARIES), &prefix) {
            let (key, _) = item.map_err(super::read_err)?;
            if !key.starts_with(&prefix) {
                break;
            }
            partners.push(keys::partner_of(&key, user));
        }
        let mut deleted = 0;
        for partner in &partners {
            for (id, m) in super::query::conversation_range(self.db, user, partner, 0, u64::MAX)? {
                self.batch.delete_cf(self.db.cf(cf::MESSAGES), keys::index(id));
                self.batch.delete_cf(self.db.cf(cf::CONVERSATIONS), keys::conversation(&m.from, &m.to, id));
                self.batch.delete_cf(self.db.cf(cf::INBOX), keys::inbox(&m.to, id));
                deleted += 1;
            }
            self.batch.delete_cf(self.db.cf(cf::SUMMARIES), keys::pair(partner, user));
        }
        self.batch.delete_cf(self.db.cf(cf::DELIVERED), user.as_bytes());
        let end = keys::prefix_end(&prefix);
        for name in [cf::SUMMARIES, cf::REQUESTS, cf::INBOX, cf::USER_SESSIONS] {
            self.batch.delete_range_cf(self.db.cf(name), &prefix, &end);
        }
        for item in self.db.raw().iterator_cf(self.db.cf(cf::SESSIONS), rocksdb::IteratorMode::Start) {
            let (key, value) = item.map_err(super::read_err)?;
            if super::decode::<Session>(&value)?.username == user {
                self.batch.delete_cf(self.db.cf(cf::SESSIONS), key);
            }
        }
        self.batch.delete_cf(self.db.cf(cf::ACCOUNTS), user.as_bytes());
        Ok(deleted)
    }
}
