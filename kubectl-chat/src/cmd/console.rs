//! console: the web console for this cluster, served from here — through
//! the same connection as every other command (direct, or port-forwards in
//! kube mode) — until Ctrl-C. In kube mode the cluster view also shows the
//! ReplicatedChat's conditions and recent Events.

use std::net::SocketAddr;

use anyhow::Context;
use chat_console::state::{ConsoleState, KubeSource};
use clap::Args;

use crate::cli::Ctx;

#[derive(Debug, Args)]
pub struct Console {
    /// Where the console listens (loopback: it is yours, not the network's).
    #[arg(long, default_value = "127.0.0.1:8088")]
    pub listen: SocketAddr,
    /// Do not try to open a browser.
    #[arg(long)]
    pub no_browser: bool,
}

impl Console {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        // Plain HTTP, and your session's: for this machine only.
        anyhow::ensure!(
            !chat_console::tls::needs_tls(self.listen),
            "--listen {}: kubectl chat console serves plain HTTP on loopback only; to serve others run \
             chat-console with --tls-dir",
            self.listen
        );
        let listener =
            tokio::net::TcpListener::bind(self.listen).await.with_context(|| format!("binding {}", self.listen))?;
        let url = format!("http://{}/", listener.local_addr()?);
        println!("console: {url}  (Ctrl-C stops it)");
        if !self.no_browser {
            // Best effort: a desktop opens it; a server has no xdg-open and the URL is printed.
            let _ = std::process::Command::new("xdg-open")
                .arg(&url)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
        }
        let mut state = ConsoleState::new(ctx.client.clone(), false);
        // Kube mode: the cluster view also shows the ReplicatedChat's conditions and Events.
        if let Some(kube) = &ctx.kube {
            state = state.with_kube(KubeSource { client: kube.kube.clone(), names: kube.names.clone() });
        }
        axum::serve(listener, chat_console::http::router(state))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    }
}
