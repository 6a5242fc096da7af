//! The output worker: one thread per camera with outputs. It follows the
//! decoder's newest frame (live) or drains the camera's lossless replay queue,
//! takes what each output's rate and similarity skip let through, converts once
//! per (frame, size, format) and writes rings and records.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::convert::{self, Converter, copy_planes};
use super::pace::{Pacer, SimilarSkip, Thumb, Verdict};
use super::redis::{Record, RecordQueue};
use super::ring::{RingWriter, SlotMeta, unix_ns};
use super::stats::OutputStats;
use crate::camera::demand::Tier;
use crate::camera::{Camera, Lease};
use crate::clock::Clock;
use crate::config::{Fps, OutputDemand, RedisOptions, ShmOptions};
use crate::decode::schedule::Priority;
use crate::encode::fit_size;
use crate::media::Frame;
use crate::secret::scrub;

/// Replay: how long a ring waits for a reader to register in a new file before
/// going on without it (a reader that left).
const REREGISTER_WAIT: Duration = Duration::from_secs(3);

/// How often the worker looks for attached readers.
const PRESENCE_EVERY: Duration = Duration::from_millis(250);

pub(super) struct ShmOut {
    pub(super) opts: ShmOptions,
    pub(super) ring: Option<RingWriter>,
    pub(super) pacer: Pacer,
    pub(super) skip: Option<SimilarSkip>,
    pub(super) lease: Option<Lease>,
    /// Redis outputs that announce this ring's frames.
    pub(super) followers: Vec<usize>,
    pub(super) stats: Arc<OutputStats>,
}

pub(super) struct RedisOut {
    pub(super) opts: RedisOptions,
    pub(super) pacer: Pacer,
    pub(super) skip: Option<SimilarSkip>,
    pub(super) queue: Arc<RecordQueue>,
    pub(super) lease: Option<Lease>,
    /// The shm output it follows.
    pub(super) ring: Option<usize>,
    pub(super) stats: Arc<OutputStats>,
}

pub(super) fn tier(fps: Fps) -> Tier {
    if fps == Fps::Keyframes { Tier::Keyframes } else { Tier::Decoding }
}

pub(super) fn pacer(fps: Fps) -> Pacer {
    Pacer::new(if let Fps::Rate(r) = fps { Some(r) } else { None })
}

/// Whether an output with rate `fps` takes `f`.
fn takes(fps: Fps, pacer: &mut Pacer, f: &Frame) -> bool {
    match fps {
        Fps::Keyframes => f.keyframe,
        _ => pacer.accept(f.captured_mono),
    }
}

pub(super) struct Worker {
    pub(super) cam: Arc<Camera>,
    /// The camera's name as users know it (a sub-stream's camera is `<name>.sub`).
    pub(super) name: String,
    pub(super) shms: Vec<ShmOut>,
    pub(super) rediss: Vec<RedisOut>,
    pub(super) replay: bool,
    pub(super) stop: CancellationToken,
    pub(super) handle: Handle,
    pub(super) clock: Clock,
}

impl Worker {
    fn stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Looks at the rings' readers; takes or drops each output's decode lease.
    fn update_demand(&mut self) -> bool {
        let mut any = false;
        for s in &mut self.shms {
            let Some(ring) = &s.ring else { continue };
            let readers = ring.readers().len() as u32;
            s.stats.readers.store(readers, Ordering::Relaxed);
            let want = ring.attached() || s.opts.demand == OutputDemand::Always || !s.followers.is_empty();
            if want != s.stats.active.swap(want, Ordering::Relaxed) {
                info!(output = %s.stats.name, "{}", if want { "reader attached: decoding" } else { "no reader: decoding released" });
            }
            if want && s.lease.is_none() {
                s.lease = Some(self.cam.lease_as(tier(s.opts.fps), Priority::Program));
            } else if !want && !self.replay {
                // A replay keeps its decoder's place while readers come and go.
                s.lease = None;
            }
            any |= want;
        }
        for r in &mut self.rediss {
            r.stats.active.store(true, Ordering::Relaxed);
            if r.lease.is_none() {
                let fps = r.ring.map_or(r.opts.fps, |i| self.shms[i].opts.fps);
                r.lease = Some(self.cam.lease_as(tier(fps), Priority::Program));
            }
            any = true;
        }
        any
    }

    pub(super) fn run_live(mut self) {
        let mut conv = Converter::default();
        let mut progress = self.cam.subscribe_progress();
        // The picture processed last: pictures come in display order, and with
        // B-frames a newer picture's id may be lower, so "new" is "not the same".
        let mut last: Option<Arc<Frame>> = None;
        let mut next_check = self.clock.now();
        while !self.stopped() {
            let now = self.clock.now();
            if now >= next_check {
                self.update_demand();
                next_check = now + PRESENCE_EVERY;
            }
            let frame = progress.borrow_and_update().frame.clone();
            if let Some(f) = frame.filter(|f| last.as_ref().is_none_or(|l| !Arc::ptr_eq(l, f))) {
                self.process(&f, &mut conv);
                last = Some(f);
            }
            let wait = next_check.saturating_duration_since(self.clock.now());
            let gone = self.handle.block_on(async {
                tokio::select! {
                    r = progress.changed() => r.is_err(),
                    _ = self.clock.sleep(wait) => false,
                    _ = self.stop.cancelled() => false,
                }
            });
            if gone {
                // The camera is going away; its stop() stops this worker.
                std::thread::sleep(wait);
            }
        }
    }

    /// Replay: the camera's own decoder hands over every picture of the file in
    /// order and waits for this worker, which waits for the rings' readers: the
    /// file is read as fast as they go and nothing is lost. Nobody attached:
    /// everything pauses (the leases stay, so the decoder keeps its place).
    pub(super) fn run_replay(mut self) {
        let Some(frames) = self.cam.take_replay_frames() else {
            return self.fail("the camera's replay pictures are already taken");
        };
        let mut conv = Converter::default();
        let (mut n, mut next_check) = (0u64, self.clock.now());
        while !self.stopped() {
            if self.clock.now() >= next_check {
                while !self.stopped() && !self.update_demand() {
                    self.handle.block_on(async {
                        tokio::select! {
                            _ = self.clock.sleep(PRESENCE_EVERY) => {}
                            _ = self.stop.cancelled() => {}
                        }
                    });
                }
                next_check = self.clock.now() + PRESENCE_EVERY;
            }
            match frames.recv_timeout(PRESENCE_EVERY) {
                Ok(Some(f)) => {
                    n += 1;
                    self.process(&f, &mut conv);
                }
                Ok(None) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        if self.stopped() {
            return;
        }
        for s in &self.shms {
            if let Some(r) = &s.ring {
                r.set_ended();
            }
        }
        info!("replay finished: {n} frames delivered");
        self.handle.block_on(self.stop.cancelled());
    }

    /// Replay cannot go on: say why on every output and wait to be stopped.
    fn fail(&self, msg: &str) {
        let msg = scrub(msg, &self.cam.config().secrets());
        warn!("replay stopped: {msg}");
        for s in self.shms.iter().map(|s| &s.stats).chain(self.rediss.iter().map(|r| &r.stats)) {
            s.set_error(Some(msg.clone()));
        }
        self.handle.block_on(self.stop.cancelled());
    }

    /// Hands one decoded frame to every output that takes it.
    fn process(&mut self, f: &Arc<Frame>, conv: &mut Converter) {
        let Worker { cam, name: cam_name, shms, rediss, replay, stop, handle, clock } = self;
        let replay = *replay;
        let mut thumb: Option<Thumb> = None;
        let mut thumb_of = |f: &Frame| -> Thumb {
            thumb
                .get_or_insert_with(|| {
                    let v = f.video();
                    Thumb::from_luma(v.data(0), v.stride(0), v.width() as usize, v.height() as usize)
                })
                .clone()
        };
        let owner = cam.owner();
        let base = |name: &str| {
            let r = Record::default()
                .field("camera", cam_name.as_str())
                .field("output", name)
                .field("frame_id", f.frame_id)
                .field("captured_ns", unix_ns(f.captured));
            // Cluster mode: which node published it, under which lease.
            match &owner {
                Some((node, fence)) => r.field("node", node).field("fence", fence),
                None => r,
            }
        };
        let push = |q: &RecordQueue, r: Record| {
            if replay {
                q.push_wait(r, stop);
            } else {
                q.push(r);
            }
        };
        for s in shms.iter_mut() {
            let Some(ring) = s.ring.as_mut() else { continue };
            if !s.stats.active.load(Ordering::Relaxed) || !takes(s.opts.fps, &mut s.pacer, f) {
                continue;
            }
            let similarity = match s.skip.as_mut().map(|k| k.check(f.frame_id, &thumb_of(f))) {
                Some(Verdict::Same { of, difference }) => {
                    ring.note_skipped(f.frame_id, difference);
                    s.stats.skipped_similar.fetch_add(1, Ordering::Relaxed);
                    for &j in &s.followers {
                        let r = &rediss[j];
                        push(&r.queue, same_as(base(&r.stats.name), of, difference));
                        r.stats.skipped_similar.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                Some(Verdict::Publish(difference)) => difference,
                None => None,
            };
            let g = convert::target(f, s.opts.width, s.opts.height, s.opts.format);
            if let Err(e) = ring.ensure_geometry(g) {
                s.stats.set_error(Some(format!("cannot lay out {}: {e}", ring.path().display())));
                continue;
            }
            if replay {
                // The slowest registered reader sets the pace. A ring driven by its readers
                // also waits for one to register (each new file starts with an empty table:
                // readers reopen into it), but not forever for one that has left.
                let reader_driven = s.opts.demand == OutputDemand::Auto && s.followers.is_empty();
                let since = clock.now();
                while !stop.is_cancelled() {
                    match ring.may_write_next() {
                        Some(true) => break,
                        None if !reader_driven => break,
                        None if clock.since(since) > REREGISTER_WAIT && !ring.attached() => break,
                        _ => std::thread::sleep(Duration::from_micros(500)),
                    }
                }
            }
            let src = match conv.get(f, g) {
                Ok(v) => v,
                Err(e) => {
                    s.stats.set_error(Some(e.to_string()));
                    continue;
                }
            };
            let meta = SlotMeta { frame_id: f.frame_id, captured: f.captured, decoded: f.decoded, similarity };
            let (seq, slot) = ring.publish(meta, |dst| copy_planes(src, g, dst));
            s.stats.published.fetch_add(1, Ordering::Relaxed);
            for &j in &s.followers {
                let r = &rediss[j];
                let mut rec = base(&r.stats.name)
                    .field("width", g.width)
                    .field("height", g.height)
                    .field("format", g.format.name())
                    .field("ring", ring.path().display())
                    .field("slot", slot)
                    .field("seq", seq);
                rec = with_similarity(rec, similarity);
                if r.opts.include_jpeg {
                    rec = with_jpeg(rec, cam, handle, f, &r.opts);
                }
                push(&r.queue, rec);
                r.stats.published.fetch_add(1, Ordering::Relaxed);
            }
        }
        for r in rediss.iter_mut().filter(|r| r.ring.is_none()) {
            if !takes(r.opts.fps, &mut r.pacer, f) {
                continue;
            }
            let similarity = match r.skip.as_mut().map(|k| k.check(f.frame_id, &thumb_of(f))) {
                Some(Verdict::Same { of, difference }) => {
                    push(&r.queue, same_as(base(&r.stats.name), of, difference));
                    r.stats.skipped_similar.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Some(Verdict::Publish(difference)) => difference,
                None => None,
            };
            let (w, h) = fit_size((f.width(), f.height()), r.opts.width, r.opts.height);
            let mut rec = with_similarity(base(&r.stats.name).field("width", w).field("height", h), similarity);
            if r.opts.include_jpeg {
                rec = with_jpeg(rec.field("format", "jpeg"), cam, handle, f, &r.opts);
            }
            push(&r.queue, rec);
            r.stats.published.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The record of a frame skipped as the same picture as the published frame `of`.
fn same_as(rec: Record, of: u64, difference: f64) -> Record {
    rec.field("same_as", of).field("similarity", score(difference))
}

/// Adds the luma difference from the previous published frame, where measured.
fn with_similarity(rec: Record, similarity: Option<f64>) -> Record {
    match similarity {
        Some(d) => rec.field("similarity", score(d)),
        None => rec,
    }
}

/// A similarity score as text: enough digits to tune a threshold with, no more.
fn score(d: f64) -> String {
    format!("{d:.6}")
}

/// Adds the frame as a JPEG (shared with snapshots and streams of the same quality and size).
fn with_jpeg(rec: Record, cam: &Camera, handle: &Handle, f: &Arc<Frame>, o: &RedisOptions) -> Record {
    let quality = o.quality.unwrap_or(cam.config().options.jpeg_quality);
    let size = fit_size((f.width(), f.height()), o.width, o.height);
    match handle.block_on(cam.jpegs().get(f.clone(), quality, size, cam.counters())) {
        Ok((jpeg, _)) => rec.bytes("jpeg", jpeg),
        Err(e) => {
            warn!("cannot encode a JPEG for redis: {e}");
            rec
        }
    }
}
