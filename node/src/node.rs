//! [`ChatNode`]: one member of the cluster — its Raft instance, its state, and
//! the policies every gRPC service shares: where a write goes (proposed here
//! if leader, forwarded otherwise), how fresh a read is (read-index), how
//! membership changes, and how leadership is handed over.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError as CWE, RaftError as RE};
use openraft::{ChangeMembers, ServerState};
use tokio::time::{Instant, timeout_at};

use crate::command::{Command, Written};
use crate::error::{Error, Result};
use crate::network::peer::{PeerDialer, Peers};
use crate::proposer::{BatchSizes, ProposeError, Proposer};
use crate::read_index::ReadIndexRounds;
use crate::store::{Db, StateMachine};
use crate::typ::{ClientWriteError, Node, NodeId, Raft, RaftMetrics};

/// Timing of the node's own policies (Raft's timers live in `openraft::Config`).
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// A write or linearizable read that cannot complete in this time (no leader,
    /// no quorum) fails with UNAVAILABLE.
    pub request: Duration,
    /// How long a leader hand-over may take before the old leader gives up on it.
    pub hand_over: Duration,
    /// How long a learner may take to catch up before JoinCluster gives up.
    pub catch_up: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { request: Duration::from_secs(5), hand_over: Duration::from_secs(3), catch_up: Duration::from_secs(60) }
    }
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Every write acknowledged before the read began (a read-index round).
    Linearizable,
    /// At least state `min_index`, which the client has seen: read-your-writes
    /// and monotonic reads without contacting the leader.
    Session { min_index: u64 },
    /// Whatever this node has applied; with `max_staleness`, only if it has
    /// heard from a leader within it.
    Stale { max_staleness: Option<Duration> },
}

/// A point-in-time summary of this node's view, from Raft's metrics.
#[derive(Debug, Clone)]
pub struct Status {
    pub id: NodeId,
    pub address: Node,
    pub state: ServerState,
    pub term: u64,
    pub leader: Option<(NodeId, Node)>,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
    /// When this node became leader (Unix ms); 0 unless it leads.
    pub leader_since_ms: u64,
    /// (id, addresses, voter, matched index if this node leads)
    pub members: Vec<(NodeId, Node, bool, Option<u64>)>,
}

pub struct ChatNode {
    pub id: NodeId,
    /// Where this node is reached: its peer and public addresses.
    pub address: Node,
    pub raft: Raft,
    state: StateMachine,
    /// Where this node, as leader, proposes commands: batched into entries.
    proposer: Proposer,
    /// Where this node, as leader, confirms read indexes: one round for many reads.
    read_indexes: ReadIndexRounds,
    /// Channels to the other nodes' peer ports, for forwarding to the leader.
    peers: Peers,
    timeouts: Timeouts,
    /// Set while this leader hands leadership over; writes wait for the new leader.
    handing_over: AtomicBool,
    /// Set while this node campaigns at a leader's request ([`ChatNode::campaign`]).
    campaigning: AtomicBool,
    /// When this node last became leader (Unix ms), 0 while it does not lead
    /// ([`ChatNode::track_leadership`] keeps it).
    leader_since_ms: AtomicU64,
    /// Serialises membership changes on this node. openraft refuses a change while
    /// another is committing; queueing here turns concurrent joins (a StatefulSet
    /// scaling up starts pods in parallel) into an orderly sequence instead of
    /// errors and client backoff. A tokio Mutex: it is held across awaits.
    membership_changes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ChatNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatNode").field("id", &self.id).field("address", &self.address).finish_non_exhaustive()
    }
}

impl ChatNode {
    /// Must run inside a tokio runtime: it starts the proposer's batching task.
    pub fn new(
        id: NodeId,
        address: Node,
        dialer: PeerDialer,
        raft: Raft,
        state: StateMachine,
        timeouts: Timeouts,
        batch_sizes: BatchSizes,
    ) -> Arc<Self> {
        Arc::new(Self {
            id,
            address,
            proposer: Proposer::start(raft.clone(), batch_sizes),
            read_indexes: ReadIndexRounds::start(raft.clone(), timeouts.request),
            peers: Peers::new(dialer),
            raft,
            state,
            timeouts,
            handing_over: AtomicBool::new(false),
            campaigning: AtomicBool::new(false),
            leader_since_ms: AtomicU64::new(0),
            membership_changes: tokio::sync::Mutex::new(()),
        })
    }

    pub fn db(&self) -> &Db {
        self.state.db()
    }

    pub fn state(&self) -> &StateMachine {
        &self.state
    }

    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow().clone()
    }

    /// Whether this node has applied `index`, waiting at most `within`.
    /// Usually it has already: then no waiter and no timer.
    async fn applied_within(&self, index: u64, within: Duration) -> bool {
        self.applied_index() >= index
            || self.raft.wait(Some(within)).applied_index_at_least(Some(index), "read").await.is_ok()
    }

    /// The index of the last entry this node applied: the state its reads reflect.
    pub fn applied_index(&self) -> u64 {
        self.raft.metrics().borrow().last_applied.map_or(0, |l| l.index)
    }

    /// How long since this node was last in touch with a leader: as leader,
    /// since a quorum last acknowledged it; otherwise since its leader's last
    /// AppendEntries or heartbeat. `None` when it knows no leader.
    pub async fn out_of_touch_for(&self) -> Option<Duration> {
        let m = self.metrics();
        if m.state == ServerState::Leader {
            return m.millis_since_quorum_ack.map(Duration::from_millis);
        }
        m.current_leader?;
        self.raft
            .with_raft_state(|st| st.vote_ref().is_committed().then(|| st.vote_last_modified()).flatten())
            .await
            .ok()
            .flatten()
            .map(|t| t.elapsed())
    }

    /// Records when this node becomes leader (each term it wins), for
    /// `GetStatus.leader_since_ms`. Runs until Raft stops.
    pub async fn track_leadership(self: Arc<Self>) {
        let mut metrics = self.raft.metrics();
        let mut led: Option<u64> = None;
        loop {
            let leading = {
                let m = metrics.borrow_and_update();
                (m.state == ServerState::Leader).then_some(m.current_term)
            };
            if leading != led {
                let since = if leading.is_some() { u64::try_from(crate::command::now_ms()).unwrap_or(0) } else { 0 };
                self.leader_since_ms.store(since, Ordering::Release);
                led = leading;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// The leader's id and addresses as this node currently believes.
    pub fn leader(&self) -> Option<(NodeId, Node)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// Channels to the other nodes.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// While true, this node (still the leader) is handing leadership over and
    /// must not start an election of its own (see [`ChatNode::hand_over`]).
    pub(crate) fn is_handing_over(&self) -> bool {
        self.handing_over.load(Ordering::Acquire)
    }

    /// While true, this node campaigns at a leader's request, and its election
    /// timer must not campaign as well: two campaigns on one node spend a term
    /// each (seen in a test: the hand-over target at terms 3 and 4 at once).
    pub(crate) fn is_campaigning(&self) -> bool {
        self.campaigning.load(Ordering::Acquire)
    }

    fn unavailable(&self, message: impl Into<String>) -> Error {
        // Clients follow the hint, so it is the leader's public address.
        let leader = self.leader().filter(|(id, _)| *id != self.id).map(|(id, node)| (id, node.api));
        Error::Unavailable { message: message.into(), leader }
    }

    /// Waits while this node hands leadership over (see [`ChatNode::hand_over`]).
    ///
    /// # Errors
    /// `Timeout` if the hand-over was still going at `deadline`.
    async fn hand_over_done(&self, deadline: Instant) -> Result<()> {
        while self.is_handing_over() {
            if !self.await_change(deadline).await {
                return Err(Error::Timeout("leadership hand-over did not finish in time".into()));
            }
        }
        Ok(())
    }

    /// Waits until Raft's metrics change or `deadline` passes; `false` on deadline.
    async fn await_change(&self, deadline: Instant) -> bool {
        let mut rx = self.raft.metrics();
        rx.mark_unchanged();
        // Wake at least every 100ms: a forward that failed may succeed again
        // without any local metrics change (the leader's server came back).
        let wake = (Instant::now() + Duration::from_millis(100)).min(deadline);
        let _ = timeout_at(wake, rx.changed()).await;
        Instant::now() < deadline
    }

    /// Commits `cmd` through the leader and returns what applying it produced.
    ///
    /// Proposed here when this node leads; otherwise forwarded to the leader.
    /// Retries across leader changes until the request timeout, but only for
    /// commands that are safe to send twice (see [`Command::is_idempotent`]).
    ///
    /// # Errors
    /// `Unavailable`/`Timeout` when no leader with a quorum commits it in time.
    pub async fn write(&self, cmd: Command) -> Result<Written> {
        let deadline = Instant::now() + self.timeouts.request;
        loop {
            self.hand_over_done(deadline).await?;
            match self.leader() {
                Some((leader, _)) if leader == self.id => {
                    match timeout_at(deadline, self.proposer.propose(cmd.clone())).await {
                        Ok(Ok(result)) => return Ok(result),
                        Ok(Err(ProposeError::NotLeader)) => {}
                        Ok(Err(ProposeError::Failed(e))) => return Err(self.unavailable(format!("write failed: {e}"))),
                        Err(_) => {
                            return Err(Error::Timeout("write not committed in time: no quorum reachable".into()));
                        }
                    }
                }
                Some((_, leader)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match self.peers.forward(&leader.addr, &cmd, left).await {
                        Ok(Ok(result)) => return Ok(result),
                        // It proposed nothing (it no longer leads): safe to retry any command.
                        Ok(Err(ProposeError::NotLeader)) => {}
                        Ok(Err(ProposeError::Failed(_))) | Err(Error::Unavailable { .. }) if cmd.is_idempotent() => {}
                        Ok(Err(ProposeError::Failed(e))) => return Err(self.unavailable(format!("write failed: {e}"))),
                        Err(e) => return Err(e),
                    }
                }
                None => {}
            }
            if !self.await_change(deadline).await {
                return Err(self.unavailable("no leader: the cluster has no quorum or is electing"));
            }
        }
    }

    /// Waits until this node's applied state reflects every write committed
    /// before the call (for [`Consistency::Linearizable`]), or `min_index`
    /// (for `Session`); for `Stale`, checks only the bound on staleness.
    ///
    /// The leader confirms its leadership with a quorum (openraft's read-index);
    /// a follower asks the leader for that index and waits to apply it locally,
    /// so reads scale out over followers without ever going back in time.
    ///
    /// # Errors
    /// `Unavailable`/`Timeout` when no leader can confirm a read point in time,
    /// when a session's index is not applied in time, or when this node has
    /// been out of touch with a leader for longer than a stale read allows.
    pub async fn read_barrier(&self, consistency: Consistency) -> Result<()> {
        match consistency {
            Consistency::Linearizable => {}
            Consistency::Stale { max_staleness: None } => return Ok(()),
            Consistency::Stale { max_staleness: Some(max) } => {
                return match self.out_of_touch_for().await {
                    Some(d) if d <= max => Ok(()),
                    Some(d) => Err(self.unavailable(format!(
                        "this node last heard from a leader {} ms ago, longer than max_staleness_ms {}; \
                         try another member, or a LINEARIZABLE read",
                        d.as_millis(),
                        max.as_millis()
                    ))),
                    None => Err(self.unavailable(
                        "this node knows no leader, so it cannot bound its staleness; try another member",
                    )),
                };
            }
            Consistency::Session { min_index } => {
                return if self.applied_within(min_index, self.timeouts.request).await {
                    Ok(())
                } else {
                    Err(self.unavailable(format!(
                        "this node has applied {} of min_index {min_index} (the session's); \
                         try another member, or a LINEARIZABLE read",
                        self.applied_index()
                    )))
                };
            }
        }
        let deadline = Instant::now() + self.timeouts.request;
        loop {
            let index = match self.leader() {
                Some((leader, _)) if leader == self.id => match self.read_index_here(deadline).await {
                    Ok(index) => Some(index),
                    Err(Error::Timeout(m)) => return Err(Error::Timeout(m)),
                    Err(_) => None,
                },
                Some((_, leader)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match self.peers.read_index(&leader.addr, left).await {
                        Ok(index) => Some(index),
                        Err(Error::Unavailable { .. }) => None,
                        Err(e) => return Err(e),
                    }
                }
                None => None,
            };
            if let Some(index) = index {
                let left = deadline.saturating_duration_since(Instant::now());
                return if self.applied_within(index, left).await {
                    Ok(())
                } else {
                    Err(Error::Timeout(format!("this node did not apply up to read index {index} in time")))
                };
            }
            if !self.await_change(deadline).await {
                return Err(self.unavailable("no leader: the cluster has no quorum or is electing"));
            }
        }
    }

    /// As leader: commits `cmd` (batched with others) and returns its result.
    /// Never forwards: for commands a follower forwarded here.
    ///
    /// Waits out a hand-over first, as [`ChatNode::write`] does: proposing now
    /// would replicate, refresh the followers' leader leases and keep the
    /// hand-over target from winning its election (found by the chaos run:
    /// removing the leader under load failed with "no new leader emerged").
    ///
    /// # Errors
    /// [`ProposeError::NotLeader`] when this node does not lead.
    pub async fn propose_here(&self, cmd: Command) -> std::result::Result<Written, ProposeError> {
        if self.hand_over_done(Instant::now() + self.timeouts.hand_over).await.is_err() {
            return Err(ProposeError::NotLeader);
        }
        self.proposer.propose(cmd).await
    }

    /// As leader: confirms leadership with a quorum and returns the index a read must wait for.
    ///
    /// # Errors
    /// `Unavailable` if this node is not the leader; `Timeout` if no quorum answers in time.
    pub async fn read_index_here(&self, deadline: Instant) -> Result<u64> {
        // Confirming leadership sends heartbeats, which would renew the
        // followers' leases on this leader mid hand-over: wait it out.
        self.hand_over_done(deadline).await?;
        match timeout_at(deadline, self.read_indexes.next()).await {
            Ok(Ok(index)) => Ok(index),
            Ok(Err(e)) => Err(self.unavailable(e)),
            Err(_) => Err(Error::Timeout("leadership not confirmed in time: no quorum reachable".into())),
        }
    }

    /// This node's view of the cluster.
    pub async fn status(&self) -> Status {
        let m = self.metrics();
        let committed = self.raft.with_raft_state(|st| st.committed.map(|c| c.index)).await.ok().flatten();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched = m.replication.as_ref().map(|_| {
                    if *id == self.id { m.last_log_index.unwrap_or(0) } else { matched_index(&m, *id).unwrap_or(0) }
                });
                (*id, node.clone(), voters.contains(id), matched)
            })
            .collect();
        Status {
            id: self.id,
            address: self.address.clone(),
            state: m.state,
            term: m.current_term,
            leader: self.leader(),
            last_log_index: m.last_log_index.unwrap_or(0),
            committed_index: committed.unwrap_or(0),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            leader_since_ms: if m.state == ServerState::Leader {
                self.leader_since_ms.load(Ordering::Acquire)
            } else {
                0
            },
            members,
        }
    }

    /// Founds a one-member cluster with this node as its voter, if it belongs to
    /// none yet. Returns whether it founded one.
    ///
    /// # Errors
    /// `Internal` if Raft refuses (e.g. it is shutting down).
    pub async fn initialize(&self) -> Result<bool> {
        let _one_at_a_time = self.membership_changes.lock().await;
        if self.raft.is_initialized().await.map_err(|e| Error::Internal(format!("raft: {e}")))? {
            return Ok(false);
        }
        let members = BTreeMap::from([(self.id, self.address.clone())]);
        match self.raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(id = self.id, "founded a new cluster");
                Ok(true)
            }
            // Raced with a leader that reached us first: we belong to a cluster now.
            Err(openraft::error::RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(Error::Internal(format!("initializing raft: {e}"))),
        }
    }

    /// Makes `id`, reached at `node`, a voter: learner first, caught up, then
    /// promoted — or, with `learner`, a read replica: caught up and never
    /// promoted (a voter is never demoted to one). Safe to repeat. Must run on
    /// the leader.
    ///
    /// A member's addresses change only when it no longer answers at the old
    /// ones (it came back elsewhere): rewriting a live member's address would
    /// cut the cluster off from a voter it needs for its quorum. A learner this
    /// call added is removed again if it does not catch up, so a failed join
    /// leaves nothing behind.
    ///
    /// # Errors
    /// `FailedPrecondition` for a live member under other addresses;
    /// `Unavailable` if this node is not the leader or the change cannot commit;
    /// `Timeout` if the new member does not catch up in time.
    pub async fn join(&self, id: NodeId, node: Node, learner: bool) -> Result<()> {
        let _one_at_a_time = self.membership_changes.lock().await;
        let m = self.metrics();
        let membership = m.membership_config.membership().clone();
        let known = membership.get_node(&id).cloned();
        let is_voter = membership.voter_ids().any(|v| v == id);
        if learner && is_voter {
            return Err(Error::FailedPrecondition(format!(
                "node {id} is a voter; it cannot become a read replica (remove it first)"
            )));
        }
        let mut added = false;
        match known {
            Some(known) if known == node && is_voter => return Ok(()),
            Some(known) if known != node => {
                if id == self.id || self.peers.answers_as(&known.addr, id).await {
                    return Err(Error::FailedPrecondition(format!(
                        "node {id} is alive and answering at {}; its address is not changed while it answers \
                         (remove it first to replace it)",
                        known.addr
                    )));
                }
                tracing::info!(node = id, old = %known, new = %node, "updating the address of a member that no longer answers");
                let change = ChangeMembers::SetNodes(BTreeMap::from([(id, node.clone())]));
                self.raft.change_membership(change, true).await.map_err(|e| self.membership_error(e))?;
            }
            Some(_) => {}
            None => {
                tracing::info!(node = id, %node, "adding learner");
                // Not openraft's blocking mode: it returns as soon as the learner is
                // within `replication_lag_threshold` (5000 entries) — at once on a
                // young cluster, before a snapshot has even been sent.
                self.raft.add_learner(id, node, false).await.map_err(|e| self.membership_error(e))?;
                added = true;
            }
        }
        if !is_voter {
            if let Err(e) = self.wait_caught_up(id, self.timeouts.catch_up).await {
                if added {
                    tracing::info!(node = id, error = %e, "removing the learner this join added");
                    let change = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
                    if let Err(e) = self.raft.change_membership(change, false).await {
                        tracing::warn!(node = id, error = %e, "could not remove the learner of a failed join");
                    }
                }
                return Err(e);
            }
            if learner {
                tracing::info!(node = id, "read replica caught up; it stays a learner");
                return Ok(());
            }
            tracing::info!(node = id, "promoting learner to voter");
            let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
            self.raft.change_membership(change, false).await.map_err(|e| self.membership_error(e))?;
        }
        Ok(())
    }

    /// Waits, at most `within`, until member `id` has every entry this leader
    /// had when the wait began (a learner before promotion, a hand-over target).
    async fn wait_caught_up(&self, id: NodeId, within: Duration) -> Result<()> {
        let target = self.metrics().last_log_index.unwrap_or(0);
        let caught_up = move |m: &RaftMetrics| matched_index(m, id).is_some_and(|i| i >= target);
        match self.raft.wait(Some(within)).metrics(caught_up, "caught up").await {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::Timeout(format!("node {id} did not catch up to index {target} within {within:?}"))),
        }
    }

    /// Removes `id` from the cluster (voter or learner). Must run on the leader;
    /// when `id` is this leader, the caller hands leadership over first.
    ///
    /// # Errors
    /// `InvalidArgument` for the last voter; `Unavailable` if the change cannot commit.
    pub async fn remove(&self, id: NodeId) -> Result<()> {
        let _one_at_a_time = self.membership_changes.lock().await;
        let m = self.metrics();
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Ok(());
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(Error::invalid(format!(
                    "node {id} is the last voter; a cluster cannot remove its last voter"
                )));
            }
            tracing::info!(node = id, "removing voter");
            let change = ChangeMembers::RemoveVoters(BTreeSet::from([id]));
            self.raft.change_membership(change, false).await.map_err(|e| self.membership_error(e))?;
        } else {
            tracing::info!(node = id, "removing learner");
            let change = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
            self.raft.change_membership(change, false).await.map_err(|e| self.membership_error(e))?;
        }
        Ok(())
    }

    fn membership_error(&self, e: RE<NodeId, ClientWriteError>) -> Error {
        match e {
            RE::APIError(CWE::ForwardToLeader(_)) => self.unavailable("not the leader"),
            // Another change is still committing: transient, the caller retries.
            RE::APIError(CWE::ChangeMembershipError(e @ ChangeMembershipError::InProgress(_))) => {
                self.unavailable(format!("membership change refused for now: {e}"))
            }
            RE::APIError(CWE::ChangeMembershipError(e)) => Error::invalid(format!("membership change refused: {e}")),
            other => self.unavailable(format!("membership change failed: {other}")),
        }
    }

    /// Hands leadership to `to` (or the most caught-up voter), and waits until
    /// another node leads. Writes arriving meanwhile wait and then go to the new leader.
    ///
    /// openraft 0.9 has no leader-transfer call, so this composes one: stop
    /// heartbeats once the target has every entry, then ask the target to
    /// campaign. Its log is the most complete, so it wins as soon as the other
    /// voters' leader leases lapse (`election_timeout_max`), before any other
    /// follower's election timer fires.
    ///
    /// # Errors
    /// `InvalidArgument` without another voter; `Unavailable` if not leader or it did not finish in time.
    pub async fn hand_over(&self, to: Option<NodeId>) -> Result<NodeId> {
        let m = self.metrics();
        if m.current_leader != Some(self.id) {
            return Err(self.unavailable("not the leader"));
        }
        let membership = m.membership_config.membership().clone();
        let matched = |id: &NodeId| matched_index(&m, *id).unwrap_or(0);
        let target = match to {
            Some(t) if t != self.id && membership.voter_ids().any(|v| v == t) => t,
            Some(t) => return Err(Error::invalid(format!("node {t} is not another voter"))),
            None => membership
                .voter_ids()
                .filter(|v| *v != self.id)
                .max_by_key(matched)
                .ok_or_else(|| Error::invalid("no other voter to hand leadership to"))?,
        };
        let addr = membership.get_node(&target).map(|n| n.addr.clone()).unwrap_or_default();
        tracing::info!(to = target, "handing leadership over");
        // Also keeps our election timer (`election::run`) from campaigning
        // against the target: once its vote request makes us step down, we
        // would otherwise race it, term after term (seen in a test: both
        // campaigning every ~300 ms for 3 s).
        self.handing_over.store(true, Ordering::Release);
        let _ending = HandOverEnds(self);
        self.do_hand_over(target, &addr).await
    }

    /// Returns the id of the node that leads afterwards (normally `target`).
    async fn do_hand_over(&self, target: NodeId, addr: &str) -> Result<NodeId> {
        let deadline = Instant::now() + self.timeouts.hand_over;
        // 0. Let what was proposed before the hand-over began commit, and
        //    propose nothing more, so the log stops growing: an entry appended
        //    after the target caught up would make every holder of it refuse
        //    the target. (New writes wait in `write` now, but one that got past
        //    that check just before, or sits in the proposer's queue, would
        //    still be proposed: the chaos run caught exactly that, the target
        //    one entry short and campaigning in vain for the whole timeout.)
        let Ok(_paused) = timeout_at(deadline, self.proposer.pause()).await else {
            return Err(Error::Timeout("writes in flight did not commit in time to hand over".into()));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let settled = |m: &RaftMetrics| m.last_applied.map(|l| l.index) >= m.last_log_index;
        if self.raft.wait(Some(left)).metrics(settled, "in-flight writes applied").await.is_err() {
            return Err(Error::Timeout("writes in flight did not commit in time to hand over".into()));
        }
        // 1. Let the target catch up with everything this leader has.
        self.wait_caught_up(target, deadline.saturating_duration_since(Instant::now())).await?;
        // 2. Go quiet, so followers' leases on this leader lapse, and let the target campaign.
        self.raft.runtime_config().heartbeat(false);
        self.peers.campaign(addr, self.id, deadline.saturating_duration_since(Instant::now())).await?;
        // 3. Wait to see someone else lead.
        let me = self.id;
        let left = deadline.saturating_duration_since(Instant::now());
        match self.raft.wait(Some(left)).metrics(|m| m.current_leader.is_some_and(|l| l != me), "new leader").await {
            Ok(m) => Ok(m.current_leader.unwrap_or(target)),
            Err(_) => Err(Error::Timeout("no new leader emerged in time".into())),
        }
    }

    /// Called on the hand-over target: start elections until this node leads
    /// (or someone else does), for at most the hand-over timeout.
    pub async fn campaign(&self, from: NodeId) {
        /// One election round: long enough for the vote requests and replies to
        /// cross, short enough to retry promptly once the voters' leases lapse.
        /// (Re-triggering on every metrics change would abort each election with
        /// the next one: our own term bump is such a change.)
        const ROUND: Duration = Duration::from_millis(150);
        /// How often to ask again whether the voters' leases have lapsed.
        const LEASE_POLL: Duration = Duration::from_millis(20);
        /// Clears the flag however the campaign ends (also when the caller
        /// gives up and this future is dropped).
        struct Campaigning<'a>(&'a AtomicBool);
        impl Drop for Campaigning<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        tracing::info!(from, "campaigning for leadership at the leader's request");
        self.campaigning.store(true, Ordering::Release);
        let _campaigning = Campaigning(&self.campaigning);
        let deadline = Instant::now() + self.timeouts.hand_over;
        let someone_new = |m: &RaftMetrics| m.current_leader.is_some_and(|l| l != from);
        while Instant::now() < deadline {
            if someone_new(&self.metrics()) {
                return;
            }
            // Spend a term only on an election that can be won.
            if !crate::election::hand_over_would_win(self, from).await {
                let _ = self.raft.wait(Some(LEASE_POLL)).metrics(someone_new, "new leader").await;
                continue;
            }
            if self.raft.trigger().elect().await.is_err() {
                return;
            }
            let _ = self.raft.wait(Some(ROUND)).metrics(someone_new, "new leader").await;
        }
    }
}

/// Ends a hand-over however it ends — also when its caller gives up (a
/// `TransferLeader` client that disconnects drops the call mid-way): heartbeats
/// back on and writes no longer held. Without it such a leader stayed silent
/// and held every write until its deadline, for good.
struct HandOverEnds<'a>(&'a ChatNode);

impl Drop for HandOverEnds<'_> {
    fn drop(&mut self) {
        self.0.raft.runtime_config().heartbeat(true);
        self.0.handing_over.store(false, Ordering::Release);
    }
}

/// The highest log index the leader knows member `id` holds: `None` when this
/// node is not the leader or `id` has acknowledged nothing yet.
fn matched_index(m: &RaftMetrics, id: NodeId) -> Option<u64> {
    m.replication.as_ref()?.get(&id).copied().flatten().map(|l| l.index)
}
