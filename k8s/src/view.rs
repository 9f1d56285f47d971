//! A cluster as Kubernetes sees it: the ReplicatedChat's conditions, its
//! recent Events, and each pod's volume — what `kubectl chat status` adds in
//! kube mode and what the web console shows under its members table. Read
//! with the caller's own rights; a read that is refused is reported in
//! `errors`, never fails the whole view.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;

use crate::{ClusterNames, ReplicatedChat};

/// How many of the newest Events are shown.
const RECENT_EVENTS: usize = 10;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct KubeView {
    pub conditions: Vec<ConditionView>,
    pub events: Vec<EventView>,
    pub volumes: Vec<VolumeView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConditionView {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventView {
    pub time: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub object: String,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeView {
    pub claim: String,
    pub phase: String,
    pub capacity: String,
    pub storage_class: String,
}

/// Whether [`KubeView::read`] lists the cluster's volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volumes {
    Include,
    Skip,
}

/// The Events of the cluster's namespace about the ReplicatedChat or one of
/// its objects (pods, StatefulSets: named `<cluster>-…`).
///
/// # Errors
/// When the Events cannot be listed.
pub async fn cluster_events(kube: &kube::Client, names: &ClusterNames) -> kube::Result<Vec<Event>> {
    let events: Api<Event> = Api::namespaced(kube.clone(), &names.namespace);
    let prefix = format!("{}-", names.cluster);
    let about = |e: &Event| {
        e.regarding
            .as_ref()
            .and_then(|r| r.name.as_deref())
            .is_some_and(|n| n == names.cluster || n.starts_with(&prefix))
    };
    Ok(events.list(&ListParams::default()).await?.items.into_iter().filter(about).collect())
}

impl KubeView {
    /// Reads the view; [`Volumes::Skip`] for a reader with no right to list
    /// PersistentVolumeClaims (the console's ServiceAccount).
    pub async fn read(kube: &kube::Client, names: &ClusterNames, volumes: Volumes) -> Self {
        let mut view = KubeView::default();
        let rchats: Api<ReplicatedChat> = Api::namespaced(kube.clone(), &names.namespace);
        match rchats.get(&names.cluster).await {
            Ok(rchat) => {
                view.conditions = rchat
                    .status
                    .map(|s| s.conditions)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| ConditionView { type_: c.type_, status: c.status, reason: c.reason, message: c.message })
                    .collect();
            }
            Err(e) => view.errors.push(format!("the ReplicatedChat: {e}")),
        }
        match cluster_events(kube, names).await {
            Ok(events) => {
                let mut ours: Vec<EventView> = events
                    .into_iter()
                    .filter_map(|e| {
                        let object = e.regarding.as_ref()?.name.clone()?;
                        let time = e
                            .event_time
                            .as_ref()
                            .map(|t| t.0.to_string())
                            .or_else(|| e.deprecated_last_timestamp.as_ref().map(|t| t.0.to_string()))
                            .unwrap_or_default();
                        Some(EventView {
                            time,
                            type_: e.type_.unwrap_or_default(),
                            reason: e.reason.unwrap_or_default(),
                            object,
                            note: e.note.unwrap_or_default(),
                        })
                    })
                    .collect();
                ours.sort_by(|a, b| a.time.cmp(&b.time));
                view.events = ours.split_off(ours.len().saturating_sub(RECENT_EVENTS));
            }
            Err(e) => view.errors.push(format!("events: {e}")),
        }
        if volumes == Volumes::Skip {
            return view;
        }
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(kube.clone(), &names.namespace);
        match pvcs.list(&ListParams::default().labels(&names.selector_string())).await {
            Ok(list) => {
                view.volumes = list
                    .items
                    .into_iter()
                    .map(|p| {
                        let status = p.status.unwrap_or_default();
                        VolumeView {
                            claim: p.metadata.name.unwrap_or_default(),
                            phase: status.phase.unwrap_or_default(),
                            capacity: status
                                .capacity
                                .and_then(|c| c.get("storage").map(|q| q.0.clone()))
                                .unwrap_or_default(),
                            storage_class: p.spec.and_then(|s| s.storage_class_name).unwrap_or_default(),
                        }
                    })
                    .collect();
                view.volumes.sort_by(|a, b| a.claim.cmp(&b.claim));
            }
            Err(e) => view.errors.push(format!("volumes: {e}")),
        }
        view
    }
}
