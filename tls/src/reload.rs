//! Certificates are rotated without restarting anything: a [`Live`] value is
//! rebuilt whenever the files behind it change, and every new connection
//! takes the current one (connections already open keep theirs until they
//! close — a handshake is never redone mid-connection).
//!
//! Kubernetes updates a mounted Secret by swapping a symlink, so the files
//! change all at once; polling their bytes every few seconds sees that
//! without inotify (which misses symlink swaps on some volume types). A
//! rotation that does not parse, or whose key does not match its
//! certificate, is logged and ignored: the old certificates stay in use.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use crate::error::Result;
use crate::files::{Material, TlsDir};
use crate::role::parse_leaf;

/// A value that may be replaced at any time; readers take a snapshot.
pub struct Live<T> {
    /// A std RwLock: held only to clone or swap an `Arc`, never across an await.
    current: Arc<RwLock<Arc<T>>>,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Self { current: self.current.clone() }
    }
}

impl<T> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl<T> Live<T> {
    /// A value that never changes (certificates held in memory).
    pub fn fixed(value: T) -> Self {
        Self { current: Arc::new(RwLock::new(Arc::new(value))) }
    }

    /// The value as of now.
    pub fn current(&self) -> Arc<T> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn set(&self, value: T) {
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(value);
    }
}

/// How often certificate files are checked for a rotation by default.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Loads `dir` and builds a value from it now, then again every `every`
/// whenever the files' bytes changed, for as long as any clone of the
/// returned [`Live`] exists. Must be called inside a tokio runtime.
///
/// # Errors
/// If the files cannot be loaded or `build` fails the first time: a node
/// must not start with certificates it cannot use.
pub fn watch<T, F>(dir: TlsDir, every: Duration, build: F) -> Result<Live<T>>
where
    T: Send + Sync + 'static,
    F: Fn(&Material) -> Result<T> + Send + 'static,
{
    let mut seen = dir.read_bytes()?;
    let material = dir.parse(&seen)?;
    let live = Live::fixed(build(&material)?);
    log_loaded(&dir, &material, "certificates loaded");
    let weak: Weak<RwLock<Arc<T>>> = Arc::downgrade(&live.current);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(current) = weak.upgrade() else { return };
            let live = Live { current };
            let bytes = match dir.read_bytes() {
                Ok(bytes) if bytes == seen => continue,
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::warn!(dir = %dir.dir.display(), error = %e, "certificate files unreadable; keeping the loaded ones");
                    continue;
                }
            };
            match dir.parse(&bytes).and_then(|m| build(&m).map(|value| (m, value))) {
                Ok((material, value)) => {
                    live.set(value);
                    log_loaded(&dir, &material, "certificates rotated: new connections use them");
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.dir.display(), error = %e, "rotated certificates unusable; keeping the loaded ones")
                }
            }
            // Not retried until the files change again, valid or not.
            seen = bytes;
        }
    });
    Ok(live)
}

fn log_loaded(dir: &TlsDir, material: &Material, what: &str) {
    let leaf = material.chain.first().and_then(|c| parse_leaf(c).ok());
    let (name, days_left) =
        leaf.map_or((String::new(), 0), |l| (l.common_name.clone(), l.remaining().as_secs() / 86_400));
    tracing::info!(dir = %dir.dir.display(), certificate = %name, days_left, "{what}");
    if days_left < 7 {
        tracing::warn!(dir = %dir.dir.display(), days_left, "the certificate expires within a week and was not renewed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{Ca, Leaf};

    /// The loaded leaf's serial-free identity: its certificate bytes.
    fn leaf_der(m: &Material) -> Result<Vec<u8>> {
        Ok(m.chain[0].to_vec())
    }

    #[tokio::test]
    async fn a_rotation_is_picked_up_and_a_broken_one_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::generate("test").unwrap();
        let dir = ca.write_leaf(&Leaf::node(["127.0.0.1"]), tmp.path()).unwrap();
        let live = watch(dir.clone(), Duration::from_millis(20), leaf_der).unwrap();
        let first = live.current();

        ca.write_leaf(&Leaf::node(["127.0.0.1"]), tmp.path()).unwrap();
        let second = wait_for_change(&live, &first).await;
        assert_eq!(*second, dir.load().unwrap().chain[0].to_vec());

        // A certificate whose key is gone: the loaded one stays.
        std::fs::write(dir.key(), "not a key").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(live.current(), second);
    }

    async fn wait_for_change(live: &Live<Vec<u8>>, old: &Arc<Vec<u8>>) -> Arc<Vec<u8>> {
        for _ in 0..500 {
            let now = live.current();
            if now != *old {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the rotation was not picked up within 5 s");
    }

    #[test]
    fn a_dir_that_cannot_be_loaded_is_an_error_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = rt.enter();
        assert!(watch(TlsDir::new(tmp.path()), RELOAD_EVERY, leaf_der).is_err());
    }
}
