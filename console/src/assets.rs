//! The page, embedded at build time: no CDN, no framework, no inline script
//! (the Content-Security-Policy allows scripts from this origin only).

pub const INDEX_HTML: &str = include_str!("../assets/index.html");
pub const APP_JS: &str = include_str!("../assets/app.js");
pub const STYLE_CSS: &str = include_str!("../assets/style.css");
