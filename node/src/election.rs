//! When to start an election: openraft's timer, with a pre-vote in front
//! (Raft thesis §9.6), which openraft 0.9 lacks.
//!
//! Why: a voter that stops running for a while — SIGSTOP, a stall on a slow
//! disk, CPU throttled by a cgroup quota, a busy host — finds its election
//! timer expired when it runs again and campaigns at once, one term above the
//! leader's. The other voters refuse it (their leader lease still holds), but
//! its higher term reaches the leader anyway, in its next AppendEntries reply,
//! and the leader steps down: a healthy cluster goes without a leader for an
//! election because one member stalled. (The cluster test
//! `a_follower_paused_past_its_election_timeout_does_not_depose_the_leader`
//! saw the term go 1 → 3 every time, before this.)
//!
//! So openraft's own election timer is switched off (`enable_elect = false`)
//! and [`run`] keeps the same schedule instead: a voter campaigns once it has
//! heard from no leader for the leader lease plus its election timeout (only
//! the timeout while it has no leader to wait out). But first it asks the
//! other voters whether they would vote for it, which changes no term
//! anywhere. A voter says yes only if it would grant the real vote by
//! openraft's own rules: it is not the leader, has not heard from a leader
//! within the lease, and the candidate's log is at least as complete as its
//! own ([`decide`]). Only with a yes from a majority (of each configuration,
//! during a joint change) does the node start a real election.
//!
//! A pre-vote decides no one's safety — the real vote still does — only
//! whether a term is spent. A leader hand-over is the one exception: there the
//! leader asks its target to campaign at once (`ChatNode::campaign`), and
//! this timer holds off on the old leader meanwhile.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use openraft::ServerState;
use rand::Rng;
use tokio::time::Instant;

use crate::node::ChatNode;
use crate::store::log_store::last_log_id;
use crate::typ::{LogId, NodeId, Vote};

/// What a would-be candidate sends in a pre-vote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PreVoteRequest {
    pub candidate: NodeId,
    pub last_log_id: Option<LogId>,
}

/// Why a voter would not vote for the candidate now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum Refusal {
    #[error("this node is the leader")]
    Leading,
    #[error("this node heard from a leader within the lease")]
    LeaderAlive,
    #[error("the candidate's log is behind this node's")]
    LogBehind,
    #[error("this node cannot tell (its Raft is stopping or its log unreadable)")]
    Unknown,
}

/// A voter's answer: `Ok` means it would vote for the candidate.
pub type PreVoteResponse = Result<(), Refusal>;

/// What a node knows of itself that the pre-vote rules need.
#[derive(Debug, Clone)]
struct View {
    state: ServerState,
    vote: Vote,
    /// When the vote was last set or confirmed: by a leader's AppendEntries, a
    /// granted vote, or this node's own campaign (openraft's election clock).
    vote_touched: Option<Instant>,
    /// Each configuration whose majority must agree (two during a joint change).
    configs: Vec<BTreeSet<NodeId>>,
    voters: Vec<(NodeId, String)>,
}

impl View {
    async fn of(node: &ChatNode) -> Option<Self> {
        node.raft
            .with_raft_state(|st| {
                let membership = st.membership_state.effective().membership();
                Self {
                    state: st.server_state,
                    vote: *st.vote_ref(),
                    vote_touched: st.vote_last_modified(),
                    configs: membership.get_joint_config().clone(),
                    voters: membership
                        .voter_ids()
                        .map(|id| (id, membership.get_node(&id).map(|n| n.addr.clone()).unwrap_or_default()))
                        .collect(),
                }
            })
            .await
            .ok()
    }

    fn is_voter(&self, id: NodeId) -> bool {
        self.voters.iter().any(|(v, _)| *v == id)
    }
}

/// The pre-vote rule: would a voter in `state`, with `vote` last touched
/// `since_touched` ago and whose log ends at `mine`, vote for a candidate
/// whose log ends at `theirs`? The same rules openraft's real vote applies,
/// plus: a leader never would (it is alive, or it would not be answering).
pub fn decide(
    state: ServerState,
    vote_committed: bool,
    since_touched: Option<Duration>,
    lease: Duration,
    mine: Option<LogId>,
    theirs: Option<LogId>,
) -> PreVoteResponse {
    if state == ServerState::Leader {
        return Err(Refusal::Leading);
    }
    if vote_committed && since_touched.is_some_and(|t| t <= lease) {
        return Err(Refusal::LeaderAlive);
    }
    if theirs < mine {
        return Err(Refusal::LogBehind);
    }
    Ok(())
}

/// Whether `granted` holds a majority of every configuration in `configs`.
pub fn is_quorum(configs: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    !configs.is_empty() && configs.iter().all(|c| c.intersection(granted).count() * 2 > c.len())
}

/// This node's answer to a pre-vote.
pub async fn answer(node: &ChatNode, request: &PreVoteRequest) -> PreVoteResponse {
    let lease = lease(node);
    let view = View::of(node).await.ok_or(Refusal::Unknown)?;
    let mine = last_log_id(node.db()).map_err(|_| Refusal::Unknown)?;
    let since_touched = view.vote_touched.map(|t| t.elapsed());
    let answer = decide(view.state, view.vote.is_committed(), since_touched, lease, mine, request.last_log_id);
    tracing::debug!(candidate = request.candidate, ?answer, "pre-vote");
    answer
}

/// Runs this node's election timer until its Raft stops.
pub async fn run(node: Arc<ChatNode>) {
    let config = node.raft.config().clone();
    let lease = lease(&node);
    // When this node last asked for votes: the timer starts over from there.
    let mut last_attempt: Option<Instant> = None;
    loop {
        let timeout =
            Duration::from_millis(rand::rng().random_range(config.election_timeout_min..config.election_timeout_max));
        let Some(view) = View::of(&node).await else { return };
        if view.state == ServerState::Leader
            || !view.is_voter(node.id)
            || node.is_handing_over()
            || node.is_campaigning()
        {
            tokio::time::sleep(timeout).await;
            continue;
        }
        let silence = if view.voters.len() == 1 {
            Duration::ZERO // a lone voter has no leader to wait for (openraft elects it at once too)
        } else if view.vote.is_committed() {
            lease + timeout
        } else {
            timeout
        };
        let due =
            [view.vote_touched.map(|t| t + silence), last_attempt.map(|t| t + timeout)].into_iter().flatten().max();
        let now = Instant::now();
        if let Some(due) = due.filter(|&due| due > now) {
            tokio::time::sleep_until(due).await;
            continue; // look again: a leader may have been heard from meanwhile
        }
        last_attempt = Some(now);
        if pre_vote(&node, &view, None, Duration::from_millis(config.election_timeout_min)).await {
            // While we asked, we may have granted another candidate's vote or
            // heard from a new leader: that one is about to lead, and a
            // campaign now would depose it (seen in a test: a survivor of a
            // leader kill voted for the other survivor mid-pre-vote, then
            // campaigned anyway, and the term went 1 → 4).
            if View::of(&node).await.is_none_or(|now| now.vote != view.vote) {
                continue;
            }
            tracing::info!(term = view.vote.leader_id().term + 1, "pre-vote won; campaigning");
            if node.raft.trigger().elect().await.is_err() {
                return; // Raft has stopped
            }
        }
    }
}

/// For a hand-over target: whether a real election now would be won at the
/// first try, counting the leader that asked for it (it refuses a pre-vote,
/// being the leader, but grants the real vote: three-voter hand-overs are won
/// at once by the target and the old leader alone). Until the other voters' leases
/// on that leader lapse they would refuse, and each try spends a term: a
/// five-voter upgrade test saw the term go up by two in one hand-over.
pub async fn hand_over_would_win(node: &ChatNode, leader: NodeId) -> bool {
    let Some(view) = View::of(node).await else { return false };
    pre_vote(node, &view, Some(leader), Duration::from_millis(node.raft.config().election_timeout_min)).await
}

/// Asks every other voter (but `granted_already`, counted as a yes); true as
/// soon as a majority of each configuration (counting this node) would vote
/// for it — without waiting on voters that are down or cut off, which get
/// `timeout` to answer.
async fn pre_vote(node: &ChatNode, view: &View, granted_already: Option<NodeId>, timeout: Duration) -> bool {
    let request = match last_log_id(node.db()) {
        Ok(last_log_id) => PreVoteRequest { candidate: node.id, last_log_id },
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the last log id; not campaigning");
            return false;
        }
    };
    let mut asks: FuturesUnordered<_> = view
        .voters
        .iter()
        .filter(|(id, _)| *id != node.id && Some(*id) != granted_already)
        .map(|(id, addr)| {
            let request = &request;
            async move { (*id, node.peers().pre_vote(addr, request, timeout).await) }
        })
        .collect();
    let mut granted: BTreeSet<NodeId> = [node.id].into_iter().chain(granted_already).collect();
    while !is_quorum(&view.configs, &granted)
        && let Some((id, answer)) = asks.next().await
    {
        match answer {
            Ok(Ok(())) => {
                granted.insert(id);
            }
            Ok(Err(refusal)) => tracing::debug!(voter = id, %refusal, "pre-vote refused"),
            Err(e) => tracing::debug!(voter = id, error = %e, "pre-vote unanswered"),
        }
    }
    let won = is_quorum(&view.configs, &granted);
    if !won && granted_already.is_none() {
        tracing::info!(granted = ?granted, "pre-vote lost; not campaigning");
    }
    won
}

/// openraft's leader lease: a voter that heard from a leader this recently
/// refuses to vote for anyone else.
fn lease(node: &ChatNode) -> Duration {
    Duration::from_millis(node.raft.config().election_timeout_max)
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn log(term: u64, index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    const LEASE: Duration = Duration::from_millis(700);

    #[test]
    fn a_voter_that_heard_from_its_leader_within_the_lease_refuses() {
        let recently = Some(Duration::from_millis(200));
        let decide = |state, committed, since| decide(state, committed, since, LEASE, log(1, 5), log(1, 5));
        assert_eq!(decide(ServerState::Follower, true, recently), Err(Refusal::LeaderAlive));
        assert_eq!(decide(ServerState::Follower, true, Some(LEASE)), Err(Refusal::LeaderAlive));
        assert_eq!(decide(ServerState::Follower, true, Some(LEASE + Duration::from_millis(1))), Ok(()));
        // No leader to wait out: a candidate's own vote, or a vote granted but not yet committed.
        assert_eq!(decide(ServerState::Candidate, false, recently), Ok(()));
        assert_eq!(decide(ServerState::Follower, false, recently), Ok(()));
    }

    #[test]
    fn the_leader_refuses_whatever_its_clock_says() {
        assert_eq!(decide(ServerState::Leader, true, None, LEASE, None, log(9, 9)), Err(Refusal::Leading));
    }

    #[test]
    fn a_candidate_with_a_shorter_or_older_log_is_refused() {
        let long_ago = Some(Duration::from_secs(5));
        let decide = |mine, theirs| decide(ServerState::Follower, true, long_ago, LEASE, mine, theirs);
        assert_eq!(decide(log(2, 10), log(2, 9)), Err(Refusal::LogBehind));
        assert_eq!(decide(log(2, 10), log(1, 20)), Err(Refusal::LogBehind), "an older term loses to any index");
        assert_eq!(decide(log(2, 10), None), Err(Refusal::LogBehind));
        assert_eq!(decide(log(2, 10), log(2, 10)), Ok(()));
        assert_eq!(decide(log(2, 10), log(3, 1)), Ok(()));
        assert_eq!(decide(None, None), Ok(()));
    }

    #[test]
    fn a_quorum_is_a_majority_of_every_configuration() {
        let set = |ids: &[NodeId]| ids.iter().copied().collect::<BTreeSet<_>>();
        let three = vec![set(&[1, 2, 3])];
        assert!(!is_quorum(&three, &set(&[1])));
        assert!(is_quorum(&three, &set(&[1, 2])));
        assert!(is_quorum(&[set(&[1])], &set(&[1])), "a lone voter elects itself");
        let joint = vec![set(&[1, 2, 3]), set(&[3, 4, 5])];
        assert!(!is_quorum(&joint, &set(&[1, 2, 3])), "no majority of the new configuration");
        assert!(is_quorum(&joint, &set(&[1, 3, 4])));
        assert!(!is_quorum(&[], &set(&[1])));
        assert!(!is_quorum(&[set(&[1, 2, 3, 4])], &set(&[1, 2])), "half is not a majority");
    }
}
