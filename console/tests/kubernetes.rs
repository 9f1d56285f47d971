//! On Kubernetes the cluster view also shows the ReplicatedChat's
//! conditions and recent Events: the console reads them from a (stand-in)
//! API server and pushes them on the same event stream, again when they
//! change.

use chat_client::{Client, ClientOptions, Security};
use chat_console::state::{ConsoleState, KubeSource};
use chat_k8s::ClusterNames;
use chat_k8s_standin::StandIn;
use serde_json::json;

mod support;
use support::{open_stream, read_until};

fn condition(reason: &str) -> serde_json::Value {
    json!({ "type": "Ready", "status": "True", "reason": reason, "message": "3 of 3 members ready",
            "lastTransitionTime": "2026-12-02T10:00:00Z" })
}

fn event(name: &str, regarding: &str, reason: &str) -> serde_json::Value {
    json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": { "name": name, "namespace": "chat" },
        "eventTime": "2026-12-02T10:00:01.000000Z",
        "reportingController": "chat.replicated.dev/operator", "reportingInstance": "operator-0",
        "action": "Reconcile", "type": "Normal", "reason": reason, "note": format!("{reason} happened"),
        "regarding": { "apiVersion": "v1", "kind": "Pod", "namespace": "chat", "name": regarding },
    })
}

#[tokio::test]
async fn conditions_and_events_of_the_replicated_chat_are_pushed_when_they_change() {
    let api = StandIn::start().await;
    let rchat = "/apis/chat.replicated.dev/v1alpha1/namespaces/chat/replicatedchats/demo";
    api.put(
        rchat,
        json!({
            "apiVersion": "chat.replicated.dev/v1alpha1", "kind": "ReplicatedChat",
            "metadata": { "name": "demo", "namespace": "chat" },
            "spec": { "replicas": 3, "image": "chat-node:dev" },
            "status": { "conditions": [condition("LeaderElected")] },
        }),
    );
    let events = "/apis/events.k8s.io/v1/namespaces/chat/events";
    api.put(&format!("{events}/e1"), event("e1", "demo-0", "UpgradingPod"));
    api.put(&format!("{events}/e2"), event("e2", "other-0", "NotOurs"));

    // The cluster itself is not reachable here: its part of the stream says so.
    let client = Client::new(vec!["127.0.0.1:1".into()], ClientOptions::new(Security::Plaintext)).unwrap();
    let state = ConsoleState::new(client, false)
        .with_kube(KubeSource { client: api.client("chat"), names: ClusterNames::new("demo", "chat") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, chat_console::http::router(state)).await });

    let mut stream = open_stream(&addr.to_string(), "/api/cluster/stream", &[]).await;
    let seen = read_until(&mut stream, |s| s.contains("event: kubernetes") && s.contains("UpgradingPod")).await;
    let data = seen.split("event: kubernetes\ndata: ").nth(1).unwrap().lines().next().unwrap();
    let view: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(view["conditions"][0]["reason"], "LeaderElected");
    assert_eq!(view["events"].as_array().unwrap().len(), 1, "only the cluster's own Events: {view}");
    assert_eq!(view["events"][0]["object"], "demo-0");

    // A changed condition is pushed again; an unchanged view is not.
    let kube_events = |s: &str| s.matches("event: kubernetes").count();
    assert_eq!(kube_events(&seen), 1);
    let mut changed = api.get(rchat).unwrap();
    changed["status"]["conditions"] = json!([condition("Upgrading")]);
    api.put(rchat, changed);
    let seen = read_until(&mut stream, |s| s.contains("\"Upgrading\"")).await;
    assert!(seen.contains("event: kubernetes"), "{seen}");
}
