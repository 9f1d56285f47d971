//! One reconcile of one ReplicatedChat, in a fixed order (each step's comment
//! says why it comes where it does). Kubernetes objects are written with
//! server-side apply under one field manager; membership moves one step per
//! reconcile; the status says what happened and why.

use std::sync::Arc;
use std::time::Duration;

use chat_k8s::names::{FIELD_MANAGER, PROMOTE_ANNOTATION, REPLICA_ID_BASE};
use chat_k8s::routing::{self, Routed, Router};
use chat_k8s::{ClusterNames, ReplicatedChat, ReplicatedChatStatus};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::certificates;
use crate::controller::Context;
use crate::error::{Error, Result};
use crate::leader_routing::{Seen, announce};
use crate::metrics::ActionLabel;
use crate::nodes::Observation;
use crate::plan::{Step, plan, plan_replicas};
use crate::promotion::{self, Promotion};
use crate::resources::{self, network_policy, node_role, pdb, service_account, services, statefulset};
use crate::rollout;
use crate::status;
use crate::validate::{Severity, validate};

/// Requeue while a membership change is under way: the next step follows promptly.
pub const REQUEUE_BUSY: Duration = Duration::from_millis(500);
/// Requeue while waiting for pods or an election.
pub const REQUEUE_WAITING: Duration = Duration::from_secs(2);
/// Requeue when steady; the leader watch and object watches wake us sooner.
pub const REQUEUE_STEADY: Duration = Duration::from_secs(60);

/// Brings the cluster one step closer to its spec.
///
/// # Errors
/// API or node failures; the controller retries with backoff.
pub async fn apply(cluster: Arc<ReplicatedChat>, ctx: Arc<Context>) -> Result<Action> {
    let names = resources::names(&cluster);
    let rchats: Api<ReplicatedChat> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let new_generation = cluster.status.as_ref().and_then(|s| s.observed_generation) != cluster.metadata.generation;

    // 0. The leader's fast path first: nothing below — a bad spec, a refused
    //    apply, a failed or slow membership step — may keep the client
    //    Service from following the leader. It needs the pods, and the
    //    certificates to reach them (kept even for a spec we will not roll out:
    //    they only let the nodes and the operator talk).
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let pods = pods_api.list(&ListParams::default().labels(&names.selector_string())).await?.items;
    let mut ordinals: Vec<u64> = pods.iter().filter_map(|p| names.id_of(&p.name_any())).collect();
    ordinals.sort_unstable();
    let seen = Seen { names: names.clone(), ordinals, reference: cluster.object_ref(&()) };
    ctx.leader_routing.update(kube::runtime::reflector::ObjectRef::from_obj(cluster.as_ref()), seen.clone());

    // 1. Judge the spec before touching anything: a bad spec must not roll out.
    let findings = validate(&cluster.spec);
    let errors: Vec<String> =
        findings.iter().filter(|f| f.severity == Severity::Error).map(ToString::to_string).collect();
    let warnings: Vec<String> =
        findings.iter().filter(|f| f.severity == Severity::Warning).map(ToString::to_string).collect();
    if !errors.is_empty() {
        if new_generation {
            ctx.publish(&cluster, EventType::Warning, "InvalidSpec", "Validate", errors.join("; "), None).await;
        }
        if !seen.ordinals.is_empty()
            && let Err(e) = certificates::ensure(&ctx, &cluster, &names).await
        {
            tracing::debug!(error = %e, "certificates of an invalid spec");
        }
        patch_status(&rchats, &cluster, status::invalid(&cluster, &names, "InvalidSpec", &errors, Timestamp::now()))
            .await?;
        // A spec edit wakes us; retrying the same spec would only repeat the verdict.
        return Ok(Action::await_change());
    }
    if new_generation && !warnings.is_empty() {
        ctx.publish(&cluster, EventType::Warning, "SpecWarning", "Validate", warnings.join("; "), None).await;
    }
    match converge(&cluster, &ctx, &seen, &pods, &rchats, &warnings).await {
        // The API server refused an object we built from the spec (e.g. a change
        // to a StatefulSet field Kubernetes keeps immutable): report, do not spin.
        Err(Error::Kube(kube::Error::Api(refusal))) if refusal.code == 422 => {
            let problem = format!("the API server refused an object built from this spec: {}", refusal.message);
            if new_generation {
                ctx.publish(&cluster, EventType::Warning, "Refused", "Apply", problem.clone(), None).await;
            }
            let status = status::invalid(&cluster, &names, "Refused", &[problem], Timestamp::now());
            patch_status(&rchats, &cluster, status).await?;
            Ok(Action::await_change())
        }
        other => other,
    }
}

/// Steps 2–7: objects, observation, membership, label, status.
async fn converge(
    cluster: &ReplicatedChat,
    ctx: &Context,
    seen: &Seen,
    pods: &[Pod],
    rchats: &Api<ReplicatedChat>,
    warnings: &[String],
) -> Result<Action> {
    let names = &seen.names;
    let ordinals = &seen.ordinals;
    let ns = &names.namespace;
    // How many pods each StatefulSet has now (listed in step 0).
    let current = pod_count(ordinals.iter().copied().filter(|&o| o < REPLICA_ID_BASE));
    let current_replicas = pod_count(ordinals.iter().filter_map(|o| o.checked_sub(REPLICA_ID_BASE)));

    // 2. What the pods need before they start: certificates (which the
    //    operator also needs to talk to the nodes at all), identity, network,
    //    disruption budget.
    certificates::ensure(ctx, cluster, names).await?;
    ssa(ctx, ns, &service_account::build(cluster)).await?;
    let covered = |wanted: i32, current: i32| u64::try_from(wanted.max(current)).unwrap_or(0);
    let role = node_role::role(
        cluster,
        covered(cluster.spec.replicas, current),
        covered(cluster.spec.read_replicas, current_replicas),
    );
    ssa(ctx, ns, &role).await?;
    ssa(ctx, ns, &node_role::binding(cluster)).await?;
    ssa(ctx, ns, &services::peers(cluster)).await?;
    ssa(ctx, ns, &services::client(cluster)).await?;
    ssa(ctx, ns, &services::read_only(cluster)).await?;
    ssa(ctx, ns, &services::any_member(cluster)).await?;
    ssa(ctx, ns, &network_policy::build(cluster, &ctx.operator_namespace)).await?;
    ssa(ctx, ns, &pdb::build(cluster)).await?;
    let scheduled_backups = schedule_backups(ctx, cluster, names).await?;
    let console = run_console(ctx, cluster, names).await?;

    // 3. Observe what each pod (listed in step 0) reports about the cluster.
    let observation = ctx.nodes.observe(names, ordinals).await;

    // 4. Decide, then size the StatefulSet: it grows before members join and
    //    shrinks only after they have left Raft.
    //    Read replicas get their turn once the voters are steady; until then
    //    their StatefulSet only grows.
    let mut bootstrapped = cluster.status.as_ref().is_some_and(|s| s.bootstrapped);
    let mut plan = plan(cluster.spec.replicas, bootstrapped, current, &observation);
    // A restore runs on pod 0 alone (the backup's claim is mounted there):
    // the others start once it has founded the cluster, and join it.
    if statefulset::restoring(cluster).is_some() && !bootstrapped {
        plan.statefulset_replicas = 1;
        // Never found an empty cluster in place of the backup.
        if plan.step == Step::Bootstrap {
            plan.step = Step::Wait(format!("waiting for {} to restore the backup", names.pod(0)));
        }
    }
    let voters = ssa(ctx, ns, &statefulset::build(cluster, plan.statefulset_replicas)).await?;
    let mut targets = rollout::Targets { voters: rollout::Target::of(&voters), replicas: rollout::Target::Unreported };
    let wanted_replicas = cluster.spec.read_replicas.max(0);
    if wanted_replicas > 0 || current_replicas > 0 {
        let replicas = if plan.step == Step::Steady {
            let replica_plan = plan_replicas(wanted_replicas, current_replicas, &observation);
            plan.step = replica_plan.step;
            replica_plan.statefulset_replicas
        } else {
            wanted_replicas.max(current_replicas)
        };
        let replicas = ssa(ctx, ns, &statefulset::build_replicas(cluster, replicas)).await?;
        targets.replicas = rollout::Target::of(&replicas);
    }
    // A promotion asked for, then a changed template, only over a steady membership.
    if plan.step == Step::Steady {
        match promotion::judge(cluster, names, &observation) {
            Some(Promotion::Step(step)) => plan.step = step,
            Some(Promotion::Done(note)) => {
                answer_promotion(ctx, cluster, rchats, EventType::Normal, "Promoted", note).await?
            }
            Some(Promotion::Refused(why)) => {
                answer_promotion(ctx, cluster, rchats, EventType::Warning, "PromoteRefused", why).await?;
            }
            None => {}
        }
    }
    if plan.step == Step::Steady {
        plan.step = rollout::next(names, pods, &targets, &observation);
    }

    // 5. One membership or upgrade step.
    if let Err(e) = execute(ctx, cluster, names, &observation, pods, &plan.step, &mut bootstrapped).await {
        let note = format!("{}: {e}", status::describe(&plan.step, names));
        let pod = plan.step.member().map(|m| names.pod(m));
        ctx.publish(cluster, EventType::Warning, "MembershipStepFailed", "ChangeMembership", note, pod).await;
        return Err(e);
    }

    // 6. Leader label. The fast path (`leader_routing`) moves it on every
    //    election; here a label found out of place (an election the fast path
    //    missed, a hand edit) is put right through the same fenced protocol.
    //    Reading the pod list costs nothing more: it is already here.
    if let Some(leader) = observation.leader() {
        let term = leader.status.as_ref().map_or(0, |s| s.term);
        let pod = names.pod(leader.ordinal);
        let labelled: Vec<&Pod> = pods.iter().filter(|p| routing::labelled(p)).collect();
        // The leader alone labelled, every other member marked read-only (a
        // recreated pod has lost its labels: put them back).
        let others_read_only = pods.iter().filter(|p| p.name_any() != pod).all(routing::read_only);
        let in_place = matches!(labelled.as_slice(), [only] if only.name_any() == pod) && others_read_only;
        if !in_place && pods.iter().any(|p| p.name_any() == pod) {
            let router = Router::new(ctx.client.clone(), names.clone());
            let mut routed = router.route(leader.ordinal, term, ordinals).await?;
            if let Routed::Superseded { term: claimed } = routed
                && no_election_reached(&observation, claimed)
                && router.reclaim(leader.ordinal, term, claimed).await?
            {
                let note = format!(
                    "the leader Lease {} claimed term {claimed}, which a majority of voters never reached; \
                     reset to term {term}",
                    names.leader_lease()
                );
                ctx.publish(cluster, EventType::Warning, "LeaseAhead", "Relabel", note, None).await;
                routed = router.route(leader.ordinal, term, ordinals).await?;
            }
            if routed == (Routed::Done { changed: true }) {
                announce(&ctx.recorder, &ctx.metrics, seen, leader.ordinal, term).await;
            }
        }
    }

    // 7. Status, only when it changed (no write per reconcile).
    let mut status =
        status::observed(cluster, names, &observation, &plan.step, bootstrapped, warnings, Timestamp::now());
    status.scheduled_backups = scheduled_backups;
    status.console = console;
    if cluster.status.as_ref() != Some(&status) {
        patch_status(rchats, cluster, status).await?;
    }

    Ok(match plan.step {
        Step::Steady => Action::requeue(REQUEUE_STEADY),
        Step::Wait(_) | Step::Upgrading(_) => Action::requeue(REQUEUE_WAITING),
        _ => Action::requeue(REQUEUE_BUSY),
    })
}

/// Pods in a StatefulSet whose pods have these ordinals: the highest, plus one.
fn pod_count(ordinals: impl Iterator<Item = u64>) -> i32 {
    ordinals.max().map_or(0, |o| i32::try_from(o + 1).unwrap_or(i32::MAX))
}

/// Whether a majority of the voters report a term below `term`: then no
/// election ever reached it (winning a term takes a majority's votes, and a
/// member's term never goes back), so a Lease claiming it is wrong.
fn no_election_reached(observation: &Observation, term: u64) -> bool {
    let voters: Vec<u64> = observation.members().unwrap_or_default().iter().filter(|m| m.voter).map(|m| m.id).collect();
    let below = voters
        .iter()
        .filter(|&&id| observation.pod(id).and_then(|p| p.status.as_ref()).is_some_and(|s| s.term < term))
        .count();
    !voters.is_empty() && below > voters.len() / 2
}

/// The ReplicatedChat is gone (or going): stop its leader watch and drop its
/// channels. Owned objects go by garbage collection (owner references);
/// volumes per `spec.storage.onDelete` (the StatefulSet's retention policy).
pub fn forget(ctx: &Context, cluster: &ReplicatedChat) {
    ctx.leader_routing.forget(&kube::runtime::reflector::ObjectRef::from_obj(cluster));
    ctx.nodes.forget(&resources::names(cluster));
    tracing::info!(cluster = %cluster.name_any(), "deleted; forgotten");
}

/// Carries out one planned step, with an Event for each change.
async fn execute(
    ctx: &Context,
    cluster: &ReplicatedChat,
    names: &ClusterNames,
    observation: &Observation,
    pods: &[Pod],
    step: &Step,
    bootstrapped: &mut bool,
) -> Result<()> {
    let leader = observation.leader().map(|l| l.address.clone());
    let count = |action| ctx.metrics.membership_actions.get_or_create(&ActionLabel { action }).inc();
    let (reason, note) = match step {
        Step::Steady | Step::Wait(_) | Step::Upgrading(_) => return Ok(()),
        Step::Bootstrap => {
            let founded = ctx.nodes.initialize(names, 0).await?;
            *bootstrapped = true;
            count("bootstrap");
            if founded {
                ("Bootstrapped", format!("founded the cluster on {}", names.pod(0)))
            } else {
                ("Adopted", format!("{} already belonged to a cluster", names.pod(0)))
            }
        }
        Step::AdoptExisting => {
            *bootstrapped = true;
            match statefulset::restoring(cluster) {
                Some(backup) => (
                    "Restored",
                    format!(
                        "{} started from the backup {} on claim {}; the other members join it",
                        names.pod(0),
                        backup.path,
                        backup.claim_name
                    ),
                ),
                None => ("Adopted", "a pod already belongs to a cluster; not founding another".to_string()),
            }
        }
        Step::Join { ordinal } => {
            let leader = leader.ok_or(Error::Node("no leader".into()))?;
            ctx.nodes.join(&leader, names, *ordinal, false).await?;
            count("join");
            ("MemberJoined", format!("{} joined as a voter", names.pod(*ordinal)))
        }
        Step::JoinReplica { id } => {
            let leader = leader.ok_or(Error::Node("no leader".into()))?;
            ctx.nodes.join(&leader, names, *id, true).await?;
            count("join_replica");
            ("ReadReplicaJoined", format!("{} joined as a read replica", names.pod(*id)))
        }
        Step::Evict { id } => {
            let leader = leader.ok_or(Error::Node("no leader".into()))?;
            ctx.nodes.remove(names, &leader, *id).await?;
            count("evict");
            ("MemberLostData", format!("{} came back without its data; removed, it will rejoin", names.pod(*id)))
        }
        Step::TransferLeader { from } => {
            let leader = leader.ok_or(Error::Node("no leader".into()))?;
            let keep = u64::try_from(cluster.spec.replicas).unwrap_or(1);
            // The most caught-up voter that stays.
            let to = observation
                .members()
                .unwrap_or_default()
                .iter()
                .filter(|m| m.voter && m.id < keep)
                .max_by_key(|m| m.matched_index.unwrap_or(0))
                .map(|m| m.id);
            let new = ctx.nodes.transfer_leader(names, &leader, to).await?;
            count("transfer_leader");
            (
                "LeaderHandedOver",
                format!("{} → {} before removing {}", names.pod(*from), names.pod(new), names.pod(*from)),
            )
        }
        Step::Remove { id } => {
            let leader = leader.ok_or(Error::Node("no leader".into()))?;
            ctx.nodes.remove(names, &leader, *id).await?;
            count("remove");
            ("MemberRemoved", format!("{} left the Raft membership", names.pod(*id)))
        }
        Step::Restart { id, updated, total } => {
            restart_pod(ctx, names, pods, *id).await?;
            count("upgrade_restart");
            let alone = observation.leader().is_some_and(|l| l.ordinal == *id);
            let outage =
                if alone { " (the only voter: no one to hand over to, writes pause until it is back)" } else { "" };
            (
                "UpgradingPod",
                format!("restarting {} with the new template, {updated} of {total} updated{outage}", names.pod(*id)),
            )
        }
        Step::Promote { from, to } => {
            let leader = leader.ok_or(Error::Node("no leader".into()))?;
            let new = ctx.nodes.transfer_leader(names, &leader, Some(*to)).await?;
            count("promote");
            let rchats: Api<ReplicatedChat> = Api::namespaced(ctx.client.clone(), &names.namespace);
            forget_promotion(&rchats, cluster).await?;
            ("Promoted", format!("{} → {}, as asked", names.pod(*from), names.pod(new)))
        }
        Step::HandOver { from, to } => {
            let leader = leader.ok_or(Error::Node("no leader".into()))?;
            let new = ctx.nodes.transfer_leader(names, &leader, Some(*to)).await?;
            count("upgrade_hand_over");
            (
                "LeaderHandedOver",
                format!(
                    "{} → {} for the upgrade; {} restarts next",
                    names.pod(*from),
                    names.pod(new),
                    names.pod(*from)
                ),
            )
        }
    };
    let type_ = if reason == "MemberLostData" { EventType::Warning } else { EventType::Normal };
    ctx.publish(cluster, type_, reason, "ChangeMembership", note, step.member().map(|m| names.pod(m))).await;
    Ok(())
}

/// Tells what became of a promote request and removes it.
async fn answer_promotion(
    ctx: &Context,
    cluster: &ReplicatedChat,
    rchats: &Api<ReplicatedChat>,
    type_: EventType,
    reason: &str,
    note: String,
) -> Result<()> {
    ctx.publish(cluster, type_, reason, "Promote", note, None).await;
    forget_promotion(rchats, cluster).await
}

/// Removes the promote request (a merge patch's `null` deletes the key).
async fn forget_promotion(rchats: &Api<ReplicatedChat>, cluster: &ReplicatedChat) -> Result<()> {
    let patch = json!({"metadata": {"annotations": {PROMOTE_ANNOTATION: null}}});
    rchats.patch(&cluster.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// Scheduled backups: the CronJob `spec.backup` describes; once the section
/// is removed, the one made earlier (the status remembers it) is suspended —
/// kept, with its history, not deleted. Returns the CronJob's name while it
/// is scheduled.
async fn schedule_backups(ctx: &Context, cluster: &ReplicatedChat, names: &ClusterNames) -> Result<Option<String>> {
    let made = cluster.status.as_ref().and_then(|s| s.scheduled_backups.clone());
    match (&cluster.spec.backup, made) {
        (Some(backup), _) => {
            ssa(ctx, &names.namespace, &resources::backup::cron_job(cluster, backup, false)).await?;
            Ok(Some(names.backup_cron_job()))
        }
        (None, Some(name)) => {
            let jobs: Api<k8s_openapi::api::batch::v1::CronJob> = Api::namespaced(ctx.client.clone(), &names.namespace);
            let note = format!("spec.backup removed: CronJob {name} suspended (kept, with its history)");
            let stop =
                Stop { patch: json!({"spec": {"suspend": true}}), reason: "BackupsSuspended", action: "Backup", note };
            stop_kept(ctx, cluster, &jobs, &name, stop).await?;
            Ok(None)
        }
        (None, None) => Ok(None),
    }
}

/// The web console `spec.console` asks for: its ServiceAccount, Role and
/// binding, Service, NetworkPolicy and Deployment. Once turned off (or the section removed),
/// the Deployment made earlier (the status remembers it) is scaled to zero —
/// kept, not deleted. Returns the Deployment's name while the console runs.
async fn run_console(ctx: &Context, cluster: &ReplicatedChat, names: &ClusterNames) -> Result<Option<String>> {
    let made = cluster.status.as_ref().and_then(|s| s.console.clone());
    match (cluster.spec.console.as_ref().filter(|c| c.enabled), made) {
        (Some(console), _) => {
            let ns = &names.namespace;
            ssa(ctx, ns, &resources::console::service_account(cluster)).await?;
            ssa(ctx, ns, &resources::console::role(cluster)).await?;
            ssa(ctx, ns, &resources::console::binding(cluster)).await?;
            ssa(ctx, ns, &resources::console::service(cluster)).await?;
            ssa(ctx, ns, &network_policy::console(cluster)).await?;
            ssa(ctx, ns, &resources::console::deployment(cluster, console)).await?;
            Ok(Some(names.console()))
        }
        (None, Some(name)) => {
            let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &names.namespace);
            let note = format!("spec.console turned off: Deployment {name} scaled to zero (kept)");
            let stop =
                Stop { patch: json!({"spec": {"replicas": 0}}), reason: "ConsoleStopped", action: "Console", note };
            stop_kept(ctx, cluster, &deployments, &name, stop).await?;
            Ok(None)
        }
        (None, None) => Ok(None),
    }
}

/// How an optional object the spec no longer asks for is stopped: a merge
/// patch, and the Event that says so.
struct Stop {
    patch: serde_json::Value,
    reason: &'static str,
    action: &'static str,
    note: String,
}

/// Stops `name` (kept, not deleted: the operator deletes nothing it made);
/// one already gone is fine.
async fn stop_kept<K>(ctx: &Context, cluster: &ReplicatedChat, api: &Api<K>, name: &str, stop: Stop) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.patch(name, &PatchParams::default(), &Patch::Merge(&stop.patch)).await {
        Ok(_) => ctx.publish(cluster, EventType::Normal, stop.reason, stop.action, stop.note, None).await,
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Deletes member `id`'s pod, only the very pod the reconcile saw (its uid:
/// never one the StatefulSet controller already made again).
async fn restart_pod(ctx: &Context, names: &ClusterNames, pods: &[Pod], id: u64) -> Result<()> {
    let name = names.pod(id);
    let uid = pods.iter().find(|p| p.name_any() == name).and_then(|p| p.metadata.uid.clone());
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let params =
        DeleteParams { preconditions: Some(Preconditions { uid, resource_version: None }), ..DeleteParams::default() };
    api.delete(&name, &params).await?;
    Ok(())
}

/// Server-side apply of an owned object, forcing our field manager's ownership.
pub(crate) async fn ssa<K>(ctx: &Context, ns: &str, object: &K) -> Result<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let name = object.meta().name.clone().ok_or(Error::MissingField("metadata.name"))?;
    Ok(api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await?)
}

/// A merge patch leaves out what serializes to nothing, so a leader that is
/// gone (`None`, skipped when serialized) would stay in the status for good
/// (and a suspended CronJob be suspended again at every reconcile): both are
/// sent as an explicit `null`, which a merge patch deletes.
async fn patch_status(api: &Api<ReplicatedChat>, cluster: &ReplicatedChat, status: ReplicatedChatStatus) -> Result<()> {
    let (no_leader, no_backups, no_console) =
        (status.leader.is_none(), status.scheduled_backups.is_none(), status.console.is_none());
    let mut patch = json!({"status": status});
    if no_leader {
        patch["status"]["leader"] = serde_json::Value::Null;
    }
    if no_backups {
        patch["status"]["scheduledBackups"] = serde_json::Value::Null;
    }
    if no_console {
        patch["status"]["console"] = serde_json::Value::Null;
    }
    api.patch_status(&cluster.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}
