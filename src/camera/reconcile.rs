//! The camera's lifecycle as a pure state machine: events and `now` go in,
//! actions come out. It decides when to connect, when to give up a connection
//! (stall, timeout, nobody wants it), when to start and stop the decoder, and
//! how long to back off; the actor only carries the actions out. No I/O, no
//! clock reads: the tests below drive it with simulated time.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use super::status::State;
use crate::backoff::Backoff;
use crate::camera::demand::VariantKey;
use crate::error::{Error, ErrorKind};

/// A connection that stayed up this long resets the backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);
/// State transitions kept for the API.
pub const HISTORY: usize = 32;

/// What demand says at `now` (from `Demand`, read by the caller).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wants {
    pub connected: bool,
    pub decoding: bool,
    /// JPEG variants with leases (or lingering); they run while the decoder does.
    pub variants: Vec<VariantKey>,
    /// When a linger runs out next (the machine wants a tick then).
    pub deadline: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Time passed, or demand changed.
    Tick,
    /// The source opened.
    Connected,
    ConnectFailed(Error),
    /// Data arrived.
    Unit,
    /// The stream failed or ended.
    StreamEnded(Error),
    /// The decoder could not start, or died, or fell behind and was dropped.
    DecoderLost(Option<Error>),
    /// A replayed file ended: the camera is done for good (no reconnect).
    Finished,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open the source (the machine is now `Connecting`).
    Connect,
    /// Drop the connection or the attempt in progress.
    Disconnect,
    /// Start a decoder (replaying the GOP cache).
    StartDecoder,
    StopDecoder,
    /// Start the shared encoder of one JPEG variant.
    StartVariant(VariantKey),
    StopVariant(VariantKey),
}

#[derive(Debug, Clone, PartialEq)]
enum Conn {
    Idle,
    Connecting {
        since: Instant,
    },
    Streaming {
        since: Instant,
        last_data: Instant,
    },
    /// Waiting to retry after a failure; `state` says which kind.
    Failed {
        state: State,
        retry_at: Instant,
    },
    /// A replay reached the end of its file: nothing more is connected or decoded.
    Finished,
}

#[derive(Debug, Clone)]
pub struct Reconciler {
    conn: Conn,
    decoder: bool,
    variants: BTreeSet<VariantKey>,
    /// After a decoder failure, no new start before this.
    decoder_retry_at: Option<Instant>,
    decoder_backoff: Backoff,
    backoff: Backoff,
    connect_timeout: Duration,
    stall_timeout: Duration,
    last_error: Option<Error>,
    history: VecDeque<(State, SystemTime)>,
    attempts: u64,
    /// A moment on both clocks, to stamp history in wall-clock time from `now`.
    epoch: (Instant, SystemTime),
    /// The `now` of the event being handled.
    now: Instant,
}

impl Reconciler {
    /// `epoch` is one moment on the monotonic and the wall clock (`Clock::stamp`).
    pub fn new(connect_timeout: Duration, stall_timeout: Duration, seed: u64, epoch: (SystemTime, Instant)) -> Self {
        let (wall, now) = epoch;
        Reconciler {
            conn: Conn::Idle,
            decoder: false,
            variants: BTreeSet::new(),
            decoder_retry_at: None,
            decoder_backoff: Backoff::new(seed ^ 0x5555),
            backoff: Backoff::new(seed),
            connect_timeout,
            stall_timeout,
            last_error: None,
            history: VecDeque::from([(State::Idle, wall)]),
            attempts: 0,
            epoch: (now, wall),
            now,
        }
    }

    pub fn state(&self) -> State {
        match &self.conn {
            Conn::Idle => State::Idle,
            Conn::Connecting { .. } => State::Connecting,
            Conn::Streaming { .. } => State::Streaming,
            Conn::Failed { state, .. } => *state,
            Conn::Finished => State::Finished,
        }
    }
    pub fn decoder_running(&self) -> bool {
        self.decoder
    }
    pub fn variants(&self) -> impl Iterator<Item = &VariantKey> {
        self.variants.iter()
    }
    pub fn last_error(&self) -> Option<&Error> {
        self.last_error.as_ref()
    }
    pub fn retry_at(&self) -> Option<Instant> {
        match self.conn {
            Conn::Failed { retry_at, .. } => Some(retry_at),
            _ => None,
        }
    }
    /// Connection attempts so far.
    pub fn attempts(&self) -> u64 {
        self.attempts
    }
    /// Recent state changes, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &(State, SystemTime)> {
        self.history.iter()
    }

    /// The next moment something is due without any event (stall, timeout,
    /// retry, decoder retry, linger end).
    pub fn next_wake(&self, wants: &Wants) -> Option<Instant> {
        let conn = match self.conn {
            Conn::Idle | Conn::Finished => None,
            Conn::Connecting { since } => Some(since + self.connect_timeout),
            Conn::Streaming { last_data, .. } => Some(last_data + self.stall_timeout),
            Conn::Failed { retry_at, .. } => Some(retry_at),
        };
        [conn, self.decoder_retry_at, wants.deadline].into_iter().flatten().min()
    }

    /// Applies an event, then reconciles with demand; returns what to do, in order.
    pub fn handle(&mut self, event: Event, now: Instant, wants: Wants) -> Vec<Action> {
        self.now = now;
        let mut out = Vec::new();
        match event {
            Event::Tick => {}
            Event::Connected => {
                if matches!(self.conn, Conn::Connecting { .. }) {
                    self.set(Conn::Streaming { since: now, last_data: now });
                }
            }
            Event::ConnectFailed(e) => {
                if matches!(self.conn, Conn::Connecting { .. }) {
                    self.fail(e, now, &mut out);
                }
            }
            Event::Unit => {
                if let Conn::Streaming { last_data, .. } = &mut self.conn {
                    *last_data = now;
                }
            }
            Event::StreamEnded(e) => {
                if matches!(self.conn, Conn::Streaming { .. }) {
                    self.fail(e, now, &mut out);
                }
            }
            Event::Finished => {
                if matches!(self.conn, Conn::Streaming { .. }) {
                    self.stop_decoder(&mut out);
                    self.set(Conn::Finished);
                }
            }
            Event::DecoderLost(e) => {
                self.decoder = false;
                if let Some(e) = e {
                    // A decoder that cannot start is retried with backoff, never hot-looped.
                    let d = self.decoder_backoff.next_delay(false);
                    self.decoder_retry_at = Some(now + d);
                    self.last_error = Some(e);
                }
            }
        }
        self.reconcile(now, wants, &mut out);
        out
    }

    fn reconcile(&mut self, now: Instant, wants: Wants, out: &mut Vec<Action>) {
        match self.conn.clone() {
            Conn::Finished => {}
            Conn::Idle | Conn::Failed { .. } if !wants.connected => {
                if self.conn != Conn::Idle {
                    self.set(Conn::Idle);
                }
            }
            Conn::Idle => self.connect(now, out),
            Conn::Failed { retry_at, .. } => {
                if now >= retry_at {
                    self.connect(now, out);
                }
            }
            Conn::Connecting { since } => {
                if !wants.connected {
                    out.push(Action::Disconnect);
                    self.set(Conn::Idle);
                } else if now >= since + self.connect_timeout {
                    out.push(Action::Disconnect);
                    let secs = self.connect_timeout.as_secs_f64();
                    let e = Error::new(ErrorKind::Timeout, format!("no answer within {secs:.1} s of connecting"));
                    self.fail(e, now, out);
                }
            }
            Conn::Streaming { last_data, .. } => {
                if !wants.connected {
                    self.stop_decoder(out);
                    out.push(Action::Disconnect);
                    self.set(Conn::Idle);
                } else if now >= last_data + self.stall_timeout {
                    self.stop_decoder(out);
                    out.push(Action::Disconnect);
                    let secs = self.stall_timeout.as_secs_f64();
                    let e = Error::new(ErrorKind::Timeout, format!("stalled: no data for {secs:.1} s"));
                    self.fail(e, now, out);
                }
            }
        }
        let streaming = matches!(self.conn, Conn::Streaming { .. });
        let decode = streaming && wants.decoding;
        // Variants consume the decoder's frames: stop the unwanted ones first.
        let want_variants: BTreeSet<VariantKey> =
            if decode { wants.variants.iter().copied().collect() } else { BTreeSet::new() };
        for k in self.variants.difference(&want_variants).copied().collect::<Vec<_>>() {
            self.variants.remove(&k);
            out.push(Action::StopVariant(k));
        }
        if decode && !self.decoder && self.decoder_retry_at.is_none_or(|t| now >= t) {
            self.decoder = true;
            self.decoder_retry_at = None;
            out.push(Action::StartDecoder);
        } else if self.decoder && !decode {
            self.stop_decoder(out);
        }
        if self.decoder {
            for k in want_variants.difference(&self.variants).copied().collect::<Vec<_>>() {
                self.variants.insert(k);
                out.push(Action::StartVariant(k));
            }
        }
    }

    fn connect(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.attempts += 1;
        out.push(Action::Connect);
        self.set(Conn::Connecting { since: now });
    }

    fn stop_decoder(&mut self, out: &mut Vec<Action>) {
        for k in std::mem::take(&mut self.variants) {
            out.push(Action::StopVariant(k));
        }
        if self.decoder {
            self.decoder = false;
            out.push(Action::StopDecoder);
        }
    }

    /// A failed attempt or a lost connection: decoder off, back off by kind.
    fn fail(&mut self, e: Error, now: Instant, out: &mut Vec<Action>) {
        self.stop_decoder(out);
        if let Conn::Streaming { since, .. } = self.conn
            && now.saturating_duration_since(since) >= STABLE_AFTER
        {
            self.backoff.reset();
        }
        let stalled = e.kind == ErrorKind::Timeout && matches!(self.conn, Conn::Streaming { .. });
        let state = match e.kind {
            ErrorKind::Auth => State::AuthFailed,
            ErrorKind::NotFound => State::NotFound,
            _ if stalled => State::Stalled,
            _ => State::Backoff,
        };
        let delay = self.backoff.next_delay(e.kind.is_persistent());
        self.last_error = Some(e);
        self.set(Conn::Failed { state, retry_at: now + delay });
    }

    fn set(&mut self, conn: Conn) {
        let before = self.state();
        self.conn = conn;
        let after = self.state();
        if before != after {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            let wall = self.epoch.1 + self.now.saturating_duration_since(self.epoch.0);
            self.history.push_back((after, wall));
        }
    }
}

#[cfg(test)]
mod tests;
