//! The camera's actor: one task per camera that carries out what the
//! `Reconciler` decides (connect, disconnect, start or stop the decoder) and
//! moves the data: every unit goes to the GOP cache and, while one runs, to the
//! decoder. Nothing else touches the GOP cache or the decoder, so a decoder
//! started from the cache and then fed live units sees no gap.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info};

mod conn;
mod decoder;
mod state;

use self::conn::{Conn, ConnEvent, next_conn_event};
use self::decoder::DecoderState;
use super::reconcile::{Action, Event, Reconciler, Wants};
use super::variant;
use super::{Shared, State};
use crate::camera::demand::{Tier, VariantKey};
use crate::decode::SendError;
use crate::error::{Error, ErrorKind};
use crate::media::GopCache;
use crate::media::{Codec, EncodedUnit};
use crate::secret::scrub;
use crate::source::Source;
use crate::telemetry::repeats::Repeats;
use crate::telemetry::stats::Counters;

/// Requests for a unit feed, held by one run of the actor at a time: a run that
/// panics lets go of them and the next run takes them over.
pub(super) type Feeds =
    tokio::sync::OwnedMutexGuard<tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<super::UnitFeed>>>;

/// One run of the actor, until `life` (a child of the camera's token) is cancelled.
pub(super) async fn run(shared: Arc<Shared>, source: Arc<dyn Source>, feeds: Feeds, life: CancellationToken) {
    let span = tracing::info_span!("camera", camera = %shared.config.name);
    Actor::new(shared, source, feeds, life).run().instrument(span).await
}

struct Actor {
    shared: Arc<Shared>,
    source: Arc<dyn Source>,
    rec: Reconciler,
    gop: GopCache,
    decoder: DecoderState,
    /// Only keyframes are wanted: the decoder gets keyframes alone.
    keyframes_only: bool,
    /// The rest of this GOP is not decoded: decoding is over budget, the
    /// camera's pictures are for programs or nobody, and its fair share of this
    /// GOP is spent (`GopShare`).
    gop_shed: bool,
    share: crate::decode::schedule::GopShare,
    /// The decoder's queue overflowed: units are dropped until the next keyframe.
    behind: bool,
    /// Replay: every unit reaches the decoder (the source waits for it), and
    /// the end of the file ends the camera.
    lossless: bool,
    codec: Option<Codec>,
    seq: u64,
    /// The encoder task of each running variant, with its token (a child of the camera's).
    variants: HashMap<VariantKey, CancellationToken>,
    /// Requests for a unit feed (GOP cache + live units).
    feeds: Feeds,
    /// This run's token: a child of the camera's, the parent of its variants' (a
    /// run that panics takes its variant encoders with it).
    life: CancellationToken,
    /// The state last published, to log and record changes once.
    shown: (State, bool),
    /// Failure lines without a retry storm.
    repeats: Repeats,
}

impl Actor {
    fn new(shared: Arc<Shared>, source: Arc<dyn Source>, feeds: Feeds, life: CancellationToken) -> Self {
        let o = &shared.config.options;
        let lossless = shared.replay.is_some();
        // A replay that waits for its readers is paused, not stalled.
        let stall = if lossless { FAR } else { o.stall_timeout.0 };
        let rec = Reconciler::new(o.connect_timeout.0, stall, fastrand::u64(..), shared.clock.stamp());
        let gop = GopCache::new(o.gop_cache_bytes.0 as usize);
        // A restarted run (after a panic) goes on from what the last one showed:
        // unit numbers keep rising, and its first state is published.
        let (seq, shown) = {
            let s = shared.status.borrow();
            (s.newest_seq, (s.state, s.decoder_running))
        };
        Actor {
            shared,
            source,
            rec,
            gop,
            decoder: DecoderState::Off,
            keyframes_only: false,
            gop_shed: false,
            share: Default::default(),
            behind: false,
            lossless,
            codec: None,
            seq,
            variants: HashMap::new(),
            feeds,
            life,
            shown,
            repeats: Repeats::default(),
        }
    }

    fn wants(&self, now: Instant) -> Wants {
        let mut d = self.shared.demand.lock();
        self.shared.priority.set(d.priority());
        Wants {
            connected: d.wanted(Tier::Connected, now),
            decoding: d.wanted(Tier::Decoding, now) || d.wanted(Tier::Keyframes, now),
            variants: d.wanted_variants(now),
            deadline: d.next_deadline(now),
        }
    }

    async fn run(mut self) {
        let mut conn = Conn::None;
        let mut events = VecDeque::from([Event::Tick]);
        loop {
            while let Some(event) = events.pop_front() {
                let now = self.shared.clock.now();
                let wants = self.wants(now);
                self.set_keyframes_only(now);
                for action in self.rec.handle(event, now, wants) {
                    match action {
                        Action::Connect => conn = Conn::Opening(self.source.open()),
                        Action::Disconnect => {
                            conn = Conn::None;
                            self.gop.clear();
                        }
                        Action::StartDecoder => {
                            if let Err(e) = self.start_decoder() {
                                events.push_back(Event::DecoderLost(Some(e)));
                            }
                        }
                        Action::StopDecoder => {
                            self.stop_decoder();
                            // Nobody wants pictures: the newest one's pixels go too
                            // (its JPEGs and its facts stay), so an idle camera holds
                            // no decoded picture.
                            self.shared.progress.send_if_modified(|p| p.release_picture());
                        }
                        Action::StartVariant(k) => self.start_variant(k),
                        Action::StopVariant(k) => self.stop_variant(k),
                    }
                }
                self.publish_state();
            }
            let clock = self.shared.clock.clone();
            let wake = self.rec.next_wake(&self.wants(clock.now()));
            let stop = self.life.clone();
            let gate = self.gate();
            let event = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                ev = next_conn_event(&mut conn, gate) => match ev {
                    ConnEvent::Opened(Ok(stream)) => {
                        conn = Conn::Open(stream);
                        self.on_connected();
                        Event::Connected
                    }
                    ConnEvent::Opened(Err(e)) => {
                        conn = Conn::None;
                        Event::ConnectFailed(self.redact(e))
                    }
                    ConnEvent::Item(Some(Ok(unit))) => match self.refused(&unit) {
                        Some(e) => {
                            // Refused before it is kept, passed through or decoded.
                            conn = Conn::None;
                            Event::StreamEnded(e)
                        }
                        None => {
                            if let Some(lost) = self.on_unit(unit) {
                                events.push_back(lost);
                            }
                            Event::Unit
                        }
                    },
                    ConnEvent::Item(Some(Err(e))) => {
                        conn = Conn::None;
                        Event::StreamEnded(self.redact(e))
                    }
                    ConnEvent::Item(None) if self.lossless => {
                        conn = Conn::None;
                        if let DecoderState::Syncing(d) | DecoderState::Running(d) = &self.decoder {
                            d.finish();
                        }
                        info!("replay finished: {} units", self.seq);
                        Event::Finished
                    }
                    ConnEvent::Item(None) => {
                        conn = Conn::None;
                        Event::StreamEnded(Error::new(ErrorKind::EndOfStream, "the camera closed the stream"))
                    }
                },
                _ = clock.sleep_until(wake.unwrap_or_else(|| clock.now() + FAR)) => Event::Tick,
                _ = self.shared.wake.notified() => Event::Tick,
                Some(reply) = self.feeds.recv() => {
                    // Units reach the GOP cache and the feed in this task, so the two meet with no gap.
                    let _ = reply.send(super::UnitFeed {
                        gop: self.gop.units().to_vec(),
                        live: self.shared.units.subscribe(),
                        stopped: self.shared.stop.clone(),
                    });
                    Event::Tick
                }
            };
            events.push_front(event);
        }
        drop(conn);
        for k in self.variants.keys().copied().collect::<Vec<_>>() {
            self.stop_variant(k);
        }
        if let Some(q) = &self.shared.replay {
            // Nobody took the replay's pictures: let a decoder waiting on them go.
            drop(q.rx.lock().take());
        }
        if let DecoderState::Syncing(d) | DecoderState::Running(d) =
            std::mem::replace(&mut self.decoder, DecoderState::Off)
            && let Some(thread) = d.stop()
        {
            // Shutdown and removal wait for the decoder thread to finish.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        let now = self.shared.clock.wall();
        self.shared.update_status(|s| {
            s.set_state(State::Stopped, now);
            s.retry_at = None;
            s.decoder_running = false;
        });
        info!("stopped");
    }

    fn on_connected(&mut self) {
        self.gop.clear();
        // A new connection's pictures are judged afresh.
        self.shared.progress.send_if_modified(|p| p.refused.take().is_some());
        let first = self.seq + 1;
        let now = self.shared.clock.now();
        self.shared.update_status(|s| {
            s.session += 1;
            s.session_first_seq = first;
            s.connected_at = Some(now);
        });
        match self.repeats.recovered() {
            0 => info!("connected"),
            n => info!("connected ({n} more failed attempt(s) before this were not logged)"),
        }
    }

    /// Takes one unit; returns `DecoderLost` if the decoder could not take it.
    fn on_unit(&mut self, mut unit: EncodedUnit) -> Option<Event> {
        self.seq += 1;
        unit.seq = self.seq;
        let c = self.shared.counters.clone();
        Counters::add(&c.units_in, 1);
        Counters::add(&c.bytes_in, unit.data.len() as u64);
        let mut lost = None;
        if self.codec != Some(unit.codec) {
            // A different codec needs a different decoder.
            if self.decoder.is_running() {
                self.stop_decoder();
                lost = Some(Event::DecoderLost(None));
            }
            self.gop.clear();
            self.codec = Some(unit.codec);
        }
        let unit = Arc::new(unit);
        if unit.codec == Codec::Mjpeg {
            self.shared.passthrough.send_replace(Some(Arc::new(variant::VariantFrame {
                frame_id: unit.seq,
                captured: unit.received,
                captured_mono: unit.received_mono,
                jpeg: unit.data.clone(),
            })));
        }
        if let Some(b) = self.shared.config.options.memory_budget {
            // What the camera's other holdings leave for the GOP cache.
            let other = self.shared.jpegs.bytes() + self.shared.frame_bytes();
            self.gop.set_budget_limit(Some((b.0 as usize).saturating_sub(other)));
        }
        let stored = self.gop.push(&unit);
        if self.shared.units.receiver_count() > 0 {
            let _ = self.shared.units.send(unit.clone());
        }
        let mut sent = false;
        if unit.keyframe {
            self.decoder.keyframe_arrived();
            self.behind = false;
        }
        self.within_share(unit.keyframe);
        if matches!(self.decoder, DecoderState::AwaitingCodec) {
            // The replay of the GOP cache includes this unit if it was kept.
            if let Err(e) = self.start_decoder() {
                lost = Some(Event::DecoderLost(Some(e)));
            }
            sent = stored;
        } else if let DecoderState::Running(dec) = &self.decoder
            && (unit.keyframe || !self.keyframes_only)
        {
            match dec.send(unit.clone()) {
                Ok(()) => sent = true,
                Err(SendError::Full) => {
                    // Behind: the decoder finishes its queue (or drops it as too old) and
                    // resyncs at the next keyframe. Replaying the GOP would add work
                    // exactly when there is too much; only a person waiting gets it.
                    Counters::add(&c.decoder_overruns, 1);
                    Counters::add(&c.frames_shed_behind, 1);
                    debug!("decoder behind by {} units; waiting for the next keyframe", crate::decode::QUEUE_UNITS);
                    self.behind = true;
                    self.decoder.resync();
                    sent = self.catch_up_for_a_person();
                }
                Err(SendError::Gone) => {
                    self.stop_decoder();
                    lost = Some(Event::DecoderLost(None));
                }
            }
        } else if self.decoder.is_running() && !unit.keyframe {
            if self.behind {
                Counters::add(&c.frames_shed_behind, 1);
            } else if self.gop_shed && self.keyframes_only {
                Counters::add(&c.frames_shed_overload, 1);
                self.shared.scheduler.shed_overload(1);
            }
        }
        let (seq, codec, keyframe) = (unit.seq, unit.codec, unit.keyframe && stored);
        let (units, bytes, truncated, dropped, budget_drops) = (
            self.gop.units().len(),
            self.gop.bytes(),
            self.gop.truncated(),
            self.gop.dropped(),
            self.gop.budget_drops(),
        );
        self.shared.update_status(|s| {
            s.newest_seq = seq;
            if stored || sent {
                s.decodable_seq = seq;
            }
            if keyframe {
                s.keyframe_seq = seq;
            }
            s.codec = Some(codec);
            s.gop_units = units;
            s.gop_bytes = bytes;
            s.gop_truncated = truncated;
            s.gop_budget_drops = budget_drops;
            (s.gop_dropped_units, s.gop_dropped_bytes) = dropped;
        });
        lost
    }

    fn start_variant(&mut self, key: VariantKey) {
        // The encoder runs only for a leased variant, so its channel exists (or the cap is hit).
        let Ok(tx) = self.shared.variant_sender(key) else {
            return;
        };
        // The token exists before the task: a stop sent at any moment is seen.
        let stop = self.life.child_token();
        tokio::spawn(variant::run(self.shared.clone(), key, tx, stop.clone()).in_current_span());
        if let Some(old) = self.variants.insert(key, stop) {
            old.cancel();
        }
        debug!("variant {key:?} started");
    }

    fn stop_variant(&mut self, key: VariantKey) {
        if let Some(stop) = self.variants.remove(&key) {
            stop.cancel();
            debug!("variant {key:?} stopped");
        }
        let mut v = self.shared.variants.lock();
        if v.get(&key).is_some_and(|tx| tx.receiver_count() == 0) {
            v.remove(&key);
        }
    }

    /// Why the camera's pictures are refused as too large: a JPEG from its header,
    /// H.264 and H.265 once the decoder has seen their size.
    fn refused(&self, unit: &EncodedUnit) -> Option<Error> {
        let decoder = || self.shared.progress.borrow().refused.clone();
        oversized(unit, self.shared.config.options.max_pixels).or_else(decoder)
    }

    fn redact(&self, mut e: Error) -> Error {
        e.message = scrub(&e.message, &self.shared.config.secrets());
        e
    }
}

/// Why a unit is refused for its picture size, if it is: a JPEG declares its
/// size in its frame header, so a camera that sends a 16000x16000 picture is
/// stopped before it costs a decoder 768 MB (H.264 and H.265 are bounded by the
/// decoder, which refuses them once it has parsed their size). The camera's
/// state then says why, and it backs off.
fn oversized(unit: &EncodedUnit, max_pixels: u64) -> Option<Error> {
    if unit.codec != Codec::Mjpeg {
        return None;
    }
    let (w, h) = crate::encode::jpeg_size(&unit.data)?;
    let pixels = u64::from(w) * u64::from(h);
    (pixels > max_pixels).then(|| {
        Error::new(
            ErrorKind::Unsupported,
            format!(
                "the camera sent a {w}x{h} picture ({pixels} pixels), more than max_pixels ({max_pixels}); \
                 refused before decoding (raise the camera's max_pixels to accept it)"
            ),
        )
    })
}

/// How long the actor sleeps with nothing due.
const FAR: std::time::Duration = std::time::Duration::from_secs(86_400);
