//! Read levels on real node processes: every response names the state it
//! reflects (`chat-index`); a SESSION read sees the client's own write on a
//! follower with the leader frozen (no leader round trip); a STALE read with a
//! bound refuses once the node has been cut off longer than the bound, while
//! an unbounded one still answers; and the new fields are validated.

use std::time::Duration;

use chat_proto::INDEX_HEADER;
use chat_proto::chat::*;
use chat_testkit::*;
use tonic::Code;

fn index_of<T>(response: &tonic::Response<T>) -> u64 {
    response.metadata().get(INDEX_HEADER).expect("a chat-index header").to_str().unwrap().parse().unwrap()
}

fn read(with: &str, consistency: ReadConsistency, min_index: u64, max_staleness_ms: u32) -> ReadConversationRequest {
    ReadConversationRequest {
        with: with.into(),
        limit: 100,
        consistency: consistency as i32,
        min_index,
        max_staleness_ms,
        ..Default::default()
    }
}

/// Registers alice and bob, and alice sends bob "hi": her token and the write's index.
async fn alice_says_hi_to_bob(
    c: &mut chat_proto::chat::chat_service_client::ChatServiceClient<tonic::transport::Channel>,
) -> (String, u64) {
    let alice = register(c, "alice").await;
    register(c, "bob").await;
    let hi = SendMessageRequest { to: "bob".into(), body: "hi".into(), request_id: "1".into() };
    let sent = c.send_message(authed(&alice, hi)).await.unwrap();
    let index = index_of(&sent);
    (alice, index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_read_sees_its_own_write_on_a_follower_without_the_leader() {
    let mut cluster =
        TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 3, &[("CHAT_REQUEST_TIMEOUT_MS", "1500")]).await;
    let leader = cluster.leader().await;
    let follower = cluster.running().into_iter().find(|&id| id != leader).unwrap();
    let mut via_leader = cluster.client(leader);
    // A write's index, and a read's: never behind what the client saw.
    let (alice, written) = alice_says_hi_to_bob(&mut via_leader).await;
    let linearizable = via_leader.read_conversation(authed(&alice, read("bob", ReadConsistency::Linearizable, 0, 0)));
    assert!(index_of(&linearizable.await.unwrap()) >= written);

    // The follower has applied the write; the leader freezes. A SESSION read
    // at the write's index is served by the follower alone.
    eventually("the follower applies the write", Duration::from_secs(5), || async {
        cluster.status(follower).await.filter(|s| s.applied_index >= written).map(|_| ())
    })
    .await;
    cluster.pause(leader);
    let mut via_follower = cluster.client(follower);
    let session = via_follower
        .read_conversation(authed(&alice, read("bob", ReadConsistency::Session, written, 0)))
        .await
        .expect("a session read at an applied index needs no leader");
    assert!(index_of(&session) >= written);
    assert_eq!(session.get_ref().messages.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["hi"]);

    // An index the follower has not reached: refused once the deadline passes, naming it.
    let ahead = written + 1_000_000;
    let refused = via_follower
        .read_conversation(authed(&alice, read("bob", ReadConsistency::Session, ahead, 0)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains(&format!("min_index {ahead}")), "{}", refused.message());
    cluster.resume(leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_node_refuses_bounded_stale_reads_and_still_serves_unbounded_ones() {
    let mut cluster = TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 3, &[]).await;
    let leader = cluster.leader().await;
    let mut c = cluster.client(leader);
    let alice = register(&mut c, "alice").await;
    register(&mut c, "bob").await;
    let follower = cluster.running().into_iter().find(|&id| id != leader).unwrap();
    let mut via_follower = cluster.client(follower);
    let bounded = || read("bob", ReadConsistency::Stale, 0, 300);
    eventually("a bounded stale read while in touch", Duration::from_secs(5), || {
        let (mut c, alice) = (via_follower.clone(), alice.clone());
        async move { c.read_conversation(authed(&alice, bounded())).await.ok() }
    })
    .await;

    // Cut it off: the leader and the other follower freeze, so it hears from
    // no leader and cannot elect one.
    let others: Vec<u64> = cluster.running().into_iter().filter(|&id| id != follower).collect();
    for &id in &others {
        cluster.pause(id);
    }
    let refused = eventually("the bound to be exceeded", Duration::from_secs(10), || {
        let (mut c, alice) = (via_follower.clone(), alice.clone());
        async move { c.read_conversation(authed(&alice, bounded())).await.err() }
    })
    .await;
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("max_staleness_ms 300"), "{}", refused.message());
    via_follower
        .read_conversation(authed(&alice, read("bob", ReadConsistency::Stale, 0, 0)))
        .await
        .expect("an unbounded stale read is still served");
    for id in others {
        cluster.resume(id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_level_fields_are_validated() {
    let cluster = TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 1, &[]).await;
    let mut c = cluster.client(1);
    let alice = register(&mut c, "alice").await;
    for (request, field) in [
        (read("bob", ReadConsistency::Linearizable, 0, 500), "max_staleness_ms"),
        (read("bob", ReadConsistency::Session, 0, 500), "max_staleness_ms"),
        (ReadConversationRequest { with: "bob".into(), consistency: 7, ..Default::default() }, "consistency"),
    ] {
        let refused = c.read_conversation(authed(&alice, request)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(refused.message().contains(field), "{}", refused.message());
    }
}

/// Read replicas are learners: they never vote and no commit waits for them.
/// With 3 voters and 2 replicas, losing 2 voters stops writes (the replicas
/// cannot make a quorum), while the replicas go on serving SESSION and STALE
/// reads; a voter's return brings writes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_replicas_serve_reads_but_never_vote_or_count_toward_a_commit() {
    let mut cluster =
        TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 3, &[("CHAT_REQUEST_TIMEOUT_MS", "1500")]).await;
    for id in [11, 12] {
        cluster.add_read_replica(id);
    }
    let leader = cluster.leader().await;
    eventually("two read replicas among the members", Duration::from_secs(30), || async {
        let s = cluster.status(leader).await?;
        let learners: Vec<u64> = s.members.iter().filter(|m| !m.voter).map(|m| m.id).collect();
        (s.members.len() == 5 && learners == [11, 12]).then_some(())
    })
    .await;
    let (alice, written) = alice_says_hi_to_bob(&mut cluster.client(leader)).await;
    let mut replica = cluster.client(11);
    let first = replica.read_conversation(authed(&alice, read("bob", ReadConsistency::Session, written, 0))).await;
    assert_eq!(first.expect("a replica serves session reads").get_ref().messages.len(), 1);

    // Two voters gone: one voter and two learners are no quorum.
    let voters: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
    cluster.kill(leader);
    cluster.kill(voters[0]);
    let send = |n: u32| SendMessageRequest { to: "bob".into(), body: format!("m{n}"), request_id: format!("r{n}") };
    let refused = replica.send_message(authed(&alice, send(2))).await.expect_err("no quorum without two voters");
    assert!(matches!(refused.code(), Code::Unavailable | Code::DeadlineExceeded), "{refused:?}");
    for consistency in [ReadConsistency::Session, ReadConsistency::Stale] {
        let r = replica.read_conversation(authed(&alice, read("bob", consistency, written, 0))).await;
        assert_eq!(r.expect("reads go on").get_ref().messages.len(), 1, "{consistency:?}");
    }
    let status = cluster.status(11).await.unwrap();
    assert_ne!(status.role, chat_proto::cluster::Role::Leader as i32, "a learner never leads");

    // A voter returns: writes resume, through the replica too.
    cluster.restart(voters[0]);
    eventually("writes again", Duration::from_secs(30), || {
        let (mut replica, alice) = (replica.clone(), alice.clone());
        async move { replica.send_message(authed(&alice, send(3))).await.ok() }
    })
    .await;
}

/// A read replica cut off from every voter (all three frozen) refuses
/// bounded-stale reads once the bound passes, and still serves unbounded ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_read_replica_refuses_bounded_stale_reads() {
    let mut cluster = TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 3, &[]).await;
    cluster.add_read_replica(11);
    let leader = cluster.leader().await;
    let (alice, written) = alice_says_hi_to_bob(&mut cluster.client(leader)).await;
    let replica = cluster.client(11);
    let bounded = || read("bob", ReadConsistency::Stale, 0, 300);
    eventually("the replica in touch and caught up", Duration::from_secs(10), || {
        let (mut c, alice) = (replica.clone(), alice.clone());
        async move {
            let r = c.read_conversation(authed(&alice, bounded())).await.ok()?;
            (index_of(&r) >= written).then_some(())
        }
    })
    .await;
    for id in [1, 2, 3] {
        cluster.pause(id);
    }
    let refused = eventually("the bound to be exceeded", Duration::from_secs(10), || {
        let (mut c, alice) = (replica.clone(), alice.clone());
        async move { c.read_conversation(authed(&alice, bounded())).await.err() }
    })
    .await;
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("max_staleness_ms 300"), "{}", refused.message());
    let unbounded = replica.clone().read_conversation(authed(&alice, read("bob", ReadConsistency::Stale, 0, 0))).await;
    assert_eq!(unbounded.expect("unbounded stale reads go on").get_ref().messages.len(), 1);
    for id in [1, 2, 3] {
        cluster.resume(id);
    }
}
