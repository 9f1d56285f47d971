//! Accepting TLS connections for a tonic server.
//!
//! tonic's own TLS takes a fixed configuration; ours must follow certificate
//! rotations, so the handshake happens here with the current [`Live`]
//! configuration and tonic is handed finished `TlsStream`s (for which it
//! records the peer's certificates in each request's extensions, see
//! [`crate::peer_role`]).
//!
//! Strangers reach this port, so handshakes are bounded: each gets
//! [`HANDSHAKE_TIMEOUT`], at most [`MAX_HANDSHAKES`] run at once (beyond
//! that a new connection is closed at once), and none holds up accepting
//! the next connection. A caller without a valid certificate on a
//! mutual-TLS port is refused here, before any byte of a request is decoded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::Stream;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use crate::reload::Live;

/// How long a connection may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once, per listener.
pub const MAX_HANDSHAKES: usize = 256;

/// Counts of refused connections, for metrics.
#[derive(Debug, Default)]
pub struct HandshakeStats {
    /// Handshakes that failed: no or a wrong certificate, not TLS, timed out.
    pub failed: AtomicU64,
    /// Connections closed unanswered because [`MAX_HANDSHAKES`] were running.
    pub shed: AtomicU64,
}

/// Accepts connections on `listener` and yields each once its TLS handshake
/// succeeds (with `TCP_NODELAY` set). Ends when the consumer drops it.
pub fn incoming(
    listener: TcpListener,
    config: Live<ServerConfig>,
    port: &'static str,
    stats: Arc<HandshakeStats>,
) -> impl Stream<Item = std::io::Result<TlsStream<TcpStream>>> + Send + 'static {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, config, port, stats, tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    config: Live<ServerConfig>,
    port: &'static str,
    stats: Arc<HandshakeStats>,
    tx: mpsc::Sender<std::io::Result<TlsStream<TcpStream>>>,
) {
    // Bounds handshakes in flight; a permit is held until one ends.
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => return,
        };
        let (tcp, remote) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(port, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            stats.shed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(port, %remote, "too many handshakes in progress; connection closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(config.current());
        let (tx, stats) = (tx.clone(), stats.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send(Ok(tls)).await;
                }
                Ok(Err(e)) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(port, %remote, error = %e, "TLS handshake refused");
                }
                Err(_) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(port, %remote, "TLS handshake timed out");
                }
            }
        });
    }
}
