//! A small Kubernetes API server for tests: real HTTP on loopback, state kept
//! like the real one ([`store`]), so that a real controller and real node
//! processes can run against it where no cluster exists. It serves the
//! generic REST shape — `/api/v1/…` and `/apis/<group>/<version>/…`, get,
//! list (label selectors), watch, create, replace, merge and apply patches,
//! the status subresource, delete (at once, with uid/resourceVersion
//! preconditions), pod logs (set by the test) — for any resource; it knows nothing of RBAC, admission,
//! finalizers, grace periods or field ownership (an apply is a merge).
//!
//! Tests reach it with [`StandIn::client`] (in process) or a kubeconfig
//! ([`StandIn::kubeconfig`], for child processes), seed it with
//! [`StandIn::put`], and read what happened from [`StandIn::history`] or
//! [`StandIn::subscribe`].

pub mod store;

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

pub use store::{Change, Key, Refusal, Store};

/// A running stand-in. Dropping it does not stop the server (tests are short).
#[derive(Clone)]
pub struct StandIn {
    pub url: String,
    store: Arc<Mutex<Store>>,
}

impl StandIn {
    /// Serves on a fresh loopback port.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding loopback");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let store = Arc::new(Mutex::new(Store::default()));
        let app = Router::new().fallback(serve).with_state(store.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, store }
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A client of this server, whose default namespace is `namespace`.
    ///
    /// # Panics
    /// Never for the URL this server made.
    pub fn client(&self, namespace: &str) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().expect("a URL"));
        config.default_namespace = namespace.to_string();
        kube::Client::try_from(config).expect("a client")
    }

    /// Writes a kubeconfig for this server into `dir` (for child processes: `KUBECONFIG`).
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: {}\n\
             contexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\n    namespace: {namespace}\n\
             current-context: standin\nusers:\n- name: standin\n  user:\n    token: standin\n",
            self.url
        );
        std::fs::write(&path, text).expect("writing the kubeconfig");
        path
    }

    /// Creates or overwrites an object as it is (tests seeding state). The
    /// path is the object's REST path, e.g. `/api/v1/namespaces/chat/pods/demo-0`.
    ///
    /// # Panics
    /// On a path that is not an object's.
    pub fn put(&self, path: &str, object: Value) -> Value {
        let target = Target::parse(path).expect("an API path");
        let key = target.key().expect("an object path");
        let mut store = self.store();
        match store.replace(key.clone(), object.clone()) {
            Ok(v) => v,
            Err(_) => store.create(key, object, "POST").expect("created"),
        }
    }

    /// Sets the log a pod (by its REST path) serves, as (RFC 3339 timestamp, line).
    ///
    /// # Panics
    /// On a path that is not an object's.
    pub fn set_log(&self, pod_path: &str, lines: &[(&str, &str)]) {
        let key = Target::parse(pod_path).and_then(|t| t.key()).expect("a pod path");
        self.store().set_log(key, lines.iter().map(|(t, l)| ((*t).to_string(), (*l).to_string())).collect());
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        let key = Target::parse(path)?.key()?;
        self.store().get(&key).cloned()
    }

    pub fn history(&self) -> Vec<Change> {
        self.store().history().to_vec()
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.store().subscribe()
    }
}

/// A request path, taken apart.
#[derive(Debug)]
struct Target {
    group: String,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: String,
}

impl Target {
    fn parse(path: &str) -> Option<Self> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, rest) = match parts.as_slice() {
            ["api", "v1", rest @ ..] => (String::new(), rest),
            ["apis", group, _version, rest @ ..] => ((*group).to_string(), rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_string()), rest),
            rest => (None, rest),
        };
        let (resource, name, subresource) = match rest {
            [resource] => (*resource, None, ""),
            [resource, name] => (*resource, Some((*name).to_string()), ""),
            [resource, name, sub] => (*resource, Some((*name).to_string()), *sub),
            _ => return None,
        };
        Some(Self { group, resource: resource.to_string(), namespace, name, subresource: subresource.to_string() })
    }

    /// The object's key, if the path names one.
    fn key(&self) -> Option<Key> {
        self.name.is_some().then(|| self.key_or_collection())
    }

    /// The object's key, or its collection's (an empty name) when the path names none.
    fn key_or_collection(&self) -> Key {
        Key {
            group: self.group.clone(),
            resource: self.resource.clone(),
            namespace: self.namespace.clone().unwrap_or_default(),
            name: self.name.clone().unwrap_or_default(),
        }
    }
}

async fn serve(State(store): State<Arc<Mutex<Store>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let query: HashMap<String, String> =
        axum::extract::Query::try_from_uri(&parts.uri).map(|q| q.0).unwrap_or_default();
    let Some(target) = Target::parse(parts.uri.path()) else {
        return status(StatusCode::NOT_FOUND, "NotFound", &format!("no such path {}", parts.uri.path()));
    };
    let body = match axum::body::to_bytes(body, 16 << 20).await {
        Ok(b) if b.is_empty() => Value::Null,
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(v) => v,
            Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &format!("body: {e}")),
        },
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &format!("body: {e}")),
    };
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    let lock = || store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let outcome = match (&parts.method, target.name.is_some()) {
        (&Method::GET, false) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            let from = query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
            let timeout = query.get("timeoutSeconds").and_then(|v| v.parse().ok()).unwrap_or(300);
            return watch(&store, target, selector, from, Duration::from_secs(timeout));
        }
        (&Method::GET, false) => {
            let s = lock();
            let items: Vec<Value> = s
                .list(&target.group, &target.resource, target.namespace.as_deref())
                .into_iter()
                .filter(|o| store::matches(&selector, o))
                .collect();
            Ok(json!({"kind": "List", "apiVersion": "v1",
                      "metadata": {"resourceVersion": s.version().to_string()}, "items": items}))
        }
        (&Method::GET, true) if target.subresource == "log" => {
            let timestamps = query.get("timestamps").is_some_and(|t| t == "true");
            let tail = query.get("tailLines").and_then(|t| t.parse().ok());
            return match lock().log(&target.key_or_collection(), timestamps, tail) {
                Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text).into_response(),
                Err(_) => status(StatusCode::NOT_FOUND, "NotFound", &format!("{} not found", parts.uri.path())),
            };
        }
        (&Method::GET, true) => lock().get(&target.key_or_collection()).cloned().ok_or(Refusal::NotFound),
        (&Method::POST, false) => lock().create(target.key_or_collection(), body, "POST"),
        (&Method::PUT, true) => lock().replace(target.key_or_collection(), body),
        (&Method::DELETE, true) => lock().delete(target.key_or_collection(), &body["preconditions"]),
        (&Method::PATCH, true) => {
            let apply = content_type.starts_with("application/apply-patch");
            lock().patch(target.key_or_collection(), &body, &target.subresource, apply)
        }
        (method, _) => return status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", &format!("{method}")),
    };
    match outcome {
        Ok(object) => {
            let code = if parts.method == Method::POST { StatusCode::CREATED } else { StatusCode::OK };
            json_response(code, &object)
        }
        Err(Refusal::NotFound) => status(StatusCode::NOT_FOUND, "NotFound", &format!("{} not found", parts.uri.path())),
        Err(Refusal::AlreadyExists) => status(StatusCode::CONFLICT, "AlreadyExists", "already exists"),
        Err(Refusal::Conflict) => status(
            StatusCode::CONFLICT,
            "Conflict",
            "the object has been modified; please apply your changes to the latest version and try again",
        ),
        Err(Refusal::Invalid(why)) => status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &why),
    }
}

/// A watch: the writes after `from` that match, then every new one, one JSON
/// event per line, for `timeout`.
fn watch(store: &Arc<Mutex<Store>>, target: Target, selector: String, from: u64, timeout: Duration) -> Response {
    let (backlog, mut live) = {
        let s = store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let backlog: Vec<Change> = if from == 0 {
            Vec::new()
        } else {
            s.history().iter().filter(|c| c.resource_version > from).cloned().collect()
        };
        (backlog, s.subscribe())
    };
    let wanted = move |c: &Change| {
        c.key.group == target.group
            && c.key.resource == target.resource
            && target.namespace.as_ref().is_none_or(|n| *n == c.key.namespace)
            && store::matches(&selector, &c.object)
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        let line = |c: &Change| Bytes::from(format!("{}\n", json!({"type": c.kind, "object": c.object})));
        for change in backlog.iter().filter(|c| wanted(c)) {
            if tx.send(Ok(line(change))).await.is_err() {
                return;
            }
        }
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let change = tokio::select! {
                c = live.recv() => c,
                () = tokio::time::sleep_until(until) => return,
                () = tx.closed() => return,
            };
            match change {
                Ok(c) if wanted(&c) => {
                    if tx.send(Ok(line(&c))).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                // Too far behind: end the watch; the client lists again.
                Err(RecvError::Lagged(_) | RecvError::Closed) => return,
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)))
        .expect("a response")
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("a response")
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                "message": message, "code": code.as_u16()}),
    )
}
