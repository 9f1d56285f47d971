//! `chat-operator`: `run` the controller, or print the CRD (`crdgen`).
//! Thin: parse arguments, set up logging, call the library.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use chat_client::{Security, TcpDial};
use chat_k8s::portforward::PortForwardDial;
use chat_operator::controller;
use chat_operator::election::LeaseLock;
use chat_operator::http::{self, Health};
use chat_operator::metrics::Metrics;
use chat_operator::nodes::{Nodes, pod_dns};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "chat-operator", version, about = "Kubernetes operator for replicated-chat clusters")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller (in cluster, or out of cluster through your kubeconfig).
    Run(RunArgs),
    /// Print the ReplicatedChat CustomResourceDefinition as YAML.
    Crdgen,
    /// Print the objects the operator would create for a ReplicatedChat manifest (offline).
    Render {
        /// The ReplicatedChat manifest (YAML); `-` reads stdin.
        #[arg(long, short = 'f')]
        file: String,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Address of the HTTP server for /healthz, /readyz and /metrics.
    #[arg(long, env = "CHAT_OPERATOR_HTTP", default_value = "0.0.0.0:8080")]
    http: SocketAddr,
    /// How to reach chat pods: `dns` (in cluster), `port-forward` (through the
    /// API server, for running on a laptop), or `auto` (dns inside a pod).
    #[arg(long, env = "CHAT_OPERATOR_DIAL", value_enum, default_value = "auto")]
    dial: DialMode,
    /// Log format; the level comes from RUST_LOG (default: info).
    #[arg(long, env = "CHAT_OPERATOR_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Run several replicas: only the holder of a coordination Lease reconciles.
    #[arg(long, env = "CHAT_OPERATOR_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the Lease (in a pod: its own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the Lease.
    #[arg(long, default_value = "chat-operator")]
    lease_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DialMode {
    Auto,
    Dns,
    PortForward,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crdgen => {
            print!("{}", chat_operator::crdgen::crd_yaml());
            Ok(())
        }
        Command::Render { file } => {
            let manifest = if file == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
            };
            print!("{}", chat_operator::render::render(&manifest)?);
            Ok(())
        }
        Command::Run(args) => run(args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let client = kube::Client::try_default().await.context("connecting to Kubernetes (in-cluster or kubeconfig)")?;
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let port_forward = match args.dial {
        DialMode::Auto => !in_cluster,
        DialMode::Dns => false,
        DialMode::PortForward => true,
    };
    // Each cluster's nodes are reached with that cluster's certificates
    // (`certificates::ensure` hands them to `Nodes::secure`).
    let dial: chat_operator::nodes::DialFactory = if port_forward {
        tracing::info!("reaching pods through port-forward (out of cluster)");
        let (client, namespace) = (client.clone(), client.default_namespace().to_string());
        Arc::new(move |security| Arc::new(PortForwardDial::new(client.clone(), namespace.clone(), security)))
    } else {
        Arc::new(|security: Security| Arc::new(TcpDial::new(security)))
    };
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.http).await.with_context(|| format!("binding {}", args.http))?;
    tokio::spawn(http::serve(listener, Health { metrics: metrics.clone(), ready: ready.clone() }));
    tracing::info!(http = %args.http, "chat-operator starting");
    let mut lease = None;
    if args.leader_election {
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("chat-operator-{}", std::process::id()));
        let lock = LeaseLock {
            api: kube::Api::namespaced(client.clone(), &args.lease_namespace),
            name: args.lease_name.clone(),
            identity: identity.clone(),
            duration: std::time::Duration::from_secs(15),
        };
        // Standing by is healthy: a follower replica is ready, it just does not reconcile.
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(%identity, lease = %args.lease_name, "waiting to hold the lease");
        lock.acquire().await?;
        tracing::info!(%identity, "holding the lease: reconciling");
        let holder = lock.clone();
        let holding = tokio::spawn(async move {
            holder.hold().await;
            // Never reconcile alongside a new holder: stop, and let Kubernetes restart us as a follower.
            tracing::error!("lost the lease; exiting");
            std::process::exit(1);
        });
        lease = Some((lock, holding));
    }
    // The NetworkPolicies admit the operator's pods from here (the chart sets POD_NAMESPACE).
    let namespace = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| args.lease_namespace.clone());
    let outcome = controller::run(client, Nodes::new(dial, pod_dns()), namespace, metrics, ready).await;
    // Stopped reconciling (SIGTERM): hand the lease to a standby at once
    // rather than after its 15 s, as client-go's ReleaseOnCancel does.
    if let Some((lock, holding)) = lease {
        holding.abort();
        match lock.release().await {
            Ok(()) => tracing::info!("lease released"),
            Err(e) => tracing::warn!(error = %e, "could not release the lease; a standby takes over when it expires"),
        }
    }
    outcome
}
