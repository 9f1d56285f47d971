//! Human tables and the JSON shapes scripts rely on.
//!
//! `read -o json`: an array of `{id, from, to, body, sent_at, read}`;
//! `status -o json`: `{leader_id, term, members: [{id, address, role, voter,
//! term, last_log_index, commit_index, applied_index, leader_since_ms}]}`
//! (`leader_since_ms`: when that member became leader, Unix ms, 0 unless it
//! leads). Both are a contract.

pub use chat_client::json::{MessageJson, timestamp};
use chat_client::{ClusterStatus, Message};
use serde::Serialize;

pub fn messages_json(messages: &[Message]) -> String {
    let items: Vec<MessageJson> = messages.iter().map(MessageJson::from).collect();
    serde_json::to_string_pretty(&items).expect("serializing plain structs")
}

/// One line per message: `#id  time  from → to  body  ✓✓` (unread marked
/// with *; the receipt: nothing sent, ✓ delivered, ✓✓ read). Text from the
/// cluster is [`printable`]: a message is one line, and no sender can move
/// the cursor, recolour or retitle the reader's terminal.
pub fn message_line(m: &Message) -> String {
    let unread = if m.read { " " } else { "*" };
    let receipt = receipt(m);
    let (from, to, body) = (printable(&m.from), printable(&m.to), printable(&m.body));
    format!("#{:<8}{unread} {}  {from} → {to}  {body}{receipt}", m.id, timestamp(m.sent_at_ms))
}

/// `  ✓✓` read, `  ✓` delivered, nothing when only sent.
pub fn receipt(m: &Message) -> &'static str {
    match (m.read, m.delivered) {
        (true, _) => "  ✓✓",
        (false, true) => "  ✓",
        (false, false) => "",
    }
}

/// `text` safe to print on a terminal: control characters (escape
/// sequences, newlines, carriage returns, backspaces) and the invisible
/// bidirectional overrides that reorder what is shown are written as Rust
/// escapes (`\u{1b}`, `\n`, `\u{202e}`) instead of acting.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let risky = |c: char| {
        c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(risky) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if risky(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[derive(Serialize)]
struct StatusJson<'a> {
    leader_id: Option<u64>,
    term: u64,
    members: Vec<MemberJson<'a>>,
}

#[derive(Serialize)]
struct MemberJson<'a> {
    id: u64,
    address: &'a str,
    role: &'a str,
    voter: bool,
    term: u64,
    last_log_index: u64,
    commit_index: u64,
    applied_index: u64,
    leader_since_ms: u64,
}

pub fn status_json(s: &ClusterStatus) -> String {
    let members = s
        .members
        .iter()
        .map(|m| MemberJson {
            id: m.id,
            address: &m.address,
            role: &m.role,
            voter: m.voter,
            term: m.term,
            last_log_index: m.last_log_index,
            commit_index: m.commit_index,
            applied_index: m.applied_index,
            leader_since_ms: m.leader_since_ms,
        })
        .collect();
    serde_json::to_string_pretty(&StatusJson { leader_id: s.leader_id, term: s.term, members })
        .expect("serializing plain structs")
}

pub fn status_table(s: &ClusterStatus) -> String {
    let leader_commit = s.members.iter().find(|m| Some(m.id) == s.leader_id).map(|m| m.commit_index);
    let mut out = format!(
        "{:<4} {:<28} {:<12} {:<6} {:>6} {:>10} {:>10} {:>10} {:>6}\n",
        "ID", "ADDRESS", "ROLE", "VOTER", "TERM", "LAST-LOG", "COMMIT", "APPLIED", "LAG"
    );
    for m in &s.members {
        let marker = if Some(m.id) == s.leader_id { "*" } else { " " };
        let lag = match (leader_commit, m.role.as_str()) {
            (_, "unreachable") | (None, _) => "-".to_string(),
            (Some(c), _) => c.saturating_sub(m.applied_index).to_string(),
        };
        out += &format!(
            "{:<4} {:<28} {:<12} {:<6} {:>6} {:>10} {:>10} {:>10} {:>6}\n",
            format!("{}{marker}", m.id),
            printable(&m.address),
            printable(&m.role),
            if m.voter { "yes" } else { "no" },
            m.term,
            m.last_log_index,
            m.commit_index,
            m.applied_index,
            lag
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_control_is_escaped_not_printed() {
        assert_eq!(printable("hello, world ✓"), "hello, world ✓");
        assert_eq!(printable("red \u{1b}[31mtext\u{1b}[0m"), "red \\u{1b}[31mtext\\u{1b}[0m");
        assert_eq!(printable("two\nlines\r"), "two\\nlines\\r");
        assert_eq!(printable("abc\u{202e}fed"), "abc\\u{202e}fed");
        let m = Message {
            id: 1,
            from: "a".into(),
            to: "b".into(),
            body: "\u{7}bell".into(),
            sent_at_ms: 0,
            read: false,
            delivered: false,
        };
        assert!(message_line(&m).ends_with("\\u{7}bell"), "{}", message_line(&m));
    }
    use chat_client::MemberStatus;

    #[test]
    fn read_json_has_the_contract_fields() {
        let m = Message {
            id: 7,
            from: "a".into(),
            to: "b".into(),
            body: "hi".into(),
            sent_at_ms: 1_700_000_000_123,
            read: true,
            delivered: false,
        };
        let v: serde_json::Value = serde_json::from_str(&messages_json(&[m])).unwrap();
        assert_eq!(v[0]["id"], 7);
        assert_eq!(v[0]["sent_at"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v[0]["read"], true);
        assert_eq!(v[0]["delivered"], true, "read implies delivered");
        let keys: Vec<&String> = v[0].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 7);
    }

    #[test]
    fn receipts_show_sent_delivered_read() {
        let m = |read, delivered| Message { id: 1, body: "hi".into(), read, delivered, ..Message::default() };
        assert!(!message_line(&m(false, false)).contains('✓'));
        assert!(message_line(&m(false, true)).ends_with("hi  ✓"));
        assert!(message_line(&m(true, true)).ends_with("hi  ✓✓"));
    }

    #[test]
    fn status_json_has_the_contract_fields() {
        let member = MemberStatus {
            id: 1,
            address: "a:1".into(),
            role: "leader".into(),
            voter: true,
            term: 3,
            last_log_index: 9,
            commit_index: 9,
            applied_index: 9,
            leader_since_ms: 1_700_000_000_000,
        };
        let s = ClusterStatus { leader_id: Some(1), term: 3, members: vec![member] };
        let v: serde_json::Value = serde_json::from_str(&status_json(&s)).unwrap();
        assert_eq!(v["leader_id"], 1);
        assert_eq!(v["members"][0]["voter"], true);
        assert_eq!(v["members"][0]["role"], "leader");
        assert_eq!(v["members"][0]["leader_since_ms"], 1_700_000_000_000u64);
        assert!(status_table(&s).contains("1*"));
    }
}
