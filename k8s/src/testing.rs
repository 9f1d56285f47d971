//! A scripted Kubernetes API server for offline tests (the tower-test mock
//! pattern of kube-rs's controller-rs). A test drives it step by step: each
//! [`ApiServer::next`] waits for the client's next request, asserts its method
//! and path, and hands back its JSON body and a way to answer. A request that
//! never comes fails the test after one second instead of hanging it.
//!
//! Every request seen is also recorded, so tests can check them against the
//! chart's RBAC rules ([`assert_rules_allow`]).

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::client::Body;
use serde_json::Value;
use tower_test::mock::{self, Handle, SendResponse};

/// How long a test waits for a request the client should make.
pub const NEXT_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// The server side of a mocked [`kube::Client`].
pub struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
    /// Every request received so far: method, path, query.
    pub seen: Vec<(Method, String, String)>,
}

/// A client whose every request goes to the returned [`ApiServer`].
pub fn mock_client(namespace: &str) -> (kube::Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, namespace.to_string()), ApiServer { handle, seen: Vec::new() })
}

/// One request the client made, waiting for its answer.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// The request body as JSON (`Null` when empty).
    pub body: Value,
    respond: SendResponse<Response<Body>>,
}

impl ApiServer {
    /// Waits for the next request and asserts its method and path.
    ///
    /// # Panics
    /// When no request arrives within [`NEXT_REQUEST_TIMEOUT`], or it is not the expected one.
    pub async fn next(&mut self, method: Method, path: &str) -> Call {
        let call = self.next_any().await;
        assert_eq!(
            (&call.method, call.path.as_str()),
            (&method, path),
            "unexpected request {} {}?{} body {}",
            call.method,
            call.path,
            call.query,
            call.body
        );
        call
    }

    /// The next request if one arrives within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Call> {
        let (request, respond) = tokio::time::timeout(wait, self.handle.next_request()).await.ok()??;
        Some(self.receive(request, respond).await)
    }

    /// Waits for the next request, whatever it is.
    ///
    /// # Panics
    /// When no request arrives within [`NEXT_REQUEST_TIMEOUT`].
    pub async fn next_any(&mut self) -> Call {
        let (request, respond) = tokio::time::timeout(NEXT_REQUEST_TIMEOUT, self.handle.next_request())
            .await
            .expect("the client made no further request within the timeout")
            .expect("the client was dropped before making the expected request");
        self.receive(request, respond).await
    }

    async fn receive(&mut self, request: Request<Body>, respond: SendResponse<Response<Body>>) -> Call {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("request body");
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
        let path = parts.uri.path().to_string();
        let query = parts.uri.query().unwrap_or_default().to_string();
        self.seen.push((parts.method.clone(), path.clone(), query.clone()));
        Call { method: parts.method, path, query, body, respond }
    }

    /// Asserts the client makes no further request within a short while.
    ///
    /// # Panics
    /// If it does.
    pub async fn assert_idle(&mut self, wait: Duration) {
        if let Ok(Some((request, _))) = tokio::time::timeout(wait, self.handle.next_request()).await {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

impl Call {
    /// Answers 200 with `body`.
    pub fn ok(self, body: Value) {
        self.respond_with(StatusCode::OK, body);
    }

    /// Answers 200 with the request's own body (what an apply or replace echoes).
    pub fn echo(self) {
        let body = self.body.clone();
        self.ok(body);
    }

    /// Answers with a Kubernetes `Status` error.
    pub fn fail(self, code: StatusCode, reason: &str, message: &str) {
        let status = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": reason, "message": message, "code": code.as_u16(),
        });
        self.respond_with(code, status);
    }

    pub fn not_found(self) {
        let message = format!("{} not found", self.path);
        self.fail(StatusCode::NOT_FOUND, "NotFound", &message);
    }

    pub fn respond_with(self, code: StatusCode, body: Value) {
        let response = Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).expect("JSON")))
            .expect("response");
        self.respond.send_response(response);
    }
}

/// A `List` object of `items`, as the API server returns from a list call.
pub fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    serde_json::json!({
        "kind": format!("{kind}List"), "apiVersion": api_version,
        "metadata": {"resourceVersion": "1"}, "items": items,
    })
}

/// The RBAC verb, API group, and resource (with subresource) of a request.
///
/// # Panics
/// On a path that is not a Kubernetes API path.
pub fn request_attributes(method: &Method, path: &str, query: &str) -> (String, String, String) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // /api/v1/... (core) or /apis/<group>/<version>/...
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_string(), rest),
        _ => panic!("not an API path: {path}"),
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] => rest,
        rest => rest,
    };
    let (resource, name, sub) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => panic!("unexpected API path shape: {path}"),
    };
    let watch = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method, name) {
        (&Method::GET, _) if watch => "watch",
        (&Method::GET, None) => "list",
        (&Method::GET, Some(_)) => "get",
        (&Method::POST, _) => "create",
        (&Method::PATCH, _) => "patch",
        (&Method::PUT, _) => "update",
        (&Method::DELETE, None) => "deletecollection",
        (&Method::DELETE, Some(_)) => "delete",
        _ => panic!("unexpected method {method}"),
    };
    let resource = match sub {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_string(),
    };
    (verb.to_string(), group, resource)
}

/// Whether `rules` allow `verb` on `resource` in API `group`.
pub fn rules_allow(rules: &[PolicyRule], verb: &str, group: &str, resource: &str) -> bool {
    rules.iter().any(|rule| {
        let has = |list: &Option<Vec<String>>, want: &str| list.iter().flatten().any(|v| v == want || v == "*");
        has(&rule.api_groups, group)
            && has(&rule.resources, resource)
            && rule.verbs.iter().any(|v| v == verb || v == "*")
    })
}

/// # Panics
/// Naming the first request in `seen` that `rules` (read from `source`) do not allow.
pub fn assert_rules_allow(rules: &[PolicyRule], source: &str, seen: &[(Method, String, String)]) {
    for (method, path, query) in seen {
        let (verb, group, resource) = request_attributes(method, path, query);
        assert!(
            rules_allow(rules, &verb, &group, &resource),
            "{source} does not allow {verb} {resource} in group {group:?} ({method} {path}); add it there"
        );
    }
}
