//! Kube mode's failure paths through the real binary: what a user sees when
//! there is no usable kubeconfig (user error, exit 1) or the API server cannot
//! be reached (cluster unavailable, exit 2). Resolution itself (which
//! ReplicatedChat, which pod, re-resolution after failover) is tested against
//! the mock API in chat-k8s; the real thing runs in e2e/.

use std::process::{Command, Output};

fn kubectl_chat(home: &std::path::Path, kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-chat"))
        .args(args)
        .env_remove("CHAT_ADDR")
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
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
    let kubeconfig = home.path().join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters: [{{name: test, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n\
             users: [{{name: test, user: {{}}}}]\n\
             contexts: [{{name: test, context: {{cluster: test, user: test, namespace: chat}}}}]\n"
        ),
    )
    .unwrap();
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
