//! Saved sessions, one per cluster, in `$XDG_CONFIG_HOME/kubectl-chat/sessions.json`
//! (else `~/.config/…`), readable by the owner only (0600): it holds tokens.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub username: String,
    pub token: String,
    /// The highest state index this session has seen (`chat-index`): the
    /// next invocation's SESSION reads start from it, so a `read` after a
    /// `send` in another command sees the message.
    #[serde(default)]
    pub index: u64,
}

pub struct SessionStore {
    path: PathBuf,
}

impl SessionStore {
    pub fn default_location() -> anyhow::Result<Self> {
        let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(std::env::var_os("HOME").context("neither XDG_CONFIG_HOME nor HOME is set")?)
                .join(".config"),
        };
        Ok(Self { path: base.join("kubectl-chat").join("sessions.json") })
    }

    fn load(&self) -> anyhow::Result<BTreeMap<String, Session>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("reading {}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }

    fn save(&self, all: &BTreeMap<String, Session>) -> anyhow::Result<()> {
        let dir = self.path.parent().context("session path has a parent")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // Write a private temp file, then rename: never a moment with a world-readable token.
        let tmp = self.path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(all)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path).with_context(|| format!("writing {}", self.path.display()))
    }

    pub fn get(&self, cluster: &str) -> anyhow::Result<Option<Session>> {
        Ok(self.load()?.remove(cluster))
    }

    pub fn put(&self, cluster: &str, session: Session) -> anyhow::Result<()> {
        let mut all = self.load()?;
        all.insert(cluster.to_string(), session);
        self.save(&all)
    }

    /// Moves the saved session's position forward to `index` (never back).
    pub fn advance(&self, cluster: &str, index: u64) -> anyhow::Result<()> {
        let mut all = self.load()?;
        match all.get_mut(cluster) {
            Some(session) if session.index < index => session.index = index,
            _ => return Ok(()),
        }
        self.save(&all)
    }

    pub fn remove(&self, cluster: &str) -> anyhow::Result<()> {
        let mut all = self.load()?;
        if all.remove(cluster).is_some() {
            self.save(&all)?;
        }
        Ok(())
    }
}
