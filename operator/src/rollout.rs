//! Leader-last rolling upgrades: which pod runs a changed template next.
//!
//! Both StatefulSets use `OnDelete`, so a pod changes only when the operator
//! deletes it and the StatefulSet controller makes it again from the new
//! template. Left to `RollingUpdate`, the controller would go by ordinal: the
//! leader restarted whenever its turn came, handing over to whichever voter
//! was most caught up — perhaps one about to be restarted too, an election
//! per old pod. Here, one step per reconcile, as in [`crate::plan`]:
//!
//! 1. Nothing moves until every member's pod exists, is Ready (the node's own
//!    probe: it sees a leader and has applied what it knows is committed),
//!    is not terminating, and answers. So one pod is down at a time, and only
//!    after the previous one came back caught up.
//! 2. Followers first, one at a time: read replicas (they never count toward
//!    a quorum, so they are where a bad image shows first), then voters;
//!    highest ordinal first within each.
//! 3. When only the leader runs the old template: hand leadership to the
//!    updated voter the leader has replicated the most to.
//! 4. Then restart the old leader, now a follower.
//!
//! Exactly one leadership change per upgrade. A single voter cannot hand
//! over: it is restarted and the cluster waits for it, and the Event says so.
//!
//! Only members are upgraded; a pod still joining or leaving is the membership
//! planner's, which runs first (an upgrade waits for a steady membership).

use chat_k8s::ClusterNames;
use chat_k8s::names::REPLICA_ID_BASE;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::nodes::Observation;
use crate::plan::Step;

/// The label the StatefulSet controller puts on each pod: the revision of
/// the template it was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The revision every pod of each StatefulSet should run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    pub voters: Target,
    pub replicas: Target,
}

/// What a StatefulSet's status says about its template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Target {
    /// No status at all: a StatefulSet no controller has reported on (just
    /// made). Its pods come from its only template: nothing to roll out.
    #[default]
    Unreported,
    /// The status is older than the spec: the template may have changed and
    /// its revision is not known yet. An old `updateRevision` would pass
    /// every pod for current.
    Behind,
    /// The revision of the current template.
    Revision(String),
}

impl Target {
    pub fn of(statefulset: &k8s_openapi::api::apps::v1::StatefulSet) -> Self {
        let Some(status) = statefulset.status.as_ref().filter(|s| s.observed_generation.is_some()) else {
            return Target::Unreported;
        };
        let seen = status.observed_generation >= statefulset.metadata.generation;
        match &status.update_revision {
            Some(revision) if seen => Target::Revision(revision.clone()),
            _ => Target::Behind,
        }
    }
}

impl Targets {
    fn of_member(&self, id: u64) -> &Target {
        if id >= REPLICA_ID_BASE { &self.replicas } else { &self.voters }
    }
}

/// The next upgrade step, or [`Step::Steady`] when every member runs its
/// StatefulSet's current template.
pub fn next(names: &ClusterNames, pods: &[Pod], targets: &Targets, observed: &Observation) -> Step {
    let (Some(leader), Some(members)) = (observed.leader(), observed.members()) else {
        return Step::Steady;
    };
    let pod_of = |id: u64| pods.iter().find(|p| p.name_any() == names.pod(id));
    // A set whose target is not known yet (its template changed a moment
    // ago) must not pass for current: its pods would be skipped and the
    // order broken (the leader's set before the replicas').
    if let Some(m) = members.iter().find(|m| pod_of(m.id).is_some() && *targets.of_member(m.id) == Target::Behind) {
        return Step::Wait(format!(
            "waiting for the StatefulSet controller to observe the template of {}",
            names.pod(m.id)
        ));
    }
    let outdated = |id: u64| match (targets.of_member(id), pod_of(id)) {
        (Target::Revision(target), Some(pod)) => pod.labels().get(REVISION_LABEL) != Some(target),
        _ => false,
    };
    let mut stale: Vec<&chat_proto::cluster::Member> = members.iter().filter(|m| outdated(m.id)).collect();
    if stale.is_empty() {
        return Step::Steady;
    }
    let total = members.len();
    let updated = total - stale.len();
    if let Some(waiting) = members.iter().find_map(|m| unready(names, pod_of(m.id), observed, m.id)) {
        return Step::Upgrading(format!("{updated} of {total} members updated; {waiting}"));
    }
    // Replicas first, then voters; highest id first in each.
    stale.sort_by_key(|m| (m.voter, std::cmp::Reverse(m.id)));
    if let Some(follower) = stale.iter().find(|m| m.id != leader.ordinal) {
        return Step::Restart { id: follower.id, updated, total };
    }
    let successor = members
        .iter()
        .filter(|m| m.voter && m.id != leader.ordinal && !outdated(m.id))
        .max_by_key(|m| m.matched_index.unwrap_or(0));
    match successor {
        Some(to) => Step::HandOver { from: leader.ordinal, to: to.id },
        None => Step::Restart { id: leader.ordinal, updated, total },
    }
}

/// Why member `id` (with this pod) is not ready to have another pod go down,
/// if it is not.
fn unready(names: &ClusterNames, pod: Option<&Pod>, observed: &Observation, id: u64) -> Option<String> {
    let name = names.pod(id);
    let Some(pod) = pod else {
        return Some(format!("waiting for {name} to be recreated"));
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return Some(format!("waiting for {name} to terminate"));
    }
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    if !ready {
        return Some(format!("waiting for {name} to be ready and caught up"));
    }
    let answers = observed.pod(id).and_then(|p| p.status.as_ref()).is_some_and(|s| !s.members.is_empty());
    (!answers).then(|| format!("waiting for {name} to answer"))
}

#[cfg(test)]
mod tests {
    use chat_proto::cluster::{GetStatusResponse, Member, Role};
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;
    use crate::nodes::PodView;

    const OLD: &str = "old";
    const NEW: &str = "new";

    fn names() -> ClusterNames {
        ClusterNames::new("demo", "chat")
    }

    fn pod(id: u64, revision: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(names().pod(id)),
                labels: Some([(REVISION_LABEL.to_string(), revision.to_string())].into()),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    /// Voters 0..voters led by `leader`, replicas at 1000.., every pod answering.
    fn observed(voters: u64, replicas: u64, leader: u64) -> Observation {
        let members: Vec<Member> = (0..voters)
            .map(|id| Member { id, voter: true, matched_index: Some(100 + id), ..Member::default() })
            .chain((0..replicas).map(|k| Member { id: REPLICA_ID_BASE + k, voter: false, ..Member::default() }))
            .collect();
        let pods = members
            .iter()
            .map(|m| PodView {
                ordinal: m.id,
                address: String::new(),
                status: Some(GetStatusResponse {
                    role: if m.id == leader { Role::Leader } else { Role::Follower } as i32,
                    term: 3,
                    members: members.clone(),
                    ..GetStatusResponse::default()
                }),
            })
            .collect();
        Observation { pods }
    }

    fn targets() -> Targets {
        Targets { voters: Target::Revision(NEW.into()), replicas: Target::Revision(NEW.into()) }
    }

    #[test]
    fn replicas_then_followers_highest_first_then_one_hand_over_then_the_old_leader() {
        let observed = observed(3, 2, 1);
        let mut revisions = [(0, OLD), (1, OLD), (2, OLD), (1000, OLD), (1001, OLD)];
        let mut steps = Vec::new();
        loop {
            let pods: Vec<Pod> = revisions.iter().map(|&(id, r)| pod(id, r, true)).collect();
            let step = next(&names(), &pods, &targets(), &observed);
            match &step {
                Step::Steady => break,
                Step::Restart { id, .. } => revisions.iter_mut().find(|(i, _)| i == id).unwrap().1 = NEW,
                // The test's leader stays put; what matters is that the hand-over comes once, then the restart.
                Step::HandOver { .. } => {
                    let after = next(&names(), &pods, &targets(), &observed);
                    assert_eq!(after, step, "planned again while nothing changed");
                    revisions.iter_mut().find(|(i, _)| *i == 1).unwrap().1 = NEW;
                }
                other => panic!("unexpected step {other:?}"),
            }
            steps.push(step);
            assert!(steps.len() < 10, "no end: {steps:?}");
        }
        assert_eq!(
            steps,
            vec![
                Step::Restart { id: 1001, updated: 0, total: 5 },
                Step::Restart { id: 1000, updated: 1, total: 5 },
                Step::Restart { id: 2, updated: 2, total: 5 },
                Step::Restart { id: 0, updated: 3, total: 5 },
                // To the voter the leader replicated most to (2 reports 102).
                Step::HandOver { from: 1, to: 2 },
            ]
        );
    }

    #[test]
    fn nothing_goes_down_while_a_member_is_missing_unready_terminating_or_silent() {
        let ok = |id| pod(id, OLD, true);
        let mut terminating = ok(2);
        terminating.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        let mut silent = observed(3, 0, 0);
        silent.pods[2].status = None;
        let cases = [
            (vec![ok(0), ok(1)], observed(3, 0, 0), "demo-2 to be recreated"),
            (vec![ok(0), ok(1), pod(2, NEW, false)], observed(3, 0, 0), "demo-2 to be ready"),
            (vec![ok(0), ok(1), terminating], observed(3, 0, 0), "demo-2 to terminate"),
            (vec![ok(0), ok(1), ok(2)], silent, "demo-2 to answer"),
        ];
        for (pods, observed, why) in cases {
            match next(&names(), &pods, &targets(), &observed) {
                Step::Upgrading(message) => assert!(message.contains(why), "{message:?} should say {why:?}"),
                other => panic!("{why}: went on with {other:?}"),
            }
        }
    }

    #[test]
    fn nothing_to_do_when_current_and_a_wait_while_the_target_is_not_known_yet() {
        let observed = observed(3, 0, 0);
        let current: Vec<Pod> = (0..3).map(|id| pod(id, NEW, true)).collect();
        assert_eq!(next(&names(), &current, &targets(), &observed), Step::Steady);
        let old: Vec<Pod> = (0..3).map(|id| pod(id, OLD, true)).collect();
        assert_eq!(next(&names(), &old, &Targets::default(), &observed), Step::Steady, "unreported: a new set");
        let behind = Targets { voters: Target::Behind, replicas: Target::Unreported };
        let unknown = next(&names(), &old, &behind, &observed);
        assert!(matches!(unknown, Step::Wait(ref why) if why.contains("observe the template")), "{unknown:?}");
        assert_eq!(
            next(&names(), &old, &targets(), &Observation::default()),
            Step::Steady,
            "no leader: the membership planner waits"
        );
    }

    #[test]
    fn a_single_voter_is_restarted_without_a_hand_over() {
        let pods = vec![pod(0, OLD, true)];
        assert_eq!(
            next(&names(), &pods, &targets(), &observed(1, 0, 0)),
            Step::Restart { id: 0, updated: 0, total: 1 }
        );
    }

    #[test]
    fn a_statefulset_status_names_the_target_only_once_it_saw_the_template() {
        use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
        let sts = |generation, observed| StatefulSet {
            metadata: ObjectMeta { generation: Some(generation), ..ObjectMeta::default() },
            status: Some(StatefulSetStatus {
                observed_generation: observed,
                update_revision: Some(NEW.into()),
                ..StatefulSetStatus::default()
            }),
            ..StatefulSet::default()
        };
        assert_eq!(Target::of(&sts(4, Some(4))), Target::Revision(NEW.into()));
        assert_eq!(Target::of(&sts(5, Some(4))), Target::Behind);
        assert_eq!(Target::of(&sts(1, None)), Target::Unreported);
        assert_eq!(Target::of(&StatefulSet::default()), Target::Unreported);
    }
}
