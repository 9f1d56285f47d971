//! The record of every operation clients performed: what, by whom, on which
//! conversation, when it was invoked and when (if ever) it completed, and what
//! it returned. Bodies are interned to numbers so the checker compares
//! integers; a body read back that no client sent becomes [`PHANTOM`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use crate::checker::Operation;
use crate::model::{Input, Output, PHANTOM};

/// The two users of a conversation, in order.
pub type Conversation = (String, String);

pub fn conversation(a: &str, b: &str) -> Conversation {
    if a <= b { (a.to_string(), b.to_string()) } else { (b.to_string(), a.to_string()) }
}

#[derive(Debug, Clone)]
pub struct Record {
    pub client: usize,
    pub conversation: Conversation,
    pub op: Operation<Input, Output>,
}

/// Shared by every client task. A std Mutex: held only to push or look up.
pub struct History {
    start: Instant,
    records: Mutex<Vec<Record>>,
    bodies: Mutex<HashMap<String, u32>>,
}

impl Default for History {
    fn default() -> Self {
        Self { start: Instant::now(), records: Mutex::default(), bodies: Mutex::default() }
    }
}

impl History {
    /// Microseconds since the history began.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// A new body's number (bodies are unique strings chosen by the client).
    pub fn intern(&self, body: &str) -> u32 {
        let mut bodies = self.bodies.lock().unwrap_or_else(|p| p.into_inner());
        let n = bodies.len() as u32;
        *bodies.entry(body.to_string()).or_insert(n)
    }

    /// The number of a body read back, or [`PHANTOM`] if no client sent it.
    pub fn lookup(&self, body: &str) -> u32 {
        self.bodies.lock().unwrap_or_else(|p| p.into_inner()).get(body).copied().unwrap_or(PHANTOM)
    }

    pub fn push(&self, record: Record) {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).push(record);
    }

    pub fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Operations per conversation, the linearizability checker's unit
    /// (session reads left out: they promise less, see `session`).
    pub fn by_conversation(&self) -> BTreeMap<Conversation, Vec<Operation<Input, Output>>> {
        let mut out: BTreeMap<Conversation, Vec<_>> = BTreeMap::new();
        for r in self.records().into_iter().filter(|r| r.op.input != Input::SessionRead) {
            out.entry(r.conversation).or_default().push(r.op);
        }
        out
    }
}
