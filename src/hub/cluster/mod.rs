//! Cluster mode (`cluster:`): several nodes share one fleet through Redis
//! (docs/cluster.md). Every node loads the same cameras; each camera runs on
//! exactly one node, the holder of its lease in Redis (`store`). A node steps
//! every `tick`: renews its node key and (every third of the TTL) its leases,
//! reads who is alive and who owns what, then claims the cameras planned for it
//! that are free and hands over, a few at a time, the ones planned elsewhere
//! that nobody is watching (`assign`). A lease it loses stops that camera at
//! once; without Redis it keeps its cameras until their leases would have
//! expired (measured from when the last renewal was sent), then stops them, so
//! no camera ever runs on two nodes. A clean stop releases every lease.

mod assign;
mod shared;
mod steps;
mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

pub use store::{Lease, Node};

use super::Hub;
use crate::config::{CameraConfig, ClusterConfig};
use crate::secret::scrub;
use store::Store;

/// How long a Redis round trip may take before the step gives up (and the
/// connection is made anew at the next).
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// A lease is given up this long before it would expire in Redis when it
/// cannot be renewed: the margin against clock rates and the stop's own time.
const FENCE_MARGIN: Duration = Duration::from_millis(500);

/// A lease this node holds.
#[derive(Debug, Clone)]
struct Held {
    lease: Lease,
    /// Until when no other node can hold it (the renewal's send time + TTL).
    valid_until: Instant,
}

/// What the cluster knows, for the API and metrics.
#[derive(Debug, Default, Clone)]
pub struct View {
    /// Live nodes by name.
    pub nodes: BTreeMap<String, Node>,
    /// Every fleet camera's lease (absent: no owner).
    pub leases: BTreeMap<String, Lease>,
}

pub struct Cluster {
    pub cfg: ClusterConfig,
    /// This node as the others see it.
    pub me: Node,
    /// The fleet: every camera of the config file and the API's (`shared`),
    /// whichever node runs it.
    fleet: Mutex<BTreeMap<String, CameraConfig>>,
    /// The config file's cameras.
    file: Mutex<BTreeMap<String, CameraConfig>>,
    /// The API's changes as last read from Redis.
    shared: Mutex<BTreeMap<String, String>>,
    /// Where relative paths of shared cameras resolve (the config file's folder).
    base_dir: std::path::PathBuf,
    view: Mutex<View>,
    held: Mutex<BTreeMap<String, Held>>,
    wake: Notify,
    /// Told once the leases are given back at a clean stop.
    left: Notify,
    pub redis_ok: AtomicBool,
    pub last_error: Mutex<Option<String>>,
    /// Cameras this node took over from another node.
    pub takeovers: AtomicU64,
    /// The last lease renewal's round trip, in microseconds.
    pub renew_us: AtomicU64,
    /// Redis commands sent (scripts count one each).
    pub commands: AtomicU64,
}

/// The owner of a camera this node does not run.
#[derive(Debug, Clone)]
pub struct Remote {
    pub node: String,
    pub advertise: String,
    pub fence: u64,
}

impl Cluster {
    pub fn node(&self) -> &str {
        self.cfg.node()
    }

    pub fn view(&self) -> View {
        self.view.lock().clone()
    }

    pub fn fleet(&self) -> Vec<CameraConfig> {
        self.fleet.lock().values().cloned().collect()
    }

    pub fn in_fleet(&self, name: &str) -> bool {
        self.fleet.lock().contains_key(name)
    }

    /// The fencing token of a camera this node holds.
    pub fn fence(&self, camera: &str) -> Option<u64> {
        self.held.lock().get(camera).map(|h| h.lease.fence)
    }

    /// Cameras this node holds.
    pub fn owned(&self) -> usize {
        self.held.lock().len()
    }

    fn redact(&self, e: &dyn std::fmt::Display) -> String {
        let url = url::Url::parse(self.cfg.redis.expose()).ok();
        let pw: Vec<String> = url.and_then(|u| u.password().map(str::to_owned)).into_iter().collect();
        let secrets: Vec<&str> = pw.iter().map(String::as_str).chain([self.cfg.redis.expose()]).collect();
        scrub(&e.to_string(), &secrets)
    }

    /// Asks for a step now (a request found a camera with no owner in view).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The time between steps.
    pub fn step_interval(&self) -> Duration {
        self.tick()
    }

    /// Waits (a moment at most) for the leases to be given back after the stop.
    pub async fn wait_left(&self) {
        let _ = tokio::time::timeout(IO_TIMEOUT + Duration::from_millis(500), self.left.notified()).await;
    }

    fn ttl(&self) -> Duration {
        self.cfg.lease_ttl.0
    }

    /// One step's interval: a fifth of the TTL, 0.2-1 s (a released camera is
    /// taken within about a second).
    fn tick(&self) -> Duration {
        (self.ttl() / 5).clamp(Duration::from_millis(200), Duration::from_secs(1))
    }
}

impl Hub {
    /// Joins the cluster with `fleet` (the config file's cameras): takes this
    /// node's name in Redis (refused while another live node has it) and starts
    /// stepping. The cameras start as their leases are taken.
    pub async fn join_cluster(
        self: &Arc<Self>,
        cfg: ClusterConfig,
        fleet: Vec<CameraConfig>,
        listen: std::net::SocketAddr,
    ) -> Result<(), String> {
        let advertise = cfg.advertise.clone().unwrap_or_else(|| format!("http://{listen}"));
        let me = Node { instance: format!("{:016x}", fastrand::u64(..)), advertise };
        let file: BTreeMap<String, CameraConfig> = fleet.into_iter().map(|c| (c.name.clone(), c)).collect();
        let c = Arc::new(Cluster {
            me,
            fleet: Mutex::new(file.clone()),
            file: Mutex::new(file),
            shared: Mutex::default(),
            base_dir: self.base_dir.clone(),
            view: Mutex::default(),
            held: Mutex::default(),
            wake: Notify::new(),
            left: Notify::new(),
            redis_ok: AtomicBool::new(false),
            last_error: Mutex::new(None),
            takeovers: AtomicU64::new(0),
            renew_us: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            cfg,
        });
        let name = c.node().to_owned();
        let mut store = Store::connect(c.cfg.redis.expose(), &c.cfg.key_prefix, c.ttl(), IO_TIMEOUT)
            .await
            .map_err(|e| format!("cannot reach the cluster's Redis: {}", c.redact(&e)))?;
        // A node that died a moment ago (a crash, then a restart) holds the name
        // until its key expires: wait that out; a live one renews and is refused.
        let deadline = self.clock.now() + c.ttl() + Duration::from_secs(1);
        loop {
            match store.join(&name, &c.me).await.map_err(|e| format!("cluster join: {}", c.redact(&e)))? {
                None => break,
                Some(holder) if self.clock.now() >= deadline => {
                    return Err(format!(
                        "cluster.node {name:?} is in use by a live node at {} (instance {}): give this node another \
                         name",
                        holder.advertise, holder.instance
                    ));
                }
                Some(_) => self.clock.sleep(Duration::from_millis(250)).await,
            }
        }
        c.redis_ok.store(true, Ordering::Relaxed);
        tracing::info!(node = %name, advertise = %c.me.advertise, "joined the cluster");
        let _ = self.cluster.set(c.clone());
        let hub = Arc::downgrade(self);
        let stop = self.stop.clone();
        tokio::spawn(async move { steps::run(c, hub, Some(store), stop).await });
        Ok(())
    }

    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// Who runs `name`, when another node does (None: here, unowned, or no cluster).
    pub fn remote_owner(&self, name: &str) -> Option<Remote> {
        let c = self.cluster.get()?;
        if self.get(name).is_some() {
            return None;
        }
        let v = c.view.lock();
        let lease = v.leases.get(name)?;
        let node = v.nodes.get(&lease.node)?;
        (lease.node != c.node()).then(|| Remote {
            node: lease.node.clone(),
            advertise: node.advertise.clone(),
            fence: lease.fence,
        })
    }

    /// A reloaded config file in cluster mode: the fleet changes; cameras run
    /// here take their new config, removed ones stop and give their lease up.
    pub(super) async fn apply_fleet(&self, c: &Arc<Cluster>, cameras: Vec<CameraConfig>) -> super::Applied {
        let mut out = super::Applied::default();
        let old = c.fleet.lock().clone();
        c.set_file(cameras.iter().map(|c| (c.name.clone(), c.clone())).collect());
        let cameras = c.fleet();
        for cfg in cameras {
            match old.get(&cfg.name) {
                None => out.added.push(cfg.name.clone()),
                Some(o) if *o == cfg => out.unchanged.push(cfg.name.clone()),
                Some(_) => {
                    out.changed.push(cfg.name.clone());
                    if self.get(&cfg.name).is_some() {
                        let name = cfg.name.clone();
                        let (cam, _) = self.put(cfg).await;
                        if let Some(l) = c.held.lock().get(&name) {
                            cam.set_owner(&l.lease.node, l.lease.fence);
                        }
                    }
                }
            }
        }
        for gone in old.keys().filter(|n| !c.in_fleet(n)) {
            out.removed.push(gone.clone());
        }
        c.wake.notify_one();
        out
    }
}
