//! Read-only views of the chat state, and the value types stored in it.
//!
//! Every function reads the node's *applied* state. Whether that is fresh
//! enough (linearizable or stale) is decided before calling, by the caller
//! waiting for the right applied index.

use rocksdb::{Direction, IteratorMode, ReadOptions};
use serde::{Deserialize, Serialize};

use super::keys::{self, cf};
use super::{Db, View, decode, read_err};
use crate::command::Rejection;
use crate::typ::StorageError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub password_hash: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub username: String,
    pub created_at_ms: i64,
    /// Unix ms after which the session is no longer valid; renewed while it is used.
    pub expires_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub from: String,
    pub to: String,
    pub body: String,
    pub sent_at_ms: i64,
}

/// One user's side of a conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Messages from the partner with an id above `last_read_id`.
    pub unread: u64,
    /// Every message from the partner up to here counts as read.
    pub last_read_id: u64,
    /// Newest message of the conversation (either direction).
    pub last_message_id: u64,
}

/// A message as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    pub id: u64,
    pub message: StoredMessage,
    pub read: bool,
    /// A Subscribe stream of the recipient sent it, or the recipient read it.
    pub delivered: bool,
}

/// The index of the newest log entry whose effects the state may hold: the
/// last one applied, or one applied part-way (its first commands written).
/// Read *after* a query, it is at least the index of everything the query
/// saw — what a response's `chat-index` must be. Raft's metrics lag the
/// writes, so an index taken from them before the query could be lower than
/// the state read, and a session read elsewhere at that index could then
/// miss what this one showed.
///
/// # Errors
/// When the state cannot be read.
pub fn applied_through(db: &Db) -> Result<u64, StorageError> {
    let applied = db.get::<crate::typ::LogId>(cf::META, keys::meta::LAST_APPLIED)?.map_or(0, |l| l.index);
    let partial = db.get::<(u64, usize)>(cf::META, keys::meta::APPLYING)?.map_or(0, |(index, _)| index);
    Ok(applied.max(partial))
}

/// The highest message id delivered to `user` (0: none).
///
/// # Errors
/// When the state cannot be read.
pub fn delivered_up_to(db: &Db, user: &str) -> Result<u64, StorageError> {
    Ok(db.get::<u64>(cf::DELIVERED, user.as_bytes())?.unwrap_or(0))
}

/// A conversation as [`list_conversations`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationView {
    pub partner: String,
    pub unread: u64,
    pub last_message_id: u64,
}

pub fn account(db: &Db, username: &str) -> Result<Option<Account>, StorageError> {
    db.get(cf::ACCOUNTS, username.as_bytes())
}

/// The user a session token hash belongs to, if the session and its account still exist.
/// `now_ms` is the caller's clock: the node's for a read, the command's at apply.
pub fn session_user(db: &Db, token_hash: &[u8; 32], now_ms: i64) -> Result<Result<String, Rejection>, StorageError> {
    Ok(live_session(db, token_hash, now_ms)?.map(|s| s.username))
}

/// The session of a token hash, if it exists, has not expired at `now_ms`,
/// and its account still exists.
pub fn live_session(db: &Db, token_hash: &[u8; 32], now_ms: i64) -> Result<Result<Session, Rejection>, StorageError> {
    let Some(session) = db.get::<Session>(cf::SESSIONS, token_hash)? else {
        return Ok(Err(Rejection::InvalidSession));
    };
    if session.expires_at_ms <= now_ms || account(db, &session.username)?.is_none() {
        return Ok(Err(Rejection::InvalidSession));
    }
    Ok(Ok(session))
}

/// The session stored for a token hash, live or not.
pub fn session(db: &Db, token_hash: &[u8; 32]) -> Result<Option<Session>, StorageError> {
    db.get(cf::SESSIONS, token_hash)
}

/// Messages of the conversation between `a` and `b` with ids in `from..=to`, oldest first.
pub fn conversation_range(
    db: &Db,
    a: &str,
    b: &str,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, StoredMessage)>, StorageError> {
    let view = db.view();
    let mut out = Vec::new();
    for item in newest_first(&view, a, b, to) {
        let (id, message) = item?;
        if id < from {
            break;
        }
        out.push((id, message));
    }
    out.reverse();
    Ok(out)
}

/// The conversation of `a` and `b` as `view` sees it, newest first, from id
/// `at_most` down: one forward scan of its keys, each holding its message.
fn newest_first<'v>(
    view: &'v View<'_>,
    a: &str,
    b: &str,
    at_most: u64,
) -> impl Iterator<Item = Result<(u64, StoredMessage), StorageError>> + use<'v> {
    let mut opts = ReadOptions::default();
    opts.set_iterate_upper_bound(keys::prefix_end(&keys::conversation_prefix(a, b)));
    let start = keys::conversation(a, b, at_most);
    view.iterator(cf::CONVERSATIONS, opts, IteratorMode::From(&start, Direction::Forward)).map(|item| {
        let (key, value) = item.map_err(read_err)?;
        Ok((keys::conversation_id(&key), decode(&value)?))
    })
}

/// The newest `limit` messages between `user` and `with` with ids below `before_id`
/// (0: no bound), oldest first, with read flags.
pub fn read_conversation(
    db: &Db,
    user: &str,
    with: &str,
    before_id: u64,
    limit: usize,
) -> Result<Vec<MessageView>, StorageError> {
    let view = db.view();
    // Newest first, so the page is the scan's first `limit` entries.
    let at_most = before_id.checked_sub(1).unwrap_or(u64::MAX);
    let mut page = newest_first(&view, user, with, at_most).take(limit).collect::<Result<Vec<_>, _>>()?;
    page.reverse();
    let mine: Summary = view.get(cf::SUMMARIES, &keys::pair(user, with))?.unwrap_or_default();
    let theirs: Summary = view.get(cf::SUMMARIES, &keys::pair(with, user))?.unwrap_or_default();
    let to_me: u64 = view.get(cf::DELIVERED, user.as_bytes())?.unwrap_or(0);
    let to_them: u64 = view.get(cf::DELIVERED, with.as_bytes())?.unwrap_or(0);
    Ok(page
        .into_iter()
        .map(|(id, message)| {
            let (reader, delivered) = if message.to == user { (&mine, to_me) } else { (&theirs, to_them) };
            let read = id <= reader.last_read_id;
            MessageView { id, read, delivered: read || id <= delivered, message }
        })
        .collect())
}

/// Messages sent to `user` with ids above `after_id`, oldest first, at most `limit`.
pub fn inbox_after(db: &Db, user: &str, after_id: u64, limit: usize) -> Result<Vec<MessageView>, StorageError> {
    let view = db.view();
    let prefix = keys::user_prefix(user);
    let start = keys::inbox(user, after_id.saturating_add(1));
    let mut opts = ReadOptions::default();
    opts.set_iterate_upper_bound(keys::prefix_end(&prefix));
    let mut out = Vec::new();
    let delivered: u64 = view.get(cf::DELIVERED, user.as_bytes())?.unwrap_or(0);
    for item in view.iterator(cf::INBOX, opts, IteratorMode::From(&start, Direction::Forward)) {
        if out.len() == limit {
            break;
        }
        let id = keys::decode_index(&item.map_err(read_err)?.0);
        if let Some(message) = view.get::<StoredMessage>(cf::MESSAGES, &keys::index(id))? {
            let summary: Summary = view.get(cf::SUMMARIES, &keys::pair(user, &message.from))?.unwrap_or_default();
            let read = id <= summary.last_read_id;
            out.push(MessageView { id, read, delivered: read || id <= delivered, message });
        }
    }
    Ok(out)
}

/// `user`'s conversations, most recent first.
pub fn list_conversations(db: &Db, user: &str) -> Result<Vec<ConversationView>, StorageError> {
    let view = db.view();
    let prefix = keys::user_prefix(user);
    let mut opts = ReadOptions::default();
    opts.set_iterate_upper_bound(keys::prefix_end(&prefix));
    let mut out = Vec::new();
    for item in view.iterator(cf::SUMMARIES, opts, IteratorMode::From(&prefix, Direction::Forward)) {
        let (key, value) = item.map_err(read_err)?;
        let summary: Summary = decode(&value)?;
        out.push(ConversationView {
            partner: keys::partner_of(&key, user),
            unread: summary.unread,
            last_message_id: summary.last_message_id,
        });
    }
    out.sort_by(|a, b| b.last_message_id.cmp(&a.last_message_id).then_with(|| a.partner.cmp(&b.partner)));
    Ok(out)
}

/// Usernames matching `pattern`, in order, strictly after `after`, at most `limit`.
/// Returns the page and whether more may follow.
pub fn list_accounts(
    db: &Db,
    pattern: &glob::Pattern,
    after: &str,
    limit: usize,
) -> Result<(Vec<String>, bool), StorageError> {
    let view = db.view();
    let mut start = after.as_bytes().to_vec();
    if !after.is_empty() {
        start.push(0);
    }
    let mut names = Vec::new();
    for item in view.iterator(cf::ACCOUNTS, ReadOptions::default(), IteratorMode::From(&start, Direction::Forward)) {
        let (key, _) = item.map_err(read_err)?;
        let name = String::from_utf8_lossy(&key);
        if pattern.matches(&name) {
            if names.len() == limit {
                return Ok((names, true));
            }
            names.push(name.into_owned());
        }
    }
    Ok((names, false))
}

/// How many accounts and messages are stored (for metrics). Estimates, from RocksDB.
pub fn estimated_counts(db: &Db) -> (u64, u64) {
    let estimate = |name: &str| {
        db.raw().property_int_value_cf(db.cf(name), "rocksdb.estimate-num-keys").ok().flatten().unwrap_or(0)
    };
    (estimate(cf::ACCOUNTS), estimate(cf::MESSAGES))
}
