//! Kube mode through the real binary. Against a small API server with real
//! WebSocket port-forwarding in front of a real 3-node cluster: resolve the
//! only ReplicatedChat, reach the leader the client Service selects, chat, see
//! every member in `status`, and keep going after the leader is killed. And
//! the failure paths: no usable kubeconfig (user error, exit 1), an API
//! server that cannot be reached (cluster unavailable, exit 2).

mod fake_api;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use chat_testkit::{TestCluster, chat_node_binary};
use fake_api::FakeApi;

/// A kubeconfig for `server`, namespace `chat`.
fn kubeconfig(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters: [{{name: test, cluster: {{server: '{server}'}}}}]\n\
             users: [{{name: test, user: {{}}}}]\n\
             contexts: [{{name: test, context: {{cluster: test, user: test, namespace: chat}}}}]\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_mode_port_forwards_to_the_leader_and_survives_its_death() {
    // TLS inside the tunnel: the plugin trusts the CA from the operator's
    // ConfigMap and checks each pod's DNS name, which the certificates carry
    // as the operator's do.
    let mut cluster = TestCluster::empty(chat_node_binary(), &[]);
    cluster.tls.extra_hosts.push("*.demo-peers.chat.svc".into());
    for id in 1..=3 {
        cluster.add_node(id);
    }
    cluster.wait_voters(3).await;
    let nodes: BTreeMap<u64, String> = cluster.nodes.iter().map(|n| (n.id, n.addr.clone())).collect();
    let peers: BTreeMap<u64, String> = cluster.nodes.iter().map(|n| (n.id, n.peer.clone())).collect();
    let forwards = Arc::new(Mutex::new(Vec::new()));
    let server = FakeApi {
        nodes: Arc::new(nodes),
        peers: Arc::new(peers),
        admin_secret: Some(admin_secret(&cluster.tls.ca)),
        ca_pem: cluster.tls.ca.cert_pem().to_string(),
        client_tls: cluster.tls.client.clone(),
        forwards: forwards.clone(),
    }
    .start()
    .await;
    let home = tempfile::tempdir().unwrap();
    let config = kubeconfig(home.path(), &server);
    let chat = |args: &[&str]| {
        let out = kubectl_chat(home.path(), &config, args);
        assert!(out.status.success(), "kubectl chat {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };

    let leader = cluster.leader().await;
    chat(&["register", "alice"]);
    chat(&["register", "bob"]);
    chat(&["login", "alice"]);
    chat(&["send", "bob", "through", "the", "api", "server"]);
    // The first tunnel went to the pod the client Service selects: the leader.
    assert_eq!(forwards.lock().unwrap().first().cloned(), Some(format!("demo-{leader}")));
    let status: serde_json::Value = serde_json::from_str(&chat(&["status", "-o", "json"])).unwrap();
    assert_eq!(status["leader_id"], leader);
    let roles: Vec<&str> = status["members"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "unreachable").count(),
        0,
        "every member reached through a tunnel: {roles:?}"
    );
    // Kube mode adds the ReplicatedChat's conditions, its recent Events (its
    // own and its pods', oldest first) and each pod's volume.
    let kube = &status["kubernetes"];
    assert_eq!(kube["conditions"][0]["reason"], "LeaderElected");
    let reasons: Vec<&str> = kube["events"].as_array().unwrap().iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["MemberJoined", "LeaderChanged"]);
    assert_eq!(kube["volumes"].as_array().unwrap().len(), 3);
    assert_eq!(kube["volumes"][0]["capacity"], "1Gi");
    let table = chat(&["status"]);
    assert!(table.contains("CONDITIONS") && table.contains("data-demo-1") && table.contains("MemberJoined"), "{table}");

    // An admin backs up through a tunnel to a member's peer port, with the
    // operator's admin certificate; the file holds the state (a snapshot file).
    let file = home.path().join("demo.backup");
    let taken: serde_json::Value =
        serde_json::from_str(&chat(&["backup", file.to_str().unwrap(), "-o", "json"])).unwrap();
    assert!(taken["index"].as_u64().unwrap() > 0 && taken["sha256"].as_str().unwrap().len() == 64, "{taken}");
    assert!(std::fs::read(&file).unwrap().starts_with(b"RCHATSN1"));
    let again = kubectl_chat(home.path(), &config, &["backup", file.to_str().unwrap()]);
    assert!(!again.status.success(), "a backup overwrote a file");

    // The leader dies; the next command resolves the new one and goes on.
    cluster.kill(leader);
    chat(&["send", "bob", "after", "the", "failover"]);
    let read: serde_json::Value = serde_json::from_str(&chat(&["read", "bob", "-o", "json"])).unwrap();
    let bodies: Vec<&str> = read.as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["through the api server", "after the failover"]);
    let sessions = std::fs::read_to_string(home.path().join("kubectl-chat/sessions.json")).unwrap();
    assert!(sessions.contains(&format!("kube:{server}/chat/demo")), "{sessions}");
}

/// The operator's `demo-admin-tls` Secret: a `chat-admin` certificate of the cluster's CA.
fn admin_secret(ca: &chat_tls::Ca) -> serde_json::Value {
    let issued = ca.issue(&chat_tls::Leaf::client(chat_tls::Role::Admin)).unwrap();
    let data = [("ca.crt", ca.cert_pem().to_string()), ("tls.crt", issued.cert_pem), ("tls.key", issued.key_pem)]
        .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.into_bytes())));
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta { name: Some("demo-admin-tls".into()), ..Default::default() },
        data: Some(data.into_iter().collect()),
        ..Default::default()
    };
    serde_json::to_value(secret).unwrap()
}

fn kubectl_chat(home: &std::path::Path, kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-chat"))
        .args(args)
        .env_remove("CHAT_ADDR")
        .env_remove("CHAT_CA")
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("CHAT_PASSWORD", "kube-mode-password")
        .output()
        .unwrap()
}

#[test]
fn without_addr_or_kubeconfig_the_user_is_told_what_to_pass() {
    let home = tempfile::tempdir().unwrap();
    let out = kubectl_chat(home.path(), &home.path().join("missing"), &["status"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--addr") && err.contains("kubeconfig"), "{err}");
}

#[test]
fn an_unreachable_api_server_is_unavailable_not_a_user_error() {
    let home = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let kubeconfig = kubeconfig(home.path(), &format!("http://127.0.0.1:{port}"));
    let out = kubectl_chat(home.path(), &kubeconfig, &["--cluster", "demo", "status", "--timeout", "3"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // The same through --kubeconfig and --context, naming a context that does not exist: a user error.
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-chat"))
        .args(["--kubeconfig", kubeconfig.to_str().unwrap(), "--context", "nope", "status"])
        .env_remove("CHAT_ADDR")
        .env("XDG_CONFIG_HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}
