//! The camera's actor: one task per camera. It connects while the connection
//! is wanted, feeds every unit to the GOP cache and (while one runs) the
//! decoder, starts and stops the decoder as demand says, reconnects with
//! backoff, and treats silence (`stall_timeout`) and end of stream as a
//! disconnect. Nothing else touches the GOP cache or the decoder, so starting a
//! decoder from the cache and then feeding it live units leaves no gap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::time::sleep_until;
use tracing::{Instrument, debug, info, warn};

use super::backoff::Backoff;
use super::{Shared, State};
use crate::decode::{Decoder, SendError};
use crate::demand::Tier;
use crate::error::{Error, ErrorKind};
use crate::gop::GopCache;
use crate::secret::scrub;
use crate::source::{Codec, EncodedUnit, Source};
use crate::stats::Counters;

/// A connection that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

pub(super) async fn run(shared: Arc<Shared>, source: Arc<dyn Source>) {
    let span = tracing::info_span!("camera", camera = %shared.config.name);
    Actor::new(shared, source).run().instrument(span).await
}

struct Actor {
    shared: Arc<Shared>,
    source: Arc<dyn Source>,
    gop: GopCache,
    decoder: Option<Decoder>,
    /// False while a decoder that started from a truncated GOP waits for a keyframe.
    decoder_synced: bool,
    codec: Option<Codec>,
    seq: u64,
    backoff: Backoff,
    stop: tokio::sync::watch::Receiver<bool>,
}

enum Ended {
    /// Nobody wants the connection any more.
    Unwanted,
    Stopped,
    Failed(Error),
}

impl Actor {
    fn new(shared: Arc<Shared>, source: Arc<dyn Source>) -> Self {
        let seed = shared
            .config
            .name
            .bytes()
            .fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            })
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
        let limit = shared.config.options.gop_cache_bytes.0 as usize;
        let stop = shared.stop.subscribe();
        Actor {
            shared,
            source,
            gop: GopCache::new(limit),
            decoder: None,
            decoder_synced: false,
            codec: None,
            seq: 0,
            backoff: Backoff::new(seed),
            stop,
        }
    }

    fn wanted(&self, tier: Tier) -> bool {
        self.shared
            .demand
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wanted(tier, Instant::now())
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.shared
            .demand
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_deadline(Instant::now())
    }

    async fn run(mut self) {
        loop {
            if *self.stop.borrow() {
                break;
            }
            if !self.wanted(Tier::Connected) {
                self.shared.update_status(|s| s.set_state(State::Idle));
                tokio::select! {
                    _ = self.shared.wake.notified() => {}
                    _ = self.stop.changed() => {}
                }
                continue;
            }
            let connected_at = Instant::now();
            match self.session().await {
                Ended::Stopped => break,
                Ended::Unwanted => {
                    info!("disconnected: nobody needs the camera");
                }
                Ended::Failed(err) => {
                    if connected_at.elapsed() >= STABLE_AFTER {
                        self.backoff.reset();
                    }
                    let delay = self.backoff.next_delay(err.kind.is_persistent());
                    let retry_at = Instant::now() + delay;
                    let state = match err.kind {
                        ErrorKind::Auth => State::AuthFailed,
                        ErrorKind::NotFound => State::NotFound,
                        _ => State::Backoff,
                    };
                    warn!("{err}; retrying in {:.1} s", delay.as_secs_f64());
                    Counters::add(&self.shared.counters.reconnects, 1);
                    self.shared.update_status(|s| {
                        s.set_state(state);
                        s.last_error = Some(err);
                        s.retry_at = Some(retry_at);
                    });
                    tokio::select! {
                        _ = sleep_until(retry_at.into()) => {}
                        _ = self.stop.changed() => {}
                    }
                }
            }
        }
        self.stop_decoder();
        self.shared.update_status(|s| {
            s.set_state(State::Stopped);
            s.retry_at = None;
        });
    }

    /// One connection, from connect to disconnect.
    async fn session(&mut self) -> Ended {
        self.shared.update_status(|s| {
            s.set_state(State::Connecting);
            s.retry_at = None;
        });
        let timeout = self.shared.config.options.connect_timeout.0;
        let opened = tokio::select! {
            r = tokio::time::timeout(timeout, self.source.open()) => r,
            _ = self.stop.changed() => return Ended::Stopped,
        };
        let mut stream = match opened {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Ended::Failed(self.redact(e)),
            Err(_) => {
                return Ended::Failed(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "no answer within {:.1} s of connecting",
                        timeout.as_secs_f64()
                    ),
                ));
            }
        };
        let first_seq = self.seq + 1;
        self.gop.clear();
        self.shared.update_status(|s| {
            s.set_state(State::Streaming);
            s.session += 1;
            s.session_first_seq = first_seq;
        });
        info!("connected");
        let stall = self.shared.config.options.stall_timeout.0;
        let mut stall_at = Instant::now() + stall;
        let ended = loop {
            self.reconcile_decoder();
            if !self.wanted(Tier::Connected) {
                break Ended::Unwanted;
            }
            let wake_at = self.next_deadline().map_or(stall_at, |d| d.min(stall_at));
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(unit)) => {
                        stall_at = Instant::now() + stall;
                        self.on_unit(unit);
                    }
                    Some(Err(e)) => break Ended::Failed(self.redact(e)),
                    None => break Ended::Failed(Error::new(ErrorKind::EndOfStream, "the camera closed the stream")),
                },
                _ = sleep_until(wake_at.into()) => {
                    if Instant::now() >= stall_at {
                        break Ended::Failed(Error::new(
                            ErrorKind::Timeout,
                            format!("stalled: no data for {:.1} s", stall.as_secs_f64()),
                        ));
                    }
                }
                _ = self.shared.wake.notified() => {}
                _ = self.stop.changed() => break Ended::Stopped,
            }
        };
        drop(stream);
        self.stop_decoder();
        self.gop.clear();
        self.publish_gop();
        ended
    }

    fn on_unit(&mut self, mut unit: EncodedUnit) {
        self.seq += 1;
        unit.seq = self.seq;
        let c = self.shared.counters.clone();
        Counters::add(&c.units_in, 1);
        Counters::add(&c.bytes_in, unit.data.len() as u64);
        if self.codec != Some(unit.codec) {
            // A different codec needs a different decoder.
            self.stop_decoder();
            self.gop.clear();
            self.codec = Some(unit.codec);
        }
        let unit = Arc::new(unit);
        let stored = self.gop.push(&unit);
        let mut sent = false;
        if let Some(dec) = &self.decoder {
            if !self.decoder_synced && unit.keyframe {
                self.decoder_synced = true;
            }
            if self.decoder_synced {
                match dec.send(unit.clone()) {
                    Ok(()) => sent = true,
                    Err(SendError::Full) => {
                        // The decoder fell behind: restart it from the GOP cache (next reconcile).
                        Counters::add(&c.decoder_overruns, 1);
                        debug!(
                            "decoder behind by {} units; restarting it from the GOP cache",
                            crate::decode::QUEUE_UNITS
                        );
                        self.stop_decoder();
                    }
                    Err(SendError::Gone) => self.stop_decoder(),
                }
            }
        }
        let seq = unit.seq;
        let codec = unit.codec;
        self.shared.update_status(|s| {
            s.newest_seq = seq;
            if stored || sent {
                s.decodable_seq = seq;
            }
            s.codec = Some(codec);
        });
        self.publish_gop();
    }

    /// Starts or stops the decoder to match demand.
    fn reconcile_decoder(&mut self) {
        let want = self.wanted(Tier::Decoding);
        match (want, self.decoder.is_some()) {
            (true, false) => {
                let Some(codec) = self.codec else { return };
                let replay = self.gop.units().to_vec();
                match Decoder::start(
                    &self.shared.config.name,
                    codec,
                    replay,
                    self.shared.progress.clone(),
                    self.shared.counters.clone(),
                ) {
                    Ok(d) => {
                        debug!(
                            "decoder started, replaying {} units",
                            self.gop.units().len()
                        );
                        self.decoder = Some(d);
                        self.decoder_synced = !self.gop.truncated() && !self.gop.units().is_empty();
                        self.shared.update_status(|s| s.decoder_running = true);
                    }
                    Err(e) => warn!("{e}"),
                }
            }
            (false, true) => {
                debug!("decoder stopped: linger ran out");
                self.stop_decoder();
            }
            _ => {}
        }
    }

    fn stop_decoder(&mut self) {
        if let Some(d) = self.decoder.take() {
            // The thread exits once its channel closes; joining would block this task.
            drop(d.stop());
            self.shared.update_status(|s| s.decoder_running = false);
        }
    }

    fn publish_gop(&self) {
        let (units, bytes, truncated, dropped) = (
            self.gop.units().len(),
            self.gop.bytes(),
            self.gop.truncated(),
            self.gop.dropped(),
        );
        let mut s = self.shared.status.lock().unwrap_or_else(|p| p.into_inner());
        s.gop_units = units;
        s.gop_bytes = bytes;
        s.gop_truncated = truncated;
        (s.gop_dropped_units, s.gop_dropped_bytes) = dropped;
    }

    fn redact(&self, mut e: Error) -> Error {
        e.message = scrub(&e.message, &self.shared.config.secrets());
        e
    }
}
