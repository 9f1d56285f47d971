//! `chat-node`: parse arguments, set up logging, run a node (or the dev cluster).

use anyhow::Context;
use chat_node::cli::{Cli, Command};
use clap::Parser;

/// mimalloc instead of glibc malloc: a write allocates and frees many small
/// buffers across threads (gRPC frames, log entries, RocksDB batches), the
/// pattern glibc handles worst.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Dev(args)) = cli.command {
        return chat_node::dev::run(args).await;
    }
    chat_node::telemetry::init(cli.log.log_format);
    let (public, peer, http) = (cli.node.listen, cli.node.peer_listen, cli.node.http);
    let config = cli.node.into_config(std::env::var("POD_NAME").ok().as_deref())?;
    let listeners = chat_node::server::Listeners {
        public: chat_node::server::bind(public).await?,
        peer: chat_node::server::bind(peer).await?,
        http: match http {
            Some(addr) => Some(chat_node::server::bind(addr).await?),
            None => None,
        },
    };
    chat_node::server::run(config, listeners, shutdown_signal()).await.context("node failed")?;
    Ok(())
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
}
