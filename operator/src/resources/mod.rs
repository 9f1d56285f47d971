//! Pure builders: a ReplicatedChat in, the Kubernetes objects it owns out. No
//! API calls here, so unit tests call them directly and read the result.
//!
//! Every object carries the standard `app.kubernetes.io/*` labels and a
//! controller owner reference, so deleting the ReplicatedChat garbage-collects
//! all of it.

pub mod backup;
pub mod certificates;
pub mod console;
pub mod network_policy;
pub mod node_role;
pub mod pdb;
pub mod service_account;
pub mod services;
pub mod statefulset;

use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use chat_k8s::{ClusterNames, ReplicatedChat};

/// Names of a ReplicatedChat's objects.
pub fn names(cluster: &ReplicatedChat) -> ClusterNames {
    ClusterNames::new(cluster.name_any(), cluster.namespace().unwrap_or_else(|| "default".into()))
}

/// Metadata of an owned object called `name`.
pub fn owned_meta(cluster: &ReplicatedChat, name: String) -> ObjectMeta {
    let names = names(cluster);
    ObjectMeta {
        name: Some(name),
        namespace: Some(names.namespace.clone()),
        labels: Some(names.labels()),
        owner_references: cluster.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// Binds the Role `name` to the ServiceAccount `name` (both the cluster's own).
pub fn role_binding(cluster: &ReplicatedChat, metadata: ObjectMeta, name: String) -> RoleBinding {
    RoleBinding {
        metadata,
        role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "Role".into(), name: name.clone() },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name,
            namespace: Some(names(cluster).namespace),
            ..Subject::default()
        }]),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chat_k8s::ReplicatedChatSpec;

    use super::*;

    /// A ReplicatedChat as the API server would return it (uid set, defaults applied).
    pub fn cluster(replicas: i32) -> ReplicatedChat {
        let spec: ReplicatedChatSpec =
            serde_json::from_value(serde_json::json!({"image": "chat-node:dev", "replicas": replicas})).unwrap();
        let mut c = ReplicatedChat::new("demo", spec);
        c.metadata.namespace = Some("chat".into());
        c.metadata.uid = Some("uid-1".into());
        c
    }

    #[test]
    fn owned_objects_point_at_their_cluster() {
        let meta = owned_meta(&cluster(3), "x".into());
        let owner = &meta.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("ReplicatedChat", "demo", Some(true))
        );
        assert_eq!(meta.labels.unwrap()["app.kubernetes.io/managed-by"], "chat-operator");
    }
}
