//! What a SESSION read promises, checked per client: it is not linearizable
//! (it may miss other clients' latest writes), but a client never sees less
//! than it has already seen or written.
//!
//! - **Read-your-writes**: a session read of a conversation holds every
//!   message the same client sent there and saw acknowledged before the read
//!   began.
//! - **Monotonic reads**: it holds every message the same client saw in an
//!   earlier read of that conversation (any level) that ended before it began.
//!
//! Messages a delete may have removed (any client's, acknowledged or not) are
//! exempt from both: deletes are the one way a message legitimately goes.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::Record;
use crate::model::{Input, Output};

/// Every violation in `records`, one sentence each.
pub fn check(records: &[Record]) -> Vec<String> {
    let maybe_deleted: BTreeSet<u64> = records
        .iter()
        .filter_map(|r| match (&r.op.input, &r.op.output) {
            (Input::Delete { ids }, Output::Deleted { .. } | Output::Unknown) => Some(ids.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut by_client: BTreeMap<usize, Vec<&Record>> = BTreeMap::new();
    for r in records {
        by_client.entry(r.client).or_default().push(r);
    }
    let mut anomalies = Vec::new();
    for (client, ops) in by_client {
        for (i, read) in ops.iter().enumerate() {
            let (Input::SessionRead, Output::Read(seen)) = (&read.op.input, &read.op.output) else { continue };
            let have: BTreeSet<u64> = seen.iter().map(|(id, _)| *id).collect();
            // What this client knew of the conversation when the read began.
            let before = ops[..i].iter().filter(|r| {
                r.conversation == read.conversation && r.op.completed.is_some_and(|c| c <= read.op.invoked)
            });
            for earlier in before {
                let (known, how): (Vec<u64>, &str) = match (&earlier.op.input, &earlier.op.output) {
                    (Input::Send { .. }, Output::Sent { id }) => (vec![*id], "its own acknowledged write"),
                    (Input::Read | Input::SessionRead, Output::Read(m)) => {
                        (m.iter().map(|(id, _)| *id).collect(), "a message it had already read")
                    }
                    _ => continue,
                };
                for id in known.into_iter().filter(|id| !maybe_deleted.contains(id) && !have.contains(id)) {
                    anomalies.push(format!(
                        "client {client}: a session read of {:?} at {} µs misses message {id}, {how}",
                        read.conversation, read.op.invoked
                    ));
                }
            }
        }
    }
    anomalies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::Operation;

    fn record(client: usize, input: Input, output: Output, invoked: u64, completed: u64) -> Record {
        let conversation = ("a".to_string(), "b".to_string());
        Record { client, conversation, op: Operation { input, output, invoked, completed: Some(completed) } }
    }

    #[test]
    fn a_session_read_missing_its_own_write_or_an_earlier_read_is_caught() {
        let history = vec![
            record(0, Input::Send { body: 1 }, Output::Sent { id: 10 }, 0, 5),
            record(0, Input::SessionRead, Output::Read(vec![]), 6, 8),
            record(1, Input::Read, Output::Read(vec![(10, 1), (11, 2)]), 0, 4),
            record(1, Input::SessionRead, Output::Read(vec![(10, 1)]), 5, 9),
        ];
        let anomalies = check(&history);
        assert_eq!(anomalies.len(), 2, "{anomalies:?}");
        assert!(anomalies[0].contains("client 0") && anomalies[0].contains("own acknowledged write"));
        assert!(anomalies[1].contains("client 1") && anomalies[1].contains("message 11"));
    }

    #[test]
    fn deletes_and_overlapping_operations_are_not_violations() {
        let history = vec![
            record(0, Input::Send { body: 1 }, Output::Sent { id: 10 }, 0, 5),
            // Still running when the read began: nothing promised.
            record(0, Input::Send { body: 2 }, Output::Sent { id: 11 }, 4, 9),
            record(1, Input::Delete { ids: vec![10] }, Output::Unknown, 1, 2),
            record(0, Input::SessionRead, Output::Read(vec![]), 6, 8),
            // Another client's write: a session read need not see it.
            record(2, Input::Send { body: 3 }, Output::Sent { id: 12 }, 0, 1),
        ];
        assert!(check(&history).is_empty());
    }
}
