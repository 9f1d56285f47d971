//! What `status` adds in kube mode: the ReplicatedChat's conditions, its
//! recent Events, and each pod's volume. Read with the user's own rights; a
//! read that is refused is reported in `errors`, never fails `status`.

use chat_k8s::ReplicatedChat;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;

use crate::connect::KubeCluster;

/// How many of the newest Events are shown.
const RECENT_EVENTS: usize = 10;

#[derive(Debug, Default, Serialize)]
pub struct KubeView {
    pub conditions: Vec<ConditionView>,
    pub events: Vec<EventView>,
    pub volumes: Vec<VolumeView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ConditionView {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct EventView {
    pub time: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub object: String,
    pub note: String,
}

#[derive(Debug, Serialize)]
pub struct VolumeView {
    pub claim: String,
    pub phase: String,
    pub capacity: String,
    pub storage_class: String,
}

/// The Events of the cluster's namespace about the ReplicatedChat or one of
/// its objects (pods, StatefulSets: named `<cluster>-…`).
///
/// # Errors
/// When the Events cannot be listed.
pub async fn cluster_events(kube: &KubeCluster) -> kube::Result<Vec<Event>> {
    let names = &kube.names;
    let events: Api<Event> = Api::namespaced(kube.kube.clone(), &names.namespace);
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
    pub async fn read(kube: &KubeCluster) -> Self {
        let names = &kube.names;
        let mut view = KubeView::default();
        let rchats: Api<ReplicatedChat> = Api::namespaced(kube.kube.clone(), &names.namespace);
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
        match cluster_events(kube).await {
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
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(kube.kube.clone(), &names.namespace);
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

    /// The three sections under the members table.
    pub fn table(&self) -> String {
        let mut out = String::from("\nCONDITIONS\n");
        for c in &self.conditions {
            out.push_str(&format!("  {:<12} {:<6} {:<22} {}\n", c.type_, c.status, c.reason, c.message));
        }
        out.push_str("\nVOLUMES\n");
        for v in &self.volumes {
            out.push_str(&format!("  {:<32} {:<8} {:>8} {}\n", v.claim, v.phase, v.capacity, v.storage_class));
        }
        out.push_str("\nRECENT EVENTS\n");
        for e in &self.events {
            out.push_str(&format!("  {} {:<8} {:<20} {:<16} {}\n", e.time, e.type_, e.reason, e.object, e.note));
        }
        for e in &self.errors {
            out.push_str(&format!("\n(not shown: {e})"));
        }
        out
    }
}
