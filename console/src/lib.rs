//! chat-console: a web console for a replicated-chat cluster, a client of
//! its public API (not code inside the node). Two views in one page:
//!
//! - the cluster, live: every member's role, term, indexes and lag, pushed
//!   to the browser five times a second over Server-Sent Events;
//! - chat: register, log in, conversations with unread counts, history with
//!   paging, receipts, live messages across failovers, user search.
//!
//! The page is embedded in the binary (no CDN, no framework) and served
//! under a strict Content-Security-Policy; the browser holds only an
//! HttpOnly, SameSite=Strict session cookie, and every state-changing call
//! carries a CSRF token.
//!
//! Layout: [`state`] (what the routes share), [`http`] (routes, security
//! headers, the cluster stream), [`feed`] (one poller for every viewer),
//! [`view`] (the cluster as JSON), [`chat`]
//! (the chat API), [`events`] (the session's live feed), [`session`]
//! (browser sessions), [`guard`] (same-origin and CSRF checks), [`reply`]
//! (errors as HTTP), [`tls`] (HTTPS off loopback), [`assets`] (the embedded
//! page).

pub mod assets;
pub mod chat;
pub mod events;
pub mod feed;
pub mod guard;
pub mod http;
pub mod reply;
pub mod session;
pub mod state;
pub mod tls;
pub mod view;
