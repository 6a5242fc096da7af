//! The I/O edge: a `Source` opens a camera and yields `EncodedUnit`s, one per
//! compressed access unit. One implementation per protocol; tests can script
//! their own.

pub mod annexb;
mod file;
pub use file::replay_units;
mod http;
pub mod multipart;
mod rtsp;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::config::{CameraConfig, SourceSpec};
use crate::error::Result;
pub use file::FileSource;
pub use http::HttpSource;
pub use rtsp::RtspSource;

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
    pub fn new(codec: Codec, data: Bytes, keyframe: bool) -> Self {
        EncodedUnit { seq: 0, codec, data, keyframe, received: SystemTime::now(), received_mono: Instant::now() }
    }
}

/// A running connection: units until the camera stops or fails. End of stream
/// means the camera hung up.
pub type UnitStream = BoxStream<'static, Result<EncodedUnit>>;

/// Opens a camera. Each call is a new connection.
pub trait Source: Send + Sync + 'static {
    fn open(&self) -> BoxFuture<'static, Result<UnitStream>>;
}

/// The source for a camera's configuration.
pub fn for_camera(cfg: &CameraConfig) -> Arc<dyn Source> {
    match &cfg.source {
        SourceSpec::Rtsp(url) => {
            Arc::new(RtspSource::new(url.clone(), cfg.username.clone(), cfg.password.clone(), cfg.options.transport))
        }
        SourceSpec::File(path) => Arc::new(FileSource::new(path.clone())),
        SourceSpec::Http(url) => Arc::new(HttpSource::new(
            url.clone(),
            cfg.username.clone(),
            cfg.password.clone(),
            cfg.options.poll_interval.0,
        )),
    }
}
