//! camhub on an MQTT broker: `<prefix>/available` (`online` retained while the
//! hub runs, `offline` at a clean stop and as the broker-sent last will), per
//! camera a retained state topic and a JSON attributes topic, optional JPEGs,
//! and optional Home Assistant discovery configs (`topics.rs`).
//!
//! The broker never holds up a camera: one task keeps the connection
//! (`link.rs`: rumqttc's event loop, polled again after our own jittered
//! backoff), one task per camera reads its status watch (`watch.rs`), and
//! every publish is a `try_publish` into a bounded queue, made only while
//! connected; what the broker missed is published again whole on the next
//! connect. The hub (L5) starts this and tells it which cameras exist (`sync`).

mod link;
mod topics;
mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use rumqttc::{AsyncClient, LastWill, MqttOptions, QoS};
use tokio_util::sync::CancellationToken;

use crate::camera::Camera;
use crate::clock::Clock;
use crate::config::MqttConfig;

pub use topics::{Figures, Topics};

/// Takes a JPEG of a camera for `snapshot_interval` (the hub gives the snapshot machinery).
pub type SnapshotFn = Arc<dyn Fn(Arc<Camera>) -> BoxFuture<'static, Option<Bytes>> + Send + Sync>;

/// Requests the client queues at most; a publish beyond them is dropped and counted.
const QUEUE: usize = 1024;
/// How long a clean stop waits for `offline` to reach the broker.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// The connection as `/api/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Connecting,
    Connected,
    /// The last attempt failed; the next one is after a backoff.
    Error,
    Stopped,
}

/// What `/api/health` says of MQTT. Never a credential.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MqttInfo {
    pub broker: String,
    pub state: LinkState,
    pub error: Option<String>,
    /// Messages sent to the broker.
    pub published: u64,
    /// Messages not queued (the client's queue was full).
    pub dropped: u64,
    /// Connections made.
    pub connects: u64,
}

/// What the connection task and the camera tasks share.
struct Shared {
    cfg: MqttConfig,
    topics: Topics,
    client: AsyncClient,
    link: Mutex<(LinkState, Option<String>)>,
    connected: AtomicBool,
    published: AtomicU64,
    dropped: AtomicU64,
    connects: AtomicU64,
    /// Bumped at every connect: each camera task publishes all it has again.
    generation: tokio::sync::watch::Sender<u64>,
    snapshots: SnapshotFn,
    clock: Clock,
    /// The cameras published now (a retained state of another is stale: cleared).
    known: Mutex<std::collections::BTreeSet<String>>,
}

impl Shared {
    /// Queues a publish, only while connected (the next connect sends the state
    /// afresh); a full queue drops it. Never waits.
    fn publish(&self, topic: String, retain: bool, payload: impl Into<Vec<u8>>) {
        if !self.connected.load(Ordering::Acquire) {
            return;
        }
        self.publish_now(topic, retain, payload);
    }

    fn publish_now(&self, topic: String, retain: bool, payload: impl Into<Vec<u8>>) {
        if self.client.try_publish(topic, QoS::AtLeastOnce, retain, payload).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn set_link(&self, state: LinkState, error: Option<String>) {
        self.connected.store(state == LinkState::Connected, Ordering::Release);
        *self.link.lock() = (state, error);
    }
}

/// What a camera's task does as it ends (set before its token is cancelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// Replaced by another camera of the name: its task takes over.
    Quiet = 0,
    /// The camera is gone: clear its retained topics and discovery configs.
    Clear = 1,
    /// A clean stop: publish the newest state.
    Flush = 2,
}

impl From<u8> for Exit {
    fn from(v: u8) -> Self {
        match v {
            1 => Exit::Clear,
            2 => Exit::Flush,
            _ => Exit::Quiet,
        }
    }
}

/// One camera's task.
struct Tracked {
    camera: Arc<Camera>,
    stop: CancellationToken,
    exit: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl Tracked {
    fn end(&self, how: Exit) {
        self.exit.store(how as u8, Ordering::Release);
        self.stop.cancel();
    }
}

/// The running MQTT publisher.
pub struct Mqtt {
    shared: Arc<Shared>,
    tracked: Mutex<BTreeMap<String, Tracked>>,
    link: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Ends the connection task at once (after the clean stop, or when that takes too long).
    stop: CancellationToken,
    /// Set by a clean stop: the connection task ends once the DISCONNECT is sent.
    closing: Arc<AtomicBool>,
}

impl Mqtt {
    /// Starts connecting (in the background: a broker that is away is retried
    /// with backoff). Call inside a tokio runtime.
    pub fn start(cfg: MqttConfig, snapshots: SnapshotFn, clock: Clock, stop: CancellationToken) -> Mqtt {
        let topics = Topics::new(&cfg);
        let mut opts = MqttOptions::new(cfg.client_id(), cfg.broker.host.clone(), cfg.broker.port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_clean_session(true);
        opts.set_max_packet_size(16 << 20, 16 << 20);
        opts.set_request_channel_capacity(QUEUE);
        opts.set_last_will(LastWill::new(topics.available(), "offline", QoS::AtLeastOnce, true));
        if let Some(user) = &cfg.username {
            opts.set_credentials(user.clone(), cfg.password.as_ref().map_or("", |p| p.expose()));
        }
        let (client, events) = AsyncClient::new(opts, QUEUE);
        let shared = Arc::new(Shared {
            cfg,
            topics,
            client,
            link: Mutex::new((LinkState::Connecting, None)),
            connected: AtomicBool::new(false),
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            generation: tokio::sync::watch::Sender::new(0),
            snapshots,
            clock,
            known: Mutex::default(),
        });
        let closing = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(link::run(events, shared.clone(), stop.clone(), closing.clone()));
        Mqtt { shared, tracked: Mutex::default(), link: Mutex::new(Some(task)), stop, closing }
    }

    /// The settings in force (a reload compares them: MQTT settings apply at start).
    pub fn config(&self) -> &MqttConfig {
        &self.shared.cfg
    }

    /// Publishes exactly `cameras`: a new one gets a task, a replaced one (same
    /// name, another camera) a new task, a gone one has its retained topics cleared.
    pub fn sync(&self, cameras: &[Arc<Camera>]) {
        let mut tracked = self.tracked.lock();
        *self.shared.known.lock() = cameras.iter().map(|c| c.name().to_owned()).collect();
        let names: std::collections::BTreeSet<&str> = cameras.iter().map(|c| c.name()).collect();
        tracked.retain(|name, t| {
            let keep = names.contains(name.as_str());
            if !keep {
                t.end(Exit::Clear);
            }
            keep
        });
        for cam in cameras {
            match tracked.get(cam.name()) {
                Some(t) if Arc::ptr_eq(&t.camera, cam) => continue,
                Some(t) => t.end(Exit::Quiet),
                None => {}
            }
            let stop = self.stop.child_token();
            let exit = Arc::new(AtomicU8::new(Exit::Quiet as u8));
            let task = tokio::spawn(watch::run(cam.clone(), self.shared.clone(), stop.clone(), exit.clone()));
            tracked.insert(cam.name().to_owned(), Tracked { camera: cam.clone(), stop, exit, task });
        }
    }

    pub fn info(&self) -> MqttInfo {
        let s = &self.shared;
        let (state, error) = s.link.lock().clone();
        MqttInfo {
            broker: s.cfg.broker.to_string(),
            state,
            error,
            published: s.published.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            connects: s.connects.load(Ordering::Relaxed),
        }
    }

    /// A clean stop: every camera's last state, then `offline` (retained) and a
    /// DISCONNECT (so the broker does not send the will), within a bound.
    pub async fn stop(&self) {
        let tasks: Vec<_> = std::mem::take(&mut *self.tracked.lock()).into_values().collect();
        for t in &tasks {
            t.end(Exit::Flush);
        }
        let _ = tokio::time::timeout(STOP_WAIT, futures::future::join_all(tasks.into_iter().map(|t| t.task))).await;
        let s = &self.shared;
        if s.connected.load(Ordering::Acquire) {
            self.closing.store(true, Ordering::Release);
            s.publish_now(s.topics.available(), true, "offline");
            let _ = s.client.try_disconnect();
        } else {
            // Away: nothing to tell the broker (its will says `offline` if it ever had us).
            self.stop.cancel();
        }
        let link = self.link.lock().take();
        if let Some(mut link) = link
            && tokio::time::timeout(STOP_WAIT, &mut link).await.is_err()
        {
            tracing::warn!("MQTT: 'offline' not confirmed sent within {} s", STOP_WAIT.as_secs());
            self.stop.cancel();
            let _ = link.await;
        }
        self.stop.cancel();
        s.set_link(LinkState::Stopped, None);
    }
}
