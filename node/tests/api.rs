//! The chat API on a one-node cluster (in-process, real gRPC, Raft and RocksDB):
//! every validation rule with its status code, auth boundaries, paging,
//! read state, deletion and Subscribe.

use std::time::Duration;

use chat_node::limits::LimitsConfig;
use chat_node::node::Timeouts;
use chat_node::server::{self, Config, Listeners, RaftTiming, Running, TlsSettings};
use chat_node::typ::Node;
use chat_proto::chat::chat_service_client::ChatServiceClient;
use chat_proto::chat::*;
use chat_testkit::*;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Request};

struct One {
    running: Option<Running>,
    client: ChatServiceClient<Channel>,
    dir: tempfile::TempDir,
}

async fn one_node() -> One {
    one_node_with_http(None).await
}

async fn one_node_with_http(http: Option<tokio::net::TcpListener>) -> One {
    let dir = tempfile::tempdir().unwrap();
    let tls = TestTls::new(&dir.path().join("tls"));
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = public.local_addr().unwrap().to_string();
    let peer_addr = peer.local_addr().unwrap().to_string();
    let node_tls = tls.node_dir(1, "127.0.0.1");
    let cfg = Config {
        id: 1,
        advertise: Node { addr: peer_addr, api: addr.clone() },
        data_dir: dir.path().join("data"),
        bootstrap: true,
        join: vec![],
        read_replica: false,
        raft: RaftTiming::default(),
        timeouts: Timeouts::default(),
        limits: LimitsConfig::default(),
        tls: TlsSettings { peer: Some(node_tls.clone()), public: Some(node_tls), reload_every: Duration::from_secs(5) },
        self_label: None,
    };
    let running = server::start(cfg, Listeners { public, peer, http }).await.unwrap();
    let node = running.node.clone();
    eventually("single node leads", Duration::from_secs(10), || async {
        (node.leader().map(|(id, _)| id) == Some(1)).then_some(())
    })
    .await;
    One { running: Some(running), client: ChatServiceClient::new(tls.channel(&addr)), dir }
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    let s = r.expect_err("expected an error");
    (s.code(), s.message().to_string())
}

fn account(username: &str, password: &str) -> CreateAccountRequest {
    CreateAccountRequest { username: username.into(), password: password.into() }
}

#[tokio::test]
async fn account_rules() {
    let mut t = one_node().await;
    let c = &mut t.client;
    let (k, m) = code(c.create_account(account("", PASSWORD)).await);
    assert_eq!(k, Code::InvalidArgument);
    assert!(m.contains("username"), "{m}");
    let (k, m) = code(c.create_account(account(&"a".repeat(33), PASSWORD)).await);
    assert_eq!((k, m.contains("at most 32")), (Code::InvalidArgument, true), "{m}");
    let (k, m) = code(c.create_account(account("bad name", PASSWORD)).await);
    assert_eq!((k, m.contains("' '")), (Code::InvalidArgument, true), "{m}");
    let (k, m) = code(c.create_account(account("alice", "short")).await);
    assert_eq!((k, m.contains("password")), (Code::InvalidArgument, true), "{m}");

    c.create_account(account("alice", PASSWORD)).await.unwrap();
    let (k, m) = code(c.create_account(account("alice", PASSWORD)).await);
    assert_eq!((k, m.contains("alice")), (Code::AlreadyExists, true), "{m}");

    let login = |u: &str, p: &str| LoginRequest { username: u.into(), password: p.into() };
    assert_eq!(code(c.login(login("alice", "wrong-password")).await).0, Code::Unauthenticated);
    assert_eq!(code(c.login(login("nobody", PASSWORD)).await).0, Code::Unauthenticated);
    assert_eq!(code(c.login(login("", PASSWORD)).await).0, Code::InvalidArgument);
    let token = c.login(login("alice", PASSWORD)).await.unwrap().into_inner().token;

    // Without, with a malformed, and with an unknown token.
    assert_eq!(code(c.list_conversations(ListConversationsRequest::default()).await).0, Code::Unauthenticated);
    let mut bad = Request::new(ListConversationsRequest::default());
    bad.metadata_mut().insert("authorization", "Token x".parse().unwrap());
    assert_eq!(code(c.list_conversations(bad).await).0, Code::Unauthenticated);
    assert_eq!(
        code(c.list_conversations(authed("feedface", ListConversationsRequest::default())).await).0,
        Code::Unauthenticated
    );
    c.list_conversations(authed(&token, ListConversationsRequest::default())).await.unwrap();

    // Logout ends the session.
    c.logout(authed(&token, LogoutRequest {})).await.unwrap();
    assert_eq!(
        code(c.list_conversations(authed(&token, ListConversationsRequest::default())).await).0,
        Code::Unauthenticated
    );
    assert_eq!(code(c.logout(authed(&token, LogoutRequest {})).await).0, Code::Unauthenticated);
}

#[tokio::test]
async fn message_rules_and_ownership() {
    let mut t = one_node().await;
    let c = &mut t.client;
    let alice = register(c, "alice").await;
    let bob = register(c, "bob").await;
    let carol = register(c, "carol").await;

    assert_eq!(code(send(c, &alice, "nobody", "hi", "").await).0, Code::NotFound);
    let (k, m) = code(send(c, &alice, "bob", "", "").await);
    assert_eq!((k, m.contains("body")), (Code::InvalidArgument, true), "{m}");
    let (k, m) = code(send(c, &alice, "bob", &"x".repeat(4097), "").await);
    assert_eq!((k, m.contains("4097")), (Code::InvalidArgument, true), "{m}");
    send(c, &alice, "bob", &"x".repeat(4096), "").await.unwrap();
    let (k, m) = code(send(c, &alice, "b/b", "hi", "").await);
    assert_eq!((k, m.contains("to")), (Code::InvalidArgument, true), "{m}");
    assert_eq!(code(send(c, &alice, "bob", "hi", &"r".repeat(65)).await).0, Code::InvalidArgument);
    let (k, m) = code(send(c, &alice, "alice", "note to self", "").await);
    assert_eq!((k, m.contains("yourself")), (Code::InvalidArgument, true), "{m}");

    // A retry with the same request id is the same message.
    let first = send(c, &alice, "bob", "once", "req-1").await.unwrap();
    let again = send(c, &alice, "bob", "once", "req-1").await.unwrap();
    assert_eq!(first, again);

    // Carol cannot delete Alice's message to Bob; nobody can delete what does not exist.
    let del = |ids: Vec<u64>| DeleteMessagesRequest { ids };
    assert_eq!(code(c.delete_messages(authed(&carol, del(vec![first]))).await).0, Code::PermissionDenied);
    assert_eq!(code(c.delete_messages(authed(&bob, del(vec![999_999]))).await).0, Code::NotFound);
    assert_eq!(code(c.delete_messages(authed(&bob, del(vec![]))).await).0, Code::InvalidArgument);
    // Carol sees nothing of their conversation.
    let read = |with: &str| ReadConversationRequest { with: with.into(), limit: 0, ..Default::default() };
    assert!(c.read_conversation(authed(&carol, read("alice"))).await.unwrap().into_inner().messages.is_empty());
    assert_eq!(
        code(c.read_conversation(authed(&carol, ReadConversationRequest { limit: 1001, ..read("alice") })).await).0,
        Code::InvalidArgument
    );
    assert_eq!(
        code(c.read_conversation(authed(&carol, ReadConversationRequest { consistency: 7, ..read("alice") })).await).0,
        Code::InvalidArgument
    );

    // Bob (the recipient) may delete it; the request is all-or-nothing.
    assert_eq!(code(c.delete_messages(authed(&bob, del(vec![first, 999_999]))).await).0, Code::NotFound);
    assert_eq!(c.delete_messages(authed(&bob, del(vec![first]))).await.unwrap().into_inner().deleted, 1);
    let left = c.read_conversation(authed(&alice, read("bob"))).await.unwrap().into_inner().messages;
    assert_eq!(left.len(), 1, "only the 4096-byte message is left");
}

#[tokio::test]
async fn paging_read_state_and_conversations() {
    let mut t = one_node().await;
    let c = &mut t.client;
    let alice = register(c, "alice").await;
    let bob = register(c, "bob").await;
    let carol = register(c, "carol").await;
    let mut ids = Vec::new();
    for i in 0..25 {
        ids.push(send(c, &alice, "bob", &format!("m{i}"), "").await.unwrap());
    }
    send(c, &carol, "bob", "hello from carol", "").await.unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");

    // Pages of 10, newest first, each page oldest-first.
    let page =
        |before| ReadConversationRequest { with: "alice".into(), limit: 10, before_id: before, ..Default::default() };
    let p1 = c.read_conversation(authed(&bob, page(0))).await.unwrap().into_inner().messages;
    assert_eq!(p1.iter().map(|m| m.id).collect::<Vec<_>>(), ids[15..]);
    let p2 = c.read_conversation(authed(&bob, page(p1[0].id))).await.unwrap().into_inner().messages;
    assert_eq!(p2.iter().map(|m| m.id).collect::<Vec<_>>(), ids[5..15]);
    let p3 = c.read_conversation(authed(&bob, page(p2[0].id))).await.unwrap().into_inner().messages;
    assert_eq!(p3.iter().map(|m| m.id).collect::<Vec<_>>(), ids[..5], "the last page is short");
    assert!(c.read_conversation(authed(&bob, page(ids[0]))).await.unwrap().into_inner().messages.is_empty());
    assert_eq!(p3[0].body, "m0", "each message is its own, not a neighbour's");
    assert!(p1.iter().all(|m| !m.read && m.from == "alice" && m.to == "bob"));

    let convs = |c: &mut ChatServiceClient<Channel>, token: &str| {
        let req = authed(token, ListConversationsRequest::default());
        let mut c = c.clone();
        async move { c.list_conversations(req).await.unwrap().into_inner().conversations }
    };
    let bobs = convs(c, &bob).await;
    assert_eq!(
        bobs.iter().map(|v| (v.partner.as_str(), v.unread)).collect::<Vec<_>>(),
        vec![("carol", 1), ("alice", 25)]
    );

    // Mark up to the 20th as read: 5 stay unread; read flags follow.
    let marked = c
        .mark_read(authed(&bob, MarkReadRequest { with: "alice".into(), up_to_id: ids[19] }))
        .await
        .unwrap()
        .into_inner()
        .marked;
    assert_eq!(marked, 20);
    let bobs = convs(c, &bob).await;
    assert_eq!(bobs.iter().find(|v| v.partner == "alice").unwrap().unread, 5);
    let p1 = c
        .read_conversation(authed(&alice, ReadConversationRequest { with: "bob".into(), ..page(0) }))
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(p1.iter().filter(|m| m.read).count(), 5, "alice sees which of her messages bob read");
    // Deleting an unread message lowers the unread count.
    c.delete_messages(authed(&alice, DeleteMessagesRequest { ids: vec![ids[24], ids[23]] })).await.unwrap();
    assert_eq!(convs(c, &bob).await.iter().find(|v| v.partner == "alice").unwrap().unread, 3);
    c.mark_read(authed(&bob, MarkReadRequest { with: "alice".into(), up_to_id: 0 })).await.unwrap();
    assert_eq!(convs(c, &bob).await.iter().find(|v| v.partner == "alice").unwrap().unread, 0);
    // Alice's own view: one conversation, nothing unread.
    assert_eq!(
        convs(c, &alice).await.iter().map(|v| (v.partner.as_str(), v.unread)).collect::<Vec<_>>(),
        vec![("bob", 0)]
    );
}

#[tokio::test]
async fn list_accounts_by_glob_in_pages() {
    let mut t = one_node().await;
    let c = &mut t.client;
    let token = register(c, "admin").await;
    for name in ["ann", "anna", "annie", "bob", "zed"] {
        c.create_account(account(name, PASSWORD)).await.unwrap();
    }
    let list = |pattern: &str, page_size, page_token: &str| ListAccountsRequest {
        pattern: pattern.into(),
        page_size,
        page_token: page_token.into(),
        ..Default::default()
    };
    let r = c.list_accounts(authed(&token, list("ann*", 2, ""))).await.unwrap().into_inner();
    assert_eq!(
        (r.usernames.clone(), r.next_page_token.as_str()),
        (vec!["ann".to_string(), "anna".to_string()], "anna")
    );
    let r = c.list_accounts(authed(&token, list("ann*", 2, &r.next_page_token))).await.unwrap().into_inner();
    assert_eq!((r.usernames, r.next_page_token.as_str()), (vec!["annie".to_string()], ""));
    let r = c.list_accounts(authed(&token, list("", 0, ""))).await.unwrap().into_inner();
    assert_eq!(r.usernames.len(), 6);
    let (k, m) = code(c.list_accounts(authed(&token, list("[", 0, ""))).await);
    assert_eq!((k, m.contains("pattern")), (Code::InvalidArgument, true), "{m}");
    assert_eq!(code(c.list_accounts(list("*", 0, "")).await).0, Code::Unauthenticated);
}

#[tokio::test]
async fn delete_account_removes_its_messages_and_sessions() {
    let mut t = one_node().await;
    let c = &mut t.client;
    let alice = register(c, "alice").await;
    let bob = register(c, "bob").await;
    send(c, &alice, "bob", "one", "").await.unwrap();
    send(c, &bob, "alice", "two", "").await.unwrap();
    let gone = c.delete_account(authed(&alice, DeleteAccountRequest {})).await.unwrap().into_inner();
    assert_eq!(gone.messages_deleted, 2);
    let read = ReadConversationRequest { with: "alice".into(), limit: 0, ..Default::default() };
    assert!(c.read_conversation(authed(&bob, read)).await.unwrap().into_inner().messages.is_empty());
    assert!(
        c.list_conversations(authed(&bob, ListConversationsRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .conversations
            .is_empty()
    );
    assert_eq!(
        code(c.list_conversations(authed(&alice, ListConversationsRequest::default())).await).0,
        Code::Unauthenticated
    );
    assert_eq!(code(send(c, &bob, "alice", "hello?", "").await).0, Code::NotFound);
    // The name is free again.
    c.create_account(account("alice", PASSWORD)).await.unwrap();
}

async fn next(s: &mut tonic::Streaming<Message>) -> Message {
    tokio::time::timeout(Duration::from_secs(10), s.next()).await.expect("stream stalled").unwrap().unwrap()
}

#[tokio::test]
async fn subscribe_streams_backlog_then_live_and_resumes() {
    let mut t = one_node().await;
    let c = &mut t.client;
    let alice = register(c, "alice").await;
    let bob = register(c, "bob").await;
    let first = send(c, &alice, "bob", "backlog", "").await.unwrap();
    send(c, &bob, "alice", "not for bob's stream", "").await.unwrap();

    let mut stream = c.subscribe(authed(&bob, SubscribeRequest::default())).await.unwrap().into_inner();
    assert_eq!(next(&mut stream).await.body, "backlog");
    let live = send(c, &alice, "bob", "live", "").await.unwrap();
    let m = next(&mut stream).await;
    assert_eq!((m.id, m.body.as_str(), m.from.as_str()), (live, "live", "alice"));
    drop(stream);

    // Resuming after the first message yields exactly the rest.
    let mut resumed = c
        .subscribe(authed(&bob, SubscribeRequest { after_id: first, ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut resumed).await.id, live);
    assert_eq!(code(c.subscribe(SubscribeRequest::default()).await).0, Code::Unauthenticated);

    // Logging out ends a live stream at its next delivery.
    let mut live = c
        .subscribe(authed(&bob, SubscribeRequest { after_id: live, ..Default::default() }))
        .await
        .unwrap()
        .into_inner();
    c.logout(authed(&bob, LogoutRequest {})).await.unwrap();
    send(c, &alice, "bob", "after logout", "").await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), live.next()).await.expect("stream stalled").unwrap();
    assert_eq!(ended.unwrap_err().code(), Code::Unauthenticated, "no message reaches a logged-out session");
}

#[tokio::test]
async fn passwords_and_tokens_never_reach_the_disk_in_plaintext() {
    let mut t = one_node().await;
    let c = &mut t.client;
    let secret = "plaintext-password-canary";
    c.create_account(account("alice", secret)).await.unwrap();
    let token =
        c.login(LoginRequest { username: "alice".into(), password: secret.into() }).await.unwrap().into_inner().token;
    t.running.take().unwrap().shutdown().await.unwrap();
    let mut files = vec![t.dir.path().to_path_buf()];
    let mut scanned = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        scanned += bytes.len();
        for needle in [secret, token.as_str()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{} holds a plaintext secret",
                path.display()
            );
        }
    }
    assert!(scanned > 0);
}

#[tokio::test]
async fn health_readiness_and_metrics_over_http() {
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap().to_string();
    let addr = addr.as_str();
    let mut t = one_node_with_http(Some(http)).await;
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    eventually("ready", Duration::from_secs(10), || async { (http_get(addr, "/readyz").await.0 == 200).then_some(()) })
        .await;

    let token = register(&mut t.client, "alice").await;
    register(&mut t.client, "bob").await;
    send(&mut t.client, &token, "bob", "hi", "").await.unwrap();
    let _ = send(&mut t.client, &token, "nobody", "hi", "").await;

    let (code, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    for expected in [
        "chat_raft_term 1",
        "chat_raft_role{role=\"leader\"} 1",
        "chat_rpc_requests_total{method=\"SendMessage\",code=\"ok\"} 1",
        "chat_rpc_requests_total{method=\"SendMessage\",code=\"not_found\"} 1",
        "chat_rpc_duration_seconds_count{method=\"CreateAccount\"} 2",
        "chat_raft_applied_index",
        "chat_accounts",
        "chat_messages",
    ] {
        assert!(metrics.contains(expected), "metrics lack {expected:?}:\n{metrics}");
    }
    assert_eq!(http_get(addr, "/nope").await.0, 404);
}

/// Concurrent sends are batched into shared Raft entries; each still gets its
/// own id, and ids are dense and in commit order: 1, 2, 3… — what paging and
/// Subscribe resume on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_get_dense_distinct_ids_in_commit_order() {
    let mut t = one_node().await;
    let alice = register(&mut t.client, "alice").await;
    register(&mut t.client, "bob").await;
    let sends: Vec<_> = (0..64)
        .map(|i| {
            let mut c = t.client.clone();
            let token = alice.clone();
            tokio::spawn(async move { send(&mut c, &token, "bob", &format!("m{i}"), &format!("r{i}")).await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for s in sends {
        ids.push(s.await.unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=64).collect::<Vec<u64>>());
    let read = read_all(&mut t.client, &alice, "bob", ReadConsistency::Linearizable).await.unwrap();
    let read_ids: Vec<u64> = read.iter().map(|m| m.id).collect();
    assert_eq!(read_ids, (1..=64).collect::<Vec<u64>>(), "read back oldest first, every one once");
    // A retry with a request id already used gets the original id back, not a new one.
    let again = send(&mut t.client, &alice, "bob", "m7", "r7").await.unwrap();
    assert_eq!(again, read.iter().find(|m| m.body == "m7").unwrap().id);
}
