//! Moving the leader label. The client Service selects the pod labelled
//! `chat.replicated.dev/role=leader`, so two labelled pods would split client
//! traffic between an old and a new leader (CloudNativePG's open bug #10403).
//! Invariant: every stale label is removed *before* the new one is set; for a
//! moment no pod is selected, never two.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use chat_k8s::names::{ROLE_LABEL, ROLE_LEADER};

use crate::error::Result;

/// Makes `leader` (a pod name, or none) the only pod labelled leader among
/// `labelled` (the pods carrying the label now). Returns whether anything changed.
///
/// # Errors
/// The first failing patch; later patches are not attempted, so a failure
/// can leave no pod labelled but never two.
pub async fn move_leader_label(pods: &Api<Pod>, labelled: &[String], leader: Option<&str>) -> Result<bool> {
    let mut changed = false;
    for stale in labelled.iter().filter(|p| Some(p.as_str()) != leader) {
        let patch = json!({"metadata": {"labels": {ROLE_LABEL: null}}});
        pods.patch(stale, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        changed = true;
    }
    if let Some(leader) = leader.filter(|l| !labelled.iter().any(|p| p == l)) {
        let patch = json!({"metadata": {"labels": {ROLE_LABEL: ROLE_LEADER}}});
        pods.patch(leader, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        changed = true;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use chat_k8s::testing::mock_client;
    use http::Method;

    use super::*;

    fn pod(name: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "chat"}})
    }

    #[tokio::test]
    async fn the_old_label_goes_before_the_new_one_comes() {
        let (client, mut server) = mock_client("chat");
        let pods: Api<Pod> = Api::namespaced(client, "chat");
        let task = tokio::spawn(async move { move_leader_label(&pods, &["demo-0".into()], Some("demo-1")).await });
        let first = server.next(Method::PATCH, "/api/v1/namespaces/chat/pods/demo-0").await;
        assert_eq!(first.body, json!({"metadata": {"labels": {"chat.replicated.dev/role": null}}}));
        first.ok(pod("demo-0"));
        let second = server.next(Method::PATCH, "/api/v1/namespaces/chat/pods/demo-1").await;
        assert_eq!(second.body, json!({"metadata": {"labels": {"chat.replicated.dev/role": "leader"}}}));
        second.ok(pod("demo-1"));
        assert!(task.await.unwrap().unwrap());
    }

    #[tokio::test]
    async fn a_failed_unlabel_never_leads_to_two_labels() {
        let (client, mut server) = mock_client("chat");
        let pods: Api<Pod> = Api::namespaced(client, "chat");
        let task = tokio::spawn(async move { move_leader_label(&pods, &["demo-0".into()], Some("demo-1")).await });
        server.next(Method::PATCH, "/api/v1/namespaces/chat/pods/demo-0").await.fail(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "etcd timeout",
        );
        assert!(task.await.unwrap().is_err());
        server.assert_idle(std::time::Duration::from_millis(200)).await;
    }

    #[tokio::test]
    async fn a_correct_label_is_left_alone() {
        let (client, mut server) = mock_client("chat");
        let pods: Api<Pod> = Api::namespaced(client, "chat");
        assert!(!move_leader_label(&pods, &["demo-1".into()], Some("demo-1")).await.unwrap());
        server.assert_idle(std::time::Duration::from_millis(100)).await;
    }
}
