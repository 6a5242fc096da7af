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

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};

use ffmpeg_next::codec;
use tokio::sync::{Semaphore, watch};

use crate::clock::Clock;
use crate::config::Hwaccel;
use crate::error::{Error, ErrorKind, Result};
use crate::ffi::{self, HwDevice, HwKind};
use crate::media::Frame;
use crate::media::{Codec, EncodedUnit};
use crate::telemetry::metrics::Latency;
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

fn codec_id(codec: Codec) -> codec::Id {
    match codec {
        Codec::H264 => codec::Id::H264,
        Codec::H265 => codec::Id::HEVC,
        Codec::Mjpeg => codec::Id::MJPEG,
    }
}

/// Opens libavcodec's decoder for `codec`, on `device` if given (its pictures
/// then come out in device memory: `ffi::transfer_frame`).
fn open_codec(codec: Codec, max_pixels: u64, device: Option<&HwDevice>) -> Result<ffmpeg_next::decoder::Video> {
    let id = codec_id(codec);
    let found = ffmpeg_next::decoder::find(id)
        .ok_or_else(|| Error::new(ErrorKind::Unsupported, format!("libavcodec has no {} decoder", codec.name())))?;
    let mut ctx = codec::context::Context::new_with_codec(found);
    if let Some(d) = device {
        ffi::attach_device(&mut ctx, d).map_err(|e| Error::new(ErrorKind::Internal, e))?;
    }
    // Output each picture as soon as it is decoded: cameras do not use B-frames,
    // and a reorder delay would make every snapshot a frame late.
    ctx.set_flags(codec::Flags::LOW_DELAY);
    ctx.set_threading(codec::threading::Config { kind: codec::threading::Type::Slice, count: 1, ..Default::default() });
    // libavcodec's own bound: it refuses to allocate a larger picture. It checks the
    // width rounded up to its stride alignment, hence the margin; the exact limit is ours.
    let mut opts = ffmpeg_next::Dictionary::new();
    opts.set("max_pixels", &max_pixels.saturating_add(max_pixels / 16).min(i32::MAX as u64).to_string());
    ctx.decoder()
        .open_as_with(found, opts)
        .and_then(|o| o.video())
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot open {} decoder: {e}", codec.name())).caused_by(e))
}

/// How a camera's decoders use the hardware (`decoder.hwaccel`): shared by the
/// camera's successive decoders and read by its API.
#[derive(Debug, Default)]
pub struct HwState(parking_lot::Mutex<HwInfo>);

/// What `HwState` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HwInfo {
    /// The device the newest decoder decodes on; `None`: software.
    pub active: Option<HwKind>,
    /// Why the camera decodes in software though `hwaccel` asked for a device.
    pub fallback: Option<String>,
    /// The device failed mid-stream: the camera's later decoders stay in software.
    pub failed: bool,
    /// The outcome was logged: once per camera, not once per decoder.
    logged: bool,
}

impl HwState {
    pub fn info(&self) -> HwInfo {
        self.0.lock().clone()
    }
}

/// The hardware a camera's decoder is asked to use.
#[derive(Debug, Clone)]
pub struct HwRequest {
    pub hwaccel: Hwaccel,
    /// The camera, for the log line.
    pub camera: String,
    pub state: Arc<HwState>,
}

/// Opens the decoder on the first device `req` allows that works, else in
/// software; notes the outcome in the camera's `HwState` and logs it once per camera.
fn open_with_hw(
    codec: Codec,
    max_pixels: u64,
    req: &HwRequest,
) -> Result<(ffmpeg_next::decoder::Video, Option<HwKind>)> {
    let kinds: &[HwKind] = match req.hwaccel {
        Hwaccel::None => &[],
        Hwaccel::Auto => &[HwKind::Cuda, HwKind::Vaapi],
        Hwaccel::Vaapi => &[HwKind::Vaapi],
        Hwaccel::Cuda => &[HwKind::Cuda],
    };
    if kinds.is_empty() || req.state.0.lock().failed {
        // No device asked for, or the camera's device failed mid-stream (said then).
        req.state.0.lock().active = None;
        return Ok((open_codec(codec, max_pixels, None)?, None));
    }
    let mut why = Vec::new();
    let found = ffmpeg_next::decoder::find(codec_id(codec));
    for &kind in kinds {
        if !found.as_ref().is_some_and(|c| ffi::decoder_supports(c, kind)) {
            why.push((kind, format!("libavcodec's {} decoder has no {} support", codec.name(), kind.name())));
            continue;
        }
        let opened =
            ffi::hw_device(kind).and_then(|d| open_codec(codec, max_pixels, Some(&d)).map_err(|e| e.to_string()));
        match opened {
            Ok(dec) => {
                let mut st = req.state.0.lock();
                st.active = Some(kind);
                st.fallback = None;
                if !std::mem::replace(&mut st.logged, true) {
                    tracing::info!("camera {}: decoding {} on {}", req.camera, codec.name(), kind.name());
                }
                return Ok((dec, Some(kind)));
            }
            Err(e) => why.push((kind, e)),
        }
    }
    let reason = match (req.hwaccel, why.as_slice()) {
        (Hwaccel::Auto, _) => format!(
            "hwaccel auto found no device ({})",
            why.iter().map(|(k, e)| format!("{}: {e}", k.name())).collect::<Vec<_>>().join("; ")
        ),
        (_, [(k, e), ..]) => format!("hwaccel {} unavailable ({e})", k.name()),
        (_, []) => format!("hwaccel {} unavailable", req.hwaccel.name()),
    };
    {
        let mut st = req.state.0.lock();
        st.active = None;
        if !std::mem::replace(&mut st.logged, true) {
            if req.hwaccel == Hwaccel::Auto {
                tracing::info!("camera {}: {reason}; decoding in software", req.camera);
            } else {
                tracing::warn!("camera {}: {reason}; decoding in software", req.camera);
            }
        }
        st.fallback = Some(reason);
    }
    Ok((open_codec(codec, max_pixels, None)?, None))
}

/// Units sent but not yet out as pictures, to label each picture with its unit.
struct Pending(VecDeque<Arc<EncodedUnit>>);

impl Pending {
    /// The unit a picture was decoded from, by its pts (the unit's seq). Pictures
    /// come out in display order, which B-frames make differ from decode order:
    /// the unit is looked up, not taken from the front, or a reordered picture
    /// would be given its neighbour's id (and the last one none at all).
    fn take(&mut self, seq: Option<i64>) -> Option<Arc<EncodedUnit>> {
        let Some(seq) = seq else { return self.0.pop_front() };
        let i = self.0.iter().position(|u| u.seq == seq as u64)?;
        self.0.remove(i)
    }
}

/// libavcodec driven in the caller's thread: units in, pictures out, resyncing
/// at the next keyframe after an error.
pub struct SyncDecoder {
    dec: ffmpeg_next::decoder::Video,
    codec: Codec,
    /// The device decoding, if any (`decoder.hwaccel`); `None`: software.
    hw: Option<HwKind>,
    /// What the camera asked of the hardware, and where the outcome goes.
    hw_req: Option<HwRequest>,
    /// Tests: the next unit fails as a device failing mid-stream would.
    #[cfg(test)]
    fail_hw_next: bool,
    pending: Pending,
    need_keyframe: bool,
    decoded: ffmpeg_next::frame::Video,
    clock: Clock,
    /// Time to decode one unit.
    latency: Latency,
    /// The largest picture decoded (the camera's `max_pixels`).
    max_pixels: u64,
    /// Set when the stream's pictures are larger than `max_pixels`; taken by the thread.
    refused: Option<Error>,
}

impl SyncDecoder {
    /// A decoder in software.
    pub fn new(codec: Codec, clock: Clock, latency: Latency, max_pixels: u64) -> Result<Self> {
        crate::media::init_ffmpeg();
        Self::build(open_codec(codec, max_pixels, None)?, None, None, codec, clock, latency, max_pixels)
    }

    /// A decoder on the device `hw` asks for where there is one, else in
    /// software (said once per camera, and in `hw.state`).
    pub fn with_hwaccel(codec: Codec, clock: Clock, latency: Latency, max_pixels: u64, hw: HwRequest) -> Result<Self> {
        crate::media::init_ffmpeg();
        let (dec, kind) = open_with_hw(codec, max_pixels, &hw)?;
        Self::build(dec, kind, Some(hw), codec, clock, latency, max_pixels)
    }

    /// The device decoding, if any.
    pub fn hwaccel(&self) -> Option<HwKind> {
        self.hw
    }

    /// Tests: pretend this (software) decoder runs on `kind`, and that the device
    /// fails at the next unit, as a GPU can mid-stream.
    #[cfg(test)]
    pub(crate) fn pretend_device_fails_next(&mut self, kind: HwKind) {
        self.hw = Some(kind);
        self.fail_hw_next = true;
        if let Some(r) = &self.hw_req {
            r.state.0.lock().active = Some(kind);
        }
    }

    fn build(
        dec: ffmpeg_next::decoder::Video,
        hw: Option<HwKind>,
        hw_req: Option<HwRequest>,
        codec: Codec,
        clock: Clock,
        latency: Latency,
        max_pixels: u64,
    ) -> Result<Self> {
        Ok(SyncDecoder {
            dec,
            codec,
            hw,
            hw_req,
            #[cfg(test)]
            fail_hw_next: false,
            max_pixels,
            refused: None,
            pending: Pending(VecDeque::new()),
            need_keyframe: true,
            decoded: ffmpeg_next::frame::Video::empty(),
            clock,
            latency,
        })
    }

    /// Whether `unit` would be decoded (a decoder that lost its place waits for a keyframe).
    pub fn wants(&self, unit: &EncodedUnit) -> bool {
        !self.need_keyframe || unit.keyframe
    }

    /// Loses the place: nothing is decoded until the next keyframe.
    pub fn resync(&mut self) {
        self.need_keyframe = true;
    }

    /// Decodes one unit; calls `out` with each picture it completes.
    pub fn decode(&mut self, unit: Arc<EncodedUnit>, counters: &Counters, mut out: impl FnMut(Arc<Frame>)) {
        if self.need_keyframe && !unit.keyframe {
            // A decoder must start (or resync) at a keyframe.
            return;
        }
        self.need_keyframe = false;
        let seq = unit.seq;
        let keyframe = unit.keyframe;
        let mut packet = ffmpeg_next::Packet::copy(&unit.data);
        packet.set_pts(Some(seq as i64));
        self.pending.0.push_back(unit);
        if self.pending.0.len() > 32 {
            self.pending.0.pop_front();
        }
        let t = self.clock.now();
        let mut sent = self.send(&packet);
        if let Err(e) = &sent
            && self.hw.is_some()
            && is_device_error(e)
        {
            // The device failed, not the stream: on in software, from this unit if it is a keyframe.
            self.hw_failed(format!("{e}"), counters);
            if keyframe {
                self.need_keyframe = false;
                sent = self.dec.send_packet(&packet);
            }
        }
        if let Err(e) = sent {
            Counters::add(&counters.decode_errors, 1);
            tracing::debug!("decode error at unit {seq}: {e}; waiting for the next keyframe");
            self.need_keyframe = true;
        }
        self.receive(counters, &mut out);
        self.latency.observe(self.clock.since(t));
    }

    fn send(&mut self, packet: &ffmpeg_next::Packet) -> std::result::Result<(), ffmpeg_next::Error> {
        #[cfg(test)]
        if std::mem::take(&mut self.fail_hw_next) && self.hw.is_some() {
            return Err(ffmpeg_next::Error::External);
        }
        self.dec.send_packet(packet)
    }

    /// The device failed mid-stream: reopens this decoder in software, counts it,
    /// and keeps the camera's later decoders in software (said once).
    fn hw_failed(&mut self, why: String, counters: &Counters) {
        let Some(kind) = self.hw.take() else { return };
        Counters::add(&counters.hwaccel_fallbacks, 1);
        let reason = format!("hwaccel {} failed mid-stream ({why})", kind.name());
        let camera = self.hw_req.as_ref().map_or("?", |r| r.camera.as_str());
        tracing::warn!("camera {camera}: {reason}; decoding in software");
        if let Some(r) = &self.hw_req {
            let mut st = r.state.0.lock();
            st.active = None;
            st.failed = true;
            st.fallback = Some(reason);
        }
        match open_codec(self.codec, self.max_pixels, None) {
            Ok(dec) => self.dec = dec,
            Err(e) => tracing::warn!("camera {camera}: cannot reopen the decoder in software: {e}"),
        }
        self.need_keyframe = true;
    }

    /// Whether the stream's pictures (as its parameter sets declare them, known once a
    /// keyframe was parsed) are above `max_pixels`; if so, notes why and resyncs.
    fn oversized(&mut self) -> bool {
        let (w, h) = (self.dec.width(), self.dec.height());
        let pixels = u64::from(w) * u64::from(h);
        if pixels <= self.max_pixels {
            return false;
        }
        if self.refused.is_none() {
            self.refused = Some(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "the camera sent a {w}x{h} picture ({pixels} pixels), more than max_pixels ({}); \
                     refused (raise the camera's max_pixels to accept it)",
                    self.max_pixels
                ),
            ));
        }
        self.need_keyframe = true;
        true
    }

    /// Why the pictures were refused, once.
    pub fn take_refusal(&mut self) -> Option<Error> {
        self.refused.take()
    }

    /// The pictures still inside the decoder, at the end of a stream.
    pub fn flush(&mut self, counters: &Counters, mut out: impl FnMut(Arc<Frame>)) {
        let _ = self.dec.send_eof();
        self.receive(counters, &mut out);
    }

    fn receive(&mut self, counters: &Counters, out: &mut impl FnMut(Arc<Frame>)) {
        if self.oversized() {
            // Whatever libavcodec made of it is dropped, not kept.
            while self.dec.receive_frame(&mut self.decoded).is_ok() {}
            return;
        }
        loop {
            if let Err(e) = self.dec.receive_frame(&mut self.decoded) {
                // No picture yet, or the end; a device error means software from the next keyframe.
                if self.hw.is_some() && is_device_error(&e) {
                    self.hw_failed(format!("{e}"), counters);
                }
                break;
            }
            Counters::add(&counters.frames_decoded, 1);
            let Some(src) = self.pending.take(self.decoded.pts()) else {
                continue;
            };
            let mut video = std::mem::replace(&mut self.decoded, ffmpeg_next::frame::Video::empty());
            if ffi::is_hw_frame(&video) {
                // Into system memory, where the rest of camhub reads pictures.
                let mut soft = ffmpeg_next::frame::Video::empty();
                if let Err(e) = ffi::transfer_frame(&video, &mut soft) {
                    self.hw_failed(e, counters);
                    break;
                }
                video = soft;
            }
            let decoded = self.clock.wall();
            out(Arc::new(Frame::new(src.seq, src.received, src.received_mono, src.keyframe, decoded, video)));
        }
    }
}

/// Whether a `receive_frame` error is the device's rather than "no picture yet",
/// the end of the stream or a damaged unit.
fn is_device_error(e: &ffmpeg_next::Error) -> bool {
    match e {
        ffmpeg_next::Error::Eof | ffmpeg_next::Error::InvalidData => false,
        ffmpeg_next::Error::Other { errno } => *errno != ffmpeg_next::util::error::EAGAIN,
        _ => true,
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
