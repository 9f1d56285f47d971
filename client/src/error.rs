//! The client's error type.

use tonic::Code;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster refused the request; the status says why (bad input, auth, not found, …).
    #[error("{}", .0.message())]
    Rejected(tonic::Status),
    /// No member could serve the request before the deadline.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// A call needs a session and there is none.
    #[error("not logged in")]
    NotLoggedIn,
    /// An address or argument could not be used.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// True when the cluster could not be reached or had no leader — as opposed
    /// to refusing the request. (kubectl-chat exits 2 for these, 1 for the rest.)
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }

    /// The gRPC code behind a rejection.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Rejected(s) => Some(s.code()),
            _ => None,
        }
    }
}
