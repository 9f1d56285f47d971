//! The clients: each acts as one user and, until told to stop, sends unique
//! messages, reads conversations (linearizable reads, and SESSION reads from
//! whichever member the client reaches) and deletes messages it has seen,
//! recording every operation in the [`History`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chat_client::{Client, ClientOptions, Error, ReadConsistency};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::checker::Operation;
use crate::history::{History, Record, conversation};
use crate::model::{Input, Output};

/// One client's time budget per operation, retries included: short, so that
/// operations caught by a fault end as "unknown" instead of hanging the run.
pub const OP_DEADLINE: Duration = Duration::from_secs(3);
/// The largest page a read asks for (the API's maximum).
pub const READ_LIMIT: u32 = 1000;
/// Conversations longer than this get trimmed by deletes.
const TRIM_ABOVE: usize = 300;

fn outcome(e: &Error) -> Output {
    match e {
        Error::Unavailable(_) => Output::Unknown,
        Error::Rejected(s) if s.code() == tonic::Code::NotFound => Output::NotFound,
        Error::Rejected(s) if s.code() == tonic::Code::Internal => Output::Unknown,
        _ => Output::Failed,
    }
}

/// Runs client `index` as `user` until `stop` turns true; returns how many operations it made.
#[allow(clippy::too_many_arguments)]
pub async fn client(
    index: usize,
    user: String,
    token: String,
    peers: Vec<String>,
    seeds: Vec<String>,
    security: chat_client::Security,
    seed: u64,
    history: Arc<History>,
    mut stop: watch::Receiver<bool>,
) -> usize {
    let options = ClientOptions { deadline: OP_DEADLINE, ..ClientOptions::new(security) };
    let client = Client::new(seeds, options).expect("seeds").with_token(token);
    let mut rng = StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    let mut n = 0;
    while !*stop.borrow_and_update() {
        let peer = peers[rng.random_range(0..peers.len())].clone();
        let conv = conversation(&user, &peer);
        // Keep conversations well under the 1000-message read limit, so every
        // read sees a whole conversation: trim long ones with bigger deletes.
        let known_len = seen.get(&peer).map_or(0, Vec::len);
        let roll: u32 = if known_len > TRIM_ABOVE { 95 } else { rng.random_range(0..100) };
        let invoked = history.now();
        let (input, output) = if roll < 55 {
            let body = format!("c{index}-{n}");
            let input = Input::Send { body: history.intern(&body) };
            let output = match client.send(&peer, &body).await {
                Ok(r) => Output::Sent { id: r.id },
                Err(e) => outcome(&e),
            };
            (input, output)
        } else if roll < 90 {
            let (input, consistency) = if roll < 75 {
                (Input::Read, ReadConsistency::Linearizable)
            } else {
                (Input::SessionRead, ReadConsistency::Session)
            };
            let output = match client.read(&peer, READ_LIMIT, 0, consistency).await {
                // A full page may be cut short: it says nothing certain about the conversation.
                Ok(messages) if messages.len() >= READ_LIMIT as usize => Output::Unknown,
                Ok(messages) => {
                    seen.insert(peer.clone(), messages.iter().map(|m| m.id).collect());
                    Output::Read(messages.iter().map(|m| (m.id, history.lookup(&m.body))).collect())
                }
                Err(e) => outcome(&e),
            };
            (input, output)
        } else {
            let known = seen.get(&peer).cloned().unwrap_or_default();
            if known.is_empty() {
                continue;
            }
            let batch = if known.len() > TRIM_ABOVE { 20 } else { 2 };
            let ids: Vec<u64> = (0..rng.random_range(1..=batch.min(known.len())))
                .map(|_| known[rng.random_range(0..known.len())])
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let output = match client.delete_messages(&ids).await {
                Ok(count) => Output::Deleted { count },
                Err(e) => outcome(&e),
            };
            (Input::Delete { ids }, output)
        };
        let completed = (output != Output::Unknown).then(|| history.now());
        history.push(Record { client: index, conversation: conv, op: Operation { input, output, invoked, completed } });
        n += 1;
    }
    n
}
