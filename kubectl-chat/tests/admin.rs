//! The admin commands through the real binary, against the stand-in API
//! server: what each asks of Kubernetes (an annotation on the ReplicatedChat,
//! or one pod deleted), what it refuses before asking, how `promote` waits
//! for the operator's answer (played here by the test), `logs` merging the
//! pods' logs, `report`'s archive; and `backup` in direct mode.

use std::path::Path;
use std::process::{Command, Output};

use chat_k8s::names::{PROMOTE_ANNOTATION, RESTARTED_AT_ANNOTATION};
use chat_k8s_standin::StandIn;
use serde_json::json;

const RCHAT: &str = "/apis/chat.replicated.dev/v1alpha1/namespaces/chat/replicatedchats/demo";

async fn seeded() -> (StandIn, tempfile::TempDir, std::path::PathBuf) {
    let api = StandIn::start().await;
    api.put(
        RCHAT,
        json!({"apiVersion": "chat.replicated.dev/v1alpha1", "kind": "ReplicatedChat",
               "metadata": {"name": "demo", "namespace": "chat"},
               "spec": {"image": "chat-node:v1", "replicas": 3},
               "status": {"leader": "demo-0"}}),
    );
    for id in 0..3 {
        api.put(
            &format!("/api/v1/namespaces/chat/pods/demo-{id}"),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("demo-{id}"), "namespace": "chat",
                "labels": {"app.kubernetes.io/name": "replicated-chat", "app.kubernetes.io/instance": "demo"}}}),
        );
    }
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(home.path(), "chat");
    (api, home, kubeconfig)
}

async fn kubectl_chat(home: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::from(Command::new(env!("CARGO_BIN_EXE_kubectl-chat")));
    command
        .args(args)
        .env_remove("CHAT_ADDR")
        .env_remove("CHAT_CA")
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home);
    command.output().await.unwrap()
}

fn annotation(api: &StandIn, key: &str) -> Option<String> {
    api.get(RCHAT).unwrap()["metadata"]["annotations"][key].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_asks_the_operator_or_deletes_one_pod() {
    let (api, home, config) = seeded().await;
    let out = kubectl_chat(home.path(), &config, &["restart"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let at = annotation(&api, RESTARTED_AT_ANNOTATION).expect("the restart request");
    assert!(humantime::parse_rfc3339(&at).is_ok(), "{at} is a time");
    assert!(String::from_utf8_lossy(&out.stdout).contains("leader last"));

    let out = kubectl_chat(home.path(), &config, &["restart", "demo-1", "-o", "json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(api.get("/api/v1/namespaces/chat/pods/demo-1").is_none(), "demo-1 deleted");
    assert!(api.get("/api/v1/namespaces/chat/pods/demo-0").is_some(), "only demo-1");
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["pod"], "demo-1");

    let before = api.store().version();
    for (args, says) in [
        (&["restart", "other-1"][..], "not a pod of demo"),
        (&["--addr", "127.0.0.1:1", "restart"][..], "kube mode"),
        (&["promote", "demo-replica-0"][..], "read replica"),
        (&["promote", "nginx"][..], "not a pod of demo"),
    ] {
        let out = kubectl_chat(home.path(), &config, args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(api.store().version(), before, "a refused command wrote nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_waits_for_the_operator_and_reports_its_answer() {
    let (api, home, config) = seeded().await;
    let out = kubectl_chat(home.path(), &config, &["promote", "demo-2", "--no-wait"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(annotation(&api, PROMOTE_ANNOTATION).as_deref(), Some("demo-2"));
    let mut rchat = api.get(RCHAT).unwrap();
    rchat["metadata"]["annotations"] = json!({});
    api.put(RCHAT, rchat);

    // The operator's part: act on the request, remove it, name the new leader.
    let operator = |leader: &'static str| {
        let mut changes = api.subscribe();
        let api = api.client("chat");
        tokio::spawn(async move {
            while let Ok(change) = changes.recv().await {
                if change.key.resource == "replicatedchats"
                    && !change.object["metadata"]["annotations"][PROMOTE_ANNOTATION].is_null()
                {
                    let rchats: kube::Api<chat_k8s::ReplicatedChat> = kube::Api::namespaced(api.clone(), "chat");
                    let params = kube::api::PatchParams::default();
                    let forget = json!({"metadata": {"annotations": {PROMOTE_ANNOTATION: null}}});
                    rchats.patch("demo", &params, &kube::api::Patch::Merge(&forget)).await.unwrap();
                    let status = json!({"status": {"leader": leader}});
                    rchats.patch_status("demo", &params, &kube::api::Patch::Merge(&status)).await.unwrap();
                    return;
                }
            }
        })
    };
    let answering = operator("demo-2");
    let out = kubectl_chat(home.path(), &config, &["promote", "demo-2"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "demo-2 leads");
    answering.await.unwrap();

    // Refused (the request removed, the leader unchanged): said so, exit 1.
    let refusing = operator("demo-2");
    let out = kubectl_chat(home.path(), &config, &["promote", "demo-1"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not promote demo-1 (demo-2 leads)"));
    refusing.await.unwrap();

    // No operator: the request stays, the command gives up at its deadline.
    let out = kubectl_chat(home.path(), &config, &["--timeout", "1", "promote", "demo-1"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is it running?"));
    assert_eq!(annotation(&api, PROMOTE_ANNOTATION).as_deref(), Some("demo-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_in_direct_mode_takes_a_member_and_an_admin_certificate() {
    let cluster = chat_testkit::TestCluster::start(chat_testkit::chat_node_binary(), 1, &[]).await;
    let home = tempfile::tempdir().unwrap();
    let (admin, node) = (home.path().join("admin"), home.path().join("node"));
    cluster.tls.ca.write_leaf(&chat_tls::Leaf::client(chat_tls::Role::Admin), &admin).unwrap();
    cluster.tls.ca.write_leaf(&chat_tls::Leaf::node(["localhost"]), &node).unwrap();
    let peer = cluster.nodes[0].peer.clone();
    let file = home.path().join("one.backup");
    let no_kube = home.path().join("no-kubeconfig");
    let run = |args: Vec<String>| {
        let no_kube = no_kube.clone();
        let home = home.path().to_path_buf();
        async move { kubectl_chat(&home, &no_kube, &args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let backup = |extra: &[String]| {
        let mut args = vec!["--addr".to_string(), "127.0.0.1:1".into(), "backup".into(), path(&file)];
        args.extend_from_slice(extra);
        args
    };
    for (extra, says) in [
        (vec![], "--member HOST:PORT"),
        (vec!["--member".into(), peer.clone()], "--admin-tls-dir"),
        (vec!["--member".into(), peer.clone(), "--admin-tls-dir".into(), path(&node)], "chat-admin"),
    ] {
        let out = run(backup(&extra)).await;
        assert!(!out.status.success(), "{extra:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
        assert!(!file.exists());
    }
    let out = run(backup(&["--member".into(), peer.clone(), "--admin-tls-dir".into(), path(&admin)])).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("sha256"));
    assert!(std::fs::read(&file).unwrap().starts_with(b"RCHATSN1"));

    // Scheduled: into a directory, a member that does not answer skipped,
    // only the newest kept.
    let dir = home.path().join("backups");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("demo-20200101T000000Z.backup"), b"old").unwrap();
    let members = format!("127.0.0.1:1,{peer}");
    let scheduled = vec![
        "--addr".to_string(),
        "127.0.0.1:1".into(),
        "backup".into(),
        "--to-dir".into(),
        path(&dir),
        "--prefix".into(),
        "demo".into(),
        "--keep".into(),
        "1".into(),
        "--member".into(),
        members,
        "--admin-tls-dir".into(),
        path(&admin),
        "-o".into(),
        "json".into(),
    ];
    let out = run(scheduled).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["pruned"], json!(["demo-20200101T000000Z.backup"]));
    let left: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with("demo-2") && left[0].ends_with("Z.backup"), "{left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_merge_every_pod_in_time_order_each_line_prefixed() {
    let (api, home, config) = seeded().await;
    api.set_log(
        "/api/v1/namespaces/chat/pods/demo-0",
        &[("2026-12-02T22:00:01.000000000Z", "zero first"), ("2026-12-02T22:00:03.000000000Z", "zero second")],
    );
    api.set_log("/api/v1/namespaces/chat/pods/demo-1", &[("2026-12-02T22:00:02.000000000Z", "one")]);
    let out = kubectl_chat(home.path(), &config, &["logs"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[demo-0] zero first\n[demo-1] one\n[demo-0] zero second\n");
    let out = kubectl_chat(home.path(), &config, &["logs", "--tail", "1"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[demo-1] one\n[demo-0] zero second\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn report_archives_what_a_bug_report_needs_and_lists_what_it_could_not_get() {
    let (api, home, config) = seeded().await;
    api.set_log("/api/v1/namespaces/chat/pods/demo-2", &[("2026-12-02T22:00:00.000000000Z", "node two")]);
    api.put(
        "/api/v1/namespaces/chat/secrets/demo-admin-tls",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "demo-admin-tls", "namespace": "chat"},
               "data": {"tls.key": "U0VDUkVULUtFWS1NQVRFUklBTA=="}}),
    );
    let file = home.path().join("report.tar.gz");
    let out = kubectl_chat(home.path(), &config, &["report", file.to_str().unwrap(), "-o", "json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(&file).unwrap()));
    let mut entries = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().to_string();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        entries.insert(path, text);
    }
    for path in ["replicatedchat.json", "pods.json", "volumes.json", "events.json", "logs/demo-2.log", "errors.txt"] {
        assert!(entries.contains_key(&format!("report-demo/{path}")), "no {path} in {:?}", entries.keys());
    }
    assert!(entries["report-demo/logs/demo-2.log"].contains("node two"));
    assert!(entries["report-demo/replicatedchat.json"].contains("chat-node:v1"));
    // The nodes cannot be reached here (no CA ConfigMap, no port-forward): said so, not fatal.
    assert!(entries["report-demo/errors.txt"].contains("GetStatus"), "{}", entries["report-demo/errors.txt"]);
    assert!(printed["errors"].as_array().unwrap().iter().any(|e| e.as_str().unwrap().contains("GetStatus")));
    assert!(entries.values().all(|t| !t.contains("U0VDUkVULUtFWS1NQVRFUklBTA")), "a Secret went into the report");
    let again = kubectl_chat(home.path(), &config, &["report", file.to_str().unwrap()]).await;
    assert!(!again.status.success(), "a report overwrote a file");
}
