//! rustls configurations for both ends, built from loaded [`Material`].
//! TLS 1.2 and 1.3 with rustls' safe defaults, ring as the crypto provider,
//! ALPN `h2` (gRPC).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};
use crate::files::Material;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(certs: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>> {
    let mut store = RootCertStore::empty();
    for cert in certs {
        store.add(cert.clone()).map_err(|e| Error::Parse(format!("CA certificate: {e}")))?;
    }
    Ok(Arc::new(store))
}

/// Whether a server asks callers for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Mutual TLS: a caller without a certificate signed by one of the
    /// material's CAs fails the handshake (the peer port).
    Required,
    /// Anyone may connect; they authenticate inside (the public port).
    None,
}

/// A server configuration presenting the material's certificate.
///
/// # Errors
/// If the key does not match the certificate or a CA does not parse.
pub fn server(material: &Material, auth: ClientAuth) -> Result<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(e.to_string()))?;
    let builder = match auth {
        ClientAuth::Required => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots(&material.roots)?, provider())
                .build()
                .map_err(|e| Error::Config(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        ClientAuth::None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(material.chain.clone(), material.key.clone_key())
        .map_err(|e| Error::Config(format!("certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A client configuration trusting `roots`, presenting `identity` if given
/// (a node calling a peer, the operator calling a node).
///
/// # Errors
/// If a CA does not parse, or the identity's key does not match its certificate.
pub fn client(
    roots_pem: &[CertificateDer<'static>],
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(roots_pem)?, provider())
        .build()
        .map_err(|e| Error::Config(format!("server verifier: {e}")))?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(e.to_string()))?
        .with_webpki_verifier(verifier);
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| Error::Config(format!("client certificate and key: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// [`client`] with the material's CA and its certificate as the identity.
///
/// # Errors
/// As [`client`].
pub fn mutual_client(material: &Material) -> Result<ClientConfig> {
    client(&material.roots, Some((material.chain.clone(), material.key.clone_key())))
}
