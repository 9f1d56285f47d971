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
    // The dev playground keeps the terminal for its prompt: no log lines.
    if let Some(Command::Dev(args)) = cli.command {
        return chat_node::dev::run(args).await;
    }
    chat_node::telemetry::init(cli.log.log_format);
    if let Some(Command::Restore(args)) = cli.command {
        return restore(args).await;
    }
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

async fn restore(args: Box<chat_node::cli::RestoreArgs>) -> anyhow::Result<()> {
    let (id, address) = args.node.identity(std::env::var("POD_NAME").ok().as_deref())?;
    let data_dir = &args.node.data_dir;
    if args.only_id.is_some_and(|only| only != id) {
        tracing::info!(id, "not the node that restores (--only-id); nothing to do");
        return Ok(());
    }
    if args.skip_if_present && data_dir.join("db").exists() {
        tracing::info!(data_dir = %data_dir.display(), "the data dir holds a database already; not restoring");
        return Ok(());
    }
    let restored = chat_node::restore::restore(&args.from, data_dir, id, address.clone()).await?;
    tracing::info!(
        from = %args.from.display(), data_dir = %data_dir.display(), id, %address, index = restored.index,
        "restored: starts as a one-member cluster"
    );
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
