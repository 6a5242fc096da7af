//! The registry of cameras, by name (a camera's identity is its name, never an index).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::camera::Camera;
use crate::config::CameraConfig;

#[derive(Default)]
pub struct Hub {
    cameras: RwLock<BTreeMap<String, Arc<Camera>>>,
}

impl Hub {
    /// Starts every camera of `cameras`; call inside a tokio runtime.
    pub fn start(cameras: Vec<CameraConfig>) -> Arc<Hub> {
        let hub = Arc::new(Hub::default());
        for c in cameras {
            hub.add(Camera::spawn(c));
        }
        hub
    }

    pub fn add(&self, cam: Arc<Camera>) {
        self.cameras
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cam.name().to_owned(), cam);
    }

    pub fn get(&self, name: &str) -> Option<Arc<Camera>> {
        self.cameras
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn list(&self) -> Vec<Arc<Camera>> {
        self.cameras
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Stops every camera and waits for their actors to finish.
    pub async fn shutdown(&self) {
        let all = self.list();
        futures::future::join_all(all.iter().map(|c| c.stop())).await;
    }
}
