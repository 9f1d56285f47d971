//! `RaftServiceImpl`: receives Raft RPCs from peers (and pre-votes) and serves
//! the follower → leader calls (forwarded writes, read-index, campaign requests).

use std::pin::Pin;
use std::sync::Arc;

use chat_proto::raft::raft_service_server::RaftService;
use chat_proto::raft::{CampaignRequest, CampaignResponse, Payload, ReadIndexRequest, ReadIndexResponse};
use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::{Request, Response, Status, Streaming};

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

use crate::command::{Command, Written};
use crate::election::{self, PreVoteRequest};
use crate::metrics::{MethodLabel, RaftRpcMetrics};
use crate::node::ChatNode;
use crate::proposer::ProposeError;
use crate::store::{decode, encode};
use crate::typ::{NodeId, TypeConfig};

pub struct RaftServiceImpl {
    node: Arc<ChatNode>,
    metrics: RaftRpcMetrics,
    /// Becomes true when the server stops accepting: open AppendEntries
    /// streams end then, as a unary call would have.
    stopping: watch::Receiver<bool>,
}

impl RaftServiceImpl {
    pub fn new(node: Arc<ChatNode>, metrics: RaftRpcMetrics, stopping: watch::Receiver<bool>) -> Self {
        Self { node, metrics, stopping }
    }
}

/// Replies to the requests of one `AppendEntries` stream, in order.
type AppendEntriesReplies = Pin<Box<dyn Stream<Item = Result<Payload, Status>> + Send>>;

/// How far a candidate's term may be ahead of this node's. Honest terms move
/// one election at a time: pre-vote keeps a partitioned node's from climbing,
/// and a hand-over target campaigns a few dozen times at most. A term far
/// beyond is a corrupt or hostile peer (one Vote with 2^40 deposed the
/// leader; 2^64-1 wrapped to 0 at the next election and panicked openraft).
const MAX_TERM_LEAD: u64 = 10_000;
/// No term from a peer may come near wrapping, whatever the current term.
const MAX_TERM: u64 = u64::MAX / 2;

impl RaftServiceImpl {
    /// Refuses a `term` from a peer that is absurd: past [`MAX_TERM`], or, for a
    /// vote, more than [`MAX_TERM_LEAD`] ahead of ours. (A leader's term may be
    /// far ahead of a member that was down for long; only its magnitude is checked.)
    fn check_term(&self, what: &str, term: u64, vote: bool) -> Result<(), Status> {
        let current = self.node.metrics().current_term;
        let limit = if vote { current.saturating_add(MAX_TERM_LEAD).min(MAX_TERM) } else { MAX_TERM };
        if term > limit {
            tracing::warn!(what, term, current, "refused a peer's message with an absurd term");
            return Err(Status::invalid_argument(format!(
                "{what}: term {term} is absurdly far ahead of this node's term {current}"
            )));
        }
        Ok(())
    }
}

fn decode_payload<T: serde::de::DeserializeOwned>(payload: &Payload) -> Result<T, Status> {
    decode(&payload.data).map_err(|e| Status::invalid_argument(format!("undecodable raft payload: {e}")))
}

fn reply<T: serde::Serialize>(value: &T) -> Result<Response<Payload>, Status> {
    Ok(Response::new(Payload { data: encode(value) }))
}

#[tonic::async_trait]
impl RaftService for RaftServiceImpl {
    type AppendEntriesStream = AppendEntriesReplies;

    /// Each request is answered before the next is read: the replies are
    /// produced by the task that sends them (no task or channel in between),
    /// and the leader never has more than one request outstanding anyway.
    /// An undecodable request ends the stream with `InvalidArgument`.
    ///
    /// The stream ends when this server starts stopping. A leader keeps its
    /// stream open for as long as it leads, so a graceful shutdown would
    /// otherwise wait out its whole grace period for a call that never
    /// finishes (a handed-over leader is the new leader's follower). A request
    /// cut off this way goes unanswered, which the leader treats as a failed
    /// call and retries — here or, once we are gone, as an unreachable peer.
    async fn append_entries(
        &self,
        request: Request<Streaming<Payload>>,
    ) -> Result<Response<Self::AppendEntriesStream>, Status> {
        let node = self.node.clone();
        let term_ok = |rpc: &AppendEntriesRequest<TypeConfig>| {
            let term = rpc.vote.leader_id().term;
            if term > MAX_TERM {
                tracing::warn!(term, "refused an AppendEntries with an absurd term");
                return Err(Status::invalid_argument(format!("AppendEntries: term {term} is absurd")));
            }
            Ok(())
        };
        let handled = self.metrics.handled.get_or_create(&MethodLabel { method: "AppendEntries" }).clone();
        let mut stopping = self.stopping.clone();
        let stopped = async move {
            let _ = stopping.wait_for(|s| *s).await;
        };
        let replies = request.into_inner().then(move |request| {
            let (node, handled) = (node.clone(), handled.clone());
            async move {
                let started = std::time::Instant::now();
                let rpc: AppendEntriesRequest<TypeConfig> = decode_payload(&request?)?;
                term_ok(&rpc)?;
                let response = node.raft.append_entries(rpc).await;
                handled.observe(started.elapsed().as_secs_f64());
                Ok(Payload { data: encode(&response) })
            }
        });
        let replies = replies.take_until(stopped);
        // tonic ends the stream at the first error (sent as its trailers).
        Ok(Response::new(Box::pin(replies)))
    }

    async fn vote(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc: VoteRequest<NodeId> = decode_payload(request.get_ref())?;
        self.check_term("Vote", rpc.vote.leader_id().term, true)?;
        self.check_term("Vote (last log)", rpc.last_log_id.map_or(0, |l| l.leader_id.term), true)?;
        reply(&self.node.raft.vote(rpc).await)
    }

    async fn pre_vote(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let ask: PreVoteRequest = decode_payload(request.get_ref())?;
        self.check_term("PreVote (last log)", ask.last_log_id.map_or(0, |l| l.leader_id.term), true)?;
        reply(&election::answer(&self.node, &ask).await)
    }

    async fn install_snapshot(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode_payload(request.get_ref())?;
        self.check_term("InstallSnapshot", rpc.vote.leader_id().term, false)?;
        reply(&self.node.raft.install_snapshot(rpc).await)
    }

    /// Proposes a command a follower prepared. Only proposes here: a node that
    /// is no longer leader answers `NotLeader` (nothing proposed, so the
    /// follower may retry any command) rather than forwarding again, so a
    /// request never bounces between nodes.
    #[tracing::instrument(skip_all, fields(node = self.node.id))]
    async fn forward(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let cmd: Command = decode_payload(request.get_ref())?;
        // The follower checked it already; a member is trusted with Raft, not with skipping the API's rules.
        cmd.check()?;
        let result: Result<Written, ProposeError> = self.node.propose_here(cmd).await;
        reply(&result)
    }

    async fn read_index(&self, request: Request<ReadIndexRequest>) -> Result<Response<ReadIndexResponse>, Status> {
        let deadline = Instant::now() + request_timeout(&request);
        let index = self.node.read_index_here(deadline).await?;
        Ok(Response::new(ReadIndexResponse { index }))
    }

    async fn campaign(&self, request: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let from = request.into_inner().from;
        let node = self.node.clone();
        // Campaign in the background: the old leader only needs to know we started.
        tokio::spawn(async move { node.campaign(from).await });
        Ok(Response::new(CampaignResponse {}))
    }
}

/// The longest a read-index request may wait, whatever deadline its caller sent.
const MAX_READ_INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The caller's deadline (`grpc-timeout`), or 5 s; never more than [`MAX_READ_INDEX_WAIT`].
fn request_timeout<T>(request: &Request<T>) -> std::time::Duration {
    request
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .unwrap_or(std::time::Duration::from_secs(5))
        .min(MAX_READ_INDEX_WAIT)
}

/// Parses gRPC's `grpc-timeout` header: at most 8 digits then a unit (H, M,
/// S, m, u, n), as the gRPC spec allows. Anything else — longer, overflowing
/// — is `None`: the header comes from the caller, and `18446744073709551615S`
/// once reached `Instant::now() + u64::MAX seconds`.
fn parse_grpc_timeout(v: &str) -> Option<std::time::Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    use std::time::Duration as D;
    Some(match unit {
        "H" => D::from_secs(n.checked_mul(3600)?),
        "M" => D::from_secs(n.checked_mul(60)?),
        "S" => D::from_secs(n),
        "m" => D::from_millis(n),
        "u" => D::from_micros(n),
        "n" => D::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("250m"), Some(std::time::Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("3S"), Some(std::time::Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("18446744073709551615S"), None, "more than 8 digits");
        assert_eq!(parse_grpc_timeout("+5S"), None);
        assert_eq!(parse_grpc_timeout("99999999H"), Some(std::time::Duration::from_secs(99_999_999 * 3600)));
    }
}
