//! A 3-member etcd cluster on loopback (Debian's `etcd-server`), started,
//! killed and restarted like our own nodes, for side-by-side measurements.
//! fsync stays on (etcd's default); heartbeat 100 ms and election timeout
//! 1 s are etcd's defaults too. With TLS, etcd is set up as chat-node is:
//! clients verify the members' certificate, members authenticate each other
//! (`--peer-client-cert-auth`), all issued by one throw-away CA.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct EtcdMember {
    pub name: String,
    pub client_url: String,
    peer_url: String,
    dir: PathBuf,
    child: Option<Child>,
}

pub struct EtcdCluster {
    binary: PathBuf,
    _root: tempfile::TempDir,
    pub members: Vec<EtcdMember>,
    initial_cluster: String,
    /// The certificates, when TLS is on.
    tls: Option<chat_tls::TlsDir>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers.
    ///
    /// # Errors
    /// When etcd cannot be started or does not become healthy in 30 s.
    pub async fn start(binary: impl Into<PathBuf>, n: usize, tls: bool) -> anyhow::Result<Self> {
        let root = tempfile::tempdir()?;
        let scheme = if tls { "https" } else { "http" };
        let tls = if tls {
            let ca = chat_tls::Ca::generate("chat-bench etcd")?;
            Some(ca.write_leaf(&chat_tls::Leaf::node(["127.0.0.1", "localhost"]), &root.path().join("tls"))?)
        } else {
            None
        };
        let members: Vec<EtcdMember> = (0..n)
            .map(|i| EtcdMember {
                name: format!("e{i}"),
                client_url: format!("{scheme}://127.0.0.1:{}", free_port()),
                peer_url: format!("{scheme}://127.0.0.1:{}", free_port()),
                dir: root.path().join(format!("e{i}")),
                child: None,
            })
            .collect();
        let initial_cluster =
            members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect::<Vec<_>>().join(",");
        let mut cluster = Self { binary: binary.into(), _root: root, members, initial_cluster, tls };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        cluster.wait_healthy().await?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(m.dir.with_extension("log"))?;
        let mut command = Command::new(&self.binary);
        if let Some(tls) = &self.tls {
            command
                .arg("--cert-file")
                .arg(tls.cert())
                .arg("--key-file")
                .arg(tls.key())
                .arg("--peer-cert-file")
                .arg(tls.cert())
                .arg("--peer-key-file")
                .arg(tls.key())
                .arg("--peer-trusted-ca-file")
                .arg(tls.ca())
                .arg("--peer-client-cert-auth");
        }
        let child = command
            .args(["--name", &m.name, "--data-dir"])
            .arg(&m.dir)
            .args(["--listen-client-urls", &m.client_url, "--advertise-client-urls", &m.client_url])
            .args(["--listen-peer-urls", &m.peer_url, "--initial-advertise-peer-urls", &m.peer_url])
            .args(["--initial-cluster", &self.initial_cluster, "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "chat-bench", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// A client for every member (etcd forwards writes to its leader itself).
    ///
    /// # Errors
    /// When no connection can be made.
    pub async fn client(&self) -> anyhow::Result<etcd_client::Client> {
        Ok(etcd_client::Client::connect(self.endpoints(), Some(self.options()?)).await?)
    }

    /// Connect options: timeouts, and the CA to verify members against when TLS is on.
    fn options(&self) -> anyhow::Result<etcd_client::ConnectOptions> {
        let mut options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(5));
        if let Some(tls) = &self.tls {
            let ca = std::fs::read(tls.ca())?;
            let tls = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(ca));
            options = options.with_tls(tls);
        }
        Ok(options)
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.leader().await.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("etcd did not elect a leader within 30 s (logs in {})", self._root.path().display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Index of the member that currently leads (as the running members report it).
    pub async fn leader(&self) -> Option<usize> {
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            let Ok(options) = self.options() else { return None };
            let Ok(mut c) = etcd_client::Client::connect([m.client_url.clone()], Some(options)).await else { continue };
            if let Ok(status) = c.status().await {
                let leader = status.leader();
                let me = status.header().map(|h| h.member_id());
                if leader != 0 && Some(leader) == me {
                    return self.members.iter().position(|x| x.name == m.name);
                }
            }
        }
        None
    }

    /// The OS process ids of the running members.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().filter_map(|m| m.child.as_ref().map(Child::id)).collect()
    }

    /// kill -9.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed member again from its data and waits for a leader.
    ///
    /// # Errors
    /// As [`EtcdCluster::start`].
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        // A restarting member rejoins the existing cluster from its data dir.
        self.spawn(i)?;
        self.wait_healthy().await
    }
}
