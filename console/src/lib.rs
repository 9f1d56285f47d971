//! chat-console: a web console for a replicated-chat cluster, a client of
//! its public API (not code inside the node). This first part serves the
//! cluster view: every member's role, term, indexes and lag, pushed to the
//! browser five times a second over Server-Sent Events; the page is embedded
//! in the binary (no CDN, no framework) and served under a strict
//! Content-Security-Policy.
//!
//! Layout: [`view`] (what the page shows, as JSON), [`http`] (routes,
//! security headers, the event stream), [`assets`] (the embedded page).

pub mod assets;
pub mod http;
pub mod view;
