//! The console in a real browser: Debian's Chromium, driven through
//! ChromeDriver (WebDriver) from Rust, against a real three-node cluster and
//! a real console. Two browser sessions register two people who write to
//! each other and see messages arrive live, read receipts appear, a hostile
//! body render as text; the cluster view shows the leader, and after a
//! kill -9 of it shows the new one within 2 s while the chat keeps
//! receiving, with no duplicate and no gap. Screenshots of both views are
//! saved as PNGs (the path is printed).
//!
//! Needs `chromium` and `chromium-driver` (`.ci/run` installs them from
//! apt); `CHROMEDRIVER` / `CHROMIUM` name other binaries.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chat_client::Client;
use chat_testkit::{TestCluster, chat_node_binary};
use fantoccini::{ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::time::Instant;

mod support;

/// A ChromeDriver on a loopback port, in its own process group so the
/// browsers it starts die with it.
struct Driver {
    child: Child,
    url: String,
    profiles: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        assert!(
            std::path::Path::new(&binary).exists(),
            "no ChromeDriver at {binary}: apt-get install -y chromium chromium-driver (or set CHROMEDRIVER)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(&binary)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {binary}: {e}"))
        };
        Driver { child, url: format!("http://127.0.0.1:{port}"), profiles: tempfile::tempdir().unwrap() }
    }

    /// A new headless Chromium with its own empty profile (its own cookies).
    async fn browser(&self, name: &str) -> fantoccini::Client {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let profile = self.profiles.path().join(name);
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,860",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities.as_object().unwrap().clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match builder.connect(&self.url).await {
                Ok(client) => return client,
                // ChromeDriver is still starting.
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => panic!("no browser session from {}: {e}", self.url),
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's process group.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Runs `script` in the page until it returns something other than
/// null/false; returns that. Panics with `what` after `within`.
async fn until(browser: &fantoccini::Client, what: &str, within: Duration, script: &str) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let value = browser.execute(script, vec![]).await.unwrap_or(Value::Null);
        if !matches!(value, Value::Null | Value::Bool(false)) {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const A_WHILE: Duration = Duration::from_secs(15);

async fn register(browser: &fantoccini::Client, url: &str, username: &str) {
    browser.goto(url).await.unwrap();
    browser.find(Locator::Css("#username")).await.unwrap().send_keys(username).await.unwrap();
    browser.find(Locator::Css("#password")).await.unwrap().send_keys("correct horse battery").await.unwrap();
    browser.find(Locator::Css("#register")).await.unwrap().click().await.unwrap();
    let shown = format!("return document.getElementById('whoami').textContent === '{username}'");
    until(browser, &format!("{username} logged in"), A_WHILE, &shown).await;
}

async fn type_and_send(browser: &fantoccini::Client, text: &str) {
    let body = browser.find(Locator::Css("#body")).await.unwrap();
    body.send_keys(text).await.unwrap();
    browser.find(Locator::Css("#send")).await.unwrap().click().await.unwrap();
}

/// A script: is there a message in the open conversation with this exact text?
fn shows_body(text: &str, side: &str) -> String {
    format!(
        "return [...document.querySelectorAll('#messages li.{side} .body')].some(e => e.textContent === {})",
        json!(text)
    )
}

fn screenshots_dir() -> PathBuf {
    let dir = std::env::var_os("CHAT_CONSOLE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &fantoccini::Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = screenshots_dir().join(name);
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_people_chat_in_real_browsers_through_a_leader_failover() {
    let driver = Driver::start();
    let mut cluster = TestCluster::start(chat_node_binary(), 3, &[]).await;
    let url = format!("http://{}/", support::console(&cluster).await);
    let ann = driver.browser("ann").await;
    let bob = driver.browser("bob").await;
    register(&ann, &url, "ann").await;
    register(&bob, &url, "bob").await;

    // Ann finds Bob and writes; Bob sees the conversation, unread, and opens it.
    ann.find(Locator::Css("#search-q")).await.unwrap().send_keys("bo\u{E007}").await.unwrap();
    ann.wait()
        .at_most(A_WHILE)
        .for_element(Locator::Css("#search-results button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    type_and_send(&ann, "hello Bob").await;
    let unread = "return document.querySelector('#conversations li[data-partner=\"ann\"] .unread')?.textContent";
    assert_eq!(until(&bob, "Bob's unread count", A_WHILE, unread).await, "1");
    bob.find(Locator::Css("#conversations li[data-partner=\"ann\"] button")).await.unwrap().click().await.unwrap();
    until(&bob, "Bob reads Ann's message", A_WHILE, &shows_body("hello Bob", "theirs")).await;

    // Ann's side: the message is read (✓✓), without Ann doing anything.
    let receipt = "return document.querySelector('#messages li.mine .receipt')?.dataset.receipt === 'read' \
                   && document.querySelector('#messages li.mine .receipt').textContent";
    assert_eq!(until(&ann, "Ann sees the read receipt", A_WHILE, receipt).await, "✓✓ read");

    // Bob answers; it arrives live in Ann's open conversation.
    type_and_send(&bob, "hi Ann").await;
    until(&ann, "Ann gets Bob's answer live", A_WHILE, &shows_body("hi Ann", "theirs")).await;

    // A hostile body is text, nothing more: no element made from it, no script run.
    let xss = "<img src=x onerror=alert(1)>";
    type_and_send(&ann, xss).await;
    until(&bob, "Bob gets the hostile body as text", A_WHILE, &shows_body(xss, "theirs")).await;
    let images = bob.execute("return document.querySelectorAll('#messages img').length", vec![]).await.unwrap();
    assert_eq!(images, 0);
    assert!(bob.get_alert_text().await.is_err(), "no alert opened");

    // Ann has the conversation open, so Bob's answer is read too, and Bob's
    // open conversation carries no unread count.
    until(&bob, "Bob sees his answer read", A_WHILE, receipt).await;
    let no_badge = "return !document.querySelector('#conversations li[data-partner=\"ann\"] .unread')";
    until(&bob, "no unread count on the open conversation", A_WHILE, no_badge).await;
    screenshot(&bob, "chat.png").await;

    // The cluster view (Ann's tab switches without a reload) shows the leader.
    let leader = cluster.leader().await;
    ann.execute("location.hash = '#cluster'", vec![]).await.unwrap();
    let shown_leader = "return document.getElementById('summary').dataset.leader || null";
    let shown = until(&ann, "the leader shown", A_WHILE, shown_leader).await;
    assert_eq!(shown, leader.to_string());
    let rows = ann.execute("return document.querySelectorAll('#members tbody tr').length", vec![]).await.unwrap();
    assert_eq!(rows, 3);

    // Ann keeps writing through another client while the leader dies.
    let client = Client::new(cluster.addrs(), cluster.client_options()).unwrap();
    let token = client.login("ann", "correct horse battery").await.unwrap();
    let writer = client.with_token(token);
    let mut sent = vec![writer.send("bob", "before the failover").await.unwrap().id];
    cluster.kill(leader);
    let observer = Client::new(cluster.addrs(), cluster.client_options()).unwrap();
    let deadline = Instant::now() + A_WHILE;
    let (new_leader, elected_at) = loop {
        assert!(Instant::now() < deadline, "no new leader");
        if let Ok(status) = observer.cluster_status().await
            && let Some(id) = status.leader_id
            && id != leader
        {
            break (id, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let highlighted = format!(
        "return document.getElementById('summary').dataset.leader === '{new_leader}' \
         && document.querySelector('#members tr.leader')?.dataset.id === '{new_leader}'"
    );
    until(&ann, "the new leader highlighted", A_WHILE, &highlighted).await;
    let shown_after = elected_at.elapsed();
    assert!(
        shown_after <= Duration::from_secs(2),
        "the view showed the new leader {shown_after:?} after it was elected"
    );
    println!("cluster view: leader {leader} killed; {new_leader} shown {shown_after:?} after it was elected");
    for i in 0..5 {
        sent.push(writer.send("bob", &format!("after the failover {i}")).await.unwrap().id);
    }

    // Bob's open conversation got every one, each once, in order.
    until(
        &bob,
        "Bob gets the messages sent across the failover",
        A_WHILE,
        &shows_body("after the failover 4", "theirs"),
    )
    .await;
    let arrivals: Vec<u64> =
        serde_json::from_value(bob.execute("return chat.arrivals", vec![]).await.unwrap()).unwrap();
    for id in &sent {
        assert_eq!(arrivals.iter().filter(|a| *a == id).count(), 1, "message {id} arrived once: {arrivals:?}");
    }
    let mut sorted = arrivals.clone();
    sorted.dedup();
    assert_eq!(sorted, arrivals, "no duplicate in the feed");
    assert!(arrivals.windows(2).all(|w| w[0] < w[1]), "in order: {arrivals:?}");
    screenshot(&ann, "cluster.png").await;

    ann.close().await.unwrap();
    bob.close().await.unwrap();
}
