//! Outputs for programs: shared-memory rings (`ring`) and Redis Streams
//! (`redis`). One worker thread per camera with outputs follows the decoder's
//! newest frame, takes what each output's rate and similarity skip let through,
//! converts once per (frame, size, format) and writes rings and records.
//!
//! Lazy like everything else: an `shm` output holds a decode lease only while a
//! reader is attached to its ring (or with `demand: always`), a `redis` output
//! while it is configured. In replay mode (files) the camera's decoder hands
//! over every frame in order and waits for the worker, which goes at the pace
//! of the slowest reader: the file source is paced by its consumers.

pub mod convert;
pub mod pace;
pub mod redis;
pub mod ring;
mod stats;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use self::pace::SimilarSkip;
use self::redis::RecordQueue;
use self::ring::{RingSpec, RingWriter};
pub use self::stats::OutputStats;
use self::worker::{RedisOut, ShmOut, Worker, pacer};
use crate::camera::Camera;
use crate::clock::Clock;
use crate::config::{Mode, OutputConfig, StreamRole};
use crate::telemetry::metrics::Latency;

/// Where rings live: `/dev/shm`, or `CAMHUB_SHM_DIR` (tests, or a host without /dev/shm).
pub fn shm_dir() -> PathBuf {
    std::env::var_os("CAMHUB_SHM_DIR").map_or_else(|| PathBuf::from("/dev/shm"), PathBuf::from)
}

/// The running outputs of one camera.
pub struct Outputs {
    stats: Vec<Arc<OutputStats>>,
    stop_worker: CancellationToken,
    stop_publishers: CancellationToken,
    clock: Clock,
    thread: Option<std::thread::JoinHandle<()>>,
    publishers: Vec<tokio::task::JoinHandle<()>>,
}

impl Outputs {
    /// Creates the camera's rings (so readers can attach at once) and starts its
    /// worker and publishers, for the outputs that read `role` (`from:`); `cam`
    /// is that stream's camera, `name` the camera's name as users know it (rings
    /// and records are named by it, whichever stream feeds them). Call inside the
    /// tokio runtime. `stop` is the outputs' token in the hub's tree (a child of
    /// the camera's); `flush` is the hub's histogram of Redis batch write times.
    pub fn start(cam: &Arc<Camera>, name: &str, role: StreamRole, stop: &CancellationToken, flush: Latency) -> Outputs {
        let cfg = cam.config();
        let (name, opts) = (name.to_owned(), &cfg.options);
        let mine = || opts.outputs.iter().filter(|(_, o)| o.stream() == role);
        let dir = shm_dir();
        // Subscribed before anything is spawned: a stop sent at any moment is seen.
        let stop_worker = stop.child_token();
        let stop_publishers = stop.child_token();
        let clock = cam.clock().clone();
        let mut shms = Vec::new();
        let mut rediss = Vec::new();
        let mut stats = Vec::new();
        let mut publishers = Vec::new();
        for (oname, out) in mine() {
            if let OutputConfig::Shm(o) = out {
                let mut st = OutputStats::new(oname, "shm");
                st.path = Some(ring::ring_path(&dir, &name, oname));
                let st = Arc::new(st);
                let spec = RingSpec { slots: o.slots, perms: o.mode(), mode: opts.mode, fps: o.fps };
                let ring = RingWriter::create(&dir, &name, oname, spec, clock.clone())
                    .map_err(|e| {
                        let msg = format!("cannot create {}: {e}", ring::ring_path(&dir, &name, oname).display());
                        warn!(camera = %name, output = %oname, "{msg}");
                        st.set_error(Some(msg));
                    })
                    .ok();
                shms.push(ShmOut {
                    opts: o.clone(),
                    ring,
                    pacer: pacer(o.fps),
                    skip: o.skip_similar.map(SimilarSkip::new),
                    lease: None,
                    followers: Vec::new(),
                    stats: st.clone(),
                });
                stats.push(st);
            }
        }
        for (oname, out) in mine() {
            if let OutputConfig::Redis(o) = out {
                let queue = RecordQueue::new(o.buffer as usize);
                let stream = o.stream.clone().unwrap_or_else(|| format!("camhub:{name}"));
                let mut st = OutputStats::new(oname, "redis");
                st.stream = Some(stream.clone());
                st.queue = Some(queue.clone());
                let st = Arc::new(st);
                let ring = o.ring.as_ref().and_then(|r| shms.iter().position(|s| s.stats.name == *r));
                if let Some(i) = ring {
                    shms[i].followers.push(rediss.len());
                }
                let target = redis::Target {
                    url: o.url.clone(),
                    stream,
                    maxlen: o.maxlen,
                    secrets: cfg.secrets().iter().map(|s| s.to_string()).collect(),
                    label: format!("{name}/{oname}"),
                    flush: flush.clone(),
                };
                publishers.push(tokio::spawn(redis::run(
                    queue.clone(),
                    target,
                    stop_publishers.clone(),
                    clock.clone(),
                )));
                rediss.push(RedisOut {
                    opts: o.clone(),
                    pacer: pacer(o.fps),
                    skip: o.skip_similar.map(SimilarSkip::new),
                    queue,
                    lease: None,
                    ring,
                    stats: st.clone(),
                });
                stats.push(st);
            }
        }
        let worker = Worker {
            cam: cam.clone(),
            name: name.clone(),
            shms,
            rediss,
            replay: opts.mode == Mode::Replay,
            stop: stop_worker.clone(),
            handle: Handle::current(),
            clock: clock.clone(),
        };
        let span = tracing::info_span!("outputs", camera = %name);
        let thread = std::thread::Builder::new()
            .name(format!("out-{name}"))
            .spawn(move || {
                let _g = span.enter();
                if worker.replay { worker.run_replay() } else { worker.run_live() }
            })
            .map_err(|e| warn!(camera = %name, "cannot start the output worker: {e}"))
            .ok();
        Outputs { stats, stop_worker, stop_publishers, clock, thread, publishers }
    }

    pub fn stats(&self) -> &[Arc<OutputStats>] {
        &self.stats
    }

    /// Stops the worker (rings are closed and unlinked, leases released), gives
    /// publishers a moment to flush what is queued, then stops them.
    pub async fn stop(mut self) {
        self.stop_worker.cancel();
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        let deadline = self.clock.now() + Duration::from_secs(1);
        while self.clock.now() < deadline
            && self
                .stats
                .iter()
                .filter_map(|s| s.queue.as_ref())
                .any(|q| !q.is_empty() && q.connected.load(Ordering::Relaxed))
        {
            self.clock.sleep(Duration::from_millis(10)).await;
        }
        self.stop_publishers.cancel();
        for p in self.publishers.drain(..) {
            let _ = p.await;
        }
    }
}
