use super::*;
use crate::camera::demand::{Demand, Tier};
use crate::config::{Keep, Linger};

const S: Duration = Duration::from_secs(1);

/// A camera under simulated time: demand plus the machine.
struct Sim {
    t: Instant,
    demand: Demand,
    rec: Reconciler,
}

impl Sim {
    fn new(keep: Keep, decode_linger: Linger) -> Self {
        let clock = crate::clock::Clock::stepped();
        Sim {
            t: clock.now(),
            demand: Demand::new(keep, Linger::After(30 * S), decode_linger),
            rec: Reconciler::new(10 * S, 5 * S, 7, clock.stamp()),
        }
    }
    fn wants(&mut self) -> Wants {
        Wants {
            connected: self.demand.wanted(Tier::Connected, self.t),
            decoding: self.demand.wanted(Tier::Decoding, self.t),
            variants: self.demand.wanted_variants(self.t),
            deadline: self.demand.next_deadline(self.t),
        }
    }
    fn at(&mut self, d: Duration, e: Event) -> Vec<Action> {
        self.t += d;
        let w = self.wants();
        self.rec.handle(e, self.t, w)
    }
    fn tick(&mut self, d: Duration) -> Vec<Action> {
        self.at(d, Event::Tick)
    }
    fn err(kind: ErrorKind) -> Error {
        Error::new(kind, "x")
    }
}

use Action::*;

#[test]
fn prewarms_at_boot_when_kept_connected_and_decoding_forever() {
    let mut s = Sim::new(Keep::Connected, Linger::Forever);
    assert_eq!(s.tick(Duration::ZERO), vec![Connect]);
    assert_eq!(s.rec.state(), State::Connecting);
    assert_eq!(s.at(S, Event::Connected), vec![StartDecoder]);
    assert_eq!(s.rec.state(), State::Streaming);
    assert!(s.rec.decoder_running());
}

#[test]
fn on_demand_stays_idle_until_a_lease_and_disconnects_after_linger() {
    let mut s = Sim::new(Keep::OnDemand, Linger::After(Duration::ZERO));
    assert_eq!(s.tick(Duration::ZERO), vec![]);
    assert_eq!(s.rec.state(), State::Idle);
    s.demand.acquire(Tier::Connected);
    s.demand.acquire(Tier::Decoding);
    assert_eq!(s.tick(Duration::ZERO), vec![Connect]);
    assert_eq!(s.at(S, Event::Connected), vec![StartDecoder]);
    let t = s.t;
    s.demand.release(Tier::Decoding, t);
    s.demand.release(Tier::Connected, t);
    assert_eq!(s.tick(Duration::ZERO), vec![StopDecoder], "decode linger 0: at once");
    assert_eq!(
        {
            let w = s.wants();
            s.rec.next_wake(&w)
        }
        .map(|w| w - s.t),
        Some(5 * S),
        "stall watch until the connection linger ends"
    );
    // Units keep the stall watchdog quiet while the connection lingers 30 s.
    for _ in 0..29 {
        assert_eq!(s.at(S, Event::Unit), vec![], "connect linger is 30 s");
    }
    assert_eq!(s.at(S, Event::Unit), vec![Disconnect]);
    assert_eq!(s.rec.state(), State::Idle);
}

#[test]
fn decoder_stops_after_linger_and_a_new_lease_cancels_the_stop() {
    let mut s = Sim::new(Keep::Connected, Linger::After(10 * S));
    s.tick(Duration::ZERO);
    s.at(S, Event::Connected);
    s.demand.acquire(Tier::Decoding);
    assert_eq!(s.tick(Duration::ZERO), vec![StartDecoder]);
    let t = s.t;
    s.demand.release(Tier::Decoding, t);
    assert_eq!(s.at(4 * S, Event::Unit), vec![]);
    assert_eq!(s.wants().deadline, Some(t + 10 * S));
    // A new lease inside the window: no stop, ever, while it is held.
    s.demand.acquire(Tier::Decoding);
    assert_eq!(s.at(4 * S, Event::Unit), vec![]);
    assert_eq!(s.at(4 * S, Event::Unit), vec![]);
    assert!(s.rec.decoder_running());
    let t = s.t;
    s.demand.release(Tier::Decoding, t);
    assert_eq!(s.at(4 * S, Event::Unit), vec![]);
    assert_eq!(s.at(4 * S, Event::Unit), vec![]);
    assert_eq!(s.at(2 * S, Event::Unit), vec![StopDecoder], "10 s after the last lease");
}

#[test]
fn decoder_start_failure_rolls_back_and_retries_with_backoff() {
    let mut s = Sim::new(Keep::Decoded, Linger::Forever);
    s.tick(Duration::ZERO);
    assert_eq!(s.at(S, Event::Connected), vec![StartDecoder]);
    assert_eq!(s.at(Duration::ZERO, Event::DecoderLost(Some(Sim::err(ErrorKind::Internal)))), vec![]);
    assert!(!s.rec.decoder_running(), "rolled back");
    assert_eq!(s.at(Duration::from_millis(100), Event::Unit), vec![], "not hot-looped");
    let wake = {
        let w = s.wants();
        s.rec.next_wake(&w)
    }
    .unwrap();
    assert!(wake <= s.t + S, "retried within the first backoff step");
    let d = wake - s.t;
    assert_eq!(s.at(d, Event::Unit), vec![StartDecoder]);
    // A decoder dropped for falling behind restarts at once.
    assert_eq!(s.at(S, Event::DecoderLost(None)), vec![StartDecoder]);
}

#[test]
fn failed_connects_back_off_exponentially_with_jitter_from_the_first_one() {
    let mut s = Sim::new(Keep::Connected, Linger::After(10 * S));
    let mut delays = Vec::new();
    assert_eq!(s.tick(Duration::ZERO), vec![Connect]);
    for _ in 0..9 {
        assert_eq!(s.at(Duration::ZERO, Event::ConnectFailed(Sim::err(ErrorKind::Unreachable))), vec![]);
        assert_eq!(s.rec.state(), State::Backoff);
        let retry = s.rec.retry_at().unwrap() - s.t;
        assert_eq!(s.tick(retry - Duration::from_millis(1)), vec![], "no attempt before the retry time");
        assert_eq!(s.tick(Duration::from_millis(1)), vec![Connect]);
        delays.push(retry);
    }
    for (i, d) in delays.iter().enumerate() {
        let exp = (S * (1 << i.min(6))).min(60 * S);
        assert!(*d >= exp / 2 && *d <= exp, "attempt {i}: {d:?}");
    }
    assert_eq!(s.rec.attempts(), 10);
    // A connection that stays up resets the schedule.
    s.at(Duration::ZERO, Event::Connected);
    s.at(STABLE_AFTER, Event::Unit);
    s.at(Duration::ZERO, Event::StreamEnded(Sim::err(ErrorKind::EndOfStream)));
    assert!(s.rec.retry_at().unwrap() - s.t <= S);
}

#[test]
fn auth_and_not_found_are_their_own_states_and_retry_slowly() {
    let mut s = Sim::new(Keep::Connected, Linger::After(10 * S));
    s.tick(Duration::ZERO);
    s.at(Duration::ZERO, Event::ConnectFailed(Sim::err(ErrorKind::Auth)));
    assert_eq!(s.rec.state(), State::AuthFailed);
    assert!(s.rec.retry_at().unwrap() - s.t >= 30 * S);
    let retry = s.rec.retry_at().unwrap() - s.t;
    s.tick(retry);
    s.at(Duration::ZERO, Event::ConnectFailed(Sim::err(ErrorKind::NotFound)));
    assert_eq!(s.rec.state(), State::NotFound);
    assert!(s.rec.retry_at().unwrap() - s.t >= 30 * S);
}

#[test]
fn silence_past_stall_timeout_is_a_stall_and_a_reconnect() {
    let mut s = Sim::new(Keep::Decoded, Linger::Forever);
    s.tick(Duration::ZERO);
    s.at(Duration::ZERO, Event::Connected);
    s.at(S, Event::Unit);
    assert_eq!(
        {
            let w = s.wants();
            s.rec.next_wake(&w)
        },
        Some(s.t + 5 * S)
    );
    assert_eq!(s.tick(5 * S - Duration::from_millis(1)), vec![]);
    assert_eq!(s.tick(Duration::from_millis(1)), vec![StopDecoder, Disconnect]);
    assert_eq!(s.rec.state(), State::Stalled);
    assert!(s.rec.last_error().unwrap().message.contains("stalled"));
    let retry = s.rec.retry_at().unwrap() - s.t;
    assert_eq!(s.tick(retry), vec![Connect]);
    let states: Vec<State> = s.rec.history().map(|(st, _)| *st).collect();
    assert_eq!(states, [State::Idle, State::Connecting, State::Streaming, State::Stalled, State::Connecting]);
}

#[test]
fn a_connect_that_never_answers_times_out() {
    let mut s = Sim::new(Keep::Connected, Linger::After(10 * S));
    s.tick(Duration::ZERO);
    assert_eq!(s.tick(10 * S), vec![Disconnect]);
    assert_eq!(s.rec.state(), State::Backoff);
    assert_eq!(s.rec.last_error().unwrap().kind, ErrorKind::Timeout);
    // A late answer to the abandoned attempt changes nothing.
    assert_eq!(s.at(Duration::ZERO, Event::Connected), vec![]);
    assert_eq!(s.rec.state(), State::Backoff);
}

#[test]
fn end_of_stream_is_a_disconnect() {
    let mut s = Sim::new(Keep::Decoded, Linger::Forever);
    s.tick(Duration::ZERO);
    s.at(Duration::ZERO, Event::Connected);
    assert_eq!(s.at(S, Event::StreamEnded(Sim::err(ErrorKind::EndOfStream))), vec![StopDecoder]);
    assert_eq!(s.rec.state(), State::Backoff);
}

#[test]
fn variants_run_while_leased_and_linger_then_stop_before_the_decoder() {
    use crate::camera::demand::VariantKey;
    let mut s = Sim::new(Keep::Connected, Linger::After(Duration::ZERO));
    s.demand = Demand::new(Keep::Connected, Linger::After(30 * S), Linger::After(Duration::ZERO))
        .with_variant_linger(Linger::After(2 * S));
    s.tick(Duration::ZERO);
    s.at(Duration::ZERO, Event::Connected);
    let k = VariantKey { quality: 60, width: Some(320), height: None };
    s.demand.acquire_variant(k);
    assert_eq!(s.at(S, Event::Unit), vec![StartDecoder, StartVariant(k)]);
    assert_eq!(s.at(S, Event::Unit), vec![]);
    let t = s.t;
    s.demand.release_variant(k, t);
    assert_eq!(s.at(S, Event::Unit), vec![]);
    assert_eq!(s.at(S, Event::Unit), vec![StopVariant(k), StopDecoder], "variant linger 2 s");
    // A lost connection takes the variants down with the decoder; they return with it.
    s.demand.acquire_variant(k);
    assert_eq!(s.at(S, Event::Unit), vec![StartDecoder, StartVariant(k)]);
    assert_eq!(s.at(S, Event::StreamEnded(Sim::err(ErrorKind::EndOfStream))), vec![StopVariant(k), StopDecoder]);
    let retry = s.rec.retry_at().unwrap() - s.t;
    assert_eq!(s.tick(retry), vec![Connect]);
    assert_eq!(s.at(Duration::ZERO, Event::Connected), vec![StartDecoder, StartVariant(k)]);
}

#[test]
fn a_finished_replay_stays_finished_and_never_reconnects() {
    let mut s = Sim::new(Keep::Decoded, Linger::Forever);
    s.tick(Duration::ZERO);
    assert_eq!(s.at(S, Event::Connected), vec![StartDecoder]);
    assert_eq!(s.at(S, Event::Finished), vec![StopDecoder]);
    assert_eq!(s.rec.state(), State::Finished);
    assert_eq!(s.tick(3600 * S), vec![], "still wanted, but a finished file is not reopened");
    let w = s.wants();
    assert_eq!(s.rec.next_wake(&w), None);
    assert_eq!(s.rec.state(), State::Finished);
}
