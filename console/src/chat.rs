//! The chat view's API: the page's calls, each one call to the cluster made
//! with the session's own token. Nothing here decides who may do what — the
//! cluster does; this only carries the browser's request and answer, with
//! the session kept out of the browser's reach ([`crate::session`]).
//!
//! | call | what |
//! |---|---|
//! | `POST /api/register {username, password}` | create an account |
//! | `POST /api/login {username, password}` | session cookie; `{username, csrf}` |
//! | `GET /api/session` | `{username, csrf}` of the cookie's session |
//! | `POST /api/logout` | end the session here and in the cluster |
//! | `GET /api/conversations` | `[{partner, unread, last_message_id}]`, most recent first |
//! | `GET /api/conversations/{with}?before=ID&limit=N` | a page of messages, oldest first |
//! | `POST /api/conversations/{with}/messages {body}` | send |
//! | `POST /api/conversations/{with}/read {up_to}` | mark read (0: all) |
//! | `DELETE /api/messages/{id}` | delete a message |
//! | `GET /api/users?q=PATTERN&page=TOKEN` | user search |
//! | `GET /api/events` | the session's messages, live ([`crate::events`]) |

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chat_client::json::MessageJson;
use chat_client::{Conversation, ReadConsistency};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::guard::Authed;
use crate::reply::ApiError;
use crate::session::{self, Sessions};
use crate::state::ConsoleState;

/// A JSON body whose rejection is an [`ApiError`] naming what is wrong.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(JsonRejection::BytesRejection(e)) => {
                Err(ApiError::new(e.status(), "RESOURCE_EXHAUSTED", format!("body: {}", e.body_text())))
            }
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct SessionJson<'a> {
    username: &'a str,
    csrf: &'a str,
}

impl Authed {
    /// The cluster's answer; a token the cluster no longer knows ends the session here too.
    fn answer<T>(&self, sessions: &Sessions, result: chat_client::Result<T>) -> Result<T, ApiError> {
        result.map_err(|e| {
            let e = ApiError::from(e);
            if e.is_unauthenticated() {
                sessions.end(&self.id);
            }
            e
        })
    }
}

pub async fn register(State(state): State<ConsoleState>, Body(c): Body<Credentials>) -> Result<StatusCode, ApiError> {
    let _permit = state.logins.try_acquire().map_err(|_| ApiError::exhausted("too many logins in flight"))?;
    state.client.register(&c.username, &c.password).await?;
    Ok(StatusCode::CREATED)
}

pub async fn login(State(state): State<ConsoleState>, Body(c): Body<Credentials>) -> Result<Response, ApiError> {
    let _permit = state.logins.try_acquire().map_err(|_| ApiError::exhausted("too many logins in flight"))?;
    let token = state.client.login(&c.username, &c.password).await?;
    let client = state.client.clone().with_token(token);
    let (id, session) = match state.sessions.start(c.username, client.clone()) {
        Ok(started) => started,
        Err(full) => {
            // The cluster's session would outlive an error here: end it.
            let _ = client.logout().await;
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", full.to_string()));
        }
    };
    let mut response = Json(SessionJson { username: &session.username, csrf: &session.csrf }).into_response();
    let cookie = HeaderValue::from_str(&session::set_cookie(&id, state.secure_cookie)).expect("hex cookie");
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

pub async fn current(authed: Authed) -> Response {
    Json(SessionJson { username: &authed.session.username, csrf: &authed.session.csrf }).into_response()
}

pub async fn logout(State(state): State<ConsoleState>, authed: Authed) -> Response {
    state.sessions.end(&authed.id);
    // Already ended in the cluster (expired, or another logout) is fine too.
    if let Err(e) = authed.session.client.logout().await {
        tracing::debug!(error = %e, user = %authed.session.username, "logout: the cluster's session was not ended");
    }
    let cookie = HeaderValue::from_str(&session::clear_cookie(state.secure_cookie)).expect("ascii cookie");
    ([(header::SET_COOKIE, cookie)], StatusCode::NO_CONTENT).into_response()
}

/// One conversation as the page sees it.
#[derive(Serialize)]
pub struct ConversationJson<'a> {
    partner: &'a str,
    unread: u64,
    last_message_id: u64,
}

impl<'a> From<&'a Conversation> for ConversationJson<'a> {
    fn from(c: &'a Conversation) -> Self {
        ConversationJson { partner: &c.partner, unread: c.unread, last_message_id: c.last_message_id }
    }
}

pub async fn conversations(State(state): State<ConsoleState>, authed: Authed) -> Result<Response, ApiError> {
    let list = authed.answer(&state.sessions, authed.session.client.inbox().await)?;
    Ok(Json(list.iter().map(ConversationJson::from).collect::<Vec<_>>()).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    #[serde(default)]
    before: u64,
    #[serde(default = "Page::default_limit")]
    limit: u32,
}

impl Page {
    /// Messages per page at most (the cluster bounds it too).
    pub const MAX_LIMIT: u32 = 100;

    fn default_limit() -> u32 {
        50
    }
}

pub async fn history(
    State(state): State<ConsoleState>,
    authed: Authed,
    Path(with): Path<String>,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    if page.limit == 0 || page.limit > Page::MAX_LIMIT {
        return Err(ApiError::invalid(format!("limit: must be 1..={}", Page::MAX_LIMIT)));
    }
    let read = authed.session.client.read(&with, page.limit, page.before, ReadConsistency::Linearizable).await;
    let messages = authed.answer(&state.sessions, read)?;
    Ok(Json(messages.iter().map(MessageJson::from).collect::<Vec<_>>()).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outgoing {
    body: String,
}

pub async fn send(
    State(state): State<ConsoleState>,
    authed: Authed,
    Path(with): Path<String>,
    Body(out): Body<Outgoing>,
) -> Result<Response, ApiError> {
    let sent = authed.answer(&state.sessions, authed.session.client.send(&with, &out.body).await)?;
    let message = chat_client::Message {
        id: sent.id,
        from: authed.session.username.clone(),
        to: with,
        body: out.body,
        sent_at_ms: sent.sent_at_ms,
        ..Default::default()
    };
    Ok((StatusCode::CREATED, Json(MessageJson::from(&message))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadUpTo {
    #[serde(default)]
    up_to: u64,
}

pub async fn mark_read(
    State(state): State<ConsoleState>,
    authed: Authed,
    Path(with): Path<String>,
    Body(r): Body<ReadUpTo>,
) -> Result<Response, ApiError> {
    let marked = authed.answer(&state.sessions, authed.session.client.mark_read(&with, r.up_to).await)?;
    Ok(Json(serde_json::json!({ "marked": marked })).into_response())
}

pub async fn delete(
    State(state): State<ConsoleState>,
    authed: Authed,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    let deleted = authed.answer(&state.sessions, authed.session.client.delete_messages(&[id]).await)?;
    Ok(Json(serde_json::json!({ "deleted": deleted })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: String,
}

pub async fn users(
    State(state): State<ConsoleState>,
    authed: Authed,
    Query(search): Query<Search>,
) -> Result<Response, ApiError> {
    // The cluster matches a glob; a bare word means "names containing it".
    let pattern = if search.q.contains(['*', '?']) { search.q } else { format!("*{}*", search.q) };
    let found = authed.session.client.users(&pattern, 20, &search.page).await;
    let (users, next) = authed.answer(&state.sessions, found)?;
    Ok(Json(serde_json::json!({ "users": users, "next": next })).into_response())
}
