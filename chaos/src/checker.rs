//! A linearizability checker in the style of Porcupine (Lowe's refinement of
//! Wing & Gong): depth-first search over the order in which concurrent
//! operations could have taken effect, pruned by a cache of (operations
//! already linearized, model state) pairs already explored.
//!
//! An operation whose outcome is unknown (the client timed out) gets a
//! completion time of "never", so the search may place it anywhere after its
//! invocation — including after everything else, which is how "it never took
//! effect" is expressed.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash;
    type Input;
    type Output;

    fn init(&self) -> Self::State;

    /// The state after `input` returned `output`, or `None` if that output is
    /// impossible from `state`.
    fn step(&self, state: &Self::State, input: &Self::Input, output: &Self::Output) -> Option<Self::State>;
}

/// One completed (or abandoned) operation of a history.
#[derive(Debug, Clone)]
pub struct Operation<I, O> {
    pub input: I,
    pub output: O,
    /// When the client invoked it.
    pub invoked: u64,
    /// When the client saw the result; `None` if it never did.
    pub completed: Option<u64>,
}

/// What a check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    /// The search explored its whole budget of states without deciding.
    Inconclusive,
}

/// Whether some order of `history`'s operations, consistent with real time
/// (an operation that completed before another was invoked comes first), is a
/// legal sequential run of `model`. Unbounded search: for tests and small histories.
pub fn is_linearizable<M: Model>(model: &M, history: &[Operation<M::Input, M::Output>]) -> bool {
    check(model, history, usize::MAX) == Verdict::Linearizable
}

/// [`is_linearizable`] with at most `budget` search steps. The cache of
/// explored (linearized set, state) pairs keeps a 64-bit fingerprint of the
/// state rather than the state itself, so memory stays proportional to the
/// states explored, not to their size; a fingerprint collision could only
/// prune a branch wrongly once in ~2^64 pairs.
pub fn check<M: Model>(model: &M, history: &[Operation<M::Input, M::Output>], budget: usize) -> Verdict {
    // Events: a call and a return per operation, in time order; calls first at equal times.
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(history.len() * 2);
    for (i, op) in history.iter().enumerate() {
        events.push((op.invoked, false, i));
        events.push((op.completed.unwrap_or(u64::MAX), true, i));
    }
    events.sort_by_key(|&(t, is_return, i)| (t, is_return, i));
    // A doubly linked list over the events, so calls and returns can be lifted out and put back.
    let n = events.len();
    let mut next: Vec<usize> = (1..=n).collect(); // n = end
    let mut prev: Vec<usize> = (0..n).map(|i| if i == 0 { n } else { i - 1 }).collect(); // n = head
    let mut head = if n == 0 { n } else { 0 };
    let mut return_of = vec![0usize; history.len()];
    for (pos, &(_, is_return, op)) in events.iter().enumerate() {
        if is_return {
            return_of[op] = pos;
        }
    }
    let unlink = |pos: usize, head: &mut usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, q) = (prev[pos], next[pos]);
        if p == n {
            *head = q
        } else {
            next[p] = q
        }
        if q != n {
            prev[q] = p;
        }
    };
    let relink = |pos: usize, head: &mut usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        let (p, q) = (prev[pos], next[pos]);
        if p == n {
            *head = pos
        } else {
            next[p] = pos
        }
        if q != n {
            prev[q] = pos;
        }
    };

    let mut linearized = vec![0u64; history.len().div_ceil(64)];
    let mut seen: HashSet<(Vec<u64>, u64)> = HashSet::new();
    let fingerprint = |state: &M::State| {
        let mut h = DefaultHasher::new();
        state.hash(&mut h);
        h.finish()
    };
    let mut steps = 0usize;
    // Stack of (call event position, state before it).
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut cursor = head;
    while head != n {
        steps += 1;
        if steps > budget {
            return Verdict::Inconclusive;
        }
        if cursor == n {
            // Nothing more can be linearized here: backtrack.
            let Some((call, before)) = stack.pop() else { return Verdict::NotLinearizable };
            let op = events[call].2;
            relink(return_of[op], &mut head, &mut next, &mut prev);
            relink(call, &mut head, &mut next, &mut prev);
            linearized[op / 64] &= !(1 << (op % 64));
            state = before;
            cursor = next[call];
            continue;
        }
        let (_, is_return, op) = events[cursor];
        if is_return {
            // An operation returned before we could place it: this branch is dead.
            cursor = n;
            continue;
        }
        let entry = &history[op];
        if let Some(after) = model.step(&state, &entry.input, &entry.output) {
            let mut mark = linearized.clone();
            mark[op / 64] |= 1 << (op % 64);
            if seen.insert((mark.clone(), fingerprint(&after))) {
                stack.push((cursor, state));
                state = after;
                linearized = mark;
                unlink(return_of[op], &mut head, &mut next, &mut prev);
                unlink(cursor, &mut head, &mut next, &mut prev);
                cursor = head;
                continue;
            }
        }
        cursor = next[cursor];
    }
    Verdict::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A single register: write(v) → (), read() → v.
    struct Register;

    #[derive(Debug, Clone)]
    enum In {
        Write(u32),
        Read,
    }

    impl Model for Register {
        type State = u32;
        type Input = In;
        type Output = Option<u32>;
        fn init(&self) -> u32 {
            0
        }
        fn step(&self, state: &u32, input: &In, output: &Option<u32>) -> Option<u32> {
            match (input, output) {
                (In::Write(v), _) => Some(*v),
                (In::Read, Some(v)) if v == state => Some(*state),
                (In::Read, None) => Some(*state), // unknown outcome
                _ => None,
            }
        }
    }

    fn op(input: In, output: Option<u32>, invoked: u64, completed: Option<u64>) -> Operation<In, Option<u32>> {
        Operation { input, output, invoked, completed }
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // write(1) overlaps a read that sees 1 and a read that sees 0.
        let h = vec![
            op(In::Write(1), None, 0, Some(10)),
            op(In::Read, Some(0), 1, Some(5)),
            op(In::Read, Some(1), 6, Some(9)),
        ];
        assert!(is_linearizable(&Register, &h));
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_caught() {
        let h = vec![op(In::Write(1), None, 0, Some(5)), op(In::Read, Some(0), 6, Some(8))];
        assert!(!is_linearizable(&Register, &h));
    }

    #[test]
    fn reads_may_not_go_back_in_time() {
        // Two sequential reads see 2 then 1, while writes of 1 and 2 completed before both.
        let h = vec![
            op(In::Write(1), None, 0, Some(3)),
            op(In::Write(2), None, 1, Some(4)),
            op(In::Read, Some(2), 5, Some(6)),
            op(In::Read, Some(1), 7, Some(8)),
        ];
        assert!(!is_linearizable(&Register, &h));
    }

    #[test]
    fn an_abandoned_write_may_or_may_not_have_happened() {
        let took_effect = vec![op(In::Write(7), None, 0, None), op(In::Read, Some(7), 5, Some(6))];
        assert!(is_linearizable(&Register, &took_effect));
        let did_not = vec![op(In::Write(7), None, 0, None), op(In::Read, Some(0), 5, Some(6))];
        assert!(is_linearizable(&Register, &did_not));
        // But not both: once seen, it cannot be unseen.
        let flicker =
            vec![op(In::Write(7), None, 0, None), op(In::Read, Some(7), 5, Some(6)), op(In::Read, Some(0), 7, Some(8))];
        assert!(!is_linearizable(&Register, &flicker));
    }

    #[test]
    fn a_larger_concurrent_history_is_checked_quickly() {
        // 8 writers and readers interleaved: linearizable by construction (sequential real order).
        let mut h = Vec::new();
        for i in 0..200u64 {
            let v = (i / 2) as u32;
            if i % 2 == 0 {
                h.push(op(In::Write(v), None, i * 10, Some(i * 10 + 15)));
            } else {
                h.push(op(In::Read, Some(v), i * 10 + 1, Some(i * 10 + 9)));
            }
        }
        assert!(is_linearizable(&Register, &h));
    }
}
