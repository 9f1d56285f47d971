//! Measurements of replicated-chat against etcd (see BENCHMARKS.md).
//!
//! Layout: [`etcd`] (a 3-member etcd cluster on loopback), [`cpu`] (CPU time
//! of processes), [`compare`] (the same load on both, and failover on both),
//! [`operator_idle`] (what the operator costs while nothing changes),
//! [`read_mix`] (a read-heavy mix at each read level, with read replicas),
//! [`chart`] (a run's results as SVG charts).

pub mod chart;
pub mod compare;
pub mod cpu;
pub mod etcd;
pub mod operator_idle;
pub mod read_mix;
