//! Time, from one place. Every part of camhub that needs "now" or a sleep takes
//! it from a `Clock` handle: the real one in production, a stepped one in tests
//! that moves only when the test says so. This file (and the real clock in it) is
//! the only reader of the system clock, so every linger, watchdog, pacing and
//! age rule can be driven in milliseconds of test time.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

/// A cheap, cloneable handle to the time.
#[derive(Clone, Default)]
pub struct Clock {
    stepped: Option<Arc<Stepped>>,
}

/// A clock that starts at the real "now" and then moves only by `advance`.
struct Stepped {
    mono0: Instant,
    wall0: SystemTime,
    offset: watch::Sender<Duration>,
}

impl Clock {
    /// The system's clocks.
    pub fn real() -> Clock {
        Clock { stepped: None }
    }

    /// A clock for tests: frozen until `advance` moves it.
    pub fn stepped() -> Clock {
        let s = Stepped { mono0: Instant::now(), wall0: SystemTime::now(), offset: watch::channel(Duration::ZERO).0 };
        Clock { stepped: Some(Arc::new(s)) }
    }

    pub fn is_stepped(&self) -> bool {
        self.stepped.is_some()
    }

    /// The monotonic now (for ages, deadlines, lingers).
    pub fn now(&self) -> Instant {
        match &self.stepped {
            None => Instant::now(),
            Some(s) => s.mono0 + *s.offset.borrow(),
        }
    }

    /// The wall-clock now (for capture timestamps shown to people).
    pub fn wall(&self) -> SystemTime {
        match &self.stepped {
            None => SystemTime::now(),
            Some(s) => s.wall0 + *s.offset.borrow(),
        }
    }

    /// Both at once, the way a unit or frame is stamped.
    pub fn stamp(&self) -> (SystemTime, Instant) {
        (self.wall(), self.now())
    }

    /// Moves a stepped clock forward, waking the sleepers whose time came.
    /// Does nothing to the real clock.
    pub fn advance(&self, by: Duration) {
        if let Some(s) = &self.stepped {
            s.offset.send_modify(|o| *o += by);
        }
    }

    /// Sleeps until `deadline` on this clock.
    pub async fn sleep_until(&self, deadline: Instant) {
        match &self.stepped {
            None => tokio::time::sleep_until(deadline.into()).await,
            Some(s) => {
                let mut rx = s.offset.subscribe();
                while s.mono0 + *rx.borrow_and_update() < deadline {
                    if rx.changed().await.is_err() {
                        return std::future::pending().await;
                    }
                }
            }
        }
    }

    pub async fn sleep(&self, d: Duration) {
        let deadline = self.now() + d;
        self.sleep_until(deadline).await
    }

    /// Time since `t`, never negative.
    pub fn since(&self, t: Instant) -> Duration {
        self.now().saturating_duration_since(t)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_stepped() { "Clock(stepped)" } else { "Clock(real)" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stepped_clock_moves_only_when_told_and_wakes_its_sleepers() {
        let c = Clock::stepped();
        let t0 = c.now();
        let w0 = c.wall();
        assert_eq!(c.now(), t0, "frozen");
        let sleeper = tokio::spawn({
            let c = c.clone();
            async move { c.sleep_until(t0 + Duration::from_secs(5)).await }
        });
        c.advance(Duration::from_secs(2));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woken too early");
        c.advance(Duration::from_secs(3));
        sleeper.await.unwrap();
        assert_eq!(c.since(t0), Duration::from_secs(5));
        assert_eq!(c.wall().duration_since(w0).unwrap(), Duration::from_secs(5));
    }
}
