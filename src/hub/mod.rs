//! The composition root: the cameras by name (a camera's identity is its name,
//! never an index), and what consumes each of them. The hub starts a camera and
//! then its outputs, and stops them in the reverse order; a camera never knows
//! who consumes it. Add, replace and remove at run time, and apply a reloaded
//! config file by its difference only. Process-wide settings (the memory
//! budget, WebRTC, the `server:` settings the API reads) are applied here, at
//! start and on reload (`apply_server`), and the metrics registry
//! is made here, with the hub's families in it (`metrics`).

pub mod cluster;
mod consumers;
pub mod metrics;
pub mod route;
mod store;

pub use store::{ChangeError, Saved};

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use tokio_util::sync::CancellationToken;

use crate::camera::{Camera, Context, Memory};
use crate::clock::Clock;
use crate::config::{CameraConfig, ServerConfig, StreamRole};
use crate::decode::schedule::Scheduler;
use crate::output::{OutputStats, Outputs};
use crate::snapshot::SnapshotSource;
use crate::telemetry::metrics::Metrics;

/// One camera and the consumers the hub started for it.
struct Member {
    camera: Arc<Camera>,
    /// The sub-stream (`streams.sub`): a camera of its own (`<name>.sub`), with
    /// its own demand, so each stream connects only while something reads it.
    sub: Option<Arc<Camera>>,
    /// Outputs for programs (SHM rings, Redis), those of the main stream and
    /// those of the sub (`from: sub`); stopped before the cameras.
    outputs: Mutex<Vec<Outputs>>,
    output_stats: Vec<Arc<OutputStats>>,
}

impl Member {
    /// The cameras first, then their outputs, each with its token in the tree
    /// (hub -> camera -> sub camera, outputs), made before anything is spawned.
    fn start(cfg: CameraConfig, hub: &Hub) -> Arc<Member> {
        let name = cfg.name.clone();
        let roles: BTreeSet<StreamRole> = cfg.options.outputs.values().map(|o| o.stream()).collect();
        let sub_cfg = cfg.sub_camera();
        let ctx = Context { clock: hub.clock.clone(), metrics: hub.metrics.clone(), scheduler: hub.scheduler.clone() };
        let camera = Camera::spawn(cfg, ctx.clone(), hub.stop.child_token());
        let sub = sub_cfg.map(|c| Camera::spawn(c, ctx, camera.stop_token().child_token()));
        let outputs: Vec<Outputs> = roles
            .into_iter()
            .filter_map(|role| {
                let cam = match role {
                    StreamRole::Main => &camera,
                    StreamRole::Sub => sub.as_ref()?,
                };
                Some(Outputs::start(cam, &name, role, &cam.stop_token().child_token(), hub.metrics.redis_flush()))
            })
            .collect();
        let output_stats = outputs.iter().flat_map(|o| o.stats().to_vec()).collect();
        Arc::new(Member { camera, sub, outputs: Mutex::new(outputs), output_stats })
    }

    /// Outputs first (they hold leases on the cameras), then the sub camera, then the camera.
    async fn stop(&self) {
        let outputs = std::mem::take(&mut *self.outputs.lock());
        for o in outputs {
            o.stop().await;
        }
        if let Some(sub) = &self.sub {
            sub.stop().await;
        }
        self.camera.stop().await;
    }
}

pub struct Hub {
    members: RwLock<BTreeMap<String, Arc<Member>>>,
    /// Cameras that came from the config file (a reload may remove them;
    /// cameras added through the API are left alone unless the file names them).
    from_file: Mutex<BTreeSet<String>>,
    /// Where relative file paths of API-added cameras are resolved.
    pub base_dir: PathBuf,
    /// The `server:` settings in force; a reload swaps them (`apply_server`).
    server: RwLock<Arc<ServerConfig>>,
    /// The address the API is served on, once bound (`set_bound`).
    bound: Mutex<Option<std::net::SocketAddr>>,
    /// Browser live-view sessions (WHEP).
    pub whep: crate::whep::Whep,
    /// The RTSP restream (`server.rtsp`): running, or why not (off, or its port taken).
    restream: std::sync::OnceLock<Result<crate::rtsp::Restream, String>>,
    /// State on an MQTT broker (`mqtt:`), once started.
    mqtt: std::sync::OnceLock<crate::mqtt::Mqtt>,
    clock: Clock,
    /// The registry `/metrics` renders; the cameras observe their stages into it.
    metrics: Arc<Metrics>,
    /// The root of the cancellation tree: every camera's token is its child.
    stop: CancellationToken,
    /// Every camera's decoding runs under its workers (`server.decode`).
    pub scheduler: Arc<Scheduler>,
    /// The config file API changes are written to (`store`).
    store: store::Store,
    /// Cluster mode (`cluster:`), once joined.
    cluster: std::sync::OnceLock<Arc<cluster::Cluster>>,
}

/// The decode workers `server` asks for (default one per core).
fn decode_workers(server: &ServerConfig) -> usize {
    server.decode.workers.map_or_else(Scheduler::default_workers, |w| w as usize)
}

/// Why the hub refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("a camera named {0:?} exists already")]
    NameTaken(String),
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
    /// Applies the process-wide settings of `server`, then starts every camera of
    /// `cameras` (from the config file) and its outputs; call inside a tokio runtime.
    pub fn start(server: &ServerConfig, cameras: Vec<CameraConfig>, base_dir: PathBuf) -> Arc<Hub> {
        crate::telemetry::memory::GLOBAL.set_limit(server.memory_budget.map_or(0, |b| b.0));
        let clock = Clock::real();
        let hub = Arc::new_cyclic(|me| {
            // The process starts with the hub; its start time is read once, here.
            let mut m = Metrics::new(clock.wall(), &SnapshotSource::ALL.map(SnapshotSource::as_str));
            m.register_collector(metrics::Families(me.clone()));
            Hub {
                base_dir,
                server: RwLock::new(Arc::new(server.clone())),
                bound: Mutex::new(None),
                whep: crate::whep::Whep::new(clock.clone()),
                restream: std::sync::OnceLock::new(),
                mqtt: std::sync::OnceLock::new(),
                scheduler: Scheduler::new(decode_workers(server), clock.clone()),
                clock,
                metrics: Arc::new(m),
                members: RwLock::default(),
                from_file: Mutex::default(),
                stop: CancellationToken::new(),
                store: store::Store::default(),
                cluster: std::sync::OnceLock::new(),
            }
        });
        hub.whep.configure(server.webrtc.clone());
        let mut names = hub.from_file.lock();
        for c in cameras {
            names.insert(c.name.clone());
            hub.insert(Member::start(c, &hub));
        }
        drop(names);
        hub.start_restream(server);
        hub
    }

    /// The `server:` settings in force (auth, CORS, `media_dirs`, ...).
    pub fn server(&self) -> Arc<ServerConfig> {
        self.server.read().clone()
    }

    /// The only folders API-added cameras may read files from (`server.media_dirs`).
    pub fn media_dirs(&self) -> Vec<PathBuf> {
        self.server.read().media_dirs.clone()
    }

    /// Applies a reloaded `server:` section: auth, CORS, `media_dirs`, the memory
    /// budget and WebRTC (for new viewers) at once. Returns the settings that
    /// changed but apply only at start (the listen address).
    pub fn apply_server(&self, new: ServerConfig) -> Vec<&'static str> {
        crate::telemetry::memory::GLOBAL.set_limit(new.memory_budget.map_or(0, |b| b.0));
        self.whep.configure(new.webrtc.clone());
        self.scheduler.set_workers(decode_workers(&new));
        if let Some(Ok(r)) = self.restream.get() {
            r.set_auth(&new.auth);
        }
        let mut cur = self.server.write();
        let mut restart = if cur.listen != new.listen { vec!["server.listen"] } else { Vec::new() };
        if cur.rtsp != new.rtsp {
            restart.push("server.rtsp");
        }
        if cur.log != new.log {
            restart.push("server.log");
        }
        *cur = Arc::new(new);
        restart
    }

    /// Records the address the API is served on (for `warnings`).
    pub fn set_bound(&self, addr: std::net::SocketAddr) {
        *self.bound.lock() = Some(addr);
    }

    /// What an operator should know about the settings in force: an API open to
    /// the network (a non-loopback address with no `server.auth`).
    pub fn warnings(&self) -> Vec<String> {
        let bound = *self.bound.lock();
        let open = !self.server.read().auth.enabled();
        match bound {
            Some(a) if open && !a.ip().is_loopback() => vec![format!(
                "the API listens on {a}, beyond this machine, with no server.auth: anyone who can reach it \
                 can use every camera and change the config; set server.auth tokens or users"
            )],
            _ => Vec::new(),
        }
    }

    fn insert(&self, m: Arc<Member>) -> Option<Arc<Member>> {
        self.members.write().insert(m.camera.name().to_owned(), m)
    }

    fn member(&self, name: &str) -> Option<Arc<Member>> {
        self.members.read().get(name).cloned()
    }

    /// Adds a camera; fails if the name is taken.
    pub fn add(&self, cfg: CameraConfig) -> Result<Arc<Camera>, HubError> {
        let mut all = self.members.write();
        if all.contains_key(&cfg.name) {
            return Err(HubError::NameTaken(cfg.name));
        }
        let m = Member::start(cfg, self);
        all.insert(m.camera.name().to_owned(), m.clone());
        drop(all);
        self.remount();
        Ok(m.camera.clone())
    }

    /// Adds or replaces a camera. An identical config leaves the running camera
    /// untouched. Returns the camera and whether it is new.
    ///
    /// The look-up and the swap are one step under the lock: two PUTs of one name
    /// at once each replace (and stop) what was there, so none is left running
    /// unlisted (issue 15, item 11).
    pub async fn put(&self, cfg: CameraConfig) -> (Arc<Camera>, bool) {
        let (m, old) = {
            let mut all = self.members.write();
            if let Some(old) = all.get(&cfg.name)
                && *old.camera.config() == cfg
            {
                return (old.camera.clone(), false);
            }
            let m = Member::start(cfg, self);
            let old = all.insert(m.camera.name().to_owned(), m.clone());
            (m, old)
        };
        self.remount();
        match old {
            Some(old) => {
                old.stop().await;
                tracing::info!(camera = %m.camera.name(), "camera replaced");
                (m.camera.clone(), false)
            }
            None => (m.camera.clone(), true),
        }
    }

    /// Stops and removes a camera, freeing everything it held.
    pub async fn remove(&self, name: &str) -> bool {
        let m = self.members.write().remove(name);
        self.from_file.lock().remove(name);
        self.remount();
        match m {
            Some(m) => {
                m.stop().await;
                tracing::info!(camera = %name, "camera removed");
                true
            }
            None => false,
        }
    }

    /// Applies a reloaded config file: only the difference changes; unchanged
    /// cameras keep running untouched.
    pub async fn apply_file(&self, cameras: Vec<CameraConfig>) -> Applied {
        if let Some(c) = self.cluster.get() {
            return self.apply_fleet(c, cameras).await;
        }
        let mut out = Applied::default();
        let new_names: BTreeSet<String> = cameras.iter().map(|c| c.name.clone()).collect();
        let old_names = self.from_file.lock().clone();
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
        *self.from_file.lock() = new_names;
        out
    }

    pub fn get(&self, name: &str) -> Option<Arc<Camera>> {
        self.member(name).map(|m| m.camera.clone())
    }

    /// A camera's sub-stream camera (`streams.sub`), if it has one.
    pub fn sub(&self, name: &str) -> Option<Arc<Camera>> {
        self.member(name).and_then(|m| m.sub.clone())
    }

    /// The camera that serves `role` of camera `name`: None if there is no such
    /// camera, or it has no sub-stream.
    pub fn stream(&self, name: &str, role: StreamRole) -> Option<Arc<Camera>> {
        let m = self.member(name)?;
        match role {
            StreamRole::Main => Some(m.camera.clone()),
            StreamRole::Sub => m.sub.clone(),
        }
    }

    /// Every sub-stream camera, for the metrics (labelled `<name>.sub`).
    pub fn subs(&self) -> Vec<Arc<Camera>> {
        self.members.read().values().filter_map(|m| m.sub.clone()).collect()
    }

    pub fn list(&self) -> Vec<Arc<Camera>> {
        self.members.read().values().map(|m| m.camera.clone()).collect()
    }

    /// A camera's outputs for programs, as the API and metrics show them.
    pub fn outputs(&self, name: &str) -> Vec<Arc<OutputStats>> {
        self.member(name).map_or_else(Vec::new, |m| m.output_stats.clone())
    }

    /// What a camera holds, in bytes, by kind, its rings included.
    pub fn memory(&self, cam: &Camera) -> Memory {
        let mut m = cam.memory();
        m.rings = self
            .outputs(cam.name())
            .iter()
            .filter_map(|o| o.path.as_ref())
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len() as usize)
            .sum();
        m
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stops every camera (outputs first, so they flush) and waits for them to
    /// finish; then MQTT (the cameras' last states, `offline`); then cancels the
    /// whole tree, so anything still subscribed to it ends.
    pub async fn shutdown(&self) {
        let all: Vec<_> = self.members.read().values().cloned().collect();
        futures::future::join_all(all.iter().map(|m| m.stop())).await;
        if let Some(m) = self.mqtt.get() {
            m.stop().await;
        }
        self.stop.cancel();
        if let Some(c) = self.cluster.get() {
            // The cameras stopped: the leases go back at once.
            c.wait_left().await;
        }
    }
}
