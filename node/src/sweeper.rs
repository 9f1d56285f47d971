//! The leader's housekeeping. Every `sweep_every` it proposes one
//! [`Command::Expire`]: sessions past their expiry end, and SendMessage
//! request ids older than the de-duplication window are forgotten, so
//! neither grows without bound. Apply does the work, identically on every
//! replica (the command carries the times); followers do nothing here.

use std::sync::Arc;

use crate::command::{Applied, Command, Written, now_ms};
use crate::limits::LimitsConfig;
use crate::node::ChatNode;

/// Runs until aborted (the shutdown path does).
pub async fn run(node: Arc<ChatNode>, limits: LimitsConfig) {
    let mut tick = tokio::time::interval(limits.sweep_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; nothing has expired at start
    loop {
        tick.tick().await;
        if node.metrics().current_leader != Some(node.id) {
            continue;
        }
        let now = now_ms();
        let window = i64::try_from(limits.dedup_window.as_millis()).unwrap_or(i64::MAX);
        let sweep = Command::Expire { now_ms: now, requests_before_ms: now.saturating_sub(window) };
        match node.write(sweep).await {
            Ok(Written { result: Ok(Applied::Count(n)), .. }) if n > 0 => {
                tracing::info!(records = n, "expired sessions and request ids")
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "sweep not committed; the next one retries"),
        }
    }
}
