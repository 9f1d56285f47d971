//! Certificates rotate under load, on real node processes, without a failed
//! write: a whole CA rotation done the safe way — trust both CAs, then move
//! every node to a certificate of the new one, then drop the old CA — while a
//! client keeps writing. Nodes re-read their files (every 100 ms here) and use
//! the new ones for new connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chat_client::{Client, ClientOptions, Security};
use chat_proto::cluster::GetStatusRequest;
use chat_proto::cluster::cluster_service_client::ClusterServiceClient;
use chat_testkit::*;
use chat_tls::{Ca, Leaf, Live, TlsDir};

/// Rewrites node `id`'s certificate files: `ca_pem` to trust, a fresh leaf from `issuer`.
fn rewrite(cluster: &TestCluster, id: u64, ca_pem: &str, issuer: &Ca) {
    let issued = issuer.issue(&Leaf::node(["127.0.0.1", "localhost"])).unwrap();
    TlsDir::write(&cluster.tls.dir.join(format!("node-{id}")), ca_pem, &issued).unwrap();
}

fn rotations(cluster: &TestCluster, id: u64) -> usize {
    cluster.log_of(id).matches("certificates rotated").count()
}

/// Rewrites every node's files and waits until each has loaded them (both
/// of its watchers: the peer server's and the peer client's).
async fn rotate_all(cluster: &TestCluster, ca_pem: &str, issuer: &Ca) {
    let before: Vec<usize> = cluster.running().iter().map(|&id| rotations(cluster, id)).collect();
    for id in cluster.running() {
        rewrite(cluster, id, ca_pem, issuer);
    }
    for (i, id) in cluster.running().into_iter().enumerate() {
        eventually(&format!("node {id} to load its new certificates"), Duration::from_secs(10), || async {
            (rotations(cluster, id) >= before[i] + 2).then_some(())
        })
        .await;
    }
}

/// Does a fresh connection trusting only `ca_pem` reach node `id`?
async fn reachable_trusting(cluster: &TestCluster, id: u64, ca_pem: &str) -> bool {
    let roots = chat_tls::files::certs(ca_pem.as_bytes()).unwrap();
    let config = Live::fixed(chat_tls::config::client(&roots, None).unwrap());
    let mut client = ClusterServiceClient::new(tls_channel(&cluster.node(id).addr, &config));
    tokio::time::timeout(Duration::from_secs(2), client.get_status(GetStatusRequest {})).await.is_ok_and(|r| r.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ca_rotation_under_load_loses_no_write() {
    let cluster = TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 3, &[("CHAT_TLS_RELOAD_MS", "100")]).await;
    let old_pem = cluster.tls.ca.cert_pem().to_string();
    let new_ca = Ca::generate("rotated CA").unwrap();
    let bundle = format!("{old_pem}{}", new_ca.cert_pem());

    // The writer's client trusts both CAs from the start, as a client must
    // before its servers move to a new CA.
    let security = Security::ca_pem(bundle.as_bytes()).unwrap();
    let options = ClientOptions { deadline: Duration::from_secs(10), ..ClientOptions::new(security) };
    let client = Client::new(cluster.addrs(), options).unwrap();
    client.register("alice", PASSWORD).await.unwrap();
    client.register("bob", PASSWORD).await.unwrap();
    let client = client.clone().with_token(client.login("alice", PASSWORD).await.unwrap());

    let (stop, written, failed) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let writer = {
        let (stop, written, failed, client) = (stop.clone(), written.clone(), failed.clone(), client.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 20_000 {
                match client.send_with_id("bob", &format!("during rotation {i}"), &format!("rot-{i}")).await {
                    Ok(_) => written.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("write {i} failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                i += 1;
            }
        })
    };
    let progress = |what: &'static str| {
        let written = written.clone();
        async move {
            let at = written.load(Ordering::Relaxed);
            eventually(what, Duration::from_secs(10), || async {
                (written.load(Ordering::Relaxed) >= at + 20).then_some(())
            })
            .await;
        }
    };
    progress("writes before the rotation").await;

    // 1. Every node trusts both CAs (its certificate unchanged).
    rotate_all(&cluster, &bundle, &cluster.tls.ca).await;
    progress("writes after trusting both CAs").await;
    // 2. Every node moves to a certificate of the new CA.
    rotate_all(&cluster, &bundle, &new_ca).await;
    progress("writes after moving to the new CA's certificates").await;
    // 3. The old CA is dropped.
    rotate_all(&cluster, new_ca.cert_pem(), &new_ca).await;
    progress("writes after dropping the old CA").await;

    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no write failed");
    eprintln!("{} writes during the rotation, none failed", written.load(Ordering::Relaxed));

    // New connections get the new certificates: a client trusting only the
    // old CA is refused now, one trusting only the new CA gets through.
    for id in cluster.running() {
        assert!(!reachable_trusting(&cluster, id, &old_pem).await, "node {id} still serves an old certificate");
        assert!(reachable_trusting(&cluster, id, new_ca.cert_pem()).await, "node {id} does not serve the new one");
    }
    // The peer ports too: a member's certificate of the new CA gets in, one
    // of the old CA no longer does.
    let peer_with = |ca: &Ca, name: &str| {
        let dir = ca.write_leaf(&Leaf::node(["127.0.0.1"]), &cluster.tls.dir.join(name)).unwrap();
        let mut material = dir.load().unwrap();
        material.roots = chat_tls::files::certs(new_ca.cert_pem().as_bytes()).unwrap();
        Live::fixed(chat_tls::config::mutual_client(&material).unwrap())
    };
    let (new_member, old_member) = (peer_with(&new_ca, "probe-new"), peer_with(&cluster.tls.ca, "probe-old"));
    for id in cluster.running() {
        let peer = &cluster.node(id).peer;
        let status = |config: &Live<rustls::ClientConfig>| {
            let mut client = ClusterServiceClient::new(tls_channel(peer, config));
            async move { tokio::time::timeout(Duration::from_secs(2), client.get_status(GetStatusRequest {})).await }
        };
        assert!(status(&new_member).await.is_ok_and(|r| r.is_ok()), "node {id}'s peer port refused the new CA");
        assert!(!status(&old_member).await.is_ok_and(|r| r.is_ok()), "node {id}'s peer port still trusts the old CA");
    }
}
