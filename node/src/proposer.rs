//! Proposal batching: many client commands in one Raft entry.
//!
//! openraft 0.9 turns every `client_write` into a log entry of its own, and
//! its Raft task takes entries one append at a time: it waits for each
//! append's fsync before it replicates or appends anything else, then pays
//! replication bookkeeping and an apply round per entry. One entry per command
//! put all of that on every command's path (BENCHMARKS.md). So commands go
//! through a queue, and whatever has queued is proposed as one [`Batch`].
//!
//! No timer: at most [`IN_FLIGHT`] batches are between proposal and apply.
//! A command arriving while fewer are in flight is proposed at once (with one
//! client, every batch holds one command and nothing waits); commands arriving
//! while the pipeline is full ride together in the next batch. Batch size
//! follows load.

use std::future::Future;
use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::command::{Batch, Command, CommandResult, Written};
use crate::typ::Raft;

/// Batches proposed but not yet applied. One batch committing while the next
/// fills keeps the leader's log and replication busy without letting batches
/// shrink to single commands again.
pub const IN_FLIGHT: usize = 2;
/// At most this many commands per batch...
pub const MAX_COMMANDS: usize = 1024;
/// ...and about this many bytes ([`Command::approx_size`]). With openraft's
/// `max_payload_entries` (see `server`) this bounds one AppendEntries well
/// below the Raft transport's 64 MiB message limit.
pub const MAX_BYTES: usize = 256 << 10;
/// Commands waiting for a batch; a full queue makes callers wait (backpressure).
const QUEUE: usize = 8192;

/// Why a proposal did not commit. Also the answer to a forwarded write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ProposeError {
    /// This node is not (or no longer) the leader; nothing was proposed.
    #[error("not the leader")]
    NotLeader,
    /// Raft failed or is shutting down; the command may or may not commit.
    #[error("{0}")]
    Failed(String),
}

/// What the proposer hands a batch to: Raft's `client_write` in the node,
/// something scripted in tests. Resolves to the entry's log index and one
/// result per command, in order.
pub trait Submit: Send + Sync + 'static {
    fn submit(&self, batch: Batch) -> impl Future<Output = Result<(u64, Vec<CommandResult>), ProposeError>> + Send;
}

/// Distribution of commands per proposed entry, for `/metrics`.
pub type BatchSizes = Histogram;

impl Submit for Raft {
    async fn submit(&self, batch: Batch) -> Result<(u64, Vec<CommandResult>), ProposeError> {
        match self.client_write(batch).await {
            Ok(response) => Ok((response.log_id.index, response.data)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Err(ProposeError::NotLeader),
            Err(e) => Err(ProposeError::Failed(e.to_string())),
        }
    }
}

struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<Written, ProposeError>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.command.kind())
    }
}

/// The queue in front of Raft. Cheap to share; the batching task ends when the
/// last handle is dropped.
#[derive(Debug, Clone)]
pub struct Proposer {
    queue: mpsc::Sender<Pending>,
    /// One permit per batch between proposal and apply ([`IN_FLIGHT`]).
    in_flight: Arc<Semaphore>,
}

/// While held, nothing is proposed: see [`Proposer::pause`].
#[derive(Debug)]
pub struct Paused {
    _permits: OwnedSemaphorePermit,
}

impl Proposer {
    /// Starts the batching task on the current runtime.
    pub fn start(submit: impl Submit, sizes: BatchSizes) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
        tokio::spawn(batch_loop(rx, Arc::new(submit), sizes, in_flight.clone()));
        Self { queue, in_flight }
    }

    /// Waits until every batch proposed so far is applied (or failed), then
    /// proposes nothing more until the returned guard is dropped; commands
    /// queue meanwhile. For a leader handing over: a batch proposed after its
    /// target caught up would leave the target behind every other voter, and
    /// unelectable.
    pub async fn pause(&self) -> Paused {
        let permits = self.in_flight.clone().acquire_many_owned(IN_FLIGHT as u32).await;
        Paused { _permits: permits.expect("the proposer's semaphore is never closed") }
    }

    /// Proposes `command` in the next batch and waits until it is applied.
    ///
    /// # Errors
    /// [`ProposeError::NotLeader`] when this node does not lead; `Failed` otherwise.
    pub async fn propose(&self, command: Command) -> Result<Written, ProposeError> {
        let (reply, result) = oneshot::channel();
        self.queue
            .send(Pending { command, reply })
            .await
            .map_err(|_| ProposeError::Failed("the proposer has stopped".into()))?;
        result.await.unwrap_or_else(|_| Err(ProposeError::Failed("the proposer dropped the command".into())))
    }
}

async fn batch_loop<S: Submit>(
    mut rx: mpsc::Receiver<Pending>,
    submit: Arc<S>,
    sizes: BatchSizes,
    in_flight: Arc<Semaphore>,
) {
    loop {
        // The command first, then the permit: an idle loop holds no permit, so
        // a pause waiting for all of them is not stuck behind it.
        let Some(first) = rx.recv().await else { return };
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let mut bytes = first.command.approx_size();
        let mut batch = vec![first];
        while batch.len() < MAX_COMMANDS && bytes < MAX_BYTES {
            let Ok(next) = rx.try_recv() else { break };
            bytes += next.command.approx_size();
            batch.push(next);
        }
        sizes.observe(batch.len() as f64);
        let (commands, replies): (Vec<Command>, Vec<_>) = batch.into_iter().map(|p| (p.command, p.reply)).unzip();
        let submit = submit.clone();
        tokio::spawn(async move {
            let outcome = submit.submit(Batch(commands)).await;
            drop(permit);
            match outcome {
                Ok((index, results)) if results.len() == replies.len() => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        // The caller may have given up (deadline); the command stands anyway.
                        let _ = reply.send(Ok(Written { result, index }));
                    }
                }
                Ok((_, results)) => {
                    let e = format!("internal: {} results for {} commands", results.len(), replies.len());
                    tracing::error!("{e}");
                    for reply in replies {
                        let _ = reply.send(Err(ProposeError::Failed(e.clone())));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::*;
    use crate::command::Applied;

    /// Records every batch; each waits for a permit from `gate` before it
    /// completes, so a test can pile commands up behind a full pipeline.
    struct Scripted {
        batches: Mutex<Vec<Vec<Command>>>,
        gate: Semaphore,
        not_leader: bool,
    }

    impl Scripted {
        fn new(open: bool, not_leader: bool) -> Arc<Self> {
            let permits = if open { Semaphore::MAX_PERMITS } else { 0 };
            Arc::new(Self { batches: Mutex::default(), gate: Semaphore::new(permits), not_leader })
        }

        fn batches(&self) -> Vec<Vec<Command>> {
            self.batches.lock().unwrap().clone()
        }
    }

    impl Submit for Arc<Scripted> {
        async fn submit(&self, batch: Batch) -> Result<(u64, Vec<CommandResult>), ProposeError> {
            self.batches.lock().unwrap().push(batch.0.clone());
            self.gate.acquire().await.expect("never closed").forget();
            if self.not_leader {
                return Err(ProposeError::NotLeader);
            }
            // Each command's result is its position, so callers can tell whose is whose.
            Ok((7, (0..batch.0.len()).map(|i| Ok(Applied::Count(i as u64))).collect()))
        }
    }

    /// Waits (at most 5 s) until `check` holds.
    async fn until(what: &str, check: impl Fn() -> bool) {
        let (within, every) = (Duration::from_secs(5), Duration::from_millis(1));
        chat_testkit::eventually_every(what, within, every, || std::future::ready(check().then_some(()))).await;
    }

    fn close(n: usize) -> Command {
        Command::CloseSession { token_hash: [n as u8; 32] }
    }

    fn send(n: usize) -> Command {
        let body = "x".repeat(4000);
        Command::SendMessage { token_hash: [0; 32], to: "bob".into(), body, sent_at_ms: 0, request_id: n.to_string() }
    }

    fn sizes() -> BatchSizes {
        Histogram::new([1.0, 2.0, 4.0])
    }

    type Waiting = Vec<tokio::task::JoinHandle<Result<Written, ProposeError>>>;

    fn propose(proposer: &Proposer, waiting: &mut Waiting, command: Command) {
        let p = proposer.clone();
        waiting.push(tokio::spawn(async move { p.propose(command).await }));
    }

    /// A proposer in front of a script that holds every batch, with its pipeline
    /// filled: IN_FLIGHT single commands, each its own batch, still waiting.
    async fn full_pipeline(not_leader: bool) -> (Arc<Scripted>, Proposer, Waiting) {
        let script = Scripted::new(false, not_leader);
        let proposer = Proposer::start(script.clone(), sizes());
        let mut waiting = Vec::new();
        for n in 0..IN_FLIGHT {
            propose(&proposer, &mut waiting, close(n));
            until("a batch of one", || script.batches().len() == n + 1).await;
        }
        (script, proposer, waiting)
    }

    #[tokio::test]
    async fn a_lone_command_is_proposed_at_once_in_a_batch_of_one() {
        let script = Scripted::new(true, false);
        let proposer = Proposer::start(script.clone(), sizes());
        assert_eq!(proposer.propose(close(1)).await, Ok(Written { result: Ok(Applied::Count(0)), index: 7 }));
        assert_eq!(script.batches(), vec![vec![close(1)]]);
    }

    #[tokio::test]
    async fn commands_queued_behind_a_full_pipeline_ride_in_one_batch_in_order() {
        let (script, proposer, mut waiting) = full_pipeline(false).await;
        let queued: Vec<usize> = (10..15).collect();
        for &n in &queued {
            propose(&proposer, &mut waiting, close(n));
        }
        // The batching loop holds the first of them, waiting for a permit.
        until("the commands to queue", || proposer.queue.capacity() == QUEUE - (queued.len() - 1)).await;
        assert_eq!(script.batches().len(), IN_FLIGHT, "nothing proposed while the pipeline is full");

        script.gate.add_permits(1);
        until("the next batch", || script.batches().len() == IN_FLIGHT + 1).await;
        assert_eq!(script.batches()[IN_FLIGHT], queued.iter().map(|&n| close(n)).collect::<Vec<_>>());

        script.gate.add_permits(IN_FLIGHT);
        let mut positions = Vec::new();
        for w in waiting {
            match w.await.unwrap() {
                Ok(Written { result: Ok(Applied::Count(i)), .. }) => positions.push(i),
                other => panic!("unexpected {other:?}"),
            }
        }
        let mut expected = vec![0; IN_FLIGHT];
        expected.extend(0..queued.len() as u64);
        assert_eq!(positions, expected, "each caller gets the result at its own position");
    }

    #[tokio::test]
    async fn a_pause_waits_for_batches_in_flight_and_holds_back_new_ones() {
        let (script, proposer, mut waiting) = full_pipeline(false).await;
        let pausing = tokio::spawn({
            let proposer = proposer.clone();
            async move { proposer.pause().await }
        });
        tokio::task::yield_now().await;
        assert!(!pausing.is_finished(), "paused with batches still in flight");
        script.gate.add_permits(IN_FLIGHT);
        let paused = tokio::time::timeout(Duration::from_secs(5), pausing).await.expect("paused").unwrap();

        propose(&proposer, &mut waiting, close(7));
        // One thread (a current-thread runtime): these turns let the command
        // reach the batching loop, which then waits for a permit.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        script.gate.add_permits(1);
        assert_eq!(script.batches().len(), IN_FLIGHT, "nothing proposed while paused");
        drop(paused);
        until("the held-back batch", || script.batches().len() == IN_FLIGHT + 1).await;
        assert_eq!(script.batches()[IN_FLIGHT], vec![close(7)]);
        for w in waiting {
            assert!(matches!(w.await.unwrap(), Ok(Written { result: Ok(_), .. })));
        }
    }

    #[tokio::test]
    async fn a_refused_batch_fails_every_command_in_it() {
        let (script, proposer, mut waiting) = full_pipeline(true).await;
        for n in 0..3 {
            propose(&proposer, &mut waiting, close(100 + n));
        }
        script.gate.add_permits(1 << 20);
        for w in waiting {
            assert_eq!(w.await.unwrap(), Err(ProposeError::NotLeader));
        }
        assert_eq!(script.batches().len(), IN_FLIGHT + 1);
    }

    #[tokio::test]
    async fn a_batch_is_capped_by_bytes() {
        let (script, proposer, mut waiting) = full_pipeline(false).await;
        let one = send(0).approx_size();
        let many = 2 * MAX_BYTES / one;
        for n in 0..many {
            propose(&proposer, &mut waiting, send(n));
        }
        until("the commands to queue", || proposer.queue.capacity() == QUEUE - (many - 1)).await;
        script.gate.add_permits(1);
        until("the next batch", || script.batches().len() > IN_FLIGHT).await;
        let batch = &script.batches()[IN_FLIGHT];
        let bytes: usize = batch.iter().map(Command::approx_size).sum();
        assert_eq!(batch[0], send(0), "in arrival order");
        assert!(batch.len() < many, "one batch took all {many} commands");
        assert!((MAX_BYTES..MAX_BYTES + one).contains(&bytes), "{bytes} bytes in one batch");
        script.gate.add_permits(1 << 20);
        for w in waiting {
            assert!(matches!(w.await.unwrap(), Ok(Written { result: Ok(_), .. })));
        }
    }
}
