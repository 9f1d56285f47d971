//! kubectl-chat and the client library against a real 3-node cluster of
//! `chat-node` processes: the whole command set, exit codes, the JSON
//! contracts, and failover in the middle of a send loop and of a watch.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use chat_client::{Client, ClientOptions, ReadConsistency};
use chat_testkit::*;

/// Runs `kubectl-chat` with its config under `home` against `cluster`.
fn kchat(cluster: &TestCluster, home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubectl-chat"));
    cmd.args(args)
        .env("CHAT_ADDR", cluster.addrs().join(","))
        .env("CHAT_CA", cluster.tls.dir.join("ca.crt"))
        .env("XDG_CONFIG_HOME", home)
        .env_remove("CHAT_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_command_set() {
    let cluster = TestCluster::start(chat_node_binary(), 3, &[]).await;
    let alice = tempfile::tempdir().unwrap();
    let bob = tempfile::tempdir().unwrap();
    let (a, b) = (alice.path(), bob.path());

    // Accounts: password from stdin; a duplicate is a user error (exit 1).
    ok(&kchat(&cluster, a, &["register", "alice", "--password-stdin"], Some("alice-password\n")));
    ok(&kchat(&cluster, b, &["register", "bob", "--password-stdin"], Some("bob-password\n")));
    let dup = kchat(&cluster, a, &["register", "alice", "--password-stdin"], Some("alice-password\n"));
    assert_eq!(dup.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let wrong = kchat(&cluster, a, &["login", "alice", "--password-stdin"], Some("nope-nope\n"));
    assert_eq!(wrong.status.code(), Some(1));

    ok(&kchat(&cluster, a, &["login", "alice", "--password-stdin"], Some("alice-password\n")));
    ok(&kchat(&cluster, b, &["login", "bob", "--password-stdin"], Some("bob-password\n")));
    assert_eq!(ok(&kchat(&cluster, a, &["whoami"], None)).trim(), "alice");
    let sessions = a.join("kubectl-chat/sessions.json");
    assert_eq!(std::fs::metadata(&sessions).unwrap().permissions().mode() & 0o777, 0o600, "session file is private");

    // Messages.
    assert!(ok(&kchat(&cluster, a, &["send", "bob", "hello", "there"], None)).starts_with("sent #"));
    let sent = json(&kchat(&cluster, a, &["send", "bob", "second", "-o", "json"], None));
    let second_id = sent["id"].as_u64().unwrap();
    let inbox = json(&kchat(&cluster, b, &["inbox", "-o", "json"], None));
    assert_eq!((inbox[0]["partner"].as_str(), inbox[0]["unread"].as_u64()), (Some("alice"), Some(2)));
    let read = json(&kchat(&cluster, b, &["read", "alice", "-o", "json"], None));
    let read = read.as_array().unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[0]["body"], "hello there");
    assert_eq!(
        (read[0]["from"].as_str(), read[0]["to"].as_str(), read[0]["read"].as_bool()),
        (Some("alice"), Some("bob"), Some(false))
    );
    assert!(read[0]["sent_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(read[0].as_object().unwrap().len(), 7, "read -o json has exactly the contract fields");
    assert!(read[0]["delivered"].is_boolean(), "{}", read[0]);
    assert!(
        ok(&kchat(&cluster, b, &["read"], None)).contains("hello there"),
        "read defaults to the latest conversation"
    );

    assert_eq!(json(&kchat(&cluster, b, &["mark-read", "-o", "json"], None))["marked"], 2);
    let read = json(&kchat(&cluster, b, &["read", "alice", "-o", "json", "--limit", "1"], None));
    assert_eq!((read[0]["id"].as_u64(), read[0]["read"].as_bool()), (Some(second_id), Some(true)));
    assert_eq!(ok(&kchat(&cluster, b, &["users", "a*"], None)).trim(), "alice");

    // Ownership is enforced server-side; deleting your own works.
    let other = tempfile::tempdir().unwrap();
    ok(&kchat(&cluster, other.path(), &["register", "carol", "--password-stdin"], Some("carol-password\n")));
    ok(&kchat(&cluster, other.path(), &["login", "carol", "--password-stdin"], Some("carol-password\n")));
    let denied = kchat(&cluster, other.path(), &["delete-messages", &second_id.to_string()], None);
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("belongs to other users"));
    assert_eq!(
        json(&kchat(&cluster, b, &["delete-messages", &second_id.to_string(), "-o", "json"], None))["deleted"],
        1
    );

    // Status: the JSON contract, one leader.
    let status = json(&kchat(&cluster, a, &["status", "-o", "json"], None));
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(members.iter().filter(|m| m["role"] == "leader").count(), 1);
    assert!(members.iter().all(|m| m["voter"].as_bool() == Some(true)));
    assert_eq!(members.iter().find(|m| m["role"] == "leader").unwrap()["id"], status["leader_id"]);
    for key in ["id", "address", "role", "voter", "term", "last_log_index", "commit_index", "applied_index"] {
        assert!(members[0].get(key).is_some(), "status member has {key}");
    }
    assert!(ok(&kchat(&cluster, a, &["status"], None)).contains("leader"));

    // Logout forgets the session; delete-account removes the user.
    ok(&kchat(&cluster, a, &["logout"], None));
    assert_eq!(kchat(&cluster, a, &["whoami"], None).status.code(), Some(1));
    ok(&kchat(&cluster, other.path(), &["delete-account", "--yes"], None));
    assert_eq!(ok(&kchat(&cluster, b, &["users", "carol"], None)).trim(), "");

    // A small load run: one row per concurrency level, every message acknowledged.
    let rows = json(&kchat(&cluster, a, &["bench", "--clients", "1,4", "--messages", "40", "-o", "json"], None));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[1]["clients"].as_u64(), rows[1]["messages"].as_u64()), (Some(4), Some(40)));
    assert!(
        rows.iter().all(|r| r["per_second"].as_f64().unwrap() > 0.0
            && r["p99_ms"].as_f64().unwrap() >= r["p50_ms"].as_f64().unwrap())
    );

    // An unreachable cluster is exit code 2.
    let mut down = Command::new(env!("CARGO_BIN_EXE_kubectl-chat"));
    down.args(["--addr", "127.0.0.1:9", "--timeout", "2", "status"])
        .env("XDG_CONFIG_HOME", a)
        .env("CHAT_CA", cluster.tls.dir.join("ca.crt"));
    assert_eq!(down.output().unwrap().status.code(), Some(2));
    // Without the cluster's CA (and no explicit --plaintext) nothing is sent: a user error.
    let mut no_ca = Command::new(env!("CARGO_BIN_EXE_kubectl-chat"));
    no_ca.args(["--addr", &cluster.addrs()[0], "status"]).env("XDG_CONFIG_HOME", a).env_remove("CHAT_CA");
    let out = no_ca.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ca"), "{}", String::from_utf8_lossy(&out.stderr));
    // A CA that did not sign the cluster's certificates: refused, never trusted.
    let other = tempfile::tempdir().unwrap();
    let stranger = chat_tls::Ca::load_or_generate(other.path(), "another").unwrap();
    drop(stranger);
    let mut wrong_ca = Command::new(env!("CARGO_BIN_EXE_kubectl-chat"));
    wrong_ca
        .args(["--addr", &cluster.addrs()[0], "--timeout", "2", "status"])
        .env("XDG_CONFIG_HOME", a)
        .env("CHAT_CA", other.path().join("ca.crt"));
    let out = wrong_ca.output().unwrap();
    assert_ne!(out.status.code(), Some(0), "a server the CA did not sign is not trusted");
    // Help is complete for every subcommand.
    let help = Command::new(env!("CARGO_BIN_EXE_kubectl-chat")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    for sub in [
        "register",
        "login",
        "logout",
        "whoami",
        "send",
        "read",
        "inbox",
        "mark-read",
        "delete-messages",
        "delete-account",
        "users",
        "watch",
        "chat",
        "status",
    ] {
        assert!(help.contains(sub), "--help lists {sub}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_loop_through_a_leader_kill_loses_nothing_and_duplicates_nothing() {
    let mut cluster = TestCluster::start(chat_node_binary(), 3, &[]).await;
    let client =
        Client::new(cluster.addrs(), ClientOptions { deadline: Duration::from_secs(20), ..cluster.client_options() })
            .unwrap();
    client.register("alice", PASSWORD).await.unwrap();
    client.register("bob", PASSWORD).await.unwrap();
    let alice = client.clone().with_token(client.login("alice", PASSWORD).await.unwrap());

    let total = 120;
    for i in 0..total {
        if i == 40 {
            let leader = cluster.leader().await;
            cluster.kill(leader);
        }
        alice.send("bob", &format!("m{i}")).await.unwrap_or_else(|e| panic!("send m{i}: {e}"));
    }
    let messages = alice.read("bob", 1000, 0, ReadConsistency::Linearizable).await.unwrap();
    let bodies: Vec<String> = messages.iter().map(|m| m.body.clone()).collect();
    let expected: Vec<String> = (0..total).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, expected, "every send exactly once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_survives_the_leader_dying() {
    let mut cluster = TestCluster::start(chat_node_binary(), 3, &[]).await;
    let client = Client::new(cluster.addrs(), cluster.client_options()).unwrap();
    client.register("alice", PASSWORD).await.unwrap();
    client.register("bob", PASSWORD).await.unwrap();
    let alice = client.clone().with_token(client.login("alice", PASSWORD).await.unwrap());
    let home = tempfile::tempdir().unwrap();
    ok(&kchat(&cluster, home.path(), &["login", "bob", "--password-stdin"], Some(&format!("{PASSWORD}\n"))));

    // `watch -o json` in the background; its lines arrive on a channel.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_kubectl-chat"))
        .args(["watch", "-o", "json", "--from", "0"])
        .env("CHAT_ADDR", cluster.addrs().join(","))
        .env("CHAT_CA", cluster.tls.dir.join("ca.crt"))
        .env("XDG_CONFIG_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |rx: &mpsc::Receiver<String>| -> serde_json::Value {
        serde_json::from_str(&rx.recv_timeout(Duration::from_secs(30)).expect("watch printed nothing for 30s")).unwrap()
    };

    for i in 0..5 {
        alice.send("bob", &format!("before {i}")).await.unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(next(&rx));
    }
    let leader = cluster.leader().await;
    cluster.kill(leader);
    for i in 0..5 {
        alice.send("bob", &format!("after {i}")).await.unwrap();
    }
    for _ in 0..5 {
        seen.push(next(&rx));
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let bodies: Vec<&str> = seen.iter().map(|m| m["body"].as_str().unwrap()).collect();
    let expected: Vec<String> =
        (0..5).map(|i| format!("before {i}")).chain((0..5).map(|i| format!("after {i}"))).collect();
    assert_eq!(bodies, expected, "no gap, no duplicate across the failover");
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err(), "nothing extra");
}

/// Reads default to SESSION: each command saves the session's position
/// (`chat-index`), so a `read` in a later command sees what an earlier `send`
/// wrote, from any member; `--max-staleness` bounds stale reads only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_follow_the_sessions_position_across_commands() {
    let cluster = TestCluster::start(chat_node_binary(), 3, &[]).await;
    let home = tempfile::tempdir().unwrap();
    let a = home.path();
    ok(&kchat(&cluster, a, &["register", "alice", "--password-stdin"], Some("alice-password\n")));
    ok(&kchat(&cluster, a, &["register", "bob", "--password-stdin"], Some("bob-password\n")));
    ok(&kchat(&cluster, a, &["login", "alice", "--password-stdin"], Some("alice-password\n")));
    let saved = |home: &Path| -> u64 {
        let text = std::fs::read_to_string(home.join("kubectl-chat/sessions.json")).unwrap();
        let all: serde_json::Value = serde_json::from_str(&text).unwrap();
        all.as_object().unwrap().values().next().unwrap()["index"].as_u64().unwrap()
    };
    let after_login = saved(a);
    assert!(after_login > 0, "login saves the session's position");
    ok(&kchat(&cluster, a, &["send", "bob", "first"], None));
    let after_send = saved(a);
    assert!(after_send > after_login, "a write moves the position: {after_login} → {after_send}");

    let read = json(&kchat(&cluster, a, &["read", "bob", "-o", "json"], None));
    assert_eq!(read.as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect::<Vec<_>>(), ["first"]);
    let stale = json(&kchat(
        &cluster,
        a,
        &["read", "bob", "--consistency", "stale", "--max-staleness", "5s", "-o", "json"],
        None,
    ));
    assert!(stale.is_array());
    let wrong = kchat(&cluster, a, &["read", "bob", "--max-staleness", "5s"], None);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("--max-staleness bounds stale reads only"));
}

/// `kubectl chat console` serves the web console through the plugin's own
/// connection and prints where; its API answers with the cluster. It serves
/// loopback only.
#[tokio::test(flavor = "multi_thread")]
async fn console_serves_the_cluster_view_and_prints_its_url() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let cluster = TestCluster::start(chat_node_binary(), 1, &[]).await;
    let home = tempfile::tempdir().unwrap();
    let mut console = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-chat"))
        .args(["console", "--listen", "127.0.0.1:0", "--no-browser"])
        .env("CHAT_ADDR", cluster.addrs().join(","))
        .env("CHAT_CA", cluster.tls.dir.join("ca.crt"))
        .env("XDG_CONFIG_HOME", home.path())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(console.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap();
    let first = first.expect("the console prints its URL");
    let addr = first
        .strip_prefix("console: http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.write_all(b"GET /api/cluster HTTP/1.1\r\nHost: console\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let view: serde_json::Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(view["members"].as_array().unwrap().len(), 1, "{view}");
    console.kill().await.unwrap();

    // Never off loopback: it would serve your session to the network over plain HTTP.
    let refused = kchat(&cluster, home.path(), &["console", "--listen", "0.0.0.0:0", "--no-browser"], None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("loopback only"), "{stderr}");
}
