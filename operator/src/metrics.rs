//! Prometheus metrics of the operator: reconciles, their duration, failures
//! by cause, membership actions and leader changes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    pub action: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub reconcile_duration: Histogram,
    pub failures: Family<ErrorLabel, Counter>,
    pub membership_actions: Family<ActionLabel, Counter>,
    pub leader_changes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("chat_operator");
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        let reconcile_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register("reconcile_duration_seconds", "Reconcile duration", reconcile_duration.clone());
        let failures = Family::<ErrorLabel, Counter>::default();
        registry.register("reconcile_failures", "Reconciles that failed, by cause", failures.clone());
        let membership_actions = Family::<ActionLabel, Counter>::default();
        registry.register("membership_actions", "Raft membership steps taken, by kind", membership_actions.clone());
        let leader_changes = Counter::default();
        registry.register("leader_label_moves", "Times the leader label moved to another pod", leader_changes.clone());
        Self { registry, reconciles, reconcile_duration, failures, membership_actions, leader_changes }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}
