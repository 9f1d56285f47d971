//! `kubectl-chat`: talk to a replicated-chat cluster. Installed on PATH under
//! this name, it runs as `kubectl chat …`.
//!
//! Thin: parse arguments, connect, run one subcommand, map the outcome to an
//! exit code (0 ok, 1 user error, 2 cluster unavailable).

mod cli;
mod cmd;
mod connect;
mod output;
mod password;
mod session;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let unavailable =
                e.chain().any(|c| c.downcast_ref::<chat_client::Error>().is_some_and(|e| e.is_unavailable()));
            ExitCode::from(if unavailable { 2 } else { 1 })
        }
    }
}
