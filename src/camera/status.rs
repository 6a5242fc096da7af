//! A camera's state as the API shows it.

use std::time::{Instant, SystemTime};

use crate::error::Error;
use crate::media::Codec;

/// Where a camera is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Nothing running: nobody asked (keep: on_demand) or the linger ran out.
    Idle,
    Connecting,
    Streaming,
    /// The camera went silent for `stall_timeout`; waiting before reconnecting.
    Stalled,
    /// The last attempt failed; waiting before the next.
    Backoff,
    /// The camera rejected the credentials; retried slowly.
    AuthFailed,
    /// The camera or file has no such stream; retried slowly.
    NotFound,
    /// Removed or shutting down.
    Stopped,
    /// A replayed file (`mode: replay`) reached its end: nothing more will come.
    Finished,
}

impl State {
    /// States in which a fresh picture cannot come soon.
    pub fn is_failed(self) -> bool {
        matches!(self, State::Backoff | State::AuthFailed | State::NotFound | State::Stopped | State::Finished)
    }
}

#[derive(Debug, Clone)]
pub struct Status {
    pub state: State,
    pub since: SystemTime,
    pub last_error: Option<Error>,
    /// When the next connection attempt is due (in a failed state).
    pub retry_at: Option<Instant>,
    pub codec: Option<Codec>,
    /// Connections made so far; 0 before the first.
    pub session: u64,
    /// The first unit of the current connection (frames older than it are from an earlier one).
    pub session_first_seq: u64,
    /// The newest unit received.
    pub newest_seq: u64,
    /// The newest unit a decoder will see (running now, or started from the GOP cache).
    pub decodable_seq: u64,
    /// The keyframe that starts the GOP cache (0: none kept yet).
    pub keyframe_seq: u64,
    pub decoder_running: bool,
    /// The decoder gets keyframes only because decoding is over budget (the rest of
    /// this GOP is shed: the camera's fair share of it is spent).
    pub shedding: bool,
    /// When the current connection was made.
    pub connected_at: Option<Instant>,
    /// Connection attempts so far (of the actor's current run).
    pub attempts: u64,
    /// Times the camera's task panicked and was started again.
    pub restarts: u64,
    /// Recent state changes, oldest first.
    pub history: Vec<(State, SystemTime)>,
    pub gop_units: usize,
    pub gop_bytes: usize,
    pub gop_truncated: bool,
    pub gop_budget_drops: u64,
    pub gop_dropped_units: u64,
    pub gop_dropped_bytes: u64,
}

impl Status {
    pub fn new(now: SystemTime) -> Self {
        Status {
            state: State::Idle,
            since: now,
            last_error: None,
            retry_at: None,
            codec: None,
            session: 0,
            session_first_seq: 0,
            newest_seq: 0,
            decodable_seq: 0,
            keyframe_seq: 0,
            decoder_running: false,
            shedding: false,
            connected_at: None,
            attempts: 0,
            restarts: 0,
            history: Vec::new(),
            gop_units: 0,
            gop_bytes: 0,
            gop_truncated: false,
            gop_budget_drops: 0,
            gop_dropped_units: 0,
            gop_dropped_bytes: 0,
        }
    }

    pub fn set_state(&mut self, state: State, now: SystemTime) {
        if self.state != state {
            self.state = state;
            self.since = now;
        }
    }
}
