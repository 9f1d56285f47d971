//! The membership planner: from what the pods report, the one next step that
//! brings Raft membership closer to the spec. Pure, so every branch is a unit
//! test; `reconcile` carries the step out and comes back for the next.
//!
//! One step per reconcile, in this order, each safe on its own:
//! 1. Found the cluster, once in its life (only if no pod belongs to one).
//! 2. Scale down: remove surplus members one at a time, highest ordinal first,
//!    handing leadership away first if the leader is among them. The
//!    StatefulSet keeps those pods until they are out of Raft, so quorum never
//!    depends on a pod Kubernetes is deleting.
//! 3. Lost volumes: a voter whose pod answers with no data is removed, so it
//!    rejoins as a new member instead of counting toward a quorum it forgot.
//! 4. Scale up / rejoin: add missing members (learner → caught up → voter),
//!    lowest ordinal first.
//!
//! Read replicas ([`plan_replicas`]) come only once the voters are steady, in
//! their own StatefulSet, by the same rules: surplus ones leave first, highest
//! first (a learner never leads: no hand-over), then missing ones join as
//! learners that are never promoted. The voters' planning never counts them.

use chat_k8s::names::REPLICA_ID_BASE;
use chat_proto::cluster::Member;

use crate::nodes::Observation;

/// What to do next, and how many pods the StatefulSet should have meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub statefulset_replicas: i32,
    pub step: Step,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Membership matches the spec.
    Steady,
    /// Nothing can be done until something changes (a pod starts, a leader is elected).
    Wait(String),
    /// Found the cluster on pod 0.
    Bootstrap,
    /// The status says "never founded" but a pod already belongs to a cluster
    /// (status lost, or the operator died after founding): record it, found nothing.
    AdoptExisting,
    /// Add pod `ordinal` (or promote it if it is a learner).
    Join { ordinal: u64 },
    /// Remove voter `id` whose pod came back without its data.
    Evict { id: u64 },
    /// Move leadership off `from` before removing it.
    TransferLeader { from: u64 },
    /// Remove surplus member `id` (a voter, or a read replica).
    Remove { id: u64 },
    /// Add read replica `id` as a learner that is never promoted.
    JoinReplica { id: u64 },
    /// An upgrade is under way; the next pod waits (the reason says for what).
    Upgrading(String),
    /// Delete member `id`'s pod so that it comes back with the new template
    /// (`updated` of `total` members already run it).
    Restart { id: u64, updated: usize, total: usize },
    /// Every other member runs the new template: hand leadership from `from` to `to`.
    HandOver { from: u64, to: u64 },
    /// Asked for (`kubectl chat promote`): hand leadership from `from` to `to`.
    Promote { from: u64, to: u64 },
}

impl Step {
    /// The member (ordinal) this step acts on, if one.
    pub fn member(&self) -> Option<u64> {
        match self {
            Step::Bootstrap => Some(0),
            Step::Join { ordinal } => Some(*ordinal),
            Step::JoinReplica { id } => Some(*id),
            Step::Evict { id } | Step::Remove { id } => Some(*id),
            Step::TransferLeader { from } | Step::HandOver { from, .. } => Some(*from),
            Step::Promote { to, .. } => Some(*to),
            Step::Restart { id, .. } => Some(*id),
            Step::Steady | Step::Wait(_) | Step::AdoptExisting | Step::Upgrading(_) => None,
        }
    }

    /// Reason for the Progressing condition, or `None` when steady.
    pub fn progress_reason(&self) -> Option<&'static str> {
        match self {
            Step::Steady => None,
            Step::Wait(_) => Some("Waiting"),
            Step::Bootstrap | Step::AdoptExisting => Some("Bootstrapping"),
            Step::Join { .. } | Step::JoinReplica { .. } => Some("ScalingUp"),
            Step::Evict { .. } => Some("ReplacingLostMember"),
            Step::TransferLeader { .. } | Step::Remove { .. } => Some("ScalingDown"),
            Step::Upgrading(_) | Step::Restart { .. } | Step::HandOver { .. } => Some("Upgrading"),
            Step::Promote { .. } => Some("Promoting"),
        }
    }
}

/// Decides the next step for `desired` voters, given whether the cluster was
/// ever founded and what the pods report.
pub fn plan(desired: i32, bootstrapped: bool, current_statefulset: i32, observed: &Observation) -> Plan {
    let desired_n = desired.max(1);
    let desired = u64::try_from(desired_n).unwrap_or(1);
    if !bootstrapped {
        let step = if observed.any_member() {
            Step::AdoptExisting
        } else if observed.pod(0).is_some_and(|p| p.is_blank()) {
            Step::Bootstrap
        } else {
            Step::Wait("waiting for pod 0 to start serving".into())
        };
        return Plan { statefulset_replicas: desired_n, step };
    }
    let (Some(leader), Some(all)) = (observed.leader(), observed.members()) else {
        // Without a leader the membership is unknown: shrink nothing.
        return Plan {
            statefulset_replicas: desired_n.max(current_statefulset),
            step: Step::Wait("no leader elected".into()),
        };
    };
    let members: Vec<&Member> = all.iter().filter(|m| m.id < REPLICA_ID_BASE).collect();
    let highest = members.iter().map(|m| m.id).max().unwrap_or(0);
    let statefulset_replicas = desired_n.max(i32::try_from(highest + 1).unwrap_or(i32::MAX));
    let with = |step| Plan { statefulset_replicas, step };

    if let Some(surplus) = members.iter().filter(|m| m.id >= desired).max_by_key(|m| m.id) {
        if surplus.id == leader.ordinal {
            return with(Step::TransferLeader { from: surplus.id });
        }
        return with(Step::Remove { id: surplus.id });
    }
    if let Some(lost) = members.iter().find(|m| m.voter && observed.pod(m.id).is_some_and(|p| p.is_blank())) {
        return with(Step::Evict { id: lost.id });
    }
    for ordinal in 0..desired {
        let member = members.iter().find(|m| m.id == ordinal);
        if member.is_some_and(|m| m.voter) {
            continue;
        }
        return with(match observed.pod(ordinal) {
            Some(p) if p.status.is_some() => Step::Join { ordinal },
            _ => Step::Wait(format!("waiting for pod {ordinal} to start serving")),
        });
    }
    with(Step::Steady)
}

/// The read replicas' next step, once the voters are steady: `desired`
/// replicas, the replicas' StatefulSet at `current` pods.
pub fn plan_replicas(desired: i32, current: i32, observed: &Observation) -> Plan {
    let desired_n = desired.max(0);
    let Some(all) = observed.members() else {
        return Plan { statefulset_replicas: desired_n.max(current), step: Step::Wait("no leader elected".into()) };
    };
    let replicas: Vec<u64> = all.iter().filter_map(|m| m.id.checked_sub(REPLICA_ID_BASE)).collect();
    let highest = replicas.iter().max().map_or(0, |k| k + 1);
    let statefulset_replicas = desired_n.max(i32::try_from(highest).unwrap_or(i32::MAX));
    let with = |step| Plan { statefulset_replicas, step };
    let desired = u64::try_from(desired_n).unwrap_or(0);
    if let Some(surplus) = replicas.iter().filter(|&&k| k >= desired).max() {
        return with(Step::Remove { id: REPLICA_ID_BASE + surplus });
    }
    for k in 0..desired {
        let id = REPLICA_ID_BASE + k;
        if replicas.contains(&k) {
            continue;
        }
        return with(match observed.pod(id) {
            Some(p) if p.status.is_some() => Step::JoinReplica { id },
            _ => Step::Wait(format!("waiting for read replica {k} to start serving")),
        });
    }
    with(Step::Steady)
}

#[cfg(test)]
mod tests {
    use chat_proto::cluster::{GetStatusResponse, Member, Role};

    use super::*;
    use crate::nodes::PodView;

    /// A pod that answers: `role`, `term`, and the members it knows (id, voter).
    fn pod(ordinal: u64, role: Role, term: u64, members: &[(u64, bool)]) -> PodView {
        PodView {
            ordinal,
            address: format!("pod-{ordinal}"),
            status: Some(GetStatusResponse {
                node_id: ordinal,
                role: role as i32,
                term,
                members: members
                    .iter()
                    .map(|&(id, voter)| Member { id, address: format!("pod-{id}"), voter, ..Member::default() })
                    .collect(),
                ..Default::default()
            }),
        }
    }
    fn blank(ordinal: u64) -> PodView {
        pod(ordinal, Role::Follower, 0, &[])
    }
    fn silent(ordinal: u64) -> PodView {
        PodView { ordinal, address: format!("pod-{ordinal}"), status: None }
    }
    fn obs(pods: Vec<PodView>) -> Observation {
        Observation { pods }
    }
    const THREE: &[(u64, bool)] = &[(0, true), (1, true), (2, true)];
    const FIVE: &[(u64, bool)] = &[(0, true), (1, true), (2, true), (3, true), (4, true)];

    #[test]
    fn a_new_cluster_is_founded_on_pod_0_once() {
        let fresh = obs(vec![blank(0), blank(1), silent(2)]);
        assert_eq!(plan(3, false, 0, &fresh), Plan { statefulset_replicas: 3, step: Step::Bootstrap });
        let waiting = obs(vec![silent(0), blank(1)]);
        assert!(matches!(plan(3, false, 3, &waiting).step, Step::Wait(_)));
        // Someone founded it already (status lost): adopt, never found a second one.
        let founded = obs(vec![blank(0), pod(1, Role::Leader, 2, &[(1, true)])]);
        assert_eq!(plan(3, false, 3, &founded).step, Step::AdoptExisting);
    }

    #[test]
    fn scale_up_joins_the_lowest_missing_ordinal_first() {
        let o = obs(vec![pod(0, Role::Leader, 1, &[(0, true)]), blank(1), blank(2)]);
        assert_eq!(plan(3, true, 3, &o), Plan { statefulset_replicas: 3, step: Step::Join { ordinal: 1 } });
        // A learner is promoted by joining again.
        let o = obs(vec![pod(0, Role::Leader, 1, &[(0, true), (1, false)]), blank(1)]);
        assert_eq!(plan(2, true, 2, &o).step, Step::Join { ordinal: 1 });
        // A pod that does not answer yet is waited for.
        let o = obs(vec![pod(0, Role::Leader, 1, &[(0, true)]), silent(1)]);
        assert!(matches!(plan(2, true, 2, &o).step, Step::Wait(_)));
    }

    #[test]
    fn a_full_cluster_is_steady() {
        let o = obs(vec![
            pod(0, Role::Follower, 3, THREE),
            pod(1, Role::Leader, 3, THREE),
            pod(2, Role::Follower, 3, THREE),
        ]);
        assert_eq!(plan(3, true, 3, &o), Plan { statefulset_replicas: 3, step: Step::Steady });
    }

    #[test]
    fn scale_down_removes_members_before_shrinking_the_statefulset() {
        let o = obs((0..5).map(|i| pod(i, if i == 0 { Role::Leader } else { Role::Follower }, 4, FIVE)).collect());
        // The StatefulSet keeps 5 pods while members 4 and 3 are removed, highest first.
        assert_eq!(plan(3, true, 5, &o), Plan { statefulset_replicas: 5, step: Step::Remove { id: 4 } });
        let four = &FIVE[..4];
        let o = obs((0..5).map(|i| pod(i, if i == 0 { Role::Leader } else { Role::Follower }, 4, four)).collect());
        assert_eq!(plan(3, true, 5, &o), Plan { statefulset_replicas: 4, step: Step::Remove { id: 3 } });
        let o = obs((0..3).map(|i| pod(i, if i == 0 { Role::Leader } else { Role::Follower }, 4, THREE)).collect());
        assert_eq!(plan(3, true, 5, &o), Plan { statefulset_replicas: 3, step: Step::Steady });
    }

    #[test]
    fn a_leader_being_removed_hands_over_first() {
        let o = obs((0..5).map(|i| pod(i, if i == 4 { Role::Leader } else { Role::Follower }, 4, FIVE)).collect());
        assert_eq!(plan(3, true, 5, &o).step, Step::TransferLeader { from: 4 });
    }

    #[test]
    fn the_highest_term_leader_is_believed() {
        // Pod 0 restarted and still claims term 3; pod 2 leads term 5 and knows member 3 is gone.
        let o = obs(vec![
            pod(0, Role::Leader, 3, &[(0, true), (1, true), (2, true), (3, true)]),
            pod(1, Role::Follower, 5, THREE),
            pod(2, Role::Leader, 5, THREE),
        ]);
        assert_eq!(plan(3, true, 4, &o), Plan { statefulset_replicas: 3, step: Step::Steady });
    }

    #[test]
    fn a_voter_that_lost_its_volume_is_evicted_then_rejoins() {
        let o = obs(vec![pod(0, Role::Leader, 2, THREE), pod(1, Role::Follower, 2, THREE), blank(2)]);
        assert_eq!(plan(3, true, 3, &o).step, Step::Evict { id: 2 });
        let o = obs(vec![pod(0, Role::Leader, 2, &THREE[..2]), pod(1, Role::Follower, 2, &THREE[..2]), blank(2)]);
        assert_eq!(plan(3, true, 3, &o).step, Step::Join { ordinal: 2 });
        // A learner with no data yet is just being added, not lost.
        let o = obs(vec![pod(0, Role::Leader, 2, &[(0, true), (1, false)]), blank(1)]);
        assert_eq!(plan(2, true, 2, &o).step, Step::Join { ordinal: 1 });
    }

    #[test]
    fn read_replicas_join_as_learners_and_leave_highest_first_without_touching_the_voters() {
        const R0: u64 = REPLICA_ID_BASE;
        let with = |replicas: &[u64]| -> Vec<(u64, bool)> {
            THREE.iter().copied().chain(replicas.iter().map(|&k| (R0 + k, false))).collect()
        };
        let cluster = |replicas: &[u64], extra: Vec<PodView>| {
            let members = with(replicas);
            let mut pods: Vec<PodView> =
                (0..3).map(|i| pod(i, if i == 0 { Role::Leader } else { Role::Follower }, 2, &members)).collect();
            pods.extend(extra);
            obs(pods)
        };
        // The voters' plan does not see replicas as surplus voters.
        let o = cluster(&[0, 1], vec![]);
        assert_eq!(plan(3, true, 3, &o), Plan { statefulset_replicas: 3, step: Step::Steady });
        // Two wanted, none yet: the first answering pod joins.
        let o = cluster(&[], vec![blank(R0), silent(R0 + 1)]);
        assert_eq!(plan_replicas(2, 0, &o), Plan { statefulset_replicas: 2, step: Step::JoinReplica { id: R0 } });
        let o = cluster(&[0], vec![silent(R0 + 1)]);
        assert!(matches!(plan_replicas(2, 2, &o).step, Step::Wait(_)));
        let o = cluster(&[0, 1], vec![]);
        assert_eq!(plan_replicas(2, 2, &o), Plan { statefulset_replicas: 2, step: Step::Steady });
        // Down to none: highest first, and the StatefulSet keeps the pod until it is out.
        assert_eq!(plan_replicas(0, 2, &o), Plan { statefulset_replicas: 2, step: Step::Remove { id: R0 + 1 } });
        let o = cluster(&[0], vec![]);
        assert_eq!(plan_replicas(0, 2, &o), Plan { statefulset_replicas: 1, step: Step::Remove { id: R0 } });
        assert_eq!(plan_replicas(0, 1, &cluster(&[], vec![])).statefulset_replicas, 0);
    }

    #[test]
    fn without_a_leader_nothing_shrinks() {
        let o = obs(vec![pod(0, Role::Candidate, 3, FIVE), silent(1)]);
        let p = plan(3, true, 5, &o);
        assert_eq!(p.statefulset_replicas, 5);
        assert!(matches!(p.step, Step::Wait(_)));
    }
}
