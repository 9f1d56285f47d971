//! The node's error type and its one mapping onto gRPC status codes.

use chat_proto::LEADER_HINT;
use tonic::{Code, Status};

use crate::command::Rejection;
use crate::typ::NodeId;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The request is well-formed but the cluster's state forbids it now.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A size, count or rate limit was reached; the message names it.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The state machine refused the command.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// This node cannot serve the request now: no leader, no quorum, shutting down.
    #[error("{message}")]
    Unavailable { message: String, leader: Option<(NodeId, String)> },
    /// The request did not finish in its time budget (usually: no quorum).
    #[error("{0}")]
    Timeout(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    pub fn unavailable(msg: impl Into<String>) -> Self {
        Error::Unavailable { message: msg.into(), leader: None }
    }

    /// A label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::PermissionDenied(_) => "permission_denied",
            Error::FailedPrecondition(_) => "failed_precondition",
            Error::ResourceExhausted(_) => "resource_exhausted",
            Error::Rejected(_) => "rejected",
            Error::Unavailable { .. } => "unavailable",
            Error::Timeout(_) => "timeout",
            Error::Storage(_) => "storage",
            Error::Internal(_) => "internal",
        }
    }
}

impl From<crate::typ::StorageError> for Error {
    fn from(e: crate::typ::StorageError) -> Self {
        Error::Storage(e.to_string())
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::InvalidArgument(_) => Status::invalid_argument(message),
            Error::Unauthenticated(_) => Status::unauthenticated(message),
            Error::PermissionDenied(_) => Status::permission_denied(message),
            Error::FailedPrecondition(_) => Status::failed_precondition(message),
            Error::ResourceExhausted(_) => Status::resource_exhausted(message),
            Error::Rejected(r) => {
                let code = match r {
                    Rejection::AccountExists(_) => Code::AlreadyExists,
                    Rejection::NoSuchAccount(_) | Rejection::NoSuchMessage(_) => Code::NotFound,
                    Rejection::InvalidSession => Code::Unauthenticated,
                    Rejection::NotYourMessage(_) => Code::PermissionDenied,
                    Rejection::Invalid(_) => Code::InvalidArgument,
                };
                Status::new(code, message)
            }
            Error::Unavailable { leader, .. } => {
                let mut status = Status::unavailable(message);
                if let Some((_, addr)) = leader
                    && let Ok(value) = addr.parse()
                {
                    status.metadata_mut().insert(LEADER_HINT, value);
                }
                status
            }
            Error::Timeout(_) => Status::unavailable(message),
            Error::Storage(_) | Error::Internal(_) => Status::internal(message),
        }
    }
}

/// Turns a status received from a peer back into an error, keeping its code's meaning.
impl From<Status> for Error {
    fn from(s: Status) -> Self {
        let msg = s.message().to_string();
        match s.code() {
            Code::InvalidArgument => Error::InvalidArgument(msg),
            Code::Unauthenticated => Error::Unauthenticated(msg),
            Code::PermissionDenied => Error::PermissionDenied(msg),
            Code::FailedPrecondition => Error::FailedPrecondition(msg),
            Code::ResourceExhausted => Error::ResourceExhausted(msg),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => Error::unavailable(msg),
            _ => Error::Internal(format!("{}: {msg}", s.code())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_map_to_their_codes() {
        let code = |r| Status::from(Error::Rejected(r)).code();
        assert_eq!(code(Rejection::AccountExists("a".into())), Code::AlreadyExists);
        assert_eq!(code(Rejection::NoSuchAccount("a".into())), Code::NotFound);
        assert_eq!(code(Rejection::InvalidSession), Code::Unauthenticated);
        assert_eq!(code(Rejection::NotYourMessage(1)), Code::PermissionDenied);
    }

    #[test]
    fn unavailable_carries_the_leader_hint() {
        let status = Status::from(Error::Unavailable {
            message: "not leader".into(),
            leader: Some((2, "10.0.0.2:50051".into())),
        });
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.metadata().get(LEADER_HINT).unwrap(), "10.0.0.2:50051");
    }
}
