//! Routing the client Service to the Raft leader: moving the pod label
//! `chat.replicated.dev/role=leader`, fenced by Raft term so that several
//! writers — the operator's fast path and the elected node labelling itself —
//! can never leave two pods labelled, and a deposed leader can never relabel
//! itself after a newer term has been routed.
//!
//! The protocol ([`Router::route`]) for "pod P leads in term T":
//!
//! 1. Read P (its labels and `resourceVersion`).
//! 2. Compare-and-swap the cluster's leader Lease (`<cluster>-leader`) to
//!    holder P, term T (annotation [`TERM_ANNOTATION`]) — only if the Lease's
//!    term is older. A newer term there means this writer's view is stale: it
//!    stops ([`Routed::Superseded`]).
//! 3. Fence every other pod: unless it was already written at term ≥ T,
//!    remove its label (marking it read-only, for the `-ro` Service) and
//!    record T in its own term annotation — conditional on the
//!    `resourceVersion` just read.
//! 4. Label P (no longer read-only) and record T, conditional on the
//!    `resourceVersion` read in step 1.
//!
//! Why no two labels: if a writer W1 for (A, T1) and a writer W2 for (B, T2),
//! T1 < T2, both pass step 2, W1's swap came first (after W2's, W1 would have
//! seen T2 and stopped). W2's step 3 writes A after that swap, so after W1's
//! step 1: either A carries W1's label by then and W2 removes it, or W1's
//! conditional label write meets a changed `resourceVersion` and is refused.
//! Either way no label of A survives W2's step 3, and W2 labels B only after.
//! A refused conditional write starts the protocol over (a bounded number of
//! times): the Lease then tells the writer whether it still has a say.
//!
//! Nodes run this with a Role that allows only `get`/`patch` on their own
//! cluster's pods by name and `get`/`update` on that one Lease (the Lease is
//! created by the operator, as `create` cannot be limited to a name).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::names::{ClusterNames, READ_ONLY_LABEL, ROLE_LABEL, ROLE_LEADER, TERM_ANNOTATION};

/// Times the protocol starts over after a refused conditional write (a
/// concurrent writer, or the kubelet updating a pod's status).
const ATTEMPTS: usize = 8;

/// How a [`Router::route`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// The label is on the leader's pod alone; `changed` if this call wrote any pod.
    Done { changed: bool },
    /// The Lease holds a newer term: someone routed a later leader already.
    Superseded { term: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("pod {0} does not exist")]
    NoPod(String),
    #[error("lease {lease} is held by {holder} for term {term} too: two leaders in one term?")]
    SameTermOtherHolder { lease: String, holder: String, term: u64 },
    #[error("still contended after {ATTEMPTS} attempts")]
    Contended,
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// Moves the leader label of one cluster.
#[derive(Clone)]
pub struct Router {
    pods: Api<Pod>,
    leases: Api<Lease>,
    names: ClusterNames,
}

impl Router {
    pub fn new(client: Client, names: ClusterNames) -> Self {
        Self {
            pods: Api::namespaced(client.clone(), &names.namespace),
            leases: Api::namespaced(client, &names.namespace),
            names,
        }
    }

    pub fn names(&self) -> &ClusterNames {
        &self.names
    }

    /// Routes the client Service to pod `leader`, which leads in `term`;
    /// `others` are the pods to take the label from (every other pod of the
    /// cluster the caller knows of; a pod that does not exist is skipped).
    ///
    /// # Errors
    /// API errors (including forbidden ones), a missing leader pod, or a
    /// contention that outlasted every attempt.
    pub async fn route(&self, leader: u64, term: u64, others: &[u64]) -> Result<Routed, RouteError> {
        let target = self.names.pod(leader);
        let mut changed = false;
        for _ in 0..ATTEMPTS {
            // 1.
            let pod = self.pods.get_opt(&target).await?.ok_or_else(|| RouteError::NoPod(target.clone()))?;
            // 2.
            match self.take_lease(&target, term).await? {
                LeaseOutcome::Superseded(newer) => return Ok(Routed::Superseded { term: newer }),
                LeaseOutcome::Conflict => continue,
                LeaseOutcome::Ours => {}
            }
            // 3.
            let mut refused = false;
            for &other in others.iter().filter(|&&o| o != leader) {
                match self.fence(&self.names.pod(other), term).await? {
                    Write::Skipped => {}
                    Write::Written => changed = true,
                    Write::Refused => {
                        refused = true;
                        break;
                    }
                }
            }
            if refused {
                continue;
            }
            // 4.
            if labelled(&pod) && written_term(&pod) >= term {
                return Ok(Routed::Done { changed });
            }
            let patch = json!({"metadata": {
                "resourceVersion": pod.resource_version(),
                "labels": {ROLE_LABEL: ROLE_LEADER, READ_ONLY_LABEL: null},
                "annotations": {TERM_ANNOTATION: term.to_string()},
            }});
            match conditional(self.pods.patch(&target, &PatchParams::default(), &Patch::Merge(&patch)).await)? {
                Write::Written => return Ok(Routed::Done { changed: true }),
                Write::Refused | Write::Skipped => {}
            }
        }
        Err(RouteError::Contended)
    }

    /// Puts the Lease back to (`leader`, `term`) when it claims term `bogus`,
    /// a term the caller has shown no election ever reached (a majority of
    /// voters report older terms: a term is won only with a majority's votes,
    /// and terms never go back). A hand edit or a bug must not stop routing
    /// for good. Compare-and-swap: false if the Lease changed meanwhile.
    ///
    /// # Errors
    /// API errors.
    pub async fn reclaim(&self, leader: u64, term: u64, bogus: u64) -> Result<bool, RouteError> {
        let name = self.names.leader_lease();
        let Some(mut lease) = self.leases.get_opt(&name).await? else { return Ok(false) };
        if lease_term(&lease) != bogus || term >= bogus {
            return Ok(false);
        }
        lease.annotations_mut().insert(TERM_ANNOTATION.to_string(), term.to_string());
        hold(lease.spec.get_or_insert_with(LeaseSpec::default), &self.names.pod(leader));
        Ok(matches!(conditional(self.leases.replace(&name, &PostParams::default(), &lease).await)?, Write::Written))
    }

    /// Step 2: the Lease to (`holder`, `term`) unless it holds a newer term.
    async fn take_lease(&self, holder: &str, term: u64) -> Result<LeaseOutcome, RouteError> {
        let name = self.names.leader_lease();
        let Some(current) = self.leases.get_opt(&name).await? else {
            let mut spec = LeaseSpec { lease_transitions: Some(0), ..LeaseSpec::default() };
            hold(&mut spec, holder);
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name),
                    labels: Some(self.names.labels()),
                    annotations: Some([(TERM_ANNOTATION.to_string(), term.to_string())].into()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            return Ok(LeaseOutcome::of(conditional(self.leases.create(&PostParams::default(), &lease).await)?));
        };
        let held = lease_term(&current);
        let spec = current.spec.clone().unwrap_or_default();
        let same_holder = spec.holder_identity.as_deref() == Some(holder);
        if held > term {
            return Ok(LeaseOutcome::Superseded(held));
        }
        if held == term {
            return if same_holder {
                Ok(LeaseOutcome::Ours)
            } else {
                Err(RouteError::SameTermOtherHolder {
                    lease: name,
                    holder: spec.holder_identity.unwrap_or_default(),
                    term,
                })
            };
        }
        let mut updated = current;
        updated.annotations_mut().insert(TERM_ANNOTATION.to_string(), term.to_string());
        let transitions = spec.lease_transitions.unwrap_or(0).saturating_add(i32::from(!same_holder));
        let mut next = LeaseSpec { lease_transitions: Some(transitions), ..LeaseSpec::default() };
        hold(&mut next, holder);
        updated.spec = Some(next);
        // The resourceVersion read makes the replace a compare-and-swap.
        Ok(LeaseOutcome::of(conditional(self.leases.replace(&name, &PostParams::default(), &updated).await)?))
    }

    /// Step 3 for one pod.
    async fn fence(&self, pod: &str, term: u64) -> Result<Write, RouteError> {
        let Some(current) = self.pods.get_opt(pod).await? else { return Ok(Write::Skipped) };
        // A newer term's writer owns it now; at this term it is fenced already
        // unless something took its read-only mark (a hand edit).
        let written = written_term(&current);
        if written > term || (written == term && !labelled(&current) && read_only(&current)) {
            return Ok(Write::Skipped);
        }
        let patch = json!({"metadata": {
            "resourceVersion": current.resource_version(),
            "labels": {ROLE_LABEL: null, READ_ONLY_LABEL: "true"},
            "annotations": {TERM_ANNOTATION: term.to_string()},
        }});
        conditional(self.pods.patch(pod, &PatchParams::default(), &Patch::Merge(&patch)).await)
    }
}

enum LeaseOutcome {
    Ours,
    Conflict,
    Superseded(u64),
}

impl LeaseOutcome {
    /// A written Lease is ours; a refused or vanished one is a lost race.
    fn of(write: Write) -> Self {
        match write {
            Write::Written => LeaseOutcome::Ours,
            Write::Refused | Write::Skipped => LeaseOutcome::Conflict,
        }
    }
}

/// `spec` names `holder`, acquired and renewed now.
fn hold(spec: &mut LeaseSpec, holder: &str) {
    let now = MicroTime(Timestamp::now());
    spec.holder_identity = Some(holder.to_string());
    spec.acquire_time = Some(now.clone());
    spec.renew_time = Some(now);
}

enum Write {
    Written,
    Refused,
    Skipped,
}

/// A refused precondition (409) or a pod gone meanwhile (404) is an outcome, not an error.
fn conditional<T>(outcome: kube::Result<T>) -> Result<Write, RouteError> {
    match outcome {
        Ok(_) => Ok(Write::Written),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Write::Refused),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Write::Skipped),
        Err(e) => Err(e.into()),
    }
}

pub fn labelled(pod: &Pod) -> bool {
    pod.labels().get(ROLE_LABEL).map(String::as_str) == Some(ROLE_LEADER)
}

/// Marked for the `-ro` Service (a follower or a read replica).
pub fn read_only(pod: &Pod) -> bool {
    pod.labels().get(READ_ONLY_LABEL).map(String::as_str) == Some("true")
}

/// The term annotation of a pod or Lease; absent or malformed reads as 0
/// (never written by a term-aware writer).
fn term_of(annotations: &std::collections::BTreeMap<String, String>) -> u64 {
    annotations.get(TERM_ANNOTATION).and_then(|t| t.parse().ok()).unwrap_or(0)
}

pub fn written_term(pod: &Pod) -> u64 {
    term_of(pod.annotations())
}

pub fn lease_term(lease: &Lease) -> u64 {
    term_of(lease.annotations())
}

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};
    use serde_json::Value;

    use super::*;
    use crate::testing::{ApiServer, mock_client};

    const PODS: &str = "/api/v1/namespaces/chat/pods";
    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/chat/leases/demo-leader";

    fn pod(ordinal: u64, leader: bool, term: u64, rv: &str) -> Value {
        let mut labels = json!({"app.kubernetes.io/instance": "demo"});
        if leader {
            labels[ROLE_LABEL] = json!(ROLE_LEADER);
        } else {
            labels[READ_ONLY_LABEL] = json!("true");
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": format!("demo-{ordinal}"), "namespace": "chat", "resourceVersion": rv,
            "labels": labels, "annotations": {TERM_ANNOTATION: term.to_string()}}})
    }

    fn lease(holder: &str, term: u64) -> Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {
            "name": "demo-leader", "namespace": "chat", "resourceVersion": "40",
            "annotations": {TERM_ANNOTATION: term.to_string()}},
            "spec": {"holderIdentity": holder}})
    }

    fn router() -> (Router, ApiServer) {
        let (client, server) = mock_client("chat");
        (Router::new(client, ClusterNames::new("demo", "chat")), server)
    }

    #[tokio::test]
    async fn a_new_term_takes_the_lease_fences_the_others_then_labels_the_leader() {
        let (router, mut api) = router();
        let task = tokio::spawn(async move { router.route(1, 5, &[0, 1, 2]).await });
        api.next(Method::GET, &format!("{PODS}/demo-1")).await.ok(pod(1, false, 3, "11"));
        api.next(Method::GET, LEASE).await.ok(lease("demo-0", 3));
        let swap = api.next(Method::PUT, LEASE).await;
        assert_eq!(swap.body["metadata"]["resourceVersion"], "40", "a compare-and-swap");
        assert_eq!(
            (swap.body["spec"]["holderIdentity"].as_str(), &swap.body["metadata"]["annotations"][TERM_ANNOTATION]),
            (Some("demo-1"), &json!("5"))
        );
        swap.echo();
        api.next(Method::GET, &format!("{PODS}/demo-0")).await.ok(pod(0, true, 3, "10"));
        let unlabel = api.next(Method::PATCH, &format!("{PODS}/demo-0")).await;
        assert_eq!(unlabel.body["metadata"]["labels"][ROLE_LABEL], Value::Null);
        assert_eq!(unlabel.body["metadata"]["labels"][READ_ONLY_LABEL], "true", "for the -ro Service");
        assert_eq!(unlabel.body["metadata"]["resourceVersion"], "10");
        unlabel.ok(pod(0, false, 5, "12"));
        api.next(Method::GET, &format!("{PODS}/demo-2")).await.ok(pod(2, false, 3, "9"));
        api.next(Method::PATCH, &format!("{PODS}/demo-2")).await.ok(pod(2, false, 5, "13"));
        let label = api.next(Method::PATCH, &format!("{PODS}/demo-1")).await;
        assert_eq!(label.body["metadata"]["labels"][ROLE_LABEL], ROLE_LEADER);
        assert_eq!(label.body["metadata"]["labels"][READ_ONLY_LABEL], Value::Null);
        assert_eq!(label.body["metadata"]["resourceVersion"], "11", "conditional on what step 1 read");
        label.ok(pod(1, true, 5, "14"));
        assert_eq!(task.await.unwrap().unwrap(), Routed::Done { changed: true });
    }

    #[tokio::test]
    async fn a_writer_with_an_older_term_changes_nothing() {
        let (router, mut api) = router();
        let task = tokio::spawn(async move { router.route(0, 4, &[0, 1, 2]).await });
        api.next(Method::GET, &format!("{PODS}/demo-0")).await.ok(pod(0, true, 3, "10"));
        api.next(Method::GET, LEASE).await.ok(lease("demo-1", 5));
        assert_eq!(task.await.unwrap().unwrap(), Routed::Superseded { term: 5 });
        api.assert_idle(std::time::Duration::from_millis(100)).await;
    }

    /// The race the protocol exists for: a deposed writer got its Lease swap
    /// in, then a newer term fenced its pod before it could label it.
    #[tokio::test]
    async fn a_deposed_writers_label_is_refused_and_it_learns_it_was_superseded() {
        let (router, mut api) = router();
        let task = tokio::spawn(async move { router.route(0, 4, &[0, 1]).await });
        api.next(Method::GET, &format!("{PODS}/demo-0")).await.ok(pod(0, false, 3, "10"));
        api.next(Method::GET, LEASE).await.ok(lease("demo-1", 3));
        api.next(Method::PUT, LEASE).await.echo();
        api.next(Method::GET, &format!("{PODS}/demo-1")).await.ok(pod(1, false, 4, "12"));
        // Meanwhile term 5 fenced demo-0: its resourceVersion moved on.
        api.next(Method::PATCH, &format!("{PODS}/demo-0")).await.fail(
            StatusCode::CONFLICT,
            "Conflict",
            "the object has been modified",
        );
        api.next(Method::GET, &format!("{PODS}/demo-0")).await.ok(pod(0, false, 5, "15"));
        api.next(Method::GET, LEASE).await.ok(lease("demo-1", 5));
        assert_eq!(task.await.unwrap().unwrap(), Routed::Superseded { term: 5 });
        api.assert_idle(std::time::Duration::from_millis(100)).await;
    }

    #[tokio::test]
    async fn a_routed_cluster_costs_reads_only() {
        let (router, mut api) = router();
        let task = tokio::spawn(async move { router.route(1, 5, &[0, 1]).await });
        api.next(Method::GET, &format!("{PODS}/demo-1")).await.ok(pod(1, true, 5, "11"));
        api.next(Method::GET, LEASE).await.ok(lease("demo-1", 5));
        api.next(Method::GET, &format!("{PODS}/demo-0")).await.ok(pod(0, false, 5, "10"));
        assert_eq!(task.await.unwrap().unwrap(), Routed::Done { changed: false });
        api.assert_idle(std::time::Duration::from_millis(100)).await;
    }
}
