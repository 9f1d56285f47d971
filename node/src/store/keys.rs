//! Key encoding for every column family.
//!
//! Integers are big-endian so that RocksDB's bytewise order is numeric order;
//! usernames are separated by `\0`, which validation keeps out of names, so a
//! prefix of one user can never be the prefix of another.

/// Column family names. The log and the state machine share one DB (one WAL),
/// so a synced log append also makes every earlier state machine write durable.
pub mod cf {
    /// Raft log entries by index.
    pub const LOG: &str = "log";
    /// Raft's own small records: vote, committed, last purged log id.
    pub const RAFT: &str = "raft";
    /// State machine bookkeeping: last applied log id, membership, snapshot meta, id counter.
    pub const META: &str = "meta";
    /// username → Account.
    pub const ACCOUNTS: &str = "accounts";
    /// token hash → Session.
    pub const SESSIONS: &str = "sessions";
    /// message id → StoredMessage.
    pub const MESSAGES: &str = "messages";
    /// (low user, high user, !id) → StoredMessage : one conversation, newest
    /// first, each message a copy of its [`MESSAGES`] record, so the latest
    /// page is one forward scan with no lookups (see [`super::conversation`]).
    pub const CONVERSATIONS: &str = "conversations";
    /// (recipient, id) → () : what Subscribe streams.
    pub const INBOX: &str = "inbox";
    /// (user, partner) → ConversationSummary.
    pub const SUMMARIES: &str = "summaries";
    /// (sender, request id) → Sent result, for idempotent retries.
    pub const REQUESTS: &str = "requests";
    /// (user, created at, token hash) → () : one user's sessions, oldest first (the cap evicts from the front).
    pub const USER_SESSIONS: &str = "user_sessions";
    /// (sent at, sender, request id) → () : de-duplication records by age (the sweep expires from the front).
    pub const REQUEST_TIMES: &str = "request_times";
    /// username → the highest message id delivered to that user (a Subscribe
    /// stream sent it, or the user read it): every message to them up to it
    /// is delivered. Last in [`STATE`]: a snapshot names column families by
    /// position, so older snapshots read the same.
    pub const DELIVERED: &str = "delivered";

    /// Column families holding chat state: exactly what a snapshot carries.
    pub const STATE: [&str; 11] = [
        META,
        ACCOUNTS,
        SESSIONS,
        MESSAGES,
        CONVERSATIONS,
        INBOX,
        SUMMARIES,
        REQUESTS,
        USER_SESSIONS,
        REQUEST_TIMES,
        DELIVERED,
    ];
    /// Every column family of the DB: Raft's two, then the state's.
    pub const ALL: [&str; 2 + STATE.len()] = {
        let mut all = [""; 2 + STATE.len()];
        all[0] = LOG;
        all[1] = RAFT;
        let mut i = 0;
        while i < STATE.len() {
            all[2 + i] = STATE[i];
            i += 1;
        }
        all
    };
}

pub fn index(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// Decodes a big-endian u64 key (or key suffix).
///
/// # Panics
/// Never for keys this module wrote; callers pass the last 8 bytes of such keys.
pub fn decode_index(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[b.len() - 8..]);
    u64::from_be_bytes(a)
}

/// `user \0` : the prefix of everything keyed by one user.
pub fn user_prefix(user: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(user.len() + 1);
    k.extend_from_slice(user.as_bytes());
    k.push(0);
    k
}

/// `user \0 partner`.
pub fn pair(user: &str, partner: &str) -> Vec<u8> {
    let mut k = user_prefix(user);
    k.extend_from_slice(partner.as_bytes());
    k
}

/// The prefix of a conversation: both names in sorted order, so each conversation is stored once.
pub fn conversation_prefix(a: &str, b: &str) -> Vec<u8> {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut k = pair(lo, hi);
    k.push(0);
    k
}

/// `conversation_prefix` then the id inverted (`!id`, big-endian): a
/// conversation's newest message sorts first. Reading the latest page is then
/// a forward scan: RocksDB's reverse iteration searches the memtable's
/// skiplist again at every step (BENCHMARKS.md, "Read mix", has the profile
/// and what the change measured).
pub fn conversation(a: &str, b: &str, id: u64) -> Vec<u8> {
    let mut k = conversation_prefix(a, b);
    k.extend_from_slice(&index(!id));
    k
}

/// The message id at the end of a [`conversation`] key.
pub fn conversation_id(key: &[u8]) -> u64 {
    !decode_index(key)
}

pub fn inbox(user: &str, id: u64) -> Vec<u8> {
    let mut k = user_prefix(user);
    k.extend_from_slice(&index(id));
    k
}

/// A millisecond timestamp as a sortable key part (negative ones sort first, as 0).
pub fn time(ms: i64) -> [u8; 8] {
    index(u64::try_from(ms).unwrap_or(0))
}

/// `user \0 created_at token_hash`: one of the user's sessions.
pub fn user_session(user: &str, created_at_ms: i64, token_hash: &[u8; 32]) -> Vec<u8> {
    let mut k = user_prefix(user);
    k.extend_from_slice(&time(created_at_ms));
    k.extend_from_slice(token_hash);
    k
}

/// The token hash at the end of a [`user_session`] key.
pub fn token_of(user_session: &[u8]) -> Option<[u8; 32]> {
    user_session.len().checked_sub(32).and_then(|at| user_session[at..].try_into().ok())
}

/// `sent_at user \0 request_id`: when a de-duplication record was made.
pub fn request_time(sent_at_ms: i64, user: &str, request_id: &str) -> Vec<u8> {
    let mut k = time(sent_at_ms).to_vec();
    k.extend_from_slice(&pair(user, request_id));
    k
}

/// Splits `user \0 partner` back into the partner name.
pub fn partner_of(key: &[u8], user: &str) -> String {
    String::from_utf8_lossy(&key[user.len() + 1..]).into_owned()
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; 9]
}

pub mod meta {
    pub const LAST_APPLIED: &[u8] = b"last_applied";
    pub const MEMBERSHIP: &[u8] = b"membership";
    /// The id the next message gets.
    pub const NEXT_MESSAGE_ID: &[u8] = b"next_message_id";
    /// `(log index, position)` of the last command applied from an entry not
    /// yet fully applied (see the state machine's `apply`).
    pub const APPLYING: &[u8] = b"applying";
    /// The layout the state is stored in ([`crate::store::format`]).
    pub const STATE_FORMAT: &[u8] = b"state_format";
}

pub mod raft {
    pub const VOTE: &[u8] = b"vote";
    pub const COMMITTED: &[u8] = b"committed";
    pub const LAST_PURGED: &[u8] = b"last_purged";
    pub const SNAPSHOT_META: &[u8] = b"snapshot_meta";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_numerically() {
        assert!(index(255) < index(256));
        assert!(index(1) < index(u64::MAX));
        assert_eq!(decode_index(&index(123_456_789)), 123_456_789);
    }

    #[test]
    fn conversation_key_is_symmetric() {
        assert_eq!(conversation("bob", "alice", 7), conversation("alice", "bob", 7));
        assert_eq!(conversation_id(&conversation("bob", "alice", 7)), 7);
    }

    #[test]
    fn a_conversation_sorts_newest_first_inside_its_prefix() {
        assert!(conversation("a", "b", 9) < conversation("a", "b", 8));
        assert!(conversation("a", "b", u64::MAX) < conversation("a", "b", 0));
        let prefix = conversation_prefix("a", "b");
        for id in [0, 1, u64::MAX] {
            assert!(conversation("a", "b", id).starts_with(&prefix));
            assert!(conversation("a", "b", id) < prefix_end(&prefix));
        }
    }

    #[test]
    fn user_prefixes_do_not_overlap() {
        // "al" must not be a prefix of "alice"'s keys.
        assert!(!pair("alice", "x").starts_with(&user_prefix("al")));
        assert_eq!(partner_of(&pair("alice", "bob"), "alice"), "bob");
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        let p = user_prefix("ann");
        assert!(prefix_end(&p).as_slice() > pair("ann", "zzzz").as_slice());
        assert!(prefix_end(&p).as_slice() <= user_prefix("ann\u{1}").as_slice());
        assert_eq!(prefix_end(&[1, 0xff]), vec![2]);
    }
}
