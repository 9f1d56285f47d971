//! The Services: a headless one for pod DNS and Raft traffic (both ports);
//! the client Service that routes only to the pod labelled leader; `-ro`
//! over the ready members that are not the leader (followers and read
//! replicas, as CloudNativePG's `-ro`); `-r` over every ready member. The
//! last three carry the public port only.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use chat_k8s::ReplicatedChat;
use chat_k8s::names::{GRPC_PORT, PEER_PORT, READ_ONLY_LABEL};

use super::{names, owned_meta};

/// Headless, and publishing not-ready pods: a member that is catching up (not
/// ready) must still be reachable by its peers, or it never catches up.
pub fn peers(cluster: &ReplicatedChat) -> Service {
    let names = names(cluster);
    Service {
        metadata: owned_meta(cluster, names.peers_service()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names.selector_labels()),
            ports: Some(vec![port("grpc", i32::from(GRPC_PORT)), port("peer", i32::from(PEER_PORT))]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Selects the leader only, so clients reach it without a forwarding hop.
pub fn client(cluster: &ReplicatedChat) -> Service {
    let names = names(cluster);
    public(cluster, names.client_service(), names.leader_selector())
}

/// Ready followers and read replicas: for SESSION and STALE reads and
/// Subscribe, never the leader's load.
pub fn read_only(cluster: &ReplicatedChat) -> Service {
    let names = names(cluster);
    let mut selector = names.selector_labels();
    selector.insert(READ_ONLY_LABEL.into(), "true".into());
    public(cluster, names.read_only_service(), selector)
}

/// Every ready member.
pub fn any_member(cluster: &ReplicatedChat) -> Service {
    let names = names(cluster);
    public(cluster, names.any_member_service(), names.selector_labels())
}

fn public(cluster: &ReplicatedChat, name: String, selector: std::collections::BTreeMap<String, String>) -> Service {
    Service {
        metadata: owned_meta(cluster, name),
        spec: Some(ServiceSpec {
            type_: Some(cluster.spec.service.type_.as_str().into()),
            selector: Some(selector),
            ports: Some(vec![port("grpc", cluster.spec.service.port)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Service port `number` onto the container port called `name`.
fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: number,
        target_port: Some(IntOrString::String(name.into())),
        app_protocol: Some("kubernetes.io/h2c".into()),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::cluster;

    #[test]
    fn the_client_service_selects_the_leader_and_peers_see_everyone() {
        let c = cluster(3);
        let client = client(&c).spec.unwrap();
        assert_eq!(client.selector.unwrap()["chat.replicated.dev/role"], "leader");
        assert_eq!(client.ports.unwrap()[0].port, 50051);
        let peers = peers(&c).spec.unwrap();
        assert_eq!(peers.cluster_ip.as_deref(), Some("None"));
        assert_eq!(peers.publish_not_ready_addresses, Some(true));
        assert!(!peers.selector.unwrap().contains_key("chat.replicated.dev/role"));
        let ports: Vec<i32> = peers.ports.unwrap().iter().map(|p| p.port).collect();
        assert_eq!(ports, [50051, 50052]);
    }

    #[test]
    fn ro_selects_members_marked_read_only_and_r_every_member() {
        let c = cluster(3);
        let ro = read_only(&c);
        assert_eq!(ro.metadata.name.as_deref(), Some("demo-ro"));
        let selector = ro.spec.unwrap().selector.unwrap();
        assert_eq!(selector[READ_ONLY_LABEL], "true");
        assert!(!selector.contains_key("chat.replicated.dev/role"), "never the leader's label");
        let r = any_member(&c);
        assert_eq!(r.metadata.name.as_deref(), Some("demo-r"));
        assert_eq!(r.spec.unwrap().selector.unwrap(), names(&c).selector_labels());
    }
}
