//! The actor's decoder: its state, and starting, stopping and switching it
//! (full or keyframe-only decoding) without losing the place in the GOP cache.

use std::time::Instant;

use tracing::{debug, warn};

use super::Actor;
use super::conn::Gate;
use crate::camera::demand::Tier;
use crate::decode::schedule::Priority;
use crate::decode::{Decoder, HwRequest, Sched, SyncDecoder};
use crate::error::Result;

/// The decoder, as far as the actor runs one.
pub(super) enum DecoderState {
    /// Nobody wants decoded frames.
    Off,
    /// Wanted, but no unit has said which codec to decode yet: the first one starts it.
    AwaitingCodec,
    /// Started from a truncated (or empty) GOP: gets nothing until the next keyframe.
    Syncing(Decoder),
    /// Fed every unit (or every keyframe, in keyframe-only mode).
    Running(Decoder),
}

impl DecoderState {
    /// A syncing decoder starts taking units at a keyframe.
    pub(super) fn keyframe_arrived(&mut self) {
        if matches!(self, DecoderState::Syncing(_))
            && let DecoderState::Syncing(d) = std::mem::replace(self, DecoderState::Off)
        {
            *self = DecoderState::Running(d);
        }
    }

    /// A running decoder that fell behind waits for the next keyframe.
    pub(super) fn resync(&mut self) {
        if let DecoderState::Running(d) = std::mem::replace(self, DecoderState::Off) {
            *self = DecoderState::Syncing(d);
        }
    }

    pub(super) fn is_running(&self) -> bool {
        matches!(self, DecoderState::Syncing(_) | DecoderState::Running(_))
    }
}

impl Actor {
    /// When the next unit may be taken from the connection.
    pub(super) fn gate(&self) -> Gate {
        match (&self.decoder, self.lossless) {
            (_, false) | (DecoderState::AwaitingCodec, true) => Gate::Open,
            (DecoderState::Syncing(d) | DecoderState::Running(d), true) => Gate::Room(d.room()),
            (DecoderState::Off, true) => Gate::Closed,
        }
    }

    pub(super) fn start_decoder(&mut self) -> Result<()> {
        let Some(codec) = self.codec else {
            // No unit yet: the first one says which codec, and starts the decoder.
            self.decoder = DecoderState::AwaitingCodec;
            return Ok(());
        };
        self.decoder = DecoderState::Off;
        let units = self.gop.units();
        // Keyframes only: the GOP's keyframe is all the decoder needs.
        let replay = if self.keyframes_only { units[..units.len().min(1)].to_vec() } else { units.to_vec() };
        let n = replay.len();
        let max_pixels = self.shared.config.options.max_pixels;
        let hw = HwRequest {
            hwaccel: self.shared.config.options.decoder.hwaccel,
            camera: self.shared.config.name.clone(),
            state: self.shared.hw.clone(),
        };
        let ctx =
            SyncDecoder::with_hwaccel(codec, self.shared.clock.clone(), self.shared.metrics.decode(), max_pixels, hw)?;
        self.shared.progress.send_if_modified(|p| p.refused.take().is_some());
        let d = Decoder::start(
            &self.shared.config.name,
            ctx,
            replay,
            self.shared.progress.clone(),
            self.shared.counters.clone(),
            self.shared.replay.as_ref().map(|q| q.tx.clone()),
            Sched { scheduler: self.shared.scheduler.clone(), priority: self.shared.priority.clone() },
        )?;
        debug!("decoder started, replaying {n} units");
        let synced = !self.gop.truncated() && n > 0;
        self.decoder = if synced { DecoderState::Running(d) } else { DecoderState::Syncing(d) };
        Ok(())
    }

    /// Switches between full and keyframe-only decoding as demand changes; a
    /// running decoder restarts from the GOP cache, so the switch loses nothing.
    /// Whether the decoder should get keyframes alone: only they are wanted, or
    /// this GOP is shed (over budget, and no person is looking).
    fn keyframes_wanted(&self, now: Instant) -> bool {
        let d = self.shared.demand.lock();
        let by_demand = !d.wanted(Tier::Decoding, now) && d.wanted(Tier::Keyframes, now);
        by_demand || (self.gop_shed && d.priority() != Priority::Person)
    }

    /// Whether this unit is within the camera's fair share of the scheduler's
    /// budget (`GopShare`: each GOP's keyframe and the first part of the rest).
    /// When a background camera's share of this GOP is spent, its decoder gets
    /// no more until the next keyframe (no replay: nothing after is wanted).
    pub(super) fn within_share(&mut self, keyframe: bool) -> bool {
        let background = !self.lossless && self.shared.priority.get() != Priority::Person;
        let shed = if background && self.decoder.is_running() { self.shared.scheduler.shed() } else { 0.0 };
        let within = self.share.take(keyframe, shed);
        // (A keyframe is also where a switch of what is wanted needs no replay.)
        if keyframe || within == self.gop_shed {
            self.gop_shed = !within;
            self.keyframes_only = self.keyframes_wanted(self.shared.clock.now());
            let shedding = self.gop_shed && self.keyframes_only;
            self.shared.update_status(|s| s.shedding = shedding);
        }
        within
    }

    /// A decoder that fell behind waits for the next keyframe, unless a person is
    /// waiting for its picture: then it restarts from the GOP cache (a replay at
    /// the person's priority). Returns whether it did (the newest unit is in it).
    pub(super) fn catch_up_for_a_person(&mut self) -> bool {
        if !self.behind || self.shared.priority.get() != Priority::Person || !self.decoder.is_running() {
            return false;
        }
        self.behind = false;
        self.stop_decoder();
        match self.start_decoder() {
            Ok(()) => true,
            Err(e) => {
                warn!("cannot restart the decoder: {e}");
                false
            }
        }
    }

    pub(super) fn set_keyframes_only(&mut self, now: Instant) {
        if self.shared.priority.get() == Priority::Person {
            // A person is looking: this GOP is decoded in full, to its end.
            if std::mem::take(&mut self.gop_shed) {
                self.shared.update_status(|s| s.shedding = false);
            }
            self.catch_up_for_a_person();
        }
        let only = self.keyframes_wanted(now);
        if only != self.keyframes_only {
            self.keyframes_only = only;
            if self.decoder.is_running() {
                self.stop_decoder();
                if let Err(e) = self.start_decoder() {
                    warn!("cannot restart the decoder: {e}");
                }
                debug!("decoder now decodes {}", if only { "keyframes only" } else { "every frame" });
            }
        }
    }

    pub(super) fn stop_decoder(&mut self) {
        if let DecoderState::Syncing(d) | DecoderState::Running(d) =
            std::mem::replace(&mut self.decoder, DecoderState::Off)
        {
            // The thread exits once its channel closes; joining would block this task.
            drop(d.stop());
            debug!("decoder stopped");
        }
    }
}
