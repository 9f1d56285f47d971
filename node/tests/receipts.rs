//! Delivery receipts on real nodes: a message is delivered once a Subscribe
//! stream of its recipient has sent it (on any member) or the recipient has
//! read the conversation; read implies delivered; receipts are batched, so a
//! stream of many messages costs a few log entries, not one per message.

use std::time::Duration;

use chat_proto::chat::{MarkReadRequest, Message, ReadConsistency, SubscribeRequest};
use chat_testkit::{TestCluster, authed, chat_node_binary, eventually, read_all, register, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_become_delivered_by_a_stream_or_a_read_and_receipts_are_batched() {
    let cluster = TestCluster::start(chat_node_binary(), 3, &[]).await;
    let leader = cluster.leader().await;
    let follower = cluster.nodes.iter().map(|n| n.id).find(|&id| id != leader).unwrap();
    let mut chat = cluster.client(leader);
    let alice = register(&mut chat, "alice").await;
    let bob = register(&mut chat, "bob").await;
    let carol = register(&mut chat, "carol").await;
    send(&mut chat, &alice, "bob", "one", "a1").await.unwrap();
    send(&mut chat, &alice, "bob", "two", "a2").await.unwrap();
    let sent = read_all(&mut chat, &alice, "bob", ReadConsistency::Linearizable).await.unwrap();
    assert!(sent.iter().all(|m| !m.delivered && !m.read), "nobody has received them yet: {sent:?}");

    // Bob's stream, on a follower, sends them: delivered, not read.
    let mut stream =
        cluster.client(follower).subscribe(authed(&bob, SubscribeRequest::default())).await.unwrap().into_inner();
    let mut received: Vec<Message> = Vec::new();
    while received.len() < 2 {
        received.push(stream.message().await.unwrap().unwrap());
    }
    assert!(received.iter().all(|m| m.delivered), "a stream's own messages are delivered");
    let delivered = |chat: &chat_proto::chat::chat_service_client::ChatServiceClient<tonic::transport::Channel>,
                     token: String,
                     with: &'static str| {
        let mut chat = chat.clone();
        async move {
            let all = read_all(&mut chat, &token, with, ReadConsistency::Linearizable).await.ok()?;
            all.iter().all(|m| m.delivered).then_some(all)
        }
    };
    let seen =
        eventually("alice sees ✓ (delivered)", Duration::from_secs(10), || delivered(&chat, alice.clone(), "bob"))
            .await;
    assert!(seen.iter().all(|m| !m.read), "delivered is not read: {seen:?}");

    // Many messages on a live stream: receipts batched into a few entries.
    let before = cluster.status(leader).await.unwrap().last_log_index;
    let burst = 40;
    for i in 0..burst {
        send(&mut chat, &alice, "bob", &format!("burst {i}"), &format!("b{i}")).await.unwrap();
    }
    while received.len() < 2 + burst {
        received.push(stream.message().await.unwrap().unwrap());
    }
    eventually("the burst delivered", Duration::from_secs(10), || delivered(&chat, alice.clone(), "bob")).await;
    let entries = cluster.status(leader).await.unwrap().last_log_index - before;
    eprintln!("{burst} messages on a live stream: {entries} log entries in all");
    assert!(entries < burst as u64 + 15, "{entries} entries for {burst} messages: receipts are not batched");

    // Carol has no stream: her message is delivered when she reads it, and ✓✓ once she marks it read.
    send(&mut chat, &alice, "carol", "hi carol", "c1").await.unwrap();
    let to_carol = read_all(&mut chat, &alice, "carol", ReadConsistency::Linearizable).await.unwrap();
    assert!(!to_carol[0].delivered);
    let seen_by_carol =
        read_all(&mut cluster.client(follower), &carol, "alice", ReadConsistency::Linearizable).await.unwrap();
    assert_eq!(seen_by_carol.len(), 1);
    eventually("carol's read delivers it", Duration::from_secs(10), || delivered(&chat, alice.clone(), "carol")).await;
    chat.mark_read(authed(&carol, MarkReadRequest { with: "alice".into(), up_to_id: 0 })).await.unwrap();
    let read = read_all(&mut chat, &alice, "carol", ReadConsistency::Linearizable).await.unwrap();
    assert!(read[0].read && read[0].delivered, "{read:?}");
}
