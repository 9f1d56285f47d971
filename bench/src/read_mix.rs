//! A read-heavy mix (nine ReadConversation of 20 messages to one SendMessage)
//! at each read level, on 3 voters with and without read replicas, beside
//! etcd's serializable and linearizable range reads (nine 20-key range reads
//! to one Put) in the same run — plus, per chat configuration, write-only
//! throughput, to show what attached replicas cost the writes.
//!
//! Every worker is its own client (its own connections); chat's SESSION and
//! STALE reads go to the members in turn (the library's routing), its
//! LINEARIZABLE reads and all writes to the leader. CPU per 1,000 operations
//! is reported for every system: on this two-core machine more members cannot
//! add capacity, so what shows is the cost of a read at each level.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use chat_client::load::{LoadReport, Workers, send_workers};
use chat_client::{Client, ClientOptions, ReadConsistency};
use chat_testkit::{PASSWORD, TestCluster};
use etcd_client::GetOptions;

use crate::compare::{CHAT_PLAINTEXT, CHAT_TIMING};
use crate::cpu;
use crate::etcd::EtcdCluster;

pub struct Options {
    pub chat_node: PathBuf,
    pub etcd: PathBuf,
    pub clients: Vec<usize>,
    /// Operations per level and read level.
    pub count: usize,
    /// Chat configurations: read replicas next to the 3 voters.
    pub replicas: Vec<u64>,
    /// Rounds of every measurement (each `count` operations; the read levels
    /// take turns within a round): one round at 64 clients lasts about a
    /// second, too short to compare on its own on a shared machine.
    pub rounds: usize,
    pub tls: bool,
}

/// One in this many operations is a write.
const WRITE_EVERY: usize = 10;
/// Messages (and etcd keys) a read returns.
const PAGE: u32 = 20;

type Op = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// # Errors
/// When a cluster does not start or an operation fails.
pub async fn run(o: &Options) -> anyhow::Result<()> {
    let etcd = EtcdCluster::start(&o.etcd, 3, o.tls).await?;
    seed_etcd(&etcd).await?;
    let levels = [ReadConsistency::Linearizable, ReadConsistency::Session, ReadConsistency::Stale];
    println!(
        "read mix: {} reads of {PAGE} to 1 write, {} operations per level, 3 voters on loopback, {}",
        WRITE_EVERY - 1,
        o.count,
        if o.tls { "TLS on both systems" } else { "no TLS on either system" }
    );
    for &replicas in &o.replicas {
        let plaintext: &[(&str, &str)] = if o.tls { &[] } else { &CHAT_PLAINTEXT };
        let env: Vec<(&str, &str)> = CHAT_TIMING.iter().chain(plaintext).copied().collect();
        let mut chat = TestCluster::start(&o.chat_node, 3, &env).await;
        for k in 0..replicas {
            chat.add_read_replica(11 + k);
        }
        let seeds = chat.addrs();
        let admin = Client::new(seeds.clone(), chat.client_options())?;
        admin.register("sender", PASSWORD).await?;
        admin.register("receiver", PASSWORD).await?;
        let token = admin.login("sender", PASSWORD).await?;
        let sender = admin.clone().with_token(token.clone());
        for i in 0..PAGE {
            sender.send("receiver", &format!("seed {i}")).await?;
        }
        // A joined replica has caught up (the join waits for it).
        chat.wait_members(3, usize::try_from(replicas)?).await;
        let pids: Vec<u32> = chat.running().into_iter().filter_map(|id| chat.pid(id)).collect();
        println!("\nchat: 3 voters + {replicas} read replica(s)");
        print_header();
        let rounds = o.rounds.max(1);
        for &clients in &o.clients {
            let mut rates = vec![Vec::with_capacity(rounds); levels.len()];
            for round in 1..=rounds {
                for (level, rates) in levels.iter().zip(&mut rates) {
                    let workers = chat_mix(&chat, &token, clients, *level)?;
                    let (report, used) = measure(workers, &pids, o.count).await?;
                    rates.push(report.per_second());
                    print_row(
                        clients,
                        &round_label(&format!("{level:?}").to_lowercase(), round, rounds),
                        &report,
                        used,
                    );
                }
            }
            if rounds > 1 {
                for (level, rates) in levels.iter().zip(&rates) {
                    print_median(clients, &format!("{level:?}").to_lowercase(), rates);
                }
            }
            // Rounds are adjacent in time, so their ratios cancel most of the machine's drift.
            let ratios: Vec<f64> = rates[1].iter().zip(&rates[0]).map(|(session, lin)| session / lin).collect();
            println!("{clients:>7} | session ÷ linearizable: {:.2}× (median of {rounds})", median(&ratios));
        }
        // Writes alone: what the replicas cost each commit (they are sent the log too).
        let clients = o.clients.iter().copied().max().unwrap_or(1);
        let mut rates = Vec::with_capacity(rounds);
        for round in 1..=rounds {
            let writers = send_workers(&seeds, &chat.tls.security(), &token, "receiver", &"x".repeat(200), clients)?;
            let (report, used) = measure(writers, &pids, o.count).await?;
            rates.push(report.per_second());
            print_row(clients, &round_label("writes only", round, rounds), &report, used);
        }
        if rounds > 1 {
            print_median(clients, "writes only", &rates);
        }
    }

    println!("\netcd 3.4: 3 members");
    print_header();
    let rounds = o.rounds.max(1);
    for &clients in &o.clients {
        let mut rates = [Vec::with_capacity(rounds), Vec::with_capacity(rounds)];
        for round in 1..=rounds {
            for (serializable, rates) in [false, true].into_iter().zip(&mut rates) {
                let workers = etcd_mix(&etcd, clients, serializable).await?;
                let (report, used) = measure(workers, &etcd.pids(), o.count).await?;
                let level = if serializable { "serializable" } else { "linearizable" };
                rates.push(report.per_second());
                print_row(clients, &round_label(level, round, rounds), &report, used);
            }
        }
        if rounds > 1 {
            print_median(clients, "linearizable", &rates[0]);
            print_median(clients, "serializable", &rates[1]);
        }
    }
    Ok(())
}

/// One measured round: `count` operations split over `workers`, and the CPU
/// the `pids` and this process spent on them.
async fn measure<Op, Fut, E>(
    mut workers: Workers<Op>,
    pids: &[u32],
    count: usize,
) -> anyhow::Result<(LoadReport, Duration)>
where
    Op: FnMut(usize) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Send + 'static,
    anyhow::Error: From<E>,
{
    let meter = cpu::Meter::start(&cpu::with_own_pid(pids));
    let run = workers.run((count / workers.len().max(1)).max(1)).await?;
    let used: Duration = meter.stop().iter().sum();
    Ok((LoadReport::from_runs(workers.len(), &[run]), used))
}

/// `level`, or `level #round` when there are several rounds.
fn round_label(level: &str, round: usize, rounds: usize) -> String {
    if rounds > 1 { format!("{level} #{round}") } else { level.to_owned() }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

fn print_median(clients: usize, level: &str, rates: &[f64]) {
    println!("{clients:>7} | {:<17} {:>9.0}   (median of {})", level, median(rates), rates.len());
}

fn print_header() {
    println!("{:>7} | {:<17} {:>9} {:>9} {:>9} | {:>13}", "clients", "level", "ops/s", "p50", "p99", "CPU/1k ops");
}

fn print_row(clients: usize, level: &str, r: &LoadReport, cpu: Duration) {
    let per_thousand = cpu.as_secs_f64() * 1000.0 / r.messages.max(1) as f64;
    println!(
        "{clients:>7} | {level:<17} {:>9.0} {:>9.2?} {:>9.2?} | {:>10.0} ms",
        r.per_second(),
        r.p50,
        r.p99,
        per_thousand * 1000.0
    );
}

/// `clients` workers, each its own client: nine reads at `level` to one send.
fn chat_mix(
    chat: &TestCluster,
    token: &str,
    clients: usize,
    level: ReadConsistency,
) -> anyhow::Result<Workers<impl FnMut(usize) -> Op + Send + 'static>> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut ops = Vec::with_capacity(clients.max(1));
    for c in 0..clients.max(1) {
        let client = Client::new(chat.addrs(), ClientOptions::new(chat.tls.security()))?.with_token(token);
        let run = run.clone();
        ops.push(move |i: usize| -> Op {
            let client = client.clone();
            let id = format!("{run}-{c}-{i}");
            Box::pin(async move {
                if i.is_multiple_of(WRITE_EVERY) {
                    client.send_with_id("receiver", "x", &id).await?;
                } else {
                    client.read("receiver", PAGE, 0, level).await?;
                }
                Ok(())
            })
        });
    }
    Ok(Workers::new(ops))
}

async fn seed_etcd(etcd: &EtcdCluster) -> anyhow::Result<()> {
    let mut kv = etcd.client().await?.kv_client();
    for i in 0..PAGE {
        kv.put(format!("mix/{i:02}"), "x".repeat(200), None).await?;
    }
    Ok(())
}

/// `clients` workers, each its own connection: nine 20-key range reads to one Put.
async fn etcd_mix(
    etcd: &EtcdCluster,
    clients: usize,
    serializable: bool,
) -> anyhow::Result<Workers<impl FnMut(usize) -> Op + Send + 'static>> {
    let mut ops = Vec::with_capacity(clients.max(1));
    for c in 0..clients.max(1) {
        let client = etcd.client().await?;
        ops.push(move |i: usize| -> Op {
            let mut kv = client.kv_client();
            Box::pin(async move {
                if i.is_multiple_of(WRITE_EVERY) {
                    kv.put(format!("mix/w/{c}/{i}"), "x", None).await?;
                } else {
                    let mut options = GetOptions::new().with_prefix().with_limit(i64::from(PAGE));
                    if serializable {
                        options = options.with_serializable();
                    }
                    kv.get("mix/", Some(options)).await?;
                }
                Ok(())
            })
        });
    }
    Ok(Workers::new(ops))
}
