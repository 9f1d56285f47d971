//! A SendMessage load generator: N concurrent clients, each with its own
//! connection, sending a fixed number of messages; reports throughput and
//! latency percentiles. Used by `kubectl chat bench` and the node's benchmark.

use std::time::{Duration, Instant};

use crate::client::{Client, ClientOptions};
use crate::error::Result;

/// What one load run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub clients: usize,
    pub messages: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
}

impl LoadReport {
    pub fn per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
}

/// Sends `total` messages (split evenly) from `clients` concurrent clients, each
/// a fresh [`Client`] on `seeds` acting for `token`, to `to`, with `body`.
///
/// # Errors
/// The first send that failed (after the client's own retries).
pub async fn send_load(
    seeds: &[String],
    token: &str,
    to: &str,
    body: &str,
    clients: usize,
    total: usize,
) -> Result<LoadReport> {
    let clients = clients.max(1);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut workers = Vec::with_capacity(clients);
    for c in 0..clients {
        // Separate clients, separate connections: concurrency the cluster sees as such.
        let client = Client::new(seeds.to_vec(), ClientOptions::default())?.with_token(token);
        let (to, body, run) = (to.to_string(), body.to_string(), run.clone());
        workers.push(move |i: usize| {
            let (client, to, body, id) = (client.clone(), to.clone(), body.clone(), format!("{run}-{c}-{i}"));
            async move { client.send_with_id(&to, &body, &id).await.map(|_| ()) }
        });
    }
    drive(workers, total / clients).await
}

/// Runs `per_worker` operations on each worker concurrently (`op(i)` is the
/// worker's i-th operation) and reports throughput and latency. The generic
/// core of [`send_load`], also used to drive other systems the same way (the
/// etcd comparison).
///
/// # Errors
/// The first operation that failed.
pub async fn drive<Op, Fut, E>(workers: Vec<Op>, per_worker: usize) -> std::result::Result<LoadReport, E>
where
    Op: FnMut(usize) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = std::result::Result<(), E>> + Send,
    E: Send + 'static,
{
    let clients = workers.len().max(1);
    let per_worker = per_worker.max(1);
    let started = Instant::now();
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut op| {
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_worker);
                for i in 0..per_worker {
                    let t = Instant::now();
                    op(i).await?;
                    latencies.push(t.elapsed());
                }
                Ok::<_, E>(latencies)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(per_worker * clients);
    for task in tasks {
        match task.await {
            Ok(latencies) => all.extend(latencies?),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    let elapsed = started.elapsed();
    all.sort();
    let at = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Ok(LoadReport { clients, messages: all.len(), elapsed, p50: at(0.50), p99: at(0.99), p999: at(0.999) })
}
