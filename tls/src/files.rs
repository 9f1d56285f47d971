//! Certificates on disk, in the layout of a Kubernetes TLS Secret mounted as
//! a volume: `ca.crt` (the CAs to trust — more than one while a CA is
//! rotated), `tls.crt` (this holder's certificate, then any intermediates)
//! and `tls.key` (its private key, PKCS#8, SEC1 or PKCS#1 PEM).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ca::Issued;
use crate::error::{Error, Result};

/// Certificate files are a few KiB; anything larger is not one.
const MAX_FILE: u64 = 1 << 20;

/// A directory holding `ca.crt`, `tls.crt` and `tls.key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsDir {
    pub dir: PathBuf,
}

/// The parsed contents of a [`TlsDir`].
#[derive(Debug)]
pub struct Material {
    pub roots: Vec<CertificateDer<'static>>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Material {
    /// Parses the three PEM parts; errors name `source` (a directory, a Secret) and the part.
    ///
    /// # Errors
    /// `Parse` naming the part that holds no certificate or no key.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8], source: &str) -> Result<Self> {
        let roots = certs(ca).map_err(|e| Error::Parse(format!("{source}/ca.crt: {e}")))?;
        let chain = certs(cert).map_err(|e| Error::Parse(format!("{source}/tls.crt: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| Error::Parse(format!("{source}/tls.key: no private key: {e}")))?;
        Ok(Self { roots, chain, key })
    }
}

impl TlsDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }

    /// The three files' bytes, in a fixed order: compared to see whether a
    /// rotation happened.
    ///
    /// # Errors
    /// If a file is missing, unreadable or too large.
    pub fn read_bytes(&self) -> Result<Vec<Vec<u8>>> {
        [self.ca(), self.cert(), self.key()].iter().map(|p| read_capped(p)).collect()
    }

    /// Parses bytes read by [`TlsDir::read_bytes`].
    ///
    /// # Errors
    /// `Parse` naming the file that holds no certificate or no key.
    pub fn parse(&self, bytes: &[Vec<u8>]) -> Result<Material> {
        let [ca, cert, key] = bytes else { return Err(Error::Parse("expected ca.crt, tls.crt, tls.key".into())) };
        Material::from_pem(ca, cert, key, &self.dir.display().to_string())
    }

    /// Reads and parses the directory.
    ///
    /// # Errors
    /// As [`TlsDir::read_bytes`] and [`TlsDir::parse`].
    pub fn load(&self) -> Result<Material> {
        self.parse(&self.read_bytes()?)
    }

    /// Writes a CA certificate and an issued leaf into `dir` (created if
    /// needed), the key readable by its owner only. Each file is replaced
    /// atomically (written aside, then renamed), so a node reloading while
    /// this runs reads an old or a new file, never half of one.
    ///
    /// # Errors
    /// If a file cannot be written.
    pub fn write(dir: &Path, ca_pem: &str, issued: &Issued) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io(format!("creating {}: {e}", dir.display())))?;
        let tls = Self::new(dir);
        write_atomically(&tls.ca(), ca_pem.as_bytes(), 0o644)?;
        write_atomically(&tls.key(), issued.key_pem.as_bytes(), 0o600)?;
        write_atomically(&tls.cert(), issued.cert_pem.as_bytes(), 0o644)?;
        Ok(tls)
    }
}

/// The certificates of a CA bundle file (`--ca` of a client).
///
/// # Errors
/// If it cannot be read or holds no certificate.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    certs(&read_capped(path)?).map_err(|e| Error::Parse(format!("{}: {e}", path.display())))
}

/// Every certificate in PEM `bytes`; at least one.
///
/// # Errors
/// If the PEM is malformed or holds no certificate.
pub fn certs(bytes: &[u8]) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> =
        CertificateDer::pem_slice_iter(bytes).collect::<std::result::Result<_, _>>().map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

/// The first certificate in PEM `bytes`.
///
/// # Errors
/// As [`certs`].
pub fn first_cert(bytes: &[u8]) -> Result<CertificateDer<'static>> {
    certs(bytes).map(|mut c| c.swap_remove(0)).map_err(Error::Parse)
}

fn read_capped(path: &Path) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?.len();
    if len > MAX_FILE {
        return Err(Error::Parse(format!("{}: {len} bytes is too large for a certificate file", path.display())));
    }
    std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

pub(crate) fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let aside = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(mode).open(&aside)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&aside, path)
    };
    write().map_err(|e| Error::Io(format!("writing {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use crate::ca::{Ca, Leaf};

    #[test]
    fn a_written_dir_loads_back_with_a_private_key_file() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::generate("test").unwrap();
        let dir = ca.write_leaf(&Leaf::node(["127.0.0.1"]), tmp.path()).unwrap();
        let material = dir.load().unwrap();
        assert_eq!((material.roots.len(), material.chain.len()), (1, 1));
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.key()).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_missing_or_empty_file_is_named_in_the_error() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::generate("test").unwrap();
        let dir = ca.write_leaf(&Leaf::node(["127.0.0.1"]), tmp.path()).unwrap();
        std::fs::write(dir.cert(), "").unwrap();
        assert!(dir.load().unwrap_err().to_string().contains("tls.crt"));
        std::fs::remove_file(dir.key()).unwrap();
        assert!(dir.load().unwrap_err().to_string().contains("tls.key"));
    }
}
