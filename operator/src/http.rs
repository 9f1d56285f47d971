//! The operator's HTTP port: `/healthz` (the process runs), `/readyz` (the
//! controller has started watching), `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(|State(h): State<Health>| async move { h.metrics.encode() }))
        .with_state(health)
}

async fn readyz(State(h): State<Health>) -> (StatusCode, &'static str) {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: controller not started\n")
    }
}

/// Serves until the process ends.
///
/// # Errors
/// When serving fails.
pub async fn serve(listener: TcpListener, health: Health) -> std::io::Result<()> {
    axum::serve(listener, router(health)).await
}
