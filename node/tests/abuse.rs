//! The public port against a hostile client, on real node processes: what a
//! stranger can make a node spend is bounded, each bound answers with the
//! status that names it, and malformed requests are the caller's error.

use std::time::Duration;

use chat_proto::chat::chat_service_client::ChatServiceClient;
use chat_proto::chat::*;
use chat_testkit::*;
use tonic::Code;
use tonic::transport::Channel;

fn login(user: &str, password: &str) -> LoginRequest {
    LoginRequest { username: user.into(), password: password.into() }
}

async fn code_of<T>(call: impl std::future::Future<Output = Result<T, tonic::Status>>) -> (Code, String) {
    match call.await {
        Ok(_) => (Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_logins_meet_growing_delays_and_unknown_users_look_the_same() {
    let cluster = TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 1, &[("CHAT_LOGIN_FREE_FAILURES", "2")]).await;
    let mut c = cluster.client(1);
    register(&mut c, "alice").await;

    // The same answers for an account that exists and one that does not:
    // two free failures, a third that locks, then refusals with a wait.
    for user in ["alice", "nobody"] {
        let mut codes = Vec::new();
        for _ in 0..4 {
            codes.push(code_of(c.login(login(user, "wrong-password"))).await.0);
        }
        assert_eq!(
            codes,
            [Code::Unauthenticated, Code::Unauthenticated, Code::Unauthenticated, Code::ResourceExhausted],
            "{user}"
        );
    }
    let (code, message) = code_of(c.login(login("alice", PASSWORD))).await;
    assert_eq!(code, Code::ResourceExhausted, "even the right password waits out the lock");
    assert!(message.contains("try again in"), "{message}");
    // The lock is per username: bob is not affected.
    register(&mut c, "bob").await;

    // Once the lock passes, the right password works and clears the record.
    let token = eventually("alice's lock to pass", Duration::from_secs(5), || {
        let mut c = c.clone();
        async move { c.login(login("alice", PASSWORD)).await.ok().map(|r| r.into_inner().token) }
    })
    .await;
    assert!(!token.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usernames_are_case_insensitive_and_the_bearer_scheme_too() {
    let cluster = TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 1, &[]).await;
    let mut c = cluster.client(1);
    c.create_account(CreateAccountRequest { username: "Alice".into(), password: PASSWORD.into() }).await.unwrap();
    let (code, _) =
        code_of(c.create_account(CreateAccountRequest { username: "alice".into(), password: PASSWORD.into() })).await;
    assert_eq!(code, Code::AlreadyExists, "`alice` is `Alice`");
    let reply = c.login(login("ALICE", PASSWORD)).await.unwrap().into_inner();
    assert_eq!(reply.username, "alice", "names are kept folded");
    let mut request = tonic::Request::new(ListConversationsRequest::default());
    request.metadata_mut().insert("authorization", format!("bearer {}", reply.token).parse().unwrap());
    c.list_conversations(request).await.expect("the scheme is case-insensitive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authentication_comes_first_and_metadata_and_messages_are_bounded() {
    let cluster = TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 1, &[]).await;
    let channel = cluster.tls.channel(&cluster.node(1).addr);
    let mut c = ChatServiceClient::new(channel.clone());
    let token = register(&mut c, "alice").await;

    // The public port answers the standard gRPC health check, no session
    // needed: SERVING once the node is ready (re-evaluated every 500 ms).
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "chat.v1.ChatService"] {
        eventually(&format!("health of {service:?} to be SERVING"), Duration::from_secs(5), || {
            let mut health = health.clone();
            async move {
                let request = tonic_health::pb::HealthCheckRequest { service: service.into() };
                let status = health.check(request).await.ok()?.into_inner().status;
                (status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32).then_some(())
            }
        })
        .await;
    }

    // No session: UNAUTHENTICATED, whatever else is wrong with the request.
    let bad_pattern = ListAccountsRequest { pattern: "[".into(), ..Default::default() };
    assert_eq!(code_of(c.list_accounts(bad_pattern.clone())).await.0, Code::Unauthenticated);
    let (code, message) = code_of(c.list_accounts(authed(&token, bad_pattern))).await;
    assert_eq!(code, Code::InvalidArgument, "{message}");
    let long = ListAccountsRequest { pattern: "*".repeat(100), ..Default::default() };
    let (code, message) = code_of(c.list_accounts(authed(&token, long))).await;
    assert_eq!((code, message.contains("pattern")), (Code::InvalidArgument, true), "{message}");

    // A 100 KB authorization header fails its own call; the connection lives on.
    let mut huge = tonic::Request::new(ListConversationsRequest::default());
    huge.metadata_mut().insert("authorization", format!("Bearer {}", "a".repeat(100_000)).parse().unwrap());
    let (code, message) = code_of(c.list_conversations(huge)).await;
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    c.list_conversations(authed(&token, ListConversationsRequest::default())).await.expect("same connection");

    // A message over the 4 MiB limit: RESOURCE_EXHAUSTED, not OUT_OF_RANGE.
    let big = SendMessageRequest { to: "alice".into(), body: "x".repeat(5 << 20), request_id: String::new() };
    let (code, message) = code_of(c.send_message(authed(&token, big))).await;
    assert_eq!(code, Code::ResourceExhausted, "{message}");

    // Bytes that do not decode: invalid UTF-8 in a string field, and garbage.
    for body in [vec![0x0a, 0x02, 0xff, 0xfe], vec![0xff; 7]] {
        let (code, message) = raw_call(&channel, "/chat.v1.ChatService/CreateAccount", body).await;
        assert_eq!(code, Code::InvalidArgument, "{message}");
    }
}

/// Calls `path` with `body` as the request message's bytes, unchecked.
async fn raw_call(channel: &Channel, path: &'static str, body: Vec<u8>) -> (Code, String) {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let result = grpc
        .unary::<Vec<u8>, Vec<u8>, _>(tonic::Request::new(body), http::uri::PathAndQuery::from_static(path), RawCodec)
        .await;
    match result {
        Ok(_) => (Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_string()),
    }
}

/// Sends and receives raw message bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribe_streams_are_capped_per_session() {
    let cluster = TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 1, &[("CHAT_SUBSCRIBES_PER_SESSION", "2")]).await;
    let mut c = cluster.client(1);
    let token = register(&mut c, "alice").await;
    let other = { register(&mut c, "bob").await };
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(c.subscribe(authed(&token, SubscribeRequest::default())).await.unwrap().into_inner());
    }
    let (code, message) = code_of(c.subscribe(authed(&token, SubscribeRequest::default()))).await;
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    c.subscribe(authed(&other, SubscribeRequest::default())).await.expect("another session has its own");
    // Closing one frees its place (the node notices the stream is gone).
    drop(open.pop());
    eventually("a freed place", Duration::from_secs(10), || {
        let (mut c, token) = (c.clone(), token.clone());
        async move {
            let stream = c.subscribe(authed(&token, SubscribeRequest::default())).await.ok()?;
            Some(stream)
        }
    })
    .await;
}

/// 128 concurrent wrong-password logins, each for another username (so the
/// per-user delay does not stop them): a bounded few are hashed at a time,
/// the rest queue or are refused, and the cluster keeps its leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_hostile_logins_does_not_cost_the_cluster_its_leader() {
    let cluster = TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 3, &[("CHAT_HASHING_QUEUE", "16")]).await;
    let leader = cluster.leader().await;
    let term = cluster.status(leader).await.unwrap().term;
    let mut c = cluster.client(leader);
    register(&mut c, "victim").await;
    let burst: Vec<_> = (0..128)
        .map(|i| {
            let mut c = cluster.client(leader);
            tokio::spawn(async move { code_of(c.login(login(&format!("user{i}"), "wrong-password"))).await.0 })
        })
        .collect();
    let mut codes = Vec::new();
    for task in burst {
        codes.push(task.await.unwrap());
    }
    let refused = codes.iter().filter(|c| **c == Code::ResourceExhausted).count();
    let checked = codes.iter().filter(|c| **c == Code::Unauthenticated).count();
    assert_eq!(refused + checked, 128, "{codes:?}");
    assert!(refused > 0, "the queue bound was reached: {codes:?}");
    let rss = rss_kib(cluster.pid(leader).unwrap());
    eprintln!("128 hostile logins: {checked} checked, {refused} refused; leader RSS {rss} KiB");
    let now = cluster.leader().await;
    assert_eq!((now, cluster.status(now).await.unwrap().term), (leader, term), "no election");
    c.login(login("victim", PASSWORD)).await.expect("real users still log in");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Sessions end when unused for their TTL, stay alive while used (sliding
/// renewal), and are capped per account (a further login ends the oldest).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_expire_when_unused_slide_while_used_and_are_capped() {
    let env = [("CHAT_SESSION_TTL_SECS", "2"), ("CHAT_MAX_SESSIONS", "2"), ("CHAT_SWEEP_MS", "300")];
    let cluster = TestCluster::start(env!("CARGO_BIN_EXE_chat-node"), 1, &env).await;
    let mut c = cluster.client(1);
    c.create_account(CreateAccountRequest { username: "alice".into(), password: PASSWORD.into() }).await.unwrap();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(c.login(login("alice", PASSWORD)).await.unwrap().into_inner().token);
    }
    let list = |token: &str| authed(token, ListConversationsRequest::default());
    assert_eq!(
        code_of(c.list_conversations(list(&tokens[0]))).await.0,
        Code::Unauthenticated,
        "the cap ended the oldest"
    );

    // tokens[1] is used every 300 ms for three seconds, past its TTL: it stays valid.
    let used = tokens[1].clone();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        c.list_conversations(list(&used)).await.expect("a session in use does not expire");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // tokens[2] was not used: it expired (and the sweep removed it).
    let idle = tokens[2].clone();
    eventually("the idle session to expire", Duration::from_secs(5), || {
        let (mut c, idle) = (c.clone(), idle.clone());
        async move { (code_of(c.list_conversations(list(&idle))).await.0 == Code::Unauthenticated).then_some(()) }
    })
    .await;
    c.list_conversations(list(&used)).await.expect("still valid");
}
