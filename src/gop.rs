//! The GOP cache: the compressed units since the newest keyframe. A decoder
//! that starts cold replays it to reach the newest picture without waiting for
//! the camera's next keyframe. Bounded in bytes: once a GOP outgrows the bound,
//! the rest of that GOP is dropped (and counted) until the next keyframe, so
//! a replay stops at the last unit that fit and says so through its frame's age.

use std::sync::Arc;

use crate::source::EncodedUnit;

#[derive(Debug)]
pub struct GopCache {
    units: Vec<Arc<EncodedUnit>>,
    bytes: usize,
    limit: usize,
    truncated: bool,
    dropped_units: u64,
    dropped_bytes: u64,
}

impl GopCache {
    pub fn new(limit_bytes: usize) -> Self {
        GopCache {
            units: Vec::new(),
            bytes: 0,
            limit: limit_bytes,
            truncated: false,
            dropped_units: 0,
            dropped_bytes: 0,
        }
    }

    /// Adds a unit; returns whether it was kept. A keyframe starts a new GOP.
    /// Units before the first keyframe cannot be decoded and are not kept.
    pub fn push(&mut self, unit: &Arc<EncodedUnit>) -> bool {
        if unit.keyframe {
            self.units.clear();
            self.bytes = 0;
            self.truncated = false;
        } else if self.units.is_empty() && !self.truncated {
            return false;
        }
        let len = unit.data.len();
        if self.truncated || self.bytes + len > self.limit {
            self.truncated = true;
            self.dropped_units += 1;
            self.dropped_bytes += len as u64;
            return false;
        }
        self.bytes += len;
        self.units.push(unit.clone());
        true
    }

    /// Forgets everything (a new connection starts from its own keyframe).
    pub fn clear(&mut self) {
        self.units.clear();
        self.bytes = 0;
        self.truncated = false;
    }

    pub fn units(&self) -> &[Arc<EncodedUnit>] {
        &self.units
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Codec;

    fn unit(seq: u64, key: bool, len: usize) -> Arc<EncodedUnit> {
        let mut u = EncodedUnit::new(Codec::H264, vec![0u8; len].into(), key);
        u.seq = seq;
        Arc::new(u)
    }

    #[test]
    fn keeps_units_since_newest_keyframe() {
        let mut g = GopCache::new(1000);
        assert!(!g.push(&unit(1, false, 10)), "no keyframe yet: cannot be decoded");
        assert!(g.push(&unit(2, true, 100)));
        assert!(g.push(&unit(3, false, 10)));
        assert_eq!(g.units().len(), 2);
        assert!(g.push(&unit(4, true, 100)));
        assert_eq!(g.units().iter().map(|u| u.seq).collect::<Vec<_>>(), vec![4]);
        assert_eq!(g.bytes(), 100);
    }

    #[test]
    fn drops_and_counts_what_does_not_fit_until_next_keyframe() {
        let mut g = GopCache::new(250);
        g.push(&unit(1, true, 200));
        assert!(g.push(&unit(2, false, 40)));
        assert!(!g.push(&unit(3, false, 40)), "over the bound");
        assert!(!g.push(&unit(4, false, 5)), "a later small unit would break the chain");
        assert!(g.truncated());
        assert_eq!(g.dropped(), (2, 45));
        assert_eq!(g.units().last().unwrap().seq, 2);
        assert!(g.push(&unit(5, true, 100)));
        assert!(!g.truncated());
        // A keyframe larger than the whole bound is dropped too.
        assert!(!g.push(&unit(6, true, 300)));
        assert!(g.units().is_empty());
        assert_eq!(g.dropped(), (3, 345));
    }
}
