//! A SendMessage load generator: N concurrent clients, each with its own
//! connection, sending a fixed number of messages; reports throughput and
//! latency percentiles. Used by `kubectl chat bench` and the node's benchmark.
//!
//! [`Workers`] keep their clients (and connections) between runs, and
//! [`LoadReport::from_runs`] merges runs: so a comparison can alternate short
//! slices of load between two systems and still report each as one run —
//! on a machine whose speed drifts over seconds, that is what makes the two
//! comparable (see the etcd comparison in `chat-bench`).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::client::{Client, ClientOptions};
use crate::dial::Security;
use crate::error::Result;

/// What one or more load runs measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub clients: usize,
    pub messages: usize,
    /// Wall time under load (the sum over merged runs).
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
}

impl LoadReport {
    pub fn per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    /// One report over `runs` of `clients` workers: their operations and wall
    /// times added up, percentiles over every latency of every run.
    ///
    /// # Panics
    /// When the runs hold no operation at all.
    pub fn from_runs(clients: usize, runs: &[Run]) -> Self {
        let mut all: Vec<Duration> = runs.iter().flat_map(|r| r.latencies.iter().copied()).collect();
        assert!(!all.is_empty(), "a load report needs at least one operation");
        all.sort_unstable();
        let at = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        Self {
            clients,
            messages: all.len(),
            elapsed: runs.iter().map(|r| r.elapsed).sum(),
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
        }
    }
}

/// One run of [`Workers::run`]: its wall time and every operation's latency.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

/// Concurrent workers, each calling its operation in turn (`op(i)` is its
/// i-th operation, counted across runs).
pub struct Workers<Op> {
    ops: Vec<Op>,
    done: usize,
}

impl<Op, Fut, E> Workers<Op>
where
    Op: FnMut(usize) -> Fut + Send + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send,
    E: Send + 'static,
{
    pub fn new(ops: Vec<Op>) -> Self {
        Self { ops, done: 0 }
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Runs `per_worker` operations on every worker at once, each worker's one
    /// after another.
    ///
    /// # Errors
    /// The first operation that failed; the workers are gone after that.
    pub async fn run(&mut self, per_worker: usize) -> std::result::Result<Run, E> {
        let first = self.done;
        self.done += per_worker;
        let started = Instant::now();
        let tasks: Vec<_> = std::mem::take(&mut self.ops)
            .into_iter()
            .map(|mut op| {
                tokio::spawn(async move {
                    let mut latencies = Vec::with_capacity(per_worker);
                    for i in first..first + per_worker {
                        let t = Instant::now();
                        op(i).await?;
                        latencies.push(t.elapsed());
                    }
                    Ok::<_, E>((op, latencies))
                })
            })
            .collect();
        let mut run = Run { elapsed: Duration::ZERO, latencies: Vec::with_capacity(per_worker * tasks.len()) };
        let mut failed = None;
        for task in tasks {
            match task.await {
                Ok(Ok((op, latencies))) => {
                    self.ops.push(op);
                    run.latencies.extend(latencies);
                }
                Ok(Err(e)) => failed = failed.or(Some(e)),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        run.elapsed = started.elapsed();
        match failed {
            Some(e) => {
                self.ops.clear();
                Err(e)
            }
            None => Ok(run),
        }
    }
}

/// A SendMessage in flight, as [`send_workers`] hands them out.
pub type Sending = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// `clients` workers sending `body` to `to`, each a fresh [`Client`] on
/// `seeds` acting for `token`: separate clients, separate connections, so the
/// cluster sees the concurrency as such.
///
/// # Errors
/// When a client cannot be built from `seeds`.
pub fn send_workers(
    seeds: &[String],
    security: &Security,
    token: &str,
    to: &str,
    body: &str,
    clients: usize,
) -> Result<Workers<impl FnMut(usize) -> Sending + Send + 'static>> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut ops = Vec::with_capacity(clients.max(1));
    for c in 0..clients.max(1) {
        let client = Client::new(seeds.to_vec(), ClientOptions::new(security.clone()))?.with_token(token);
        let (to, body, run) = (to.to_string(), body.to_string(), run.clone());
        ops.push(move |i: usize| -> Sending {
            let (client, to, body, id) = (client.clone(), to.clone(), body.clone(), format!("{run}-{c}-{i}"));
            Box::pin(async move { client.send_with_id(&to, &body, &id).await.map(|_| ()) })
        });
    }
    Ok(Workers::new(ops))
}

/// Sends `total` messages (split evenly) from `clients` concurrent
/// [`send_workers`] and reports throughput and latency.
///
/// # Errors
/// The first send that failed (after the client's own retries).
pub async fn send_load(
    seeds: &[String],
    security: &Security,
    token: &str,
    to: &str,
    body: &str,
    clients: usize,
    total: usize,
) -> Result<LoadReport> {
    let mut workers = send_workers(seeds, security, token, to, body, clients)?;
    let run = workers.run((total / workers.len()).max(1)).await?;
    Ok(LoadReport::from_runs(workers.len(), &[run]))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn merged_runs_add_up_and_take_percentiles_over_every_latency() {
        let fast = Run { elapsed: ms(100), latencies: vec![ms(1); 150] };
        let slow = Run { elapsed: ms(300), latencies: vec![ms(9); 50] };
        let r = LoadReport::from_runs(2, &[fast, slow]);
        assert_eq!((r.clients, r.messages, r.elapsed), (2, 200, ms(400)));
        assert_eq!(r.per_second(), 500.0);
        assert_eq!((r.p50, r.p99, r.p999), (ms(1), ms(9), ms(9)));
    }

    #[tokio::test]
    async fn workers_keep_counting_their_operations_across_runs() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let ops = (0..3)
            .map(|w| {
                let (calls, seen) = (calls.clone(), seen.clone());
                move |i: usize| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    seen.lock().unwrap().push((w, i));
                    std::future::ready(Ok::<_, ()>(()))
                }
            })
            .collect();
        let mut workers = Workers::new(ops);
        let first = workers.run(2).await.unwrap();
        let second = workers.run(3).await.unwrap();
        assert_eq!((first.latencies.len(), second.latencies.len()), (6, 9));
        assert_eq!(calls.load(Ordering::Relaxed), 15);
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        let expected: Vec<_> = (0..3).flat_map(|w| (0..5).map(move |i| (w, i))).collect();
        assert_eq!(seen, expected, "every worker ran operations 0..5 exactly once");
    }

    #[tokio::test]
    async fn a_failed_operation_fails_the_run() {
        let ops = (0..2).map(|w| move |i: usize| std::future::ready(if w == 1 && i == 1 { Err(i) } else { Ok(()) }));
        let mut workers = Workers::new(ops.collect());
        assert_eq!(workers.run(3).await.unwrap_err(), 1);
        assert!(workers.is_empty());
    }
}
