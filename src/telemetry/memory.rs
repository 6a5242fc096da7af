//! Memory accounting and budgets. Each camera's bytes (GOP cache, decoded frame,
//! JPEG cache, rings) are shown in the API and metrics. Two budgets bound the
//! largest of them, the GOP caches: a camera's `memory_budget` and the hub's
//! `server.memory_budget`, shared by all cameras. Shared-memory rings take their
//! laid-out size from the hub's budget too, and are refused when it does not fit
//! (`output::ring`). A GOP cache over budget keeps
//! its keyframe and the frames that fit, and drops (and counts) the rest of that
//! GOP: dropping its oldest unit, the keyframe, would make the others useless.
//! The hub's budget never refuses a keyframe, so every camera keeps a picture to
//! show: it can be exceeded by at most one keyframe per camera.

use std::sync::atomic::{AtomicU64, Ordering};

/// A byte budget shared by many holders; 0 means unlimited (still counted).
#[derive(Debug, Default)]
pub struct Budget {
    limit: AtomicU64,
    used: AtomicU64,
}

/// The hub's budget for every camera's GOP cache together.
pub static GLOBAL: Budget = Budget::new();

impl Budget {
    pub const fn new() -> Self {
        Budget { limit: AtomicU64::new(0), used: AtomicU64::new(0) }
    }
    pub fn set_limit(&self, bytes: u64) {
        self.limit.store(bytes, Ordering::Relaxed);
    }
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
    /// Takes `n` bytes if they fit.
    pub fn try_take(&self, n: u64) -> bool {
        let limit = self.limit();
        let mut used = self.used();
        loop {
            if limit > 0 && used + n > limit {
                return false;
            }
            match self.used.compare_exchange_weak(used, used + n, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }
    /// Takes `n` bytes even over the limit (a keyframe: every camera keeps a picture).
    pub fn take(&self, n: u64) {
        self.used.fetch_add(n, Ordering::AcqRel);
    }
    pub fn give(&self, n: u64) {
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| Some(u.saturating_sub(n)));
    }
}

/// Makes freed large blocks go back to the system at once (glibc's mmap threshold
/// fixed at its default 128 KiB, unless `MALLOC_MMAP_THRESHOLD_` says otherwise):
/// a camera refused again and again, or a burst of decoders, then leaves no
/// resident heap behind. Call once at start.
pub fn return_freed_memory_promptly() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        crate::ffi::fix_mmap_threshold(128 * 1024);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_takes_what_fits_and_gets_it_back() {
        let b = Budget::new();
        assert!(b.try_take(1 << 40), "unlimited by default");
        b.give(1 << 40);
        b.set_limit(100);
        assert!(b.try_take(60));
        assert!(!b.try_take(50));
        assert!(b.try_take(40));
        b.give(60);
        assert_eq!(b.used(), 40);
        assert!(b.try_take(60));
    }
}
