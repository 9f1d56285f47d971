//! How the console answers an error: an HTTP status that matches the
//! cluster's gRPC status, and a JSON body `{"code", "error"}` whose message
//! is the cluster's own (it names the field at fault).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chat_client::Error;
use serde::Serialize;
use tonic::Code;

/// An error the console returns to the page.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    error: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "PERMISSION_DENIED", message)
    }

    pub fn exhausted(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED", message)
    }

    /// Whether the cluster no longer knows the session's token.
    pub fn is_unauthenticated(&self) -> bool {
        self.status == StatusCode::UNAUTHORIZED
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Rejected(status) => status.code(),
            Error::Invalid(_) => Code::InvalidArgument,
            Error::NotLoggedIn => Code::Unauthenticated,
            Error::Unavailable(_) => Code::Unavailable,
        };
        let (status, name) = match code {
            Code::InvalidArgument | Code::OutOfRange => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
            Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
            Code::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            Code::AlreadyExists => (StatusCode::CONFLICT, "ALREADY_EXISTS"),
            Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
            Code::FailedPrecondition => (StatusCode::CONFLICT, "FAILED_PRECONDITION"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        };
        let message = match &e {
            Error::Rejected(status) => status.message().to_string(),
            other => other.to_string(),
        };
        ApiError::new(status, name, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(Body { code: self.code, error: &self.message })).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_statuses_map_to_http_ones_with_the_clusters_message() {
        let rejected = |code, msg: &str| ApiError::from(Error::Rejected(tonic::Status::new(code, msg)));
        let e = rejected(Code::InvalidArgument, "body: longer than 4096 bytes");
        assert_eq!(
            (e.status, e.code, e.message.as_str()),
            (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "body: longer than 4096 bytes")
        );
        assert!(rejected(Code::Unauthenticated, "x").is_unauthenticated());
        assert_eq!(rejected(Code::AlreadyExists, "x").status, StatusCode::CONFLICT);
        assert_eq!(rejected(Code::ResourceExhausted, "x").status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(ApiError::from(Error::Unavailable("down".into())).status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
