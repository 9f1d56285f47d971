//! How the client reaches a member address. Plain TCP by default; anything
//! that yields a byte stream can stand in (the Kubernetes port-forward dialer
//! of `chat-k8s` reaches pods this way from outside the cluster).

use std::fmt;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// Makes a lazily connecting channel to a member's advertised `host:port`.
pub trait Dial: Send + Sync + fmt::Debug + 'static {
    /// # Errors
    /// `Invalid` if `addr` cannot be reached this way (e.g. it is not `host:port`).
    fn dial(&self, addr: &str, connect_timeout: Duration) -> Result<Channel>;
}

/// Direct TCP connections to the address as given.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpDial;

impl Dial for TcpDial {
    fn dial(&self, addr: &str, connect_timeout: Duration) -> Result<Channel> {
        Ok(endpoint(addr)?.connect_timeout(connect_timeout).tcp_nodelay(true).connect_lazy())
    }
}

/// The gRPC endpoint for `host:port`, for dialers that bring their own connector.
///
/// # Errors
/// `Invalid` if `addr` is not `host:port`.
pub fn endpoint(addr: &str) -> Result<Endpoint> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Error::Invalid(format!("address {addr:?} is not host:port: {e}")))
}
