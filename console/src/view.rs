//! The cluster as the page shows it: one JSON shape for `/api/cluster` and
//! every event of `/api/cluster/stream`.

use chat_client::ClusterStatus;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterView {
    pub leader_id: Option<u64>,
    pub term: u64,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberView {
    pub id: u64,
    pub address: String,
    /// leader, follower, learner, candidate, or unreachable.
    pub role: String,
    pub voter: bool,
    pub term: u64,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Entries behind the leader's commit index; none when no leader is
    /// known or the member does not answer.
    pub lag: Option<u64>,
}

impl From<&ClusterStatus> for ClusterView {
    fn from(s: &ClusterStatus) -> Self {
        let leader_commit = s.members.iter().find(|m| Some(m.id) == s.leader_id).map(|m| m.commit_index);
        ClusterView {
            leader_id: s.leader_id,
            term: s.term,
            members: s
                .members
                .iter()
                .map(|m| MemberView {
                    id: m.id,
                    address: m.address.clone(),
                    role: m.role.clone(),
                    voter: m.voter,
                    term: m.term,
                    last_log_index: m.last_log_index,
                    commit_index: m.commit_index,
                    applied_index: m.applied_index,
                    lag: leader_commit.filter(|_| m.role != "unreachable").map(|c| c.saturating_sub(m.applied_index)),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chat_client::MemberStatus;

    use super::*;

    #[test]
    fn lag_is_behind_the_leaders_commit() {
        let member = |id, role: &str, commit, applied| MemberStatus {
            id,
            address: format!("n{id}:1"),
            role: role.into(),
            voter: true,
            term: 3,
            last_log_index: commit,
            commit_index: commit,
            applied_index: applied,
            leader_since_ms: 0,
        };
        let status = ClusterStatus {
            leader_id: Some(1),
            term: 3,
            members: vec![member(1, "leader", 100, 100), member(2, "follower", 90, 85)],
        };
        let view = ClusterView::from(&status);
        assert_eq!(view.members.iter().map(|m| m.lag).collect::<Vec<_>>(), [Some(0), Some(15)]);
        let leaderless = ClusterStatus { leader_id: None, ..status.clone() };
        assert!(ClusterView::from(&leaderless).members.iter().all(|m| m.lag.is_none()));
        let mut down = status;
        down.members[1].role = "unreachable".into();
        assert_eq!(ClusterView::from(&down).members[1].lag, None, "an unknown lag is not a number");
    }
}
