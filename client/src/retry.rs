//! What may be retried, and how long to wait between tries.

use std::time::Duration;

use tonic::{Code, Status};

/// Whether repeating a call is harmless once the first try may have been applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotence {
    /// Reads, and writes the cluster de-duplicates (sends with a request id, mark-read).
    Safe,
    /// Writes whose repetition reports an error after a first success (register,
    /// delete): retried only when the request surely never reached a node.
    Unsafe,
}

/// Whether a failed call should be retried against a (re-discovered) leader.
pub fn should_retry(status: &Status, idempotence: Idempotence) -> bool {
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => {
            idempotence == Idempotence::Safe || never_sent(status)
        }
        // The connection broke under the call (a member stopping mid-request
        // resets its HTTP/2 streams: tonic reports INTERNAL): as ambiguous as
        // UNAVAILABLE, not a refusal by the cluster.
        Code::Internal if connection_broke(status) => idempotence == Idempotence::Safe,
        _ => false,
    }
}

/// An INTERNAL status made by the transport, not sent by a node.
fn connection_broke(status: &Status) -> bool {
    let text = status.message().to_ascii_lowercase();
    ["h2 protocol error", "http2 error", "connection reset", "broken pipe", "connection closed"]
        .iter()
        .any(|t| text.contains(t))
}

/// A connection that was never established cannot have carried the request.
fn never_sent(status: &Status) -> bool {
    let text = format!("{status:?}").to_ascii_lowercase();
    text.contains("tcp connect error") || text.contains("connection refused") || text.contains("no leader")
}

/// Capped exponential backoff with jitter: 50 ms, 100 ms, then every 250 ms.
///
/// The cap is what a failover costs on top of the election: a client that has
/// backed off to the cap learns of the new leader up to one delay late. A
/// retry is one `GetStatus` per candidate, cheap enough to repeat four times
/// a second (etcd's client retries every 25 ms).
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);
    pub const MAX: Duration = Duration::from_millis(250);

    /// The next wait: between half and all of the current step.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        let jitter = rand::random::<u64>() % (base.as_millis() as u64 / 2 + 1);
        base / 2 + Duration::from_millis(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_calls_retry_after_ambiguous_failures() {
        let ambiguous = Status::unavailable("leader changed while committing");
        assert!(should_retry(&ambiguous, Idempotence::Safe));
        assert!(!should_retry(&ambiguous, Idempotence::Unsafe));
        let refused = Status::unavailable("tcp connect error: Connection refused");
        assert!(should_retry(&refused, Idempotence::Unsafe));
        assert!(!should_retry(&Status::invalid_argument("body"), Idempotence::Safe));
        assert!(!should_retry(&Status::not_found("bob"), Idempotence::Safe));
    }

    #[test]
    fn a_connection_broken_under_a_call_is_ambiguous_a_nodes_internal_error_is_not() {
        let broken = Status::internal("h2 protocol error: http2 error");
        assert!(should_retry(&broken, Idempotence::Safe), "a member stopping mid-request");
        assert!(!should_retry(&broken, Idempotence::Unsafe), "it may have been applied");
        assert!(!should_retry(&Status::internal("storage: disk full"), Idempotence::Safe));
    }

    #[test]
    fn backoff_grows_and_caps() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(first <= Duration::from_millis(50));
        for _ in 0..10 {
            assert!(b.next_delay() <= Backoff::MAX);
        }
        assert!(b.next_delay() >= Backoff::MAX / 2, "capped steps keep their floor");
    }
}
