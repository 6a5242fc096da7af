//! One JPEG variant (quality, size) of a camera's frames, encoded once per
//! frame for every consumer that holds its lease (MJPEG viewers). The encoder
//! task follows the decoder's newest picture and publishes the newest JPEG
//! through a `watch`, so a slow consumer skips frames and never queues them.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;

use super::Shared;
use crate::camera::demand::VariantKey;
use crate::encode::fit_size;

/// The newest JPEG of a variant.
#[derive(Debug, Clone)]
pub struct VariantFrame {
    pub frame_id: u64,
    pub captured: SystemTime,
    pub captured_mono: Instant,
    pub jpeg: Bytes,
}

pub type VariantRx = watch::Receiver<Option<Arc<VariantFrame>>>;

/// Encodes every new decoded frame for `key` until `stop` is cancelled. The JPEG cache is
/// shared with snapshots, so a snapshot of the same key costs nothing more.
pub(super) async fn run(
    shared: Arc<Shared>,
    key: VariantKey,
    tx: watch::Sender<Option<Arc<VariantFrame>>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut progress = shared.progress.subscribe();
    let mut last = 0u64;
    loop {
        let frame = progress.borrow_and_update().frame.clone();
        if let Some(f) = frame.filter(|f| f.frame_id > last) {
            last = f.frame_id;
            let size = fit_size((f.width(), f.height()), key.width, key.height);
            match shared.jpegs.get(f.clone(), key.quality, size, &shared.counters).await {
                Ok((jpeg, _)) => {
                    tx.send_replace(Some(Arc::new(VariantFrame {
                        frame_id: f.frame_id,
                        captured: f.captured,
                        captured_mono: f.captured_mono,
                        jpeg,
                    })));
                }
                Err(e) => tracing::warn!("variant {key:?}: {e}"),
            }
        }
        tokio::select! {
            r = progress.changed() => if r.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}
