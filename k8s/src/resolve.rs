//! Kube mode's resolution, used by `kubectl chat` and the e2e suite: which
//! ReplicatedChat the user means, and which pods to dial.
//!
//! The first seed is the pod the client Service selects (the leader, labelled
//! by the operator); the other running pods of the cluster follow as fallbacks,
//! so a command issued mid-failover — old label removed, new not yet set —
//! still finds a member to ask who leads now.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::crd::ReplicatedChat;
use crate::names::{ClusterNames, label_selector};

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no ReplicatedChat in namespace {namespace:?}: create one, or pass -n/--namespace")]
    NoCluster { namespace: String },
    #[error("{count} ReplicatedChats in namespace {namespace:?} ({names}): pick one with --cluster NAME")]
    Ambiguous { namespace: String, count: usize, names: String },
    #[error("ReplicatedChat {name:?} not found in namespace {namespace:?}")]
    NotFound { name: String, namespace: String },
    #[error("ReplicatedChat {name:?} has no running pods yet")]
    NoPods { name: String },
    #[error("Service {service:?} has no selector; was it changed by hand?")]
    NoSelector { service: String },
    #[error(
        "ConfigMap {config_map:?} (the cluster's CA certificate) not found: is the operator running? \
         --ca FILE names a CA to trust instead; --plaintext talks to a cluster without TLS"
    )]
    NoCa { config_map: String },
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

impl ResolveError {
    /// True when the Kubernetes API itself could not be reached or answered
    /// with a server error (as opposed to the user naming something absent).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Api(kube::Error::Api(status)) => status.code >= 500,
            Self::Api(_) => true,
            Self::NoPods { .. } | Self::NoCa { .. } => true,
            _ => false,
        }
    }
}

/// The ReplicatedChat named `name`, or the only one in the namespace.
///
/// # Errors
/// `NotFound`, `NoCluster`, `Ambiguous`, or `Api`.
pub async fn find_cluster(
    client: &kube::Client,
    namespace: &str,
    name: Option<&str>,
) -> Result<ReplicatedChat, ResolveError> {
    let api: Api<ReplicatedChat> = Api::namespaced(client.clone(), namespace);
    let namespace = || namespace.to_string();
    if let Some(name) = name {
        return api
            .get_opt(name)
            .await?
            .ok_or_else(|| ResolveError::NotFound { name: name.into(), namespace: namespace() });
    }
    let mut list = api.list(&ListParams::default()).await?.items;
    match list.len() {
        0 => Err(ResolveError::NoCluster { namespace: namespace() }),
        1 => Ok(list.remove(0)),
        count => {
            let names = list.iter().map(ResourceExt::name_any).collect::<Vec<_>>().join(", ");
            Err(ResolveError::Ambiguous { namespace: namespace(), count, names })
        }
    }
}

/// Addresses to seed the client with: the pods the client Service selects
/// first, then every other running pod of the cluster.
///
/// # Errors
/// `NoSelector`, `NoPods`, or `Api`.
pub async fn seeds(
    services: &Api<Service>,
    pods: &Api<Pod>,
    names: &ClusterNames,
) -> Result<Vec<String>, ResolveError> {
    let service = services.get(&names.client_service()).await?;
    let selector = service
        .spec
        .and_then(|s| s.selector)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ResolveError::NoSelector { service: names.client_service() })?;
    let selected = pods.list(&ListParams::default().labels(&label_selector(&selector))).await?.items;
    let all = pods.list(&ListParams::default().labels(&names.selector_string())).await?.items;
    let mut out: Vec<String> = Vec::new();
    for pod in selected.iter().chain(all.iter()).filter(|p| is_running(p)) {
        if let Some(ordinal) = names.id_of(&pod.name_any()) {
            let addr = names.pod_address(ordinal);
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
    }
    if out.is_empty() {
        return Err(ResolveError::NoPods { name: names.cluster.clone() });
    }
    Ok(out)
}

/// The cluster's CA certificate (PEM), from the ConfigMap the operator
/// publishes it in: reading it needs no access to Secrets.
///
/// # Errors
/// `NoCa` when the ConfigMap (or its `ca.crt`) is missing; `Api`.
pub async fn ca_certificate(config_maps: &Api<ConfigMap>, names: &ClusterNames) -> Result<String, ResolveError> {
    let missing = || ResolveError::NoCa { config_map: names.ca_config_map() };
    let config_map = config_maps.get_opt(&names.ca_config_map()).await?.ok_or_else(missing)?;
    config_map.data.and_then(|mut d| d.remove("ca.crt")).ok_or_else(missing)
}

/// A pod worth dialing: running and not on its way out.
fn is_running(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

#[cfg(test)]
mod tests {
    use http::Method;
    use serde_json::{Value, json};

    use super::*;
    use crate::testing::{ApiServer, list, mock_client};

    const RCHATS: &str = "/apis/chat.replicated.dev/v1alpha1/namespaces/chat/replicatedchats";

    fn rchat(name: &str) -> Value {
        json!({"apiVersion": "chat.replicated.dev/v1alpha1", "kind": "ReplicatedChat",
               "metadata": {"name": name, "namespace": "chat"}, "spec": {"image": "chat-node:dev"}})
    }

    fn pod(name: &str, phase: &str, terminating: bool) -> Value {
        let mut meta = json!({"name": name, "namespace": "chat"});
        if terminating {
            meta["deletionTimestamp"] = json!("2026-11-21T00:00:00Z");
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "status": {"phase": phase}})
    }

    fn service() -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "demo", "namespace": "chat"},
               "spec": {"selector": ClusterNames::new("demo", "chat").leader_selector()}})
    }

    #[tokio::test]
    async fn a_named_cluster_that_does_not_exist_is_a_clear_error() {
        let (client, mut server) = mock_client("chat");
        let task = tokio::spawn(async move { find_cluster(&client, "chat", Some("nope")).await });
        server.next(Method::GET, &format!("{RCHATS}/nope")).await.not_found();
        let err = task.await.unwrap().unwrap_err();
        assert!(matches!(err, ResolveError::NotFound { .. }), "{err}");
        assert!(!err.is_unavailable());
        assert_eq!(err.to_string(), r#"ReplicatedChat "nope" not found in namespace "chat""#);
    }

    #[tokio::test]
    async fn without_a_name_the_only_cluster_is_used_and_several_are_refused() {
        let (client, mut server) = mock_client("chat");
        let c = client.clone();
        let task = tokio::spawn(async move { find_cluster(&c, "chat", None).await });
        server.next(Method::GET, RCHATS).await.ok(list(
            "ReplicatedChat",
            "chat.replicated.dev/v1alpha1",
            vec![rchat("demo")],
        ));
        assert_eq!(task.await.unwrap().unwrap().name_any(), "demo");

        let c = client.clone();
        let task = tokio::spawn(async move { find_cluster(&c, "chat", None).await });
        let two = vec![rchat("a"), rchat("b")];
        server.next(Method::GET, RCHATS).await.ok(list("ReplicatedChat", "chat.replicated.dev/v1alpha1", two));
        let err = task.await.unwrap().unwrap_err().to_string();
        assert!(err.contains("2 ReplicatedChats") && err.contains("a, b") && err.contains("--cluster"), "{err}");

        let task = tokio::spawn(async move { find_cluster(&client, "chat", None).await });
        server.next(Method::GET, RCHATS).await.ok(list("ReplicatedChat", "chat.replicated.dev/v1alpha1", vec![]));
        let err = task.await.unwrap().unwrap_err().to_string();
        assert!(err.contains("no ReplicatedChat in namespace \"chat\""), "{err}");
    }

    /// Serves one `seeds` resolution: the client Service, the pods it selects, all pods.
    async fn serve_seeds(server: &mut ApiServer, selected: Vec<Value>, all: Vec<Value>) {
        server.next(Method::GET, "/api/v1/namespaces/chat/services/demo").await.ok(service());
        let call = server.next(Method::GET, "/api/v1/namespaces/chat/pods").await;
        assert!(call.query.contains("chat.replicated.dev%2Frole%3Dleader"), "{}", call.query);
        call.ok(list("Pod", "v1", selected));
        let call = server.next(Method::GET, "/api/v1/namespaces/chat/pods").await;
        assert!(!call.query.contains("role"), "{}", call.query);
        call.ok(list("Pod", "v1", all));
    }

    #[tokio::test]
    async fn the_selected_leader_comes_first_and_re_resolution_follows_the_label() {
        let (client, mut server) = mock_client("chat");
        let names = ClusterNames::new("demo", "chat");
        let resolve = |client: kube::Client| {
            let names = names.clone();
            tokio::spawn(async move {
                seeds(&Api::namespaced(client.clone(), "chat"), &Api::namespaced(client, "chat"), &names).await
            })
        };
        let all = || {
            vec![
                pod("demo-0", "Running", false),
                pod("demo-1", "Running", false),
                pod("demo-2", "Running", false),
                pod("demo-3", "Running", true),
                pod("demo-4", "Pending", false),
            ]
        };
        // Leader demo-2: it comes first; the terminating and pending pods are left out.
        let task = resolve(client.clone());
        serve_seeds(&mut server, vec![pod("demo-2", "Running", false)], all()).await;
        let got = task.await.unwrap().unwrap();
        assert_eq!(got, [names.pod_address(2), names.pod_address(0), names.pod_address(1)]);

        // Mid-failover: the label is off the old leader and not yet on the new one.
        let task = resolve(client.clone());
        serve_seeds(&mut server, vec![], all()).await;
        assert_eq!(task.await.unwrap().unwrap(), [0, 1, 2].map(|i| names.pod_address(i)));

        // After failover: the new leader demo-1 comes first.
        let task = resolve(client.clone());
        serve_seeds(&mut server, vec![pod("demo-1", "Running", false)], all()).await;
        assert_eq!(task.await.unwrap().unwrap()[0], names.pod_address(1));

        // No running pod at all: unavailable, not a user error.
        let task = resolve(client);
        serve_seeds(&mut server, vec![], vec![pod("demo-0", "Pending", false)]).await;
        let err = task.await.unwrap().unwrap_err();
        assert!(err.is_unavailable(), "{err}");
    }
}
