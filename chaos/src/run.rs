//! One chaos run: a cluster, clients recording a history, the nemesis, then
//! heal, final reads, and the checks — linearizability per conversation, and
//! durability (every acknowledged message present unless a delete removed it,
//! nothing that was never sent, no duplicates).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chat_client::{Client, ClientOptions, ReadConsistency};
use chat_testkit::{PASSWORD, TestCluster};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::checker::{Operation, Verdict, check};
use crate::history::{History, Record, conversation};
use crate::model::{Conversation, Input, Output, PHANTOM};
use crate::nemesis::{self, Fault};
use crate::netns::Network;
use crate::workload;

#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    pub nodes: u64,
    /// Read replicas next to the voters (ids after theirs); faults hit them too.
    pub read_replicas: u64,
    pub clients: usize,
    pub users: usize,
    pub duration: Duration,
    pub max_faults: usize,
    pub faults: Vec<Fault>,
    /// The nodes' `RUST_LOG`.
    pub node_log: String,
}

#[derive(Debug)]
pub struct Report {
    /// Things worth knowing about the run itself (e.g. partitions unavailable here).
    pub notes: Vec<String>,
    pub operations: usize,
    pub unknown: usize,
    pub faults: Vec<String>,
    pub anomalies: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        writeln!(f, "operations: {} ({} with unknown outcome)", self.operations, self.unknown)?;
        writeln!(f, "faults injected: {}", self.faults.len())?;
        for fault in &self.faults {
            writeln!(f, "  {fault}")?;
        }
        writeln!(f, "anomalies: {}", self.anomalies.len())?;
        for a in &self.anomalies {
            writeln!(f, "  {a}")?;
        }
        Ok(())
    }
}

/// Search steps the checker may spend on one conversation before it calls the
/// result inconclusive (a few seconds of CPU, and bounded memory).
pub const CHECK_BUDGET: usize = 20_000_000;

/// Removes what cannot constrain the search and would only make it branch,
/// using what the complete final read shows (durability is checked on its own):
/// - a read that never answered says nothing;
/// - a send that never answered and whose body no read ever showed never took
///   effect (nobody could have deleted it without seeing its id);
/// - a send that never answered but was seen took effect before the first read
///   that showed it completed, with the id that read showed;
/// - a delete that never answered while one of its ids is still there at the
///   end did not take effect (deletes are all or nothing).
fn prune(ops: Vec<Operation<Input, Output>>, final_state: &[(u64, u32)]) -> Vec<Operation<Input, Output>> {
    use std::collections::HashMap;
    // body → (id, earliest completion of a read showing it)
    let mut seen: HashMap<u32, (u64, u64)> = HashMap::new();
    for op in &ops {
        if let (Output::Read(list), Some(done)) = (&op.output, op.completed) {
            for &(id, body) in list {
                let e = seen.entry(body).or_insert((id, done));
                e.1 = e.1.min(done);
            }
        }
    }
    ops.into_iter()
        .filter_map(|op| match (&op.input, &op.output) {
            (Input::Read, Output::Unknown) => None,
            (Input::Send { body }, Output::Unknown) => {
                seen.get(body).map(|&(id, by)| Operation { output: Output::Sent { id }, completed: Some(by), ..op })
            }
            (Input::Delete { ids }, Output::Unknown)
                if ids.iter().any(|id| final_state.iter().any(|(f, _)| f == id)) =>
            {
                None
            }
            _ => Some(op),
        })
        .collect()
}

/// Runs `config` against a cluster of `binary` processes.
///
/// # Panics
/// When the cluster cannot be started or healed (that is a failed run, not an anomaly).
pub async fn run(binary: &Path, config: &Config) -> Report {
    let mut notes = Vec::new();
    let mut fault_kinds = config.faults.clone();
    let ids: Vec<u64> = (1..=config.nodes + config.read_replicas).collect();
    let replicas: Vec<u64> = (config.nodes + 1..=config.nodes + config.read_replicas).collect();
    // Partitions need each node in its own network namespace.
    let net = if fault_kinds.contains(&Fault::Partition) {
        match Network::create(&ids, config.seed) {
            Ok(net) => Some(Arc::new(net)),
            Err(why) => {
                notes.push(format!("partitions unavailable here ({why}); running without them"));
                fault_kinds.retain(|f| *f != Fault::Partition);
                None
            }
        }
    } else {
        None
    };
    let env = [("RUST_LOG", config.node_log.as_str())];
    let mut cluster = match &net {
        Some(net) => TestCluster::start_placed(binary, config.nodes, &env, net.placement()).await,
        None => TestCluster::start(binary, config.nodes, &env).await,
    };
    for &id in &replicas {
        cluster.add_read_replica(id);
    }
    cluster.wait_members(config.nodes as usize, replicas.len()).await;
    let seeds = cluster.addrs();
    let users: Vec<String> = (0..config.users).map(|u| format!("u{u}")).collect();
    let admin = Client::new(seeds.clone(), cluster.client_options()).unwrap();
    let mut tokens = BTreeMap::new();
    for u in &users {
        admin.register(u, PASSWORD).await.expect("register");
        tokens.insert(u.clone(), admin.login(u, PASSWORD).await.expect("login"));
    }

    // Clients and nemesis, side by side.
    let history = Arc::new(History::default());
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    for c in 0..config.clients {
        let user = users[c % users.len()].clone();
        let peers: Vec<String> = users.iter().filter(|u| **u != user).cloned().collect();
        tasks.push(tokio::spawn(workload::client(
            c,
            user.clone(),
            tokens[&user].clone(),
            peers,
            seeds.clone(),
            cluster.tls.security(),
            config.seed,
            history.clone(),
            stopped.clone(),
        )));
    }
    let until = Instant::now() + config.duration;
    let plan = nemesis::Schedule { faults: &fault_kinds, seed: config.seed, max_faults: config.max_faults, until };
    let faults = nemesis::run(&mut cluster, net.as_deref(), &replicas, plan).await;
    tokio::time::sleep_until(until).await;
    let _ = stop.send(true);
    for t in tasks {
        t.await.expect("client task");
    }

    // Heal (the nemesis heals each fault itself) and wait for a full cluster.
    eprintln!(
        "chaos: clients stopped after {} operations; waiting for {} voters and {} read replicas",
        history.records().len(),
        config.nodes,
        replicas.len()
    );
    cluster.wait_members(config.nodes as usize, replicas.len()).await;

    // Final reads of every conversation, recorded like any other read.
    let finals =
        Client::new(seeds, ClientOptions { deadline: Duration::from_secs(30), ..cluster.client_options() }).unwrap();
    let mut final_state = BTreeMap::new();
    for (i, a) in users.iter().enumerate() {
        for b in &users[i + 1..] {
            let reader = finals.clone().with_token(tokens[a].clone());
            let invoked = history.now();
            let messages =
                reader.read(b, workload::READ_LIMIT, 0, ReadConsistency::Linearizable).await.expect("final read");
            if messages.len() >= workload::READ_LIMIT as usize {
                notes
                    .push(format!("conversation {a}/{b} reached the read limit: its final state is not fully checked"));
            }
            let seen: Vec<(u64, u32)> = messages.iter().map(|m| (m.id, history.lookup(&m.body))).collect();
            history.push(Record {
                client: usize::MAX,
                conversation: conversation(a, b),
                op: Operation {
                    input: Input::Read,
                    output: Output::Read(seen.clone()),
                    invoked,
                    completed: Some(history.now()),
                },
            });
            final_state.insert(conversation(a, b), seen);
        }
    }

    let records = history.records();
    let mut anomalies = durability(&records, &final_state);
    let session_reads = records.iter().filter(|r| r.op.input == Input::SessionRead).count();
    let session = crate::session::check(&records);
    eprintln!("chaos: checked {session_reads} session reads per client: {} violations", session.len());
    anomalies.extend(session);
    for (conv, ops) in history.by_conversation() {
        let started = std::time::Instant::now();
        let ops = prune(ops, final_state.get(&conv).map(Vec::as_slice).unwrap_or_default());
        let verdict = check(&Conversation::default(), &ops, CHECK_BUDGET);
        eprintln!("chaos: checked {conv:?}: {} operations in {:.2?}: {verdict:?}", ops.len(), started.elapsed());
        if verdict == Verdict::Inconclusive {
            notes.push(format!("conversation {conv:?}: the checker's budget ran out; not proven either way"));
        }
        if verdict == Verdict::NotLinearizable {
            if let Some(dir) = std::env::var_os("CHAT_CHAOS_DUMP") {
                // One operation per line, for reading the whole failing history.
                let path = std::path::Path::new(&dir).join(format!("{}-{}.history", conv.0, conv.1));
                let lines: Vec<String> = ops
                    .iter()
                    .map(|o| format!("{} {:?} {:?} {:?}", o.invoked, o.completed, o.input, o.output))
                    .collect();
                let _ = std::fs::write(&path, lines.join("\n"));
                notes.push(format!("history of {conv:?} written to {}", path.display()));
            }
            anomalies.push(format!(
                "conversation {conv:?}: {} operations admit no linearization; {}",
                ops.len(),
                explain(&ops)
            ));
        }
    }
    drop(cluster);
    Report {
        notes,
        operations: records.len(),
        unknown: records.iter().filter(|r| r.op.output == Output::Unknown).count(),
        faults,
        anomalies,
    }
}

/// What the end state must hold, independent of ordering.
fn durability(records: &[Record], final_state: &BTreeMap<(String, String), Vec<(u64, u32)>>) -> Vec<String> {
    let mut anomalies = Vec::new();
    // Ids any delete (acknowledged or not) may have removed.
    let mut maybe_deleted: BTreeSet<u64> = BTreeSet::new();
    for r in records {
        if let (Input::Delete { ids }, Output::Deleted { .. } | Output::Unknown) = (&r.op.input, &r.op.output) {
            maybe_deleted.extend(ids);
        }
    }
    for (conv, messages) in final_state {
        let mut bodies = BTreeSet::new();
        for (id, body) in messages {
            if *body == PHANTOM {
                anomalies.push(format!("conversation {conv:?}: message {id} was never sent by any client"));
            } else if !bodies.insert(*body) {
                anomalies.push(format!("conversation {conv:?}: message body #{body} appears twice"));
            }
        }
        for r in records.iter().filter(|r| &r.conversation == conv) {
            if let (Input::Send { body }, Output::Sent { id }) = (&r.op.input, &r.op.output)
                && !maybe_deleted.contains(id)
                && !messages.iter().any(|(i, b)| i == id && b == body)
            {
                anomalies.push(format!("conversation {conv:?}: acknowledged message {id} (body #{body}) is lost"));
            }
        }
    }
    anomalies
}

/// Where a failing history first goes wrong, and which rule breaks: the
/// shortest prefix in time that already fails (operations invoked before the
/// cut; those still running at the cut count as "outcome unknown", which keeps
/// the prefix honest), its last operations, and whether it passes once the
/// id-order rule is dropped.
fn explain(ops: &[Operation<Input, Output>]) -> String {
    let is_linearizable = |model: &Conversation, ops: &[Operation<Input, Output>]| {
        check(model, ops, CHECK_BUDGET) != Verdict::NotLinearizable
    };
    let mut times: Vec<u64> = ops.iter().map(|o| o.invoked).collect();
    times.sort_unstable();
    let prefix = |cut: u64| -> Vec<Operation<Input, Output>> {
        ops.iter()
            .filter(|o| o.invoked <= cut)
            .map(|o| match o.completed {
                Some(c) if c <= cut => o.clone(),
                _ => Operation { output: Output::Unknown, completed: None, ..o.clone() },
            })
            .collect()
    };
    let (mut ok, mut bad) = (0, times.len().saturating_sub(1));
    if is_linearizable(&Conversation::default(), &prefix(times[bad])) {
        return "only the complete history fails".into();
    }
    while bad - ok > 1 {
        let mid = (ok + bad) / 2;
        if is_linearizable(&Conversation::default(), &prefix(times[mid])) {
            ok = mid;
        } else {
            bad = mid;
        }
    }
    let cut = times[bad];
    let failing = prefix(cut);
    let rule = if is_linearizable(&Conversation { strict_ids: false }, &failing) {
        "ids that do not grow in the order sends took effect"
    } else {
        "message contents (a read that no order of sends and deletes explains)"
    };
    let mut recent: Vec<&Operation<Input, Output>> = ops.iter().filter(|o| o.invoked <= cut).collect();
    recent.sort_by_key(|o| o.invoked);
    let window: Vec<String> = recent[recent.len().saturating_sub(14)..]
        .iter()
        .map(|o| {
            let output = match &o.output {
                Output::Read(seen) => format!("read {} messages: {:?}", seen.len(), seen),
                other => format!("{other:?}"),
            };
            format!("[{}..{}] {:?} -> {output}", o.invoked, o.completed.map_or("?".into(), |c| c.to_string()), o.input)
        })
        .collect();
    format!(
        "it first fails at t={cut}µs ({} operations invoked by then) on {rule}; the operations invoked last:\n      {}",
        failing.len(),
        window.join("\n      ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::op;

    #[test]
    fn pruning_keeps_what_constrains_and_pins_what_was_seen() {
        let ops = vec![
            op(Input::Send { body: 1 }, Output::Unknown, 0, None), // seen later: pinned
            op(Input::Send { body: 2 }, Output::Unknown, 1, None), // never seen: dropped
            op(Input::Read, Output::Unknown, 2, None),             // says nothing: dropped
            op(Input::Read, Output::Read(vec![(7, 1)]), 3, Some(9)),
            op(Input::Delete { ids: vec![7] }, Output::Unknown, 10, None), // 7 still there: dropped
        ];
        let pruned = prune(ops, &[(7, 1)]);
        assert_eq!(pruned.len(), 2);
        assert_eq!(pruned[0].output, Output::Sent { id: 7 });
        assert_eq!(pruned[0].completed, Some(9));
        assert_eq!(pruned[1].input, Input::Read);
        // A lost message is still a failure after pruning.
        let lost = vec![
            op(Input::Send { body: 1 }, Output::Sent { id: 7 }, 0, Some(1)),
            op(Input::Read, Output::Read(vec![]), 2, Some(3)),
        ];
        assert_eq!(check(&Conversation::default(), &prune(lost, &[]), CHECK_BUDGET), Verdict::NotLinearizable);
    }
}
