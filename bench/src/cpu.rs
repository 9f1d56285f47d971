//! CPU time of processes, from `/proc/<pid>/stat`: on a two-core machine
//! shared by six servers and the load generator, throughput is bounded by CPU
//! as much as by latency, so each level reports what every system spent.

use std::time::Duration;

/// User + system CPU time `pid` has used so far (`None` once it is gone).
pub fn used(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / per_second))
}

/// `pids` and this process (the load generator), whose CPU counts too.
pub fn with_own_pid(pids: &[u32]) -> Vec<u32> {
    pids.iter().copied().chain([std::process::id()]).collect()
}

/// CPU time used by a set of processes between two points.
pub struct Meter {
    start: Vec<(u32, Duration)>,
}

impl Meter {
    pub fn start(pids: &[u32]) -> Self {
        Self { start: pids.iter().map(|&p| (p, used(p).unwrap_or_default())).collect() }
    }

    /// CPU time each process used since [`Meter::start`], in the order given there.
    pub fn stop(&self) -> Vec<Duration> {
        self.start.iter().map(|&(p, t0)| used(p).unwrap_or(t0).saturating_sub(t0)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_cpu_and_a_missing_one_has_none() {
        let me = std::process::id();
        let before = used(me).expect("own /proc entry");
        // Burn a little CPU so the clock-tick counter moves.
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(used(me).expect("own /proc entry") > before);
        assert_eq!(used(u32::MAX), None);
    }
}
