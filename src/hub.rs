//! The registry of cameras, by name (a camera's identity is its name, never an
//! index): add, replace and remove at run time, and apply a reloaded config file
//! by its difference only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use crate::camera::Camera;
use crate::config::CameraConfig;

#[derive(Default)]
pub struct Hub {
    cameras: RwLock<BTreeMap<String, Arc<Camera>>>,
    /// Cameras that came from the config file (a reload may remove them;
    /// cameras added through the API are left alone unless the file names them).
    from_file: Mutex<BTreeSet<String>>,
    /// Where relative file paths of API-added cameras are resolved.
    pub base_dir: PathBuf,
    /// Browser live-view sessions (WHEP).
    pub whep: crate::whep::Whep,
}

/// What applying a reloaded config changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

impl Hub {
    /// Starts every camera of `cameras` (from the config file); call inside a tokio runtime.
    pub fn start(cameras: Vec<CameraConfig>, base_dir: PathBuf) -> Arc<Hub> {
        let hub = Arc::new(Hub { base_dir, ..Hub::default() });
        let mut names = hub.from_file.lock().unwrap_or_else(|p| p.into_inner());
        for c in cameras {
            names.insert(c.name.clone());
            hub.insert(Camera::spawn(c));
        }
        drop(names);
        hub
    }

    fn insert(&self, cam: Arc<Camera>) -> Option<Arc<Camera>> {
        self.cameras.write().unwrap_or_else(|p| p.into_inner()).insert(cam.name().to_owned(), cam)
    }

    /// Adds a camera; fails if the name is taken.
    pub fn add(&self, cfg: CameraConfig) -> Result<Arc<Camera>, String> {
        let mut cams = self.cameras.write().unwrap_or_else(|p| p.into_inner());
        if cams.contains_key(&cfg.name) {
            return Err(format!("a camera named {:?} exists already", cfg.name));
        }
        let cam = Camera::spawn(cfg);
        cams.insert(cam.name().to_owned(), cam.clone());
        Ok(cam)
    }

    /// Adds or replaces a camera. An identical config leaves the running camera
    /// untouched. Returns the camera and whether it is new.
    pub async fn put(&self, cfg: CameraConfig) -> (Arc<Camera>, bool) {
        if let Some(old) = self.get(&cfg.name) {
            if *old.config() == cfg {
                return (old, false);
            }
            let name = cfg.name.clone();
            let cam = Camera::spawn(cfg);
            self.insert(cam.clone());
            old.stop().await;
            tracing::info!(camera = %name, "camera replaced");
            return (cam, false);
        }
        let cam = Camera::spawn(cfg);
        self.insert(cam.clone());
        (cam, true)
    }

    /// Stops and removes a camera, freeing everything it held.
    pub async fn remove(&self, name: &str) -> bool {
        let cam = self.cameras.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        self.from_file.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        match cam {
            Some(c) => {
                c.stop().await;
                tracing::info!(camera = %name, "camera removed");
                true
            }
            None => false,
        }
    }

    /// Applies a reloaded config file: only the difference changes; unchanged
    /// cameras keep running untouched.
    pub async fn apply_file(&self, cameras: Vec<CameraConfig>) -> Applied {
        let mut out = Applied::default();
        let new_names: BTreeSet<String> = cameras.iter().map(|c| c.name.clone()).collect();
        let old_names = self.from_file.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for gone in old_names.difference(&new_names) {
            if self.remove(gone).await {
                out.removed.push(gone.clone());
            }
        }
        for cfg in cameras {
            let name = cfg.name.clone();
            let existed = self.get(&name);
            let (cam, _) = self.put(cfg).await;
            match existed {
                None => out.added.push(name.clone()),
                Some(old) if Arc::ptr_eq(&old, &cam) => out.unchanged.push(name.clone()),
                Some(_) => out.changed.push(name.clone()),
            }
        }
        *self.from_file.lock().unwrap_or_else(|p| p.into_inner()) = new_names;
        out
    }

    pub fn get(&self, name: &str) -> Option<Arc<Camera>> {
        self.cameras.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    pub fn list(&self) -> Vec<Arc<Camera>> {
        self.cameras.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Stops every camera and waits for their actors to finish.
    pub async fn shutdown(&self) {
        let all = self.list();
        futures::future::join_all(all.iter().map(|c| c.stop())).await;
    }
}
