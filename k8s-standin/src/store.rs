//! The objects, their resourceVersions and the history of every write, as
//! an API server keeps them (closely enough for the operator and the nodes):
//! one global resourceVersion counter, optimistic concurrency on replace and
//! on patches that carry a resourceVersion, `generation` moved by spec changes.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Where an object lives: API group ("" for core), resource, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

/// One write, as a watch delivers it.
#[derive(Debug, Clone)]
pub struct Change {
    pub resource_version: u64,
    /// ADDED, MODIFIED or DELETED.
    pub kind: &'static str,
    pub key: Key,
    pub object: Value,
    /// The request that made it: POST, PUT, PATCH, DELETE.
    pub method: &'static str,
    /// The subresource written ("" or "status").
    pub subresource: String,
    /// When the server made it.
    pub at: std::time::Instant,
}

/// Why a write was refused, as the HTTP status a real API server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    AlreadyExists,
    Conflict,
    Invalid(String),
}

pub struct Store {
    objects: BTreeMap<Key, Value>,
    /// Pod logs (`pods/<name>/log`), as (RFC 3339 timestamp, line), oldest first.
    logs: BTreeMap<Key, Vec<(String, String)>>,
    version: u64,
    history: Vec<Change>,
    changes: broadcast::Sender<Change>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            objects: BTreeMap::new(),
            logs: BTreeMap::new(),
            version: 0,
            history: Vec::new(),
            changes: broadcast::channel(4096).0,
        }
    }
}

impl Store {
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Objects of `group`/`resource` in `namespace` (all namespaces if `None`).
    pub fn list(&self, group: &str, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(k, _)| k.group == group && k.resource == resource && namespace.is_none_or(|n| n == k.namespace))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Sets what `pods/<name>/log` returns for the pod at `key`.
    pub fn set_log(&mut self, key: Key, lines: Vec<(String, String)>) {
        self.logs.insert(key, lines);
    }

    /// A pod's log as the kubelet serves it: the last `tail` lines (all if
    /// `None`), each prefixed by its timestamp and a space if `timestamps`.
    ///
    /// # Errors
    /// `NotFound` for a pod that does not exist.
    pub fn log(&self, key: &Key, timestamps: bool, tail: Option<usize>) -> Result<String, Refusal> {
        self.objects.get(key).ok_or(Refusal::NotFound)?;
        let lines = self.logs.get(key).map(Vec::as_slice).unwrap_or_default();
        let from = tail.map_or(0, |n| lines.len().saturating_sub(n));
        Ok(lines[from..]
            .iter()
            .map(|(at, line)| if timestamps { format!("{at} {line}\n") } else { format!("{line}\n") })
            .collect())
    }

    /// Every write so far, oldest first.
    pub fn history(&self) -> &[Change] {
        &self.history
    }

    /// Every write from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Creates `object` (its `metadata.name`, or `generateName` plus a suffix).
    ///
    /// # Errors
    /// `AlreadyExists`, or `Invalid` without a name.
    pub fn create(&mut self, mut key: Key, mut object: Value, method: &'static str) -> Result<Value, Refusal> {
        if key.name.is_empty() {
            key.name = match (object["metadata"]["name"].as_str(), object["metadata"]["generateName"].as_str()) {
                (Some(name), _) => name.to_string(),
                (None, Some(prefix)) => format!("{prefix}{}", self.version + 1),
                (None, None) => return Err(Refusal::Invalid("metadata.name: required".into())),
            };
        }
        if self.objects.contains_key(&key) {
            return Err(Refusal::AlreadyExists);
        }
        let metadata = &mut object["metadata"];
        metadata["name"] = json!(key.name);
        if !key.namespace.is_empty() {
            metadata["namespace"] = json!(key.namespace);
        }
        metadata["uid"] = json!(format!("uid-{}-{}", key.name, self.version + 1));
        metadata["generation"] = json!(1);
        metadata["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        Ok(self.commit(key, object, "ADDED", method, ""))
    }

    /// Replaces an object; a `metadata.resourceVersion` in `object` must match.
    ///
    /// # Errors
    /// `NotFound`, `Conflict`.
    pub fn replace(&mut self, key: Key, object: Value) -> Result<Value, Refusal> {
        let current = self.objects.get(&key).ok_or(Refusal::NotFound)?.clone();
        precondition(&current, &object)?;
        let mut next = object;
        keep_identity(&current, &mut next);
        Ok(self.commit_if_changed(key, &current, next, "PUT", ""))
    }

    /// A JSON merge patch (RFC 7386) of the object, or of its `status` only
    /// with `subresource` "status"; a `metadata.resourceVersion` in the patch
    /// is a precondition. With `create`, a missing object is created (a
    /// server-side apply).
    ///
    /// # Errors
    /// `NotFound`, `Conflict`.
    pub fn patch(&mut self, key: Key, patch: &Value, subresource: &str, create: bool) -> Result<Value, Refusal> {
        let Some(current) = self.objects.get(&key).cloned() else {
            if create {
                return self.create(key, patch.clone(), "PATCH");
            }
            return Err(Refusal::NotFound);
        };
        precondition(&current, patch)?;
        let mut patch = patch.clone();
        if let Some(m) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        let mut next = current.clone();
        if subresource == "status" {
            json_patch::merge(&mut next["status"], &patch["status"]);
        } else {
            if let Some(p) = patch.as_object_mut() {
                p.remove("status");
            }
            json_patch::merge(&mut next, &patch);
        }
        keep_identity(&current, &mut next);
        Ok(self.commit_if_changed(key, &current, next, "PATCH", subresource))
    }

    /// Deletes an object at once (no finalizers, no grace period: what a
    /// kubelet does with a pod is the test's to play). `preconditions` (a
    /// DeleteOptions body's) name the uid and/or resourceVersion it must have.
    ///
    /// # Errors
    /// `NotFound`, `Conflict`.
    pub fn delete(&mut self, key: Key, preconditions: &Value) -> Result<Value, Refusal> {
        let current = self.objects.get(&key).ok_or(Refusal::NotFound)?;
        for field in ["uid", "resourceVersion"] {
            if let Some(wanted) = preconditions[field].as_str()
                && current["metadata"][field].as_str() != Some(wanted)
            {
                return Err(Refusal::Conflict);
            }
        }
        let object = self.objects.remove(&key).unwrap_or_default();
        self.version += 1;
        let change = Change {
            resource_version: self.version,
            kind: "DELETED",
            key,
            object: object.clone(),
            method: "DELETE",
            subresource: String::new(),
            at: std::time::Instant::now(),
        };
        self.history.push(change.clone());
        let _ = self.changes.send(change);
        Ok(object)
    }

    /// A write that changes nothing is not one: no new resourceVersion, no
    /// watch event (as a real API server skips no-op updates).
    fn commit_if_changed(
        &mut self,
        key: Key,
        current: &Value,
        mut next: Value,
        method: &'static str,
        sub: &str,
    ) -> Value {
        next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        if next == *current {
            return next;
        }
        self.commit(key, next, "MODIFIED", method, sub)
    }

    fn commit(&mut self, key: Key, mut object: Value, kind: &'static str, method: &'static str, sub: &str) -> Value {
        self.version += 1;
        object["metadata"]["resourceVersion"] = json!(self.version.to_string());
        self.objects.insert(key.clone(), object.clone());
        let change = Change {
            resource_version: self.version,
            kind,
            key,
            object: object.clone(),
            method,
            subresource: sub.to_string(),
            at: std::time::Instant::now(),
        };
        self.history.push(change.clone());
        let _ = self.changes.send(change);
        object
    }
}

fn precondition(current: &Value, incoming: &Value) -> Result<(), Refusal> {
    match incoming["metadata"]["resourceVersion"].as_str() {
        Some(rv) if Some(rv) != current["metadata"]["resourceVersion"].as_str() => Err(Refusal::Conflict),
        _ => Ok(()),
    }
}

/// What a write cannot change (uid, creation), and `generation`, which moves
/// only when the spec does.
fn keep_identity(current: &Value, next: &mut Value) {
    for field in ["uid", "creationTimestamp", "namespace", "name"] {
        next["metadata"][field] = current["metadata"][field].clone();
    }
    let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
    next["metadata"]["generation"] = json!(generation + i64::from(next.get("spec") != current.get("spec")));
}

/// Whether `object`'s labels match a selector like `a=b,c!=d,e`.
pub fn matches(selector: &str, object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    selector.split(',').map(str::trim).filter(|s| !s.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k].as_str() != Some(v)
        } else if let Some((k, v)) = term.split_once('=') {
            labels[k.trim_end_matches('=')].as_str() == Some(v)
        } else if let Some(k) = term.strip_prefix('!') {
            labels.get(k).is_none()
        } else {
            labels.get(term).is_some()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_key() -> Key {
        Key { group: String::new(), resource: "pods".into(), namespace: "chat".into(), name: "demo-0".into() }
    }

    #[test]
    fn a_delete_checks_its_preconditions_and_tells_watchers() {
        let mut store = Store::default();
        let created = store.create(pod_key(), json!({"metadata": {"name": "demo-0"}}), "POST").unwrap();
        let mut changes = store.subscribe();
        assert_eq!(store.delete(pod_key(), &json!({"uid": "someone-else"})), Err(Refusal::Conflict));
        assert!(store.get(&pod_key()).is_some(), "a refused delete removed the object");
        store.delete(pod_key(), &json!({"uid": created["metadata"]["uid"]})).unwrap();
        assert!(store.get(&pod_key()).is_none());
        assert_eq!(changes.try_recv().unwrap().kind, "DELETED");
        assert_eq!(store.delete(pod_key(), &Value::Null), Err(Refusal::NotFound));
    }
}
