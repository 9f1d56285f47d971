//! One poller for every viewer of the cluster view. Asking every member for
//! its status five times a second is the console's cost to the cluster; it
//! is paid once however many browsers watch: a single task polls while
//! anyone is subscribed and publishes the newest view on a `watch` channel
//! (a slow browser skips to the newest, it never queues). On Kubernetes the
//! same task reads the ReplicatedChat's conditions and Events every
//! [`KUBE_EVERY`] and publishes them when they change.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chat_client::Client;
use chat_k8s::view::{KubeView, Volumes};
use tokio::sync::watch;

use crate::state::KubeSource;
use crate::view::ClusterView;

/// How often the cluster view is pushed: at least five times a second.
pub const PUSH_EVERY: Duration = Duration::from_millis(200);

/// How often the ReplicatedChat's conditions and Events are read (they come
/// from the API server, which is not to be polled five times a second).
pub const KUBE_EVERY: Duration = Duration::from_secs(2);

/// One server-sent event: its name and JSON (or text) data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub event: &'static str,
    pub data: String,
}

/// What a viewer receives: the newest cluster view, and (on Kubernetes) the
/// newest conditions and Events.
#[derive(Debug)]
pub struct Viewer {
    pub cluster: watch::Receiver<Option<Update>>,
    pub kube: watch::Receiver<Option<Update>>,
}

#[derive(Debug)]
struct Channels {
    cluster: watch::Sender<Option<Update>>,
    kube: watch::Sender<Option<Update>>,
}

/// The shared poller.
#[derive(Debug)]
pub struct ClusterFeed {
    client: Client,
    kube: Option<KubeSource>,
    running: Mutex<Option<Channels>>,
    started: AtomicUsize,
}

impl ClusterFeed {
    pub fn new(client: Client, kube: Option<KubeSource>) -> Self {
        ClusterFeed { client, kube, running: Mutex::new(None), started: AtomicUsize::new(0) }
    }

    /// Subscribes a viewer, starting the poller if no one was watching.
    pub fn subscribe(self: &std::sync::Arc<Self>) -> Viewer {
        let mut running = self.running.lock().expect("feed lock");
        if let Some(channels) = running.as_ref() {
            return Viewer { cluster: channels.cluster.subscribe(), kube: channels.kube.subscribe() };
        }
        let (cluster, cluster_rx) = watch::channel(None);
        let (kube, kube_rx) = watch::channel(None);
        *running = Some(Channels { cluster: cluster.clone(), kube: kube.clone() });
        self.started.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(std::sync::Arc::clone(self).poll(cluster, kube));
        Viewer { cluster: cluster_rx, kube: kube_rx }
    }

    /// How many times a poller was started (one per stretch with viewers).
    pub fn pollers_started(&self) -> usize {
        self.started.load(Ordering::Relaxed)
    }

    async fn poll(
        self: std::sync::Arc<Self>,
        cluster: watch::Sender<Option<Update>>,
        kube: watch::Sender<Option<Update>>,
    ) {
        let mut ticks = tokio::time::interval(PUSH_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let kube_every = u32::try_from(KUBE_EVERY.as_millis() / PUSH_EVERY.as_millis()).unwrap_or(1).max(1);
        for tick in 0u32.. {
            ticks.tick().await;
            {
                // Everyone left: stop (under the lock, so no one subscribes to a poller that is gone).
                let mut running = self.running.lock().expect("feed lock");
                if cluster.receiver_count() == 0 {
                    *running = None;
                    return;
                }
            }
            let update = match self.client.cluster_status().await {
                Ok(status) => json("cluster", &ClusterView::from(&status)),
                Err(e) => Update { event: "unreachable", data: e.to_string() },
            };
            cluster.send_replace(Some(update));
            if let Some(source) = &self.kube
                && tick % kube_every == 0
            {
                let view = json("kubernetes", &KubeView::read(&source.client, &source.names, Volumes::Skip).await);
                kube.send_if_modified(|last| {
                    let changed = last.as_ref() != Some(&view);
                    if changed {
                        *last = Some(view);
                    }
                    changed
                });
            }
        }
    }
}

fn json(event: &'static str, value: &impl serde::Serialize) -> Update {
    match serde_json::to_string(value) {
        Ok(data) => Update { event, data },
        Err(e) => Update { event: "unreachable", data: e.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chat_client::{ClientOptions, Security};

    use super::*;

    #[tokio::test]
    async fn viewers_share_one_poller_which_stops_when_the_last_leaves() {
        let client = Client::new(vec!["127.0.0.1:1".into()], ClientOptions::new(Security::Plaintext)).unwrap();
        let feed = Arc::new(ClusterFeed::new(client, None));
        let mut first = feed.subscribe();
        let second = feed.subscribe();
        assert_eq!(feed.pollers_started(), 1);
        first.cluster.changed().await.unwrap();
        assert_eq!(first.cluster.borrow().as_ref().unwrap().event, "unreachable", "nothing listens on port 1");
        drop((first, second));
        // The poller notices at its next tick and is gone; a new viewer starts another.
        let gone = async {
            while feed.running.lock().unwrap().is_some() {
                tokio::time::sleep(PUSH_EVERY / 4).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), gone).await.expect("the poller stops");
        let _third = feed.subscribe();
        assert_eq!(feed.pollers_started(), 2);
    }
}
