//! The attacks of the security review, tried against real node processes:
//! each must be refused and leave membership, terms, sessions and accounts
//! as they were.
//!
//! Callers: a stranger (plaintext, or TLS without a certificate), a holder of
//! a certificate from another CA, a chat client on the public port, the
//! operator (whose certificate opens membership calls but not Raft), and a
//! member's own certificate (trusted with Raft, not with breaking it).

use std::collections::BTreeSet;
use std::time::Duration;

use chat_node::command::Command;
use chat_node::typ::{LogId, NodeId, Vote};
use chat_proto::cluster::membership_service_client::MembershipServiceClient;
use chat_proto::cluster::{GetStatusResponse, JoinClusterRequest, RemoveMemberRequest};
use chat_proto::raft::raft_service_client::RaftServiceClient;
use chat_proto::raft::{CampaignRequest, Payload, ReadIndexRequest};
use chat_testkit::*;
use chat_tls::{Ca, Leaf, Live};
use openraft::raft::VoteRequest;
use tonic::Code;
use tonic::transport::Channel;

/// What an attack must not change.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    leader: u64,
    term: u64,
    members: BTreeSet<(u64, String, String, bool)>,
}

async fn fingerprint(cluster: &TestCluster) -> Fingerprint {
    let leader = cluster.leader().await;
    let s: GetStatusResponse = cluster.status(leader).await.expect("the leader answers");
    let members = s.members.iter().map(|m| (m.id, m.address.clone(), m.peer_address.clone(), m.voter)).collect();
    Fingerprint { leader, term: s.term, members }
}

fn bincode<T: serde::Serialize>(value: &T) -> Payload {
    Payload { data: bincode::serialize(value).unwrap() }
}

/// A Vote request as a candidate `candidate` in `term` would send it.
fn vote(candidate: NodeId, term: u64) -> Payload {
    let last = LogId::new(openraft::CommittedLeaderId::new(term, candidate), u64::MAX / 4);
    bincode(&VoteRequest::<NodeId> { vote: Vote::new(term, candidate), last_log_id: Some(last) })
}

/// Mutual TLS with a certificate the cluster's CA issued for `role`.
fn with_role(cluster: &TestCluster, leaf: Leaf, name: &str) -> Live<rustls::ClientConfig> {
    let dir = cluster.tls.ca.write_leaf(&leaf, &cluster.tls.dir.join(name)).unwrap();
    Live::fixed(chat_tls::config::mutual_client(&dir.load().unwrap()).unwrap())
}

async fn three_nodes() -> TestCluster {
    TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 3, &[("CHAT_JOIN_CATCH_UP_MS", "1500")]).await
}

/// Refused by the transport (the handshake failed; with TLS 1.3 a refused
/// client certificate surfaces at the first read, as a broken HTTP/2
/// connection): no gRPC answer at all.
fn no_connection<T: std::fmt::Debug>(result: Result<T, tonic::Status>) {
    let (code, message) = refused(result);
    assert!(
        matches!(code, Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled),
        "{code:?}: {message}"
    );
}

/// A client that trusts the cluster's CA and presents `leaf`'s certificate.
fn presenting(cluster: &TestCluster, leaf: chat_tls::Material) -> Live<rustls::ClientConfig> {
    let roots = chat_tls::files::certs(cluster.tls.ca.cert_pem().as_bytes()).unwrap();
    Live::fixed(chat_tls::config::client(&roots, Some((leaf.chain, leaf.key))).unwrap())
}

/// A call that must fail: its code.
fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> (Code, String) {
    let status = result.expect_err("the attack went through");
    (status.code(), status.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strangers_cannot_reach_raft_or_membership_on_either_port() {
    let cluster = three_nodes().await;
    let before = fingerprint(&cluster).await;
    let leader = cluster.node(before.leader);
    let vote_2_40 = || vote(9, 1 << 40);

    // The peer port without TLS, and with TLS but no client certificate: the
    // handshake fails, nothing is decoded.
    no_connection(RaftServiceClient::new(plaintext_channel(&leader.peer)).vote(vote_2_40()).await);
    let anonymous = tls_channel(&leader.peer, &cluster.tls.client);
    no_connection(RaftServiceClient::new(anonymous).vote(vote_2_40()).await);

    // A certificate from another CA, even one claiming to be a node.
    let other = Ca::generate("impostor").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let forged = other.write_leaf(&Leaf::node(["127.0.0.1"]), dir.path()).unwrap().load().unwrap();
    let forged = presenting(&cluster, forged);
    let impostor: Channel = tls_channel(&leader.peer, &forged);
    no_connection(RaftServiceClient::new(impostor.clone()).vote(vote_2_40()).await);
    // A snapshot chunk claiming a 4 GiB record, and a campaign order: never read.
    let chunk = Payload { data: vec![0xff; 64] };
    no_connection(RaftServiceClient::new(impostor.clone()).install_snapshot(chunk).await);
    no_connection(RaftServiceClient::new(impostor.clone()).campaign(CampaignRequest { from: 1 }).await);
    let join = JoinClusterRequest {
        node_id: 7,
        address: "127.0.0.1:1".into(),
        peer_address: "127.0.0.1:2".into(),
        learner: false,
    };
    no_connection(MembershipServiceClient::new(impostor).join_cluster(join.clone()).await);

    // The public port serves neither service at all.
    let public = cluster.tls.channel(&leader.addr);
    assert_eq!(refused(RaftServiceClient::new(public.clone()).vote(vote_2_40()).await).0, Code::Unimplemented);
    let campaign = RaftServiceClient::new(public.clone()).campaign(CampaignRequest { from: 1 }).await;
    assert_eq!(refused(campaign).0, Code::Unimplemented);
    let remove = MembershipServiceClient::new(public.clone()).remove_member(RemoveMemberRequest { node_id: 1 }).await;
    assert_eq!(refused(remove).0, Code::Unimplemented);
    assert_eq!(refused(MembershipServiceClient::new(public).join_cluster(join).await).0, Code::Unimplemented);
    // Nor does it speak plaintext.
    let mut plain_chat =
        chat_proto::cluster::cluster_service_client::ClusterServiceClient::new(plaintext_channel(&leader.addr));
    no_connection(plain_chat.get_status(chat_proto::cluster::GetStatusRequest {}).await);

    // The operator's certificate opens membership calls, never Raft's.
    let operator = tls_channel(&leader.peer, &cluster.tls.operator);
    let (code, message) = refused(RaftServiceClient::new(operator.clone()).vote(vote_2_40()).await);
    assert_eq!(code, Code::PermissionDenied, "{message}");
    assert!(message.contains("chat-node"), "{message}");
    let campaign = RaftServiceClient::new(operator).campaign(CampaignRequest { from: before.leader }).await;
    assert_eq!(refused(campaign).0, Code::PermissionDenied);

    // The web console's HTTPS certificate, though of this CA, opens nothing there.
    let dir = tempfile::tempdir().unwrap();
    let console = cluster.tls.ca.write_leaf(&Leaf::console(["127.0.0.1"]), dir.path()).unwrap().load().unwrap();
    let console = tls_channel(&leader.peer, &presenting(&cluster, console));
    assert_eq!(refused(RaftServiceClient::new(console.clone()).vote(vote_2_40()).await).0, Code::PermissionDenied);
    let remove = MembershipServiceClient::new(console).remove_member(RemoveMemberRequest { node_id: 1 }).await;
    assert_eq!(refused(remove).0, Code::PermissionDenied);

    assert_eq!(fingerprint(&cluster).await, before, "nothing changed");

    // Each refused handshake is counted where an operator looks.
    let (_, metrics) = http_get(&leader.http, "/metrics").await;
    let refused = |port: &str| -> u64 {
        let series = format!("chat_tls_refused_connections_total{{port=\"{port}\",reason=\"handshake\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&series)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    assert!(refused("peer") >= 3, "plaintext, anonymous and impostor handshakes counted:\n{metrics}");
    assert!(refused("public") >= 1, "the plaintext GetStatus counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_members_certificate_still_cannot_break_the_cluster() {
    let cluster = three_nodes().await;
    let mut chat = cluster.client(1);
    let alice = register(&mut chat, "alice").await;
    let before = fingerprint(&cluster).await;
    let node_cert = with_role(&cluster, Leaf::node(["127.0.0.1"]), "rogue-node");
    let mut raft = RaftServiceClient::new(tls_channel(&cluster.node(before.leader).peer, &node_cert));

    // Terms that would depose the leader (2^40) or wrap to 0 and panic openraft (2^64-1).
    for term in [1 << 40, u64::MAX] {
        let (code, message) = refused(raft.vote(vote(9, term)).await);
        assert_eq!(code, Code::InvalidArgument, "{message}");
        assert!(message.contains("absurd"), "{message}");
    }
    assert!(cluster.log_of(before.leader).contains("absurd term"), "the refusal is logged");

    // A forged Forward: an account named with a path, a NUL and a newline;
    // then 8 MB of zeros (which decoded as an account named "" before).
    let evil = Command::CreateAccount {
        username: "evil/../\0name\n".into(),
        password_hash:
            "$argon2id$v=19$m=19456,t=2,p=1$YWJjZGVmZ2hpamtsbW5vcA$kUzRrJ1GBDPHDvbMMRrz0fZQjqyF6zr2f8h4ujrq0WQ".into(),
        created_at_ms: 0,
    };
    let (code, message) = refused(raft.forward(bincode(&evil)).await);
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("username"), "{message}");
    let zeros = Payload { data: vec![0; 8 << 20] };
    assert_eq!(refused(raft.forward(zeros).await).0, Code::InvalidArgument);
    let mut trailing = bincode(&Command::CloseSession { token_hash: [0; 32] });
    trailing.data.push(0);
    let (code, message) = refused(raft.forward(trailing).await);
    assert_eq!(code, Code::InvalidArgument, "{message}");

    // A read-index deadline of 2^64-1 seconds (it reached Instant + u64::MAX).
    let mut read_index = tonic::Request::new(ReadIndexRequest {});
    read_index.metadata_mut().insert("grpc-timeout", "18446744073709551615S".parse().unwrap());
    raft.read_index(read_index).await.expect("answered within the default deadline");

    // Nothing changed, and every node still serves.
    assert_eq!(fingerprint(&cluster).await, before);
    let accounts = chat
        .list_accounts(authed(
            &alice,
            chat_proto::chat::ListAccountsRequest { pattern: "*".into(), ..Default::default() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accounts.usernames, ["alice"], "no forged account");
    for id in cluster.running() {
        assert!(cluster.status(id).await.is_some(), "node {id} still answers");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_calls_cannot_cut_off_a_live_member_or_leave_junk_behind() {
    let cluster = three_nodes().await;
    let before = fingerprint(&cluster).await;
    let mut admin = cluster.membership_client(before.leader);
    let victim = cluster.running().into_iter().find(|&id| id != before.leader).unwrap();

    // Rewriting a live voter's address (twice would have left no quorum).
    let hijack = JoinClusterRequest {
        node_id: victim,
        address: "127.0.0.1:1".into(),
        peer_address: "127.0.0.1:2".into(),
        learner: false,
    };
    let (code, message) = refused(admin.join_cluster(hijack).await);
    assert_eq!(code, Code::FailedPrecondition, "{message}");
    assert!(message.contains("alive"), "{message}");

    // Addresses that are not a plain host:port.
    for (address, peer_address, field) in [
        ("http://x@y:1/path", "127.0.0.1:2", "address"),
        ("127.0.0.1:1", "x@y:1", "peer_address"),
        ("127.0.0.1:1", "", "peer_address"),
    ] {
        let join = JoinClusterRequest {
            node_id: 8,
            address: address.into(),
            peer_address: peer_address.into(),
            learner: false,
        };
        let (code, message) = refused(admin.join_cluster(join).await);
        assert_eq!(code, Code::InvalidArgument, "{message}");
        assert!(message.starts_with(field), "{message}");
    }

    // A new member that never answers: the join fails once its catch-up
    // time runs out, and the learner it added is removed again.
    let ghost = JoinClusterRequest {
        node_id: 9,
        address: "127.0.0.1:9".into(),
        peer_address: "127.0.0.1:9".into(),
        learner: false,
    };
    let (code, message) = refused(admin.join_cluster(ghost).await);
    assert_eq!(code, Code::Unavailable, "{message}");
    assert!(message.contains("catch up"), "{message}");
    eventually("no learner left behind", Duration::from_secs(10), || async {
        let s = cluster.status(before.leader).await?;
        s.members.iter().all(|m| m.id != 9).then_some(())
    })
    .await;

    assert_eq!(fingerprint(&cluster).await, before);
}
