//! A camera: one actor task that reconciles what runs (connection, decoder)
//! with what the leases demand, and a handle that consumers use to take
//! leases, read state and wait for pictures.

mod actor;
pub mod demand;
pub mod reconcile;
mod status;
mod supervise;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
mod variant;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

use crate::camera::demand::{Demand, Tier, VariantKey};
use crate::config::CameraConfig;
use crate::decode::schedule::{Priority, PriorityCell, Scheduler};
use crate::decode::{DecodeProgress, FrameSink, HwInfo, HwState};
use crate::encode::JpegCache;
use crate::media::EncodedUnit;
use crate::media::Frame;
use crate::source::Source;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::stats::Counters;
pub use status::{State, Status};
pub use variant::{VariantFrame, VariantRx};

/// Distinct JPEG variants (quality, size) one camera serves at once.
pub const MAX_VARIANTS: usize = 8;

/// Why a lease could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("this camera already serves {MAX_VARIANTS} stream variants (quality and size)")]
    TooManyVariants,
}

/// What the actor and the handles share.
pub(crate) struct Shared {
    pub config: CameraConfig,
    pub demand: Mutex<Demand>,
    /// Wakes the actor when demand changes.
    pub wake: Notify,
    /// The state as the API shows it; waiters sleep on its changes.
    pub status: watch::Sender<Status>,
    pub progress: watch::Sender<DecodeProgress>,
    pub counters: Arc<Counters>,
    /// What `decoder.hwaccel` came to: shared by the camera's successive decoders.
    pub hw: Arc<HwState>,
    pub jpegs: JpegCache,
    /// Cancelled when the camera stops; its variants' and consumers' tokens are its children.
    pub stop: CancellationToken,
    pub clock: Clock,
    /// The hub's registry: the decoder and the JPEG encoder observe their latency into it.
    pub metrics: Arc<Metrics>,
    /// Each variant's newest JPEG; created by the first lease, dropped when its encoder stops unwatched.
    pub variants: Mutex<HashMap<VariantKey, watch::Sender<Option<Arc<VariantFrame>>>>>,
    /// JPEG cameras: the newest frame exactly as the camera sent it.
    pub passthrough: watch::Sender<Option<Arc<VariantFrame>>>,
    /// Every compressed unit as it arrives (for passthrough viewers: WHEP).
    pub units: tokio::sync::broadcast::Sender<Arc<EncodedUnit>>,
    /// Asks the actor for the GOP cache and a unit feed that continues it with no gap.
    pub feeds: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<UnitFeed>>,
    /// Replay (`mode: replay`): every decoded picture in order, for the one consumer that takes them.
    pub replay: Option<ReplayQueue>,
    /// The hub's decode scheduler, and this camera's place in it (kept current by the actor).
    pub scheduler: Arc<Scheduler>,
    pub priority: Arc<PriorityCell>,
}

/// The lossless picture queue of a replay camera: the decoder blocks on it, so
/// its consumer's pace is the file's pace.
pub(crate) struct ReplayQueue {
    pub tx: FrameSink,
    pub rx: Mutex<Option<std::sync::mpsc::Receiver<Option<Arc<Frame>>>>>,
}

/// Pictures a replay decoder may be ahead of its consumer.
const REPLAY_FRAMES: usize = 2;

/// A camera's memory, by kind (bytes).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Memory {
    pub gop: usize,
    pub frame: usize,
    pub jpeg_cache: usize,
    /// Its SHM rings (shared memory, outside the process's heap).
    pub rings: usize,
    pub budget: Option<u64>,
    /// GOP units dropped because a budget (the camera's or the hub's) ran out.
    pub budget_drops: u64,
}

impl Memory {
    /// What the process holds for the camera (rings are shared memory, counted apart).
    pub fn total(&self) -> usize {
        self.gop + self.frame + self.jpeg_cache
    }
}

/// Compressed units for a passthrough viewer: the GOP cache (from its keyframe)
/// at the moment of subscribing, then every live unit after it.
pub struct UnitFeed {
    pub gop: Vec<Arc<EncodedUnit>>,
    pub live: tokio::sync::broadcast::Receiver<Arc<EncodedUnit>>,
    /// Cancelled when the camera stops (removed, replaced, hub exiting).
    pub stopped: CancellationToken,
}

/// Live units a passthrough viewer may fall behind by before it skips to the next keyframe.
pub const FEED_UNITS: usize = 256;

impl Shared {
    /// The channel of a variant's newest JPEG, made on first use; at most
    /// `MAX_VARIANTS` distinct variants per camera.
    fn variant_sender(&self, key: VariantKey) -> Result<watch::Sender<Option<Arc<VariantFrame>>>, LeaseError> {
        let mut v = self.variants.lock();
        if !v.contains_key(&key) && v.len() >= MAX_VARIANTS {
            return Err(LeaseError::TooManyVariants);
        }
        Ok(v.entry(key).or_insert_with(|| watch::channel(None).0).clone())
    }

    /// Bytes of the newest decoded picture kept for snapshots.
    pub(crate) fn frame_bytes(&self) -> usize {
        self.progress.borrow().frame.as_ref().map_or(0, |f| f.bytes())
    }

    fn update_status(&self, f: impl FnOnce(&mut Status)) {
        self.status.send_modify(f);
    }
}

/// What every camera of a hub shares: the clock, the metrics registry its
/// stages observe into, and the decode scheduler.
#[derive(Clone)]
pub struct Context {
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub scheduler: Arc<Scheduler>,
}

impl Context {
    /// A context with its own scheduler (one worker per core): one camera outside a hub.
    pub fn standalone(clock: Clock, metrics: Arc<Metrics>) -> Context {
        let scheduler = Scheduler::new(Scheduler::default_workers(), clock.clone());
        Context { clock, metrics, scheduler }
    }
}

/// A handle to a running camera.
pub struct Camera {
    shared: Arc<Shared>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    source: Arc<dyn Source>,
    /// Cluster mode: the node running the camera and its lease's fencing token,
    /// for what the camera publishes (a consumer tells an old owner's records).
    owner: Mutex<Option<(Arc<str>, u64)>>,
}

impl Camera {
    /// Starts the camera's actor on the current tokio runtime. `metrics` is the
    /// registry its stages observe into; `stop` is the camera's own token (a child
    /// of its owner's): cancelling it stops the camera.
    pub fn spawn(config: CameraConfig, ctx: Context, stop: CancellationToken) -> Arc<Camera> {
        let source = crate::source::for_camera(&config, &ctx.clock);
        Self::spawn_with_source(config, source, ctx, stop)
    }

    /// Starts a camera reading from the given source (tests script their own,
    /// and drive it with a stepped clock).
    pub fn spawn_with_source(
        config: CameraConfig,
        source: Arc<dyn Source>,
        ctx: Context,
        stop: CancellationToken,
    ) -> Arc<Camera> {
        let Context { clock, metrics, scheduler } = ctx;
        let o = &config.options;
        let demand = Demand::new(o.keep, o.connect_linger, o.decode_linger).with_variant_linger(o.variant_linger);
        let (feeds, feed_rx) = tokio::sync::mpsc::channel(16);
        let shared = Arc::new(Shared {
            units: tokio::sync::broadcast::channel(FEED_UNITS).0,
            feeds,
            demand: Mutex::new(demand),
            wake: Notify::new(),
            status: watch::channel(Status::new(clock.wall())).0,
            progress: watch::channel(DecodeProgress::default()).0,
            counters: Arc::default(),
            hw: Arc::default(),
            jpegs: JpegCache::new(2 * MAX_VARIANTS, clock.clone(), metrics.jpeg_encode()),
            stop,
            clock,
            metrics,
            variants: Mutex::default(),
            passthrough: watch::channel(None).0,
            replay: (config.options.mode == crate::config::Mode::Replay).then(|| {
                let (tx, rx) = std::sync::mpsc::sync_channel(REPLAY_FRAMES);
                ReplayQueue { tx, rx: Mutex::new(Some(rx)) }
            }),
            scheduler,
            priority: PriorityCell::new(Priority::Background),
            config,
        });
        let task = tokio::spawn(supervise::run(shared.clone(), source.clone(), feed_rx));
        Arc::new(Camera { shared, task: Mutex::new(Some(task)), source, owner: Mutex::new(None) })
    }

    /// Cluster mode: the node that runs this camera and its fencing token.
    pub fn set_owner(&self, node: &str, fence: u64) {
        *self.owner.lock() = Some((node.into(), fence));
    }

    pub fn owner(&self) -> Option<(Arc<str>, u64)> {
        self.owner.lock().clone()
    }

    pub fn name(&self) -> &str {
        &self.shared.config.name
    }
    pub fn config(&self) -> &CameraConfig {
        &self.shared.config
    }
    pub fn counters(&self) -> &Arc<Counters> {
        &self.shared.counters
    }
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }
    /// Cancelled when the camera stops; consumers take child tokens of it.
    pub fn stop_token(&self) -> &CancellationToken {
        &self.shared.stop
    }
    pub fn jpegs(&self) -> &JpegCache {
        &self.shared.jpegs
    }

    /// Asks for `tier` until the lease is dropped. Decoding also holds the
    /// connection, so the connection lingers after the decoder stops.
    pub fn lease(&self, tier: Tier) -> Lease {
        self.lease_as(tier, Priority::Person)
    }

    /// A lease held for `who`: a program's outputs decode after people's requests.
    pub fn lease_as(&self, tier: Tier, who: Priority) -> Lease {
        let tiers: &'static [Tier] = match tier {
            Tier::Connected => &[Tier::Connected],
            Tier::Decoding => &[Tier::Connected, Tier::Decoding],
            Tier::Keyframes => &[Tier::Connected, Tier::Keyframes],
        };
        {
            let mut d = self.shared.demand.lock();
            for t in tiers {
                d.acquire_as(*t, who);
            }
        }
        self.shared.wake.notify_one();
        Lease { shared: self.shared.clone(), tiers, variant: None, who }
    }

    /// Asks for a JPEG variant until the lease is dropped; the receiver always
    /// holds its newest JPEG. Fails if the camera already serves `MAX_VARIANTS` others.
    pub fn lease_variant(&self, mut key: VariantKey) -> Result<(Lease, VariantRx), LeaseError> {
        // A size at or above the picture's is the picture's own size (never upscaled):
        // such requests share one variant instead of taking one slot each.
        let src = self.shared.progress.borrow().last.map(|f| (f.width, f.height));
        if src.is_some_and(|s| crate::encode::fit_size(s, key.width, key.height) == s) {
            (key.width, key.height) = (None, None);
        }
        let rx = self.shared.variant_sender(key)?.subscribe();
        {
            let mut d = self.shared.demand.lock();
            d.acquire(Tier::Connected);
            d.acquire_variant(key);
        }
        self.shared.wake.notify_one();
        let lease =
            Lease { shared: self.shared.clone(), tiers: &[Tier::Connected], variant: Some(key), who: Priority::Person };
        Ok((lease, rx))
    }

    /// Whether the camera sends JPEGs that are served as they come when no other
    /// quality or size is asked for (HTTP MJPEG and snapshot cameras).
    pub fn passes_jpeg_through(&self) -> bool {
        matches!(self.config().source, crate::config::SourceSpec::Http(_))
    }

    /// Holds the connection and follows the camera's own JPEGs: no decode, no encode.
    pub fn lease_passthrough(&self) -> (Lease, VariantRx) {
        (self.lease(Tier::Connected), self.shared.passthrough.subscribe())
    }

    /// The GOP cache now and every unit after it, for a viewer that forwards the
    /// camera's own stream (hold a connected lease meanwhile). None if the camera is stopping.
    pub async fn unit_feed(&self) -> Option<UnitFeed> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared.feeds.send(tx).await.ok()?;
        rx.await.ok()
    }

    /// Replay cameras: every decoded picture in order (`None` at the end of the
    /// file), once, for the one consumer that takes this. The decoder waits for it.
    pub fn take_replay_frames(&self) -> Option<std::sync::mpsc::Receiver<Option<Arc<Frame>>>> {
        self.shared.replay.as_ref()?.rx.lock().take()
    }

    /// The newest JPEG the camera sent, however old (JPEG cameras only).
    pub fn latest_passthrough(&self) -> Option<Arc<VariantFrame>> {
        self.shared.passthrough.borrow().clone()
    }

    /// Leases held per variant.
    pub fn variant_leases(&self) -> Vec<(VariantKey, u32)> {
        self.shared.demand.lock().variant_leases()
    }

    /// Whose pictures the decoder makes now, as the scheduler orders them.
    pub fn priority(&self) -> Priority {
        self.shared.priority.get()
    }

    pub fn leases(&self, tier: Tier) -> u32 {
        self.shared.demand.lock().leases(tier)
    }

    /// What this camera holds, in bytes, by kind (its consumers' rings are the hub's to add).
    pub fn memory(&self) -> Memory {
        let s = self.status();
        Memory {
            gop: s.gop_bytes,
            frame: self.shared.frame_bytes(),
            jpeg_cache: self.shared.jpegs.bytes(),
            rings: 0,
            budget: self.shared.config.options.memory_budget.map(|b| b.0),
            budget_drops: s.gop_budget_drops,
        }
    }

    /// Why the camera left its configured transport (RTSP `transport: udp` now
    /// on TCP), if it did; it stays so until its config changes.
    pub fn transport_fallback(&self) -> Option<String> {
        self.source.fallback()
    }

    /// The device the camera decodes on (`None`: software), and why not the one asked for.
    pub fn hwaccel(&self) -> HwInfo {
        self.shared.hw.info()
    }

    pub fn status(&self) -> Status {
        self.shared.status.borrow().clone()
    }
    pub fn subscribe_status(&self) -> watch::Receiver<Status> {
        self.shared.status.subscribe()
    }
    pub fn subscribe_progress(&self) -> watch::Receiver<DecodeProgress> {
        self.shared.progress.subscribe()
    }
    /// What the newest picture decoded so far was (kept after a stopped decoder
    /// released its pixels): id, times and size.
    pub fn latest_info(&self) -> Option<crate::decode::FrameInfo> {
        self.shared.progress.borrow().last
    }

    /// The newest picture decoded so far, however old, while the camera holds it
    /// (a decoder runs, or stopped less than a moment ago).
    pub fn latest_frame(&self) -> Option<Arc<Frame>> {
        self.shared.progress.borrow().frame.clone()
    }

    /// Stops the actor: the connection and decoder are torn down, and this
    /// returns when the actor has finished.
    pub async fn stop(&self) {
        self.shared.stop.cancel();
        let task = self.task.lock().take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

/// A held need for a tier of work. Dropping it releases the need, once, on any
/// path: a client that disconnects, an early return, a panic.
pub struct Lease {
    shared: Arc<Shared>,
    tiers: &'static [Tier],
    variant: Option<VariantKey>,
    who: Priority,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let now = self.shared.clock.now();
        {
            let mut d = self.shared.demand.lock();
            for t in self.tiers {
                d.release_as(*t, self.who, now);
            }
            if let Some(k) = self.variant {
                d.release_variant(k, now);
            }
        }
        self.shared.wake.notify_one();
    }
}
