//! The console against a real three-node cluster, over real HTTP: the page
//! and its assets under a strict Content-Security-Policy with no inline
//! script, the cluster as JSON, and the event stream following a kill -9 of
//! the leader to the new one. (A real browser drives it in a later step.)

use std::time::Duration;

use chat_testkit::{TestCluster, chat_node_binary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;
use support::{console, get};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_serves_a_locked_down_page_and_pushes_the_cluster_through_a_failover() {
    let mut cluster = TestCluster::start(chat_node_binary(), 3, &[]).await;
    let addr = console(&cluster).await;

    // The page: scripts from this origin only, none inline; every asset embedded.
    let page = get(&addr, "/").await;
    let (head, body) = (page.head, page.body);
    assert_eq!(page.status, 200, "{head}");
    assert!(head.contains("content-security-policy: default-src 'none'; script-src 'self'"), "{head}");
    assert!(head.contains("x-frame-options: deny") && head.contains("x-content-type-options: nosniff"));
    let scripts = [r#"<script src="/cluster.js" defer></script>"#, r#"<script src="/chat.js" defer></script>"#];
    assert!(scripts.iter().all(|s| body.contains(s)), "{body}");
    assert_eq!(body.matches("<script").count(), scripts.len(), "no inline script");
    assert!(!body.contains("http://") && !body.contains("https://"), "no third-party asset");
    for script in ["/cluster.js", "/chat.js"] {
        let js = get(&addr, script).await;
        assert!(js.head.contains("content-type: text/javascript"), "{}", js.head);
        assert!(js.body.contains("textContent") && !js.body.contains("innerHTML"), "text is never parsed as HTML");
        assert!(
            !js.body.contains("localStorage") && !js.body.contains("document.cookie"),
            "no token in scripts' reach"
        );
    }

    // The cluster now, as JSON.
    let leader = cluster.leader().await;
    let view = get(&addr, "/api/cluster").await.json();
    assert_eq!(view["leader_id"], leader);
    assert_eq!(view["members"].as_array().unwrap().len(), 3);

    // The stream: events keep coming, and after a kill -9 of the leader one names another.
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream.write_all(b"GET /api/cluster/stream HTTP/1.1\r\nHost: console\r\n\r\n").await.unwrap();
    let mut seen = String::new();
    let mut buf = vec![0u8; 16 * 1024];
    let read_events = |seen: &String| seen.matches("event: cluster").count();
    while read_events(&seen) < 2 {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.to_ascii_lowercase().contains("content-type: text/event-stream"), "{seen}");
    cluster.kill(leader);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let new_leader = loop {
        assert!(tokio::time::Instant::now() < deadline, "no event named a new leader: {seen}");
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        let last = seen.rsplit("data: ").next().unwrap_or_default().lines().next().unwrap_or_default();
        if let Ok(view) = serde_json::from_str::<serde_json::Value>(last)
            && let Some(id) = view["leader_id"].as_u64()
            && id != leader
        {
            break id;
        }
    };
    assert_ne!(new_leader, leader);
}

#[test]
fn the_view_is_pushed_at_least_five_times_a_second() {
    assert!(chat_console::feed::PUSH_EVERY <= Duration::from_millis(200));
}

/// Off loopback the console serves HTTPS with a certificate of the cluster's
/// CA (role `chat-console`): a browser that trusts the CA gets the page over
/// TLS 1.2+ and HTTP/1.1; a client that does not is refused in the handshake;
/// plain HTTP on that port gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn off_loopback_the_console_serves_https_with_the_clusters_ca() {
    use std::sync::Arc;

    use chat_tls::{Ca, Leaf};
    use rustls_pki_types::ServerName;

    let cluster = TestCluster::start(chat_node_binary(), 1, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    cluster.tls.ca.write_leaf(&Leaf::console(["127.0.0.1"]), dir.path()).unwrap();
    let config = chat_console::tls::config(dir.path().to_path_buf()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = chat_client::Client::new(cluster.addrs(), cluster.client_options()).unwrap();
    let app = chat_console::http::router(chat_console::state::ConsoleState::new(client, true));
    let listener = chat_console::tls::TlsListener::new(listener, config).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let https_get = |roots: Vec<rustls_pki_types::CertificateDer<'static>>| async move {
        let mut config = chat_tls::config::client(&roots, None).unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await?;
        tls.write_all(b"GET /api/cluster HTTP/1.1\r\nHost: console\r\nConnection: close\r\n\r\n").await?;
        let mut text = String::new();
        tls.read_to_string(&mut text).await?;
        std::io::Result::Ok(text)
    };
    let ca = chat_tls::files::certs(cluster.tls.ca.cert_pem().as_bytes()).unwrap();
    let answer = https_get(ca).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("content-security-policy"), "{answer}");

    let stranger = Ca::generate("another").unwrap();
    let refused = https_get(chat_tls::files::certs(stranger.cert_pem().as_bytes()).unwrap()).await;
    assert!(refused.is_err(), "a certificate of another CA is not trusted");

    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\nHost: console\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut bytes)).await;
    assert!(!String::from_utf8_lossy(&bytes).contains("HTTP/1.1 200"), "plain HTTP is not served there");
}

/// The binary will not serve plain HTTP off loopback unless told so
/// explicitly: it exits naming the way out, before binding anything.
#[test]
fn off_loopback_without_a_certificate_the_console_refuses_to_start() {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_chat-console"))
        .args(["--addr", "127.0.0.1:1", "--plaintext", "--listen", "0.0.0.0:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let Ok(output) = rx.recv_timeout(Duration::from_secs(30)) else {
        // SAFETY: signalling our own child, which has not been reaped (it is still running).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("chat-console kept running on 0.0.0.0 without --tls-dir or --plaintext-http");
    };
    let output = output.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--tls-dir") && stderr.contains("--plaintext-http"), "{stderr}");
}
