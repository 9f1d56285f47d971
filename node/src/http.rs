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
use crate::node::ChatNode;
use crate::store::query;

#[derive(Clone)]
struct AppState {
    node: Arc<ChatNode>,
    metrics: Arc<Metrics>,
}

/// Serves until `stopped` turns true.
pub async fn serve(
    listener: TcpListener,
    node: Arc<ChatNode>,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { node, metrics });
    let shutdown = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::warn!(error = %e, "http server stopped");
    }
}

/// Ready = a member of a cluster that has a leader, with the applied index
/// caught up to the commit index this node knows.
async fn readyz(State(s): State<AppState>) -> (StatusCode, String) {
    match not_ready(&s.node).await {
        None => (StatusCode::OK, "ready\n".into()),
        Some(r) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {r}\n")),
    }
}

/// Why this node is not ready to serve, or `None` when it is: the answer of
/// `/readyz` and of the gRPC health service alike.
pub async fn not_ready(node: &ChatNode) -> Option<String> {
    let status = node.status().await;
    let member = status.members.iter().any(|(id, ..)| *id == status.id);
    if !member {
        Some("not a member of a cluster yet".to_string())
    } else if status.leader.is_none() {
        Some("no leader".to_string())
    } else if status.applied_index < status.committed_index {
        Some(format!("applying: {} of {}", status.applied_index, status.committed_index))
    } else {
        None
    }
}

async fn metrics_text(State(s): State<AppState>) -> String {
    let status = s.node.status().await;
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
    let (accounts, messages) = query::estimated_counts(s.node.db());
    m.accounts.set(accounts as i64);
    m.messages.set(messages as i64);
    m.encode()
}
