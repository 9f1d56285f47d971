//! The standard gRPC health service (`grpc.health.v1.Health`) on the public
//! port, for load balancers and `grpc_health_probe`. A node is SERVING when
//! `/readyz` would say ready (a member, a leader known, caught up); the
//! status is re-evaluated every [`EVERY`] and goes NOT_SERVING for good when
//! the node starts shutting down.

use std::sync::Arc;
use std::time::Duration;

use chat_proto::chat::chat_service_server::ChatServiceServer;
use tokio::sync::watch;
use tonic_health::server::HealthReporter;

use crate::readiness::Readiness;
use crate::service::ChatServiceImpl;

/// How often readiness is re-evaluated.
pub const EVERY: Duration = Duration::from_millis(500);

/// Keeps `reporter` true to this node's readiness until `stopped`.
pub async fn run(readiness: Arc<Readiness>, reporter: HealthReporter, mut stopped: watch::Receiver<bool>) {
    let mut serving = None;
    loop {
        let ready = readiness.not_ready().await.is_none();
        if serving != Some(ready) {
            set(&reporter, ready).await;
            serving = Some(ready);
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            _ = stopped.wait_for(|s| *s) => break,
        }
    }
    set(&reporter, false).await;
}

async fn set(reporter: &HealthReporter, serving: bool) {
    let status = if serving { tonic_health::ServingStatus::Serving } else { tonic_health::ServingStatus::NotServing };
    // The whole server ("") and the chat service by name.
    let chat = <ChatServiceServer<ChatServiceImpl> as tonic::server::NamedService>::NAME;
    for service in ["", chat] {
        reporter.set_service_status(service, status).await;
    }
}
