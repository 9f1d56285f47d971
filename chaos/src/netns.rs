//! Real network partitions on one machine: each node in its own network
//! namespace with a veth into a private bridge (10.77.<n>.0/24), so that
//! cutting a node off is a pair of iptables rules inside its namespace —
//! packets to and from the other nodes are dropped, both ways, while the
//! clients (in the root namespace, on the bridge) still reach it.
//!
//! Needs root, `ip` (iproute2) and `iptables`. Everything is removed on drop.

use std::process::Command;
use std::sync::Arc;

use chat_testkit::Placement;

pub struct Network {
    tag: String,
    subnet: u8,
    ids: Vec<u64>,
    forward_rule: bool,
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Network {
    /// A bridge and a namespace per node id.
    ///
    /// # Errors
    /// Why partitions are not possible here (not root, a tool missing, …).
    pub fn create(ids: &[u64], seed: u64) -> Result<Self, String> {
        let subnet = 1 + (std::process::id() as u64 ^ seed) as u8 % 250;
        let tag = format!("rc{subnet}");
        // Built on a value that cleans up after itself, so a half-built network is removed too.
        let mut net = Self { tag, subnet, ids: ids.to_vec(), forward_rule: true };
        // A run killed before it could clean up may have left these very names behind.
        net.teardown();
        net.forward_rule = false;
        net.forward_rule = net.build()?;
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn namespace(&self, id: u64) -> String {
        format!("{}n{id}", self.tag)
    }

    pub fn ip(&self, id: u64) -> String {
        format!("10.77.{}.{}", self.subnet, 10 + id)
    }

    /// Returns whether a FORWARD accept rule was added (Docker sets FORWARD to DROP for bridges).
    fn build(&self) -> Result<bool, String> {
        let br = self.bridge();
        sh(&["ip", "link", "add", &br, "type", "bridge"])?;
        sh(&["ip", "addr", "add", &format!("10.77.{}.1/24", self.subnet), "dev", &br])?;
        sh(&["ip", "link", "set", &br, "up"])?;
        for &id in &self.ids {
            let ns = self.namespace(id);
            let (host_end, ns_end) = (format!("{}v{id}", self.tag), format!("{}p{id}", self.tag));
            sh(&["ip", "netns", "add", &ns])?;
            sh(&["ip", "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end])?;
            sh(&["ip", "link", "set", &ns_end, "netns", &ns])?;
            sh(&["ip", "link", "set", &host_end, "master", &br])?;
            sh(&["ip", "link", "set", &host_end, "up"])?;
            sh(&["ip", "netns", "exec", &ns, "ip", "addr", "add", &format!("{}/24", self.ip(id)), "dev", &ns_end])?;
            sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", &ns_end, "up"])?;
            sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        }
        Ok(sh(&["iptables", "-I", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"]).is_ok())
    }

    /// Where the test kit starts node `id`: its namespace's address, via `ip netns exec`.
    pub fn placement(self: &Arc<Self>) -> Placement {
        let net = self.clone();
        Arc::new(move |id| (net.ip(id), vec!["ip".into(), "netns".into(), "exec".into(), net.namespace(id)]))
    }

    /// Cuts node `id` off from every other node (both directions).
    ///
    /// # Errors
    /// When a rule cannot be added.
    pub fn isolate(&self, id: u64) -> Result<(), String> {
        let ns = self.namespace(id);
        for &other in self.ids.iter().filter(|&&o| o != id) {
            let ip = self.ip(other);
            sh(&["ip", "netns", "exec", &ns, "iptables", "-A", "INPUT", "-s", &ip, "-j", "DROP"])?;
            sh(&["ip", "netns", "exec", &ns, "iptables", "-A", "OUTPUT", "-d", &ip, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Removes every partition rule around node `id`.
    ///
    /// # Errors
    /// When the rules cannot be flushed.
    pub fn heal(&self, id: u64) -> Result<(), String> {
        let ns = self.namespace(id);
        sh(&["ip", "netns", "exec", &ns, "iptables", "-F", "INPUT"])?;
        sh(&["ip", "netns", "exec", &ns, "iptables", "-F", "OUTPUT"])
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.teardown();
    }
}

impl Network {
    fn teardown(&self) {
        let br = self.bridge();
        if self.forward_rule {
            let _ = sh(&["iptables", "-D", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"]);
        }
        for &id in &self.ids {
            let _ = sh(&["ip", "netns", "del", &self.namespace(id)]);
            let _ = sh(&["ip", "link", "del", &format!("{}v{id}", self.tag)]);
        }
        let _ = sh(&["ip", "link", "del", &br]);
    }
}
