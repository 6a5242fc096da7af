//! One client's feeder: the camera's GOP cache first, paced fast (`Burst`), then
//! the live units, pushed into the client's appsrc. A client that falls behind
//! (its appsrc queue over `CLIENT_QUEUE_BYTES`, or the camera's live channel
//! overran it) loses units up to the next keyframe; nobody else notices. The
//! feeder ends, and lets go of its lease, when the client's pipeline goes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::broadcast::error::RecvError;
use tracing::debug;

use super::RtspStats;
use super::factory::CLIENT_QUEUE_BYTES;
use crate::camera::{FEED_UNITS, Lease, UnitFeed};
use crate::clock::Clock;
use crate::media::burst::Burst;

/// How often a feeder with nothing to send checks that its client is still there.
const CHECK: Duration = Duration::from_secs(1);
/// A client's pipeline that has not started by then is given up.
const START: Duration = Duration::from_secs(15);

pub struct Feeder {
    pub src: glib::WeakRef<gst_app::AppSrc>,
    pub feed: UnitFeed,
    pub burst_mbps: f64,
    pub clock: Clock,
    pub stats: Arc<RtspStats>,
    pub _lease: Lease,
}

use gstreamer::glib;

/// Why a feeder ended.
#[derive(Debug)]
enum End {
    ClientGone,
    CameraStopped,
}

impl Feeder {
    pub async fn run(mut self) {
        self.stats.clients.fetch_add(1, Ordering::Relaxed);
        self.stats.sessions.fetch_add(1, Ordering::Relaxed);
        let end = self.pump().await;
        self.stats.clients.fetch_sub(1, Ordering::Relaxed);
        if let (End::CameraStopped, Some(src)) = (&end, self.src.upgrade()) {
            let _ = src.end_of_stream();
        }
        debug!("RTSP client's feed ended: {end:?}");
    }

    /// Waits until the client's pipeline has started (its DESCRIBE prepares it):
    /// an appsrc takes no buffer before.
    async fn started(&self) -> Result<(), End> {
        let t = self.clock.now();
        loop {
            match self.src.upgrade() {
                None => return Err(End::ClientGone),
                Some(src) if src.current_state() == gst::State::Playing => return Ok(()),
                Some(_) if self.clock.since(t) > START => return Err(End::ClientGone),
                Some(_) => self.clock.sleep(Duration::from_millis(5)).await,
            }
        }
    }

    async fn pump(&mut self) -> End {
        if let Err(end) = self.started().await {
            return end;
        }
        let gop = std::mem::take(&mut self.feed.gop);
        let mut burst = Burst::new(gop, self.burst_mbps, FEED_UNITS, self.clock.now());
        let mut started = false;
        loop {
            while let Some((unit, _)) = burst.poll(self.clock.now()) {
                let Some(src) = self.src.upgrade() else { return End::ClientGone };
                if src.current_level_bytes() > CLIENT_QUEUE_BYTES {
                    // The client does not keep up: skip to the next keyframe.
                    burst.lost();
                    self.stats.units_dropped.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                let buffer = gst::Buffer::from_slice(unit.data.clone());
                match src.push_buffer(buffer) {
                    Ok(_) => started = true,
                    // Flushing: the pipeline is being torn down (or flushed):
                    // resume at a keyframe; a pipeline gone is seen below.
                    Err(gst::FlowError::Flushing) => {
                        burst.lost();
                        break;
                    }
                    Err(_) => return End::ClientGone,
                }
            }
            let due = burst.next_due();
            let wait = due.map_or(CHECK, |d| d.saturating_duration_since(self.clock.now()).min(CHECK));
            tokio::select! {
                u = self.feed.live.recv() => match u {
                    Ok(u) => burst.push(u),
                    Err(RecvError::Lagged(n)) => {
                        self.stats.units_dropped.fetch_add(n, Ordering::Relaxed);
                        burst.lost();
                    }
                    Err(RecvError::Closed) => return End::CameraStopped,
                },
                _ = self.feed.stopped.cancelled() => return End::CameraStopped,
                _ = self.clock.sleep(wait) => {
                    // A pipeline torn down (the client left) drops its appsrc, or
                    // leaves it stopped.
                    match self.src.upgrade() {
                        None => return End::ClientGone,
                        Some(src) if started && src.current_state() == gst::State::Null => return End::ClientGone,
                        Some(_) => {}
                    }
                }
            }
        }
    }
}
