//! argon2 is deliberately expensive: ~19 MiB of memory and a core for tens
//! of milliseconds per hash. Unbounded, 128 concurrent wrong-password logins
//! took ~600 MiB and starved the Raft task long enough to lose the leader.
//! Here at most `concurrency` hashes run at once, at most `queue` callers wait
//! for a slot, and the rest are refused at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use crate::error::{Error, Result};

#[derive(Debug)]
pub struct Hashing {
    /// Slots for running hashes; a permit is held for the whole hash.
    slots: Arc<Semaphore>,
    /// Callers waiting for a slot.
    waiting: AtomicUsize,
    queue: usize,
}

impl Hashing {
    pub fn new(concurrency: usize, queue: usize) -> Self {
        Self { slots: Arc::new(Semaphore::new(concurrency.max(1))), waiting: AtomicUsize::new(0), queue }
    }

    /// A place in the queue: taken before any other work for the request, so
    /// a refused caller costs nothing else (no read barrier, no lookup).
    ///
    /// # Errors
    /// `ResourceExhausted` when the queue is full.
    pub fn enter(&self) -> Result<Place<'_>> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::ResourceExhausted(format!(
                "too many sign-ups and logins in progress on this node (more than {} waiting); retry shortly",
                self.queue
            )));
        }
        Ok(Place { hashing: self, waiting: true })
    }

    /// [`Hashing::enter`], then [`Place::run`].
    ///
    /// # Errors
    /// As both.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        self.enter()?.run(work).await
    }
}

/// A caller's place in the queue; leaves it when dropped or run.
#[derive(Debug)]
pub struct Place<'a> {
    hashing: &'a Hashing,
    waiting: bool,
}

impl Place<'_> {
    fn leave(&mut self) {
        if std::mem::replace(&mut self.waiting, false) {
            self.hashing.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Runs `work` on a blocking thread once a slot is free.
    ///
    /// # Errors
    /// `Unavailable` if the node is shutting down; `Internal` if the work panicked.
    pub async fn run<T: Send + 'static>(mut self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let permit = self.hashing.slots.clone().acquire_owned().await;
        self.leave();
        let permit = permit.map_err(|_| Error::unavailable("shutting down"))?;
        tokio::task::spawn_blocking(move || {
            let _slot = permit;
            work()
        })
        .await
        .map_err(|e| Error::Internal(format!("worker failed: {e}")))
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn callers_past_the_queue_are_refused_at_once() {
        let hashing = Arc::new(Hashing::new(1, 2));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let hold = Arc::new(std::sync::Mutex::new(hold));
        // One running (blocked until released), two queued: the fourth is refused.
        let mut running = Vec::new();
        for _ in 0..3 {
            let (hashing, hold) = (hashing.clone(), hold.clone());
            running.push(tokio::spawn(async move {
                hashing.run(move || hold.lock().unwrap().recv().ok()).await.map(|_| ())
            }));
        }
        while hashing.waiting.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        let refused = hashing.run(|| ()).await.unwrap_err();
        assert!(matches!(refused, Error::ResourceExhausted(_)), "{refused}");
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        for r in running {
            r.await.unwrap().unwrap();
        }
        hashing.run(|| ()).await.expect("room again once the queue drained");
    }
}
