//! In Kubernetes, the elected node labels its own pod
//! `chat.replicated.dev/role=leader`, so the client Service follows the
//! leader even while the operator is down, restarting or busy (Patroni's
//! answer to the same problem: the leader updates the endpoint itself).
//!
//! Safety comes from [`chat_k8s::routing`]: the label moves only through a
//! compare-and-swap of the cluster's leader Lease carrying the Raft term,
//! and conditional writes to the pods, so a deposed leader can never label
//! itself after a newer term has been routed, and this node and the
//! operator's fast path can race without ever leaving two pods labelled.
//! The pod's ServiceAccount may do nothing else: get and patch its own
//! cluster's pods by name, get and update that one Lease.
//!
//! The Kubernetes client comes from the pod's environment (in-cluster
//! ServiceAccount token) or `KUBECONFIG`.

use std::sync::Arc;
use std::time::Duration;

use chat_k8s::ClusterNames;
use chat_k8s::routing::{Routed, Router};
use openraft::ServerState;

use crate::node::ChatNode;

/// A failed attempt is retried, for as long as we lead in that term, after
/// a wait that doubles from the first to the last (a missing Role or an API
/// server that is down should not fill the log twice a second).
const RETRY: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));
/// Waiting for a usable Kubernetes client (no credentials yet, API server down).
const CLIENT_RETRY: Duration = Duration::from_secs(5);

/// Labels this node's pod each time it is elected, until aborted.
pub async fn run(node: Arc<ChatNode>, names: ClusterNames) {
    let client = loop {
        match kube::Client::try_default().await {
            Ok(client) => break client,
            Err(e) => {
                tracing::warn!(error = %e, "no Kubernetes client; cannot label this pod when it leads");
                tokio::time::sleep(CLIENT_RETRY).await;
            }
        }
    };
    let router = Router::new(client, names);
    let mut metrics = node.raft.metrics();
    // The term we last routed (or found routed past).
    let mut routed: Option<u64> = None;
    let mut retry = RETRY.0;
    loop {
        let leading = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader).then(|| {
                let members: Vec<u64> = m.membership_config.membership().nodes().map(|(id, _)| *id).collect();
                (m.current_term, members)
            })
        };
        if let Some((term, members)) = leading
            && routed != Some(term)
        {
            match router.route(node.id, term, &members).await {
                Ok(Routed::Done { changed }) => {
                    routed = Some(term);
                    retry = RETRY.0;
                    if changed {
                        tracing::info!(term, pod = %router.names().pod(node.id), "labelled this pod leader");
                    }
                }
                Ok(Routed::Superseded { term: newer }) => {
                    routed = Some(term);
                    tracing::info!(term, newer, "a newer term is routed already; not labelling this pod");
                }
                Err(e) => {
                    tracing::warn!(term, error = %e, ?retry, "could not label this pod leader; retrying");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY.1);
                    continue;
                }
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
