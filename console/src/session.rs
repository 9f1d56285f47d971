//! Browser sessions. The browser holds only a random session id, in an
//! HttpOnly, SameSite=Strict cookie that no script can read; the chat token
//! it stands for stays here, in the console's memory. Each session also has
//! a CSRF token the page must echo on every state-changing call.
//!
//! Bounded: at most [`Sessions::MAX`] sessions; one idle for
//! [`Sessions::IDLE`] is forgotten (the cluster's own token outlives it and
//! is ended at logout only — a forgotten session just has to log in again).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_client::Client;
use rand::RngCore;

/// The cookie that carries the session id.
pub const COOKIE: &str = "chat_console_session";

/// One logged-in browser.
#[derive(Debug)]
pub struct Session {
    pub username: String,
    /// The cluster client, carrying this user's token.
    pub client: Client,
    /// What the page must send as `X-CSRF-Token` on every state-changing call.
    pub csrf: String,
    last_used: Mutex<Instant>,
    /// Open event streams; bounded per session.
    streams: AtomicUsize,
}

impl Session {
    /// At most this many live event streams (browser tabs) per session.
    pub const MAX_STREAMS: usize = 4;

    /// Takes a stream slot; `None` when all are in use. The slot is given
    /// back when the returned guard drops.
    pub fn open_stream(self: &Arc<Self>) -> Option<StreamSlot> {
        let taken = self.streams.fetch_add(1, Ordering::SeqCst);
        let slot = StreamSlot(Arc::clone(self));
        (taken < Self::MAX_STREAMS).then_some(slot)
    }

    /// Whether `token` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, token: &str) -> bool {
        let (a, b) = (self.csrf.as_bytes(), token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// A taken event-stream slot of a session.
#[derive(Debug)]
pub struct StreamSlot(Arc<Session>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Every session of this console.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Arc<Session>>>,
}

/// The console already holds [`Sessions::MAX`] live sessions.
#[derive(Debug, thiserror::Error)]
#[error("the console holds too many sessions; try again later")]
pub struct Full;

impl Sessions {
    /// Live sessions at most (each holds a few hundred bytes and a token).
    pub const MAX: usize = 10_000;
    /// A session unused this long is forgotten.
    pub const IDLE: Duration = Duration::from_secs(12 * 60 * 60);

    /// Starts a session for `username`; returns its id (the cookie's value).
    ///
    /// # Errors
    /// [`Full`] when [`Sessions::MAX`] sessions are live.
    pub fn start(&self, username: String, client: Client) -> Result<(String, Arc<Session>), Full> {
        let id = random_token();
        let session = Arc::new(Session {
            username,
            client,
            csrf: random_token(),
            last_used: Mutex::new(Instant::now()),
            streams: AtomicUsize::new(0),
        });
        let mut by_id = self.by_id.lock().expect("sessions lock");
        if by_id.len() >= Self::MAX {
            by_id.retain(|_, s| !s.idle());
            if by_id.len() >= Self::MAX {
                return Err(Full);
            }
        }
        by_id.insert(id.clone(), Arc::clone(&session));
        Ok((id, session))
    }

    /// The live session with `id`, marked used now.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let mut by_id = self.by_id.lock().expect("sessions lock");
        let session = by_id.get(id)?;
        if session.idle() {
            by_id.remove(id);
            return None;
        }
        *session.last_used.lock().expect("session lock") = Instant::now();
        Some(Arc::clone(session))
    }

    /// Ends the session with `id` (logout, or the cluster no longer knows its token).
    pub fn end(&self, id: &str) {
        self.by_id.lock().expect("sessions lock").remove(id);
    }

    pub fn len(&self) -> usize {
        self.by_id.lock().expect("sessions lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Session {
    fn idle(&self) -> bool {
        self.last_used.lock().expect("session lock").elapsed() > Sessions::IDLE
    }
}

/// 256 random bits, hex: unguessable session ids and CSRF tokens.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The session id in a `Cookie` header's value, if it names one.
pub fn id_from_cookies(header: &str) -> Option<&str> {
    header.split(';').filter_map(|pair| pair.trim().split_once('=')).find(|(k, _)| *k == COOKIE).map(|(_, v)| v)
}

/// The `Set-Cookie` value that gives the browser session `id`: unreadable by
/// scripts, never sent with a request another site starts.
pub fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/{secure}")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}")
}

#[cfg(test)]
mod tests {
    use chat_client::{ClientOptions, Security};

    use super::*;

    /// A client that never connects (channels are lazy; they need a runtime).
    fn client() -> Client {
        Client::new(vec!["127.0.0.1:1".into()], ClientOptions::new(Security::Plaintext)).unwrap()
    }

    #[tokio::test]
    async fn ids_and_csrf_tokens_are_random_and_checked_exactly() {
        let sessions = Sessions::default();
        let (a, sa) = sessions.start("ann".into(), client()).unwrap();
        let (b, _) = sessions.start("ann".into(), client()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(sa.csrf_matches(&sa.csrf.clone()));
        assert!(!sa.csrf_matches(""));
        assert!(!sa.csrf_matches(&sa.csrf[1..]));
        assert!(!sa.csrf_matches(&a));
        assert_eq!(sessions.get(&a).unwrap().username, "ann");
        sessions.end(&a);
        assert!(sessions.get(&a).is_none());
        assert!(sessions.get("not-a-session").is_none());
    }

    #[tokio::test]
    async fn streams_per_session_are_bounded_and_given_back() {
        let sessions = Sessions::default();
        let (_, s) = sessions.start("ann".into(), client()).unwrap();
        let slots: Vec<_> = (0..Session::MAX_STREAMS).map(|_| s.open_stream().unwrap()).collect();
        assert!(s.open_stream().is_none());
        drop(slots);
        assert!(s.open_stream().is_some());
    }

    #[test]
    fn the_cookie_is_http_only_and_same_site_strict() {
        assert_eq!(id_from_cookies("a=1; chat_console_session=abc; b=2"), Some("abc"));
        assert_eq!(id_from_cookies("chat_console_session_x=abc"), None);
        assert_eq!(id_from_cookies(""), None);
        let cookie = set_cookie("abc", false);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && !cookie.contains("Secure"));
        assert!(set_cookie("abc", true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
