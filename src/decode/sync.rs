//! libavcodec driven in the caller's thread (`SyncDecoder`): opening a codec
//! (with a hardware device when asked, software otherwise), units in, pictures
//! out, resyncing at the next keyframe after an error.

use std::collections::VecDeque;
use std::sync::Arc;

use ffmpeg_next::codec;

use crate::clock::Clock;
use crate::config::Hwaccel;
use crate::error::{Error, ErrorKind, Result};
use crate::ffi::{self, HwDevice, HwKind};
use crate::media::Frame;
use crate::media::{Codec, EncodedUnit};
use crate::telemetry::metrics::Latency;
use crate::telemetry::stats::Counters;

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
    pub(super) clock: Clock,
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
