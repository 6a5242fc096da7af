//! One JPEG per (frame, quality, size), whoever asks: the first request encodes
//! on a blocking thread, concurrent requests for the same key wait for that one
//! encode, later ones take the bytes. Bounded to the few newest keys.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::media::Frame;
use crate::telemetry::metrics::Latency;
use crate::telemetry::stats::Counters;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JpegKey {
    pub frame_id: u64,
    pub quality: u8,
    pub width: u32,
    pub height: u32,
}

type Cell = Arc<OnceCell<Result<Bytes>>>;

/// When a JPEG's frame was captured (wall clock, monotonic).
pub type Captured = (std::time::SystemTime, std::time::Instant);

pub struct JpegCache {
    /// Each JPEG with its key and when its frame was captured.
    entries: Mutex<VecDeque<(JpegKey, Captured, Cell)>>,
    capacity: usize,
    clock: Clock,
    /// Time to make one JPEG, scaling included.
    latency: Latency,
}

impl JpegCache {
    pub fn new(capacity: usize, clock: Clock, latency: Latency) -> Self {
        JpegCache { entries: Mutex::new(VecDeque::new()), capacity: capacity.max(1), clock, latency }
    }

    /// The JPEG for `frame` at `quality` and `size`; encodes at most once per key.
    /// Returns the bytes and whether they were already made.
    pub async fn get(
        &self,
        frame: Arc<Frame>,
        quality: u8,
        size: (u32, u32),
        counters: &Arc<Counters>,
    ) -> Result<(Bytes, bool)> {
        let key = JpegKey { frame_id: frame.frame_id, quality, width: size.0, height: size.1 };
        let cell = {
            let mut e = self.entries.lock();
            match e.iter().find(|(k, _, _)| *k == key) {
                Some((_, _, c)) => c.clone(),
                None => {
                    let c: Cell = Arc::default();
                    e.push_back((key, (frame.captured, frame.captured_mono), c.clone()));
                    while e.len() > self.capacity {
                        e.pop_front();
                    }
                    c
                }
            }
        };
        let hit = cell.initialized();
        let counters = counters.clone();
        let clock = self.clock.clone();
        let latency = self.latency.clone();
        let bytes = cell
            .get_or_init(|| async move {
                let out = tokio::task::spawn_blocking(move || {
                    let t = clock.now();
                    let r = super::encode_jpeg(&frame, quality, size);
                    latency.observe(clock.since(t));
                    r
                })
                .await
                .map_err(|e| Error::new(ErrorKind::Internal, format!("encoder task failed: {e}")).caused_by(e))
                .and_then(|r| r)
                .map(Bytes::from);
                if out.is_ok() {
                    Counters::add(&counters.jpeg_encodes, 1);
                }
                out
            })
            .await
            .clone()?;
        Ok((bytes, hit))
    }

    /// The newest JPEG made at `quality` and `size` (of any frame), with its key
    /// and capture times, if one is still kept.
    pub fn newest_made(&self, quality: u8, size: (u32, u32)) -> Option<(JpegKey, Captured, Bytes)> {
        let e = self.entries.lock();
        e.iter()
            .filter(|(k, _, _)| k.quality == quality && (k.width, k.height) == size)
            .filter_map(|(k, t, c)| c.get().and_then(|r| r.as_ref().ok()).map(|b| (*k, *t, b.clone())))
            .max_by_key(|(k, _, _)| k.frame_id)
    }

    /// The newest JPEG already made (for `cached=true`), if any.
    pub fn newest(&self) -> Option<(JpegKey, Bytes)> {
        let e = self.entries.lock();
        e.iter()
            .filter_map(|(k, _, c)| c.get().and_then(|r| r.as_ref().ok()).map(|b| (*k, b.clone())))
            .max_by_key(|(k, _)| k.frame_id)
    }

    pub fn bytes(&self) -> usize {
        let e = self.entries.lock();
        e.iter().filter_map(|(_, _, c)| c.get().and_then(|r| r.as_ref().ok())).map(Bytes::len).sum()
    }
}
