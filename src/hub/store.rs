//! Run-time camera changes that last: the API's adds, changes and removals are
//! written into the config file first (`config::persist`: that camera's entry
//! only, the rest of the file as it was), and applied to the running hub only
//! once the file holds them. A file that cannot be written (read-only, gone, in
//! a form camhub does not edit) refuses the change with the reason, and nothing
//! changes. `server.persist: false`, or no config file (the demo), makes changes
//! run-time only, as the answer says.
//!
//! One change at a time (an async lock around read, edit, check, write and
//! apply), so parallel requests cannot interleave their edits of the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Hub, HubError};
use crate::camera::Camera;
use crate::config::{CameraConfig, Config, persist};

/// Why a change through the API was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The config file could not take the change: nothing was changed.
    #[error("not changed: {0}")]
    NotSaved(String),
    /// Not in cluster mode (a cluster change asked of a single node).
    #[error("not changed: this node is not in a cluster")]
    Cluster,
}

/// Whether a change was written to the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// In the config file: a restart serves it.
    InFile,
    /// Run-time only (why: `server.persist: false`, or no config file).
    RuntimeOnly(&'static str),
}

/// Where the hub's config file is, and the lock that orders changes to it.
#[derive(Default)]
pub struct Store {
    path: parking_lot::Mutex<Option<PathBuf>>,
    lock: tokio::sync::Mutex<()>,
}

impl Hub {
    /// The config file the hub was started from: API changes are written to it.
    pub fn set_config_file(&self, path: &Path) {
        *self.store.path.lock() = Some(path.to_owned());
    }

    /// The file changes go to, or why they stay run-time only.
    fn target(&self) -> Result<PathBuf, &'static str> {
        if !self.server().persist {
            return Err("server.persist is false");
        }
        self.store.path.lock().clone().ok_or("no config file (the built-in demo)")
    }

    /// Edits the config file with `edit` (`None`: nothing to write), checks that
    /// the result loads and says what `check` wants of it, and writes it.
    fn save(
        &self,
        path: &Path,
        edit: impl FnOnce(&str) -> Result<Option<String>, String>,
        check: impl FnOnce(&Config) -> Result<(), String>,
    ) -> Result<(), ChangeError> {
        let shown = path.display();
        let not_saved = |why: String| ChangeError::NotSaved(format!("cannot save to {shown}: {why}"));
        let text = std::fs::read_to_string(path).map_err(|e| not_saved(format!("cannot read it: {e}")))?;
        let Some(new) = edit(&text).map_err(&not_saved)? else { return Ok(()) };
        let base = path.parent().unwrap_or(Path::new("."));
        let cfg = Config::parse(&new, &shown.to_string(), base)
            .map_err(|e| not_saved(format!("the file would not load: {e} (fix the file, then try again)")))?;
        check(&cfg).map_err(&not_saved)?;
        persist::write_atomic(path, &new).map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                    " (read-only: give camhub write access to the file and its folder, or set server.persist: \
                     false for run-time-only changes)"
                }
                _ => "",
            };
            not_saved(format!("{e}{hint}"))
        })
    }

    /// The camera `cfg` (from the API body `options`, its JSON keys) written to
    /// the file as it will load: the same camera once read back.
    fn save_camera(&self, path: &Path, cfg: &CameraConfig, options: &Map<String, Value>) -> Result<(), ChangeError> {
        let name = &cfg.name;
        self.save(
            path,
            |text| persist::set_camera(text, name, options).map(Some),
            |loaded| match loaded.cameras.iter().find(|c| c.name == *name) {
                Some(c) if c == cfg => Ok(()),
                _ => Err(format!("camera {name:?} would not read back as given")),
            },
        )
    }

    /// Writes camera `cfg` into the config file (or says why it stays run-time only).
    fn save_set(&self, cfg: &CameraConfig, options: &Map<String, Value>) -> Result<Saved, ChangeError> {
        match self.target() {
            Ok(path) => {
                self.save_camera(&path, cfg, options)?;
                self.from_file.lock().insert(cfg.name.clone());
                Ok(Saved::InFile)
            }
            Err(why) => Ok(Saved::RuntimeOnly(why)),
        }
    }

    /// `POST /api/cameras`: adds a camera; the name must be free.
    pub async fn api_add(
        &self,
        cfg: CameraConfig,
        options: &Map<String, Value>,
    ) -> Result<(Arc<Camera>, Saved), ChangeError> {
        let _one = self.store.lock.lock().await;
        if self.get(&cfg.name).is_some() {
            return Err(HubError::NameTaken(cfg.name).into());
        }
        let saved = self.save_set(&cfg, options)?;
        Ok((self.add(cfg)?, saved))
    }

    /// `PUT /api/cameras/{name}`: adds or changes a camera.
    pub async fn api_put(
        &self,
        cfg: CameraConfig,
        options: &Map<String, Value>,
    ) -> Result<(Arc<Camera>, bool, Saved), ChangeError> {
        let _one = self.store.lock.lock().await;
        let saved = self.save_set(&cfg, options)?;
        let (cam, created) = self.put(cfg).await;
        Ok((cam, created, saved))
    }

    /// `DELETE /api/cameras/{name}`: `Ok(None)` if there is no such camera.
    pub async fn api_remove(&self, name: &str) -> Result<Option<Saved>, ChangeError> {
        let _one = self.store.lock.lock().await;
        if self.get(name).is_none() {
            return Ok(None);
        }
        let saved = match self.target() {
            Ok(path) => {
                self.save(
                    &path,
                    |text| persist::remove_camera(text, name),
                    |loaded| match loaded.cameras.iter().any(|c| c.name == name) {
                        true => Err(format!("camera {name:?} would still be in the file")),
                        false => Ok(()),
                    },
                )?;
                Saved::InFile
            }
            Err(why) => Saved::RuntimeOnly(why),
        };
        self.remove(name).await;
        Ok(Some(saved))
    }
}
