//! The nodes' rights: exactly what labelling their own pod when elected
//! needs ([`chat_k8s::routing`]) — get and patch this cluster's pods, by
//! name, and get and update its leader Lease, by name. Nothing to list,
//! nothing in other namespaces, nothing else in this one.

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};

use chat_k8s::ReplicatedChat;
use chat_k8s::names::REPLICA_ID_BASE;

use super::{names, owned_meta, role_binding};

/// The Role; `voters` and `replicas` are how many pods of each StatefulSet it
/// covers (the larger of the spec's count and the pods that exist): an elected
/// node fences every member's pod, read replicas' included.
pub fn role(cluster: &ReplicatedChat, voters: u64, replicas: u64) -> Role {
    let names = names(cluster);
    let rule = |group: &str, resource: &str, verbs: &[&str], resource_names: Vec<String>| PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(vec![resource.into()]),
        verbs: verbs.iter().map(ToString::to_string).collect(),
        resource_names: Some(resource_names),
        ..PolicyRule::default()
    };
    Role {
        metadata: owned_meta(cluster, names.node_role()),
        rules: Some(vec![
            rule(
                "",
                "pods",
                &["get", "patch"],
                (0..voters.max(1)).chain((0..replicas).map(|k| REPLICA_ID_BASE + k)).map(|id| names.pod(id)).collect(),
            ),
            rule("coordination.k8s.io", "leases", &["get", "update"], vec![names.leader_lease()]),
        ]),
    }
}

/// Binds the Role to the nodes' ServiceAccount.
pub fn binding(cluster: &ReplicatedChat) -> RoleBinding {
    let names = names(cluster);
    role_binding(cluster, owned_meta(cluster, names.node_role()), names.node_role())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::cluster;

    #[test]
    fn nodes_may_label_their_own_pods_and_update_their_lease_and_nothing_else() {
        let role = role(&cluster(3), 5, 2);
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].resources.as_deref(), Some(&["pods".to_string()][..]));
        assert_eq!(rules[0].verbs, ["get", "patch"]);
        let pods = ["demo-0", "demo-1", "demo-2", "demo-3", "demo-4", "demo-replica-0", "demo-replica-1"];
        assert_eq!(rules[0].resource_names.as_ref().unwrap(), &pods);
        assert_eq!(rules[1].verbs, ["get", "update"]);
        assert_eq!(rules[1].resource_names.as_ref().unwrap(), &["demo-leader"]);
        let binding = binding(&cluster(3));
        assert_eq!(binding.role_ref.name, "demo-node");
        assert_eq!(binding.subjects.unwrap()[0].name, "demo-node");
    }
}
