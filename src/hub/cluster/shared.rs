//! The fleet every node runs: the config file's cameras, with the changes made
//! through any node's API laid over them. Those changes live in Redis
//! (`camhub:cameras`: a camera's options as the API took them, or `removed`),
//! so every node sees them at its next step and a restart of any node keeps
//! them; the file itself is not written in cluster mode (every node has its
//! own copy).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::store::Store;
use super::{Cluster, IO_TIMEOUT};
use crate::config::{CameraConfig, CameraOptions};
use crate::hub::{ChangeError, Hub, HubError};

/// What the shared changes say a camera is.
const REMOVED: &str = "removed";

/// The file's cameras with the shared changes over them. A change that no
/// longer resolves (say, a media dir removed since) is left out, logged.
pub(super) fn merge(
    file: &BTreeMap<String, CameraConfig>,
    shared: &BTreeMap<String, String>,
    base: &Path,
) -> BTreeMap<String, CameraConfig> {
    let mut out = file.clone();
    for (name, value) in shared {
        if value == REMOVED {
            out.remove(name);
            continue;
        }
        let resolved = serde_json::from_str::<CameraOptions>(value)
            .map_err(|e| e.to_string())
            .and_then(|o| CameraConfig::resolve(name, o, base).map_err(|e| e.to_string()));
        match resolved {
            Ok(cfg) => {
                out.insert(name.clone(), cfg);
            }
            Err(e) => tracing::warn!(camera = %name, "cluster: the shared camera does not resolve here: {e}"),
        }
    }
    out
}

impl Cluster {
    /// Lays the shared changes read at a step over the file; whether the fleet changed.
    pub(super) fn refresh(&self, shared: BTreeMap<String, String>) -> bool {
        if *self.shared.lock() == shared {
            return false;
        }
        let merged = merge(&self.file.lock(), &shared, &self.base_dir);
        *self.shared.lock() = shared;
        let mut fleet = self.fleet.lock();
        let changed = *fleet != merged;
        *fleet = merged;
        changed
    }

    /// Sets the file's cameras (a reload), keeping the shared changes over them.
    pub(super) fn set_file(&self, file: BTreeMap<String, CameraConfig>) {
        let merged = merge(&file, &self.shared.lock(), &self.base_dir);
        *self.file.lock() = file;
        *self.fleet.lock() = merged;
    }

    async fn store(&self) -> Result<Store, ChangeError> {
        Store::connect(self.cfg.redis.expose(), &self.cfg.key_prefix, self.ttl(), IO_TIMEOUT)
            .await
            .map_err(|e| ChangeError::NotSaved(format!("cannot reach the cluster's Redis: {}", self.redact(&e))))
    }
}

fn saved(c: &Cluster, e: redis::RedisError) -> ChangeError {
    ChangeError::NotSaved(format!("the cluster's Redis: {}", c.redact(&e)))
}

impl Hub {
    /// Adds a camera to the shared fleet (any node may end up running it).
    pub async fn cluster_add(&self, cfg: &CameraConfig, options: &Map<String, Value>) -> Result<(), ChangeError> {
        let c = self.cluster().ok_or(ChangeError::Cluster)?.clone();
        let mut s = c.store().await?;
        let in_file = c.file.lock().contains_key(&cfg.name);
        let json = Value::Object(options.clone()).to_string();
        if !s.add_shared(&cfg.name, &json, in_file).await.map_err(|e| saved(&c, e))? {
            return Err(HubError::NameTaken(cfg.name.clone()).into());
        }
        refresh_now(&c, &mut s).await;
        Ok(())
    }

    /// Adds or changes a camera in the shared fleet: whether it is new.
    pub async fn cluster_put(&self, cfg: &CameraConfig, options: &Map<String, Value>) -> Result<bool, ChangeError> {
        let c = self.cluster().ok_or(ChangeError::Cluster)?.clone();
        let mut s = c.store().await?;
        let created = !c.in_fleet(&cfg.name);
        let json = Value::Object(options.clone()).to_string();
        s.set_shared(&cfg.name, &json).await.map_err(|e| saved(&c, e))?;
        refresh_now(&c, &mut s).await;
        Ok(created)
    }

    /// Removes a camera from the shared fleet (its owner stops it at its next
    /// step): false if there is no such camera.
    pub async fn cluster_remove(&self, name: &str) -> Result<bool, ChangeError> {
        let c = self.cluster().ok_or(ChangeError::Cluster)?.clone();
        if !c.in_fleet(name) {
            return Ok(false);
        }
        let mut s = c.store().await?;
        s.set_shared(name, REMOVED).await.map_err(|e| saved(&c, e))?;
        refresh_now(&c, &mut s).await;
        Ok(true)
    }
}

/// This node sees its own change at once (the others at their next step).
async fn refresh_now(c: &Arc<Cluster>, s: &mut Store) {
    if let Ok(shared) = s.shared().await {
        c.refresh(shared);
    }
    c.wake();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_changes_lay_over_the_file() {
        let base = Path::new("/");
        let cam = |n: &str, u: &str| CameraConfig::resolve(n, CameraOptions::from_url(u), base).unwrap();
        let file: BTreeMap<String, CameraConfig> =
            [("a", "rtsp://h/a"), ("b", "rtsp://h/b")].iter().map(|(n, u)| ((*n).to_owned(), cam(n, u))).collect();
        let shared: BTreeMap<String, String> = [
            ("b", "removed"),
            ("c", r#"{"url": "rtsp://h/c", "keep": "on_demand"}"#),
            ("a", r#"{"url": "rtsp://h/a2"}"#),
            ("bad", r#"{"url": "ftp://nope"}"#),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
        let m = merge(&file, &shared, base);
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(m["a"].display_url(), "rtsp://h/a2");
        assert_eq!(m["c"].options.keep, crate::config::Keep::OnDemand);
    }
}
