//! Reconnect delays: exponential with jitter and a cap, slower for failures
//! that will not fix themselves (bad password, no such stream).

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    base: Duration,
    cap: Duration,
    persistent_floor: Duration,
    /// Seeded: tests replay the same jitter; cameras seed at random.
    rng: fastrand::Rng,
}

impl Backoff {
    pub fn new(seed: u64) -> Self {
        Backoff {
            attempt: 0,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            persistent_floor: Duration::from_secs(30),
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The delay before the next attempt; each call doubles the next one up to the cap.
    pub fn next_delay(&mut self, persistent: bool) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16)).min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        // Jitter: uniform in [exp/2, exp], so a fleet does not reconnect in lockstep.
        let frac = self.rng.f64();
        let d = exp.mul_f64(0.5 + 0.5 * frac);
        // Persistent failures wait 30-45 s (jittered too), or longer once the backoff passes that.
        if persistent { d.max(self.persistent_floor.mul_f64(1.0 + 0.5 * frac)) } else { d }
    }

    /// After a connection that stayed up, start again from the base delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(42);
        let d: Vec<Duration> = (0..10).map(|_| b.next_delay(false)).collect();
        for (i, d) in d.iter().enumerate() {
            let exp = Duration::from_secs(1 << i.min(6)).min(Duration::from_secs(60));
            assert!(*d >= exp / 2 && *d <= exp, "attempt {i}: {d:?} vs {exp:?}");
        }
        b.reset();
        assert!(b.next_delay(false) <= Duration::from_secs(1));
        assert!(b.next_delay(true) >= Duration::from_secs(30), "auth failures retry slowly");
    }
}
