//! What every request passes before a handler sees it.
//!
//! - [`same_origin`]: a state-changing request (anything but GET/HEAD) must
//!   come from this console's own page: a browser's `Sec-Fetch-Site` must not
//!   say another site started it, an `Origin` must be this host, and its
//!   body must be JSON (a cross-site form cannot send that without a CORS
//!   preflight this console never answers).
//! - [`Authed`]: the session named by the cookie; on a state-changing
//!   request also the session's CSRF token in `X-CSRF-Token`.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::reply::ApiError;
use crate::session::{self, Session, Sessions};

/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}

/// Refuses state-changing requests another site could have started.
pub async fn same_origin(request: Request, next: Next) -> Response {
    if changes_state(request.method())
        && let Err(e) = check_origin(request.headers())
    {
        return e.into_response();
    }
    next.run(request).await
}

fn check_origin(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Err(ApiError::forbidden(format!("Sec-Fetch-Site: {site}: only this console's page may change state")));
    }
    if let Some(origin) = text(header::ORIGIN.as_str()) {
        let host = text(header::HOST.as_str()).unwrap_or_default();
        let ours = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host);
        if !ours {
            return Err(ApiError::forbidden(format!("Origin: {origin} is not this console")));
        }
    }
    let json = text(header::CONTENT_TYPE.as_str()).is_some_and(|t| t.starts_with("application/json"));
    if !json {
        return Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "INVALID_ARGUMENT",
            "Content-Type: must be application/json",
        ));
    }
    Ok(())
}

/// A request from a logged-in browser (and, when it changes state, with the
/// session's CSRF token).
#[derive(Debug)]
pub struct Authed {
    pub id: String,
    pub session: Arc<Session>,
}

impl<S> FromRequestParts<S> for Authed
where
    Arc<Sessions>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let sessions = Arc::<Sessions>::from_ref(state);
        let id = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(session::id_from_cookies)
            .ok_or_else(|| ApiError::unauthenticated("not logged in"))?;
        let session = sessions.get(id).ok_or_else(|| ApiError::unauthenticated("session: unknown or expired"))?;
        if changes_state(&parts.method) {
            let token = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
            if !session.csrf_matches(token) {
                return Err(ApiError::forbidden(format!("{CSRF_HEADER}: missing or not this session's")));
            }
        }
        Ok(Authed { id: id.to_string(), session })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (axum::http::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn only_this_consoles_page_may_change_state() {
        let json = ("content-type", "application/json");
        assert!(check_origin(&headers(&[json, ("host", "c:8088"), ("origin", "http://c:8088")])).is_ok());
        assert!(check_origin(&headers(&[json, ("sec-fetch-site", "same-origin")])).is_ok());
        assert!(check_origin(&headers(&[json, ("host", "c:8088"), ("origin", "http://evil:8088")])).is_err());
        assert!(check_origin(&headers(&[json, ("host", "c:8088"), ("origin", "null")])).is_err());
        assert!(check_origin(&headers(&[json, ("sec-fetch-site", "cross-site")])).is_err());
        assert!(check_origin(&headers(&[json, ("sec-fetch-site", "same-site")])).is_err());
        let form = check_origin(&headers(&[("content-type", "application/x-www-form-urlencoded")])).unwrap_err();
        assert!(form.message.contains("Content-Type"));
    }
}
