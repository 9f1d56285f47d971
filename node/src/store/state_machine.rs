//! The chat state machine: openraft's `RaftStateMachine` over the state column families.
//!
//! Each command is applied in its own `WriteBatch`, which also records how far
//! its entry got; the entry's last one records the new last-applied log id
//! (and membership). So after any crash the state and the point it reflects
//! agree, to the command. Those writes are not synced: the log entries they
//! come from are, and replaying them is deterministic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use rocksdb::WriteBatch;
use tokio::io::AsyncSeekExt;
use tokio::sync::broadcast;

use super::apply::{self, Delivered};
use super::durability::Durability;
use super::keys::{self, cf};
use super::{Db, decode, encode, write_err};
use crate::command::{Applied, Command, CommandResult};
use crate::typ::{Entry, LogId, NodeId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// How many delivered messages a slow subscriber may fall behind before it
/// re-reads from the DB instead (see the chat service's Subscribe).
const EVENT_BUFFER: usize = 4096;

#[derive(Debug, Clone)]
pub struct StateMachine {
    db: Db,
    snapshot_dir: PathBuf,
    events: broadcast::Sender<Arc<Delivered>>,
    /// Entries are applied only once the log holding them is on disk.
    durability: Arc<Durability>,
}

impl StateMachine {
    /// # Errors
    /// When the snapshot directory cannot be created.
    pub fn new(db: Db, snapshot_dir: &Path, durability: Arc<Durability>) -> std::io::Result<Self> {
        std::fs::create_dir_all(snapshot_dir)?;
        // A crash while building leaves a partial file behind; it is never read, so drop it.
        for file in std::fs::read_dir(snapshot_dir)?.flatten() {
            if file.path().extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(file.path());
            }
        }
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Ok(Self { db, snapshot_dir: snapshot_dir.to_path_buf(), events, durability })
    }

    /// Messages as they are applied, for Subscribe.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Delivered>> {
        self.events.subscribe()
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Where snapshot files live (and backups are written before they stream).
    pub fn snapshot_dir(&self) -> &Path {
        &self.snapshot_dir
    }

    fn snapshot_path(&self, snapshot_id: &str) -> PathBuf {
        self.snapshot_dir.join(format!("{snapshot_id}.snap"))
    }

    /// Records `meta` as the current snapshot and removes every older snapshot file.
    fn set_current_snapshot(&self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.db.put_synced(cf::RAFT, keys::raft::SNAPSHOT_META, meta)?;
        let keep = self.snapshot_path(&meta.snapshot_id);
        if let Ok(dir) = std::fs::read_dir(&self.snapshot_dir) {
            for file in dir.flatten() {
                if file.path() != keep && file.path().extension().is_some_and(|e| e == "snap") {
                    let _ = std::fs::remove_file(file.path());
                }
            }
        }
        Ok(())
    }
}

impl StateMachine {
    /// Applies the commands of the entry at `log_id`, in order, each in its own
    /// `WriteBatch` so that it sees the ones before it (a command may create
    /// the account the next one sends to). Each batch records how far the entry
    /// got (`meta::APPLYING`); the last one records the entry as applied. After
    /// a crash in between, openraft applies the entry again and the commands
    /// already applied are skipped: applied exactly once.
    fn apply_batch(&self, log_id: &LogId, commands: &[Command]) -> Result<Vec<CommandResult>, StorageError> {
        let done = match self.db.get::<(u64, usize)>(cf::META, keys::meta::APPLYING)? {
            Some((index, position)) if index == log_id.index => position + 1,
            _ => 0,
        };
        let mut results = Vec::with_capacity(commands.len());
        // No one waits for results of commands applied before a restart: the
        // proposing leader's waiters were in the process that stopped.
        results.resize(done.min(commands.len()), Ok(Applied::Done));
        if commands.is_empty() {
            self.finish_entry(WriteBatch::default(), log_id)?;
        }
        for (position, cmd) in commands.iter().enumerate().skip(done) {
            let last = position + 1 == commands.len();
            results.push(self.apply_command(log_id, position, last, cmd)?);
        }
        Ok(results)
    }

    /// Applies the command at `position` of the entry at `log_id` and records
    /// the progress: the entry as applied if it is the `last` command.
    fn apply_command(
        &self,
        log_id: &LogId,
        position: usize,
        last: bool,
        cmd: &Command,
    ) -> Result<CommandResult, StorageError> {
        let mut batch = WriteBatch::default();
        let outcome = apply::apply(&self.db, &mut batch, cmd)?;
        if last {
            batch.delete_cf(self.db.cf(cf::META), keys::meta::APPLYING);
            self.finish_entry(batch, log_id)?;
        } else {
            batch.put_cf(self.db.cf(cf::META), keys::meta::APPLYING, encode(&(log_id.index, position)));
            self.db.raw().write(batch).map_err(write_err)?;
        }
        if let Some(d) = outcome.delivered {
            // No receivers is fine: nobody is subscribed right now.
            let _ = self.events.send(Arc::new(d));
        }
        Ok(outcome.result)
    }

    /// Writes `batch` with `log_id` as the last applied entry. Not synced: the
    /// log entries are, and applying them again is deterministic.
    fn finish_entry(&self, mut batch: WriteBatch, log_id: &LogId) -> Result<(), StorageError> {
        batch.put_cf(self.db.cf(cf::META), keys::meta::LAST_APPLIED, encode(log_id));
        self.db.raw().write(batch).map_err(write_err)
    }
}

fn snapshot_err(meta: Option<&SnapshotMeta>, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::<NodeId>::write_snapshot(meta.map(|m| m.signature()), openraft::AnyError::new(&e)).into()
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.db.get::<LogId>(cf::META, keys::meta::LAST_APPLIED)?;
        let membership = self.db.get::<StoredMembership>(cf::META, keys::meta::MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<CommandResult>>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        // A leader's own entries may be committed before its copy is synced
        // (see `Durability`); nothing is applied — answered, readable — before.
        if let Some(last) = entries.last() {
            self.durability.durable_through(last.log_id.index).await;
        }
        let mut results = Vec::new();
        for entry in entries {
            results.push(match &entry.payload {
                EntryPayload::Blank => {
                    self.finish_entry(WriteBatch::default(), &entry.log_id)?;
                    Vec::new()
                }
                EntryPayload::Normal(batch) => self.apply_batch(&entry.log_id, &batch.0)?,
                EntryPayload::Membership(m) => {
                    let mut batch = WriteBatch::default();
                    let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                    batch.put_cf(self.db.cf(cf::META), keys::meta::MEMBERSHIP, encode(&stored));
                    self.finish_entry(batch, &entry.log_id)?;
                    Vec::new()
                }
            });
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        // Anonymous: the OS removes it if we crash mid-transfer.
        let file = tempfile::tempfile_in(&self.snapshot_dir).map_err(|e| snapshot_err(None, e))?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        mut snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        tracing::info!(snapshot = %meta.snapshot_id, last_log_id = ?meta.last_log_id, "installing snapshot");
        let path = self.snapshot_path(&meta.snapshot_id);
        let copy = async {
            snapshot.seek(std::io::SeekFrom::Start(0)).await?;
            let mut out = tokio::fs::File::create(&path).await?;
            tokio::io::copy(&mut snapshot, &mut out).await?;
            out.sync_all().await
        };
        copy.await.map_err(|e| snapshot_err(Some(meta), e))?;
        let db = self.db.clone();
        let read_path = path.clone();
        let batch = tokio::task::spawn_blocking(move || super::snapshot::read_into_batch(&db, &read_path))
            .await
            .map_err(|e| snapshot_err(Some(meta), e))?
            .map_err(|e| snapshot_err(Some(meta), e))?;
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(true);
        self.db.raw().write_opt(batch, &opts).map_err(write_err)?;
        self.set_current_snapshot(meta)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let Some(meta) = self.db.get::<SnapshotMeta>(cf::RAFT, keys::raft::SNAPSHOT_META)? else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(self.snapshot_path(&meta.snapshot_id))
            .await
            .map_err(|e| snapshot_err(Some(&meta), e))?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(file) }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let db = self.db.clone();
        let tmp = self.snapshot_dir.join(format!("building-{}.tmp", uuid::Uuid::new_v4()));
        let tmp_for_writer = tmp.clone();
        let described = tokio::task::spawn_blocking(move || {
            super::snapshot::write(&db, &tmp_for_writer, &[keys::meta::LAST_APPLIED, keys::meta::MEMBERSHIP])
        })
        .await
        .map_err(|e| snapshot_err(None, e))?
        .map_err(|e| snapshot_err(None, e))?;
        let last_log_id = described[0].as_deref().map(decode::<LogId>).transpose()?;
        let last_membership = described[1].as_deref().map(decode::<StoredMembership>).transpose()?.unwrap_or_default();
        let snapshot_id = match last_log_id {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, uuid::Uuid::new_v4().simple()),
            None => format!("empty-{}", uuid::Uuid::new_v4().simple()),
        };
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
        let path = self.snapshot_path(&meta.snapshot_id);
        std::fs::rename(&tmp, &path).map_err(|e| snapshot_err(Some(&meta), e))?;
        self.set_current_snapshot(&meta)?;
        tracing::info!(snapshot = %meta.snapshot_id, "built snapshot");
        let file = tokio::fs::File::open(&path).await.map_err(|e| snapshot_err(Some(&meta), e))?;
        Ok(Snapshot { meta, snapshot: Box::new(file) })
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::command::{Batch, Rejection};
    use crate::store::query;

    fn state() -> (tempfile::TempDir, StateMachine) {
        state_with(Arc::default())
    }

    fn state_with(durability: Arc<Durability>) -> (tempfile::TempDir, StateMachine) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db")).unwrap();
        let state = StateMachine::new(db, &dir.path().join("snapshots"), durability).unwrap();
        (dir, state)
    }

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn entry(index: u64, commands: Vec<Command>) -> Entry {
        Entry { log_id: log_id(index), payload: EntryPayload::Normal(Batch(commands)) }
    }

    /// A well-formed argon2id PHC string (apply checks the form, not the password).
    pub(crate) const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$YWJjZGVmZ2hpamtsbW5vcA$kUzRrJ1GBDPHDvbMMRrz0fZQjqyF6zr2f8h4ujrq0WQ";

    fn create(user: &str) -> Command {
        Command::CreateAccount { username: user.into(), password_hash: HASH.into(), created_at_ms: 0 }
    }

    fn login(user: &str, token: u8) -> Command {
        Command::OpenSession {
            username: user.into(),
            token_hash: [token; 32],
            created_at_ms: 0,
            expires_at_ms: i64::MAX,
            max_sessions: 16,
        }
    }

    fn send(token: u8, to: &str, body: &str) -> Command {
        Command::SendMessage {
            token_hash: [token; 32],
            to: to.into(),
            body: body.into(),
            sent_at_ms: 0,
            request_id: String::new(),
        }
    }

    fn bodies(state: &StateMachine, user: &str, partner: &str) -> Vec<(u64, String)> {
        query::conversation_range(state.db(), user, partner, 0, u64::MAX)
            .unwrap()
            .into_iter()
            .map(|(id, m)| (id, m.body))
            .collect()
    }

    #[tokio::test]
    async fn nothing_is_applied_before_the_log_holding_it_is_synced() {
        use futures::FutureExt;
        let durability = Arc::new(Durability::default());
        let (_dir, mut state) = state_with(durability.clone());
        let db = state.db().clone();
        let ticket = durability.written(2); // a leader's own entries from index 2, not yet synced
        state.apply([entry(1, vec![create("alice")])]).await.unwrap(); // below them: applies at once
        let mut applying = Box::pin(state.apply([entry(2, vec![create("bob")])]));
        assert!((&mut applying).now_or_never().is_none(), "applied before the sync");
        assert!(query::account(&db, "bob").unwrap().is_none());
        durability.synced(ticket);
        applying.await.unwrap();
        assert!(query::account(&db, "bob").unwrap().is_some());
    }

    /// Whatever proposed them (a peer's forged Forward, an old log), commands
    /// that break the API's rules are refused where they are applied.
    #[tokio::test]
    async fn apply_refuses_commands_that_break_the_api_rules() {
        let (_dir, mut state) = state();
        let bad = |username: &str| Command::CreateAccount {
            username: username.into(),
            password_hash: HASH.into(),
            created_at_ms: 0,
        };
        let commands = vec![
            bad("evil/../\0name\n"),
            bad(""),
            Command::CreateAccount { username: "alice".into(), password_hash: String::new(), created_at_ms: 0 },
            create("bob"),
            login("bob", 1),
            send(1, "bob", &"x".repeat(crate::validate::MAX_BODY + 1)),
        ];
        let results = state.apply([entry(1, commands)]).await.unwrap();
        let refused: Vec<bool> = results[0].iter().map(|r| matches!(r, Err(Rejection::Invalid(_)))).collect();
        assert_eq!(refused, [true, true, true, false, false, true]);
        assert!(query::account(state.db(), "evil/../\0name\n").unwrap().is_none());
        assert!(query::account(state.db(), "").unwrap().is_none());
        assert!(query::account(state.db(), "alice").unwrap().is_none());
    }

    fn session(user: &str, token: u8, created: i64, expires: i64, max: u32) -> Command {
        Command::OpenSession {
            username: user.into(),
            token_hash: [token; 32],
            created_at_ms: created,
            expires_at_ms: expires,
            max_sessions: max,
        }
    }

    fn send_at(token: u8, to: &str, at: i64, request_id: &str) -> Command {
        Command::SendMessage {
            token_hash: [token; 32],
            to: to.into(),
            body: "b".into(),
            sent_at_ms: at,
            request_id: request_id.into(),
        }
    }

    /// Sessions end when they expire (a write stamped later is refused), a
    /// renewal moves the expiry, the cap ends the oldest, and the sweep
    /// removes expired sessions and old request ids.
    #[tokio::test]
    async fn sessions_expire_are_renewed_capped_and_swept() {
        let (_dir, mut state) = state();
        let db = state.db().clone();
        let mut n = 0;
        let mut apply = async |commands: Vec<Command>| {
            n += 1;
            state.apply([entry(n, commands)]).await.unwrap().remove(0)
        };
        apply(vec![create("alice"), create("bob"), session("alice", 1, 10, 100, 2)]).await;
        let r = apply(vec![send_at(1, "bob", 50, "early"), send_at(1, "bob", 100, "late")]).await;
        assert!(matches!(r[0], Ok(Applied::Sent { .. })), "{r:?}");
        assert_eq!(r[1], Err(Rejection::InvalidSession), "expired at 100");
        let r =
            apply(vec![Command::RenewSession { token_hash: [1; 32], expires_at_ms: 200 }, send_at(1, "bob", 150, "")])
                .await;
        assert!(matches!(r[1], Ok(Applied::Sent { .. })), "renewed: {r:?}");

        // The cap is 2: a third login ends the oldest (token 1).
        apply(vec![session("alice", 2, 20, 1000, 2), session("alice", 3, 30, 1000, 2)]).await;
        assert!(query::session(&db, &[1; 32]).unwrap().is_none(), "the oldest session ended");
        assert!(query::session(&db, &[2; 32]).unwrap().is_some() && query::session(&db, &[3; 32]).unwrap().is_some());

        // The sweep at 1000: sessions 2 and 3 expire; request ids before 100 go, later ones stay.
        let r = apply(vec![Command::Expire { now_ms: 1000, requests_before_ms: 100 }]).await;
        assert_eq!(r, vec![Ok(Applied::Count(3))], "two sessions and the request id made at 50");
        for token in [2u8, 3] {
            assert!(query::session(&db, &[token; 32]).unwrap().is_none());
        }
        let keys_in = |name| db.raw().iterator_cf(db.cf(name), rocksdb::IteratorMode::Start).count();
        assert_eq!((keys_in(keys::cf::USER_SESSIONS), keys_in(keys::cf::SESSIONS)), (0, 0));
        assert_eq!(keys_in(keys::cf::REQUESTS), 0, "'late' was refused and never recorded; 'early' expired");
    }

    #[tokio::test]
    async fn commands_in_one_entry_see_the_ones_before_them() {
        let (_dir, mut state) = state();
        let commands = vec![
            send(1, "bob", "too early"),
            create("alice"),
            create("bob"),
            login("alice", 1),
            send(1, "bob", "hi"),
            send(1, "bob", "again"),
            create("alice"),
        ];
        let results = state.apply([entry(3, commands)]).await.unwrap();
        assert_eq!(
            results,
            vec![vec![
                Err(Rejection::InvalidSession),
                Ok(Applied::Done),
                Ok(Applied::Done),
                Ok(Applied::Done),
                Ok(Applied::Sent { id: 1, sent_at_ms: 0 }),
                Ok(Applied::Sent { id: 2, sent_at_ms: 0 }),
                Err(Rejection::AccountExists("alice".into())),
            ]]
        );
        assert_eq!(bodies(&state, "alice", "bob"), vec![(1, "hi".into()), (2, "again".into())]);
        assert_eq!(state.applied_state().await.unwrap().0, Some(log_id(3)));
        // Ids go on from the counter in later entries, and count messages, not entries.
        let results = state.apply([entry(4, vec![send(1, "bob", "later")])]).await.unwrap();
        assert_eq!(results, vec![vec![Ok(Applied::Sent { id: 3, sent_at_ms: 0 })]]);
    }

    #[tokio::test]
    async fn an_entry_cut_short_by_a_crash_is_finished_without_applying_anything_twice() {
        let (_dir, mut state) = state();
        state.apply([entry(1, vec![create("alice"), create("bob"), login("alice", 1)])]).await.unwrap();
        let commands = vec![send(1, "bob", "one"), send(1, "bob", "two"), send(1, "bob", "three")];
        // What a crash after the second command leaves behind:
        for (position, cmd) in commands.iter().enumerate().take(2) {
            assert!(matches!(state.apply_command(&log_id(2), position, false, cmd), Ok(Ok(Applied::Sent { .. }))));
        }
        assert_eq!(state.applied_state().await.unwrap().0, Some(log_id(1)), "entry 2 is not applied yet");
        // A read now sees messages of entry 2: its chat-index must say 2, not 1.
        assert_eq!(query::applied_through(state.db()).unwrap(), 2, "a part-applied entry counts");
        // On restart openraft applies entry 2 again, from its start.
        let results = state.apply([entry(2, commands)]).await.unwrap();
        assert_eq!(
            results,
            vec![vec![Ok(Applied::Done), Ok(Applied::Done), Ok(Applied::Sent { id: 3, sent_at_ms: 0 })]]
        );
        assert_eq!(
            bodies(&state, "alice", "bob"),
            vec![(1, "one".into()), (2, "two".into()), (3, "three".into())],
            "each command applied exactly once"
        );
        assert_eq!(state.applied_state().await.unwrap().0, Some(log_id(2)));
        assert_eq!(state.db().get::<(u64, usize)>(cf::META, keys::meta::APPLYING).unwrap(), None);
        assert_eq!(query::applied_through(state.db()).unwrap(), 2);
    }

    #[tokio::test]
    async fn a_snapshot_taken_mid_entry_resumes_on_the_receiver_without_repeats() {
        let (_dir, mut source) = state();
        source.apply([entry(1, vec![create("alice"), create("bob"), login("alice", 1)])]).await.unwrap();
        let commands = vec![send(1, "bob", "one"), send(1, "bob", "two")];
        // The builder may run between two commands of an entry.
        let sent = source.apply_command(&log_id(2), 0, false, &commands[0]).unwrap();
        assert_eq!(sent, Ok(Applied::Sent { id: 1, sent_at_ms: 0 }));
        let snapshot = source.build_snapshot().await.unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1)));

        let (_dir2, mut receiver) = state();
        receiver.install_snapshot(&snapshot.meta, snapshot.snapshot).await.unwrap();
        // openraft then applies the log after the snapshot: entry 2, whole.
        receiver.apply([entry(2, commands)]).await.unwrap();
        assert_eq!(bodies(&receiver, "alice", "bob"), vec![(1, "one".into()), (2, "two".into())]);
        assert_eq!(receiver.applied_state().await.unwrap().0, Some(log_id(2)));
    }

    #[tokio::test]
    async fn blank_and_empty_entries_advance_the_applied_point() {
        let (_dir, mut state) = state();
        let blank = Entry { log_id: log_id(1), payload: EntryPayload::Blank };
        let results = state.apply([blank, entry(2, Vec::new())]).await.unwrap();
        assert_eq!(results, vec![Vec::new(), Vec::new()]);
        assert_eq!(state.applied_state().await.unwrap().0, Some(log_id(2)));
    }
}
