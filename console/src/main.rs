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
    /// Serve HTTPS with the certificate in DIR (tls.crt, tls.key, ca.crt),
    /// reloaded when renewed. Required off loopback unless --plaintext-http.
    #[arg(long, env = "CHAT_CONSOLE_TLS_DIR")]
    tls_dir: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (passwords cross it at
    /// login): only behind a proxy that terminates TLS. Logged.
    #[arg(long, env = "CHAT_CONSOLE_PLAINTEXT_HTTP", conflicts_with = "tls_dir")]
    plaintext_http: bool,
    /// Mark the session cookie `Secure` (always so with --tls-dir): set when
    /// browsers reach a plain-HTTP console through an HTTPS proxy.
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
    let tls = match &cli.tls_dir {
        Some(dir) => Some(chat_console::tls::config(dir.clone()).context("loading the console's certificate")?),
        None if chat_console::tls::needs_tls(cli.listen) && !cli.plaintext_http => anyhow::bail!(
            "--listen {}: off loopback the console serves HTTPS (--tls-dir) or, behind a TLS proxy, \
             --plaintext-http",
            cli.listen
        ),
        None => {
            if cli.plaintext_http {
                tracing::warn!(listen = %cli.listen, "--plaintext-http: the console serves plain HTTP off loopback");
            }
            None
        }
    };
    let mut state = ConsoleState::new(client, cli.secure_cookie || tls.is_some());
    if let Some(name) = cli.kube_cluster {
        let kube = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
        state = state.with_kube(KubeSource { client: kube, names: ClusterNames::new(name, cli.kube_namespace) });
    }
    let listener =
        tokio::net::TcpListener::bind(cli.listen).await.with_context(|| format!("binding {}", cli.listen))?;
    let app = chat_console::http::router(state);
    match tls {
        Some(config) => {
            let listener = chat_console::tls::TlsListener::new(listener, config)?;
            println!("console: https://{}/", axum::serve::Listener::local_addr(&listener)?);
            axum::serve(listener, app).await?;
        }
        None => {
            println!("console: http://{}/", listener.local_addr()?);
            axum::serve(listener, app).await?;
        }
    }
    Ok(())
}
