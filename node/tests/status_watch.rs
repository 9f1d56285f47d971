//! WatchStatus on real node processes: the current status at once, an
//! election pushed as soon as the watched node learns of it, a write load
//! coalesced instead of streamed, and the stream count (per port) and pacing
//! fields bounded like every other input.

use std::time::Duration;

use chat_proto::cluster::cluster_service_client::ClusterServiceClient;
use chat_proto::cluster::{GetStatusResponse, Role, WatchStatusRequest};
use chat_testkit::*;
use tonic::Code;
use tonic::transport::Channel;

async fn next(stream: &mut tonic::Streaming<GetStatusResponse>, within: Duration) -> GetStatusResponse {
    tokio::time::timeout(within, stream.message()).await.expect("an update in time").expect("stream ok").expect("open")
}

async fn watch(
    client: &mut ClusterServiceClient<Channel>,
    min_interval_ms: u32,
) -> tonic::Streaming<GetStatusResponse> {
    client.watch_status(WatchStatusRequest { min_interval_ms, heartbeat_ms: 0 }).await.expect("watch").into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_election_is_pushed_and_a_write_load_is_coalesced() {
    let mut cluster = TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 3, &[]).await;
    let leader = cluster.leader().await;
    let follower = cluster.running().into_iter().find(|&id| id != leader).unwrap();
    let mut stream = watch(&mut cluster.cluster_client(follower), 1000).await;
    let first = next(&mut stream, Duration::from_secs(5)).await;
    assert_eq!((first.node_id, first.leader_id, first.members.len()), (follower, Some(leader), 3));

    // A steady write load for about three seconds: index-only updates come at
    // most once a second (plus the first), not once per write.
    let mut chat = cluster.client(follower);
    let token = register(&mut chat, "alice").await;
    register(&mut chat, "bob").await;
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut writes = 0;
    while tokio::time::Instant::now() < until {
        send(&mut chat, &token, "bob", "hello", &format!("r{writes}")).await.unwrap();
        writes += 1;
    }
    let target = cluster.status(follower).await.unwrap().applied_index;
    let mut updates = Vec::new();
    while updates.last().is_none_or(|u: &GetStatusResponse| u.applied_index < target) {
        updates.push(next(&mut stream, Duration::from_secs(3)).await);
    }
    assert!(writes > 20, "the load wrote too little to tell ({writes})");
    assert!(updates.len() <= 6, "{} updates for {writes} writes in ~3 s with min_interval_ms=1000", updates.len());

    // The leader dies (whoever leads now: two loaded cores may have held an
    // election already): a follower's stream says who leads next, in a newer term.
    let leader = cluster.leader().await;
    let term = cluster.status(leader).await.unwrap().term;
    if leader == follower {
        let other = cluster.running().into_iter().find(|&id| id != leader).unwrap();
        stream = watch(&mut cluster.cluster_client(other), 1000).await;
    }
    let killed_at_ms =
        u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap();
    cluster.kill(leader);
    let elected = loop {
        let update = next(&mut stream, Duration::from_secs(20)).await;
        if update.leader_id.is_some_and(|l| l != leader) && update.term > term {
            break update;
        }
    };
    let new_leader = elected.leader_id.unwrap();
    let leader_view = cluster.status(new_leader).await.unwrap();
    assert_eq!((leader_view.role, leader_view.term), (Role::Leader as i32, elected.term));
    // It says when it was elected: after the kill, not in the future; followers say 0.
    let now_ms = u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis());
    let since = leader_view.leader_since_ms;
    assert!(since >= killed_at_ms && since <= now_ms.unwrap(), "elected at {since}, killed at {killed_at_ms}");
    if elected.node_id != new_leader {
        assert_eq!(elected.leader_since_ms, 0, "a follower's view");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_are_bounded_and_pacing_fields_validated() {
    let cluster = TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 1, &[("CHAT_MAX_STATUS_WATCHES", "2")]).await;
    let mut client = cluster.cluster_client(1);
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = watch(&mut client, 0).await;
        next(&mut stream, Duration::from_secs(5)).await;
        open.push(stream);
    }
    let refused = client.watch_status(WatchStatusRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("--max-status-watches"), "{}", refused.message());
    // The peer port counts its own: the operator still gets its stream.
    let mut operator = ClusterServiceClient::new(cluster.tls.operator_channel(&cluster.node(1).peer));
    let mut peer_stream = watch(&mut operator, 0).await;
    next(&mut peer_stream, Duration::from_secs(5)).await;

    // A closed stream gives its place back.
    drop(open.pop());
    let mut again = eventually("a freed place", Duration::from_secs(5), || {
        let mut client = client.clone();
        async move { client.watch_status(WatchStatusRequest::default()).await.ok() }
    })
    .await
    .into_inner();
    next(&mut again, Duration::from_secs(5)).await;

    for (request, field) in [
        (WatchStatusRequest { min_interval_ms: 5, heartbeat_ms: 0 }, "min_interval_ms"),
        (WatchStatusRequest { min_interval_ms: 0, heartbeat_ms: 999 }, "heartbeat_ms"),
    ] {
        let refused = client.watch_status(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(refused.message().contains(field), "{}", refused.message());
    }

    // With nothing happening, the heartbeat still comes.
    let mut quiet = {
        drop(open);
        let r = WatchStatusRequest { min_interval_ms: 0, heartbeat_ms: 1000 };
        eventually("a place", Duration::from_secs(5), || {
            let mut client = client.clone();
            async move { client.watch_status(r).await.ok() }
        })
        .await
        .into_inner()
    };
    let first = next(&mut quiet, Duration::from_secs(5)).await;
    let beat = next(&mut quiet, Duration::from_secs(5)).await;
    assert_eq!((beat.term, beat.leader_id), (first.term, first.leader_id));
}
