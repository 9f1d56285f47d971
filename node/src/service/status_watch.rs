//! WatchStatus: GetStatus pushed on change, so a watcher (the operator's
//! leader routing, a console) learns of an election the moment this node
//! does, and costs nothing while nothing changes.
//!
//! Driven by openraft's metrics channel, which fires on every appended and
//! applied entry. What matters for routing — role, term, leader, membership —
//! is sent at once; index-only movement is coalesced to one update per
//! `min_interval`, so a write load cannot turn into a message per write. A
//! heartbeat at least every `heartbeat` lets the watcher tell a silent
//! (partitioned, hung) node from a quiet one.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chat_proto::cluster::{GetStatusResponse, WatchStatusRequest};
use futures::Stream;
use openraft::{RaftMetrics, ServerState};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::cluster::to_proto;
use crate::error::{Error, Result};
use crate::node::ChatNode;
use crate::typ::{Node, NodeId};

pub type StatusStream = Pin<Box<dyn Stream<Item = std::result::Result<GetStatusResponse, Status>> + Send>>;

const DEFAULT_MIN_INTERVAL: Duration = Duration::from_millis(1000);
const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(5000);

/// How one stream paces its updates, from the request (validated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub min_interval: Duration,
    pub heartbeat: Duration,
}

impl Pace {
    /// # Errors
    /// `InvalidArgument` naming the field out of range.
    pub fn from_request(r: &WatchStatusRequest) -> Result<Self> {
        let field = |value: u32, name: &str, default: Duration, range: std::ops::RangeInclusive<u32>| match value {
            0 => Ok(default),
            v if range.contains(&v) => Ok(Duration::from_millis(u64::from(v))),
            v => Err(Error::InvalidArgument(format!(
                "{name}: {v} is out of range; 0 for the default or {}..={}",
                range.start(),
                range.end()
            ))),
        };
        Ok(Self {
            min_interval: field(r.min_interval_ms, "min_interval_ms", DEFAULT_MIN_INTERVAL, 100..=60_000)?,
            heartbeat: field(r.heartbeat_ms, "heartbeat_ms", DEFAULT_HEARTBEAT, 1_000..=60_000)?,
        })
    }
}

/// The streams one node serves at once.
#[derive(Debug, Clone)]
pub struct StatusWatches {
    places: Arc<Semaphore>,
    limit: usize,
}

impl StatusWatches {
    pub fn new(limit: usize) -> Self {
        Self { places: Arc::new(Semaphore::new(limit)), limit }
    }

    /// Starts a stream of `node`'s status, ending when `stopping` turns true.
    ///
    /// # Errors
    /// `ResourceExhausted` when the node already serves its limit.
    pub fn open(&self, node: Arc<ChatNode>, pace: Pace, stopping: watch::Receiver<bool>) -> Result<StatusStream> {
        let place = self.places.clone().try_acquire_owned().map_err(|_| {
            Error::ResourceExhausted(format!(
                "this node serves {} WatchStatus streams, its limit (--max-status-watches); try later",
                self.limit
            ))
        })?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(serve(node, pace, stopping, place, tx));
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

/// What routing depends on: any change is sent at once.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    state: ServerState,
    term: u64,
    leader: Option<NodeId>,
    membership: Option<openraft::LogId<NodeId>>,
}

impl Shape {
    fn of(m: &RaftMetrics<NodeId, Node>) -> Self {
        Self {
            state: m.state,
            term: m.current_term,
            leader: m.current_leader,
            membership: *m.membership_config.log_id(),
        }
    }
}

/// Indexes: a change is sent at most once per `min_interval`.
fn indexes(m: &RaftMetrics<NodeId, Node>) -> (Option<u64>, Option<u64>, Option<u64>) {
    (m.last_log_index, m.last_applied.map(|l| l.index), m.snapshot.map(|l| l.index))
}

async fn serve(
    node: Arc<ChatNode>,
    pace: Pace,
    stopping: watch::Receiver<bool>,
    _place: OwnedSemaphorePermit,
    tx: tokio::sync::mpsc::Sender<std::result::Result<GetStatusResponse, Status>>,
) {
    let mut metrics = node.raft.metrics();
    let (mut shape, mut moved) = {
        let m = metrics.borrow_and_update();
        (Shape::of(&m), indexes(&m))
    };
    let stopped = async move {
        let mut stopping = stopping;
        let _ = stopping.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    // Whether indexes moved since the last update, and when that was.
    let mut pending;
    let mut last_sent;
    macro_rules! send {
        () => {{
            if tx.send(Ok(to_proto(&node.status().await))).await.is_err() {
                return;
            }
            last_sent = Instant::now();
            pending = false;
        }};
    }
    send!();
    loop {
        let next_index_update = if pending { last_sent + pace.min_interval } else { last_sent + pace.heartbeat };
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return; // Raft stopped.
                }
                let (now_shape, now_moved) = {
                    let m = metrics.borrow_and_update();
                    (Shape::of(&m), indexes(&m))
                };
                if now_shape != shape {
                    shape = now_shape;
                    moved = now_moved;
                    send!();
                } else if now_moved != moved {
                    moved = now_moved;
                    pending = true;
                }
            }
            () = tokio::time::sleep_until(next_index_update) => send!(),
            () = &mut stopped => return,
            () = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_defaults_and_bounds() {
        let pace = Pace::from_request(&WatchStatusRequest::default()).unwrap();
        assert_eq!(pace, Pace { min_interval: DEFAULT_MIN_INTERVAL, heartbeat: DEFAULT_HEARTBEAT });
        let custom = Pace::from_request(&WatchStatusRequest { min_interval_ms: 100, heartbeat_ms: 60_000 }).unwrap();
        assert_eq!(custom.min_interval, Duration::from_millis(100));
        for (request, field) in [
            (WatchStatusRequest { min_interval_ms: 1, heartbeat_ms: 0 }, "min_interval_ms"),
            (WatchStatusRequest { min_interval_ms: 0, heartbeat_ms: u32::MAX }, "heartbeat_ms"),
        ] {
            let message = Pace::from_request(&request).unwrap_err().to_string();
            assert!(message.contains(field), "{message}");
        }
    }
}
