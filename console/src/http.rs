//! Routes: the page and its assets, `/api/cluster` (the view now),
//! `/api/cluster/stream` (Server-Sent Events, one view every
//! [`crate::feed::PUSH_EVERY`], so a failover shows within a fraction of a
//! second), and the chat view's API ([`crate::chat`], [`crate::events`]).
//! Every response carries a strict Content-Security-Policy and friends;
//! every state-changing request passes [`guard::same_origin`]; bodies are
//! bounded by [`MAX_BODY`].

use std::convert::Infallible;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{delete, get, post};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::WatchStream;

use crate::state::ConsoleState;
use crate::view::ClusterView;
use crate::{assets, chat, events, guard};

/// Scripts, styles, connections: this origin only; nothing may frame the page.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The largest request body: a 4 KiB message or a 1 KiB password, JSON-escaped.
pub const MAX_BODY: usize = 32 << 10;

/// The console's routes, reaching the cluster through `state.client`.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(|| async { page(assets::INDEX_HTML, "text/html; charset=utf-8") }))
        .route("/cluster.js", get(|| async { page(assets::CLUSTER_JS, "text/javascript; charset=utf-8") }))
        .route("/chat.js", get(|| async { page(assets::CHAT_JS, "text/javascript; charset=utf-8") }))
        .route("/style.css", get(|| async { page(assets::STYLE_CSS, "text/css; charset=utf-8") }))
        // Liveness and readiness: the console serves (a cluster that does not
        // answer is shown on the page, not hidden by an empty Service).
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/cluster", get(cluster))
        .route("/api/cluster/stream", get(stream))
        .route("/api/register", post(chat::register))
        .route("/api/login", post(chat::login))
        .route("/api/logout", post(chat::logout))
        .route("/api/session", get(chat::current))
        .route("/api/conversations", get(chat::conversations))
        .route("/api/conversations/{with}", get(chat::history))
        .route("/api/conversations/{with}/messages", post(chat::send))
        .route("/api/conversations/{with}/read", post(chat::mark_read))
        .route("/api/messages/{id}", delete(chat::delete))
        .route("/api/users", get(chat::users))
        .route("/api/events", get(events::events))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(guard::same_origin))
        .layer(axum::middleware::map_response(secure))
        .with_state(state)
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn cluster(State(state): State<ConsoleState>) -> Response {
    match state.client.cluster_status().await {
        Ok(status) => Json(ClusterView::from(&status)).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("the cluster does not answer: {e}\n")).into_response(),
    }
}

/// The shared feed ([`crate::feed`]) as this viewer's event stream: the
/// newest cluster view at every push, conditions and Events when they change.
async fn stream(State(state): State<ConsoleState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let viewer = state.feed.subscribe();
    let updates = futures::stream::select(WatchStream::new(viewer.cluster), WatchStream::new(viewer.kube));
    let events =
        updates.filter_map(|update| async move { update.map(|u| Ok(Event::default().event(u.event).data(u.data))) });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// Headers every response carries.
async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
