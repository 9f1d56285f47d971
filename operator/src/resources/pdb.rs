//! The PodDisruptionBudget: voluntary disruptions (drains, evictions) may
//! never take more pods than the cluster can lose and keep a Raft quorum.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use chat_k8s::ReplicatedChat;

use super::{names, owned_meta};

/// Voters needed for a quorum among `replicas`.
pub fn quorum(replicas: i32) -> i32 {
    replicas.max(1) / 2 + 1
}

pub fn build(cluster: &ReplicatedChat) -> PodDisruptionBudget {
    let names = names(cluster);
    PodDisruptionBudget {
        metadata: owned_meta(cluster, names.pod_disruption_budget()),
        spec: Some(PodDisruptionBudgetSpec {
            // minAvailable, not maxUnavailable: an already-broken pod counts
            // against the budget, so a drain never takes a second one. The
            // selector matches the read replicas too, so they are added: even
            // if every pod a drain takes is a voter, a quorum of voters stays.
            min_available: Some(IntOrString::Int(quorum(cluster.spec.replicas) + cluster.spec.read_replicas.max(0))),
            selector: Some(LabelSelector { match_labels: Some(names.selector_labels()), ..LabelSelector::default() }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::cluster;

    #[test]
    fn the_budget_keeps_a_quorum() {
        assert_eq!([1, 2, 3, 4, 5, 7].map(quorum), [1, 2, 2, 3, 3, 4]);
        let spec = build(&cluster(5)).spec.unwrap();
        assert_eq!(spec.min_available, Some(IntOrString::Int(3)));
        // Read replicas match the selector too: counted in, a drain still leaves 3 voters of 5.
        let mut with_replicas = cluster(5);
        with_replicas.spec.read_replicas = 2;
        assert_eq!(build(&with_replicas).spec.unwrap().min_available, Some(IntOrString::Int(5)));
    }
}
