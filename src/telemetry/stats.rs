//! Per-camera counters, shared by the stages that bump them and read by the API.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counters {
    pub units_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub frames_decoded: AtomicU64,
    pub decode_errors: AtomicU64,
    /// Units the decoder could not take in time (it was behind); it restarted from the GOP cache.
    pub decoder_overruns: AtomicU64,
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
