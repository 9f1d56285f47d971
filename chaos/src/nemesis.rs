//! The faults: a seeded, bounded schedule of one fault at a time — kill -9
//! and restart, pause (SIGSTOP) and resume, a network partition isolating one
//! node from the others, a member removed and added back (membership change
//! under load) — each held for a random while, then healed.

use std::time::Duration;

use chat_proto::cluster::{JoinClusterRequest, RemoveMemberRequest};
use chat_testkit::TestCluster;

use crate::netns::Network;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Kill,
    Pause,
    Partition,
    Membership,
}

impl Fault {
    pub const ALL: [Fault; 4] = [Fault::Kill, Fault::Pause, Fault::Partition, Fault::Membership];
}

/// Injects up to `max_faults` faults until `until`; returns a line per fault
/// (and one per fault that could not be applied or healed as planned).
/// Partitions need `net` (the nodes must run in its namespaces).
/// Which faults, how many, until when, from which seed.
pub struct Schedule<'a> {
    pub faults: &'a [Fault],
    pub seed: u64,
    pub max_faults: usize,
    pub until: Instant,
}

/// Injects `schedule`'s faults into `cluster`, whose `read_replicas` are
/// learners (a membership fault re-adds them as learners, never as voters).
pub async fn run(
    cluster: &mut TestCluster,
    net: Option<&Network>,
    read_replicas: &[u64],
    schedule: Schedule<'_>,
) -> Vec<String> {
    let Schedule { faults, seed, max_faults, until } = schedule;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = Vec::new();
    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    let mut order: Vec<Fault> = Vec::new();
    let mut injected = 0;
    while injected < max_faults && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1000))).await;
        if faults.is_empty() || Instant::now() >= until {
            break;
        }
        // Every kind in turn (in a seeded order), so even a short run sees each one.
        if injected % faults.len() == 0 {
            order = faults.to_vec();
            order.shuffle(&mut rng);
        }
        let fault = order[injected % faults.len()];
        injected += 1;
        // Half the time aim at the leader: that is where faults hurt.
        let target = if rng.random_bool(0.5) { cluster.leader().await } else { ids[rng.random_range(0..ids.len())] };
        let hold = Duration::from_millis(rng.random_range(300..2000));
        let started = Instant::now();
        match fault {
            Fault::Kill => {
                cluster.kill(target);
                tokio::time::sleep(hold).await;
                cluster.restart(target);
            }
            Fault::Partition => {
                let net = net.expect("partitions need the nodes in network namespaces");
                if let Err(e) = net.isolate(target) {
                    log.push(format!("partition of node {target} failed: {e}"));
                }
                tokio::time::sleep(hold).await;
                if let Err(e) = net.heal(target) {
                    log.push(format!("healing node {target} failed: {e}"));
                }
            }
            Fault::Pause => {
                cluster.pause(target);
                tokio::time::sleep(hold).await;
                cluster.resume(target);
            }
            Fault::Membership => {
                let other =
                    *ids.iter().find(|&&i| i != target && !read_replicas.contains(&i)).expect("more than one voter");
                let mut admin = cluster.membership_client(other);
                let removed = tokio::time::timeout(
                    Duration::from_secs(10),
                    admin.remove_member(RemoveMemberRequest { node_id: target }),
                )
                .await;
                tokio::time::sleep(hold).await;
                let (address, peer_address) = (cluster.node(target).addr.clone(), cluster.node(target).peer.clone());
                // Add it back (learner → caught up → voter); retried until it sticks.
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline {
                    let mut admin = cluster.membership_client(other);
                    let join = JoinClusterRequest {
                        node_id: target,
                        address: address.clone(),
                        peer_address: peer_address.clone(),
                        learner: read_replicas.contains(&target),
                    };
                    if matches!(
                        tokio::time::timeout(Duration::from_secs(10), admin.join_cluster(join)).await,
                        Ok(Ok(_))
                    ) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                if !matches!(removed, Ok(Ok(_))) {
                    log.push(format!("membership: removing node {target} did not complete ({removed:?}); re-added"));
                }
            }
        }
        log.push(format!("{:?} node {target} for {:?} (healed after {:?})", fault, hold, started.elapsed()));
    }
    log
}
