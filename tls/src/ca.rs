//! A certificate authority per cluster, and the certificates it issues.
//!
//! The operator keeps one per ReplicatedChat (in a Secret); `chat-node dev`,
//! the test kit, `chat-bench` and `chat-chaos` make throw-away ones, so the
//! TLS path is the one every test runs. All the cryptography is rcgen's
//! (ECDSA P-256 keys, ring underneath).

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::error::{Error, Result};
use crate::files::{TlsDir, write_atomically};
use crate::role::Role;

/// A CA: its certificate (what everyone trusts) and its key (what signs).
pub struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// What a leaf certificate is for.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Who holds it: peers are told apart by this (the certificate's common name).
    pub role: Role,
    /// Names it is valid for as a server: DNS names (wildcards allowed) or IP addresses.
    pub hosts: Vec<String>,
    pub valid_for: Duration,
}

impl Leaf {
    /// A node's certificate: serves both ports and is its client certificate
    /// when it calls other members.
    pub fn node(hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self::server(Role::Node, hosts)
    }

    /// The web console's server certificate, valid for `hosts`.
    pub fn console(hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self::server(Role::Console, hosts)
    }

    fn server(role: Role, hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { role, hosts: hosts.into_iter().map(Into::into).collect(), valid_for: DEFAULT_VALIDITY }
    }

    /// A client-only certificate (the operator's, an administrator's).
    pub fn client(role: Role) -> Self {
        Self { role, hosts: Vec::new(), valid_for: DEFAULT_VALIDITY }
    }

    pub fn valid_for(mut self, d: Duration) -> Self {
        self.valid_for = d;
        self
    }
}

/// How long a leaf is valid unless told otherwise: renewed well before it ends.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// How long a CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Certificates start being valid a little in the past: members' clocks differ.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);

impl Ca {
    /// A new CA named `name` (e.g. `replicated-chat ns/demo`).
    ///
    /// # Errors
    /// If key generation fails.
    pub fn generate(name: &str) -> Result<Self> {
        let key = KeyPair::generate().map_err(Error::generate)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        (params.not_before, params.not_after) = validity(CA_VALIDITY);
        let cert = params.self_signed(&key).map_err(Error::generate)?;
        Ok(Self { cert_pem: cert.pem(), issuer: Issuer::new(params, key) })
    }

    /// A CA kept earlier (the operator's Secret): its certificate and key as PEM.
    ///
    /// # Errors
    /// If either does not parse.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| Error::Parse(format!("CA key: {e}")))?;
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| Error::Parse(format!("CA certificate: {e}")))?;
        Ok(Self { cert_pem: cert_pem.to_string(), issuer })
    }

    /// The CA kept in `dir` as `ca.crt` and `ca.key`, made and saved there
    /// first if there is none (the key readable by its owner only).
    ///
    /// # Errors
    /// If the files exist but do not parse, or cannot be written.
    pub fn load_or_generate(dir: &Path, name: &str) -> Result<Self> {
        let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        if cert.exists() && key.exists() {
            let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| Error::Io(format!("{}: {e}", p.display())));
            return Self::from_pem(&read(&cert)?, &read(&key)?);
        }
        let ca = Self::generate(name)?;
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("creating {}: {e}", dir.display())))?;
        write_atomically(&key, ca.key_pem().as_bytes(), 0o600)?;
        write_atomically(&cert, ca.cert_pem.as_bytes(), 0o644)?;
        Ok(ca)
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key (for keeping it in a Secret). Never give it to a node.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues a leaf certificate with a fresh key.
    ///
    /// # Errors
    /// If a host is neither an IP address nor a valid DNS name.
    pub fn issue(&self, leaf: &Leaf) -> Result<Issued> {
        let key = KeyPair::generate().map_err(Error::generate)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(leaf.role.common_name());
        params.subject_alt_names = leaf.hosts.iter().map(|h| san(h)).collect::<Result<_>>()?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if !leaf.hosts.is_empty() {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = validity(leaf.valid_for);
        let cert = params.signed_by(&key, &self.issuer).map_err(Error::generate)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Writes `leaf`, issued now, with this CA's certificate into `dir` in
    /// the layout nodes read ([`TlsDir`]): what a throw-away cluster needs.
    ///
    /// # Errors
    /// If issuing or writing fails.
    pub fn write_leaf(&self, leaf: &Leaf, dir: &Path) -> Result<TlsDir> {
        let issued = self.issue(leaf)?;
        TlsDir::write(dir, &self.cert_pem, &issued)
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "replicated-chat");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn san(host: &str) -> Result<SanType> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    // rcgen takes any ASCII; a certificate must name hosts a client can dial.
    if !is_dns_name(host.strip_prefix("*.").unwrap_or(host)) {
        return Err(Error::Parse(format!("host {host:?} is neither an IP address nor a DNS name")));
    }
    let name = host.to_string().try_into().map_err(|e| Error::Parse(format!("host {host:?}: {e}")))?;
    Ok(SanType::DnsName(name))
}

/// A DNS host name: dot-separated labels of 1–63 letters, digits and
/// hyphens (not at either end of a label), 253 bytes at most, no trailing dot.
pub fn is_dns_name(name: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

fn validity(valid_for: Duration) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = SystemTime::now();
    (time::OffsetDateTime::from(now - CLOCK_SKEW), time::OffsetDateTime::from(now + valid_for))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::parse_leaf;

    #[test]
    fn a_ca_issues_leaves_it_can_be_restored_to_issue_again() {
        let ca = Ca::generate("test").unwrap();
        let node = ca.issue(&Leaf::node(["127.0.0.1", "*.demo-peers.ns.svc", "localhost"])).unwrap();
        let leaf = parse_leaf(&crate::files::first_cert(node.cert_pem.as_bytes()).unwrap()).unwrap();
        assert_eq!(leaf.role, Some(Role::Node));

        let restored = Ca::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        let op = restored.issue(&Leaf::client(Role::Operator)).unwrap();
        let leaf = parse_leaf(&crate::files::first_cert(op.cert_pem.as_bytes()).unwrap()).unwrap();
        assert_eq!(leaf.role, Some(Role::Operator));
        assert!(leaf.not_after > SystemTime::now() + Duration::from_secs(80 * 24 * 3600));
    }

    #[test]
    fn a_kept_ca_is_loaded_again() {
        let tmp = tempfile::tempdir().unwrap();
        let first = Ca::load_or_generate(tmp.path(), "kept").unwrap();
        let again = Ca::load_or_generate(tmp.path(), "kept").unwrap();
        assert_eq!(first.cert_pem(), again.cert_pem());
    }

    #[test]
    fn bad_hosts_are_refused() {
        let ca = Ca::generate("test").unwrap();
        assert!(ca.issue(&Leaf::node(["not a host name"])).is_err());
        assert!(ca.issue(&Leaf::node(["a..b"])).is_err());
        assert!(ca.issue(&Leaf::node(["*.demo-peers.ns.svc", "::1"])).is_ok());
        assert!(Ca::from_pem("garbage", &ca.key_pem()).is_err());
        assert!(Ca::from_pem(ca.cert_pem(), "garbage").is_err());
    }
}
