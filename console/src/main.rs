//! `chat-console`: serve the web console for the cluster at `--addr`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use chat_client::{Client, ClientOptions, Security};
use chat_console::state::{ConsoleState, KubeSource};
use chat_k8s::ClusterNames;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "chat-console", version, about = "A web console for a replicated-chat cluster")]
struct Cli {
    /// Cluster members (host:port, comma-separated).
    #[arg(long, env = "CHAT_ADDR", value_delimiter = ',', required = true)]
    addr: Vec<String>,
    /// CA certificate (PEM) to verify the members against.
    #[arg(long, env = "CHAT_CA", required_unless_present = "plaintext")]
    ca: Option<PathBuf>,
    /// The cluster serves its public port without TLS (`chat-node --public-plaintext`).
    #[arg(long, env = "CHAT_PLAINTEXT", conflicts_with = "ca")]
    plaintext: bool,
    /// Where the console listens (loopback by default: it is yours, not the network's).
    #[arg(long, env = "CHAT_CONSOLE_LISTEN", default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// Mark the session cookie `Secure`: set when browsers reach the console over HTTPS
    /// (a TLS-terminating proxy in front of it).
    #[arg(long, env = "CHAT_CONSOLE_SECURE_COOKIE")]
    secure_cookie: bool,
    /// On Kubernetes: the ReplicatedChat whose conditions and Events the
    /// cluster view shows (read with the pod's ServiceAccount, or the kubeconfig).
    #[arg(long, env = "CHAT_CONSOLE_KUBE_CLUSTER")]
    kube_cluster: Option<String>,
    /// The ReplicatedChat's namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default", requires = "kube_cluster")]
    kube_namespace: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    let security = match &cli.ca {
        Some(ca) => Security::ca_file(ca)?,
        None => {
            tracing::warn!("--plaintext: the console talks to the cluster without TLS");
            Security::Plaintext
        }
    };
    let client = Client::new(cli.addr, ClientOptions::new(security))?;
    let listener =
        tokio::net::TcpListener::bind(cli.listen).await.with_context(|| format!("binding {}", cli.listen))?;
    println!("console: http://{}/", listener.local_addr()?);
    let mut state = ConsoleState::new(client, cli.secure_cookie);
    if let Some(name) = cli.kube_cluster {
        let kube = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
        state = state.with_kube(KubeSource { client: kube, names: ClusterNames::new(name, cli.kube_namespace) });
    }
    axum::serve(listener, chat_console::http::router(state)).await?;
    Ok(())
}
