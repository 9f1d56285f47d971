//! Multi-node behaviour with real processes: failover, crash recovery,
//! membership changes with snapshot catch-up, quorum loss, graceful hand-over.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chat_proto::chat::ReadConsistency;
use chat_proto::cluster::{JoinClusterRequest, RemoveMemberRequest, Role};
use chat_testkit::*;
use tonic::Code;

/// Where most scenarios start: three nodes, accounts alice and bob; returns alice's token.
async fn cluster_with_alice_and_bob(env: &[(&str, &str)]) -> (TestCluster, String) {
    let cluster = TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 3, env).await;
    let mut c = cluster.client(1);
    let token = register(&mut c, "alice").await;
    register(&mut c, "bob").await;
    (cluster, token)
}

/// Sends `n` messages alice → bob through the given nodes in turn, retrying
/// through leader changes with the same request id; returns the acked ids.
async fn send_batch(cluster: &TestCluster, via: &[u64], token: &str, prefix: &str, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let node = via[i % via.len()];
        let request_id = format!("{prefix}-{i}");
        let id = retry_unavailable(Duration::from_secs(20), || {
            let mut c = cluster.client(node);
            let token = token.to_string();
            let request_id = request_id.clone();
            async move { send(&mut c, &token, "bob", &format!("{prefix} {i}"), &request_id).await }
        })
        .await
        .unwrap_or_else(|s| panic!("send {prefix}-{i} via node {node}: {s}"));
        ids.push(id);
    }
    ids
}

async fn assert_has_all(cluster: &TestCluster, via: u64, token: &str, acked: &[u64], consistency: ReadConsistency) {
    let messages = retry_unavailable(Duration::from_secs(20), || {
        let mut c = cluster.client(via);
        let token = token.to_string();
        async move { read_all(&mut c, &token, "bob", consistency).await }
    })
    .await
    .unwrap();
    let have: BTreeSet<u64> = messages.iter().map(|m| m.id).collect();
    let missing: Vec<&u64> = acked.iter().filter(|id| !have.contains(id)).collect();
    assert!(missing.is_empty(), "node {via} lost acknowledged messages {missing:?}");
    assert_eq!(have.len(), messages.len(), "node {via} returned duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_kill_fails_over_without_losing_acknowledged_writes() {
    // Step 1: accounts, and writes through every node (followers forward).
    let (mut cluster, token) = cluster_with_alice_and_bob(&[]).await;
    let mut acked = send_batch(&cluster, &[1, 2, 3], &token, "before", 30).await;

    // Step 2: kill -9 the leader; a new one is elected among the survivors.
    let old = cluster.leader().await;
    cluster.kill(old);
    let killed_at = Instant::now();
    let new = cluster.leader().await;
    assert_ne!(new, old);
    let survivors: Vec<u64> = cluster.running();
    acked.extend(send_batch(&cluster, &survivors, &token, "after", 30).await);
    eprintln!("failover: first write after kill -9 of leader {old} within {:?}", killed_at.elapsed());

    // Step 3: every acknowledged message is readable through each survivor.
    for &id in &survivors {
        assert_has_all(&cluster, id, &token, &acked, ReadConsistency::Linearizable).await;
    }

    // Step 4: the old leader returns and catches up.
    cluster.restart(old);
    let leader = cluster.leader().await;
    let target = cluster.status(leader).await.unwrap().commit_index;
    eventually("old leader catches up", Duration::from_secs(30), || async {
        cluster.status(old).await.filter(|s| s.applied_index >= target).map(|_| ())
    })
    .await;
    assert_has_all(&cluster, old, &token, &acked, ReadConsistency::Stale).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_cluster_crash_keeps_acknowledged_writes() {
    let (mut cluster, token) = cluster_with_alice_and_bob(&[]).await;
    let acked = send_batch(&cluster, &[1, 2, 3], &token, "m", 40).await;

    // kill -9 every node at once, then bring them all back.
    for id in [1, 2, 3] {
        cluster.kill(id);
    }
    for id in [1, 2, 3] {
        cluster.restart(id);
    }
    cluster.leader().await;
    for id in [1, 2, 3] {
        assert_has_all(&cluster, id, &token, &acked, ReadConsistency::Linearizable).await;
    }
    // The session survived too, and the cluster still takes writes.
    let more = send_batch(&cluster, &[3], &token, "again", 1).await;
    assert!(more[0] > *acked.iter().max().unwrap(), "ids keep increasing after recovery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grow_to_five_and_shrink_to_three_under_writes_with_snapshot_catch_up() {
    // A tiny snapshot threshold, so the log is purged long before nodes 4 and 5 join.
    let (mut cluster, token) = cluster_with_alice_and_bob(&[("CHAT_SNAPSHOT_THRESHOLD", "20")]).await;
    let mut acked = send_batch(&cluster, &[1, 2, 3], &token, "early", 60).await;
    let leader = cluster.leader().await;
    let purged = eventually("log purged behind a snapshot", Duration::from_secs(20), || async {
        cluster.status(leader).await.filter(|s| s.purged_index > 0).map(|s| s.purged_index)
    })
    .await;

    // A writer keeps going through nodes 1..3 while membership changes.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let token = token.clone();
        let channels: Vec<_> = [1, 2, 3].iter().map(|&id| cluster.tls.channel(&cluster.node(id).addr)).collect();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 2000 {
                let channel = &channels[i % channels.len()];
                let request_id = format!("during-{i}");
                let result = retry_unavailable(Duration::from_secs(20), || {
                    let mut c = chat_proto::chat::chat_service_client::ChatServiceClient::new(channel.clone());
                    let (token, request_id) = (token.clone(), request_id.clone());
                    async move { send(&mut c, &token, "bob", "during", &request_id).await }
                })
                .await;
                ids.push(result.unwrap_or_else(|s| panic!("write during membership change: {s}")));
                i += 1;
            }
            ids
        })
    };

    // Grow: nodes 4 and 5 join through the seeds and become voters.
    cluster.add_node(4);
    cluster.add_node(5);
    cluster.wait_voters(5).await;
    for id in [4, 5] {
        // The log before `purged` no longer exists anywhere, so the only way in
        // is a snapshot. The node logs the install before acknowledging it, so
        // the line is there by the time it is a voter. (Its snapshot *metric*
        // may lag the acknowledgement: asserting on it raced under load.)
        let log = cluster.log_of(id);
        assert!(
            log.contains("installing snapshot"),
            "node {id} joined after the log was purged to {purged} but installed no snapshot"
        );
        eventually(&format!("node {id} applies past the purge point {purged}"), Duration::from_secs(20), || async {
            cluster.status(id).await.filter(|s| s.applied_index > purged).map(|_| ())
        })
        .await;
    }

    // Shrink: remove 5, then 4 (through a node that is not the leader: it forwards).
    let follower = cluster.running().into_iter().find(|&id| id != leader && id <= 3).unwrap();
    for id in [5, 4] {
        cluster.membership_client(follower).remove_member(RemoveMemberRequest { node_id: id }).await.unwrap();
    }
    cluster.wait_voters(3).await;
    stop.store(true, Ordering::Relaxed);
    acked.extend(writer.await.unwrap());
    cluster.kill(4);
    cluster.kill(5);
    cluster.remove_node(4);
    cluster.remove_node(5);

    // JoinCluster is idempotent: repeating it for an existing voter changes nothing.
    let (address, peer_address) = (cluster.node(2).addr.clone(), cluster.node(2).peer.clone());
    let join = JoinClusterRequest { node_id: 2, address, peer_address, learner: false };
    cluster.membership_client(1).join_cluster(join).await.unwrap();
    cluster.wait_voters(3).await;

    for id in [1, 2, 3] {
        assert_has_all(&cluster, id, &token, &acked, ReadConsistency::Linearizable).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quorum_loss_fails_fast_with_unavailable_and_recovers() {
    let (mut cluster, token) = cluster_with_alice_and_bob(&[("CHAT_REQUEST_TIMEOUT_MS", "2000")]).await;
    send_batch(&cluster, &[1], &token, "ok", 3).await;

    // Two of three down: no quorum.
    let keep = 1;
    for id in [2, 3] {
        cluster.kill(id);
    }
    let started = Instant::now();
    let err = send(&mut cluster.client(keep), &token, "bob", "lost?", "q-1").await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(took < Duration::from_secs(5), "write failed after {took:?}, want within a few seconds");
    let err = read_all(&mut cluster.client(keep), &token, "bob", ReadConsistency::Linearizable).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    // Stale reads are still served locally.
    assert!(read_all(&mut cluster.client(keep), &token, "bob", ReadConsistency::Stale).await.is_ok());

    // One node back: quorum again, writes succeed (the same request id is not applied twice).
    cluster.restart(2);
    let id = retry_unavailable(Duration::from_secs(20), || {
        let mut c = cluster.client(keep);
        let token = token.clone();
        async move { send(&mut c, &token, "bob", "lost?", "q-1").await }
    })
    .await
    .unwrap();
    let all = read_all(&mut cluster.client(2), &token, "bob", ReadConsistency::Linearizable).await.unwrap();
    assert_eq!(all.iter().filter(|m| m.body == "lost?").count(), 1, "retried send applied exactly once");
    assert!(all.iter().any(|m| m.id == id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_on_the_leader_hands_leadership_over_and_exits_cleanly() {
    let (mut cluster, token) = cluster_with_alice_and_bob(&[]).await;
    let acked = send_batch(&cluster, &[1, 2, 3], &token, "m", 10).await;

    let old = cluster.leader().await;
    let started = Instant::now();
    let status = cluster.terminate(old);
    assert!(status.success(), "SIGTERM exit status {status:?}");
    let new = cluster.leader().await;
    assert_ne!(new, old);
    let survivor = cluster.running()[0];
    send_batch(&cluster, &[survivor], &token, "after", 1).await;
    eprintln!(
        "graceful hand-over: SIGTERM of leader {old} → write accepted by new leader {new} in {:?}",
        started.elapsed()
    );
    let log = cluster.log_of(old);
    assert!(log.contains("leadership handed over"), "the old leader logged its hand-over; its log:\n{log}");
    // The new leader's AppendEntries stream into the old one (now its
    // follower) never finishes by itself; it must not hold the exit up.
    assert!(
        !log.contains("did not finish"),
        "the old leader waited out its shutdown grace for in-flight calls; its log:\n{log}"
    );
    assert_has_all(&cluster, survivor, &token, &acked, ReadConsistency::Linearizable).await;

    // Explicit transfer, and removal of the current leader hands over first.
    let leader = cluster.leader().await;
    let other = cluster.running().into_iter().find(|&id| id != leader).unwrap();
    let moved = cluster
        .membership_client(leader)
        .transfer_leader(chat_proto::cluster::TransferLeaderRequest { to: Some(other) })
        .await
        .unwrap();
    assert_eq!(moved.into_inner().new_leader_id, other);
    // Its own view may report the new role a moment after the old leader saw it win.
    eventually("the target reports itself leader", Duration::from_secs(5), || async {
        cluster.status(other).await.filter(|s| Role::try_from(s.role) == Ok(Role::Leader)).map(|_| ())
    })
    .await;
}

/// A `TransferLeader` whose caller gives up mid-way (its target is stopped,
/// so the hand-over waits for it to catch up) leaves the leader as it was:
/// heartbeats on, writes served at once — not held until their deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abandoned_transfer_leaves_the_leader_serving() {
    let (mut cluster, token) = cluster_with_alice_and_bob(&[]).await;
    let leader = cluster.leader().await;
    let target = cluster.running().into_iter().find(|&id| id != leader).unwrap();
    cluster.pause(target);
    // An entry the stopped target cannot hold: the hand-over waits for it.
    send_batch(&cluster, &[leader], &token, "before", 1).await;
    let mut request = tonic::Request::new(chat_proto::cluster::TransferLeaderRequest { to: Some(target) });
    request.set_timeout(Duration::from_millis(300));
    let abandoned = cluster.membership_client(leader).transfer_leader(request).await;
    assert!(abandoned.is_err(), "the target cannot catch up while stopped: {abandoned:?}");

    let mut c = cluster.client(leader);
    let started = Instant::now();
    let sent = tokio::time::timeout(Duration::from_secs(5), send(&mut c, &token, "bob", "after", "after-0")).await;
    assert!(matches!(sent, Ok(Ok(_))), "the leader serves writes again: {sent:?}");
    eprintln!("write after an abandoned transfer: {:?}", started.elapsed());
    cluster.resume(target);
    assert_eq!(cluster.leader().await, leader, "no one else leads");
}

/// Until `stop`: writes and linearizable reads through the given nodes
/// (followers forward both to the leader). Errors are expected mid hand-over
/// and ignored; returns how many operations succeeded.
fn load_through(
    cluster: &TestCluster,
    via: Vec<u64>,
    token: &str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    let clients: Vec<_> = via.iter().map(|&id| cluster.client(id)).collect();
    let token = token.to_string();
    tokio::spawn(async move {
        let mut ok = 0;
        for i in 0..100_000 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let mut c = clients[i % clients.len()].clone();
            let done = if i % 2 == 0 {
                send(&mut c, &token, "bob", "load", &format!("load-{i}")).await.is_ok()
            } else {
                read_all(&mut c, &token, "bob", ReadConsistency::Linearizable).await.is_ok()
            };
            ok += u64::from(done);
        }
        ok
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_the_leader_hands_over_first_and_the_cluster_carries_on() {
    let (mut cluster, token) = cluster_with_alice_and_bob(&[]).await;
    let acked = send_batch(&cluster, &[1, 2, 3], &token, "m", 10).await;

    // RemoveMember(leader), sent to the leader itself, while writes and reads
    // keep arriving through the followers: the hand-over must not be starved
    // by the replication and heartbeats they cause.
    let old = cluster.leader().await;
    let followers: Vec<u64> = cluster.running().into_iter().filter(|id| *id != old).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let load = load_through(&cluster, followers, &token, stop.clone());
    let reply =
        cluster.membership_client(old).remove_member(RemoveMemberRequest { node_id: old }).await.unwrap().into_inner();
    assert!(reply.members.iter().all(|m| m.id != old), "{:?}", reply.members);
    stop.store(true, Ordering::Relaxed);
    assert!(load.await.unwrap() > 0, "the load made no progress at all");
    cluster.wait_voters(2).await;
    let new = cluster.leader().await;
    assert_ne!(new, old);
    cluster.kill(old);
    cluster.remove_node(old);

    // Two voters still commit, and nothing acknowledged was lost.
    let survivors = cluster.running();
    send_batch(&cluster, &survivors, &token, "after", 5).await;
    for id in survivors {
        assert_has_all(&cluster, id, &token, &acked, ReadConsistency::Linearizable).await;
    }
}

/// A base port with base..base+2, base+10..base+12 and base+100..base+102
/// free (what `dev --nodes 3` uses).
fn free_port_block() -> u16 {
    for _ in 0..200 {
        let base = 20_000 + rand::random::<u16>() % 30_000;
        let ports = (0..3).flat_map(|i| [base + i, base + 10 + i, base + 100 + i]);
        if ports.into_iter().all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no free block of ports");
}

#[test]
fn dev_playground_forms_a_cluster_survives_a_kill_and_exits_cleanly() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let base = free_port_block().to_string();
    let mut dev = std::process::Command::new(env!("CARGO_BIN_EXE_chat-node"))
        .args(["dev", "--nodes", "3", "--read-replicas", "1", "--base-port", &base, "--dir"])
        .arg(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The prompt reads commands only once the cluster is ready, so a script can be piped in.
    dev.stdin.take().unwrap().write_all(b"status\ntest\nfail 1\ntest\nbogus\nexit\n").unwrap();
    let out = dev.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dev exited with {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ready"), "{stdout}");
    assert!(stdout.contains("★ leader"), "{stdout}");
    assert!(stdout.contains("node 4: gRPC") && stdout.contains("read replica"), "{stdout}");
    assert!(stdout.contains("a backup (as admin): kubectl chat backup"), "{stdout}");
    assert!(
        stdout.contains("console: http://127.0.0.1:") || stdout.contains("cargo build -p chat-console"),
        "the console started, or how to get it: {stdout}"
    );
    assert!(stdout.contains("learner"), "the status table shows the read replica as a learner:\n{stdout}");
    assert_eq!(stdout.matches("✓ PASS").count(), 2, "both workloads pass, before and after the kill:\n{stdout}");
    assert!(stdout.contains("node 1 killed"), "{stdout}");
    assert!(stdout.contains("unknown command \"bogus\""), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_restarting_at_a_new_address_is_updated_and_catches_up() {
    let (mut cluster, token) = cluster_with_alice_and_bob(&[]).await;
    let mut acked = send_batch(&cluster, &[1, 2, 3], &token, "before", 10).await;
    let leader = cluster.leader().await;
    let moved = cluster.running().into_iter().find(|&id| id != leader).unwrap();

    // Stop a follower, and bring it back from the same data dir on another port.
    cluster.kill(moved);
    let (new_addr, new_peer) = cluster.move_to_new_port(moved);
    acked.extend(send_batch(&cluster, &[leader], &token, "while-away", 10).await);
    cluster.restart(moved);

    // The cluster learns the new address, and the member catches up through it.
    eventually("membership shows the new address", Duration::from_secs(30), || async {
        let s = cluster.status(leader).await?;
        s.members
            .iter()
            .any(|m| m.id == moved && m.address == new_addr && m.peer_address == new_peer && m.voter)
            .then_some(())
    })
    .await;
    acked.extend(send_batch(&cluster, &[moved], &token, "after", 5).await);
    let target = cluster.status(leader).await.unwrap().commit_index;
    eventually("moved member catches up", Duration::from_secs(30), || async {
        cluster.status(moved).await.filter(|s| s.applied_index >= target).map(|_| ())
    })
    .await;
    assert_has_all(&cluster, moved, &token, &acked, ReadConsistency::Stale).await;
    cluster.wait_voters(3).await;
}

/// A follower frozen past its election timeout (a stall, CPU throttling) must
/// not cost the cluster its leader when it runs again: it asks for a pre-vote,
/// is refused by voters that still hear from the leader, and rejoins. Without
/// the pre-vote it campaigned at once and its higher term made the leader step
/// down (term 1 → 3 on every run).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_paused_past_its_election_timeout_does_not_depose_the_leader() {
    let (mut cluster, token) = cluster_with_alice_and_bob(&[]).await;
    send_batch(&cluster, &[1], &token, "before", 3).await;
    let leader = cluster.leader().await;
    let term = cluster.status(leader).await.unwrap().term;
    let follower = cluster.running().into_iter().find(|&id| id != leader).unwrap();
    cluster.pause(follower);
    // The fault itself, not a wait for a condition: frozen well past lease +
    // election timeout (300 + 150..300 ms with the test timing).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send_batch(&cluster, &[leader], &token, "during", 3).await;
    cluster.resume(follower);
    send_batch(&cluster, &[leader], &token, "after", 20).await;
    eventually("the resumed follower to catch up", Duration::from_secs(10), || async {
        let l = cluster.status(leader).await?;
        let f = cluster.status(follower).await?;
        (f.applied_index >= l.applied_index).then_some(())
    })
    .await;
    let now = cluster.leader().await;
    let term_now = cluster.status(now).await.unwrap().term;
    assert_eq!(
        (now, term_now),
        (leader, term),
        "the resumed follower deposed the leader (was leader {leader}, term {term})"
    );
    assert!(cluster.log_of(follower).contains("pre-vote lost"), "the follower did ask for a pre-vote");
}

/// Readiness must not fight routing: a voter stays ready through a short
/// election (else the Service's endpoints empty on every failover), and the
/// new leader is ready from the moment it leads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn voters_stay_ready_through_an_election_and_the_new_leader_is_ready_at_once() {
    let mut cluster = TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 3, &[]).await;
    let leader = cluster.leader().await;
    let followers: Vec<(u64, String)> = cluster
        .running()
        .into_iter()
        .filter(|&id| id != leader)
        .map(|id| (id, cluster.node(id).http.clone()))
        .collect();
    for (id, http) in &followers {
        eventually(&format!("node {id} ready"), Duration::from_secs(10), || async {
            (http_get(http, "/readyz").await.0 == 200).then_some(())
        })
        .await;
    }
    // Probe both followers every 2 ms (a kubelet probes every second) while
    // the leader dies and the rest elect a new one: on loopback the leaderless
    // moment of an election is a few milliseconds.
    let stop = Arc::new(AtomicBool::new(false));
    let probes: Vec<_> = followers
        .iter()
        .map(|(id, http)| {
            let (id, http, stop) = (*id, http.clone(), stop.clone());
            tokio::spawn(async move {
                let mut refusals = Vec::new();
                let mut probes = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (code, body) = http_get(&http, "/readyz").await;
                    probes += 1;
                    if code != 200 {
                        refusals.push(format!("node {id}: {code} {}", body.trim()));
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (probes, refusals)
            })
        })
        .collect();
    cluster.kill(leader);
    let new_leader = cluster.leader().await;
    let (code, body) = http_get(&cluster.node(new_leader).http, "/readyz").await;
    assert_eq!(code, 200, "the new leader is ready as it leads: {body}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for probe in probes {
        let (probes, refusals) = probe.await.unwrap();
        assert!(probes > 5, "too few probes to tell ({probes})");
        assert!(refusals.is_empty(), "a voter went unready during a short election: {refusals:?}");
    }
}
