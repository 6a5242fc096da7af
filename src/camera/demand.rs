//! Demand: what a camera should be running, decided from the leases held and
//! each tier's linger. Pure: leases and `now` go in, "wanted?" and the next
//! deadline come out, so every linger rule is tested with simulated time.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::config::{Keep, Linger};
use crate::decode::schedule::Priority;

/// A level of work a consumer can ask for. Decoding implies connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Connected,
    Decoding,
    /// Keyframes only (one picture per GOP, almost no CPU); full decoding covers it.
    Keyframes,
}

/// A JPEG variant of a camera's frames: one encode per frame for all its consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct VariantKey {
    pub quality: u8,
    /// The size asked for (fitted to each frame, aspect kept); `None` keeps the frame's.
    pub width: Option<u32>,
    pub height: Option<u32>,
}

#[derive(Debug, Clone)]
struct TierDemand {
    leases: u32,
    linger: Linger,
    /// When the linger after the last lease runs out.
    stop_at: Option<Instant>,
}

impl TierDemand {
    fn new(linger: Linger) -> Self {
        TierDemand { leases: 0, linger, stop_at: None }
    }
    fn held(&self, now: Instant) -> bool {
        self.leases > 0 || self.linger == Linger::Forever || self.stop_at.is_some_and(|t| now < t)
    }
}

#[derive(Debug, Clone)]
pub struct Demand {
    keep: Keep,
    connected: TierDemand,
    decoding: TierDemand,
    keyframes: TierDemand,
    variant_linger: Linger,
    variants: BTreeMap<VariantKey, TierDemand>,
    /// Leases that want pictures (decoding or keyframes), by who holds them.
    by_priority: [u32; 3],
}

impl Demand {
    pub fn new(keep: Keep, connect_linger: Linger, decode_linger: Linger) -> Self {
        Demand {
            keep,
            connected: TierDemand::new(connect_linger),
            decoding: TierDemand::new(decode_linger),
            keyframes: TierDemand::new(decode_linger),
            variant_linger: Linger::After(std::time::Duration::from_secs(10)),
            variants: BTreeMap::new(),
            by_priority: [0; 3],
        }
    }

    pub fn with_variant_linger(mut self, linger: Linger) -> Self {
        self.variant_linger = linger;
        self
    }

    pub fn acquire_variant(&mut self, key: VariantKey) {
        let linger = self.variant_linger;
        let t = self.variants.entry(key).or_insert_with(|| TierDemand::new(linger));
        t.leases += 1;
        t.stop_at = None;
    }

    pub fn release_variant(&mut self, key: VariantKey, now: Instant) {
        if let Some(t) = self.variants.get_mut(&key) {
            t.leases = t.leases.saturating_sub(1);
            if t.leases == 0 {
                t.stop_at = match t.linger {
                    Linger::Forever => None,
                    Linger::After(d) => Some(now + d),
                };
            }
        }
    }

    /// The variants that should be encoding at `now`; forgets the ones whose linger ran out.
    pub fn wanted_variants(&mut self, now: Instant) -> Vec<VariantKey> {
        self.variants.retain(|_, t| t.held(now));
        self.variants.keys().copied().collect()
    }

    /// Leases held per variant.
    pub fn variant_leases(&self) -> Vec<(VariantKey, u32)> {
        self.variants.iter().map(|(k, t)| (*k, t.leases)).collect()
    }

    fn tier(&mut self, tier: Tier) -> &mut TierDemand {
        match tier {
            Tier::Connected => &mut self.connected,
            Tier::Decoding => &mut self.decoding,
            Tier::Keyframes => &mut self.keyframes,
        }
    }

    /// A lease for pictures, held by `who`: the decoder's priority is its best holder's.
    pub fn acquire_as(&mut self, tier: Tier, who: Priority) {
        if tier != Tier::Connected {
            self.by_priority[who as usize] += 1;
        }
        self.acquire(tier);
    }

    pub fn release_as(&mut self, tier: Tier, who: Priority, now: Instant) {
        if tier != Tier::Connected {
            let n = &mut self.by_priority[who as usize];
            *n = n.saturating_sub(1);
        }
        self.release(tier, now);
    }

    /// Whose pictures the decoder makes now: a person's (any viewer's or snapshot's
    /// lease), else a program's (outputs), else nobody's in particular (`keep:
    /// decoded`, a linger).
    pub fn priority(&self) -> Priority {
        if self.by_priority[0] > 0 || self.variants.values().any(|t| t.leases > 0) {
            Priority::Person
        } else if self.by_priority[1] > 0 {
            Priority::Program
        } else {
            Priority::Background
        }
    }

    /// A lease was taken: the tier is wanted, and any pending stop is cancelled.
    pub fn acquire(&mut self, tier: Tier) {
        let t = self.tier(tier);
        t.leases += 1;
        t.stop_at = None;
    }

    /// A lease was dropped; the last one starts the tier's linger.
    pub fn release(&mut self, tier: Tier, now: Instant) {
        let t = self.tier(tier);
        debug_assert!(t.leases > 0, "release without acquire");
        t.leases = t.leases.saturating_sub(1);
        if t.leases == 0 {
            t.stop_at = match t.linger {
                Linger::Forever => None,
                Linger::After(d) => Some(now + d),
            };
        }
    }

    pub fn leases(&self, tier: Tier) -> u32 {
        match tier {
            Tier::Connected => self.connected.leases,
            Tier::Decoding => self.decoding.leases,
            Tier::Keyframes => self.keyframes.leases,
        }
    }

    /// Whether `tier` should be running at `now`.
    pub fn wanted(&self, tier: Tier, now: Instant) -> bool {
        let decoding =
            self.keep == Keep::Decoded || self.decoding.held(now) || self.variants.values().any(|t| t.held(now));
        let keyframes = self.keyframes.held(now);
        match tier {
            Tier::Decoding => decoding,
            Tier::Keyframes => keyframes,
            Tier::Connected => decoding || keyframes || self.keep == Keep::Connected || self.connected.held(now),
        }
    }

    /// The next moment a linger runs out, if any is pending after `now`.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        [self.connected.stop_at, self.decoding.stop_at, self.keyframes.stop_at]
            .into_iter()
            .chain(self.variants.values().map(|t| t.stop_at))
            .flatten()
            .filter(|t| *t > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: Duration = Duration::from_secs(1);

    fn demand(keep: Keep, decode: Linger) -> Demand {
        Demand::new(keep, Linger::After(30 * S), decode)
    }

    #[test]
    fn the_decoders_priority_is_its_best_holders() {
        let t0 = crate::clock::Clock::stepped().now();
        let mut d = demand(Keep::Decoded, Linger::After(10 * S));
        assert_eq!(d.priority(), Priority::Background, "keep: decoded with nobody looking");
        d.acquire_as(Tier::Keyframes, Priority::Program);
        assert_eq!(d.priority(), Priority::Program);
        d.acquire_as(Tier::Connected, Priority::Person);
        assert_eq!(d.priority(), Priority::Program, "a connection alone wants no pictures");
        d.acquire_as(Tier::Decoding, Priority::Person);
        assert_eq!(d.priority(), Priority::Person);
        d.release_as(Tier::Decoding, Priority::Person, t0);
        assert_eq!(d.priority(), Priority::Program, "the decoder still lingers, for the program now");
        let k = VariantKey { quality: 80, width: None, height: None };
        d.acquire_variant(k);
        assert_eq!(d.priority(), Priority::Person, "an MJPEG viewer is a person");
        d.release_variant(k, t0);
        d.release_as(Tier::Keyframes, Priority::Program, t0);
        assert_eq!(d.priority(), Priority::Background, "lingering for nobody in particular");
    }

    #[test]
    fn decoder_stops_linger_after_last_lease() {
        let t0 = crate::clock::Clock::stepped().now();
        let mut d = demand(Keep::Connected, Linger::After(10 * S));
        assert!(d.wanted(Tier::Connected, t0), "keep: connected is the floor");
        assert!(!d.wanted(Tier::Decoding, t0));
        d.acquire(Tier::Decoding);
        d.acquire(Tier::Decoding);
        d.release(Tier::Decoding, t0 + S);
        assert!(d.wanted(Tier::Decoding, t0 + 100 * S), "one lease still held");
        d.release(Tier::Decoding, t0 + 2 * S);
        assert_eq!(d.next_deadline(t0 + 2 * S), Some(t0 + 12 * S));
        assert!(d.wanted(Tier::Decoding, t0 + 11 * S));
        assert!(!d.wanted(Tier::Decoding, t0 + 12 * S));
        assert_eq!(d.next_deadline(t0 + 12 * S), None, "a past deadline is not pending");
    }

    #[test]
    fn new_lease_within_linger_cancels_the_stop() {
        let t0 = crate::clock::Clock::stepped().now();
        let mut d = demand(Keep::Connected, Linger::After(10 * S));
        d.acquire(Tier::Decoding);
        d.release(Tier::Decoding, t0);
        d.acquire(Tier::Decoding);
        assert_eq!(d.next_deadline(t0), None);
        assert!(d.wanted(Tier::Decoding, t0 + 60 * S));
        d.release(Tier::Decoding, t0 + 60 * S);
        assert!(!d.wanted(Tier::Decoding, t0 + 70 * S));
    }

    #[test]
    fn zero_linger_stops_at_once_and_forever_starts_at_boot() {
        let t0 = crate::clock::Clock::stepped().now();
        let mut d = demand(Keep::Connected, Linger::After(Duration::ZERO));
        d.acquire(Tier::Decoding);
        d.release(Tier::Decoding, t0);
        assert!(!d.wanted(Tier::Decoding, t0));
        let d = demand(Keep::Connected, Linger::Forever);
        assert!(d.wanted(Tier::Decoding, t0), "-1 prewarms at boot");
    }

    #[test]
    fn on_demand_idles_until_leased_and_decoding_implies_connected() {
        let t0 = crate::clock::Clock::stepped().now();
        let mut d = Demand::new(Keep::OnDemand, Linger::After(5 * S), Linger::After(Duration::ZERO));
        assert!(!d.wanted(Tier::Connected, t0));
        d.acquire(Tier::Decoding);
        assert!(d.wanted(Tier::Connected, t0));
        d.release(Tier::Decoding, t0);
        assert!(!d.wanted(Tier::Connected, t0), "the connection was only implied by decoding");
        d.acquire(Tier::Connected);
        d.release(Tier::Connected, t0);
        assert!(d.wanted(Tier::Connected, t0 + 4 * S));
        assert!(!d.wanted(Tier::Connected, t0 + 5 * S));
        let d = Demand::new(Keep::Decoded, Linger::After(S), Linger::After(S));
        assert!(d.wanted(Tier::Decoding, t0) && d.wanted(Tier::Connected, t0));
    }

    #[test]
    fn keyframes_tier_lingers_like_decoding_and_holds_the_connection() {
        let t0 = crate::clock::Clock::stepped().now();
        let mut d = Demand::new(Keep::OnDemand, Linger::After(Duration::ZERO), Linger::After(2 * S));
        d.acquire(Tier::Keyframes);
        assert!(d.wanted(Tier::Keyframes, t0) && d.wanted(Tier::Connected, t0));
        assert!(!d.wanted(Tier::Decoding, t0), "keyframes alone is not full decoding");
        d.release(Tier::Keyframes, t0);
        assert_eq!(d.next_deadline(t0), Some(t0 + 2 * S));
        assert!(d.wanted(Tier::Keyframes, t0 + S));
        assert!(!d.wanted(Tier::Keyframes, t0 + 2 * S) && !d.wanted(Tier::Connected, t0 + 2 * S));
    }

    #[test]
    fn a_variant_lingers_on_its_own_and_implies_decoding() {
        let t0 = crate::clock::Clock::stepped().now();
        let mut d = Demand::new(Keep::OnDemand, Linger::After(Duration::ZERO), Linger::After(Duration::ZERO))
            .with_variant_linger(Linger::After(3 * S));
        let small = VariantKey { quality: 50, width: Some(320), height: None };
        let big = VariantKey { quality: 90, width: None, height: None };
        d.acquire_variant(small);
        d.acquire_variant(big);
        assert!(d.wanted(Tier::Decoding, t0) && d.wanted(Tier::Connected, t0));
        assert_eq!(d.wanted_variants(t0), vec![small, big]);
        d.release_variant(small, t0);
        assert_eq!(d.next_deadline(t0), Some(t0 + 3 * S));
        assert_eq!(d.wanted_variants(t0 + 2 * S), vec![small, big]);
        assert_eq!(d.wanted_variants(t0 + 3 * S), vec![big], "small's linger ran out");
        d.release_variant(big, t0 + 3 * S);
        d.acquire_variant(big);
        assert_eq!(d.wanted_variants(t0 + 60 * S), vec![big], "re-leased inside the window");
        d.release_variant(big, t0 + 60 * S);
        assert!(d.wanted_variants(t0 + 63 * S).is_empty());
        assert!(!d.wanted(Tier::Decoding, t0 + 63 * S));
    }
}
