//! The GOP cache: the compressed units since the newest keyframe. A decoder
//! that starts cold replays it to reach the newest picture without waiting for
//! the camera's next keyframe. Bounded in bytes and in units: once a GOP
//! outgrows either bound, the rest of that GOP is dropped (and counted) until
//! the next keyframe, so a replay stops at the last unit that fit and says so
//! through its frame's age. The bytes are what the units really hold: payload
//! plus a per-unit overhead, so a flood of tiny units cannot hide behind a
//! byte limit that counts payload only.

use std::sync::Arc;

use crate::media::EncodedUnit;
use crate::telemetry::memory::Budget;

/// What one kept unit costs besides its payload: the `EncodedUnit` itself, the
/// `Arc`'s two counters, the `Vec` slot that holds the `Arc`, and the payload's
/// own allocation (allocator header and `Bytes`' shared block, about 32 bytes).
/// Counted with the payload against `gop_cache_bytes` and the memory budgets.
pub const UNIT_OVERHEAD: usize = std::mem::size_of::<EncodedUnit>()
    + 2 * std::mem::size_of::<usize>()
    + std::mem::size_of::<Arc<EncodedUnit>>()
    + 32;

/// The most units one GOP cache keeps, whatever their size: 4096 is over two
/// minutes at 30 fps, longer than any camera's keyframe interval, and bounds
/// the bookkeeping of a camera that floods tiny units.
pub const MAX_UNITS: usize = 4096;

#[derive(Debug)]
pub struct GopCache {
    units: Vec<Arc<EncodedUnit>>,
    bytes: usize,
    limit: usize,
    truncated: bool,
    dropped_units: u64,
    dropped_bytes: u64,
    /// Units dropped because a memory budget (not `limit`) was exhausted.
    budget_drops: u64,
    /// The shared budget the bytes are taken from (the hub's, or a test's).
    budget: &'static Budget,
    /// What the camera's own memory budget leaves for the cache, if it has one.
    budget_limit: Option<usize>,
}

impl GopCache {
    pub fn new(limit_bytes: usize) -> Self {
        Self::with_budget(limit_bytes, &crate::telemetry::memory::GLOBAL)
    }

    pub fn with_budget(limit_bytes: usize, budget: &'static Budget) -> Self {
        GopCache {
            units: Vec::new(),
            bytes: 0,
            limit: limit_bytes,
            truncated: false,
            dropped_units: 0,
            dropped_bytes: 0,
            budget_drops: 0,
            budget,
            budget_limit: None,
        }
    }

    fn release(&mut self) {
        self.budget.give(self.bytes as u64);
        self.units.clear();
        self.bytes = 0;
        self.truncated = false;
    }

    /// Adds a unit; returns whether it was kept. A keyframe starts a new GOP.
    /// Units before the first keyframe cannot be decoded and are not kept.
    pub fn push(&mut self, unit: &Arc<EncodedUnit>) -> bool {
        if unit.keyframe {
            self.release();
        } else if self.units.is_empty() && !self.truncated {
            return false;
        }
        let len = unit.data.len() + UNIT_OVERHEAD;
        let over_limit = self.truncated || self.bytes + len > self.limit || self.units.len() >= MAX_UNITS;
        // Like the shared budget, the camera's own never refuses a keyframe: without
        // it nothing of the GOP can be decoded, and a budget smaller than one decoded
        // frame would freeze the camera's picture for ever.
        let over_budget = !unit.keyframe && self.budget_limit.is_some_and(|b| self.bytes + len > b);
        let shared_ok = || {
            if unit.keyframe {
                self.budget.take(len as u64);
                true
            } else {
                self.budget.try_take(len as u64)
            }
        };
        if over_limit || over_budget || !shared_ok() {
            if !over_limit {
                self.budget_drops += 1;
            }
            self.truncated = true;
            self.dropped_units += 1;
            self.dropped_bytes += unit.data.len() as u64;
            return false;
        }
        self.bytes += len;
        self.units.push(unit.clone());
        true
    }

    /// Forgets everything (a new connection starts from its own keyframe).
    pub fn clear(&mut self) {
        self.release();
    }

    /// The camera's own budget: what it leaves for this cache (None: no budget).
    pub fn set_budget_limit(&mut self, bytes: Option<usize>) {
        self.budget_limit = bytes;
    }

    /// Units dropped because a memory budget ran out.
    pub fn budget_drops(&self) -> u64 {
        self.budget_drops
    }

    pub fn units(&self) -> &[Arc<EncodedUnit>] {
        &self.units
    }
    /// What the kept units hold: payload plus `UNIT_OVERHEAD` each.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    /// True while the current GOP has outgrown the bound (units are being dropped).
    pub fn truncated(&self) -> bool {
        self.truncated
    }
    pub fn dropped(&self) -> (u64, u64) {
        (self.dropped_units, self.dropped_bytes)
    }
    pub fn set_limit(&mut self, limit_bytes: usize) {
        self.limit = limit_bytes;
    }
}

impl Drop for GopCache {
    fn drop(&mut self) {
        self.budget.give(self.bytes as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Codec;

    fn unit(seq: u64, key: bool, len: usize) -> Arc<EncodedUnit> {
        let mut u = EncodedUnit::new(Codec::H264, vec![0u8; len].into(), key, &crate::clock::Clock::real());
        u.seq = seq;
        Arc::new(u)
    }

    const O: usize = UNIT_OVERHEAD;

    #[test]
    fn keeps_units_since_newest_keyframe() {
        let mut g = GopCache::new(1000);
        assert!(!g.push(&unit(1, false, 10)), "no keyframe yet: cannot be decoded");
        assert!(g.push(&unit(2, true, 100)));
        assert!(g.push(&unit(3, false, 10)));
        assert_eq!(g.units().len(), 2);
        assert!(g.push(&unit(4, true, 100)));
        assert_eq!(g.units().iter().map(|u| u.seq).collect::<Vec<_>>(), vec![4]);
        assert_eq!(g.bytes(), 100 + O);
    }

    #[test]
    fn drops_and_counts_what_does_not_fit_until_next_keyframe() {
        let mut g = GopCache::new(250 + 2 * O);
        g.push(&unit(1, true, 200));
        assert!(g.push(&unit(2, false, 40)));
        assert!(!g.push(&unit(3, false, 40)), "over the bound");
        assert!(!g.push(&unit(4, false, 5)), "a later small unit would break the chain");
        assert!(g.truncated());
        assert_eq!(g.dropped(), (2, 45), "dropped bytes are payload");
        assert_eq!(g.units().last().unwrap().seq, 2);
        assert!(g.push(&unit(5, true, 100)));
        assert!(!g.truncated());
        // A keyframe larger than the whole bound is dropped too.
        assert!(!g.push(&unit(6, true, 250 + 2 * O)));
        assert!(g.units().is_empty());
        assert_eq!(g.dropped(), (3, 45 + 250 + 2 * O as u64));
    }

    #[test]
    fn every_unit_counts_its_overhead_so_tiny_units_cannot_flood_the_cache() {
        // Issue 15, item 6: 1-byte units used to be counted as 1 byte each, so
        // an 8 MiB cache held 1.18 M of them (172 MB).
        assert!(O >= std::mem::size_of::<EncodedUnit>() + std::mem::size_of::<Arc<EncodedUnit>>());
        let mut g = GopCache::new(100 * (O + 1));
        assert!(g.push(&unit(0, true, 1)));
        let kept = (1..1000).filter(|&i| g.push(&unit(i, false, 1))).count();
        assert_eq!(kept, 99);
        assert_eq!(g.bytes(), 100 * (O + 1));
        assert!(g.truncated());
        let mut g = GopCache::new(8 << 20);
        assert!(g.push(&unit(0, true, 1)));
        for i in 1..20_000 {
            g.push(&unit(i, false, 1));
        }
        assert!(g.units().len() <= MAX_UNITS && g.bytes() <= 8 << 20, "{} units", g.units().len());
    }

    #[test]
    fn the_unit_count_is_capped_whatever_the_byte_limit() {
        let mut g = GopCache::new(1 << 40);
        assert!(g.push(&unit(0, true, 0)));
        let kept = (1..MAX_UNITS as u64 + 10).filter(|&i| g.push(&unit(i, false, 0))).count();
        assert_eq!(kept, MAX_UNITS - 1);
        assert_eq!(g.units().len(), MAX_UNITS);
        assert_eq!(g.dropped(), (10, 0));
        assert!(g.truncated());
        assert!(g.push(&unit(MAX_UNITS as u64 + 10, true, 0)), "the next keyframe starts afresh");
        assert_eq!(g.units().len(), 1);
    }

    #[test]
    fn a_shared_budget_bounds_several_caches_and_is_given_back() {
        static B: Budget = Budget::new();
        B.set_limit(300 + 2 * O as u64);
        let mut a = GopCache::with_budget(1000, &B);
        let mut b = GopCache::with_budget(1000, &B);
        assert!(a.push(&unit(1, true, 200)));
        assert!(b.push(&unit(2, true, 100)));
        assert!(!a.push(&unit(3, false, 10)), "the shared budget is spent");
        assert_eq!((a.budget_drops(), a.dropped()), (1, (1, 10)));
        assert!(a.push(&unit(4, true, 150)), "a new GOP gives the old one's bytes back first");
        assert_eq!(B.used(), 250 + 2 * O as u64);
        assert!(b.push(&unit(5, true, 180)), "a keyframe is never refused by the shared budget");
        assert_eq!(B.used(), 330 + 2 * O as u64);
        assert!(!b.push(&unit(6, false, 1)), "but nothing more fits");
        assert!(b.push(&unit(7, true, 100)));
        assert_eq!(B.used(), 250 + 2 * O as u64);
        drop(b);
        assert_eq!(B.used(), 150 + O as u64, "a cache that goes gives its bytes back");
        // The camera's own budget, even one that leaves nothing, keeps each keyframe too.
        a.set_budget_limit(Some(0));
        assert!(a.push(&unit(8, true, 50)), "a keyframe is never refused by the camera's budget");
        assert!(!a.push(&unit(9, false, 5)), "the rest of its GOP is");
        assert_eq!(a.units().len(), 1);
        assert_eq!(a.budget_drops(), 2);
        a.clear();
        assert_eq!(B.used(), 0);
    }
}
