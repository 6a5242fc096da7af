//! Publishing the actor's state: the status watch every reader sees, and one
//! log line per change (a failure that repeats is counted, not logged again:
//! `telemetry::repeats`).

use tracing::{debug, warn};

use super::super::State;
use super::Actor;
use crate::telemetry::repeats::{REPEAT_WINDOW, Say};
use crate::telemetry::stats::Counters;

impl Actor {
    /// Publishes the machine's state, logging each change once.
    pub(super) fn publish_state(&mut self) {
        let state = self.rec.state();
        let running = self.decoder.is_running();
        if (state, running) == self.shown {
            return;
        }
        self.shown = (state, running);
        if let (true, Some(e)) = (state.is_failed(), self.rec.last_error()) {
            let now = self.shared.clock.now();
            let wait = self.rec.retry_at().map_or(0.0, |t| t.saturating_duration_since(now).as_secs_f64());
            match self.repeats.failed(&e.to_string(), now) {
                Say::First { earlier: 0 } => warn!("{e}; retrying in {wait:.1} s"),
                Say::First { earlier } => {
                    warn!("{e}; retrying in {wait:.1} s (the previous failure repeated {earlier} more time(s))")
                }
                Say::Again { times } => warn!(
                    "{e}; retrying in {wait:.1} s (repeated {times} time(s) in the last {} min)",
                    REPEAT_WINDOW.as_secs() / 60
                ),
                Say::Quiet => debug!("{e}; retrying in {wait:.1} s"),
            }
            if state != State::Stopped {
                Counters::add(&self.shared.counters.reconnects, 1);
            }
        }
        let history: Vec<_> = self.rec.history().cloned().collect();
        let (error, retry_at, attempts) = (self.rec.last_error().cloned(), self.rec.retry_at(), self.rec.attempts());
        let now = self.shared.clock.wall();
        self.shared.update_status(|s| {
            s.set_state(state, now);
            s.decoder_running = running;
            s.retry_at = retry_at;
            s.attempts = attempts;
            s.history = history;
            if error.is_some() {
                s.last_error = error;
            }
            if state != State::Streaming {
                s.gop_units = 0;
                s.gop_bytes = 0;
            }
        });
    }
}
