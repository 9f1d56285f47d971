//! `kubectl chat promote POD`: a request, as an annotation on the
//! ReplicatedChat, to hand leadership to one member. Kubernetes RBAC decides
//! who may ask (patch on the ReplicatedChat); the operator, which holds the
//! cluster's admin certificate, does the hand-over and removes the request.
//! Judged here, purely: only a voter that answers can lead.

use chat_k8s::names::PROMOTE_ANNOTATION;
use chat_k8s::{ClusterNames, ReplicatedChat};
use kube::ResourceExt;

use crate::nodes::Observation;
use crate::plan::Step;

/// What to do about a promote request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Promotion {
    /// Hand leadership over ([`Step::Promote`]); remove the request once done.
    Step(Step),
    /// Nothing to do (the pod leads already): remove the request, say so.
    Done(String),
    /// Cannot be done: remove the request, say why.
    Refused(String),
}

/// The request on `cluster`, if any, judged against what the members report.
/// `None` also while there is no leader to ask: the request waits.
pub fn judge(cluster: &ReplicatedChat, names: &ClusterNames, observed: &Observation) -> Option<Promotion> {
    let pod = cluster.annotations().get(PROMOTE_ANNOTATION)?;
    let leader = observed.leader()?;
    let members = observed.members()?;
    let Some(id) = names.id_of(pod) else {
        return Some(Promotion::Refused(format!("{pod} is not a pod of {}", names.cluster)));
    };
    if id == leader.ordinal {
        return Some(Promotion::Done(format!("{pod} already leads")));
    }
    let Some(member) = members.iter().find(|m| m.id == id) else {
        return Some(Promotion::Refused(format!("{pod} is not a member of the cluster")));
    };
    if !member.voter {
        return Some(Promotion::Refused(format!("{pod} is a read replica (a learner): only voters lead")));
    }
    if observed.pod(id).and_then(|p| p.status.as_ref()).is_none() {
        return Some(Promotion::Refused(format!("{pod} does not answer")));
    }
    Some(Promotion::Step(Step::Promote { from: leader.ordinal, to: id }))
}

#[cfg(test)]
mod tests {
    use chat_proto::cluster::{GetStatusResponse, Member, Role};

    use super::*;
    use crate::nodes::PodView;

    fn asking(pod: Option<&str>) -> ReplicatedChat {
        let mut cluster = crate::resources::tests::cluster(3);
        if let Some(pod) = pod {
            cluster.annotations_mut().insert(PROMOTE_ANNOTATION.into(), pod.into());
        }
        cluster
    }

    /// Voters 0..3 led by 0, read replica 1000, pod 2 silent.
    fn observed() -> Observation {
        let members: Vec<Member> = [(0, true), (1, true), (2, true), (1000, false)]
            .map(|(id, voter)| Member { id, voter, ..Member::default() })
            .to_vec();
        let answer = |id: u64| GetStatusResponse {
            role: if id == 0 { Role::Leader } else { Role::Follower } as i32,
            members: members.clone(),
            ..GetStatusResponse::default()
        };
        let pods = [0, 1, 2, 1000]
            .map(|id| PodView { ordinal: id, address: String::new(), status: (id != 2).then(|| answer(id)) })
            .to_vec();
        Observation { pods }
    }

    #[test]
    fn a_request_is_carried_out_only_for_an_answering_voter() {
        let names = ClusterNames::new("demo", "chat");
        let judge = |pod| judge(&asking(pod), &names, &observed());
        assert_eq!(judge(None), None);
        assert_eq!(judge(Some("demo-1")), Some(Promotion::Step(Step::Promote { from: 0, to: 1 })));
        assert_eq!(judge(Some("demo-0")), Some(Promotion::Done("demo-0 already leads".into())));
        for (pod, why) in [
            ("demo-2", "does not answer"),
            ("demo-replica-0", "read replica"),
            ("demo-7", "not a member"),
            ("other-1", "not a pod of demo"),
        ] {
            match judge(Some(pod)) {
                Some(Promotion::Refused(message)) => assert!(message.contains(why), "{pod}: {message}"),
                other => panic!("{pod}: {other:?}"),
            }
        }
        assert_eq!(judge_without_leader(), None, "no leader: the request waits");
    }

    fn judge_without_leader() -> Option<Promotion> {
        judge(&asking(Some("demo-1")), &ClusterNames::new("demo", "chat"), &Observation::default())
    }
}
