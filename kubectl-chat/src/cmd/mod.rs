//! One module per group of subcommands; each subcommand is a clap `Args` struct with `run`.

pub mod account;
pub mod admin;
pub mod backup;
pub mod bench;
pub mod console;
pub mod kube_view;
pub mod live;
pub mod logs;
pub mod messages;
pub mod report;
pub mod status;
