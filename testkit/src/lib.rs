//! Test kit shared by the workspace's integration tests: real `chat-node`
//! processes on loopback, each with its own temp data dir and ports found by
//! binding port 0. Killing one is `kill -9`. Plus small gRPC helpers.
//!
//! Every cluster has a throw-away CA ([`TestTls`]): nodes serve TLS on the
//! public port and mutual TLS on the peer port, as in production, so every
//! test exercises the secure path.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chat_proto::chat::chat_service_client::ChatServiceClient;
use chat_proto::chat::*;
use chat_proto::cluster::cluster_service_client::ClusterServiceClient;
use chat_proto::cluster::membership_service_client::MembershipServiceClient;
use chat_proto::cluster::{GetStatusRequest, GetStatusResponse, Role};
use chat_tls::connect::{Tcp, connector};
use chat_tls::{Ca, Leaf, Live, TlsDir};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

pub const PASSWORD: &str = "password-123";

/// Polls `check` every 50 ms until it returns `Some`, or panics after `within` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_every(what, within, Duration::from_millis(50), check).await
}

/// [`eventually`], polling every `every` (e.g. a real Kubernetes API, which should not be hammered).
pub async fn eventually_every<T, F, Fut>(what: &str, within: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        tokio::time::sleep(every).await;
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct TestNode {
    pub id: u64,
    /// The public port: ChatService, GetStatus.
    pub addr: String,
    /// The peer port: Raft, membership (mutual TLS).
    pub peer: String,
    pub http: String,
    pub dir: PathBuf,
    child: Option<Child>,
    extra_env: Vec<(String, String)>,
    /// Started with neither --bootstrap nor --join (as operator-managed pods are).
    bare: bool,
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A binary of this workspace next to the running test's target dir (`target/<profile>/`).
///
/// # Panics
/// If it has not been built (a workspace test run builds every binary).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("test binary lives in target/<profile>/deps");
    let bin = dir.join(name);
    assert!(bin.exists(), "{} not built: run the tests with --workspace or build it first", bin.display());
    bin
}

/// The `chat-node` binary ([`workspace_binary`]). Integration tests of the
/// `chat-node` package should pass `env!("CARGO_BIN_EXE_chat-node")` instead.
pub fn chat_node_binary() -> PathBuf {
    workspace_binary("chat-node")
}

/// Where node `id` runs: the IP it listens on, and a command prefix to start
/// it with (e.g. `ip netns exec <namespace>`). The default is 127.0.0.1, no prefix.
pub type Placement = std::sync::Arc<dyn Fn(u64) -> (String, Vec<String>) + Send + Sync>;

/// A cluster's throw-away CA and the client configurations tests dial with.
pub struct TestTls {
    pub ca: Ca,
    /// Where `ca.crt` and `ca.key` are, and each node's certificates (`node-N/`).
    pub dir: PathBuf,
    /// Trusts the CA, presents nothing: a chat client on the public port.
    pub client: Live<rustls::ClientConfig>,
    /// Presents an operator certificate: membership calls on the peer port.
    pub operator: Live<rustls::ClientConfig>,
    /// The nodes serve their public port without TLS (started with
    /// `CHAT_PUBLIC_PLAINTEXT`), so clients dial it plainly.
    pub public_plaintext: bool,
    /// The nodes serve their peer port without TLS (started with
    /// `CHAT_INSECURE_PEER_PLAINTEXT`: the benchmark's plaintext baseline).
    pub peer_plaintext: bool,
    /// More names every node certificate is valid for (e.g. the pod DNS
    /// names a kube-mode test reaches the nodes by).
    pub extra_hosts: Vec<String>,
}

impl TestTls {
    /// A new CA in `dir`.
    ///
    /// # Panics
    /// If certificates cannot be made (a broken test environment).
    pub fn new(dir: &Path) -> Self {
        let ca = Ca::load_or_generate(dir, "replicated-chat test cluster").expect("test CA");
        let roots = chat_tls::files::certs(ca.cert_pem().as_bytes()).expect("test CA parses");
        let client = Live::fixed(chat_tls::config::client(&roots, None).expect("client TLS config"));
        let op = ca.write_leaf(&Leaf::client(chat_tls::Role::Operator), &dir.join("operator")).expect("operator cert");
        let operator = Live::fixed(chat_tls::config::mutual_client(&op.load().unwrap()).expect("operator TLS config"));
        Self {
            ca,
            dir: dir.to_path_buf(),
            client,
            operator,
            public_plaintext: false,
            peer_plaintext: false,
            extra_hosts: Vec::new(),
        }
    }

    /// Issues node `id` a certificate for `host` into its own directory.
    pub fn node_dir(&self, id: u64, host: &str) -> TlsDir {
        let hosts = [host, "localhost"].into_iter().map(str::to_string).chain(self.extra_hosts.iter().cloned());
        self.ca.write_leaf(&Leaf::node(hosts), &self.dir.join(format!("node-{id}"))).expect("node cert")
    }

    /// How `chat-client` reaches these nodes.
    pub fn security(&self) -> chat_client::Security {
        if self.public_plaintext {
            return chat_client::Security::Plaintext;
        }
        chat_client::Security::Tls(self.client.clone())
    }

    /// A channel to a public port (TLS unless the nodes serve it plaintext).
    pub fn channel(&self, addr: &str) -> Channel {
        if self.public_plaintext {
            return plaintext_channel(addr);
        }
        tls_channel(addr, &self.client)
    }

    /// A channel to a peer port presenting the operator's certificate.
    pub fn operator_channel(&self, addr: &str) -> Channel {
        if self.peer_plaintext {
            return plaintext_channel(addr);
        }
        tls_channel(addr, &self.operator)
    }
}

/// A lazily connecting TLS channel to `addr` with `config`.
pub fn tls_channel(addr: &str, config: &Live<rustls::ClientConfig>) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_millis(500))
        .connect_with_connector_lazy(connector(Tcp, config.clone()))
}

pub struct TestCluster {
    _root: tempfile::TempDir,
    binary: PathBuf,
    root: PathBuf,
    pub tls: TestTls,
    pub nodes: Vec<TestNode>,
    env: Vec<(String, String)>,
    placement: Option<Placement>,
}

/// When a test fails, the nodes' logs are the evidence: print their tails
/// before the temp dir holding them is removed.
impl Drop for TestCluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        for id in ids {
            let state = match self.nodes_exit_status(id) {
                Some(status) => format!("exited by itself: {status}"),
                None => "running, or killed by the test".to_string(),
            };
            let log = self.log_of(id);
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!("----- node {id} ({state}) log, last {} lines -----\n{}", tail.len(), tail.join("\n"));
        }
    }
}

impl TestCluster {
    /// How a node's process ended, if it ended on its own.
    fn nodes_exit_status(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let idx = self.nodes.iter().position(|n| n.id == id)?;
        self.nodes[idx].child.as_mut()?.try_wait().ok().flatten()
    }

    /// Starts `n` nodes (ids 1..=n): node 1 bootstraps, the others join through it.
    /// Waits until every one is a voter.
    pub async fn start(binary: impl AsRef<Path>, n: u64, env: &[(&str, &str)]) -> Self {
        Self::start_with(binary, n, env, None).await
    }

    /// [`TestCluster::start`] with every node placed by `placement` (its own
    /// network namespace, say).
    pub async fn start_placed(binary: impl AsRef<Path>, n: u64, env: &[(&str, &str)], placement: Placement) -> Self {
        Self::start_with(binary, n, env, Some(placement)).await
    }

    async fn start_with(binary: impl AsRef<Path>, n: u64, env: &[(&str, &str)], placement: Option<Placement>) -> Self {
        let mut cluster = Self::empty(binary, env);
        cluster.placement = placement;
        for id in 1..=n {
            cluster.add_node(id);
        }
        cluster.wait_voters(n as usize).await;
        cluster
    }

    fn host(&self, id: u64) -> String {
        self.placement.as_ref().map_or_else(|| "127.0.0.1".to_string(), |p| p(id).0)
    }

    /// A cluster with no nodes yet, for tests that add bare nodes and let
    /// someone else (the operator) found and grow the cluster.
    ///
    /// With `CHAT_KEEP_TEST_DIRS` set, the cluster's directory (data and node
    /// logs) is kept after the run and its path printed: for reading what the
    /// nodes did in a failed test or chaos run.
    pub fn empty(binary: impl AsRef<Path>, env: &[(&str, &str)]) -> Self {
        let mut root = tempfile::tempdir().unwrap();
        if std::env::var_os("CHAT_KEEP_TEST_DIRS").is_some() {
            root.disable_cleanup(true);
            eprintln!("test cluster dir (kept): {}", root.path().display());
        }
        let mut tls = TestTls::new(&root.path().join("tls"));
        let set = |name: &str| env.iter().any(|(k, v)| *k == name && *v == "true");
        tls.public_plaintext = set("CHAT_PUBLIC_PLAINTEXT");
        tls.peer_plaintext = set("CHAT_INSECURE_PEER_PLAINTEXT");
        TestCluster {
            binary: binary.as_ref().to_path_buf(),
            tls,
            root: root.path().to_path_buf(),
            _root: root,
            nodes: Vec::new(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            placement: None,
        }
    }

    /// Creates and starts node `id`: bootstrap if it is the first, else join via every other node.
    pub fn add_node(&mut self, id: u64) -> &TestNode {
        self.add(id, false, &[])
    }

    /// Creates and starts node `id` as a read replica: it joins through the
    /// other nodes as a learner that is never promoted.
    pub fn add_read_replica(&mut self, id: u64) -> &TestNode {
        self.add(id, false, &[("CHAT_READ_REPLICA", "true")])
    }

    /// Creates and starts node `id` with neither --bootstrap nor --join: it
    /// serves and waits to be initialized or added, like a pod the operator manages.
    pub fn add_bare_node(&mut self, id: u64) -> &TestNode {
        self.add(id, true, &[])
    }

    /// kill -9, delete the node's data (a lost volume), and start it again bare
    /// at the same address.
    pub fn wipe(&mut self, id: u64) {
        self.kill(id);
        let idx = self.idx(id);
        std::fs::remove_dir_all(&self.nodes[idx].dir).unwrap();
        self.nodes[idx].bare = true;
        self.spawn(idx);
    }

    /// Creates and starts node `id` with the cluster's environment plus `env`.
    fn add(&mut self, id: u64, bare: bool, env: &[(&str, &str)]) -> &TestNode {
        let host = self.host(id);
        let node = TestNode {
            bare,
            id,
            addr: format!("{host}:{}", free_port()),
            peer: format!("{host}:{}", free_port()),
            http: format!("{host}:{}", free_port()),
            dir: self.root.join(format!("node-{id}")),
            child: None,
            extra_env: self
                .env
                .iter()
                .cloned()
                .chain(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                .collect(),
        };
        self.nodes.push(node);
        let idx = self.nodes.len() - 1;
        self.spawn(idx);
        &self.nodes[idx]
    }

    /// Starts node `idx` and waits until it serves. Ports come from binding
    /// port 0 and releasing it, so another process may take one before the node
    /// binds it: a fresh node then gets new ports, a restarted one retries its own.
    fn spawn(&mut self, idx: usize) {
        let fresh = !self.nodes[idx].dir.exists();
        for attempt in 1..=5 {
            let serving_before = self.serving_count(idx);
            self.spawn_once(idx);
            match self.wait_serving(idx, serving_before) {
                Ok(()) => return,
                Err(status) => {
                    assert!(
                        attempt < 5,
                        "node {} could not start ({status}); log:\n{}",
                        self.nodes[idx].id,
                        self.log_of(self.nodes[idx].id)
                    );
                    if fresh {
                        let host = self.host(self.nodes[idx].id);
                        self.nodes[idx].addr = format!("{host}:{}", free_port());
                        self.nodes[idx].peer = format!("{host}:{}", free_port());
                        self.nodes[idx].http = format!("{host}:{}", free_port());
                    } else {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        }
    }

    fn log_path(&self, id: u64) -> PathBuf {
        self.root.join(format!("node-{id}.log"))
    }

    /// How many times node `idx` has logged that it serves (its log is appended across restarts).
    fn serving_count(&self, idx: usize) -> usize {
        self.log_of(self.nodes[idx].id).matches("node serving").count()
    }

    /// Waits until node `idx` logs one more "node serving" than `before`, or exits.
    fn wait_serving(&mut self, idx: usize, before: usize) -> Result<(), std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.serving_count(idx) > before {
                return Ok(());
            }
            let child = self.nodes[idx].child.as_mut().expect("just spawned");
            if let Some(status) = child.try_wait().expect("polling a child") {
                self.nodes[idx].child = None;
                return Err(status);
            }
            assert!(Instant::now() < deadline, "node {} did not start serving within 30s", self.nodes[idx].id);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn spawn_once(&mut self, idx: usize) {
        let seeds: Vec<String> =
            self.nodes.iter().filter(|n| n.id != self.nodes[idx].id).map(|n| n.peer.clone()).collect();
        let tls = self.tls.node_dir(self.nodes[idx].id, &self.host(self.nodes[idx].id));
        let node = &self.nodes[idx];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path(node.id)).unwrap();
        let mut cmd = match self.placement.as_ref().map(|p| p(node.id).1).filter(|prefix| !prefix.is_empty()) {
            Some(prefix) => {
                let mut c = Command::new(&prefix[0]);
                c.args(&prefix[1..]).arg(&self.binary);
                c
            }
            None => Command::new(&self.binary),
        };
        cmd.args(["--id", &node.id.to_string(), "--listen", &node.addr, "--peer-listen", &node.peer])
            .args(["--http", &node.http])
            .arg("--data-dir")
            .arg(&node.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if !self.tls.peer_plaintext {
            cmd.arg("--tls-dir").arg(&tls.dir);
        } else if !self.tls.public_plaintext {
            cmd.arg("--public-tls-dir").arg(&tls.dir);
        }
        if node.bare {
            // Waits to be initialized or added.
        } else if seeds.is_empty() {
            cmd.arg("--bootstrap");
        } else {
            cmd.arg("--join").arg(seeds.join(","));
        }
        let mut filter = "info,openraft=warn".to_string();
        for (k, v) in &node.extra_env {
            if k == "RUST_LOG" {
                filter = v.clone();
            } else {
                cmd.env(k, v);
            }
        }
        // "node serving" is the readiness signal `wait_serving` reads, whatever the caller's filter.
        cmd.env("RUST_LOG", format!("{filter},chat_node::server=info"));
        // Nodes die with the process that started them, even when it is
        // killed without running destructors (a `timeout`-ed chaos run).
        // The signal follows the *thread* that spawned: tests spawn nodes from
        // their main thread or tokio workers, which live as long as the test.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawning chat-node");
        self.nodes[idx].child = Some(child);
    }

    /// Every node's gRPC address, in id order.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    pub fn node(&self, id: u64) -> &TestNode {
        self.nodes.iter().find(|n| n.id == id).expect("no such node")
    }

    fn idx(&self, id: u64) -> usize {
        self.nodes.iter().position(|n| n.id == id).expect("no such node")
    }

    /// kill -9.
    pub fn kill(&mut self, id: u64) {
        let idx = self.idx(id);
        if let Some(mut c) = self.nodes[idx].child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGSTOP: the node freezes (timers, sockets and all) until [`TestCluster::resume`].
    pub fn pause(&mut self, id: u64) {
        self.signal(id, libc::SIGSTOP);
    }

    /// SIGCONT after [`TestCluster::pause`].
    pub fn resume(&mut self, id: u64) {
        self.signal(id, libc::SIGCONT);
    }

    fn signal(&mut self, id: u64, signal: i32) {
        let idx = self.idx(id);
        let child = self.nodes[idx].child.as_ref().expect("node not running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self, id: u64) -> std::process::ExitStatus {
        let idx = self.idx(id);
        let mut c = self.nodes[idx].child.take().expect("node not running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "node {id} did not exit within 20s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn restart(&mut self, id: u64) {
        let idx = self.idx(id);
        assert!(self.nodes[idx].child.is_none(), "node {id} is running");
        self.spawn(idx);
    }

    /// Gives a stopped node new ports, as if it came back at another
    /// address; returns its new (public, peer) addresses.
    pub fn move_to_new_port(&mut self, id: u64) -> (String, String) {
        let idx = self.idx(id);
        assert!(self.nodes[idx].child.is_none(), "stop node {id} first");
        self.nodes[idx].addr = format!("{}:{}", self.host(id), free_port());
        self.nodes[idx].peer = format!("{}:{}", self.host(id), free_port());
        (self.nodes[idx].addr.clone(), self.nodes[idx].peer.clone())
    }

    pub fn remove_node(&mut self, id: u64) {
        let idx = self.idx(id);
        self.nodes.remove(idx);
    }

    /// The OS process id of node `id`, while it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.node(id).child.as_ref().map(Child::id)
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes.iter().filter(|n| n.child.is_some()).map(|n| n.id).collect()
    }

    /// Node `id`'s status, or `None` if it does not answer within 1 s (the
    /// `grpc-timeout` header alone does not bound a call to a paused node).
    pub async fn status(&self, id: u64) -> Option<GetStatusResponse> {
        let mut req = Request::new(GetStatusRequest {});
        req.set_timeout(Duration::from_millis(500));
        let mut client = ClusterServiceClient::new(self.tls.channel(&self.node(id).addr));
        tokio::time::timeout(Duration::from_secs(1), client.get_status(req)).await.ok()?.ok().map(|r| r.into_inner())
    }

    /// The current leader's id, once there is one.
    ///
    /// A node restarted from its data may briefly still call itself leader of
    /// an old term (its persisted vote), until it hears the new term. So the
    /// answer is the leader of the highest term any running node reports; while
    /// no leader holds that term (an election), keep waiting.
    pub async fn leader(&self) -> u64 {
        eventually("a leader of the current term", Duration::from_secs(20), || async {
            let mut views = Vec::new();
            for id in self.running() {
                if let Some(s) = self.status(id).await {
                    views.push((id, s));
                }
            }
            let term = views.iter().map(|(_, s)| s.term).max()?;
            views.iter().find(|(_, s)| s.term == term && Role::try_from(s.role) == Ok(Role::Leader)).map(|(id, _)| *id)
        })
        .await
    }

    /// Waits until the leader reports exactly `voters` voters and `learners` learners.
    pub async fn wait_members(&self, voters: usize, learners: usize) {
        eventually(&format!("{voters} voters and {learners} learners"), Duration::from_secs(60), || async {
            for id in self.running() {
                if let Some(s) = self.status(id).await
                    && Role::try_from(s.role) == Ok(Role::Leader)
                    && s.members.iter().filter(|m| m.voter).count() == voters
                    && s.members.iter().filter(|m| !m.voter).count() == learners
                {
                    return Some(());
                }
            }
            None
        })
        .await
    }

    /// Waits until the leader reports exactly `n` voters and no learners.
    pub async fn wait_voters(&self, n: usize) {
        eventually(&format!("{n} voters"), Duration::from_secs(60), || async {
            for id in self.running() {
                if let Some(s) = self.status(id).await
                    && Role::try_from(s.role) == Ok(Role::Leader)
                    && s.members.len() == n
                    && s.members.iter().all(|m| m.voter)
                {
                    return Some(());
                }
            }
            None
        })
        .await
    }

    pub fn client(&self, id: u64) -> ChatServiceClient<Channel> {
        ChatServiceClient::new(self.tls.channel(&self.node(id).addr))
    }

    pub fn cluster_client(&self, id: u64) -> ClusterServiceClient<Channel> {
        ClusterServiceClient::new(self.tls.channel(&self.node(id).addr))
    }

    /// Membership calls on node `id`'s peer port, as the operator makes them.
    pub fn membership_client(&self, id: u64) -> MembershipServiceClient<Channel> {
        MembershipServiceClient::new(self.tls.operator_channel(&self.node(id).peer))
    }

    /// Every node's public address, for `chat-client`, with how to reach them.
    pub fn client_options(&self) -> chat_client::ClientOptions {
        chat_client::ClientOptions::new(self.tls.security())
    }

    pub fn log_of(&self, id: u64) -> String {
        std::fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }
}

/// A plaintext channel to `addr`: what a stranger without TLS would open.
pub fn plaintext_channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_timeout(Duration::from_millis(500)).connect_lazy()
}

/// A plain HTTP/1.1 GET of `path` at `addr` (a node's `--http` port): (status code, body).
///
/// # Panics
/// If nothing answers at `addr` or the answer is not HTTP.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("an HTTP status line");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

/// Attaches a session token.
pub fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    r.set_timeout(Duration::from_secs(10));
    r
}

/// Registers and logs in `user` through `client`; returns the token.
pub async fn register(client: &mut ChatServiceClient<Channel>, user: &str) -> String {
    client.create_account(CreateAccountRequest { username: user.into(), password: PASSWORD.into() }).await.unwrap();
    client.login(LoginRequest { username: user.into(), password: PASSWORD.into() }).await.unwrap().into_inner().token
}

pub async fn send(
    client: &mut ChatServiceClient<Channel>,
    token: &str,
    to: &str,
    body: &str,
    request_id: &str,
) -> Result<u64, Status> {
    let req = SendMessageRequest { to: to.into(), body: body.into(), request_id: request_id.into() };
    client.send_message(authed(token, req)).await.map(|r| r.into_inner().id)
}

/// Every message between the token's user and `with`, oldest first.
pub async fn read_all(
    client: &mut ChatServiceClient<Channel>,
    token: &str,
    with: &str,
    consistency: ReadConsistency,
) -> Result<Vec<Message>, Status> {
    let mut all = Vec::new();
    let mut before = 0;
    loop {
        let req = ReadConversationRequest {
            with: with.into(),
            limit: 1000,
            before_id: before,
            consistency: consistency as i32,
            ..ReadConversationRequest::default()
        };
        let page = client.read_conversation(authed(token, req)).await?.into_inner().messages;
        if page.is_empty() {
            break;
        }
        before = page[0].id;
        let mut page = page;
        page.extend(all);
        all = page;
    }
    Ok(all)
}

/// Retries `op` on UNAVAILABLE (a leader change in progress) until `within`.
pub async fn retry_unavailable<T, F, Fut>(within: Duration, mut op: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let deadline = Instant::now() + within;
    loop {
        match op().await {
            Err(s) if s.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => return other,
        }
    }
}
