//! Shedding by GOP prefix: which units of a GOP a background camera decodes.

/// A camera's share of each GOP under overload. Frames in a GOP depend on the
/// ones before them, so shedding keeps a prefix: every GOP's keyframe and the
/// first `1 - shed` of its other frames are decoded, the rest are not (the
/// decoder waits for the next keyframe). Every camera thus decodes the same
/// share of every GOP, so any window of whole GOPs sees the same fps per
/// camera, and a change of the shed share takes effect at once, not a GOP later.
#[derive(Debug, Clone, Default)]
pub struct GopShare {
    /// Units since this GOP's keyframe (0: the keyframe).
    pos: usize,
    /// Units in the last whole GOP (0: none seen yet).
    expected: usize,
    /// This GOP's share is spent: nothing more until the next keyframe.
    cut: bool,
    /// A keyframe was seen (units before the first one are no whole GOP).
    synced: bool,
}

impl GopShare {
    /// Whether this unit is within the camera's share (`shed`: the share of
    /// each GOP's frames not to decode). Call for every unit, in order.
    pub fn take(&mut self, keyframe: bool, shed: f64) -> bool {
        if keyframe {
            if self.synced {
                self.expected = self.pos + 1;
            }
            self.synced = true;
            self.pos = 0;
            self.cut = false;
            return true;
        }
        self.pos += 1;
        if shed <= 0.0 {
            // Nothing shed (or a person came): whatever was cut is replayed by the caller.
            self.cut = false;
            return true;
        }
        if !self.cut && self.expected > 0 && self.pos as f64 >= (1.0 - shed) * self.expected as f64 {
            self.cut = true;
        }
        !self.cut
    }

    /// Whether this GOP's share is spent.
    pub fn cut(&self) -> bool {
        self.cut
    }
}
