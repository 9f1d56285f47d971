//! The page, embedded at build time: no CDN, no framework, no inline script
//! (the Content-Security-Policy allows scripts from this origin only).

pub const INDEX_HTML: &str = include_str!("../assets/index.html");
/// The cluster view: the members table, the commit-rate chart, the timeline.
pub const CLUSTER_JS: &str = include_str!("../assets/cluster.js");
/// The chat view: login, conversations, messages, live events.
pub const CHAT_JS: &str = include_str!("../assets/chat.js");
pub const STYLE_CSS: &str = include_str!("../assets/style.css");
