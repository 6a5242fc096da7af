//! What the API and metrics show of one output: its counters, state and error.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};

use parking_lot::Mutex;

use super::redis::RecordQueue;

/// What the API and metrics show of one output.
pub struct OutputStats {
    pub name: String,
    pub kind: &'static str,
    /// The ring file (shm).
    pub path: Option<PathBuf>,
    /// The stream key (redis).
    pub stream: Option<String>,
    pub published: AtomicU64,
    pub skipped_similar: AtomicU64,
    /// Readers registered in the ring (shm).
    pub readers: AtomicU32,
    /// Whether the output is taking frames now (shm: a reader is attached, or `demand: always`).
    pub active: AtomicBool,
    pub error: Mutex<Option<String>>,
    pub queue: Option<Arc<RecordQueue>>,
}

impl OutputStats {
    pub(super) fn new(name: &str, kind: &'static str) -> Self {
        OutputStats {
            name: name.into(),
            kind,
            path: None,
            stream: None,
            published: AtomicU64::new(0),
            skipped_similar: AtomicU64::new(0),
            readers: AtomicU32::new(0),
            active: AtomicBool::new(false),
            error: Mutex::new(None),
            queue: None,
        }
    }

    pub(super) fn set_error(&self, e: Option<String>) {
        *self.error.lock() = e;
    }

    pub fn error(&self) -> Option<String> {
        self.error.lock().clone()
    }
}
