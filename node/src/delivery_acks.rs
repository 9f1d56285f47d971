//! Delivery receipts, batched. A message is *delivered* once a Subscribe
//! stream of its recipient has sent it, or the recipient has read the
//! conversation. Each node notes the highest id per user its streams and
//! reads have handed out, and every [`FLUSH_EVERY`] proposes them all as one
//! [`Command::MarkDelivered`] — one Raft entry for many receipts, never a
//! write per message per stream. Receipts the state already holds are dropped
//! before proposing, so reading delivered messages writes nothing.
//!
//! Bounded: at most [`MAX_PENDING`] users wait at once (a note past that is
//! dropped and counted: receipts are a courtesy, not data), and a flush
//! carries at most [`MAX_DELIVERY_ACKS`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::command::{Command, MAX_DELIVERY_ACKS};
use crate::node::ChatNode;
use crate::store::query;

/// How long receipts gather before one entry carries them.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// The most users whose receipts wait at once on one node.
pub const MAX_PENDING: usize = 100_000;

#[derive(Default)]
pub struct DeliveryAcks {
    /// user → the highest id handed out and not yet proposed. A std Mutex,
    /// never held across an await.
    pending: std::sync::Mutex<HashMap<String, u64>>,
    wake: Notify,
}

impl DeliveryAcks {
    /// Messages to `user` up to `id` have been handed to them.
    pub fn note(&self, user: &str, id: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(highest) = pending.get_mut(user) {
            *highest = (*highest).max(id);
        } else if pending.len() < MAX_PENDING {
            pending.insert(user.to_string(), id);
        } else {
            tracing::debug!(user, id, "too many pending delivery receipts; dropped one");
            return;
        }
        drop(pending);
        self.wake.notify_one();
    }

    /// Up to [`MAX_DELIVERY_ACKS`] pending receipts, taken out.
    fn take(&self) -> Vec<(String, u64)> {
        let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let users: Vec<String> = pending.keys().take(MAX_DELIVERY_ACKS).cloned().collect();
        users.into_iter().filter_map(|u| pending.remove_entry(&u)).collect()
    }

    /// Puts back receipts that could not be committed (a newer note wins).
    fn restore(&self, acks: Vec<(String, u64)>) {
        for (user, id) in acks {
            self.note(&user, id);
        }
    }

    fn is_empty(&self) -> bool {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty()
    }
}

/// Proposes the receipts `acks` gathers, until aborted (the shutdown path does).
pub async fn run(node: Arc<ChatNode>, acks: Arc<DeliveryAcks>) {
    loop {
        if acks.is_empty() {
            acks.wake.notified().await;
        }
        tokio::time::sleep(FLUSH_EVERY).await;
        let taken = acks.take();
        // Only what the state does not hold yet.
        let news: Vec<(String, u64)> = taken
            .into_iter()
            .filter(|(user, id)| query::delivered_up_to(node.db(), user).is_ok_and(|known| known < *id))
            .collect();
        if news.is_empty() {
            continue;
        }
        if let Err(e) = node.write(Command::MarkDelivered { acks: news.clone() }).await {
            tracing::debug!(error = %e, receipts = news.len(), "delivery receipts not committed; retrying");
            acks.restore(news);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_keep_the_highest_id_per_user_and_are_bounded() {
        let acks = DeliveryAcks::default();
        acks.note("bob", 5);
        acks.note("bob", 3);
        acks.note("carol", 7);
        let mut taken = acks.take();
        taken.sort();
        assert_eq!(taken, [("bob".to_string(), 5), ("carol".to_string(), 7)]);
        assert!(acks.is_empty());
        acks.restore(vec![("bob".into(), 6)]);
        acks.note("bob", 4);
        assert_eq!(acks.take(), [("bob".to_string(), 6)]);
        for i in 0..MAX_PENDING + 10 {
            acks.note(&format!("u{i}"), 1);
        }
        assert_eq!(acks.pending.lock().unwrap().len(), MAX_PENDING);
        assert_eq!(acks.take().len(), MAX_DELIVERY_ACKS);
    }
}
