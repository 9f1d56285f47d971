//! HTTPS for the console. Off loopback, the console serves TLS or nothing
//! (passwords cross it at login): `--tls-dir` names the certificate (the
//! operator issues one, role `chat-console`), reloaded when it is renewed;
//! plain HTTP there only with the explicit, logged `--plaintext-http`.
//! Handshakes are bounded like the nodes' ([`chat_tls::server`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use chat_tls::files::TlsDir;
use chat_tls::reload::Live;
use futures::{Stream, StreamExt};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

/// The server configuration from `dir` (`tls.crt`, `tls.key`, `ca.crt`),
/// following renewals as the nodes do ([`chat_tls::reload::RELOAD_EVERY`]).
/// HTTP/1.1 only (what the console's server speaks).
///
/// # Errors
/// When the files cannot be read or used.
pub fn config(dir: PathBuf) -> chat_tls::Result<Live<ServerConfig>> {
    chat_tls::reload::watch(TlsDir::new(dir), chat_tls::reload::RELOAD_EVERY, |material| {
        let mut config = chat_tls::config::server(material, chat_tls::config::ClientAuth::None)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    })
}

/// Whether serving `listen` without TLS is refused unless explicitly allowed:
/// everything but loopback.
pub fn needs_tls(listen: SocketAddr) -> bool {
    !listen.ip().is_loopback()
}

type Handshaken = Pin<Box<dyn Stream<Item = std::io::Result<TlsStream<TcpStream>>> + Send>>;

/// A listener whose connections have finished their TLS handshake.
pub struct TlsListener {
    local: SocketAddr,
    incoming: Handshaken,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Live<ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let quiet: chat_tls::server::OnRefused = Arc::new(|_| {});
        Ok(TlsListener { local, incoming: Box::pin(chat_tls::server::incoming(listener, config, "console", quiet)) })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.incoming.next().await {
                Some(Ok(tls)) => {
                    let remote = tls.get_ref().0.peer_addr().unwrap_or(self.local);
                    return (tls, remote);
                }
                // A failed handshake was logged where it happened; keep accepting.
                Some(Err(_)) => {}
                // The accept loop only ends when this listener is dropped.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_for_loopback_only() {
        assert!(!needs_tls("127.0.0.1:8088".parse().unwrap()));
        assert!(!needs_tls("[::1]:8088".parse().unwrap()));
        assert!(needs_tls("0.0.0.0:8088".parse().unwrap()));
        assert!(needs_tls("10.1.2.3:8088".parse().unwrap()));
    }
}
