//! Subscribe streams each hold a task, a channel and a slot in the live
//! feed for as long as they last; unbounded, 1,000 streams on one session
//! were all accepted. Each open stream holds a [`Subscription`] guard.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

#[derive(Debug)]
pub struct Subscriptions {
    per_session: usize,
    per_node: usize,
    /// Open streams per session (token hash) and in all; a std Mutex, never held across an await.
    open: Mutex<(HashMap<[u8; 32], usize>, usize)>,
}

/// One open stream; dropping it frees its place.
#[derive(Debug)]
pub struct Subscription {
    owner: Arc<Subscriptions>,
    session: [u8; 32],
}

impl Subscriptions {
    pub fn new(per_session: usize, per_node: usize) -> Arc<Self> {
        Arc::new(Self { per_session, per_node, open: Mutex::default() })
    }

    /// A place for one more stream of `session`.
    ///
    /// # Errors
    /// `ResourceExhausted` naming the limit reached.
    pub fn open(self: &Arc<Self>, session: [u8; 32]) -> Result<Subscription> {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.1 >= self.per_node {
            return Err(Error::ResourceExhausted(format!(
                "this node serves {} Subscribe streams, its limit; try another member or later",
                self.per_node
            )));
        }
        let mine = open.0.entry(session).or_default();
        if *mine >= self.per_session {
            return Err(Error::ResourceExhausted(format!(
                "this session has {} Subscribe streams open, the most allowed; close one first",
                self.per_session
            )));
        }
        *mine += 1;
        open.1 += 1;
        Ok(Subscription { owner: self.clone(), session })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.1 = open.1.saturating_sub(1);
        if let Some(n) = open.0.get_mut(&self.session) {
            *n -= 1;
            if *n == 0 {
                open.0.remove(&self.session);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_capped_per_session_and_per_node_and_freed_on_drop() {
        let subs = Subscriptions::new(2, 3);
        let a1 = subs.open([1; 32]).unwrap();
        let _a2 = subs.open([1; 32]).unwrap();
        assert!(subs.open([1; 32]).unwrap_err().to_string().contains("this session"));
        let _b1 = subs.open([2; 32]).unwrap();
        assert!(subs.open([3; 32]).unwrap_err().to_string().contains("this node"));
        drop(a1);
        let _again = subs.open([1; 32]).expect("a place freed");
        assert_eq!(subs.open.lock().unwrap().1, 3);
    }
}
