//! Caps processes' CPU, each in a cgroup of its own (cgroup v2 `cpu.max`, or
//! v1 `cpu.cfs_quota_us`), so that on one machine every chat member behaves
//! as if it had a small machine to itself: a read replica applying the log
//! cannot take the CPU the leader needs, which on two shared cores is most of
//! what extra members cost the writes. Needs root and a cgroup CPU controller;
//! the caps are lifted (and the groups removed) when [`CpuCaps`] is dropped.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The CFS period the quota is a share of.
const PERIOD_US: u64 = 100_000;

/// Which cgroup hierarchy limits CPU here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// Unified: `cpu.max` holds "quota period".
    V2,
    /// The v1 `cpu` controller: `cpu.cfs_period_us` and `cpu.cfs_quota_us`.
    V1,
}

/// Processes each held to a CPU quota, until dropped.
pub struct CpuCaps {
    version: Version,
    root: PathBuf,
    groups: Vec<PathBuf>,
}

impl CpuCaps {
    /// Puts each of `pids` in a new cgroup of its own, limited to `cores` CPUs.
    ///
    /// # Errors
    /// When `cores` is not positive, no cgroup CPU controller is mounted, or
    /// the groups cannot be made (not root, a read-only cgroup filesystem).
    pub fn apply(pids: &[u32], cores: f64) -> anyhow::Result<Self> {
        if !(cores.is_finite() && cores > 0.0) {
            bail!("--member-cpus must be a positive number of CPUs, not {cores}");
        }
        let (version, root) = find_controller()?;
        let mut caps = Self { version, root, groups: Vec::with_capacity(pids.len()) };
        // Rounded, never below the kernel's minimum quota (1 ms).
        let quota = ((cores * PERIOD_US as f64).round() as u64).max(1_000);
        for &pid in pids {
            let group = caps.root.join(format!("chat-bench-{}-{pid}", std::process::id()));
            std::fs::create_dir(&group).with_context(|| format!("creating cgroup {}", group.display()))?;
            caps.groups.push(group.clone());
            match version {
                Version::V2 => write(&group.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?,
                Version::V1 => {
                    write(&group.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                    write(&group.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
            }
            // The whole process, threads it starts later included.
            write(&group.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(caps)
    }
}

impl Drop for CpuCaps {
    fn drop(&mut self) {
        for group in &self.groups {
            // Back to the root group (a group with members cannot be removed).
            if let Ok(pids) = std::fs::read_to_string(group.join("cgroup.procs")) {
                for pid in pids.lines() {
                    let _ = write(&self.root.join("cgroup.procs"), pid);
                }
            }
            if let Err(e) = std::fs::remove_dir(group) {
                eprintln!("leaving cgroup {} behind ({:?}): {e}", group.display(), self.version);
            }
        }
    }
}

/// The cgroup directory whose children can be given a CPU quota.
fn find_controller() -> anyhow::Result<(Version, PathBuf)> {
    let unified = Path::new("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(unified.join("cgroup.controllers")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "cpu") {
        // Children get the controller only once the parent hands it down.
        write(&unified.join("cgroup.subtree_control"), "+cpu")?;
        return Ok((Version::V2, unified.to_path_buf()));
    }
    let v1 = unified.join("cpu");
    if v1.join("cpu.cfs_quota_us").exists() {
        return Ok((Version::V1, v1));
    }
    bail!("no cgroup CPU controller at /sys/fs/cgroup (v2 `cpu` in cgroup.controllers) or /sys/fs/cgroup/cpu (v1)")
}

fn write(path: &Path, value: &str) -> anyhow::Result<()> {
    std::fs::write(path, value).with_context(|| format!("writing {value:?} to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_needs_a_positive_number_of_cpus() {
        for cores in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let Err(e) = CpuCaps::apply(&[], cores) else { panic!("{cores} CPUs accepted") };
            assert!(e.to_string().contains("--member-cpus"), "{e}");
        }
    }

    /// Where the machine allows (root, a writable CPU controller), a capped
    /// process is in its own group with the quota asked for, and dropping the
    /// caps removes the group. Elsewhere it says so and checks nothing more.
    #[test]
    fn a_capped_process_is_held_to_its_quota_until_dropped() {
        if find_controller().is_err() {
            eprintln!("skipped: no writable cgroup CPU controller here");
            return;
        }
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("spawning sleep");
        let caps = match CpuCaps::apply(&[child.id()], 0.25) {
            Ok(caps) => caps,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!("skipped: {e:#}");
                return;
            }
        };
        let group = caps.groups[0].clone();
        let read = |file: &str| std::fs::read_to_string(group.join(file)).unwrap_or_default();
        let quota = match caps.version {
            Version::V2 => read("cpu.max").trim().to_owned(),
            Version::V1 => format!("{} {}", read("cpu.cfs_quota_us").trim(), read("cpu.cfs_period_us").trim()),
        };
        let members = read("cgroup.procs");
        drop(caps);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(quota, "25000 100000");
        assert_eq!(members.trim(), child.id().to_string());
        assert!(!group.exists(), "the group is removed with the caps");
    }
}
