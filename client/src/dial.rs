//! How the client reaches a member address: over TLS that verifies the
//! member's certificate against the cluster's CA (or, by explicit choice,
//! plaintext), carried by direct TCP or anything else that yields a byte
//! stream (the Kubernetes port-forward of `chat-k8s` reaches pods this way).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use chat_tls::Live;
use chat_tls::connect::{Tcp, Transport, connector, plain_connector};
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// Makes a lazily connecting channel to a member's advertised `host:port`.
pub trait Dial: Send + Sync + fmt::Debug + 'static {
    /// # Errors
    /// `Invalid` if `addr` cannot be reached this way (e.g. it is not `host:port`).
    fn dial(&self, addr: &str, connect_timeout: Duration) -> Result<Channel>;
}

/// Whether connections are TLS, and whom they trust.
#[derive(Debug, Clone)]
pub enum Security {
    /// TLS, verifying the server's certificate (and presenting one, if the
    /// configuration has a client certificate: the operator does).
    Tls(Live<rustls::ClientConfig>),
    /// No TLS: only for a cluster run with `--public-plaintext`.
    Plaintext,
}

impl Security {
    /// TLS trusting the CA certificates in the PEM file at `path`.
    ///
    /// # Errors
    /// `Invalid` if the file cannot be read or holds no usable certificate.
    pub fn ca_file(path: &Path) -> Result<Self> {
        let certs = chat_tls::files::read_ca_file(path).map_err(|e| Error::Invalid(format!("--ca: {e}")))?;
        Self::trusting(&certs)
    }

    /// TLS trusting the CA certificates in `pem` (e.g. read from a ConfigMap).
    ///
    /// # Errors
    /// `Invalid` if it holds no usable certificate.
    pub fn ca_pem(pem: &[u8]) -> Result<Self> {
        let certs = chat_tls::files::certs(pem).map_err(|e| Error::Invalid(format!("CA certificate: {e}")))?;
        Self::trusting(&certs)
    }

    /// Mutual TLS with the CA, certificate and key of a TLS directory
    /// (`ca.crt`, `tls.crt`, `tls.key`): how an admin reaches a member's peer port.
    ///
    /// # Errors
    /// `Invalid` if the files cannot be read or do not fit together.
    pub fn mutual(dir: &Path) -> Result<Self> {
        let material = chat_tls::TlsDir::new(dir).load().map_err(|e| Error::Invalid(e.to_string()))?;
        Self::with_identity(&material)
    }

    /// Mutual TLS with `material` (e.g. read from a Secret).
    ///
    /// # Errors
    /// `Invalid` if the certificate and key do not fit together.
    pub fn with_identity(material: &chat_tls::files::Material) -> Result<Self> {
        let config = chat_tls::config::mutual_client(material).map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(Self::Tls(Live::fixed(config)))
    }

    fn trusting(certs: &[rustls_pki_types::CertificateDer<'static>]) -> Result<Self> {
        let config = chat_tls::config::client(certs, None).map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(Self::Tls(Live::fixed(config)))
    }

    /// A lazily connecting channel on `endpoint` whose connections `transport` opens.
    pub fn channel<T: Transport>(&self, endpoint: Endpoint, transport: T) -> Channel {
        match self {
            Security::Tls(config) => endpoint.connect_with_connector_lazy(connector(transport, config.clone())),
            Security::Plaintext => endpoint.connect_with_connector_lazy(plain_connector(transport)),
        }
    }
}

/// Direct TCP connections to the address as given.
#[derive(Debug, Clone)]
pub struct TcpDial {
    security: Security,
}

impl TcpDial {
    pub fn new(security: Security) -> Self {
        Self { security }
    }
}

impl Dial for TcpDial {
    fn dial(&self, addr: &str, connect_timeout: Duration) -> Result<Channel> {
        Ok(self.security.channel(endpoint(addr)?.connect_timeout(connect_timeout), Tcp))
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
