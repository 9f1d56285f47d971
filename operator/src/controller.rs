//! The controller: its shared [`Context`], the instrumented [`reconcile`]
//! entry point, the error policy, and [`run`], which wires the watches.
//!
//! No finalizer: what the operator keeps per cluster is in memory (the
//! leader watch, channels to the nodes), forgotten when the watch reports
//! the deletion; owned objects go by garbage collection. So `kubectl delete
//! rchat` never waits for a running operator. Objects from versions that set
//! one ([`LEGACY_FINALIZER`]) have it removed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chat_k8s::ReplicatedChat;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ListParams;
use kube::runtime::Predicate;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, watcher};
use kube::runtime::{PredicateConfig, WatchStreamExt, predicates};
use kube::{Api, Client, Resource, ResourceExt};

use crate::certificates::OperatorCerts;
use crate::error::{Error, Result};
use crate::leader_routing::LeaderRouting;
use crate::metrics::{ErrorLabel, Metrics};
use crate::nodes::Nodes;
use crate::reconcile;

/// Marks a ReplicatedChat whose deletion we still need to see (to stop its leader routing).
/// The finalizer earlier versions put on every ReplicatedChat; it guarded
/// nothing that needs one, and made deletion wait for the operator.
pub const LEGACY_FINALIZER: &str = "chat.replicated.dev/cleanup";
/// Backoff after a failed reconcile.
pub const RETRY_AFTER_ERROR: Duration = Duration::from_secs(5);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub nodes: Nodes,
    /// The operator's client certificate for each cluster.
    pub certs: OperatorCerts,
    /// Where the operator's own pods run: the NetworkPolicy admits them.
    pub operator_namespace: String,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub leader_routing: LeaderRouting,
}

impl Context {
    /// Publishes an Event about `cluster`, related to `pod` if the event concerns
    /// one member (which also gives each pod its own event series: a repeated
    /// event keeps its first note). A failure to publish is logged, not fatal:
    /// Events are for humans, the status is the record.
    pub async fn publish(
        &self,
        cluster: &ReplicatedChat,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        pod: Option<String>,
    ) {
        tracing::info!(cluster = %cluster.name_any(), reason, %note, "event");
        let event = member_event(type_, reason, action, note, pod.map(|name| (cluster.namespace(), name)));
        publish(&self.recorder, &event, &cluster.object_ref(&())).await;
    }
}

/// An Event, related to a member's pod (`namespace`, `name`) if it concerns one.
pub fn member_event(
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
    pod: Option<(Option<String>, String)>,
) -> Event {
    let secondary = pod.map(|(namespace, name)| ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(name),
        namespace,
        ..ObjectReference::default()
    });
    Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary }
}

/// Publishes `event` about `regarding`. A failure is logged, not fatal:
/// Events are for humans, the status is the record.
pub async fn publish(recorder: &Recorder, event: &Event, regarding: &ObjectReference) {
    if let Err(e) = recorder.publish(event, regarding).await {
        tracing::warn!(error = %e, reason = %event.reason, "could not publish event");
    }
}

/// Reconciles one ReplicatedChat (instrumented; the logic is in [`reconcile`]).
///
/// # Errors
/// Whatever the step that failed reported.
#[tracing::instrument(skip_all, fields(cluster = %cluster.name_any(), namespace = cluster.namespace()))]
pub async fn reconcile(cluster: Arc<ReplicatedChat>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciles.inc();
    let started = std::time::Instant::now();
    let ns = cluster.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<ReplicatedChat> = Api::namespaced(ctx.client.clone(), &ns);
    let outcome = if cluster.finalizers().iter().any(|f| f == LEGACY_FINALIZER) {
        release_legacy_finalizer(&api, &cluster).await
    } else if cluster.metadata.deletion_timestamp.is_some() {
        // Another finalizer holds it; nothing of ours to do but forget it.
        reconcile::forget(&ctx, &cluster);
        Ok(Action::await_change())
    } else {
        reconcile::apply(cluster, ctx.clone()).await
    };
    ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    outcome
}

/// Removes [`LEGACY_FINALIZER`], keeping any other (conditional on the
/// resourceVersion read, so a finalizer added meanwhile is never lost). The
/// change wakes the next reconcile.
async fn release_legacy_finalizer(api: &Api<ReplicatedChat>, cluster: &ReplicatedChat) -> Result<Action> {
    let kept: Vec<&String> = cluster.finalizers().iter().filter(|f| *f != LEGACY_FINALIZER).collect();
    let patch = serde_json::json!({"metadata": {"finalizers": kept, "resourceVersion": cluster.resource_version()}});
    api.patch(&cluster.name_any(), &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await?;
    Ok(Action::await_change())
}

pub fn error_policy(cluster: Arc<ReplicatedChat>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %cluster.name_any(), %error, "reconcile failed");
    ctx.metrics.failures.get_or_create(&ErrorLabel { error: error.metric_label() }).inc();
    Action::requeue(RETRY_AFTER_ERROR)
}

/// The reporter name Events carry: the operator, and which replica of it.
pub fn reporter() -> Reporter {
    Reporter { controller: "chat-operator".into(), instance: std::env::var("POD_NAME").ok() }
}

/// Runs the controller until SIGTERM/SIGINT.
///
/// # Errors
/// When the ReplicatedChat CRD is not installed (or not readable).
pub async fn run(
    client: Client,
    nodes: Nodes,
    operator_namespace: String,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let rchats = Api::<ReplicatedChat>::all(client.clone());
    rchats.list(&ListParams::default().limit(1)).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot list ReplicatedChats ({e}); is the CRD installed? `chat-operator crdgen | kubectl apply -f -`"
        )
    })?;
    let recorder = Recorder::new(client.clone(), reporter());
    let (leader_routing, leader_moves) =
        LeaderRouting::new(client.clone(), nodes.clone(), recorder.clone(), metrics.clone());
    let ctx = Arc::new(Context {
        client: client.clone(),
        nodes,
        certs: OperatorCerts::default(),
        operator_namespace,
        recorder,
        metrics,
        leader_routing,
    });
    let pods = Api::<Pod>::all(client.clone());
    let pod_watch = watcher::Config::default().labels("app.kubernetes.io/name=replicated-chat");
    ready.store(true, Ordering::Relaxed);
    // Quiet when nothing changes: a ReplicatedChat wakes the controller only
    // when its spec (generation; deletion bumps it too), its finalizers or its
    // annotations (`kubectl chat restart` and `promote` ask through them)
    // change, never for the operator's own status writes — the status moves
    // with every write to the cluster (members' matched indexes), and reacting
    // to it made each status patch trigger the next reconcile under load.
    let (reader, writer) = reflector::store();
    let forgetting = ctx.clone();
    let clusters = watcher(rchats, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        // A deleted cluster: stop watching its leader, drop its channels.
        .inspect(move |event| {
            if let Ok(watcher::Event::Delete(cluster)) = event {
                reconcile::forget(&forgetting, cluster);
            }
        })
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::finalizers).combine(predicates::annotations),
            PredicateConfig::default(),
        );
    Controller::for_stream(clusters, reader)
        .owns(Api::<StatefulSet>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Service>::all(client.clone()), watcher::Config::default())
        .owns(Api::<ServiceAccount>::all(client.clone()), watcher::Config::default())
        .owns(Api::<PodDisruptionBudget>::all(client), watcher::Config::default())
        // Pods belong to the StatefulSet, not to us: map them by their instance label.
        .watches(pods, pod_watch, |pod: Pod| {
            let instance = pod.labels().get("app.kubernetes.io/instance")?.clone();
            Some(ObjectRef::new(&instance).within(&pod.namespace()?))
        })
        .reconcile_on(leader_moves)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|outcome| async move {
            match outcome {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
        })
        .await;
    Ok(())
}
