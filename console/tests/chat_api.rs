//! The chat view's API against a real cluster over real HTTP, as a hostile
//! browser or a careless script would call it: the session cookie's
//! attributes, CSRF and same-origin refusals, bad input with the field
//! named, bounded bodies, logout, and the live feed with its resume point
//! and the delivered receipt it causes.

use std::time::Duration;

use chat_testkit::{TestCluster, chat_node_binary};

mod support;
use support::{Answer, console, get, open_stream, read_until, request};

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// A logged-in browser: its cookie and CSRF token.
struct Browser {
    addr: String,
    cookie: String,
    csrf: String,
}

impl Browser {
    async fn register(addr: &str, username: &str) -> Browser {
        let credentials = format!(r#"{{"username":"{username}","password":"correct horse battery"}}"#);
        let created = request(addr, "POST", "/api/register", &[JSON], &credentials).await;
        assert_eq!(created.status, 201, "{}", created.body);
        let login = request(addr, "POST", "/api/login", &[JSON], &credentials).await;
        assert_eq!(login.status, 200, "{}", login.body);
        let set_cookie = login.header("set-cookie").unwrap().to_string();
        let cookie = set_cookie.split(';').next().unwrap().to_string();
        Browser { addr: addr.into(), cookie, csrf: login.json()["csrf"].as_str().unwrap().into() }
    }

    async fn call(&self, method: &str, path: &str, body: &str) -> Answer {
        let headers = [JSON, ("Cookie", &self.cookie), ("X-CSRF-Token", &self.csrf)];
        request(&self.addr, method, path, &headers, body).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_live_in_an_http_only_cookie_and_every_change_needs_the_csrf_token() {
    let cluster = TestCluster::start(chat_node_binary(), 1, &[]).await;
    let addr = console(&cluster).await;

    let credentials = r#"{"username":"ann","password":"correct horse battery"}"#;
    assert_eq!(request(&addr, "POST", "/api/register", &[JSON], credentials).await.status, 201);
    let login = request(&addr, "POST", "/api/login", &[JSON], credentials).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let set_cookie = login.header("set-cookie").unwrap();
    assert!(set_cookie.contains("httponly") && set_cookie.contains("samesite=strict"), "{set_cookie}");
    // The page gets its CSRF token and name, never the cluster's session token.
    let session = login.json();
    assert_eq!(session.as_object().unwrap().keys().collect::<Vec<_>>(), ["csrf", "username"]);
    let ann = Browser {
        addr: addr.clone(),
        cookie: set_cookie.split(';').next().unwrap().into(),
        csrf: session["csrf"].as_str().unwrap().into(),
    };
    let current = ann.call("GET", "/api/session", "").await;
    assert_eq!(current.json()["username"], "ann");
    Browser::register(&addr, "bob").await;

    // No cookie, an unknown one: UNAUTHENTICATED.
    let anonymous = get(&addr, "/api/conversations").await;
    assert_eq!((anonymous.status, anonymous.json()["code"].as_str()), (401, Some("UNAUTHENTICATED")));
    let forged = request(&addr, "GET", "/api/session", &[("Cookie", "chat_console_session=00")], "").await;
    assert_eq!(forged.status, 401);

    // A change without the CSRF token, with another's, from another site, or as a form: refused.
    let send = "/api/conversations/bob/messages";
    let body = r#"{"body":"hi"}"#;
    let no_csrf = request(&addr, "POST", send, &[JSON, ("Cookie", &ann.cookie)], body).await;
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
    assert!(no_csrf.json()["error"].as_str().unwrap().contains("x-csrf-token"));
    let wrong =
        request(&addr, "POST", send, &[JSON, ("Cookie", &ann.cookie), ("X-CSRF-Token", "0".repeat(64).as_str())], body)
            .await;
    assert_eq!(wrong.status, 403);
    let cross = [JSON, ("Cookie", &ann.cookie), ("X-CSRF-Token", &ann.csrf), ("Origin", "http://evil.example")];
    assert_eq!(request(&addr, "POST", send, &cross, body).await.status, 403);
    let cross_site = [JSON, ("Cookie", &ann.cookie), ("X-CSRF-Token", &ann.csrf), ("Sec-Fetch-Site", "cross-site")];
    assert_eq!(request(&addr, "POST", send, &cross_site, body).await.status, 403);
    let form =
        [("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", &ann.cookie), ("X-CSRF-Token", &ann.csrf)];
    assert_eq!(request(&addr, "POST", send, &form, "body=hi").await.status, 415);
    let csrf_login = [("Content-Type", "text/plain")];
    assert_eq!(request(&addr, "POST", "/api/login", &csrf_login, credentials).await.status, 415);
    assert!(
        ann.call("GET", "/api/conversations/bob", "").await.json().as_array().unwrap().is_empty(),
        "nothing was sent"
    );

    // With both: sent; a hostile body comes back as the same text, for the page to show as text.
    let xss = r#"<img src=x onerror=alert(1)>"#;
    let sent = ann.call("POST", send, &serde_json::json!({ "body": xss }).to_string()).await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    assert!(sent.header("content-type").unwrap().starts_with("application/json"));
    assert_eq!(sent.json()["body"], xss);
    assert_eq!(sent.json()["from"], "ann");

    // Logout ends it; the old cookie is worth nothing after, and a feed
    // another tab holds open ends too.
    let mut feed = open_stream(&addr, "/api/events", &[("Cookie", &ann.cookie)]).await;
    read_until(&mut feed, |s| s.starts_with("HTTP/1.1 200")).await;
    let out = ann.call("POST", "/api/logout", "{}").await;
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").unwrap().contains("max-age=0"));
    assert_eq!(ann.call("GET", "/api/session", "").await.status, 401);
    read_until(&mut feed, |s| s.contains("event: ended")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_with_the_field_named_and_bodies_are_bounded() {
    let cluster = TestCluster::start(chat_node_binary(), 1, &[]).await;
    let addr = console(&cluster).await;
    let ann = Browser::register(&addr, "ann").await;
    Browser::register(&addr, "bob").await;

    let cases: [(&str, &str, String, u16, &str); 8] = [
        ("POST", "/api/conversations/bob/messages", r#"{"body":"  "}"#.into(), 400, "body"),
        ("POST", "/api/conversations/bob/messages", format!(r#"{{"body":"{}"}}"#, "x".repeat(5000)), 400, "body"),
        ("POST", "/api/conversations/bob/messages", r#"{"text":"hi"}"#.into(), 400, "text"),
        ("POST", "/api/conversations/nobody/messages", r#"{"body":"hi"}"#.into(), 404, ""),
        ("POST", &format!("/api/conversations/{}/messages", "a".repeat(300)), r#"{"body":"hi"}"#.into(), 400, ""),
        ("GET", "/api/conversations/bob?limit=1000", String::new(), 400, "limit"),
        ("POST", "/api/conversations/bob/messages", format!(r#"{{"body":"{}"}}"#, "x".repeat(40_000)), 413, "body"),
        ("DELETE", "/api/messages/999999", "{}".into(), 404, ""),
    ];
    for (method, path, body, status, field) in cases {
        let answer = ann.call(method, path, &body).await;
        assert_eq!(answer.status, status, "{method} {}: {}", &path[..path.len().min(60)], answer.body);
        let error = answer.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(field), "{method} {path}: the error names {field:?}: {error}");
    }
    let register = |body: &'static str| request(&addr, "POST", "/api/register", &[JSON], body);
    assert_eq!(register(r#"{"username":"ann","password":"correct horse battery"}"#).await.status, 409);
    assert_eq!(register(r#"{"username":"<b>","password":"correct horse battery"}"#).await.status, 400);
    assert_eq!(register(r#"{"username":"carl"}"#).await.status, 400);
    let login =
        request(&addr, "POST", "/api/login", &[JSON], r#"{"username":"ann","password":"wrong password"}"#).await;
    assert_eq!((login.status, login.header("set-cookie")), (401, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_live_feed_resumes_after_its_last_event_and_marks_messages_delivered() {
    let cluster = TestCluster::start(chat_node_binary(), 1, &[]).await;
    let addr = console(&cluster).await;
    let ann = Browser::register(&addr, "ann").await;
    let bob = Browser::register(&addr, "bob").await;
    let mut ids = Vec::new();
    for body in ["one", "two"] {
        let sent = ann.call("POST", "/api/conversations/bob/messages", &format!(r#"{{"body":"{body}"}}"#)).await;
        ids.push(sent.json()["id"].as_u64().unwrap());
    }

    // Bob's feed, resumed after the first message: only the second comes, with its id.
    let resume = ids[0].to_string();
    let mut stream = open_stream(&addr, "/api/events", &[("Cookie", &bob.cookie), ("Last-Event-ID", &resume)]).await;
    let seen = read_until(&mut stream, |s| s.contains("\"two\"")).await;
    assert!(seen.contains(&format!("id: {}", ids[1])), "{seen}");
    assert!(!seen.contains("\"one\""), "resumed after the first message: {seen}");

    // The stream sent it: ann sees it delivered (receipts are batched), not read.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = ann.call("GET", "/api/conversations/bob", "").await.json();
        let last = &page.as_array().unwrap()[1];
        assert_eq!(last["read"], false);
        if last["delivered"] == true {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never delivered: {page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // More than four streams for one session: RESOURCE_EXHAUSTED.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = open_stream(&addr, "/api/events", &[("Cookie", &bob.cookie)]).await;
        read_until(&mut s, |s| s.starts_with("HTTP/1.1 200")).await;
        held.push(s);
    }
    let fifth = bob.call("GET", "/api/events", "").await;
    assert_eq!(fifth.status, 429, "{}", fifth.body);
}
