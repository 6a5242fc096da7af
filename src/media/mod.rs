//! The ground floor of what flows: the compressed `EncodedUnit` a source
//! yields, the `GopCache` of units since the newest keyframe, the decoded
//! `Frame`, Annex B framing, and libav's one-time setup. Every stage above
//! (sources, the decoder, encoders, consumers) speaks these types; none of
//! them is defined by a stage.

pub mod annexb;
pub mod burst;
mod frame;
mod gop;

use std::sync::Once;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use crate::clock::Clock;

pub use frame::Frame;
pub use gop::GopCache;

/// Video codecs camhub ingests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    H264,
    H265,
    /// Whole JPEG frames (HTTP MJPEG and snapshot cameras), passed through as they come.
    Mjpeg,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
            Codec::Mjpeg => "mjpeg",
        }
    }
}

/// One compressed access unit, immutable once made and shared by `Arc`.
#[derive(Debug, Clone)]
pub struct EncodedUnit {
    /// Monotonic per camera across reconnects; assigned by the camera on arrival
    /// (0 until then). A frame decoded from this unit carries it as `frame_id`.
    pub seq: u64,
    pub codec: Codec,
    /// Annex B with start codes (keyframes carry their parameter sets inline), or a whole JPEG.
    pub data: Bytes,
    pub keyframe: bool,
    /// When the unit was received: the frame's capture time as far as camhub knows.
    pub received: SystemTime,
    pub received_mono: Instant,
}

impl EncodedUnit {
    /// A unit received now, on `clock`.
    pub fn new(codec: Codec, data: Bytes, keyframe: bool, clock: &Clock) -> Self {
        let (received, received_mono) = clock.stamp();
        EncodedUnit { seq: 0, codec, data, keyframe, received, received_mono }
    }
}

/// libav's process-wide setup (and its log level), once.
pub fn init_ffmpeg() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = ffmpeg_next::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Fatal);
    });
}
