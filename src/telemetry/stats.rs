//! Per-camera counters, shared by the stages that bump them and read by the API.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counters {
    pub units_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub frames_decoded: AtomicU64,
    pub decode_errors: AtomicU64,
    /// Units the decoder's queue had no room for (it was behind); it resyncs at the next keyframe.
    pub decoder_overruns: AtomicU64,
    /// Live units dropped because the decoder fell behind and skipped to a keyframe.
    pub frames_shed_behind: AtomicU64,
    /// Frames of background GOPs not decoded (keyframes only) while decoding is over budget.
    pub frames_shed_overload: AtomicU64,
    /// Times a hardware decoder failed mid-stream and the camera went on in software.
    pub hwaccel_fallbacks: AtomicU64,
    pub jpeg_encodes: AtomicU64,
    pub reconnects: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
