//! Log lines for a camera's failures without a retry storm: the first failure
//! of a kind is logged, its repeats are counted and summed up in one line at
//! most every `REPEAT_WINDOW`, and the next change (a different failure, or
//! the camera connecting) says how many were left unsaid.

use std::time::{Duration, Instant};

/// How long repeats of one failure stay quiet before a line sums them up.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(300);

/// What to log for a failure, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Say {
    /// A new failure (`earlier` repeats of the previous one went unsaid).
    First { earlier: u32 },
    /// The same failure again after a quiet window: `times` repeats since the last line.
    Again { times: u32 },
    /// Nothing: counted.
    Quiet,
}

/// One camera's failure lines.
#[derive(Debug, Default)]
pub struct Repeats {
    last: Option<String>,
    unsaid: u32,
    said_at: Option<Instant>,
}

impl Repeats {
    /// A failure with this message, at `now`.
    pub fn failed(&mut self, message: &str, now: Instant) -> Say {
        if self.last.as_deref() != Some(message) {
            let earlier = std::mem::take(&mut self.unsaid);
            self.last = Some(message.to_owned());
            self.said_at = Some(now);
            return Say::First { earlier };
        }
        self.unsaid += 1;
        match self.said_at {
            Some(t) if now.saturating_duration_since(t) < REPEAT_WINDOW => Say::Quiet,
            _ => {
                self.said_at = Some(now);
                Say::Again { times: std::mem::take(&mut self.unsaid) }
            }
        }
    }

    /// The camera works again: the repeats left unsaid (the next failure is new).
    pub fn recovered(&mut self) -> u32 {
        self.last = None;
        self.said_at = None;
        std::mem::take(&mut self.unsaid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_of_one_failure_is_one_line_then_a_sum_per_window() {
        let t0 = crate::clock::Clock::stepped().now();
        let mut r = Repeats::default();
        assert_eq!(r.failed("refused", t0), Say::First { earlier: 0 });
        let mut said = 0;
        for i in 1..=600 {
            // A retry every second for ten minutes.
            match r.failed("refused", t0 + Duration::from_secs(i)) {
                Say::Quiet => {}
                Say::Again { times } => {
                    said += 1;
                    assert_eq!(times, 300, "the repeats since the last line, at {i} s");
                }
                s => panic!("{s:?}"),
            }
        }
        assert_eq!(said, 2, "one sum per five minutes");
    }

    #[test]
    fn a_new_failure_or_recovery_says_what_went_unsaid() {
        let t0 = crate::clock::Clock::stepped().now();
        let mut r = Repeats::default();
        r.failed("refused", t0);
        r.failed("refused", t0 + Duration::from_secs(1));
        r.failed("refused", t0 + Duration::from_secs(2));
        assert_eq!(r.failed("401", t0 + Duration::from_secs(3)), Say::First { earlier: 2 });
        r.failed("401", t0 + Duration::from_secs(4));
        assert_eq!(r.recovered(), 1);
        assert_eq!(
            r.failed("401", t0 + Duration::from_secs(5)),
            Say::First { earlier: 0 },
            "after a recovery it is new"
        );
    }
}
