//! What the operator writes to `status`: counts, leader, members, and the
//! Available / Progressing / Degraded conditions, each with a reason a human
//! can act on. A condition's `lastTransitionTime` moves only when its status does.

use chat_k8s::crd::condition::{AVAILABLE, DEGRADED, PROGRESSING};
use chat_k8s::crd::{MemberStatus, ReplicatedChatStatus};
use chat_k8s::{ClusterNames, ReplicatedChat};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::nodes::Observation;
use crate::plan::Step;

/// One condition's desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Cond {
    pub fn new(type_: &'static str, status: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self { type_, status, reason: reason.into(), message: message.into() }
    }
}

/// `conds` as Kubernetes conditions, keeping the transition time of any whose status did not change.
pub fn conditions(previous: &[Condition], conds: &[Cond], generation: Option<i64>, now: Timestamp) -> Vec<Condition> {
    conds
        .iter()
        .map(|c| {
            let status = if c.status { "True" } else { "False" }.to_string();
            let since = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == status)
                .map_or(Time(now), |p| p.last_transition_time.clone());
            Condition {
                type_: c.type_.into(),
                status,
                reason: c.reason.clone(),
                message: c.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// The status after a reconcile that got as far as observing the members.
pub fn observed(
    cluster: &ReplicatedChat,
    names: &ClusterNames,
    observation: &Observation,
    step: &Step,
    bootstrapped: bool,
    warnings: &[String],
    now: Timestamp,
) -> ReplicatedChatStatus {
    let previous = cluster.status.clone().unwrap_or_default();
    let desired = cluster.spec.replicas;
    let leader = observation.leader();
    let members = observation.members().unwrap_or_default();
    let leader_commit = leader.and_then(|l| l.status.as_ref()).map_or(0, |s| s.commit_index);
    let voters = i32::try_from(members.iter().filter(|m| m.voter).count()).unwrap_or(i32::MAX);
    // Ready: a member that answers and has applied everything the leader had committed.
    let ready = members
        .iter()
        .filter(|m| {
            observation
                .pod(m.id)
                .and_then(|p| p.status.as_ref())
                .is_some_and(|s| !s.members.is_empty() && s.applied_index >= leader_commit.min(s.commit_index))
        })
        .count();
    let unreachable: Vec<String> = members
        .iter()
        .filter(|m| observation.pod(m.id).is_none_or(|p| p.status.is_none()))
        .map(|m| names.pod(m.id))
        .collect();

    let available = match (leader, bootstrapped) {
        (Some(l), _) => Cond::new(AVAILABLE, true, "LeaderElected", format!("{} leads", names.pod(l.ordinal))),
        (None, false) => Cond::new(AVAILABLE, false, "NotBootstrapped", "the cluster has not been founded yet"),
        (None, true) => {
            Cond::new(AVAILABLE, false, "NoLeader", "no leader elected: fewer than a quorum of members answer")
        }
    };
    let progressing = match step {
        Step::Steady => Cond::new(PROGRESSING, false, "Steady", format!("{voters} of {desired} voters")),
        Step::Wait(why) => Cond::new(PROGRESSING, true, "Waiting", why.clone()),
        other => Cond::new(PROGRESSING, true, other.progress_reason().unwrap_or("Progressing"), describe(other, names)),
    };
    let degraded = if !unreachable.is_empty() {
        Cond::new(DEGRADED, true, "MembersUnreachable", format!("not answering: {}", unreachable.join(", ")))
    } else if !warnings.is_empty() {
        Cond::new(DEGRADED, true, "SpecWarning", warnings.join("; "))
    } else if leader.is_some() && voters < desired {
        Cond::new(DEGRADED, true, "BelowDesiredVoters", format!("{voters} of {desired} voters"))
    } else {
        Cond::new(DEGRADED, false, "AsExpected", "")
    };
    ReplicatedChatStatus {
        replicas: voters,
        ready_replicas: i32::try_from(ready).unwrap_or(i32::MAX),
        selector: names.selector_string(),
        leader: leader.map(|l| names.pod(l.ordinal)),
        term: leader.and_then(|l| l.status.as_ref()).map_or(previous.term, |s| s.term),
        members: members
            .iter()
            .map(|m| MemberStatus {
                id: m.id,
                pod: names.pod(m.id),
                role: if m.voter { "voter" } else { "learner" }.into(),
                matched_index: m.matched_index,
            })
            .collect(),
        bootstrapped,
        conditions: conditions(
            &previous.conditions,
            &[available, progressing, degraded],
            cluster.metadata.generation,
            now,
        ),
        observed_generation: cluster.metadata.generation,
        scheduled_backups: previous.scheduled_backups,
        console: previous.console,
    }
}

/// The status of a spec the operator (reason `InvalidSpec`) or the API server
/// (reason `Refused`) will not act on: Degraded with the reasons.
pub fn invalid(
    cluster: &ReplicatedChat,
    names: &ClusterNames,
    reason: &str,
    problems: &[String],
    now: Timestamp,
) -> ReplicatedChatStatus {
    let previous = cluster.status.clone().unwrap_or_default();
    let conds = [
        Cond::new(DEGRADED, true, reason, problems.join("; ")),
        Cond::new(PROGRESSING, false, reason, "fix the spec to continue"),
    ];
    let mut kept: Vec<Condition> = previous.conditions.iter().filter(|c| c.type_ == AVAILABLE).cloned().collect();
    kept.extend(conditions(&previous.conditions, &conds, cluster.metadata.generation, now));
    ReplicatedChatStatus {
        selector: names.selector_string(),
        conditions: kept,
        observed_generation: cluster.metadata.generation,
        ..previous
    }
}

/// A sentence for the Progressing condition and Events.
pub fn describe(step: &Step, names: &ClusterNames) -> String {
    match step {
        Step::Steady => "membership matches the spec".into(),
        Step::Wait(why) => why.clone(),
        Step::Bootstrap => format!("founding the cluster on {}", names.pod(0)),
        Step::AdoptExisting => "a member already belongs to a cluster; adopting it".into(),
        Step::Join { ordinal } => format!("adding {} (learner, catch up, voter)", names.pod(*ordinal)),
        Step::JoinReplica { id } => {
            format!("adding read replica {} (learner, catch up, never a voter)", names.pod(*id))
        }
        Step::Evict { id } => format!("{} lost its data; removing it so it rejoins as a new member", names.pod(*id)),
        Step::TransferLeader { from } => {
            format!("handing leadership away from {} before removing it", names.pod(*from))
        }
        Step::Remove { id } => format!("removing {} from the Raft membership", names.pod(*id)),
        Step::Upgrading(why) => why.clone(),
        Step::Restart { id, updated, total } => {
            format!("{updated} of {total} members updated; restarting {} with the new template", names.pod(*id))
        }
        Step::Promote { from, to } => {
            format!("handing leadership from {} to {}, as asked", names.pod(*from), names.pod(*to))
        }
        Step::HandOver { from, to } => format!(
            "every other member updated; handing leadership from {} to {} before restarting it",
            names.pod(*from),
            names.pod(*to)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let first = conditions(&[], &[Cond::new(AVAILABLE, true, "LeaderElected", "demo-0 leads")], Some(1), t0);
        let same = conditions(&first, &[Cond::new(AVAILABLE, true, "LeaderElected", "demo-1 leads")], Some(2), t1);
        assert_eq!(same[0].last_transition_time, Time(t0));
        assert_eq!(same[0].message, "demo-1 leads");
        let flipped = conditions(&same, &[Cond::new(AVAILABLE, false, "NoLeader", "")], Some(2), t1);
        assert_eq!(flipped[0].last_transition_time, Time(t1));
    }
}
