//! chat-operator: reconciles `ReplicatedChat` resources into Raft clusters of
//! `chat-node` pods, and keeps their membership, leader label and status true.
//!
//! Layout:
//! - [`controller`]: Context, the instrumented reconcile entry, error policy, `run`.
//! - [`reconcile`]: one reconcile in its commented order; cleanup on delete.
//! - [`validate`]: judging a spec (errors stop, warnings report).
//! - [`certificates`]: each cluster's CA, the nodes' certificate (renewed), the operator's own.
//! - [`resources`]: pure builders of the owned objects (StatefulSet, Services, PDB, ServiceAccount,
//!   certificate Secrets and the CA ConfigMap).
//! - [`plan`]: the pure membership planner (bootstrap once, scale up/down, lost volumes).
//! - [`promotion`]: judging a `kubectl chat promote` request.
//! - [`rollout`]: the pure upgrade planner (followers one at a time, one hand-over, leader last).
//! - [`nodes`]: talking to chat nodes (GetStatus, Initialize, Join, Remove, TransferLeader).
//! - [`leader_routing`]: the fast path — streams each cluster's leader and moves the label
//!   (term-fenced, [`chat_k8s::routing`]) the moment it changes, whatever the reconcile is doing.
//! - [`status`]: status and conditions.
//! - [`metrics`], [`http`]: Prometheus metrics, /healthz /readyz /metrics.
//! - [`election`]: leader election between operator replicas (a Lease).
//! - [`crdgen`]: the CRD as YAML; [`render`]: the objects a manifest would produce, offline.

pub mod certificates;
pub mod controller;
pub mod crdgen;
pub mod election;
pub mod error;
pub mod http;
pub mod leader_routing;
pub mod metrics;
pub mod nodes;
pub mod plan;
pub mod promotion;
pub mod reconcile;
pub mod render;
pub mod resources;
pub mod rollout;
pub mod status;
pub mod validate;
