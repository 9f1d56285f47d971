//! Routes: the page and its two assets, `/api/cluster` (the view now) and
//! `/api/cluster/stream` (Server-Sent Events, one view every
//! [`PUSH_EVERY`], so a failover shows within a fraction of a second).
//! Every response carries a strict Content-Security-Policy and friends.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use chat_client::Client;
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::IntervalStream;

use crate::assets;
use crate::view::ClusterView;

/// How often the cluster view is pushed: at least five times a second.
pub const PUSH_EVERY: Duration = Duration::from_millis(200);

/// Scripts, styles, connections: this origin only; nothing may frame the page.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console's routes, reaching the cluster through `client`.
pub fn router(client: Client) -> Router {
    Router::new()
        .route("/", get(|| async { page(assets::INDEX_HTML, "text/html; charset=utf-8") }))
        .route("/app.js", get(|| async { page(assets::APP_JS, "text/javascript; charset=utf-8") }))
        .route("/style.css", get(|| async { page(assets::STYLE_CSS, "text/css; charset=utf-8") }))
        .route("/api/cluster", get(cluster))
        .route("/api/cluster/stream", get(stream))
        .layer(axum::middleware::map_response(secure))
        .with_state(client)
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn cluster(State(client): State<Client>) -> Response {
    match client.cluster_status().await {
        Ok(status) => Json(ClusterView::from(&status)).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("the cluster does not answer: {e}\n")).into_response(),
    }
}

async fn stream(State(client): State<Client>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut ticks = tokio::time::interval(PUSH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let events = IntervalStream::new(ticks).then(move |_| {
        let client = client.clone();
        async move {
            let event = match client.cluster_status().await {
                Ok(status) => Event::default().event("cluster").json_data(ClusterView::from(&status)),
                Err(e) => Ok(Event::default().event("unreachable").data(e.to_string())),
            };
            Ok(event.unwrap_or_else(|e| Event::default().event("unreachable").data(e.to_string())))
        }
    });
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
