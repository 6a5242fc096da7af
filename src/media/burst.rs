//! What a forwarding viewer (WHEP, the RTSP restream) sends, and when:
//! sans-IO. The cached GOP goes first, stamped 1 ms apart and ending at the newest cached unit, so the browser decodes it
//! all at once and shows the newest picture; live units keep their real spacing
//! after it. Sending is paced (time per byte), since a whole GOP at line rate
//! overruns a viewer's receive buffer. Units and `now` go in, units with their
//! RTP times come out; the tests step time by hand.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::media::EncodedUnit;

/// RTP timestamps (90 kHz) for forwarded units.
#[derive(Debug)]
pub struct Stamper {
    anchor: Option<Instant>,
    /// Burst units still to stamp.
    burst: u64,
    last: u64,
}

impl Stamper {
    pub const BASE: u64 = 90_000 * 60;
    pub const TICK: u64 = 90;

    /// `burst` units squeezed before `anchor` (the newest cached unit's arrival).
    pub fn new(anchor: Option<Instant>, burst: u64) -> Self {
        Stamper { anchor, burst, last: 0 }
    }

    pub fn stamp(&mut self, received: Instant) -> u64 {
        let anchor = *self.anchor.get_or_insert(received);
        let t = if self.burst > 0 {
            self.burst -= 1;
            Self::BASE - self.burst * Self::TICK
        } else {
            let mapped = Self::BASE + received.saturating_duration_since(anchor).as_micros() as u64 * 9 / 100;
            mapped.max(self.last + Self::TICK)
        };
        self.last = t;
        t
    }
}

/// The units waiting for one viewer, the pace and the stamps.
#[derive(Debug)]
pub struct Burst {
    pending: VecDeque<Arc<EncodedUnit>>,
    stamper: Stamper,
    /// Time per byte sent.
    pace: Duration,
    next_send: Instant,
    /// Units are skipped until a keyframe (a viewer that starts or fell behind).
    need_keyframe: bool,
    /// At most this many units wait; beyond, the viewer waits for the next keyframe.
    cap: usize,
}

impl Burst {
    /// Starts with the cached GOP, paced at `mbps`.
    pub fn new(gop: Vec<Arc<EncodedUnit>>, mbps: f64, cap: usize, now: Instant) -> Self {
        let anchor = gop.last().map(|u| u.received_mono);
        let need_keyframe = gop.first().is_none_or(|u| !u.keyframe);
        Burst {
            stamper: Stamper::new(anchor, gop.len() as u64),
            pending: gop.into(),
            pace: Duration::from_secs_f64(8.0 / (mbps.max(1.0) * 1e6)),
            next_send: now,
            need_keyframe,
            cap,
        }
    }

    /// A live unit arrived.
    pub fn push(&mut self, unit: Arc<EncodedUnit>) {
        self.pending.push_back(unit);
        if self.pending.len() > self.cap {
            self.lost();
        }
    }

    /// The viewer fell behind: drop what waits and resume at the next keyframe.
    pub fn lost(&mut self) {
        self.pending.clear();
        self.need_keyframe = true;
    }

    /// The next unit due at `now` and its RTP time, or None (nothing waits,
    /// or the pace says wait until `next_due`).
    pub fn poll(&mut self, now: Instant) -> Option<(Arc<EncodedUnit>, u64)> {
        while now >= self.next_send {
            let unit = self.pending.pop_front()?;
            let rtp = self.stamper.stamp(unit.received_mono);
            self.need_keyframe &= !unit.keyframe;
            if self.need_keyframe {
                continue;
            }
            self.next_send = self.next_send.max(now) + self.pace.mul_f64(unit.data.len() as f64);
            return Some((unit, rtp));
        }
        None
    }

    /// When something is due next, if anything waits.
    pub fn next_due(&self) -> Option<Instant> {
        (!self.pending.is_empty()).then_some(self.next_send)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::media::Codec;

    const MS: Duration = Duration::from_millis(1);

    fn unit(clock: &Clock, key: bool, bytes: usize) -> Arc<EncodedUnit> {
        Arc::new(EncodedUnit::new(Codec::H264, vec![0u8; bytes].into(), key, clock))
    }

    #[test]
    fn the_gop_burst_is_squeezed_and_live_units_keep_their_spacing() {
        let t0 = Clock::stepped().now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        // GOP cached over 2 s, newest at 2000 ms: anchored there.
        let mut c = Stamper::new(Some(ms(2000)), 5);
        let burst: Vec<u64> = [0, 500, 1000, 1500, 2000].iter().map(|m| c.stamp(ms(*m))).collect();
        assert_eq!(
            burst,
            (0..5).map(|i| Stamper::BASE - (4 - i) * 90).collect::<Vec<_>>(),
            "1 ms apart, ending at the anchor"
        );
        let live = c.stamp(ms(2100));
        assert_eq!(live - burst[4], 9000, "100 ms later is 9000 ticks at 90 kHz");
    }

    #[test]
    fn the_burst_is_paced_by_bytes_and_live_units_follow_it() {
        let clock = Clock::stepped();
        // 10 kB units at 8 Mbit/s: one every 10 ms.
        let gop: Vec<_> = (0..3).map(|i| unit(&clock, i == 0, 10_000)).collect();
        let mut b = Burst::new(gop, 8.0, 256, clock.now());
        let (first, rtp0) = b.poll(clock.now()).expect("the keyframe at once");
        assert!(first.keyframe);
        assert!(b.poll(clock.now()).is_none(), "the next one waits for the pace");
        assert_eq!(b.next_due(), Some(clock.now() + 10 * MS));
        clock.advance(9 * MS);
        assert!(b.poll(clock.now()).is_none(), "9 ms is too soon");
        clock.advance(MS);
        let (_, rtp1) = b.poll(clock.now()).expect("due at 10 ms");
        assert_eq!(rtp1 - rtp0, Stamper::TICK, "the burst is stamped 1 ms apart");
        clock.advance(10 * MS);
        b.poll(clock.now()).expect("the last cached unit");
        assert_eq!(b.next_due(), None, "nothing waits");
        clock.advance(100 * MS);
        b.push(unit(&clock, false, 100));
        let (_, rtp3) = b.poll(clock.now()).expect("a live unit goes at once");
        assert_eq!(rtp3, Stamper::BASE + 120 * 90, "live units keep their real spacing after the anchor");
    }

    #[test]
    fn a_viewer_that_falls_behind_resumes_at_a_keyframe() {
        let clock = Clock::stepped();
        let mut b = Burst::new(Vec::new(), 30.0, 4, clock.now());
        b.push(unit(&clock, false, 10));
        assert!(b.poll(clock.now()).is_none(), "a viewer starts at a keyframe");
        for _ in 0..5 {
            b.push(unit(&clock, false, 10));
        }
        assert_eq!(b.next_due(), None, "over the cap: everything waiting was dropped");
        b.push(unit(&clock, true, 10));
        b.push(unit(&clock, false, 10));
        assert!(b.poll(clock.now()).expect("the keyframe").0.keyframe);
        clock.advance(MS);
        assert!(!b.poll(clock.now()).expect("and what follows it").0.keyframe);
    }
}
