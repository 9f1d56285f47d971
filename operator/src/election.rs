//! Leader election between operator replicas through a coordination.k8s.io
//! Lease: only the holder reconciles. The holder renews every `renew`
//! interval; another replica takes over once `duration` has passed without a
//! renewal. Writes are optimistic (`resourceVersion`), so two candidates can
//! never both win the same round: the loser's write is refused with 409.
//!
//! A holder that cannot renew before its lease runs out stops (the process
//! exits and Kubernetes restarts it as a follower), rather than reconcile
//! alongside a new holder. A holder that stops gracefully releases the lease
//! ([`LeaseLock::release`], client-go's `ReleaseOnCancel`), so a standby takes
//! over at once instead of after `duration`.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;

use crate::error::Result;

#[derive(Clone)]
pub struct LeaseLock {
    pub api: Api<Lease>,
    pub name: String,
    /// Who we are (the pod name).
    pub identity: String,
    pub duration: Duration,
}

impl LeaseLock {
    /// One round: takes the lease if it is free or expired, renews it if ours.
    /// Returns whether we hold it now.
    ///
    /// # Errors
    /// API errors other than a lost race (409), which is just "not ours".
    pub async fn try_acquire_or_renew(&self, now: Timestamp) -> Result<bool> {
        let spec = |acquired: Option<MicroTime>, transitions: i32| LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            acquire_time: acquired.or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        };
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(spec(None, 0)),
            };
            return self.write(self.api.create(&PostParams::default(), &lease).await);
        };
        let held = current.spec.clone().unwrap_or_default();
        let ours = held.holder_identity.as_deref() == Some(self.identity.as_str());
        let expired = match (held.renew_time.as_ref(), held.lease_duration_seconds) {
            (Some(MicroTime(renewed)), Some(secs)) => *renewed + SignedDuration::from_secs(i64::from(secs)) < now,
            _ => true,
        };
        if !ours && !expired {
            return Ok(false);
        }
        let transitions = held.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours { held.acquire_time } else { None };
        // The resourceVersion we read makes this a compare-and-swap.
        let updated = Lease { metadata: current.metadata, spec: Some(spec(acquired, transitions)) };
        self.write(self.api.replace(&self.name, &PostParams::default(), &updated).await)
    }

    fn write(&self, outcome: kube::Result<Lease>) -> Result<bool> {
        match outcome {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until we hold the lease, trying every `duration / 3`.
    ///
    /// # Errors
    /// Persistent API errors.
    pub async fn acquire(&self) -> Result<()> {
        loop {
            match self.try_acquire_or_renew(Timestamp::now()).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "lease: could not try to acquire"),
            }
            tokio::time::sleep(self.duration / 3).await;
        }
    }

    /// Gives the lease up if we still hold it (compare-and-swap on what we
    /// read): no holder, no renewal time, so any candidate may take it at once.
    /// Call it only once this replica has stopped reconciling.
    ///
    /// # Errors
    /// API errors other than a lost race (409: someone else holds it already).
    pub async fn release(&self) -> Result<()> {
        let Some(current) = self.api.get_opt(&self.name).await? else { return Ok(()) };
        let held = current.spec.clone().unwrap_or_default();
        if held.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        let spec = LeaseSpec {
            holder_identity: None,
            renew_time: None,
            acquire_time: None,
            lease_duration_seconds: held.lease_duration_seconds,
            lease_transitions: held.lease_transitions,
            ..LeaseSpec::default()
        };
        let released = Lease { metadata: current.metadata, spec: Some(spec) };
        self.write(self.api.replace(&self.name, &PostParams::default(), &released).await).map(|_| ())
    }

    /// Renews every `duration / 3` for as long as we hold the lease; returns
    /// when we lost it: another holder, or no successful renewal within the
    /// renew deadline (two thirds of the lease, as client-go's 10 s of 15).
    /// Each renewal call is bounded too, so a hung API call cannot carry us
    /// past the deadline: we stop while the lease is still ours, before any
    /// standby can take it, and two replicas never reconcile at once.
    pub async fn hold(&self) {
        let renew_deadline = self.duration * 2 / 3;
        let call_timeout = self.duration / 5;
        let mut deadline = tokio::time::Instant::now() + renew_deadline;
        loop {
            tokio::time::sleep_until((tokio::time::Instant::now() + self.duration / 3).min(deadline)).await;
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            let bound = (tokio::time::Instant::now() + call_timeout).min(deadline);
            match tokio::time::timeout_at(bound, self.try_acquire_or_renew(Timestamp::now())).await {
                Ok(Ok(true)) => deadline = tokio::time::Instant::now() + renew_deadline,
                Ok(Ok(false)) => return,
                Ok(Err(e)) => tracing::warn!(error = %e, "lease: renewal failed"),
                Err(_) => tracing::warn!(timeout = ?call_timeout, "lease: renewal call did not answer"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chat_k8s::testing::{ApiServer, mock_client};
    use http::Method;
    use serde_json::{Value, json};

    use super::*;

    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/chat-operator";

    fn lock(identity: &str) -> (LeaseLock, ApiServer) {
        let (client, server) = mock_client("ops");
        let lock = LeaseLock {
            api: Api::namespaced(client, "ops"),
            name: "chat-operator".into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
        };
        (lock, server)
    }

    fn lease(holder: &str, renewed: &str) -> Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "chat-operator", "namespace": "ops", "resourceVersion": "7"},
               "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                        "acquireTime": "2026-11-21T10:00:00.000000Z", "renewTime": renewed, "leaseTransitions": 2}})
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn a_missing_lease_is_created_with_us_as_holder() {
        let (lock, mut api) = lock("op-a");
        let task = tokio::spawn(async move { lock.try_acquire_or_renew(at("2026-11-21T10:00:00Z")).await });
        api.next(Method::GET, LEASE).await.not_found();
        let create = api.next(Method::POST, "/apis/coordination.k8s.io/v1/namespaces/ops/leases").await;
        assert_eq!(create.body["spec"]["holderIdentity"], "op-a");
        assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);
        create.echo();
        assert!(task.await.unwrap().unwrap());
        rbac_allows(&api.seen);
    }

    #[tokio::test]
    async fn a_live_foreign_lease_is_left_alone_and_an_expired_one_taken_over() {
        let (lock, mut api) = lock("op-b");
        let live = lock.clone();
        let task = tokio::spawn(async move { live.try_acquire_or_renew(at("2026-11-21T10:00:10Z")).await });
        api.next(Method::GET, LEASE).await.ok(lease("op-a", "2026-11-21T10:00:00.000000Z"));
        assert!(!task.await.unwrap().unwrap(), "op-a renewed 10 s ago: still its");
        api.assert_idle(Duration::from_millis(100)).await;

        let task = tokio::spawn(async move { lock.try_acquire_or_renew(at("2026-11-21T10:00:20Z")).await });
        api.next(Method::GET, LEASE).await.ok(lease("op-a", "2026-11-21T10:00:00.000000Z"));
        let take = api.next(Method::PUT, LEASE).await;
        assert_eq!(take.body["metadata"]["resourceVersion"], "7", "a compare-and-swap on what we read");
        assert_eq!(take.body["spec"]["holderIdentity"], "op-b");
        assert_eq!(take.body["spec"]["leaseTransitions"], 3);
        take.echo();
        assert!(task.await.unwrap().unwrap());
        rbac_allows(&api.seen);
    }

    #[tokio::test]
    async fn a_lost_race_is_not_an_error_and_our_own_lease_is_renewed() {
        let (lock, mut api) = lock("op-b");
        let racer = lock.clone();
        let task = tokio::spawn(async move { racer.try_acquire_or_renew(at("2026-11-21T10:00:20Z")).await });
        api.next(Method::GET, LEASE).await.ok(lease("op-a", "2026-11-21T10:00:00.000000Z"));
        api.next(Method::PUT, LEASE).await.fail(http::StatusCode::CONFLICT, "Conflict", "the object has been modified");
        assert!(!task.await.unwrap().unwrap());

        let task = tokio::spawn(async move { lock.try_acquire_or_renew(at("2026-11-21T10:00:25Z")).await });
        api.next(Method::GET, LEASE).await.ok(lease("op-b", "2026-11-21T10:00:20.000000Z"));
        let renew = api.next(Method::PUT, LEASE).await;
        assert_eq!(renew.body["spec"]["renewTime"], "2026-11-21T10:00:25.000000Z");
        assert_eq!(renew.body["spec"]["leaseTransitions"], 2, "a renewal is not a transition");
        renew.echo();
        assert!(task.await.unwrap().unwrap());
        rbac_allows(&api.seen);
    }

    #[tokio::test]
    async fn a_stopping_holder_releases_the_lease_and_another_takes_it_at_once() {
        let (lock, mut api) = lock("op-a");
        let task = tokio::spawn(async move { lock.release().await });
        api.next(Method::GET, LEASE).await.ok(lease("op-a", "2026-11-21T10:00:00.000000Z"));
        let release = api.next(Method::PUT, LEASE).await;
        assert_eq!(release.body["metadata"]["resourceVersion"], "7", "a compare-and-swap on what we read");
        assert!(release.body["spec"].get("holderIdentity").is_none(), "{}", release.body);
        assert!(release.body["spec"].get("renewTime").is_none(), "{}", release.body);
        let released = release.body.clone();
        release.echo();
        task.await.unwrap().unwrap();

        // A standby one second later takes it, without waiting out the 15 s.
        let (standby, mut api) = super::tests::lock("op-b");
        let task = tokio::spawn(async move { standby.try_acquire_or_renew(at("2026-11-21T10:00:01Z")).await });
        api.next(Method::GET, LEASE).await.ok(released);
        let take = api.next(Method::PUT, LEASE).await;
        assert_eq!(take.body["spec"]["holderIdentity"], "op-b");
        take.echo();
        assert!(task.await.unwrap().unwrap());

        // Not ours (any more): nothing is written.
        let (late, mut api) = super::tests::lock("op-a");
        let task = tokio::spawn(async move { late.release().await });
        api.next(Method::GET, LEASE).await.ok(lease("op-b", "2026-11-21T10:00:01.000000Z"));
        task.await.unwrap().unwrap();
        api.assert_idle(Duration::from_millis(100)).await;
        rbac_allows(&api.seen);
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_that_cannot_renew_stops_well_inside_its_lease() {
        // The API server never answers: every renewal call hangs.
        let (lock, _api) = lock("op-a");
        let started = tokio::time::Instant::now();
        lock.hold().await;
        let gave_up = started.elapsed();
        assert!(gave_up <= Duration::from_secs(10), "stopped after {gave_up:?}: the 15 s lease must still be ours");
        assert!(gave_up >= Duration::from_secs(5), "tried to renew first: {gave_up:?}");
    }

    /// The chart's leader-election Role allows every request made here.
    fn rbac_allows(seen: &[(Method, String, String)]) {
        let rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule> =
            serde_saphyr::from_str(include_str!("../../charts/replicated-chat/files/leader-election-rules.yaml"))
                .unwrap();
        chat_k8s::testing::assert_rules_allow(&rules, "charts/replicated-chat/files/leader-election-rules.yaml", seen);
    }
}
