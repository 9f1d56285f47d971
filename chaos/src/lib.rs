//! Chaos with a checker: a chat cluster on loopback under a seeded, bounded
//! schedule of faults while clients record every operation; then the history
//! is checked for linearizability, session guarantees and durability.
//!
//! Layout: [`checker`] (a Porcupine-style linearizability checker over any
//! [`checker::Model`]), [`model`] (one conversation as a sequential model),
//! [`history`] (recording operations), [`session`] (read-your-writes and
//! monotonic reads of SESSION reads, per client), [`workload`] (the clients),
//! [`nemesis`] (the faults), [`netns`] (network namespaces for real
//! partitions), [`run`] (one run and its checks).

pub mod checker;
pub mod history;
pub mod model;
pub mod nemesis;
pub mod netns;
pub mod run;
pub mod session;
pub mod workload;
