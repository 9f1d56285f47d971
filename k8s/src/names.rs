//! The names, labels and ports the operator gives a cluster's objects, in one
//! place: the operator creates them, `kubectl chat` and the e2e suite find
//! them, and nobody spells them twice.

use std::collections::BTreeMap;

/// API group of the custom resource, also the prefix of our labels.
pub const GROUP: &str = "chat.replicated.dev";
/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "chat-operator";
/// Read replicas' Raft ids start here: their StatefulSet numbers its pods
/// from 0 too, and the nodes add this (`--id-offset`). Voters stay below it.
pub const REPLICA_ID_BASE: u64 = 1000;
/// On read replicas' pods (and in their StatefulSet's selector, which must
/// not be the voters'): `"true"`.
pub const READ_REPLICA_LABEL: &str = "chat.replicated.dev/read-replica";
/// `"true"` on every member that is not the leader — followers (set by the
/// leader routing when it fences them, removed when it labels one leader) and
/// read replicas (in their template). The `-ro` Service selects it.
pub const READ_ONLY_LABEL: &str = "chat.replicated.dev/read-only";
/// Label the operator moves to the pod that leads; the client Service selects it.
pub const ROLE_LABEL: &str = "chat.replicated.dev/role";
pub const ROLE_LEADER: &str = "leader";
/// On the leader Lease: the Raft term of its holder. On a pod: the newest term
/// whose leader label writer wrote it (labelled it, or fenced it off).
pub const TERM_ANNOTATION: &str = "chat.replicated.dev/term";
/// On a ReplicatedChat: asks for a rolling restart (leader last). The
/// operator copies it into the pod template, so a new value is a new
/// template; `kubectl chat restart` sets it to the time of asking.
pub const RESTARTED_AT_ANNOTATION: &str = "chat.replicated.dev/restartedAt";
/// On a ReplicatedChat: asks the operator to hand leadership to this pod
/// (`kubectl chat promote POD`); it removes the annotation once done or refused.
pub const PROMOTE_ANNOTATION: &str = "chat.replicated.dev/promote";
/// Public gRPC port of every node: the chat API and GetStatus.
pub const GRPC_PORT: u16 = 50051;
/// Peer gRPC port of every node: Raft traffic and membership (mutual TLS).
pub const PEER_PORT: u16 = 50052;
/// HTTP port of every node: /healthz, /readyz, /metrics.
pub const HTTP_PORT: u16 = 8080;
/// The web console's HTTP port.
pub const CONSOLE_PORT: u16 = 8088;
/// Label of the scheduled backups' pods (value: the cluster's name): the
/// NetworkPolicy admits them to the peer port. Not the members' labels, so no
/// Service, StatefulSet or budget ever selects them.
pub const BACKUP_OF_LABEL: &str = "chat.replicated.dev/backup-of";
/// Label the operator's own pods carry (the chart sets it): the NetworkPolicy
/// admits them to the peer port.
pub const OPERATOR_POD_LABEL: &str = "chat.replicated.dev/operator";
/// Where a node's certificates (the TLS Secret) are mounted.
pub const TLS_DIR: &str = "/etc/chat/tls";
/// Where a node's volume is mounted.
pub const DATA_DIR: &str = "/var/lib/chat";
/// Name of the volume claim template (PVCs are `data-<pod>`).
pub const DATA_VOLUME: &str = "data";

/// The names of everything one ReplicatedChat owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNames {
    /// The ReplicatedChat's own name.
    pub cluster: String,
    pub namespace: String,
}

impl ClusterNames {
    pub fn new(cluster: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self { cluster: cluster.into(), namespace: namespace.into() }
    }

    /// The StatefulSet; pods are `<statefulset>-<ordinal>`.
    pub fn statefulset(&self) -> String {
        self.cluster.clone()
    }

    /// The client Service: selects only the leader pod.
    pub fn client_service(&self) -> String {
        self.cluster.clone()
    }

    /// The Service over every ready member but the leader (followers and read replicas).
    pub fn read_only_service(&self) -> String {
        format!("{}-ro", self.cluster)
    }

    /// The Service over every ready member.
    pub fn any_member_service(&self) -> String {
        format!("{}-r", self.cluster)
    }

    /// The headless Service that gives every pod a DNS name, ready or not.
    pub fn peers_service(&self) -> String {
        format!("{}-peers", self.cluster)
    }

    pub fn network_policy(&self) -> String {
        self.cluster.clone()
    }

    pub fn pod_disruption_budget(&self) -> String {
        self.cluster.clone()
    }

    /// The nodes' ServiceAccount. Its only rights (the Role of the same name):
    /// read and label the cluster's own pods, read and update its leader Lease.
    pub fn service_account(&self) -> String {
        format!("{}-node", self.cluster)
    }

    /// The Role and RoleBinding giving the nodes' ServiceAccount its rights.
    pub fn node_role(&self) -> String {
        self.service_account()
    }

    /// The Lease that fences the leader label by Raft term (see `routing`).
    pub fn leader_lease(&self) -> String {
        format!("{}-leader", self.cluster)
    }

    /// The Secret holding the cluster's CA certificate and key (the operator's alone).
    pub fn ca_secret(&self) -> String {
        format!("{}-ca", self.cluster)
    }

    /// The TLS Secret the pods mount: CA certificate, node certificate and key.
    pub fn tls_secret(&self) -> String {
        format!("{}-tls", self.cluster)
    }

    /// `<name>-admin-tls`: an admin's client certificate (`chat-admin`) for
    /// the peer port (backups). Whoever may read this Secret is an admin.
    pub fn admin_secret(&self) -> String {
        format!("{}-admin-tls", self.cluster)
    }

    /// The CronJob of scheduled backups.
    pub fn backup_cron_job(&self) -> String {
        format!("{}-backup", self.cluster)
    }

    /// The ConfigMap holding only the CA certificate, for clients that may
    /// not read Secrets (`kubectl chat` in kube mode, the console).
    pub fn ca_config_map(&self) -> String {
        format!("{}-ca", self.cluster)
    }

    /// Every name a node's certificate must be valid for: each pod's DNS name
    /// (through the peers Service, short and fully qualified) and the client
    /// Service's names; and loopback, for `kubectl exec … localhost`.
    pub fn node_hosts(&self) -> Vec<String> {
        let (peers, ns) = (self.peers_service(), &self.namespace);
        let mut hosts = vec![format!("*.{peers}.{ns}.svc"), format!("*.{peers}.{ns}.svc.cluster.local")];
        for service in [self.client_service(), self.read_only_service(), self.any_member_service()] {
            hosts.extend([
                service.clone(),
                format!("{service}.{ns}"),
                format!("{service}.{ns}.svc"),
                format!("{service}.{ns}.svc.cluster.local"),
            ]);
        }
        hosts.extend(["localhost".into(), "127.0.0.1".into()]);
        hosts
    }

    /// The web console's Deployment, Service, ServiceAccount, Role and RoleBinding.
    pub fn console(&self) -> String {
        format!("{}-console", self.cluster)
    }

    /// `<name>-console-tls`: the console's HTTPS certificate (role
    /// `chat-console`), issued by the operator unless `spec.console.tlsSecret`.
    pub fn console_tls_secret(&self) -> String {
        format!("{}-console-tls", self.cluster)
    }

    /// Every name the console's certificate must be valid for: its Service's
    /// names, and loopback (`kubectl port-forward svc/<name>-console`).
    pub fn console_hosts(&self) -> Vec<String> {
        let (service, ns) = (self.console(), &self.namespace);
        vec![
            service.clone(),
            format!("{service}.{ns}"),
            format!("{service}.{ns}.svc"),
            format!("{service}.{ns}.svc.cluster.local"),
            "localhost".into(),
            "127.0.0.1".into(),
        ]
    }

    /// Labels that select the console's pods: not the nodes' (no node
    /// Service, PDB or policy may take a console pod for a member).
    pub fn console_selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "chat-console".to_string()),
            ("app.kubernetes.io/instance".to_string(), self.cluster.clone()),
        ])
    }

    /// Every member's public address (seeds for a client inside the cluster).
    pub fn member_addresses(&self, voters: u64, replicas: u64) -> Vec<String> {
        (0..voters).chain((0..replicas).map(|k| REPLICA_ID_BASE + k)).map(|id| self.pod_address(id)).collect()
    }

    /// The read replicas' StatefulSet (its pods' Raft ids start at [`REPLICA_ID_BASE`]).
    pub fn replica_statefulset(&self) -> String {
        format!("{}-replica", self.cluster)
    }

    /// The pod of member `id`: `<name>-<id>` for a voter, `<name>-replica-<k>`
    /// for read replica `REPLICA_ID_BASE + k`.
    pub fn pod(&self, id: u64) -> String {
        match id.checked_sub(REPLICA_ID_BASE) {
            Some(k) => format!("{}-{k}", self.replica_statefulset()),
            None => format!("{}-{id}", self.statefulset()),
        }
    }

    /// The member id of one of this cluster's pods (the inverse of [`ClusterNames::pod`]).
    pub fn id_of(&self, pod: &str) -> Option<u64> {
        if let Some(k) = pod.strip_prefix(&format!("{}-", self.replica_statefulset())) {
            return k.parse::<u64>().ok().filter(|&k| k < REPLICA_ID_BASE).map(|k| k + REPLICA_ID_BASE);
        }
        pod.strip_prefix(&format!("{}-", self.statefulset()))?.parse::<u64>().ok().filter(|&o| o < REPLICA_ID_BASE)
    }

    pub fn pvc(&self, ordinal: u64) -> String {
        format!("{DATA_VOLUME}-{}", self.pod(ordinal))
    }

    /// The public address pod `ordinal` advertises to clients (pod DNS
    /// through the peers Service).
    pub fn pod_address(&self, ordinal: u64) -> String {
        format!("{}:{GRPC_PORT}", self.pod_host(ordinal))
    }

    /// The peer address pod `ordinal` advertises to the other members.
    pub fn pod_peer_address(&self, ordinal: u64) -> String {
        format!("{}:{PEER_PORT}", self.pod_host(ordinal))
    }

    fn pod_host(&self, ordinal: u64) -> String {
        format!("{}.{}.{}.svc", self.pod(ordinal), self.peers_service(), self.namespace)
    }

    /// Labels that select every pod of this cluster (StatefulSet selector).
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "replicated-chat".to_string()),
            ("app.kubernetes.io/instance".to_string(), self.cluster.clone()),
        ])
    }

    /// Standard labels on every owned object.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert("app.kubernetes.io/component".into(), "chat-node".into());
        labels.insert("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into());
        labels.insert("app.kubernetes.io/part-of".into(), "replicated-chat".into());
        labels
    }

    /// The client Service's selector: this cluster's pods, leader only.
    pub fn leader_selector(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert(ROLE_LABEL.into(), ROLE_LEADER.into());
        labels
    }

    /// `key=value,…` form of [`ClusterNames::selector_labels`] for list calls and `status.selector`.
    pub fn selector_string(&self) -> String {
        label_selector(&self.selector_labels())
    }
}

/// `k=v,k=v` for a label map (sorted, as a BTreeMap iterates).
pub fn label_selector(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// The ordinal at the end of a StatefulSet pod name: `demo-2` → 2. It is also the node's Raft id.
pub fn ordinal(pod: &str) -> Option<u64> {
    pod.rsplit_once('-')?.1.parse().ok()
}

/// The pod and port an advertised address names: `demo-1.demo-peers.ns.svc:50051`
/// → (`demo-1`, 50051). A bare `demo-1:50051` works too.
pub fn pod_and_port(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let pod = host.split('.').next().filter(|p| !p.is_empty())?;
    Some((pod.to_string(), port.parse().ok()?))
}

/// The namespace a pod DNS address names: `demo-1.demo-peers.chat.svc[.cluster.local]:50051`
/// → `chat`. Anything else (a bare pod name, an IP address) names none.
pub fn namespace_of(addr: &str) -> Option<&str> {
    let host = addr.rsplit_once(':')?.0;
    let labels: Vec<&str> = host.split('.').collect();
    (labels.len() >= 4 && labels[3] == "svc" && !labels[2].is_empty()).then(|| labels[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_cluster_name() {
        let n = ClusterNames::new("demo", "chat");
        assert_eq!(n.pod(2), "demo-2");
        assert_eq!(n.pvc(2), "data-demo-2");
        assert_eq!(n.pod_address(1), "demo-1.demo-peers.chat.svc:50051");
        assert_eq!(n.selector_string(), "app.kubernetes.io/instance=demo,app.kubernetes.io/name=replicated-chat");
        assert_eq!(n.leader_selector().get(ROLE_LABEL).map(String::as_str), Some("leader"));
    }

    #[test]
    fn addresses_map_back_to_pods() {
        let n = ClusterNames::new("demo", "chat");
        assert_eq!(pod_and_port(&n.pod_address(1)), Some(("demo-1".into(), 50051)));
        assert_eq!(pod_and_port("demo-0:7"), Some(("demo-0".into(), 7)));
        assert_eq!(pod_and_port("demo-0"), None);
        assert_eq!(pod_and_port(":1"), None);
        assert_eq!(pod_and_port("a:notaport"), None);
        assert_eq!(namespace_of(&n.pod_address(1)), Some("chat"));
        assert_eq!(namespace_of("demo-0:7"), None);
        assert_eq!(namespace_of("127.0.0.1:7"), None);
        assert_eq!(namespace_of("demo-0.demo-peers.chat.svc.cluster.local:7"), Some("chat"));
        assert_eq!(ordinal("demo-12"), Some(12));
        assert_eq!(ordinal("demo"), None);
    }

    #[test]
    fn read_replicas_have_their_own_pods_and_ids() {
        let n = ClusterNames::new("demo", "chat");
        assert_eq!(n.pod(2), "demo-2");
        assert_eq!(n.pod(REPLICA_ID_BASE + 1), "demo-replica-1");
        for id in [0, 2, 999, REPLICA_ID_BASE, REPLICA_ID_BASE + 7] {
            assert_eq!(n.id_of(&n.pod(id)), Some(id), "{id}");
        }
        assert_eq!(n.id_of("demo-replica-1000"), None, "a replica ordinal past the range");
        assert_eq!(n.id_of("demo-1000"), None, "a voter ordinal in the replicas' range");
        assert_eq!(n.id_of("other-1"), None);
        assert_eq!(n.id_of("demo-x"), None);
    }
}
