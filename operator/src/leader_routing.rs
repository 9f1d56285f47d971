//! The fast path of the operator's central promise: the client Service
//! follows the Raft leader within a fraction of a second, whatever the full
//! reconcile is doing — an invalid spec, an apply the API server refuses, a
//! join that takes a minute — none of it stands in the way.
//!
//! One small task per ReplicatedChat holds a WatchStatus stream to each of
//! its pods (pushed on change, so an idle cluster costs a heartbeat every
//! 10 s per pod). When the leader of the highest term differs from the one
//! last routed, the task moves the leader label itself through the
//! term-fenced protocol of [`chat_k8s::routing`] (the same one the elected
//! node runs to label itself, so the two can race safely), publishes a
//! `LeaderChanged` Event and asks for a reconcile (for `status.leader`).
//! The full reconcile only tells it which pods exist ([`Seen`]) and sweeps
//! labels it finds out of place.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_k8s::routing::{Routed, Router};
use chat_k8s::{ClusterNames, ReplicatedChat};
use chat_proto::cluster::{GetStatusResponse, Role};
use futures::Stream;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::ObjectRef;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::controller;
use crate::metrics::Metrics;
use crate::nodes::{Nodes, WATCH_HEARTBEAT};

/// A failed routing attempt is retried after a wait that doubles from the
/// first to the last (a missing permission should not fill the log).
const RETRY: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));
/// A pod's stream is given up (and redialled) after this long without a word.
const SILENT_FOR: Duration = Duration::from_secs(WATCH_HEARTBEAT.as_secs() * 3);
/// Redial backoff of a pod's stream: from the first to the last.
const REDIAL: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// What the last reconcile saw: which pods there are, and the object Events are about.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub names: ClusterNames,
    pub ordinals: Vec<u64>,
    pub reference: ObjectReference,
}

/// What every cluster's task shares.
#[derive(Clone)]
struct Shared {
    client: Client,
    nodes: Nodes,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    trigger: mpsc::UnboundedSender<ObjectRef<ReplicatedChat>>,
}

pub struct LeaderRouting {
    shared: Shared,
    /// A std Mutex: held only to insert or remove an entry.
    watched: Mutex<HashMap<ObjectRef<ReplicatedChat>, Watched>>,
}

struct Watched {
    seen: watch::Sender<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LeaderRouting {
    /// The routing, and the stream of objects it wants reconciled.
    pub fn new(
        client: Client,
        nodes: Nodes,
        recorder: Recorder,
        metrics: Arc<Metrics>,
    ) -> (Self, impl Stream<Item = ObjectRef<ReplicatedChat>> + Send + 'static) {
        let (trigger, triggers) = mpsc::unbounded_channel();
        let shared = Shared { client, nodes, recorder, metrics, trigger };
        (Self { shared, watched: Mutex::default() }, UnboundedReceiverStream::new(triggers))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<ReplicatedChat>, Watched>> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts following `object`'s leader, or updates which pods it has.
    pub fn update(&self, object: ObjectRef<ReplicatedChat>, seen: Seen) {
        let mut watched = self.lock();
        if let Some(w) = watched.get(&object) {
            w.seen.send_if_modified(|old| {
                let changed = *old != seen;
                *old = seen.clone();
                changed
            });
            return;
        }
        let (tx, rx) = watch::channel(seen);
        let task = tokio::spawn(follow(self.shared.clone(), object.clone(), rx));
        watched.insert(object, Watched { seen: tx, task });
    }

    /// Stops following `object` (it is being deleted).
    pub fn forget(&self, object: &ObjectRef<ReplicatedChat>) {
        self.lock().remove(object);
    }

    pub fn is_watching(&self, object: &ObjectRef<ReplicatedChat>) -> bool {
        self.lock().contains_key(object)
    }
}

/// The leader of the highest term among the pods' latest views: a restarted
/// or cut-off old leader may still claim its old term; the newer term wins.
pub fn leader_of(views: &BTreeMap<u64, GetStatusResponse>) -> Option<(u64, u64)> {
    views.iter().filter(|(_, v)| v.role == Role::Leader as i32).map(|(&o, v)| (o, v.term)).max_by_key(|&(_, t)| t)
}

/// One cluster's fast path, until the cluster is forgotten.
async fn follow(shared: Shared, object: ObjectRef<ReplicatedChat>, mut seen: watch::Receiver<Seen>) {
    let (tx, mut updates) = mpsc::channel::<(u64, Option<GetStatusResponse>)>(64);
    let mut streams: HashMap<u64, AbortOnDrop> = HashMap::new();
    let mut views: BTreeMap<u64, GetStatusResponse> = BTreeMap::new();
    let mut router: Option<Router> = None;
    // The (ordinal, term) routed last; after a failure, which one failed and
    // when to try it again (a new leader is tried at once).
    let mut routed: Option<(u64, u64)> = None;
    let mut failed: Option<((u64, u64), Instant)> = None;
    let mut retry = RETRY.0;
    loop {
        let now = seen.borrow_and_update().clone();
        if router.as_ref().is_none_or(|r| *r.names() != now.names) {
            router = Some(Router::new(shared.client.clone(), now.names.clone()));
        }
        streams.retain(|o, _| now.ordinals.contains(o));
        views.retain(|o, _| now.ordinals.contains(o));
        for &ordinal in &now.ordinals {
            streams.entry(ordinal).or_insert_with(|| {
                AbortOnDrop(tokio::spawn(stream_pod(shared.nodes.clone(), now.names.clone(), ordinal, tx.clone())))
            });
        }
        let target = leader_of(&views);
        let due = failed.is_none_or(|(which, at)| Some(which) != target || Instant::now() >= at);
        if let (Some((leader, term)), Some(router)) = (target, router.as_ref())
            && routed != Some((leader, term))
            && due
        {
            match router.route(leader, term, &now.ordinals).await {
                Ok(Routed::Done { changed }) => {
                    routed = Some((leader, term));
                    failed = None;
                    retry = RETRY.0;
                    if changed {
                        announce(&shared.recorder, &shared.metrics, &now, leader, term).await;
                    }
                    let _ = shared.trigger.send(object.clone());
                }
                Ok(Routed::Superseded { term: newer }) => {
                    // Our view is behind a writer that saw term `newer`: wait for the pods to say so.
                    tracing::debug!(%object, term, newer, "a newer term is routed already");
                    routed = Some((leader, term));
                    failed = None;
                }
                Err(e) => {
                    tracing::warn!(%object, pod = %now.names.pod(leader), term, error = %e, ?retry, "could not route to the leader");
                    failed = Some(((leader, term), Instant::now() + retry));
                    retry = (retry * 2).min(RETRY.1);
                }
            }
        }
        let retry_due = async {
            match failed {
                Some((_, at)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some((ordinal, view)) = updates.recv() => {
                match view {
                    // What a node says is checked like any input: it must speak for the pod we asked.
                    Some(v) if v.node_id == ordinal => { views.insert(ordinal, v); }
                    Some(v) => {
                        tracing::warn!(%object, ordinal, node_id = v.node_id, "pod answers for another member; ignored");
                        views.remove(&ordinal);
                    }
                    None => { views.remove(&ordinal); }
                }
            }
            changed = seen.changed() => if changed.is_err() { return },
            () = retry_due => {}
        }
    }
}

/// The Event and metric of a label that moved.
pub async fn announce(recorder: &Recorder, metrics: &Metrics, seen: &Seen, leader: u64, term: u64) {
    metrics.leader_changes.inc();
    let pod = seen.names.pod(leader);
    let note = format!("{pod} leads in term {term}; the client Service routes to it");
    tracing::info!(cluster = %seen.names.cluster, %note, "leader routed");
    let member = Some((Some(seen.names.namespace.clone()), pod));
    let event = controller::member_event(EventType::Normal, "LeaderChanged", "Relabel", note, member);
    controller::publish(recorder, &event, &seen.reference).await;
}

/// Keeps one pod's latest view flowing into `tx` (`None` while it is silent
/// or unreachable), redialling with backoff.
async fn stream_pod(
    nodes: Nodes,
    names: ClusterNames,
    ordinal: u64,
    tx: mpsc::Sender<(u64, Option<GetStatusResponse>)>,
) {
    let mut backoff = REDIAL.0;
    loop {
        if let Ok(mut stream) = nodes.watch(&names, ordinal).await {
            while let Ok(Ok(Some(view))) = tokio::time::timeout(SILENT_FOR, stream.message()).await {
                backoff = REDIAL.0;
                if tx.send((ordinal, Some(view))).await.is_err() {
                    return;
                }
            }
        }
        if tx.send((ordinal, None)).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(REDIAL.1);
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: u64, role: Role, term: u64) -> GetStatusResponse {
        GetStatusResponse { node_id: id, role: role as i32, term, ..GetStatusResponse::default() }
    }

    #[test]
    fn the_newest_terms_leader_wins() {
        let mut views = BTreeMap::new();
        assert_eq!(leader_of(&views), None);
        views.insert(0, view(0, Role::Leader, 3));
        views.insert(1, view(1, Role::Follower, 4));
        assert_eq!(leader_of(&views), Some((0, 3)));
        views.insert(2, view(2, Role::Leader, 4));
        assert_eq!(leader_of(&views), Some((2, 4)), "the old leader still claims term 3");
    }
}
