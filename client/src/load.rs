//! A SendMessage load generator: N concurrent clients, each with its own
//! connection, sending a fixed number of messages; reports throughput and
//! latency percentiles. Used by `kubectl chat bench` and the node's benchmark.

use std::time::{Duration, Instant};

use crate::client::{Client, ClientOptions};
use crate::error::{Error, Result};

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
    let per_client = (total / clients).max(1);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut tasks = Vec::with_capacity(clients);
    let started = Instant::now();
    for c in 0..clients {
        // Separate clients, separate connections: concurrency the cluster sees as such.
        let client = Client::new(seeds.to_vec(), ClientOptions::default())?.with_token(token);
        let (to, body, run) = (to.to_string(), body.to_string(), run.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let t = Instant::now();
                client.send_with_id(&to, &body, &format!("{run}-{c}-{i}")).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, Error>(latencies)
        }));
    }
    let mut all = Vec::with_capacity(per_client * clients);
    for task in tasks {
        all.extend(task.await.map_err(|e| Error::Invalid(format!("load task failed: {e}")))??);
    }
    let elapsed = started.elapsed();
    all.sort();
    let at = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Ok(LoadReport { clients, messages: all.len(), elapsed, p50: at(0.50), p99: at(0.99), p999: at(0.999) })
}
