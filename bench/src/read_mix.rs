//! A read-heavy mix (nine ReadConversation of 20 messages to one SendMessage)
//! at each read level, on 3 voters with and without read replicas, beside
//! etcd's serializable and linearizable range reads (nine 20-key range reads
//! to one Put) in the same run — plus write-only throughput, the chat
//! configurations taking turns, to show what attached replicas cost the writes.
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

use anyhow::Context;
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
    /// Hold every chat member to this many CPUs during the write-only
    /// comparison, as if each had a machine of its own ([`crate::cpu_cap`]).
    pub member_cpus: Option<f64>,
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
    // Every chat configuration runs to the end, so that their write-only
    // rounds can take turns (`compare_writes`).
    let mut chats = Vec::with_capacity(o.replicas.len());
    for &replicas in &o.replicas {
        chats.push(Chat::start(o, replicas).await?);
    }
    let rounds = o.rounds.max(1);
    for chat in &chats {
        println!("\nchat: 3 voters + {} read replica(s)", chat.replicas);
        print_header();
        for &clients in &o.clients {
            let mut rates = vec![Vec::with_capacity(rounds); levels.len()];
            for round in 1..=rounds {
                for (level, rates) in levels.iter().zip(&mut rates) {
                    let workers = chat_mix(&chat.cluster, &chat.token, clients, *level)?;
                    let (report, used) = measure(workers, &chat.pids, o.count).await?;
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
    }
    compare_writes(&chats, o).await?;
    drop(chats);

    println!("\netcd 3.4: 3 members");
    print_header();
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

/// One chat configuration: 3 voters and `replicas` read replicas, with a
/// sender's session and a 20-message conversation to read.
struct Chat {
    replicas: u64,
    cluster: TestCluster,
    token: String,
    /// Every member's process.
    pids: Vec<u32>,
    /// The leader's place in `pids`.
    leader: usize,
}

impl Chat {
    async fn start(o: &Options, replicas: u64) -> anyhow::Result<Self> {
        let plaintext: &[(&str, &str)] = if o.tls { &[] } else { &CHAT_PLAINTEXT };
        let env: Vec<(&str, &str)> = CHAT_TIMING.iter().chain(plaintext).copied().collect();
        let mut cluster = TestCluster::start(&o.chat_node, 3, &env).await;
        for k in 0..replicas {
            cluster.add_read_replica(11 + k);
        }
        let admin = Client::new(cluster.addrs(), cluster.client_options())?;
        admin.register("sender", PASSWORD).await?;
        admin.register("receiver", PASSWORD).await?;
        let token = admin.login("sender", PASSWORD).await?;
        let sender = admin.with_token(token.clone());
        for i in 0..PAGE {
            sender.send("receiver", &format!("seed {i}")).await?;
        }
        // A joined replica has caught up (the join waits for it).
        cluster.wait_members(3, usize::try_from(replicas)?).await;
        let pids: Vec<u32> = cluster.running().into_iter().filter_map(|id| cluster.pid(id)).collect();
        let leader_pid = cluster.pid(cluster.leader().await);
        let leader = pids.iter().position(|&p| Some(p) == leader_pid).context("the leader has no process")?;
        Ok(Self { replicas, cluster, token, pids, leader })
    }
}

/// Writes alone at the most clients, each configuration in turn within a
/// round (A B, then B A): what attached replicas cost each commit (they are
/// sent the log too). Taking turns keeps the machine's drift, which moved
/// single runs by a fifth here, out of the ratio of each configuration's
/// rate to the first's, taken per round. With `member_cpus`, every member is
/// held to that many CPUs meanwhile, as on machines of their own.
async fn compare_writes(chats: &[Chat], o: &Options) -> anyhow::Result<()> {
    let clients = o.clients.iter().copied().max().unwrap_or(1);
    let rounds = o.rounds.max(1);
    let _caps = match o.member_cpus {
        Some(cores) => {
            let pids: Vec<u32> = chats.iter().flat_map(|c| c.pids.iter().copied()).collect();
            println!("\nchat, writes only (the configurations take turns; each member held to {cores} CPUs)");
            Some(crate::cpu_cap::CpuCaps::apply(&pids, cores)?)
        }
        None => {
            println!("\nchat, writes only (the configurations take turns)");
            None
        }
    };
    println!(
        "{:>7} | {:<17} {:>9} {:>9} {:>9} | {:>13} {:>13}",
        "clients", "configuration", "ops/s", "p50", "p99", "CPU/1k ops", "leader's"
    );
    // Per configuration: each round's (writes per second, leader CPU per write).
    let mut results = vec![Vec::with_capacity(rounds); chats.len()];
    for round in 1..=rounds {
        let mut order: Vec<usize> = (0..chats.len()).collect();
        if round % 2 == 0 {
            order.reverse();
        }
        for i in order {
            let chat = &chats[i];
            let seeds = chat.cluster.addrs();
            let security = chat.cluster.tls.security();
            let writers = send_workers(&seeds, &security, &chat.token, "receiver", &"x".repeat(200), clients)?;
            let (report, used) = measure_each(writers, &chat.pids, o.count).await?;
            let per_thousand = |cpu: Duration| cpu.as_secs_f64() * 1e6 / report.messages.max(1) as f64;
            let (total, leader) = (per_thousand(used.iter().sum()), per_thousand(used[chat.leader]));
            results[i].push((report.per_second(), leader));
            println!(
                "{clients:>7} | {:<17} {:>9.0} {:>9.2?} {:>9.2?} | {total:>10.0} ms {leader:>10.0} ms",
                round_label(&format!("{} replica(s)", chat.replicas), round, rounds),
                report.per_second(),
                report.p50,
                report.p99,
            );
        }
    }
    let Some((first, base)) = chats.first().zip(results.first()) else { return Ok(()) };
    for (chat, results) in chats.iter().zip(&results).skip(1) {
        let rates: Vec<f64> = results.iter().zip(base).map(|((with, _), (without, _))| with / without).collect();
        let leader: Vec<f64> = results.iter().zip(base).map(|((_, with), (_, without))| without / with).collect();
        println!(
            "{clients:>7} | {} ÷ {} read replica(s): writes {:.2}×, leader's CPU per write {:.2}× (medians of {rounds})",
            chat.replicas,
            first.replicas,
            median(&rates),
            median(&leader),
        );
    }
    Ok(())
}

/// One measured round: `count` operations split over `workers`, and the CPU
/// the `pids` and this process spent on them, all together.
async fn measure<Op, Fut, E>(workers: Workers<Op>, pids: &[u32], count: usize) -> anyhow::Result<(LoadReport, Duration)>
where
    Op: FnMut(usize) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Send + 'static,
    anyhow::Error: From<E>,
{
    let (report, used) = measure_each(workers, pids, count).await?;
    Ok((report, used.iter().sum()))
}

/// [`measure`], with the CPU of each of `pids` (in order), then this process's.
async fn measure_each<Op, Fut, E>(
    mut workers: Workers<Op>,
    pids: &[u32],
    count: usize,
) -> anyhow::Result<(LoadReport, Vec<Duration>)>
where
    Op: FnMut(usize) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Send + 'static,
    anyhow::Error: From<E>,
{
    let meter = cpu::Meter::start(&cpu::with_own_pid(pids));
    let run = workers.run((count / workers.len().max(1)).max(1)).await?;
    Ok((LoadReport::from_runs(workers.len(), &[run]), meter.stop()))
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
