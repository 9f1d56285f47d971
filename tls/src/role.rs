//! Who a certificate belongs to. On the peer port every caller presents a
//! certificate signed by the cluster's CA; its common name says what the
//! caller may do there, so a peer is known by its certificate, never by what
//! a request claims.

use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{Error, Result};

/// What the holder of a certificate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A cluster member: Raft traffic, forwarded writes, membership calls.
    Node,
    /// The operator: membership calls and status, never Raft traffic.
    Operator,
    /// A person or tool doing day-two operations (backups): never Raft
    /// traffic, never membership.
    Admin,
    /// The web console's HTTPS server certificate: admitted to no call on
    /// the peer port (the console is a client of the public port).
    Console,
}

impl Role {
    /// The common name certificates of this role carry (set it so in a
    /// certificate you bring, e.g. cert-manager's `commonName`).
    pub const fn common_name(self) -> &'static str {
        match self {
            Role::Node => "chat-node",
            Role::Operator => "chat-operator",
            Role::Admin => "chat-admin",
            Role::Console => "chat-console",
        }
    }

    fn from_common_name(cn: &str) -> Option<Self> {
        [Role::Node, Role::Operator, Role::Admin, Role::Console].into_iter().find(|r| r.common_name() == cn)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.common_name())
    }
}

/// What the project reads from a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafInfo {
    pub common_name: String,
    /// `None` for a common name no role carries.
    pub role: Option<Role>,
    pub not_after: SystemTime,
}

impl LeafInfo {
    /// How long until the certificate expires (zero once it has).
    pub fn remaining(&self) -> Duration {
        self.not_after.duration_since(SystemTime::now()).unwrap_or_default()
    }
}

/// Parses a DER certificate (the peer's, as the handshake verified it).
///
/// # Errors
/// If it is not a well-formed X.509 certificate.
pub fn parse_leaf(der: &CertificateDer<'_>) -> Result<LeafInfo> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| Error::Parse(format!("certificate: {e}")))?;
    let common_name =
        cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or_default().to_string();
    let not_after = u64::try_from(cert.validity().not_after.timestamp())
        .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(LeafInfo { role: Role::from_common_name(&common_name), common_name, not_after })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_common_names() {
        for role in [Role::Node, Role::Operator] {
            assert_eq!(Role::from_common_name(role.common_name()), Some(role));
        }
        assert_eq!(Role::from_common_name("chat-node "), None);
        assert_eq!(Role::from_common_name(""), None);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(parse_leaf(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01])).is_err());
        assert!(parse_leaf(&CertificateDer::from(Vec::new())).is_err());
    }
}
