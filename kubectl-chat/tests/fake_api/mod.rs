//! A small Kubernetes API server for kube-mode tests: real HTTP on loopback,
//! real WebSocket port-forwarding (the `v4.channel.k8s.io` protocol kube-rs
//! speaks), in front of real chat-node processes. It serves exactly what kube
//! mode asks for: the ReplicatedChat list, the client Service, the pod lists
//! (the leader label follows the real cluster's highest-term leader, as the
//! operator keeps it), and `pods/<name>/portforward`.
//!
//! Pods are `demo-<id>`. The nodes advertise loopback addresses here (there
//! is no pod DNS), so a forward to a pod whose name is not `demo-<id>` (the
//! dialer names the pod after the first label of the address: `127`) is
//! routed by its port to the node listening on it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use chat_proto::cluster::cluster_service_client::ClusterServiceClient;
use chat_proto::cluster::{GetStatusRequest, Role};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone)]
pub struct FakeApi {
    /// Node id → gRPC address.
    pub nodes: Arc<BTreeMap<u64, String>>,
    /// Node id → peer address (where forwards to port 50052 go).
    pub peers: Arc<BTreeMap<u64, String>>,
    /// The operator's `demo-admin-tls` Secret, if it made one.
    pub admin_secret: Option<Value>,
    /// The cluster's CA certificate, served as the operator's `demo-ca` ConfigMap.
    pub ca_pem: String,
    /// How the fake reaches the nodes itself (to know who leads).
    pub client_tls: chat_tls::Live<rustls::ClientConfig>,
    /// Pods a port-forward was opened to, in order.
    pub forwards: Arc<Mutex<Vec<String>>>,
}

impl FakeApi {
    /// Serves on a fresh loopback port; returns the server's URL.
    pub async fn start(self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/apis/chat.replicated.dev/v1alpha1/namespaces/chat/replicatedchats", get(rchats))
            .route("/apis/chat.replicated.dev/v1alpha1/namespaces/chat/replicatedchats/demo", get(rchat))
            .route("/api/v1/namespaces/chat/services/demo", get(service))
            .route("/api/v1/namespaces/chat/configmaps/demo-ca", get(ca_config_map))
            .route("/api/v1/namespaces/chat/secrets/demo-admin-tls", get(admin_secret))
            .route("/api/v1/namespaces/chat/pods", get(pods))
            .route("/apis/events.k8s.io/v1/namespaces/chat/events", get(events))
            .route("/api/v1/namespaces/chat/persistentvolumeclaims", get(volumes))
            .route("/api/v1/namespaces/chat/pods/{name}/portforward", get(portforward))
            .with_state(self);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    /// The id of the leader of the highest term any node reports.
    async fn leader(&self) -> Option<u64> {
        let mut best: Option<(u64, u64)> = None;
        for (&id, addr) in self.nodes.iter() {
            let mut request = tonic::Request::new(GetStatusRequest {});
            request.set_timeout(std::time::Duration::from_millis(300));
            let mut client = ClusterServiceClient::new(chat_testkit::tls_channel(addr, &self.client_tls));
            if let Ok(s) = client.get_status(request).await.map(|r| r.into_inner())
                && s.role == Role::Leader as i32
                && best.is_none_or(|(term, _)| s.term > term)
            {
                best = Some((s.term, id));
            }
        }
        best.map(|(_, id)| id)
    }
}

fn rchat_object() -> Value {
    json!({"apiVersion": "chat.replicated.dev/v1alpha1", "kind": "ReplicatedChat",
           "metadata": {"name": "demo", "namespace": "chat", "uid": "u1"},
           "spec": {"image": "chat-node:dev", "replicas": 3},
           "status": {"conditions": [{"type": "Available", "status": "True", "reason": "LeaderElected",
                                      "message": "demo-1 leads", "lastTransitionTime": "2026-12-02T22:00:00Z"}]}})
}

/// Two Events about the cluster, one about something else.
async fn events() -> Json<Value> {
    let event = |name: &str, reason: &str, at: &str| {
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
               "metadata": {"name": format!("{name}.{reason}"), "namespace": "chat"},
               "eventTime": at, "type": "Normal", "reason": reason, "note": format!("{reason} on {name}"),
               "reportingController": "chat-operator", "reportingInstance": "op", "action": "Test",
               "regarding": {"kind": "ReplicatedChat", "name": name, "namespace": "chat"}})
    };
    Json(json!({"apiVersion": "events.k8s.io/v1", "kind": "EventList", "metadata": {"resourceVersion": "1"},
        "items": [event("demo", "LeaderChanged", "2026-12-02T22:00:02.000000Z"),
                  event("other", "Unrelated", "2026-12-02T22:00:03.000000Z"),
                  event("demo-1", "MemberJoined", "2026-12-02T22:00:01.000000Z")]}))
}

/// A bound volume per node.
async fn volumes(State(api): State<FakeApi>) -> Json<Value> {
    let items: Vec<Value> = api
        .nodes
        .keys()
        .map(|id| {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": format!("data-demo-{id}"), "namespace": "chat"},
                   "spec": {"storageClassName": "standard", "accessModes": ["ReadWriteOnce"]},
                   "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}})
        })
        .collect();
    Json(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {"resourceVersion": "1"},
                "items": items}))
}

async fn rchats() -> Json<Value> {
    Json(json!({"apiVersion": "chat.replicated.dev/v1alpha1", "kind": "ReplicatedChatList",
                "metadata": {"resourceVersion": "1"}, "items": [rchat_object()]}))
}

async fn rchat() -> Json<Value> {
    Json(rchat_object())
}

async fn ca_config_map(State(api): State<FakeApi>) -> Json<Value> {
    Json(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "demo-ca", "namespace": "chat"},
                "data": {"ca.crt": api.ca_pem}}))
}

async fn admin_secret(State(api): State<FakeApi>) -> Response {
    match api.admin_secret {
        Some(secret) => Json(secret).into_response(),
        None => (
            axum::http::StatusCode::NOT_FOUND,
            Json(json!({"kind": "Status", "apiVersion": "v1",
            "status": "Failure", "reason": "NotFound", "code": 404})),
        )
            .into_response(),
    }
}

async fn service() -> Json<Value> {
    let selector = chat_k8s::ClusterNames::new("demo", "chat").leader_selector();
    Json(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "demo", "namespace": "chat"},
                "spec": {"selector": selector}}))
}

async fn pods(State(api): State<FakeApi>, Query(q): Query<BTreeMap<String, String>>) -> Json<Value> {
    let leader = api.leader().await;
    let only_leader = q.get("labelSelector").is_some_and(|s| s.contains(chat_k8s::names::ROLE_LABEL));
    let items: Vec<Value> = api
        .nodes
        .keys()
        .filter(|&&id| !only_leader || Some(id) == leader)
        .map(|id| {
            let mut labels = chat_k8s::ClusterNames::new("demo", "chat").selector_labels();
            if Some(*id) == leader {
                labels.insert(chat_k8s::names::ROLE_LABEL.into(), "leader".into());
            }
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": format!("demo-{id}"), "namespace": "chat", "labels": labels},
                   "status": {"phase": "Running"}})
        })
        .collect();
    Json(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items}))
}

async fn portforward(
    State(api): State<FakeApi>,
    Path(name): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let port: u16 = q.get("ports").and_then(|p| p.parse().ok()).expect("one port");
    let members = if port == chat_k8s::names::PEER_PORT { &api.peers } else { &api.nodes };
    let target = match chat_k8s::names::ordinal(&name).and_then(|id| members.get(&id)) {
        Some(addr) => addr.clone(),
        None => format!("127.0.0.1:{port}"),
    };
    api.forwards.lock().unwrap().push(name);
    ws.protocols(["v4.channel.k8s.io"]).on_upgrade(move |socket| bridge(socket, port, target)).into_response()
}

/// One forwarded connection: channel 0 carries data, channel 1 errors; each
/// first announces the port (2 bytes, little-endian).
async fn bridge(mut socket: WebSocket, port: u16, target: String) {
    let announce = |ch: u8| Message::Binary(vec![ch, port as u8, (port >> 8) as u8].into());
    if socket.send(announce(0)).await.is_err() || socket.send(announce(1)).await.is_err() {
        return;
    }
    let Ok(tcp) = tokio::net::TcpStream::connect(&target).await else {
        let _ = socket.send(Message::Binary([&[1u8][..], b"connection refused"].concat().into())).await;
        return;
    };
    let (mut from_node, mut to_node) = tcp.into_split();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(data))) if data.len() > 1 && data[0] == 0 => {
                    if to_node.write_all(&data[1..]).await.is_err() { break; }
                }
                Some(Ok(Message::Binary(_))) | Some(Ok(Message::Ping(_))) | Some(Ok(Message::Pong(_))) => {}
                _ => break,
            },
            n = from_node.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut frame = Vec::with_capacity(n + 1);
                    frame.push(0u8);
                    frame.extend_from_slice(&buf[..n]);
                    if socket.send(Message::Binary(frame.into())).await.is_err() { break; }
                }
            },
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
