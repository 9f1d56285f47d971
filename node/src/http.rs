//! The HTTP side port: `/healthz`, `/readyz`, `/metrics` (for kubelet probes and Prometheus).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use openraft::ServerState;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::{Metrics, RoleLabel};
use crate::readiness::Readiness;
use crate::store::query;

#[derive(Clone)]
struct AppState {
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
}

/// Serves until `stopped` turns true.
pub async fn serve(
    listener: TcpListener,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { readiness, metrics });
    let shutdown = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::warn!(error = %e, "http server stopped");
    }
}

/// Ready, or 503 with the reason ([`Readiness`]).
async fn readyz(State(s): State<AppState>) -> (StatusCode, String) {
    match s.readiness.not_ready().await {
        None => (StatusCode::OK, "ready\n".into()),
        Some(r) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {r}\n")),
    }
}

async fn metrics_text(State(s): State<AppState>) -> String {
    let node = s.readiness.node();
    let status = node.status().await;
    let m = &s.metrics;
    m.term.set(status.term as i64);
    m.last_log_index.set(status.last_log_index as i64);
    m.committed_index.set(status.committed_index as i64);
    m.applied_index.set(status.applied_index as i64);
    m.snapshot_index.set(status.snapshot_index as i64);
    m.members.set(status.members.len() as i64);
    for (state, role) in [
        (ServerState::Leader, "leader"),
        (ServerState::Follower, "follower"),
        (ServerState::Candidate, "candidate"),
        (ServerState::Learner, "learner"),
    ] {
        m.role.get_or_create(&RoleLabel { role }).set(i64::from(status.state == state));
    }
    let (accounts, messages) = query::estimated_counts(node.db());
    m.accounts.set(accounts as i64);
    m.messages.set(messages as i64);
    m.encode()
}
