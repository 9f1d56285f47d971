//! A streaming watch of each cluster's leader, so the leader label follows an
//! election within a fraction of a second instead of waiting for the next
//! periodic reconcile.
//!
//! One small task per ReplicatedChat polls its pods' GetStatus every
//! [`POLL_INTERVAL`]. When the highest-term leader differs from the one the
//! last reconcile saw, it asks the controller to reconcile that object now
//! (`Controller::reconcile_on`). Relabelling itself stays in reconcile: one
//! place decides, this only wakes it up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chat_k8s::{ClusterNames, ReplicatedChat};
use futures::Stream;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::nodes::Nodes;

pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// After asking for a reconcile, wait this long for it before asking again.
const RETRIGGER_AFTER: Duration = Duration::from_secs(1);

/// What the last reconcile saw: which pods to poll, and who led.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub names: ClusterNames,
    pub ordinals: Vec<u64>,
    pub leader: Option<u64>,
}

pub struct LeaderWatch {
    nodes: Nodes,
    trigger: mpsc::UnboundedSender<ObjectRef<ReplicatedChat>>,
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

impl LeaderWatch {
    /// The watch, and the stream of objects it wants reconciled.
    pub fn new(nodes: Nodes) -> (Self, impl Stream<Item = ObjectRef<ReplicatedChat>> + Send + 'static) {
        let (trigger, triggers) = mpsc::unbounded_channel();
        (Self { nodes, trigger, watched: Mutex::default() }, UnboundedReceiverStream::new(triggers))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<ReplicatedChat>, Watched>> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts watching `object`, or updates what the last reconcile saw.
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
        let task = tokio::spawn(poll(self.nodes.clone(), object.clone(), rx, self.trigger.clone()));
        watched.insert(object, Watched { seen: tx, task });
    }

    /// Stops watching `object` (it is being deleted).
    pub fn forget(&self, object: &ObjectRef<ReplicatedChat>) {
        self.lock().remove(object);
    }

    pub fn is_watching(&self, object: &ObjectRef<ReplicatedChat>) -> bool {
        self.lock().contains_key(object)
    }
}

async fn poll(
    nodes: Nodes,
    object: ObjectRef<ReplicatedChat>,
    mut seen: watch::Receiver<Seen>,
    trigger: mpsc::UnboundedSender<ObjectRef<ReplicatedChat>>,
) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let last = seen.borrow_and_update().clone();
        let now = nodes.observe(&last.names, &last.ordinals).await.leader().map(|p| p.ordinal);
        if now.is_some() && now != last.leader {
            tracing::debug!(object = %object, from = ?last.leader, to = ?now, "leader moved; reconciling");
            if trigger.send(object.clone()).is_err() {
                return;
            }
            let _ = tokio::time::timeout(RETRIGGER_AFTER, seen.changed()).await;
        }
    }
}
