//! Measurements of replicated-chat against etcd (see BENCHMARKS.md).
//!
//! Layout: [`etcd`] (a 3-member etcd cluster on loopback), [`cpu`] (CPU time
//! of processes), [`cpu_cap`] (a CPU quota per process, as on machines of
//! their own), [`compare`] (the same load on both, and failover on both),
//! [`operator_idle`] (what the operator costs while nothing changes),
//! [`read_mix`] (a read-heavy mix at each read level, with read replicas),
//! [`chart`] (a run's results as SVG charts).

pub mod chart;
pub mod compare;
pub mod cpu;
pub mod cpu_cap;
pub mod etcd;
pub mod operator_idle;
pub mod read_mix;
