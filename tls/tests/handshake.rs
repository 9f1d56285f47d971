//! Real TLS handshakes over loopback TCP between [`chat_tls::server::incoming`]
//! and [`chat_tls::connect::connector`]: who gets in on a mutual-TLS port.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chat_tls::config::{self, ClientAuth};
use chat_tls::connect::{Tcp, connector};
use chat_tls::server::incoming;
use chat_tls::{Ca, Leaf, Live, Material, Role, TlsDir};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower::ServiceExt;

fn material(ca: &Ca, leaf: &Leaf, dir: &std::path::Path) -> Material {
    ca.write_leaf(leaf, dir).unwrap().load().unwrap()
}

struct Server {
    uri: http::Uri,
    /// Connections refused by the handshake (counted through `on_refused`).
    refused: Arc<AtomicU64>,
    /// The certificates of the callers the server accepted, in order.
    accepted: tokio::sync::mpsc::Receiver<Option<Role>>,
}

/// A mutual-TLS server on loopback that answers each accepted connection's
/// one byte with the same byte.
async fn mtls_server(server: &Material) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap()).parse().unwrap();
    let refused = Arc::new(AtomicU64::new(0));
    let config = Live::fixed(config::server(server, ClientAuth::Required).unwrap());
    let counter = refused.clone();
    let on_refused = Arc::new(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let mut conns = Box::pin(incoming(listener, config, "test", on_refused));
    let (tx, accepted) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Some(Ok(mut tls)) = conns.next().await {
            let role = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| chat_tls::role::parse_leaf(&c[0]).ok())
                .and_then(|l| l.role);
            tx.send(role).await.unwrap();
            let mut b = [0u8; 1];
            if tls.read_exact(&mut b).await.is_ok() {
                let _ = tls.write_all(&b).await;
            }
        }
    });
    Server { uri, refused, accepted }
}

/// Connects with `client` and does one echo; the error if the handshake or echo failed.
async fn echo(uri: &http::Uri, client: rustls::ClientConfig) -> Result<(), String> {
    let connect = connector(Tcp, Live::fixed(client));
    let io = connect.oneshot(uri.clone()).await.map_err(|e| e.to_string())?;
    let mut tls = io.into_inner();
    // TLS 1.3 reports a refused client certificate only after the client's
    // handshake completes: the first read sees the server's alert.
    tls.write_all(b"x").await.map_err(|e| e.to_string())?;
    let mut b = [0u8; 1];
    tls.read_exact(&mut b).await.map_err(|e| e.to_string())?;
    Ok(())
}

#[tokio::test]
async fn only_callers_with_a_certificate_of_the_clusters_ca_get_in() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::generate("cluster").unwrap();
    let node = material(&ca, &Leaf::node(["127.0.0.1"]), &tmp.path().join("node"));
    let mut server = mtls_server(&node).await;

    // A member: its own certificate as client certificate.
    echo(&server.uri, config::mutual_client(&node).unwrap()).await.unwrap();
    assert_eq!(server.accepted.recv().await.unwrap(), Some(Role::Node));

    // The operator: a client-only certificate of the same CA.
    let op = material(&ca, &Leaf::client(Role::Operator), &tmp.path().join("op"));
    echo(&server.uri, config::mutual_client(&op).unwrap()).await.unwrap();
    assert_eq!(server.accepted.recv().await.unwrap(), Some(Role::Operator));

    // A stranger who trusts the CA but has no certificate.
    let err = echo(&server.uri, config::client(&node.roots, None).unwrap()).await.unwrap_err();
    assert!(err.contains("CertificateRequired") || err.contains("certificate"), "{err}");

    // A certificate from another CA, even with the node's common name.
    let other = Ca::generate("other").unwrap();
    let forged = material(&other, &Leaf::node(["127.0.0.1"]), &tmp.path().join("forged"));
    let forged_client = config::client(&node.roots, Some((forged.chain, forged.key))).unwrap();
    let err = echo(&server.uri, forged_client).await.unwrap_err();
    assert!(err.contains("UnknownCA") || err.contains("alert") || err.contains("reset"), "{err}");

    // Plaintext: not TLS at all.
    let mut tcp = tokio::net::TcpStream::connect(server.uri.authority().unwrap().as_str()).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await.expect("closed");

    // None of the three got a connection through; each was counted.
    assert!(server.accepted.try_recv().is_err());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.refused.load(Ordering::Relaxed) < 3 {
        assert!(tokio::time::Instant::now() < deadline, "refusals not counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_client_refuses_a_server_whose_certificate_names_another_host() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::generate("cluster").unwrap();
    let node = material(&ca, &Leaf::node(["demo-0.demo-peers.ns.svc"]), &tmp.path().join("node"));
    let server = mtls_server(&node).await;
    let err = echo(&server.uri, config::mutual_client(&node).unwrap()).await.unwrap_err();
    assert!(err.contains("NotValidForName") || err.contains("not valid for"), "{err}");
}

#[tokio::test]
async fn a_client_refuses_a_server_of_another_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::generate("cluster").unwrap();
    let other = Ca::generate("impostor").unwrap();
    let impostor = material(&other, &Leaf::node(["127.0.0.1"]), &tmp.path().join("impostor"));
    let server = mtls_server(&impostor).await;
    let ours = material(&ca, &Leaf::node(["127.0.0.1"]), &tmp.path().join("node"));
    let err = echo(&server.uri, config::mutual_client(&ours).unwrap()).await.unwrap_err();
    assert!(err.contains("UnknownIssuer") || err.contains("invalid peer certificate"), "{err}");
}

#[test]
fn tls_dir_is_the_kubernetes_secret_layout() {
    let dir = TlsDir::new("/etc/chat/tls");
    assert_eq!(dir.ca().to_str(), Some("/etc/chat/tls/ca.crt"));
    assert_eq!(dir.cert().to_str(), Some("/etc/chat/tls/tls.crt"));
    assert_eq!(dir.key().to_str(), Some("/etc/chat/tls/tls.key"));
}
