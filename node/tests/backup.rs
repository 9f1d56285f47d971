//! Backup and restore on real processes: write, back up from a member's peer
//! port as an admin while writes go on, lose the whole cluster, restore into
//! a new data dir with `chat-node restore`, and find every account and
//! message there; the restored cluster accepts writes and grows through
//! JoinCluster (the joiner gets the restored state, not an empty log).
//! And who may not back up: a chat user, a node's certificate.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chat_client::{Dial, Security, TcpDial};
use chat_proto::chat::ReadConsistency;
use chat_testkit::{TestCluster, chat_node_binary, read_all, register, send};
use chat_tls::{Leaf, Role};

const MESSAGES: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_restores_into_a_new_cluster_that_has_everything_and_grows() {
    let cluster = TestCluster::start(chat_node_binary(), 3, &[]).await;
    let leader = cluster.leader().await;
    let mut chat = cluster.client(leader);
    let alice = register(&mut chat, "alice").await;
    let bob = register(&mut chat, "bob").await;
    for i in 0..MESSAGES {
        send(&mut chat, &alice, "bob", &format!("hello {i}"), &format!("a{i}")).await.unwrap();
    }
    send(&mut chat, &bob, "alice", "hi back", "b0").await.unwrap();
    let before = read_all(&mut chat, &alice, "bob", ReadConsistency::Linearizable).await.unwrap();
    assert_eq!(before.len(), MESSAGES + 1);

    // An admin backs up from a follower while alice keeps writing.
    let work = tempfile::tempdir().unwrap();
    let admin = work.path().join("admin");
    cluster.tls.ca.write_leaf(&Leaf::client(Role::Admin), &admin).unwrap();
    let follower = cluster.nodes.iter().find(|n| n.id != leader).unwrap().peer.clone();
    let file = work.path().join("chat.backup");
    let channel = TcpDial::new(Security::mutual(&admin).unwrap()).dial(&follower, Duration::from_secs(2)).unwrap();
    let (taken, during) = tokio::join!(chat_client::backup::backup(channel, &file), async {
        let mut chat = cluster.client(leader);
        for i in 0..20 {
            send(&mut chat, &alice, "bob", &format!("during {i}"), &format!("d{i}")).await.unwrap();
        }
    });
    let end = taken.unwrap();
    let () = during;
    assert!(end.applied_index > 0 && end.size == std::fs::metadata(&file).unwrap().len());
    assert!(!work.path().join("chat.backup.partial").exists());

    // Whoever is not an admin gets nothing.
    let node_cert = work.path().join("node");
    cluster.tls.ca.write_leaf(&Leaf::node(["localhost"]), &node_cert).unwrap();
    let as_node = TcpDial::new(Security::mutual(&node_cert).unwrap()).dial(&follower, Duration::from_secs(2)).unwrap();
    let refused = chat_client::backup::backup(as_node, &work.path().join("x")).await.unwrap_err();
    assert_eq!(refused.code(), Some(tonic::Code::PermissionDenied), "{refused}");
    let public = cluster.nodes[0].addr.clone();
    let on_public = TcpDial::new(cluster.tls.security()).dial(&public, Duration::from_secs(2)).unwrap();
    let refused = chat_client::backup::backup(on_public, &work.path().join("x")).await.unwrap_err();
    assert_eq!(refused.code(), Some(tonic::Code::Unimplemented), "the public port serves no backups: {refused}");
    assert!(!work.path().join("x").exists());

    // The whole cluster is lost.
    drop(chat);
    drop(cluster);

    // A new cluster from the file: node 0 of a new test cluster, restored.
    let mut restored = TestCluster::empty(chat_node_binary(), &[]);
    restored.add_bare_node(0);
    restored.kill(0);
    let (dir, addr, peer) = {
        let node = restored.node(0);
        (node.dir.clone(), node.addr.clone(), node.peer.clone())
    };
    std::fs::remove_dir_all(&dir).unwrap();
    restore(&file, &dir, &addr, &peer).success();
    assert!(!restore(&file, &dir, &addr, &peer).status.success(), "a second restore overwrote data");
    restored.restart(0);
    restored.wait_voters(1).await;

    let mut chat = restored.client(0);
    let alice = login(&mut chat, "alice").await;
    let after = read_all(&mut chat, &alice, "bob", ReadConsistency::Linearizable).await.unwrap();
    let bodies = |m: &[chat_proto::chat::Message]| m.iter().map(|m| (m.id, m.body.clone())).collect::<Vec<_>>();
    assert_eq!(bodies(&after[..before.len()]), bodies(&before), "every message backed up, with its id");
    let latest = after.last().unwrap().id;
    let new = send(&mut chat, &alice, "bob", "after the restore", "r0").await.unwrap();
    assert!(new > latest, "new ids continue after the restored ones ({new} vs {latest})");

    // It grows: the joiner is sent the restored state.
    restored.add_node(1);
    restored.wait_voters(2).await;
    let on_one = restored.client(1);
    let stale = chat_testkit::eventually("node 1 holds the restored state", Duration::from_secs(20), || {
        let mut on_one = on_one.clone();
        let alice = alice.clone();
        async move {
            let all = read_all(&mut on_one, &alice, "bob", ReadConsistency::Stale).await.ok()?;
            all.iter().any(|m| m.body == "after the restore").then_some(all)
        }
    })
    .await;
    assert_eq!(bodies(&stale[..before.len()]), bodies(&before));
}

#[tokio::test]
async fn restore_refuses_a_damaged_file_and_leaves_nothing_behind() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("bad.backup");
    std::fs::write(&file, b"RCHATSN1\x03\x00\x00").unwrap();
    let data = work.path().join("data");
    let out = restore(&file, &data, "127.0.0.1:1", "127.0.0.1:2");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.backup"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!data.join("db").exists(), "a half-made data dir was left");
}

fn restore(file: &Path, data: &Path, advertise: &str, peer: &str) -> std::process::Output {
    Command::new(chat_node_binary())
        .args(["restore", "--id", "0", "--advertise", advertise, "--peer-advertise", peer, "--data-dir"])
        .arg(data)
        .arg("--from")
        .arg(file)
        .output()
        .unwrap()
}

trait Succeeds {
    fn success(&self);
}

impl Succeeds for std::process::Output {
    fn success(&self) {
        assert!(self.status.success(), "chat-node restore: {}", String::from_utf8_lossy(&self.stderr));
    }
}

async fn login(
    chat: &mut chat_proto::chat::chat_service_client::ChatServiceClient<tonic::transport::Channel>,
    user: &str,
) -> String {
    let request = chat_proto::chat::LoginRequest { username: user.into(), password: chat_testkit::PASSWORD.into() };
    chat.login(request).await.unwrap().into_inner().token
}

/// One backup at a time per node: a second caller, while the first still
/// reads, gets RESOURCE_EXHAUSTED, not a second copy of the state on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_backup_at_a_time_per_node() {
    let cluster = TestCluster::start(chat_node_binary(), 1, &[]).await;
    let mut chat = cluster.client(cluster.nodes[0].id);
    let alice = register(&mut chat, "alice").await;
    register(&mut chat, "bob").await;
    // ≈ 12 MB of state: more than the stream's buffers and HTTP/2 windows
    // hold (a few MB), so the first backup is still streaming below.
    let body = "x".repeat(4000);
    let writers = (0..16).map(|w| {
        let (mut chat, alice, body) = (chat.clone(), alice.clone(), body.clone());
        tokio::spawn(async move {
            for i in 0..190 {
                send(&mut chat, &alice, "bob", &body, &format!("big{w}-{i}")).await.unwrap();
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let admin = work.path().join("admin");
    cluster.tls.ca.write_leaf(&Leaf::client(Role::Admin), &admin).unwrap();
    let dial = TcpDial::new(Security::mutual(&admin).unwrap());
    let peer = cluster.nodes[0].peer.clone();
    let admin_client = || {
        chat_proto::cluster::admin_service_client::AdminServiceClient::new(
            dial.dial(&peer, Duration::from_secs(2)).unwrap(),
        )
    };
    let mut first = admin_client().backup(chat_proto::cluster::BackupRequest {}).await.unwrap().into_inner();
    assert!(first.message().await.unwrap().is_some(), "the first backup streams");
    let second = admin_client().backup(chat_proto::cluster::BackupRequest {}).await.unwrap_err();
    assert_eq!(second.code(), tonic::Code::ResourceExhausted, "{second:?}");
    assert!(second.message().contains("one at a time"), "{}", second.message());
    // Once the first is read to its end, the next may run.
    while first.message().await.unwrap().is_some() {}
    let file = work.path().join("after.backup");
    chat_client::backup::backup(dial.dial(&peer, Duration::from_secs(2)).unwrap(), &file).await.unwrap();
}
