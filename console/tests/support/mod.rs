//! What the console's tests share: a console on a loopback port in front of
//! a real cluster, and a plain HTTP/1.1 client that shows every header.

#![allow(dead_code)]

use chat_client::Client;
use chat_console::state::ConsoleState;
use chat_testkit::TestCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Starts the console for `cluster` on a loopback port; returns its address.
pub async fn console(cluster: &TestCluster) -> String {
    let client = Client::new(cluster.addrs(), cluster.client_options()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let app = chat_console::http::router(ConsoleState::new(client, false));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// An HTTP answer: status, lower-cased head, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The value of the first header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")))
    }
}

/// One HTTP/1.1 request with `headers`; the connection closes after it.
pub async fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Answer { status, head: head.to_ascii_lowercase(), body: body.to_string() }
}

pub async fn get(addr: &str, path: &str) -> Answer {
    request(addr, "GET", path, &[], "").await
}

/// Opens a Server-Sent Events stream at `path` with `headers`.
pub async fn open_stream(addr: &str, path: &str, headers: &[(&str, &str)]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut text = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).await.unwrap();
    stream
}

/// Reads `stream` until `done` holds for all that was read; returns it.
/// Panics if it ends first or goes quiet for 10 s.
pub async fn read_until(stream: &mut TcpStream, done: impl Fn(&str) -> bool) -> String {
    let mut seen = String::new();
    let mut buf = vec![0u8; 16 * 1024];
    while !done(&seen) {
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf)).await;
        let n = read.unwrap_or_else(|_| panic!("nothing more within 10 s: {seen}")).unwrap();
        assert!(n > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen
}
