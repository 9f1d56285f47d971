//! `GET /api/events`: the session's live feed, as Server-Sent Events.
//!
//! - `message` (SSE id = message id): every message sent to the user, from
//!   the cluster's Subscribe stream, which resumes after a leader failover
//!   with no gap and no duplicate. The browser's EventSource reconnects with
//!   `Last-Event-ID`, so a console restart or a dropped connection resumes
//!   the same way. (Subscribe sending a message is also what marks it
//!   *delivered*.)
//! - `inbox`: the conversation list whenever it changed (checked every
//!   [`INBOX_EVERY`]), so unread counts, the sender's own messages from other
//!   tabs and read receipts reach the page without it asking.
//! - `ended`: the session ended (logged out in another tab, or the cluster
//!   refused the stream); the page shows the login form.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chat_client::json::MessageJson;
use chat_client::{Conversation, ReadConsistency};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;

use crate::chat::ConversationJson;
use crate::guard::Authed;
use crate::reply::ApiError;
use crate::state::ConsoleState;

/// How often the conversation list is checked for changes.
pub const INBOX_EVERY: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct From {
    /// Resume after this message id (the page's newest); `Last-Event-ID` wins.
    #[serde(default)]
    after: u64,
}

pub async fn events(
    State(state): State<ConsoleState>,
    authed: Authed,
    headers: HeaderMap,
    Query(from): Query<From>,
) -> Result<Response, ApiError> {
    let slot = authed.session.open_stream().ok_or_else(|| {
        ApiError::exhausted(format!("this session has {} event streams open", crate::session::Session::MAX_STREAMS))
    })?;
    let resumed = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let after = resumed.unwrap_or(from.after);
    let client = authed.session.client.clone();
    let mut messages = client.subscribe(after)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let _slot = slot;
        let mut inbox_ticks = tokio::time::interval(INBOX_EVERY);
        let mut last_inbox: Option<Vec<Conversation>> = None;
        loop {
            let event = tokio::select! {
                _ = tx.closed() => return,
                message = messages.next() => match message {
                    Some(Ok(m)) => message_event(&m),
                    Some(Err(e)) => {
                        let _ = tx.send(Event::default().event("ended").data(e.to_string())).await;
                        state.sessions.end(&authed.id);
                        return;
                    }
                    None => return,
                },
                _ = inbox_ticks.tick() => {
                    // Logged out (in another tab) or forgotten: this stream ends too.
                    if state.sessions.get(&authed.id).is_none() {
                        let _ = tx.send(Event::default().event("ended").data("session ended")).await;
                        return;
                    }
                    let Ok(inbox) = client.inbox_at(ReadConsistency::Linearizable).await else { continue };
                    if last_inbox.as_ref() == Some(&inbox) {
                        continue;
                    }
                    let event = inbox_event(&inbox);
                    last_inbox = Some(inbox);
                    event
                }
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(ReceiverStream::new(rx).map(Ok));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

fn message_event(m: &chat_client::Message) -> Event {
    Event::default()
        .event("message")
        .id(m.id.to_string())
        .json_data(MessageJson::from(m))
        .expect("a message serializes")
}

fn inbox_event(inbox: &[Conversation]) -> Event {
    let list: Vec<_> = inbox.iter().map(ConversationJson::from).collect();
    Event::default().event("inbox").json_data(list).expect("a list serializes")
}
