//! The client end: tonic channels whose connections are TLS over whatever
//! carries the bytes — a TCP connection, or a Kubernetes port-forward.
//!
//! The server's certificate is checked against the name in the address
//! dialled (`demo-1.demo-peers.ns.svc`, `127.0.0.1`), so reaching a pod
//! through a port-forward still verifies that pod's name.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::reload::Live;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A connection being opened.
pub type Connecting<IO> = Pin<Box<dyn Future<Output = Result<IO, BoxError>> + Send>>;

/// What tonic's `connect_with_connector` takes: opens a connection to a URI.
pub trait Connector<R>:
    tower::Service<Uri, Response = R, Error = BoxError, Future = Connecting<R>> + Clone + Send + 'static
{
}
impl<R, S> Connector<R> for S where
    S: tower::Service<Uri, Response = R, Error = BoxError, Future = Connecting<R>> + Clone + Send + 'static
{
}

/// Any byte stream a connection can run over, boxed (a port-forward's
/// stream has a type that cannot be named).
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Opens the byte stream a TLS session then runs over.
pub trait Transport: Clone + Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn open(&self, uri: &Uri) -> Connecting<Self::Io>;
}

/// Plain TCP to the URI's host and port, with `TCP_NODELAY`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tcp;

impl Transport for Tcp {
    type Io = TcpStream;

    fn open(&self, uri: &Uri) -> Connecting<TcpStream> {
        let authority = uri.authority().map(|a| a.as_str().to_string());
        Box::pin(async move {
            let authority = authority.ok_or("the address has no host:port")?;
            let tcp = TcpStream::connect(authority.as_str()).await?;
            tcp.set_nodelay(true)?;
            Ok(tcp)
        })
    }
}

/// A tonic connector: `transport`, then a TLS handshake verifying the
/// server's certificate for the URI's host.
pub fn connector<T: Transport>(transport: T, config: Live<ClientConfig>) -> impl Connector<TokioIo<TlsStream<T::Io>>> {
    tower::service_fn(move |uri: Uri| -> Connecting<TokioIo<TlsStream<T::Io>>> {
        let (transport, config) = (transport.clone(), config.current());
        Box::pin(async move {
            let name = server_name(&uri)?;
            let io = transport.open(&uri).await?;
            let tls = TlsConnector::from(Arc::clone(&config)).connect(name, io).await?;
            Ok(TokioIo::new(tls))
        })
    })
}

/// A tonic connector without TLS: `transport`'s bytes as they are. Only for
/// an explicit plaintext opt-out.
pub fn plain_connector<T: Transport>(transport: T) -> impl Connector<TokioIo<T::Io>> {
    tower::service_fn(move |uri: Uri| -> Connecting<TokioIo<T::Io>> {
        let transport = transport.clone();
        Box::pin(async move { Ok(TokioIo::new(transport.open(&uri).await?)) })
    })
}

/// The name the server's certificate must carry: the URI's host, an IP
/// address or a DNS name.
fn server_name(uri: &Uri) -> Result<ServerName<'static>, BoxError> {
    let host = uri.host().ok_or("the address has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?} is not a host name: {e}"))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_uri() {
        let name = |s: &str| server_name(&s.parse().unwrap()).map(|n| n.to_str().into_owned());
        assert_eq!(name("http://127.0.0.1:5").unwrap(), "127.0.0.1");
        assert_eq!(name("http://[::1]:5").unwrap(), "::1");
        assert_eq!(name("http://demo-0.demo-peers.ns.svc:50051").unwrap(), "demo-0.demo-peers.ns.svc");
    }
}
