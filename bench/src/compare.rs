//! chat vs etcd on the same machine, in the same run: the same shaped load
//! (a 200-byte SendMessage vs a 200-byte Put, N concurrent clients each with
//! its own connection, a fixed count), then failover (kill -9 the leader →
//! first acknowledged write) several times for each.
//!
//! Within a level the two take turns in short slices (A B B A …) with the same
//! clients throughout, and each system's slices are reported as one run: this
//! VM's speed drifts by tens of percent over seconds, and a level run whole,
//! one system after the other, measured that drift as much as the systems.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use chat_client::load::{LoadReport, Run, Workers, send_workers};
use chat_client::{Client, ClientOptions};
use chat_testkit::{PASSWORD, TestCluster};

use crate::cpu;
use crate::etcd::EtcdCluster;

/// Raft timing given to chat-node: the operator's defaults (heartbeat 100 ms,
/// election timeout 350–700 ms). Followers campaign once openraft's leader
/// lease (`election_timeout_max`) and their own timeout have both passed since
/// the last heartbeat — 1.05–1.4 s; etcd's followers, with its defaults
/// (heartbeat 100 ms, election timeout 1 s, randomized up to 2 s), after 1–2 s.
pub const CHAT_TIMING: [(&str, &str); 4] = [
    ("CHAT_HEARTBEAT_MS", "100"),
    ("CHAT_ELECTION_TIMEOUT_MIN_MS", "350"),
    ("CHAT_ELECTION_TIMEOUT_MAX_MS", "700"),
    ("RUST_LOG", "warn"),
];

/// Both of chat-node's ports without TLS, like the etcd it is compared with
/// (which this bench then runs without TLS too): the like-for-like baseline.
pub const CHAT_PLAINTEXT: [(&str, &str); 2] =
    [("CHAT_PUBLIC_PLAINTEXT", "true"), ("CHAT_INSECURE_PEER_PLAINTEXT", "true")];

pub struct Options {
    pub chat_node: PathBuf,
    pub etcd: PathBuf,
    pub clients: Vec<usize>,
    pub count: usize,
    pub kills: usize,
    /// Rounds of every level (this VM's noise is large: compare medians).
    pub rounds: usize,
    /// At most this many alternating slices per system per level ([`slice_sizes`]).
    pub slices: usize,
    /// Both systems with TLS (chat: both ports, the peer one mutual; etcd:
    /// client TLS and peer mutual TLS). Without, both run plaintext.
    pub tls: bool,
}

pub struct Row {
    pub clients: usize,
    pub chat: LoadReport,
    pub etcd: LoadReport,
}

/// Runs everything and prints the results as it goes.
///
/// # Errors
/// When a cluster does not start or a load run fails.
pub async fn run(o: &Options) -> anyhow::Result<(Vec<Row>, Vec<Duration>, Vec<Duration>)> {
    let plaintext: &[(&str, &str)] = if o.tls { &[] } else { &CHAT_PLAINTEXT };
    let env: Vec<(&str, &str)> = CHAT_TIMING.iter().chain(plaintext).copied().collect();
    let mut chat = TestCluster::start(&o.chat_node, 3, &env).await;
    let security = chat.tls.security();
    let mut etcd = EtcdCluster::start(&o.etcd, 3, o.tls).await?;
    let seeds = chat.addrs();
    let admin = Client::new(seeds.clone(), chat.client_options())?;
    admin.register("sender", PASSWORD).await?;
    admin.register("receiver", PASSWORD).await?;
    let token = admin.login("sender", PASSWORD).await?;
    let body = "x".repeat(200);

    let security_note = if o.tls { "TLS on both systems (peers mutual)" } else { "no TLS on either system" };
    println!(
        "3 members each on loopback, fsync on, {security_note}, 200-byte payloads, {} operations per level",
        o.count
    );
    println!(
        "{:>7} | {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} {:>9} | {:>6}",
        "clients", "chat/s", "p50", "p99", "p999", "etcd/s", "p50", "p99", "p999", "ratio"
    );
    let mut rows = Vec::new();
    let levels = o.clients.iter().copied().cycle().take(o.clients.len() * o.rounds.max(1));
    for clients in levels {
        let term_before = current_term(&chat).await;
        let chat_pids: Vec<u32> = chat.running().into_iter().filter_map(|id| chat.pid(id)).collect();
        let mut chat_load = Load::new(send_workers(&seeds, &security, &token, "receiver", &body, clients)?, &chat_pids);
        let mut etcd_load = Load::new(etcd_put_workers(&etcd, clients, &body).await?, &etcd.pids());
        let slices = slice_sizes(o.count / clients.max(1), o.slices);
        for (k, &per_worker) in slices.iter().enumerate() {
            // A B B A: a drift of the machine's speed within the level weighs on both alike.
            if k % 2 == 0 {
                chat_load.slice(per_worker).await?;
                etcd_load.slice(per_worker).await?;
            } else {
                etcd_load.slice(per_worker).await?;
                chat_load.slice(per_worker).await?;
            }
        }
        let (c, chat_cpu) = chat_load.report();
        let (e, etcd_cpu) = etcd_load.report();
        let term_after = current_term(&chat).await;
        if term_after != term_before {
            println!("        (chat: the leader changed during this level: term {term_before} → {term_after})");
        }
        let leader = chat.leader().await;
        for id in chat.running() {
            if let Some(m) = scrape(&chat.node(id).http).await {
                let role = if id == leader { "leader" } else { "follower" };
                println!("        (chat {role} {id} so far: {m})");
            }
        }
        println!(
            "        (CPU per 1,000 operations — chat: {}; etcd: {}; {} slices each)",
            per_thousand(&chat_cpu, c.messages),
            per_thousand(&etcd_cpu, e.messages),
            slices.len()
        );
        println!(
            "{clients:>7} | {:>9.0} {:>9.2?} {:>9.2?} {:>9.2?} | {:>9.0} {:>9.2?} {:>9.2?} {:>9.2?} | {:>5.2}x",
            c.per_second(),
            c.p50,
            c.p99,
            c.p999,
            e.per_second(),
            e.p50,
            e.p99,
            e.p999,
            c.per_second() / e.per_second()
        );
        rows.push(Row { clients, chat: c, etcd: e });
    }

    if o.rounds > 1 {
        print_medians(&o.clients, &rows);
    }

    let mut chat_failovers = Vec::new();
    let mut etcd_failovers = Vec::new();
    for _ in 0..o.kills {
        chat_failovers.push(chat_failover(&mut chat, &seeds, &token).await?);
        etcd_failovers.push(etcd_failover(&mut etcd).await?);
    }
    println!("failover, kill -9 leader → first acknowledged write ({} kills each):", o.kills);
    println!("  chat: {}", distribution(&chat_failovers));
    println!("  etcd: {}", distribution(&etcd_failovers));
    Ok((rows, chat_failovers, etcd_failovers))
}

/// A node's figures from its /metrics, so far: SendMessage service time,
/// commands per proposed entry, WAL syncs (how many took over 12.8 ms,
/// appends per sync), how often the leader's own unsynced entries held up an
/// apply or AppendEntries, and AppendEntries timing on both ends.
async fn scrape(http: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(http).await.ok()?;
    conn.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.ok()?;
    let mut text = String::new();
    conn.read_to_string(&mut text).await.ok()?;
    let value = |name: &str| -> Option<f64> {
        text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    // `(count, sum / count)` of the histogram `name` with `labels`, once it has samples.
    let mean = |name: &str, labels: &str| -> Option<(f64, f64)> {
        let sum = value(&format!("{name}_sum{labels} "))?;
        let count = value(&format!("{name}_count{labels} "))?;
        (count > 0.0).then(|| (count, sum / count))
    };
    let per_call = |name: &str, labels: &str| match mean(name, labels) {
        Some((c, seconds)) => format!("{c:.0} × {:.2} ms", seconds * 1000.0),
        None => "none".into(),
    };
    let (syncs, sync_mean) = mean("chat_wal_sync_seconds", "").unwrap_or_default();
    let fast = value("chat_wal_sync_seconds_bucket{le=\"0.0128\"} ")?;
    let appends_per_sync = mean("chat_wal_appends_per_sync", "").map_or(0.0, |(_, appends)| appends);
    let append_entries = "{method=\"AppendEntries\"}";
    let held_up = match (
        value("chat_wal_durable_wait_seconds_count "),
        value("chat_wal_durable_wait_seconds_bucket{le=\"0.00001\"} "),
    ) {
        (Some(checks), Some(at_once)) if checks > 0.0 => {
            let wait = value("chat_wal_durable_wait_seconds_sum ").unwrap_or(0.0);
            let waited = checks - at_once;
            let mean = if waited > 0.0 { wait / waited * 1000.0 } else { 0.0 };
            format!("{waited:.0} of {checks:.0} held up for the leader's sync, mean {mean:.2} ms")
        }
        _ => "none held up for the leader's sync".into(),
    };
    let served = per_call("chat_rpc_duration_seconds", "{method=\"SendMessage\"}");
    let batches = match mean("chat_proposal_batch_commands", "") {
        Some((c, commands)) => format!("{c:.0} entries × {commands:.1} commands"),
        None => "none".into(),
    };
    Some(format!(
        "SendMessage served {served}; proposed {batches}; \
         {syncs:.0} WAL syncs, mean {:.2} ms, {:.0} over 12.8 ms, {:.1} appends per sync, {held_up}; \
         AppendEntries sent {}, handled {}",
        sync_mean * 1000.0,
        syncs - fast,
        appends_per_sync,
        per_call("chat_raft_rpc_round_trip_seconds", append_entries),
        per_call("chat_raft_rpc_handled_seconds", append_entries)
    ))
}

/// One level's medians over rounds.
#[derive(Debug, PartialEq)]
pub struct Median {
    pub clients: usize,
    pub chat_per_second: f64,
    pub chat_p99: Duration,
    pub etcd_per_second: f64,
    pub etcd_p99: Duration,
    /// The median of each round's chat/etcd ratio (both systems share a round's noise).
    pub ratio: f64,
}

/// Per level (in `levels` order), the medians over the rounds in `rows`.
pub fn medians(levels: &[usize], rows: &[Row]) -> Vec<Median> {
    fn median<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v[v.len() / 2]
    }
    levels
        .iter()
        .filter_map(|&clients| {
            let of: Vec<&Row> = rows.iter().filter(|r| r.clients == clients).collect();
            (!of.is_empty()).then(|| Median {
                clients,
                chat_per_second: median(of.iter().map(|r| r.chat.per_second()).collect()),
                chat_p99: median(of.iter().map(|r| r.chat.p99).collect()),
                etcd_per_second: median(of.iter().map(|r| r.etcd.per_second()).collect()),
                etcd_p99: median(of.iter().map(|r| r.etcd.p99).collect()),
                ratio: median(of.iter().map(|r| r.chat.per_second() / r.etcd.per_second()).collect()),
            })
        })
        .collect()
}

fn print_medians(levels: &[usize], rows: &[Row]) {
    println!("medians over {} rounds:", rows.len() / levels.len().max(1));
    println!("{:>7} | {:>9} {:>9} | {:>9} {:>9} | {:>6}", "clients", "chat/s", "p99", "etcd/s", "p99", "ratio");
    for m in medians(levels, rows) {
        println!(
            "{:>7} | {:>9.0} {:>9.2?} | {:>9.0} {:>9.2?} | {:>5.2}x",
            m.clients, m.chat_per_second, m.chat_p99, m.etcd_per_second, m.etcd_p99, m.ratio
        );
    }
}

/// The given pids followed by this process's (the load generator).
/// `used` (servers…, load generator) as CPU milliseconds per 1,000 of `ops`.
fn per_thousand(used: &[std::time::Duration], ops: usize) -> String {
    let ms = |d: &std::time::Duration| d.as_secs_f64() * 1000.0 * 1000.0 / ops.max(1) as f64;
    let (servers, generator) = used.split_at(used.len().saturating_sub(1));
    let each: Vec<String> = servers.iter().map(|d| format!("{:.0}", ms(d))).collect();
    let total: std::time::Duration = servers.iter().sum();
    format!(
        "servers {:.0} ms ({}), load generator {:.0} ms",
        ms(&total),
        each.join(" + "),
        generator.first().map(ms).unwrap_or(0.0)
    )
}

/// The highest term any chat node reports.
async fn current_term(chat: &TestCluster) -> u64 {
    let mut term = 0;
    for id in chat.running() {
        if let Some(s) = chat.status(id).await {
            term = term.max(s.term);
        }
    }
    term
}

/// `clients` workers putting `value`, each with its own connection.
async fn etcd_put_workers(
    etcd: &EtcdCluster,
    clients: usize,
    value: &str,
) -> anyhow::Result<Workers<impl FnMut(usize) -> EtcdPut + Send + 'static>> {
    let mut ops = Vec::with_capacity(clients.max(1));
    for c in 0..clients.max(1) {
        let client = etcd.client().await?;
        let value = value.to_string();
        ops.push(move |i: usize| -> EtcdPut {
            let mut kv = client.kv_client();
            let (key, value) = (format!("bench/{c}/{i}"), value.clone());
            Box::pin(async move { kv.put(key, value, None).await.map(|_| ()) })
        });
    }
    Ok(Workers::new(ops))
}

/// An etcd Put in flight; boxed like chat's [`chat_client::load::Sending`], so
/// both load generators do the same work per operation.
type EtcdPut = Pin<Box<dyn Future<Output = Result<(), etcd_client::Error>> + Send>>;

/// How a level of `per_worker` operations per client is cut into slices that
/// alternate between the two systems: at most `max` slices, none shorter than
/// [`MIN_SLICE`] operations per client (each slice starts and drains its
/// clients, which at high concurrency would cost both systems throughput).
pub fn slice_sizes(per_worker: usize, max: usize) -> Vec<usize> {
    let per_worker = per_worker.max(1);
    let n = max.min(per_worker / MIN_SLICE).max(1);
    (0..n).map(|k| per_worker / n + usize::from(k < per_worker % n)).collect()
}

/// See [`slice_sizes`].
pub const MIN_SLICE: usize = 25;

/// One system's workers through a level: its slices of load, and the CPU its
/// servers and this process used during them (the load generator's while
/// the other system ran is not counted).
struct Load<Op> {
    workers: Workers<Op>,
    pids: Vec<u32>,
    runs: Vec<Run>,
    cpu: Vec<Duration>,
}

impl<Op, Fut, E> Load<Op>
where
    Op: FnMut(usize) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::error::Error + Send + Sync + 'static,
{
    fn new(workers: Workers<Op>, server_pids: &[u32]) -> Self {
        let pids = cpu::with_own_pid(server_pids);
        Self { workers, cpu: vec![Duration::ZERO; pids.len()], pids, runs: Vec::new() }
    }

    async fn slice(&mut self, per_worker: usize) -> anyhow::Result<()> {
        let meter = cpu::Meter::start(&self.pids);
        self.runs.push(self.workers.run(per_worker).await?);
        for (total, used) in self.cpu.iter_mut().zip(meter.stop()) {
            *total += used;
        }
        Ok(())
    }

    fn report(self) -> (LoadReport, Vec<Duration>) {
        (LoadReport::from_runs(self.workers.len(), &self.runs), self.cpu)
    }
}

async fn chat_failover(chat: &mut TestCluster, seeds: &[String], token: &str) -> anyhow::Result<Duration> {
    let leader = chat.leader().await;
    let client =
        Client::new(seeds.to_vec(), ClientOptions { deadline: Duration::from_secs(30), ..chat.client_options() })?
            .with_token(token);
    chat.kill(leader);
    let killed = Instant::now();
    client.send("receiver", "after failover").await?;
    let took = killed.elapsed();
    chat.restart(leader);
    chat.wait_voters(3).await;
    Ok(took)
}

async fn etcd_failover(etcd: &mut EtcdCluster) -> anyhow::Result<Duration> {
    let leader = etcd.leader().await.ok_or_else(|| anyhow::anyhow!("etcd has no leader"))?;
    let mut client = etcd.client().await?;
    etcd.kill(leader);
    let killed = Instant::now();
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(1), client.put("bench/failover", "x", None)).await;
        if matches!(attempt, Ok(Ok(_))) {
            break;
        }
        anyhow::ensure!(killed.elapsed() < Duration::from_secs(30), "etcd accepted no write within 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = killed.elapsed();
    etcd.restart(leader).await?;
    Ok(took)
}

/// `min / median / max` of `samples`, and every sample.
pub fn distribution(samples: &[Duration]) -> String {
    let mut s = samples.to_vec();
    s.sort();
    if s.is_empty() {
        return "no samples".into();
    }
    let all: Vec<String> = samples.iter().map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0)).collect();
    format!("min {:.2?}, median {:.2?}, max {:.2?} (ms: {})", s[0], s[s.len() / 2], s[s.len() - 1], all.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(per_second: u64, p99_ms: u64) -> LoadReport {
        let ms = Duration::from_millis;
        LoadReport {
            clients: 1,
            messages: per_second as usize,
            elapsed: ms(1000),
            p50: ms(1),
            p99: ms(p99_ms),
            p999: ms(p99_ms),
        }
    }

    #[test]
    fn medians_are_per_level_and_the_ratio_is_taken_per_round() {
        let row =
            |clients, chat: u64, etcd: u64| Row { clients, chat: report(chat, chat / 100), etcd: report(etcd, 7) };
        // Round 2 is slow for both systems: its ratio is still 1.0.
        let rows = vec![
            row(1, 500, 1000),
            row(16, 30, 10),
            row(1, 100, 100),
            row(16, 20, 10),
            row(1, 900, 1000),
            row(16, 10, 10),
        ];
        let m = medians(&[1, 16], &rows);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].clients, m[0].chat_per_second, m[0].etcd_per_second, m[0].ratio), (1, 500.0, 1000.0, 0.9));
        assert_eq!(m[0].chat_p99, Duration::from_millis(5));
        assert_eq!((m[1].clients, m[1].ratio), (16, 2.0));
        assert!(medians(&[64], &rows).is_empty());
    }

    #[test]
    fn slices_split_a_level_evenly_and_never_get_too_short() {
        assert_eq!(slice_sizes(4000, 8), vec![500; 8]);
        assert_eq!(slice_sizes(250, 8), vec![32, 32, 31, 31, 31, 31, 31, 31]);
        assert_eq!(slice_sizes(62, 8), vec![31, 31]);
        assert_eq!(slice_sizes(15, 8), vec![15], "too few per client to slice");
        assert_eq!(slice_sizes(4000, 1), vec![4000]);
        assert_eq!(slice_sizes(0, 8), vec![1], "at least one operation");
        for (per_worker, max) in [(4000, 8), (250, 8), (1001, 7), (49, 8)] {
            let sizes = slice_sizes(per_worker, max);
            assert_eq!(sizes.iter().sum::<usize>(), per_worker);
            assert!(sizes.len() == 1 || sizes.iter().all(|&n| n >= MIN_SLICE), "{sizes:?}");
        }
    }

    /// The bench claims to run chat with the operator's timing; a change to
    /// those defaults must show up here too.
    #[test]
    fn chat_timing_is_the_operators_default() {
        let raft = chat_k8s::crd::RaftSpec::default();
        let timing: std::collections::HashMap<_, _> = CHAT_TIMING.into_iter().collect();
        assert_eq!(timing["CHAT_HEARTBEAT_MS"], raft.heartbeat_ms.to_string());
        assert_eq!(timing["CHAT_ELECTION_TIMEOUT_MIN_MS"], raft.election_timeout_min_ms.to_string());
        assert_eq!(timing["CHAT_ELECTION_TIMEOUT_MAX_MS"], raft.election_timeout_max_ms.to_string());
    }
}
