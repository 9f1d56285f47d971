//! What can go wrong with certificates.

/// A TLS setup error; each names the file or part at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Parse(String),
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("generating a key or certificate: {0}")]
    Generate(String),
}

impl Error {
    pub(crate) fn generate(e: rcgen::Error) -> Self {
        Self::Generate(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
