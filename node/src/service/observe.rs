//! Per-RPC observability: one call wraps a handler, records its latency and
//! status code in the metrics, and logs failures with the method name.

use std::future::Future;
use std::time::Instant;

use tonic::{Code, Status};

use crate::error::Error;
use crate::metrics::{MethodLabel, Metrics, RpcLabels};

/// Runs `handler` as RPC `method`, recording duration and outcome, and maps
/// its error to a gRPC status (the one place handlers' errors become statuses).
pub async fn observe<T>(
    metrics: &Metrics,
    method: &'static str,
    handler: impl Future<Output = Result<T, Error>>,
) -> Result<T, Status> {
    let start = Instant::now();
    let result = handler.await.map_err(Status::from);
    metrics.rpc_duration.get_or_create(&MethodLabel { method }).observe(start.elapsed().as_secs_f64());
    let code = match &result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    metrics.rpc_requests.get_or_create(&RpcLabels { method, code: code_label(code) }).inc();
    if let Err(status) = &result {
        match status.code() {
            Code::Internal | Code::Unknown => {
                tracing::error!(method, code = ?status.code(), message = status.message(), "rpc failed")
            }
            _ => tracing::debug!(method, code = ?status.code(), message = status.message(), "rpc refused"),
        }
    }
    result
}

fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::InvalidArgument => "invalid_argument",
        Code::Unauthenticated => "unauthenticated",
        Code::PermissionDenied => "permission_denied",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::Unavailable => "unavailable",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::Internal => "internal",
        _ => "other",
    }
}
