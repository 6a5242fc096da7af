//! A decoded picture: the decoder's own planes (no conversion), its
//! `frame_id` (the sequence number of the unit it was decoded from, monotonic per
//! camera) and its capture time. Shared by `Arc`, never copied.

use std::time::{Duration, Instant, SystemTime};

use ffmpeg_next::format::Pixel;
use ffmpeg_next::frame::Video;

pub struct Frame {
    pub frame_id: u64,
    /// Wall-clock time the frame's unit arrived (shown as `X-Frame-Timestamp`).
    pub captured: SystemTime,
    /// The same moment on the monotonic clock, for ages.
    pub captured_mono: Instant,
    /// Whether it was decoded from a keyframe.
    pub keyframe: bool,
    /// When the decoder produced it.
    pub decoded: SystemTime,
    video: Video,
}

impl Frame {
    pub fn new(
        frame_id: u64,
        captured: SystemTime,
        captured_mono: Instant,
        keyframe: bool,
        decoded: SystemTime,
        video: Video,
    ) -> Self {
        Frame { frame_id, captured, captured_mono, keyframe, decoded, video }
    }
    pub fn width(&self) -> u32 {
        self.video.width()
    }
    pub fn height(&self) -> u32 {
        self.video.height()
    }
    pub fn format(&self) -> Pixel {
        self.video.format()
    }
    /// Bytes of its planes.
    pub fn bytes(&self) -> usize {
        (0..self.video.planes()).map(|i| self.video.stride(i) * self.video.plane_height(i) as usize).sum()
    }
    pub fn video(&self) -> &Video {
        &self.video
    }
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.captured_mono)
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("frame_id", &self.frame_id)
            .field("size", &(self.width(), self.height()))
            .field("format", &self.format())
            .finish()
    }
}
