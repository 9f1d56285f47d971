//! The sequential model of one conversation, for the checker. A conversation
//! (the messages between two users) is what a linearizable chat promises to
//! keep consistent on its own: sends append, deletes remove, reads see exactly
//! the current list, and message ids grow in the order sends take effect (the
//! state machine numbers messages in commit order).
//!
//! Bodies are interned to numbers by the history recorder; [`PHANTOM`] stands
//! for a body no client ever sent.

use crate::checker::Model;

/// A body nobody sent.
pub const PHANTOM: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Send {
        body: u32,
    },
    Read,
    /// A SESSION read: not linearizable, so the model places no constraint
    /// on it; `session` checks it per client.
    SessionRead,
    Delete {
        ids: Vec<u64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Sent {
        id: u64,
    },
    /// `(id, body)`, oldest first.
    Read(Vec<(u64, u32)>),
    Deleted {
        count: u64,
    },
    /// A delete naming an id that is not there (the API deletes all or nothing).
    NotFound,
    /// A definite refusal: nothing happened.
    Failed,
    /// The client gave up waiting: it may or may not have happened.
    Unknown,
}

/// The messages in the order their sends took effect (`id` once known), and
/// the highest id known so far.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct State {
    pub messages: Vec<(u32, Option<u64>)>,
    pub last_id: u64,
}

/// The model. `strict_ids` checks that ids grow in the order sends take
/// effect; turning it off tells, when a history fails, whether that rule is
/// the one broken.
#[derive(Debug, Clone, Copy)]
pub struct Conversation {
    pub strict_ids: bool,
}

impl Default for Conversation {
    fn default() -> Self {
        Self { strict_ids: true }
    }
}

impl Model for Conversation {
    type State = State;
    type Input = Input;
    type Output = Output;

    fn init(&self) -> State {
        State::default()
    }

    fn step(&self, s: &State, input: &Input, output: &Output) -> Option<State> {
        match (input, output) {
            (_, Output::Failed) | (Input::SessionRead, _) => Some(s.clone()),
            (Input::Send { body }, Output::Sent { id }) => {
                if (self.strict_ids && *id <= s.last_id) || s.messages.iter().any(|(b, _)| b == body) {
                    return None;
                }
                let mut next = s.clone();
                next.messages.push((*body, Some(*id)));
                next.last_id = *id;
                Some(next)
            }
            (Input::Send { body }, Output::Unknown) => {
                if s.messages.iter().any(|(b, _)| b == body) {
                    return None;
                }
                let mut next = s.clone();
                next.messages.push((*body, None));
                Some(next)
            }
            (Input::Read, Output::Read(seen)) => {
                if seen.len() != s.messages.len() {
                    return None;
                }
                let mut next = s.clone();
                for ((body, id), (seen_id, seen_body)) in next.messages.iter_mut().zip(seen) {
                    if body != seen_body || id.is_some_and(|id| id != *seen_id) {
                        return None;
                    }
                    *id = Some(*seen_id);
                }
                next.last_id = next.last_id.max(seen.last().map_or(0, |(id, _)| *id));
                Some(next)
            }
            (Input::Read, Output::Unknown) => Some(s.clone()),
            (Input::Delete { ids }, Output::Deleted { count }) => {
                let all_there = ids.iter().all(|id| s.messages.iter().any(|(_, m)| *m == Some(*id)));
                (all_there && *count == ids.len() as u64).then(|| remove(s, ids))
            }
            (Input::Delete { ids }, Output::NotFound) => {
                let missing = ids.iter().any(|id| !s.messages.iter().any(|(_, m)| *m == Some(*id)));
                missing.then(|| s.clone())
            }
            (Input::Delete { ids }, Output::Unknown) => {
                let all_there = ids.iter().all(|id| s.messages.iter().any(|(_, m)| *m == Some(*id)));
                Some(if all_there { remove(s, ids) } else { s.clone() })
            }
            _ => None,
        }
    }
}

fn remove(s: &State, ids: &[u64]) -> State {
    let mut next = s.clone();
    next.messages.retain(|(_, id)| !id.is_some_and(|id| ids.contains(&id)));
    next
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::checker::{Operation, is_linearizable};

    /// One operation of a conversation history (shared with the run module's tests).
    pub(crate) fn op(input: Input, output: Output, invoked: u64, completed: Option<u64>) -> Operation<Input, Output> {
        Operation { input, output, invoked, completed }
    }

    #[test]
    fn send_read_delete_in_order_is_fine() {
        let h = vec![
            op(Input::Send { body: 1 }, Output::Sent { id: 5 }, 0, Some(1)),
            op(Input::Send { body: 2 }, Output::Sent { id: 9 }, 2, Some(3)),
            op(Input::Read, Output::Read(vec![(5, 1), (9, 2)]), 4, Some(5)),
            op(Input::Delete { ids: vec![5] }, Output::Deleted { count: 1 }, 6, Some(7)),
            op(Input::Read, Output::Read(vec![(9, 2)]), 8, Some(9)),
            op(Input::Delete { ids: vec![5] }, Output::NotFound, 10, Some(11)),
        ];
        assert!(is_linearizable(&Conversation::default(), &h));
    }

    #[test]
    fn a_lost_acknowledged_send_is_caught() {
        let h = vec![
            op(Input::Send { body: 1 }, Output::Sent { id: 5 }, 0, Some(1)),
            op(Input::Read, Output::Read(vec![]), 2, Some(3)),
        ];
        assert!(!is_linearizable(&Conversation::default(), &h));
    }

    #[test]
    fn a_duplicate_or_a_phantom_is_caught() {
        let dup = vec![
            op(Input::Send { body: 1 }, Output::Sent { id: 5 }, 0, Some(1)),
            op(Input::Read, Output::Read(vec![(5, 1), (6, 1)]), 2, Some(3)),
        ];
        assert!(!is_linearizable(&Conversation::default(), &dup));
        let phantom = vec![op(Input::Read, Output::Read(vec![(3, PHANTOM)]), 0, Some(1))];
        assert!(!is_linearizable(&Conversation::default(), &phantom));
    }

    #[test]
    fn ids_must_follow_the_order_sends_took_effect() {
        // Send 1 completed before send 2 began, yet got the larger id.
        let h = vec![
            op(Input::Send { body: 1 }, Output::Sent { id: 9 }, 0, Some(1)),
            op(Input::Send { body: 2 }, Output::Sent { id: 5 }, 2, Some(3)),
        ];
        assert!(!is_linearizable(&Conversation::default(), &h));
    }

    #[test]
    fn an_unknown_send_may_appear_later_but_not_vanish_once_seen() {
        let appears = vec![
            op(Input::Send { body: 1 }, Output::Unknown, 0, None),
            op(Input::Read, Output::Read(vec![]), 1, Some(2)),
            op(Input::Read, Output::Read(vec![(4, 1)]), 3, Some(4)),
        ];
        assert!(is_linearizable(&Conversation::default(), &appears));
        let vanishes = vec![
            op(Input::Send { body: 1 }, Output::Unknown, 0, None),
            op(Input::Read, Output::Read(vec![(4, 1)]), 1, Some(2)),
            op(Input::Read, Output::Read(vec![]), 3, Some(4)),
        ];
        assert!(!is_linearizable(&Conversation::default(), &vanishes));
    }
}
