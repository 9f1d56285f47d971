//! The cluster's NetworkPolicy: the peer port (Raft, membership) only from
//! this cluster's own pods and the operator's; the public and HTTP ports from
//! whom `spec.networkPolicy.clientsFrom` allows (default: the namespace),
//! and the cluster's own console.
//! Mutual TLS already refuses strangers on the peer port; this keeps them
//! from reaching it at all.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use chat_k8s::ReplicatedChat;
use chat_k8s::names::{BACKUP_OF_LABEL, CONSOLE_PORT, GRPC_PORT, HTTP_PORT, OPERATOR_POD_LABEL, PEER_PORT};

use super::{names, owned_meta};

fn port(number: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(number))),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..Default::default()
    }
}

/// The policy. `operator_namespace` is where the operator's pods run. With
/// `spec.networkPolicy.enabled` off it admits everyone (the operator never
/// deletes anything; turning the policy off is turning it open).
pub fn build(cluster: &ReplicatedChat, operator_namespace: &str) -> NetworkPolicy {
    let spec = &cluster.spec.network_policy;
    let names = names(cluster);
    let selected = LabelSelector { match_labels: Some(names.selector_labels()), ..Default::default() };
    if !spec.enabled {
        return NetworkPolicy {
            metadata: owned_meta(cluster, names.network_policy()),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(selected),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule::default()]),
                ..Default::default()
            }),
        };
    }
    let members = NetworkPolicyPeer { pod_selector: Some(selected.clone()), ..Default::default() };
    let operator = NetworkPolicyPeer {
        namespace_selector: Some(labels(&[("kubernetes.io/metadata.name", operator_namespace)])),
        pod_selector: Some(labels(&[(OPERATOR_POD_LABEL, "true")])),
        ..Default::default()
    };
    // Scheduled backups (their own label, never the members').
    let backups =
        NetworkPolicyPeer { pod_selector: Some(labels(&[(BACKUP_OF_LABEL, &names.cluster)])), ..Default::default() };
    let clients = if spec.clients_from.is_empty() {
        clients(cluster)
    } else {
        // Whom the spec names, and this cluster's own console (spec.console).
        let console = LabelSelector { match_labels: Some(names.console_selector_labels()), ..Default::default() };
        let mut peers = clients(cluster);
        peers.push(NetworkPolicyPeer { pod_selector: Some(console), ..Default::default() });
        peers
    };
    NetworkPolicy {
        metadata: owned_meta(cluster, names.network_policy()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selected),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(vec![members, operator, backups]),
                    ports: Some(vec![port(PEER_PORT)]),
                },
                NetworkPolicyIngressRule { from: Some(clients), ports: Some(vec![port(GRPC_PORT), port(HTTP_PORT)]) },
            ]),
            ..Default::default()
        }),
    }
}

/// Who may be a client: `spec.networkPolicy.clientsFrom`, or by default
/// every pod of the cluster's namespace (a peer with only an empty pod selector).
fn clients(cluster: &ReplicatedChat) -> Vec<NetworkPolicyPeer> {
    let from = &cluster.spec.network_policy.clients_from;
    if from.is_empty() {
        vec![NetworkPolicyPeer { pod_selector: Some(LabelSelector::default()), ..Default::default() }]
    } else {
        from.clone()
    }
}

/// The console's own policy (`<name>-console`): its port admits the same
/// clients as the nodes' public port, so the console — which chats on a
/// browser's behalf — is no way around `clientsFrom`. (`kubectl
/// port-forward` reaches it through the kubelet, which no policy stops.)
pub fn console(cluster: &ReplicatedChat) -> NetworkPolicy {
    let names = names(cluster);
    let mut metadata = owned_meta(cluster, names.console());
    metadata.labels.get_or_insert_with(Default::default).extend(names.console_selector_labels());
    let selected = LabelSelector { match_labels: Some(names.console_selector_labels()), ..Default::default() };
    let rule = if cluster.spec.network_policy.enabled {
        NetworkPolicyIngressRule { from: Some(clients(cluster)), ports: Some(vec![port(CONSOLE_PORT)]) }
    } else {
        NetworkPolicyIngressRule::default()
    };
    NetworkPolicy {
        metadata,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selected),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![rule]),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::cluster;

    #[test]
    fn the_peer_port_admits_only_members_and_the_operator() {
        let policy = build(&cluster(3), "chat-system").spec.unwrap();
        let rules = policy.ingress.unwrap();
        let peer = &rules[0];
        assert_eq!(peer.ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(50052)));
        let from = peer.from.as_ref().unwrap();
        assert_eq!(
            from[0].pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["app.kubernetes.io/instance"],
            "demo"
        );
        assert!(from[0].namespace_selector.is_none(), "members of this namespace only");
        assert_eq!(
            from[1].namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["kubernetes.io/metadata.name"],
            "chat-system"
        );
        let backups = from[2].pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
        assert_eq!(backups["chat.replicated.dev/backup-of"], "demo", "the scheduled backups of this cluster");
        // Clients: the namespace by default, on the public and HTTP ports only.
        let clients = &rules[1];
        let ports: Vec<_> = clients.ports.as_ref().unwrap().iter().map(|p| p.port.clone()).collect();
        assert_eq!(ports, [Some(IntOrString::Int(50051)), Some(IntOrString::Int(8080))]);
        assert_eq!(clients.from.as_ref().unwrap()[0].pod_selector, Some(LabelSelector::default()));
        assert_eq!(policy.policy_types.unwrap(), ["Ingress"]);
    }

    #[test]
    fn clients_come_from_the_spec_and_the_policy_can_be_turned_off() {
        let mut c = cluster(3);
        c.spec.network_policy.clients_from = vec![NetworkPolicyPeer {
            ip_block: Some(k8s_openapi::api::networking::v1::IPBlock { cidr: "10.0.0.0/8".into(), except: None }),
            ..Default::default()
        }];
        let rules = build(&c, "ops").spec.unwrap().ingress.unwrap();
        let from = rules[1].from.as_ref().unwrap();
        assert_eq!(from[0].ip_block.as_ref().unwrap().cidr, "10.0.0.0/8");
        let console_pods = from[1].pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap();
        assert_eq!(console_pods["app.kubernetes.io/name"], "chat-console", "and the cluster's own console");
        c.spec.network_policy.enabled = false;
        let open = build(&c, "ops").spec.unwrap().ingress.unwrap();
        assert_eq!(open, [NetworkPolicyIngressRule::default()], "one rule with no from and no ports: everyone");
        assert_eq!(console(&c).spec.unwrap().ingress.unwrap(), [NetworkPolicyIngressRule::default()]);
    }

    #[test]
    fn the_console_admits_the_same_clients_as_the_public_port_and_only_on_its_own() {
        let mut c = cluster(3);
        let policy = console(&c).spec.unwrap();
        let selected = policy.pod_selector.unwrap().match_labels.unwrap();
        assert_eq!(selected["app.kubernetes.io/name"], "chat-console");
        let rule = &policy.ingress.unwrap()[0];
        assert_eq!(rule.ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(8088)));
        assert_eq!(rule.from.as_ref().unwrap()[0].pod_selector, Some(LabelSelector::default()), "the namespace");
        c.spec.network_policy.clients_from = vec![NetworkPolicyPeer {
            ip_block: Some(k8s_openapi::api::networking::v1::IPBlock { cidr: "10.0.0.0/8".into(), except: None }),
            ..Default::default()
        }];
        let from = console(&c).spec.unwrap().ingress.unwrap()[0].from.clone().unwrap();
        assert_eq!(from.len(), 1);
        assert_eq!(from[0].ip_block.as_ref().unwrap().cidr, "10.0.0.0/8");
    }
}
