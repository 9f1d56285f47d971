//! Shared pieces of the end-to-end suites: running `kubectl-chat` as a user
//! would (its own config dir, password from the environment), and reading
//! its JSON contracts.
//!
//! The suites: `tests/images.rs` (the images under Docker: a 3-container
//! cluster on a user-defined network) and `tests/kind.rs` (the whole product
//! on the Kubernetes cluster KUBECONFIG points to). Each prints
//! `skipped: …` and passes when its engine or cluster is not there.

use std::path::PathBuf;
use std::process::{Command, Output};

use anyhow::{Context, bail};
use serde_json::Value;

pub use chat_testkit::{eventually, eventually_every, workspace_binary};

/// The password every e2e user gets.
pub const PASSWORD: &str = "e2e-password-1";

/// `kubectl-chat` with a private config dir, so sessions never mix with the user's.
pub struct KubectlChat {
    binary: PathBuf,
    config: tempfile::TempDir,
    /// Arguments placed before every subcommand (`--addr …` or `-n … --cluster …`).
    pub global: Vec<String>,
}

impl KubectlChat {
    pub fn new(global: &[&str]) -> Self {
        Self {
            binary: workspace_binary("kubectl-chat"),
            config: tempfile::tempdir().expect("temp dir"),
            global: global.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Runs one command; the password, if asked for, comes from CHAT_PASSWORD.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.binary)
            .args(&self.global)
            .args(args)
            .env("XDG_CONFIG_HOME", self.config.path())
            .env("CHAT_PASSWORD", PASSWORD)
            .env_remove("CHAT_ADDR")
            .output()
            .expect("running kubectl-chat")
    }

    /// Runs one command that must succeed; returns its stdout.
    ///
    /// # Errors
    /// With the exit code and stderr when it fails.
    pub fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(args);
        if !out.status.success() {
            bail!("kubectl chat {} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// `-o json` output of a command that must succeed.
    ///
    /// # Errors
    /// As [`KubectlChat::ok`], or when the output is not JSON.
    pub fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut with_json = args.to_vec();
        with_json.extend(["-o", "json"]);
        let out = self.ok(&with_json)?;
        serde_json::from_str(&out).with_context(|| format!("kubectl chat {}: not JSON: {out}", args.join(" ")))
    }
}

/// From `status -o json`: the leader id and the voter count, if there is a leader.
pub fn leader_and_voters(status: &Value) -> Option<(u64, usize)> {
    let leader = status["leader_id"].as_u64()?;
    let voters = status["members"].as_array()?.iter().filter(|m| m["voter"] == true).count();
    Some((leader, voters))
}
