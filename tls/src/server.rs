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

/// Why a connection was closed before it carried a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The handshake failed: no or a wrong certificate, not TLS at all.
    Handshake,
    /// The handshake did not finish within [`HANDSHAKE_TIMEOUT`].
    TimedOut,
    /// Closed unanswered: [`MAX_HANDSHAKES`] were already running.
    Shed,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Handshake => "handshake",
            Refused::TimedOut => "timed_out",
            Refused::Shed => "shed",
        }
    }
}

/// Told of every refused connection (for metrics).
pub type OnRefused = Arc<dyn Fn(Refused) + Send + Sync>;

/// Accepts connections on `listener` and yields each once its TLS handshake
/// succeeds (with `TCP_NODELAY` set). Ends when the consumer drops it.
pub fn incoming(
    listener: TcpListener,
    config: Live<ServerConfig>,
    port: &'static str,
    on_refused: OnRefused,
) -> impl Stream<Item = std::io::Result<TlsStream<TcpStream>>> + Send + 'static {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, config, port, on_refused, tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    config: Live<ServerConfig>,
    port: &'static str,
    on_refused: OnRefused,
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
            on_refused(Refused::Shed);
            tracing::debug!(port, %remote, "too many handshakes in progress; connection closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = TlsAcceptor::from(config.current());
        let (tx, on_refused) = (tx.clone(), on_refused.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send(Ok(tls)).await;
                }
                Ok(Err(e)) => {
                    on_refused(Refused::Handshake);
                    tracing::debug!(port, %remote, error = %e, "TLS handshake refused");
                }
                Err(_) => {
                    on_refused(Refused::TimedOut);
                    tracing::debug!(port, %remote, "TLS handshake timed out");
                }
            }
        });
    }
}
