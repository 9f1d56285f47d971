//! `chat-node dev`: a real N-node cluster on loopback and a prompt to poke it.
//!
//! Each node is a child process running this same binary, so `fail N` is a
//! genuine `kill -9` and `start N` a genuine restart from the node's data dir.
//!
//! TLS is on, as in production: the playground makes a CA of its own in
//! `<dir>/tls/` (kept across runs), a node certificate for loopback, and
//! prints the `CHAT_CA` a client needs.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chat_proto::chat::chat_service_client::ChatServiceClient;
use chat_proto::chat::{CreateAccountRequest, LoginRequest, ReadConversationRequest, SendMessageRequest};
use chat_proto::cluster::cluster_service_client::ClusterServiceClient;
use chat_proto::cluster::{GetStatusRequest, GetStatusResponse, Role};
use chat_tls::connect::{Tcp, connector};
use chat_tls::{Ca, Leaf, Live, TlsDir};
use tokio::io::{AsyncBufReadExt, BufReader};

use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// How many nodes to run (1–9).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: u64,
    /// Directory for node data and logs (node-N/ and node-N.log).
    #[arg(long, default_value = "./chat-dev")]
    pub dir: PathBuf,
    /// Public gRPC port of node 1; node N listens on base+N-1, its peer port
    /// 10 above and its HTTP port 100 above.
    #[arg(long, default_value_t = 50051)]
    pub base_port: u16,
    /// Delete the directory first, starting a brand-new cluster.
    #[arg(long)]
    pub clean: bool,
    /// Read replicas to add after the voters (Raft learners that serve reads
    /// and never vote); they take the next ids. Voters and replicas: 9 at most.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=8))]
    pub read_replicas: u64,
}

struct Cluster {
    args: DevArgs,
    exe: PathBuf,
    children: Vec<Option<Child>>,
    /// The nodes' certificates (one for all: they share the loopback names).
    node_tls: TlsDir,
    /// Trusts the playground's CA: how the prompt reaches the public ports.
    client_tls: Live<rustls::ClientConfig>,
}

/// The playground's CA, made on first use and kept in `<dir>/tls/` so a
/// restarted playground's nodes and clients still trust each other; a fresh
/// node certificate for loopback from it; and an admin certificate in
/// `<dir>/tls/admin` (what `kubectl chat backup` presents).
fn dev_tls(dir: &std::path::Path) -> anyhow::Result<(TlsDir, std::path::PathBuf)> {
    let tls = dir.join("tls");
    let ca = Ca::load_or_generate(&tls, "replicated-chat dev playground")?;
    let node = ca.write_leaf(&Leaf::node(["127.0.0.1", "localhost", "::1"]), &tls.join("node"))?;
    ca.write_leaf(&Leaf::client(chat_tls::Role::Admin), &tls.join("admin"))?;
    Ok((node, tls.join("ca.crt")))
}

impl Cluster {
    fn addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.args.base_port as u64 + id - 1)
    }

    fn peer_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.args.base_port as u64 + 10 + id - 1)
    }

    /// A channel to node `id`'s public port, over TLS.
    fn channel(&self, id: u64) -> anyhow::Result<Channel> {
        let endpoint =
            Endpoint::from_shared(format!("http://{}", self.addr(id)))?.connect_timeout(Duration::from_secs(1));
        Ok(endpoint.connect_with_connector_lazy(connector(Tcp, self.client_tls.clone())))
    }

    fn http(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.args.base_port as u64 + 100 + id - 1)
    }

    /// Every node: the voters, then the read replicas.
    fn ids(&self) -> impl Iterator<Item = u64> + use<> {
        1..=self.args.nodes + self.args.read_replicas
    }

    fn is_read_replica(&self, id: u64) -> bool {
        id > self.args.nodes
    }

    fn is_running(&mut self, id: u64) -> bool {
        match &mut self.children[(id - 1) as usize] {
            Some(child) => child.try_wait().map(|status| status.is_none()).unwrap_or(false),
            None => false,
        }
    }

    fn start(&mut self, id: u64) -> anyhow::Result<()> {
        if self.is_running(id) {
            bail!("node {id} is already running");
        }
        let log_path = self.args.dir.join(format!("node-{id}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(self.addr(id))
            .arg("--peer-listen")
            .arg(self.peer_addr(id))
            .arg("--tls-dir")
            .arg(&self.node_tls.dir)
            .arg("--http")
            .arg(self.http(id))
            .arg("--data-dir")
            .arg(self.args.dir.join(format!("node-{id}")));
        if id == 1 {
            cmd.arg("--bootstrap");
        } else {
            let seeds: Vec<String> = self.ids().filter(|&i| i != id).map(|i| self.peer_addr(i)).collect();
            cmd.arg("--join").arg(seeds.join(","));
        }
        if self.is_read_replica(id) {
            cmd.arg("--read-replica");
        }
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).kill_on_drop(true);
        self.children[(id - 1) as usize] = Some(cmd.spawn().context("starting a node process")?);
        Ok(())
    }

    /// kill -9: no hand-over, no flush — a crash.
    async fn fail(&mut self, id: u64) -> anyhow::Result<()> {
        match self.children[(id - 1) as usize].take() {
            Some(mut child) => {
                child.kill().await.context("killing the node")?;
                Ok(())
            }
            None => bail!("node {id} is not running"),
        }
    }

    /// The leader as the first answering running node reports it: (id, term).
    async fn current_leader(&mut self) -> Option<(u64, u64)> {
        for id in self.running_ids() {
            if let Some(s) = self.status_of(id).await
                && let Some(leader) = s.leader_id
            {
                return Some((leader, s.term));
            }
        }
        None
    }

    /// `fail N`, and if N led, how long the survivors took to elect a new leader.
    async fn fail_and_report(&mut self, id: u64) -> anyhow::Result<()> {
        let was_leader = self.current_leader().await.is_some_and(|(leader, _)| leader == id);
        self.fail(id).await?;
        println!("  node {id} killed (kill -9){}", if was_leader { ", it was the leader" } else { "" });
        if !was_leader {
            return Ok(());
        }
        let running = self.running_ids().len() as u64;
        if running <= self.args.nodes / 2 {
            println!(
                "  no majority left ({running} of {} running): writes fail with UNAVAILABLE until one returns",
                self.args.nodes
            );
            return Ok(());
        }
        let killed = Instant::now();
        while killed.elapsed() < Duration::from_secs(10) {
            if let Some((leader, term)) = self.current_leader().await
                && leader != id
            {
                println!("  ★ node {leader} leads in term {term}, {:.0?} after the kill", killed.elapsed());
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!("  no new leader after 10s: is a majority still running?");
        Ok(())
    }

    /// SIGTERM every node and wait: the graceful path.
    async fn stop_all(&mut self) {
        for child in self.children.iter_mut().flatten() {
            if let Some(pid) = child.id() {
                // SAFETY: sending a signal to our own child process by pid.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
        }
        for child in self.children.iter_mut().flatten() {
            if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }

    async fn status_of(&self, id: u64) -> Option<GetStatusResponse> {
        let channel = self.channel(id).ok()?;
        let mut request = tonic::Request::new(GetStatusRequest {});
        request.set_timeout(Duration::from_millis(500));
        ClusterServiceClient::new(channel).get_status(request).await.ok().map(|r| r.into_inner())
    }

    async fn print_status(&mut self) {
        println!(
            "  {:<4} {:<17} {:<10} {:>5} {:>7} {:>9} {:>9} {:>9}  members",
            "node", "address", "role", "term", "leader", "last_log", "commit", "applied"
        );
        for id in self.ids() {
            let addr = self.addr(id);
            if !self.is_running(id) {
                println!("  {id:<4} {addr:<17} {:<10}", "✗ down");
                continue;
            }
            match self.status_of(id).await {
                None => println!("  {id:<4} {addr:<17} {:<10}", "… starting"),
                Some(s) => {
                    let role = match Role::try_from(s.role).unwrap_or(Role::Unknown) {
                        Role::Leader => "★ leader",
                        Role::Follower => "follower",
                        Role::Candidate => "candidate",
                        Role::Learner => "learner",
                        _ => "unknown",
                    };
                    let leader = s.leader_id.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
                    let members: Vec<String> = s
                        .members
                        .iter()
                        .map(|m| if m.voter { m.id.to_string() } else { format!("{}(learner)", m.id) })
                        .collect();
                    println!(
                        "  {id:<4} {addr:<17} {role:<10} {:>5} {leader:>7} {:>9} {:>9} {:>9}  {}",
                        s.term,
                        s.last_log_index,
                        s.commit_index,
                        s.applied_index,
                        members.join(",")
                    );
                }
            }
        }
    }

    /// Waits until some running node reports a leader and `voters` voters.
    async fn wait_ready(&mut self, voters: usize, learners: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            for id in self.ids() {
                if let Some(s) = self.status_of(id).await
                    && s.leader_id.is_some()
                    && s.members.iter().filter(|m| m.voter).count() >= voters
                    && s.members.iter().filter(|m| !m.voter).count() >= learners
                {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    fn running_ids(&mut self) -> Vec<u64> {
        self.ids().collect::<Vec<_>>().into_iter().filter(|&id| self.is_running(id)).collect()
    }

    /// A small end-to-end workload: two users, messages sent through every
    /// running node in turn, then read back through each and checked.
    async fn test(&mut self) -> anyhow::Result<()> {
        let nodes = self.running_ids();
        if nodes.is_empty() {
            bail!("no node is running");
        }
        let client =
            |id: u64| -> anyhow::Result<ChatServiceClient<Channel>> { Ok(ChatServiceClient::new(self.channel(id)?)) };
        let tag: u32 = rand::random::<u32>() % 1_000_000;
        let (alice, bob) = (format!("alice{tag}"), format!("bob{tag}"));
        let started = Instant::now();
        let mut first = client(nodes[0])?;
        for user in [&alice, &bob] {
            first
                .create_account(CreateAccountRequest { username: user.clone(), password: "dev-password".into() })
                .await?;
        }
        let token = first
            .login(LoginRequest { username: alice.clone(), password: "dev-password".into() })
            .await?
            .into_inner()
            .token;
        let count = 20;
        for i in 0..count {
            let via = nodes[i % nodes.len()];
            let body = format!("message {i} via node {via}");
            client(via)?
                .send_message(authed(&token, SendMessageRequest { to: bob.clone(), body, request_id: String::new() }))
                .await?;
        }
        let writes = started.elapsed();
        for &via in &nodes {
            let read = client(via)?
                .read_conversation(authed(
                    &token,
                    ReadConversationRequest { with: bob.clone(), limit: 1000, ..Default::default() },
                ))
                .await?
                .into_inner();
            if read.messages.len() != count {
                bail!("node {via} returned {} of {count} messages", read.messages.len());
            }
        }
        println!(
            "  ✓ PASS: {count} messages written through nodes {nodes:?} in {:.0?} and read back intact from each",
            writes
        );
        Ok(())
    }
}

/// A request carrying the session token.
fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert(chat_proto::AUTHORIZATION, format!("Bearer {token}").parse().expect("hex token is valid metadata"));
    r
}

const HELP: &str = "  commands:
    status     table of nodes: role, term, leader, log / commit / applied indexes
    fail N     kill -9 node N (try the leader, then `status`)
    start N    restart node N from its data dir; it catches up
    test       write 20 messages through every running node and read them back
    exit       stop every node gracefully and quit";

/// Starts the web console (`chat-console`, a client of the cluster like any
/// other) if it was built next to this binary, on the base port + 200; it
/// stops with the playground. Without it, says how to get it.
fn start_console(cluster: &Cluster, addrs: &[String], ca: &std::path::Path) -> anyhow::Result<Option<Child>> {
    let binary = cluster.exe.with_file_name("chat-console");
    let Some(port) = cluster.args.base_port.checked_add(200) else { return Ok(None) };
    if !binary.exists() {
        // Built with the same profile as this binary, it lands next to it.
        let release = if cfg!(debug_assertions) { "" } else { " --release" };
        println!("  console: `cargo build{release} -p chat-console`, and the playground starts it here");
        return Ok(None);
    }
    let log = std::fs::File::create(cluster.args.dir.join("console.log"))?;
    let child = Command::new(&binary)
        .arg("--addr")
        .arg(addrs.join(","))
        .arg("--ca")
        .arg(ca)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting chat-console")?;
    println!("  console: http://127.0.0.1:{port}/ (the cluster live, and a chat window)");
    Ok(Some(child))
}

/// Runs the dev cluster until `exit` or end of input.
///
/// # Errors
/// When the directory or processes cannot be set up.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    if args.clean && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir).with_context(|| format!("removing {}", args.dir.display()))?;
    }
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let exe = std::env::current_exe().context("finding the chat-node binary")?;
    let n = args.nodes;
    if n + args.read_replicas > 9 {
        bail!("--nodes plus --read-replicas is at most 9 (the playground's port layout)");
    }
    let all = n + args.read_replicas;
    let (node_tls, ca) = dev_tls(&args.dir).context("making the playground's certificates")?;
    let client_tls = Live::fixed(chat_tls::config::client(&chat_tls::files::read_ca_file(&ca)?, None)?);
    let mut cluster = Cluster { args, exe, children: (0..all).map(|_| None).collect(), node_tls, client_tls };

    let replicas = cluster.args.read_replicas;
    let extra = if replicas > 0 { format!(" and {replicas} read replica(s)") } else { String::new() };
    println!("replicated-chat dev cluster: {n} node(s){extra}, data and logs in {}", cluster.args.dir.display());
    for id in cluster.ids() {
        cluster.start(id)?;
        println!(
            "  node {id}: gRPC {} (peers {})  http://{}/metrics{}",
            cluster.addr(id),
            cluster.peer_addr(id),
            cluster.http(id),
            if cluster.is_read_replica(id) { "  read replica" } else { "" }
        );
    }
    let addrs: Vec<String> = cluster.ids().map(|id| cluster.addr(id)).collect();
    println!("  TLS on both ports, CA {}; a client needs:", ca.display());
    println!("    export CHAT_ADDR={} CHAT_CA={}", addrs.join(","), std::fs::canonicalize(&ca)?.display());
    let _console = start_console(&cluster, &addrs, &std::fs::canonicalize(&ca)?)?;
    let admin = std::fs::canonicalize(cluster.args.dir.join("tls").join("admin"))?;
    println!(
        "  a backup (as admin): kubectl chat backup chat.backup --member {} --admin-tls-dir {}",
        cluster.peer_addr(1),
        admin.display()
    );
    print!("  waiting for a leader, {n} voters and {replicas} read replica(s) ...");
    std::io::stdout().flush()?;
    if cluster.wait_ready(n as usize, replicas as usize, Duration::from_secs(60)).await {
        println!(" ready");
    } else {
        println!(" not ready after 60s; see the node logs");
    }
    cluster.print_status().await;
    println!("{HELP}");

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        print!("chat> ");
        std::io::stdout().flush()?;
        let Some(line) = lines.next_line().await? else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let node_arg = |cluster: &Cluster| -> anyhow::Result<u64> {
            let id: u64 =
                words.get(1).context("which node? e.g. `fail 1`")?.parse().context("node must be a number")?;
            if !cluster.ids().any(|i| i == id) {
                bail!("node must be 1..={}", cluster.args.nodes + cluster.args.read_replicas);
            }
            Ok(id)
        };
        let result: anyhow::Result<()> = match words.first().copied() {
            None => Ok(()),
            Some("status" | "s") => {
                cluster.print_status().await;
                Ok(())
            }
            Some("fail" | "kill") => match node_arg(&cluster) {
                Ok(id) => cluster.fail_and_report(id).await,
                Err(e) => Err(e),
            },
            Some("start") => match node_arg(&cluster) {
                Ok(id) => cluster.start(id).map(|_| println!("  node {id} starting")),
                Err(e) => Err(e),
            },
            Some("test" | "t") => cluster.test().await,
            Some("help" | "h" | "?") => {
                println!("{HELP}");
                Ok(())
            }
            Some("exit" | "quit" | "q") => break,
            Some(other) => Err(anyhow::anyhow!("unknown command {other:?}; try `help`")),
        };
        if let Err(e) = result {
            println!("  ✗ {e:#}");
        }
    }
    println!("  stopping nodes ...");
    cluster.stop_all().await;
    Ok(())
}
