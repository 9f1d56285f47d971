//! The JSON shape of a message that scripts and the web console rely on:
//! `{id, from, to, body, sent_at, read, delivered}` (`kubectl chat read -o
//! json`, `kubectl chat live -o json`, the console's API). A contract.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::Message;

/// RFC 3339 UTC with milliseconds.
pub fn timestamp(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)).to_string()
}

#[derive(Debug, Serialize)]
pub struct MessageJson<'a> {
    pub id: u64,
    pub from: &'a str,
    pub to: &'a str,
    pub body: &'a str,
    pub sent_at: String,
    pub read: bool,
    /// It reached the recipient (their stream sent it, or they read it); `read` implies it.
    pub delivered: bool,
}

impl<'a> From<&'a Message> for MessageJson<'a> {
    fn from(m: &'a Message) -> Self {
        MessageJson {
            id: m.id,
            from: &m.from,
            to: &m.to,
            body: &m.body,
            sent_at: timestamp(m.sent_at_ms),
            read: m.read,
            delivered: m.delivered || m.read,
        }
    }
}
