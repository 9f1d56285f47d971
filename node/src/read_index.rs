//! Read-index rounds shared by concurrent linearizable reads.
//!
//! A leader confirms it still leads (a heartbeat round to a quorum) before
//! it serves a linearizable read. One round per read made every read cost
//! a message to every follower; a burst of reads (128 logins at once) queued
//! rounds behind each other on the replication streams until they timed out.
//! Here reads wait for the *next* round, and one round answers every read
//! that arrived before it started: the index it returns was read after each
//! of those reads began, which is all linearizability asks (etcd batches its
//! ReadIndex requests the same way).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::typ::Raft;

/// What a round yields: the index a read must wait for, or why there is none.
pub type RoundResult = Result<u64, String>;

/// Hands read-index requests to the task that runs the rounds.
#[derive(Debug)]
pub struct ReadIndexRounds {
    requests: mpsc::UnboundedSender<oneshot::Sender<RoundResult>>,
}

impl ReadIndexRounds {
    /// Starts the task running rounds on `raft`, each bounded by `round_timeout`.
    /// Must run inside a tokio runtime; the task ends when this is dropped.
    pub fn start(raft: Raft, round_timeout: Duration) -> Self {
        let (requests, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, queue, round_timeout));
        Self { requests }
    }

    /// The read index of a round that starts after this call.
    ///
    /// # Errors
    /// Why the round failed (not the leader, no quorum in time).
    pub async fn next(&self) -> RoundResult {
        let (tx, rx) = oneshot::channel();
        self.requests.send(tx).map_err(|_| "shutting down".to_string())?;
        rx.await.map_err(|_| "shutting down".to_string())?
    }
}

async fn run(raft: Raft, mut queue: mpsc::UnboundedReceiver<oneshot::Sender<RoundResult>>, round_timeout: Duration) {
    while let Some(first) = queue.recv().await {
        // Everyone already waiting arrived before this round starts.
        let mut waiting = vec![first];
        while let Ok(more) = queue.try_recv() {
            waiting.push(more);
        }
        waiting.retain(|w| !w.is_closed());
        if waiting.is_empty() {
            continue;
        }
        let result = match tokio::time::timeout(round_timeout, raft.ensure_linearizable()).await {
            Ok(Ok(log_id)) => Ok(log_id.map_or(0, |l| l.index)),
            Ok(Err(e)) => Err(format!("cannot serve a linearizable read here: {e}")),
            Err(_) => Err("leadership not confirmed in time: no quorum reachable".to_string()),
        };
        for w in waiting {
            let _ = w.send(result.clone());
        }
    }
}
