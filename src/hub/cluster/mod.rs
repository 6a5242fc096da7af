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
        tokio::spawn(async move { steps(c, hub, Some(store), stop).await });
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

/// Steps until the hub stops, then leaves (releasing every lease).
async fn steps(
    c: Arc<Cluster>,
    hub: std::sync::Weak<Hub>,
    mut store: Option<Store>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut orphaned: BTreeMap<String, u32> = BTreeMap::new();
    let mut renewed_at: Option<Instant> = None;
    let mut gate = ClaimGate::default();
    loop {
        let Some(h) = hub.upgrade() else { return };
        let clock = h.clock.clone();
        drop(h);
        tokio::select! {
            _ = clock.sleep(c.tick()) => {}
            _ = c.wake.notified() => {}
            _ = stop.cancelled() => break,
        }
        let Some(h) = hub.upgrade() else { return };
        if store.is_none() {
            match Store::connect(c.cfg.redis.expose(), &c.cfg.key_prefix, c.ttl(), IO_TIMEOUT).await {
                Ok(s) => store = Some(s),
                Err(e) => failed(&c, format!("cannot reach Redis: {}", c.redact(&e))),
            }
        }
        if let Some(s) = store.as_mut() {
            let r =
                tokio::time::timeout(4 * IO_TIMEOUT, step(&c, &h, s, &mut orphaned, &mut renewed_at, &mut gate)).await;
            match r {
                Ok(Ok(())) => {
                    if !c.redis_ok.swap(true, Ordering::Relaxed) {
                        tracing::info!("cluster: Redis is back");
                    }
                    *c.last_error.lock() = None;
                }
                Ok(Err(e)) => {
                    failed(&c, format!("Redis: {}", c.redact(&e)));
                    store = None;
                }
                Err(_) => {
                    failed(&c, "Redis: a step timed out".into());
                    store = None;
                }
            }
        }
        if store.is_none() {
            gate.outage = true;
        }
        // Self-fencing: a lease that could not be renewed stops its camera before
        // it can have expired in Redis (and so before anyone else can take it).
        let now = h.clock.now();
        let expiring: Vec<String> =
            c.held.lock().iter().filter(|(_, l)| l.valid_until <= now + FENCE_MARGIN).map(|(n, _)| n.clone()).collect();
        for name in expiring {
            tracing::warn!(camera = %name, "cluster: lease not renewed in time; stopping the camera here");
            c.held.lock().remove(&name);
            h.remove(&name).await;
        }
    }
    // A clean stop: give every lease up at once (the others take the cameras
    // within a step) and leave.
    let held: Vec<(String, Lease)> =
        std::mem::take(&mut *c.held.lock()).into_iter().map(|(n, h)| (n, h.lease)).collect();
    if let Some(s) = store.as_mut() {
        let refs: Vec<(&str, &Lease)> = held.iter().map(|(n, l)| (n.as_str(), l)).collect();
        let r = async {
            s.release(&refs).await?;
            s.leave(c.node(), &c.me).await
        };
        match tokio::time::timeout(IO_TIMEOUT, r).await {
            Ok(Ok(())) => tracing::info!("cluster: left, {} lease(s) released", held.len()),
            _ => tracing::warn!("cluster: could not release the leases; they expire within {:?}", c.ttl()),
        }
    }
    c.left.notify_one();
}

/// When this node may claim cameras. After it lost Redis for a while, or Redis
/// lost its data, a missing lease does not mean the camera is stopped: a node
/// that held it stops it only when its own lease would have run out. So no
/// claims for one TTL (and the margin) after Redis is whole again.
#[derive(Default)]
struct ClaimGate {
    outage: bool,
    epoch: Option<String>,
    until: Option<Instant>,
    /// The largest fencing token seen (claims go above it).
    fence_seen: u64,
}

impl ClaimGate {
    /// Records this step's epoch at `now`; whether claims are allowed.
    fn open(&mut self, epoch: String, now: Instant, ttl: Duration) -> bool {
        let restarted = self.epoch.as_ref().is_some_and(|e| *e != epoch);
        if restarted || std::mem::take(&mut self.outage) {
            self.until = Some(now + ttl + FENCE_MARGIN);
            if restarted {
                tracing::warn!(
                    "cluster: Redis lost its data; no camera is taken for {ttl:?}, until every old lease has run out"
                );
            }
        }
        self.epoch = Some(epoch);
        self.until.is_none_or(|u| now >= u)
    }
}

fn failed(c: &Cluster, msg: String) {
    if c.redis_ok.swap(false, Ordering::Relaxed) || c.last_error.lock().as_deref() != Some(&msg) {
        tracing::warn!("cluster: {msg}; keeping this node's cameras until their leases would expire");
    }
    *c.last_error.lock() = Some(msg);
}

/// One step: renew, look, claim, hand over.
async fn step(
    c: &Arc<Cluster>,
    h: &Arc<Hub>,
    s: &mut Store,
    orphaned: &mut BTreeMap<String, u32>,
    renewed_at: &mut Option<Instant>,
    gate: &mut ClaimGate,
) -> store::RResult<()> {
    let name = c.node().to_owned();
    let sent = h.clock.now();
    let epoch = s.epoch().await?;
    let may_claim = gate.open(epoch, sent, c.ttl());
    if !s.renew_node(&name, &c.me).await? && s.join(&name, &c.me).await?.is_some() {
        tracing::error!("cluster: another instance took node name {name:?}");
    }
    let nodes = s.nodes().await?;
    // The API's changes, from any node: cameras run here take a changed config.
    c.refresh(s.shared().await?);
    let held: Vec<String> = c.held.lock().keys().cloned().collect();
    for name in held {
        let cfg = c.fleet.lock().get(&name).cloned();
        if let Some(cfg) = cfg
            && h.get(&name).is_some_and(|cam| *cam.config() != cfg)
        {
            let (cam, _) = h.put(cfg).await;
            if let Some(l) = c.held.lock().get(&name) {
                cam.set_owner(&l.lease.node, l.lease.fence);
            }
        }
    }
    let fleet: Vec<String> = c.fleet.lock().keys().cloned().collect();
    let refs: Vec<&str> = fleet.iter().map(String::as_str).collect();
    let leases = s.leases(&refs).await?;
    c.commands.fetch_add(7, Ordering::Relaxed);
    gate.fence_seen = gate.fence_seen.max(leases.values().map(|l| l.fence).max().unwrap_or(0));

    // Renew what is held, every third of the TTL.
    if renewed_at.is_none_or(|t| sent.saturating_duration_since(t) >= c.ttl() / 3) {
        let held: Vec<(String, Lease)> = c.held.lock().iter().map(|(n, h)| (n.clone(), h.lease.clone())).collect();
        let refs: Vec<(&str, &Lease)> = held.iter().map(|(n, l)| (n.as_str(), l)).collect();
        let t0 = Instant::now();
        let still = s.renew(&refs).await?;
        c.renew_us.store(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        c.commands.fetch_add(refs.len() as u64, Ordering::Relaxed);
        *renewed_at = Some(sent);
        for ((cam, _), ok) in held.iter().zip(still) {
            if ok {
                if let Some(x) = c.held.lock().get_mut(cam) {
                    x.valid_until = sent + c.ttl();
                }
            } else {
                tracing::warn!(camera = %cam, "cluster: lease lost; stopping the camera here");
                c.held.lock().remove(cam);
                h.remove(cam).await;
            }
        }
    }

    let names: std::collections::BTreeSet<String> = nodes.keys().cloned().collect();
    let owners: BTreeMap<String, String> = leases.iter().map(|(k, l)| (k.clone(), l.node.clone())).collect();
    for cam in &fleet {
        if owners.contains_key(cam) {
            orphaned.remove(cam);
        } else {
            *orphaned.entry(cam.clone()).or_default() += 1;
        }
    }
    let watched = |cam: &str| h.get(cam).is_some_and(|x| x.leases(crate::camera::demand::Tier::Connected) > 0);
    let plan = assign::plan(&assign::View {
        me: &name,
        nodes: &names,
        cameras: &refs,
        owners: &owners,
        orphaned,
        watched: &watched,
    });
    let mut leases = leases;
    let claims = if may_claim { plan.claim } else { Vec::new() };
    for cam in claims {
        let sent = h.clock.now();
        c.commands.fetch_add(1, Ordering::Relaxed);
        let Some(fence) = s.claim(&cam, &name, gate.fence_seen).await? else { continue };
        gate.fence_seen = gate.fence_seen.max(fence);
        let lease = Lease { node: name.clone(), fence };
        c.held.lock().insert(cam.clone(), Held { lease: lease.clone(), valid_until: sent + c.ttl() });
        leases.insert(cam.clone(), lease);
        orphaned.remove(&cam);
        let before = c.view.lock().leases.get(&cam).map(|l| l.node.clone());
        if before.is_some_and(|n| n != name) {
            c.takeovers.fetch_add(1, Ordering::Relaxed);
        }
        let cfg = c.fleet.lock().get(&cam).cloned();
        if let Some(cfg) = cfg {
            tracing::info!(camera = %cam, fence, "cluster: camera taken");
            h.put(cfg).await.0.set_owner(&name, fence);
        }
    }
    for cam in plan.release {
        // Stopped first, released after: never running on two nodes.
        let Some(held) = c.held.lock().remove(&cam) else { continue };
        h.remove(&cam).await;
        c.commands.fetch_add(1, Ordering::Relaxed);
        s.release(&[(cam.as_str(), &held.lease)]).await?;
        leases.remove(&cam);
        tracing::info!(camera = %cam, "cluster: camera handed over");
    }
    // Cameras that left the fleet (a reload): stop and release.
    let gone: Vec<(String, Held)> = {
        let mut held = c.held.lock();
        let names: Vec<String> = held.keys().filter(|n| !c.in_fleet(n)).cloned().collect();
        names.into_iter().filter_map(|n| held.remove(&n).map(|h| (n, h))).collect()
    };
    for (cam, held) in gone {
        h.remove(&cam).await;
        s.release(&[(cam.as_str(), &held.lease)]).await?;
    }
    *c.view.lock() = View { nodes, leases };
    Ok(())
}
