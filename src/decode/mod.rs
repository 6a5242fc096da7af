//! The decoder: libavcodec on its own OS thread, never on an async worker.
//! It takes units through a bounded channel (a GOP replay first, then live
//! units) and publishes its progress and newest picture through a `watch`.
//! Dropping the `Decoder` closes the channel; the thread finishes the unit at
//! hand and exits. Every decode runs under a grant of the hub's `Scheduler`
//! (`schedule`): one per live unit, one for a whole GOP replay. A live decoder
//! that falls behind (its oldest unit waited over `MAX_LAG`) drops its backlog
//! up to the newest keyframe in it, or to the next one that arrives, instead of
//! decoding pictures nobody will see in time.

pub mod schedule;
mod sync;

pub use sync::{HwInfo, HwRequest, HwState, SyncDecoder};

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};

use tokio::sync::{Semaphore, watch};

use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::media::EncodedUnit;
use crate::media::Frame;
use crate::telemetry::stats::Counters;
use schedule::{DEFAULT_UNIT_COST, PriorityCell, Scheduler};

/// A live unit older than this when its turn comes means the decoder is behind:
/// it skips to a keyframe rather than decode the backlog.
pub const MAX_LAG: std::time::Duration = std::time::Duration::from_secs(2);

/// Where a decoder's work is scheduled, and at what priority (its camera's, kept current).
#[derive(Clone)]
pub struct Sched {
    pub scheduler: Arc<Scheduler>,
    pub priority: Arc<PriorityCell>,
}

impl Sched {
    /// A scheduler of its own with one worker per core: for one-off decodes outside a hub.
    pub fn standalone(clock: Clock) -> Sched {
        Sched {
            scheduler: Scheduler::new(Scheduler::default_workers(), clock),
            priority: PriorityCell::new(schedule::Priority::Person),
        }
    }
}

/// Live units the decoder may fall behind by before it is restarted from the GOP cache.
pub const QUEUE_UNITS: usize = 64;

/// What the decoder has done so far; readers wait on changes.
#[derive(Debug, Clone, Default)]
pub struct DecodeProgress {
    /// The newest unit the running decoder has consumed (0: none yet).
    pub processed_seq: u64,
    /// The newest picture decoded, by any decoder of this camera so far, while
    /// one runs: a stopped decoder's camera releases it (`release_picture`).
    pub frame: Option<Arc<Frame>>,
    /// What that picture was (kept after its pixels are released): its id,
    /// times and size.
    pub last: Option<FrameInfo>,
    /// Why the decoder refused the camera's pictures (larger than `max_pixels`), if it did.
    pub refused: Option<Error>,
}

/// A decoded picture's facts, without its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    pub frame_id: u64,
    pub captured: std::time::SystemTime,
    pub captured_mono: std::time::Instant,
    pub width: u32,
    pub height: u32,
}

impl FrameInfo {
    pub fn of(f: &Frame) -> FrameInfo {
        FrameInfo {
            frame_id: f.frame_id,
            captured: f.captured,
            captured_mono: f.captured_mono,
            width: f.width(),
            height: f.height(),
        }
    }
    pub fn age(&self, now: std::time::Instant) -> std::time::Duration {
        now.saturating_duration_since(self.captured_mono)
    }
}

impl DecodeProgress {
    /// Lets the newest picture's pixels go (its facts stay): nothing decodes
    /// now, so nothing should hold a whole picture per camera.
    pub fn release_picture(&mut self) -> bool {
        self.frame.take().is_some()
    }
}

/// Every decoded picture in order, for a lossless consumer (replay); `None`
/// says the stream ended and every picture has been handed over.
pub type FrameSink = SyncSender<Option<Arc<Frame>>>;

enum Msg {
    Replay(Vec<Arc<EncodedUnit>>),
    Unit(Arc<EncodedUnit>),
    /// The stream ended: drain the pictures still inside the decoder.
    Flush,
}

pub struct Decoder {
    tx: SyncSender<Msg>,
    /// Room for live units: one permit per free queue slot, given back as the thread takes a unit.
    room: Arc<Semaphore>,
    thread: Option<JoinHandle<()>>,
    /// Set when the owner stops this decoder: the thread may still finish the
    /// job at hand, but publishes no picture after that (its camera may have
    /// released its picture already; a late one would be held for nothing).
    retired: Arc<std::sync::atomic::AtomicBool>,
}

/// Why a live unit did not reach the decoder.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The decoder is behind by `QUEUE_UNITS`.
    Full,
    /// The decoder thread is gone.
    Gone,
}

impl Decoder {
    /// Starts a thread that drives `ctx`, first decoding `replay` (a GOP from its keyframe).
    pub fn start(
        camera: &str,
        ctx: SyncDecoder,
        replay: Vec<Arc<EncodedUnit>>,
        out: watch::Sender<DecodeProgress>,
        counters: Arc<Counters>,
        sink: Option<FrameSink>,
        sched: Sched,
    ) -> Result<Decoder> {
        // Two more than the live units: the replay and the flush always fit.
        let (tx, rx) = mpsc::sync_channel(QUEUE_UNITS + 2);
        let room = Arc::new(Semaphore::new(QUEUE_UNITS));
        if !replay.is_empty() {
            let _ = tx.try_send(Msg::Replay(replay));
        }
        let span = tracing::info_span!("decoder", camera = camera);
        let thread_room = room.clone();
        let retired = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread_retired = retired.clone();
        let thread = thread::Builder::new()
            .name(format!("decode-{camera}"))
            .spawn(move || {
                let _g = span.enter();
                let out = Out { progress: &out, sink, counters: &counters, last: None, retired: &thread_retired };
                run(ctx, rx, &thread_room, out, &sched);
                // The decoder and its picture pools are freed: give the memory back.
                crate::ffi::trim_heap_soon();
            })
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start decoder thread: {e}")).caused_by(e))?;
        Ok(Decoder { tx, room, thread: Some(thread), retired })
    }

    /// Hands a live unit over without ever blocking the caller.
    pub fn send(&self, unit: Arc<EncodedUnit>) -> std::result::Result<(), SendError> {
        let permit = self.room.try_acquire().map_err(|_| SendError::Full)?;
        permit.forget();
        self.tx.try_send(Msg::Unit(unit)).map_err(|e| match e {
            TrySendError::Full(_) => SendError::Full,
            TrySendError::Disconnected(_) => SendError::Gone,
        })
    }

    /// The queue's room, for a caller that waits for space instead of losing
    /// units (replay): room is there once a permit can be acquired.
    pub fn room(&self) -> Arc<Semaphore> {
        self.room.clone()
    }

    /// The stream ended: the thread decodes what it has, drains the decoder and
    /// tells the sink it is done.
    pub fn finish(&self) {
        let _ = self.tx.try_send(Msg::Flush);
    }

    /// Stops the decoder and returns its thread, for callers that want to join it.
    /// (Dropping a `Decoder` closes its channel too; the thread then exits by itself.)
    pub fn stop(mut self) -> Option<JoinHandle<()>> {
        self.retired.store(true, std::sync::atomic::Ordering::Release);
        self.thread.take()
    }
}

/// Where the thread's pictures go.
struct Out<'a> {
    progress: &'a watch::Sender<DecodeProgress>,
    /// Every picture, in order, for a lossless consumer; dropped if it goes away.
    sink: Option<FrameSink>,
    counters: &'a Counters,
    /// The id of the picture this decoder published last.
    last: Option<u64>,
    /// The owner stopped this decoder: progress only, no more pictures.
    retired: &'a std::sync::atomic::AtomicBool,
}

impl Out<'_> {
    fn lossless(&mut self, f: &Arc<Frame>) {
        if let Some(s) = &self.sink
            && s.send(Some(f.clone())).is_err()
        {
            self.sink = None;
        }
    }

    /// Publishes progress up to `seq` with the newest picture, if any: newer than
    /// the one there if another decoder put it there, or this decoder's next picture
    /// (in display order, so with B-frames its id may be lower than the last one's).
    fn publish(&mut self, seq: u64, newest: Option<Arc<Frame>>) {
        let last = self.last;
        self.progress.send_modify(|p| {
            p.processed_seq = p.processed_seq.max(seq);
            if let Some(f) = newest.filter(|_| !self.retired.load(std::sync::atomic::Ordering::Acquire))
                && (p.frame.is_none()
                    || p.last.is_none_or(|old| old.frame_id < f.frame_id || Some(old.frame_id) == last))
            {
                self.last = Some(f.frame_id);
                p.last = Some(FrameInfo::of(&f));
                p.frame = Some(f);
            }
        });
    }
}

fn run(mut dec: SyncDecoder, rx: Receiver<Msg>, room: &Semaphore, mut out: Out, sched: &Sched) {
    // The measured cost of one unit (a moving average), for the scheduler's estimates.
    let mut unit_cost = DEFAULT_UNIT_COST.as_secs_f64();
    let mut later: Option<Msg> = None;
    while let Some(msg) = later.take().or_else(|| rx.recv().ok()) {
        let (mut units, publish_every) = match msg {
            Msg::Replay(units) => (units, false),
            Msg::Unit(u) => {
                room.add_permits(1);
                let mut units = vec![u];
                if out.sink.is_none() && dec.clock.since(units[0].received_mono) > MAX_LAG {
                    // Behind: take the whole backlog, and keep it only from its newest keyframe.
                    while let Ok(m) = rx.try_recv() {
                        match m {
                            Msg::Unit(u) => {
                                room.add_permits(1);
                                units.push(u);
                            }
                            other => {
                                later = Some(other);
                                break;
                            }
                        }
                    }
                    let from = units.iter().rposition(|u| u.keyframe).unwrap_or(units.len());
                    if from > 0 {
                        tracing::debug!("decoder behind by {} units; skipping to a keyframe", units.len());
                        Counters::add(&out.counters.frames_shed_behind, from as u64);
                        sched.scheduler.fell_behind(from as u64);
                        units.drain(..from);
                        dec.resync();
                    }
                }
                (units, true)
            }
            Msg::Flush => {
                let mut frames = Vec::new();
                dec.flush(out.counters, |f| frames.push(f));
                for f in &frames {
                    out.lossless(f);
                }
                let seq = frames.last().map_or(0, |f| f.frame_id);
                out.publish(seq, frames.pop());
                if let Some(s) = out.sink.take() {
                    let _ = s.send(None);
                }
                continue;
            }
        };
        // A decoder waiting for a keyframe takes nothing before it, and asks for no worker.
        let k = units.iter().position(|u| dec.wants(u)).unwrap_or(units.len());
        if k > 0 {
            // Passed over all the same: progress moves on, as it did for a decoder that waits.
            let seq = units[k - 1].seq;
            units.drain(..k);
            out.publish(seq, None);
        }
        if units.is_empty() {
            continue;
        }
        let n = units.len();
        let cost = std::time::Duration::from_secs_f64(unit_cost * n as f64);
        let _grant = sched.scheduler.acquire(&sched.priority, cost);
        let t = dec.clock.now();
        let last = n.saturating_sub(1);
        // Mid-replay pictures are only published if nothing newer follows.
        let mut newest: Option<Arc<Frame>> = None;
        for (i, unit) in units.into_iter().enumerate() {
            let seq = unit.seq;
            let mut made = Vec::new();
            dec.decode(unit, out.counters, |f| made.push(f));
            if let Some(e) = dec.take_refusal() {
                tracing::warn!("{e}");
                out.progress.send_modify(|p| p.refused = Some(e));
            }
            for f in made {
                out.lossless(&f);
                newest = Some(f);
            }
            if publish_every || i == last {
                out.publish(seq, newest.take());
            }
        }
        let per_unit = dec.clock.since(t).as_secs_f64() / n as f64;
        unit_cost = 0.9 * unit_cost + 0.1 * per_unit;
    }
}
