//! What the Raft log carries: [`Command`]s, fully prepared before they are proposed.
//!
//! Everything non-deterministic — password hashes, session tokens, timestamps —
//! is computed by the node that accepts the request, *before* proposing, so every
//! replica applying the same entry reaches the same state. Checks that depend on
//! state (does the recipient exist? is the session valid?) happen at apply time,
//! where they are linearizable, and come back as a [`CommandResult`].
//!
//! A log entry carries a [`Batch`] of commands (see `proposer`): applied in
//! order, each seeing the ones before it, with one result each.

use serde::{Deserialize, Serialize};

/// A state change of the chat state machine. Sessions are named by the SHA-256
/// of their token, so neither the log nor the database ever holds a usable token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateAccount {
        username: String,
        /// argon2 PHC string; the plaintext password never enters the log.
        password_hash: String,
        created_at_ms: i64,
    },
    OpenSession {
        username: String,
        token_hash: [u8; 32],
        created_at_ms: i64,
        expires_at_ms: i64,
        /// The most sessions the account may hold: opening one more ends the oldest.
        max_sessions: u32,
    },
    /// Moves a live session's expiry later (a session in use stays valid).
    RenewSession {
        token_hash: [u8; 32],
        expires_at_ms: i64,
    },
    /// Housekeeping the leader proposes now and then: ends sessions expired
    /// at `now_ms` and forgets de-duplication records made before `requests_before_ms`.
    Expire {
        now_ms: i64,
        requests_before_ms: i64,
    },
    CloseSession {
        token_hash: [u8; 32],
    },
    DeleteAccount {
        token_hash: [u8; 32],
    },
    SendMessage {
        token_hash: [u8; 32],
        to: String,
        body: String,
        sent_at_ms: i64,
        /// Client-chosen de-duplication key; empty means "no de-duplication".
        request_id: String,
    },
    MarkRead {
        token_hash: [u8; 32],
        with: String,
        /// 0 means every message so far.
        up_to_id: u64,
    },
    DeleteMessages {
        token_hash: [u8; 32],
        ids: Vec<u64>,
    },
    /// Delivery receipts a node collected (its Subscribe streams sent these
    /// users their messages up to these ids, or they read them), many in one
    /// entry: never a write per message per stream.
    MarkDelivered {
        acks: Vec<(String, u64)>,
    },
}

/// The most receipts one [`Command::MarkDelivered`] carries.
pub const MAX_DELIVERY_ACKS: usize = 1000;

/// The accepting node's clock, as commands carry it (Unix ms).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One Raft entry's payload: commands proposed together, applied in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch(pub Vec<Command>);

impl Command {
    /// Roughly how many bytes this command takes in a log entry; the proposer
    /// caps a batch by it, so no entry outgrows what one Raft RPC may carry.
    pub fn approx_size(&self) -> usize {
        const FIXED: usize = 64;
        FIXED
            + match self {
                Command::CreateAccount { username, password_hash, .. } => username.len() + password_hash.len(),
                Command::OpenSession { username, .. } => username.len(),
                Command::CloseSession { .. }
                | Command::DeleteAccount { .. }
                | Command::RenewSession { .. }
                | Command::Expire { .. } => 0,
                Command::SendMessage { to, body, request_id, .. } => to.len() + body.len() + request_id.len(),
                Command::MarkRead { with, .. } => with.len(),
                Command::DeleteMessages { ids, .. } => 8 * ids.len(),
                Command::MarkDelivered { acks } => acks.iter().map(|(user, _)| user.len() + 8).sum(),
            }
    }

    /// The public API's input rules, for a command from any source: checked
    /// when a follower forwards it (before it is proposed) and again when it is
    /// applied, so neither a peer, nor a bug, nor an old log can commit state
    /// the API would have refused (a username with a NUL, an oversized body…).
    ///
    /// # Errors
    /// `InvalidArgument` naming the field.
    pub fn check(&self) -> crate::error::Result<()> {
        use crate::validate;
        match self {
            Command::CreateAccount { username, password_hash, .. } => {
                validate::stored_username("username", username)?;
                validate::password_hash(password_hash)
            }
            Command::OpenSession { username, max_sessions, .. } => {
                validate::stored_username("username", username)?;
                if *max_sessions == 0 {
                    return Err(crate::error::Error::invalid("max_sessions must be at least 1"));
                }
                Ok(())
            }
            Command::CloseSession { .. }
            | Command::DeleteAccount { .. }
            | Command::RenewSession { .. }
            | Command::Expire { .. } => Ok(()),
            Command::SendMessage { to, body, request_id, .. } => {
                validate::stored_username("to", to)?;
                validate::body(body)?;
                validate::request_id(request_id)
            }
            Command::MarkRead { with, .. } => validate::stored_username("with", with),
            Command::DeleteMessages { ids, .. } => validate::delete_ids(ids),
            Command::MarkDelivered { acks } => {
                if acks.len() > MAX_DELIVERY_ACKS {
                    return Err(crate::error::Error::invalid(format!(
                        "acks: {} receipts, at most {MAX_DELIVERY_ACKS} per command",
                        acks.len()
                    )));
                }
                acks.iter().try_for_each(|(user, _)| validate::stored_username("acks.user", user))
            }
        }
    }

    /// Whether committing this command twice has the same effect as once, so a
    /// forward that failed ambiguously (did the leader commit it?) may be retried.
    pub fn is_idempotent(&self) -> bool {
        match self {
            // De-duplicated by request id; the node fills one in when the client gave none.
            Command::SendMessage { request_id, .. } => !request_id.is_empty(),
            Command::OpenSession { .. }
            | Command::MarkRead { .. }
            | Command::RenewSession { .. }
            | Command::Expire { .. }
            | Command::MarkDelivered { .. } => true,
            // A retry of these reports an error (exists / not found) after a first success.
            Command::CreateAccount { .. }
            | Command::CloseSession { .. }
            | Command::DeleteAccount { .. }
            | Command::DeleteMessages { .. } => false,
        }
    }

    /// Short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::CreateAccount { .. } => "create_account",
            Command::OpenSession { .. } => "open_session",
            Command::CloseSession { .. } => "close_session",
            Command::RenewSession { .. } => "renew_session",
            Command::Expire { .. } => "expire",
            Command::DeleteAccount { .. } => "delete_account",
            Command::SendMessage { .. } => "send_message",
            Command::MarkRead { .. } => "mark_read",
            Command::DeleteMessages { .. } => "delete_messages",
            Command::MarkDelivered { .. } => "mark_delivered",
        }
    }
}

/// The outcome of applying one [`Command`]. A rejected command is still a
/// committed log entry: rejection is deterministic, so it is part of the state.
pub type CommandResult = Result<Applied, Rejection>;

/// A committed and applied command: its outcome, and the log index of the
/// entry that carried it — the `chat-index` a client sends back with SESSION
/// reads to see its own write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    pub result: CommandResult,
    pub index: u64,
}

/// What a successfully applied command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// Blank and membership entries, and commands with nothing to report.
    Done,
    /// A message id and its timestamp (SendMessage; also returned for a de-duplicated retry).
    Sent { id: u64, sent_at_ms: i64 },
    /// How many items a MarkRead / DeleteMessages / DeleteAccount touched.
    Count(u64),
}

/// Why the state machine refused a command. Maps one-to-one onto gRPC codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("account {0:?} already exists")]
    AccountExists(String),
    #[error("account {0:?} does not exist")]
    NoSuchAccount(String),
    #[error("session is not valid (logged out, expired or unknown token)")]
    InvalidSession,
    #[error("message {0} does not exist")]
    NoSuchMessage(u64),
    #[error("message {0} belongs to other users")]
    NotYourMessage(u64),
    #[error("{0}")]
    Invalid(String),
}
