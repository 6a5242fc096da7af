//! The snapshot contract: the newest picture of a camera, now.
//!
//! 1. Decoder running: wait (milliseconds) until it has decoded the newest unit received.
//! 2. Connected, decoder off: a fresh decoder replays the GOP cache up to the newest unit.
//! 3. Not connected: connect, wait for the first keyframe, decode it.
//!
//! `keyframe` asks for less: the newest picture at least as new as the GOP
//! cache's keyframe, decoded from that keyframe alone (one unit, not a replay)
//! when none exists, under a keyframes lease that keeps decoding each new
//! keyframe (and nothing else) for `decode_linger`: a dashboard tile's picture.
//!
//! All three take a decoding lease, so a burst of snapshots keeps one decoder
//! warm for `decode_linger`. `max_age` and `cached` accept an older picture
//! that already exists; `cached` also takes that lease for the request, so a
//! dashboard polling it keeps the decoder (and so its picture) fresh, and with
//! no picture made yet it takes the fresh path. Every answer carries the
//! picture's true age.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::camera::demand::Tier;
use crate::camera::{Camera, State, VariantFrame};
use crate::encode::{fit_size, jpeg_size};
use crate::error::Error;
use crate::media::Frame;

/// What the client asked for.
#[derive(Debug, Clone, Default)]
pub struct SnapshotRequest {
    pub quality: Option<u8>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Accept an existing picture up to this old, with no further work.
    pub max_age: Option<Duration>,
    /// Never wait: the newest picture already made (a fresh one if none yet);
    /// each request keeps the decoder running for `decode_linger`.
    pub cached: bool,
    /// The current GOP's keyframe picture (or a newer one already decoded);
    /// each request keeps keyframe-only decoding running for `decode_linger`.
    pub keyframe: bool,
}

/// How the picture was obtained (`X-Snapshot-Source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotSource {
    /// A picture that already existed (within `max_age`, or `cached`).
    Cache,
    /// The running decoder's newest picture.
    Warm,
    /// A fresh decoder replayed the GOP cache.
    Gop,
    /// Connected on request and waited for a keyframe.
    Cold,
    /// The GOP cache's keyframe, decoded alone (`keyframe`).
    Keyframe,
}

impl SnapshotSource {
    pub const ALL: [SnapshotSource; 5] = [
        SnapshotSource::Cache,
        SnapshotSource::Warm,
        SnapshotSource::Gop,
        SnapshotSource::Cold,
        SnapshotSource::Keyframe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotSource::Cache => "cache",
            SnapshotSource::Warm => "warm",
            SnapshotSource::Gop => "gop",
            SnapshotSource::Cold => "cold",
            SnapshotSource::Keyframe => "keyframe",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub jpeg: Bytes,
    pub frame_id: u64,
    pub captured: SystemTime,
    pub captured_mono: Instant,
    pub width: u32,
    pub height: u32,
    pub source: SnapshotSource,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SnapshotError {
    /// The camera cannot give a fresh picture now (failed, retrying later).
    #[error("camera is offline: {reason}")]
    Offline { reason: String, retry_after: Option<Duration> },
    /// `cached`/`max_age` asked for an existing picture and there is none young enough.
    #[error("{0}")]
    NoPicture(String),
    /// Nothing decodable arrived within the snapshot timeout.
    #[error("no picture within {0:.1} s")]
    Timeout(f64),
    #[error("{0}")]
    Encode(Error),
}

/// Takes a snapshot of `cam` as `req` asks.
pub async fn take(cam: &Camera, req: &SnapshotRequest) -> Result<Snapshot, SnapshotError> {
    if cam.passes_jpeg_through() && req.quality.is_none() && req.width.is_none() && req.height.is_none() {
        return take_passthrough(cam, req).await;
    }
    let quality = req.quality.unwrap_or(cam.config().options.jpeg_quality);
    if req.keyframe {
        return take_keyframe(cam, req, quality).await;
    }
    if req.cached || req.max_age.is_some() {
        // `cached` polls keep a cheap refresh going: the decoding lease held for
        // this request keeps the decoder running through `decode_linger`, so the
        // next poll finds a newer picture without waiting for one.
        let now = cam.clock().now();
        if let Some(f) = cam.latest_frame().filter(|f| req.max_age.is_none_or(|m| f.age(now) <= m)) {
            let _refresh = req.cached.then(|| cam.lease(Tier::Decoding));
            return encode(cam, f, quality, req, SnapshotSource::Cache).await;
        }
        // A decoder stopped since: the picture's pixels were released, but the
        // newest JPEG made at this quality and size may still be kept.
        if let Some(info) = cam.latest_info() {
            let (width, height) = fit_size((info.width, info.height), req.width, req.height);
            if let Some((key, (captured, captured_mono), jpeg)) = cam.jpegs().newest_made(quality, (width, height))
                && req.max_age.is_none_or(|m| now.saturating_duration_since(captured_mono) <= m)
            {
                let _refresh = req.cached.then(|| cam.lease(Tier::Decoding));
                let (frame_id, source) = (key.frame_id, SnapshotSource::Cache);
                return Ok(Snapshot { jpeg, frame_id, captured, captured_mono, width, height, source });
            }
        }
        if req.cached
            && let Some(f) = cam.latest_info()
            && req.max_age.is_some_and(|m| f.age(now) > m)
        {
            let why = format!("the newest picture is {} ms old, older than max_age_ms", f.age(now).as_millis());
            return Err(SnapshotError::NoPicture(why));
        }
        // `cached` with no picture made yet: make a fresh one, as without `cached`.
    }

    let status = cam.status();
    if status.state.is_failed() {
        return Err(offline(&status, cam.clock().now()));
    }
    let source = match (status.state, status.decoder_running) {
        (State::Streaming, true) => SnapshotSource::Warm,
        (State::Streaming, false) => SnapshotSource::Gop,
        _ => SnapshotSource::Cold,
    };
    let mut status_rx = cam.subscribe_status();
    let mut progress_rx = cam.subscribe_progress();
    let _lease = cam.lease(Tier::Decoding);
    let timeout = cam.config().options.snapshot_timeout.0;
    let deadline = cam.clock().now() + timeout;
    let mut target: Option<u64> = None;
    loop {
        status_rx.borrow_and_update();
        let status = cam.status();
        if status.state.is_failed() {
            return Err(offline(&status, cam.clock().now()));
        }
        if status.state == State::Streaming
            && target.is_none()
            && status.decodable_seq >= status.session_first_seq.max(1)
        {
            // The newest unit a decoder will reach: what we must show (or newer).
            target = Some(status.decodable_seq);
        }
        if let Some(t) = target {
            let p = progress_rx.borrow_and_update().clone();
            // A frame of this connection, past the cold-start guard.
            let o = &cam.config().options;
            let first_ok = status.session_first_seq + u64::from(o.warmup_frames);
            let ok_after = status.connected_at.map(|c| c + o.warmup.0);
            if p.processed_seq >= t
                && let Some(f) =
                    p.frame.filter(|f| f.frame_id >= first_ok && ok_after.is_none_or(|a| f.captured_mono >= a))
            {
                return encode(cam, f, quality, req, source).await;
            }
        }
        tokio::select! {
            _ = status_rx.changed() => {}
            _ = progress_rx.changed() => {}
            _ = cam.clock().sleep_until(deadline) => {
                return Err(SnapshotError::Timeout(timeout.as_secs_f64()));
            }
        }
    }
}

/// The picture of the GOP cache's keyframe, or a newer one already decoded: at
/// most one unit decoded per GOP, however many clients poll.
async fn take_keyframe(cam: &Camera, req: &SnapshotRequest, quality: u8) -> Result<Snapshot, SnapshotError> {
    let status = cam.status();
    if status.state.is_failed() {
        return Err(offline(&status, cam.clock().now()));
    }
    let mut status_rx = cam.subscribe_status();
    let mut progress_rx = cam.subscribe_progress();
    // The picture there before the lease: only that one is an existing answer
    // (the lease may have a picture decoded before the loop first looks).
    let existing = progress_rx.borrow().frame.as_ref().map(|f| f.frame_id);
    // Held for the request; its linger keeps the decoder decoding each new
    // keyframe (only), so the next poll finds the next GOP's picture made.
    let _lease = cam.lease(Tier::Keyframes);
    let timeout = cam.config().options.snapshot_timeout.0;
    let deadline = cam.clock().now() + timeout;
    // What the answer cost, if it is not an existing picture.
    let source = match (status.state, status.decoder_running) {
        (State::Streaming, true) => SnapshotSource::Warm,
        (State::Streaming, false) => SnapshotSource::Keyframe,
        _ => SnapshotSource::Cold,
    };
    let mut waited = false;
    loop {
        status_rx.borrow_and_update();
        let st = cam.status();
        if st.state.is_failed() {
            return Err(offline(&st, cam.clock().now()));
        }
        let p = progress_rx.borrow_and_update().clone();
        if st.state == State::Streaming && st.keyframe_seq >= st.session_first_seq.max(1) {
            // At least as new as this connection's newest kept keyframe, past the cold-start guard.
            let o = &cam.config().options;
            let first_ok = st.keyframe_seq.max(st.session_first_seq + u64::from(o.warmup_frames));
            let ok_after = st.connected_at.map(|c| c + o.warmup.0);
            if let Some(f) = p.frame.filter(|f| f.frame_id >= first_ok && ok_after.is_none_or(|a| f.captured_mono >= a))
            {
                let source = if !waited && existing == Some(f.frame_id) { SnapshotSource::Cache } else { source };
                return encode(cam, f, quality, req, source).await;
            }
        }
        waited = true;
        tokio::select! {
            _ = status_rx.changed() => {}
            _ = progress_rx.changed() => {}
            _ = cam.clock().sleep_until(deadline) => {
                return Err(SnapshotError::Timeout(timeout.as_secs_f64()));
            }
        }
    }
}

/// A JPEG camera's own newest frame, untouched: no decode, no encode.
async fn take_passthrough(cam: &Camera, req: &SnapshotRequest) -> Result<Snapshot, SnapshotError> {
    let as_snapshot = |f: &VariantFrame, source| {
        let (width, height) = jpeg_size(&f.jpeg).unwrap_or((0, 0));
        Snapshot {
            jpeg: f.jpeg.clone(),
            frame_id: f.frame_id,
            captured: f.captured,
            captured_mono: f.captured_mono,
            width,
            height,
            source,
        }
    };
    if req.cached || req.max_age.is_some() {
        let now = cam.clock().now();
        let young =
            |f: &Arc<VariantFrame>| req.max_age.is_none_or(|m| now.saturating_duration_since(f.captured_mono) <= m);
        // As above: a `cached` poll holds the connection for its linger, so the
        // camera's own JPEGs keep coming between polls.
        if let Some(f) = cam.latest_passthrough().filter(young) {
            let _refresh = req.cached.then(|| cam.lease_passthrough());
            return Ok(as_snapshot(&f, SnapshotSource::Cache));
        }
        if req.cached && cam.latest_passthrough().is_some() {
            return Err(SnapshotError::NoPicture("no picture young enough for max_age_ms".into()));
        }
    }
    let status = cam.status();
    if status.state.is_failed() {
        return Err(offline(&status, cam.clock().now()));
    }
    let (source, want) = match status.state {
        State::Streaming => (SnapshotSource::Warm, status.newest_seq),
        _ => (SnapshotSource::Cold, 0),
    };
    let mut status_rx = cam.subscribe_status();
    let (_lease, mut frames) = cam.lease_passthrough();
    let timeout = cam.config().options.snapshot_timeout.0;
    let deadline = cam.clock().now() + timeout;
    loop {
        status_rx.borrow_and_update();
        let st = cam.status();
        if st.state.is_failed() {
            return Err(offline(&st, cam.clock().now()));
        }
        let first_ok = st.session_first_seq.max(1) + u64::from(cam.config().options.warmup_frames);
        let newest = frames.borrow_and_update().clone();
        if st.state == State::Streaming
            && let Some(f) = newest.filter(|f| f.frame_id >= want.max(first_ok))
        {
            return Ok(as_snapshot(&f, source));
        }
        tokio::select! {
            _ = status_rx.changed() => {}
            _ = frames.changed() => {}
            _ = cam.clock().sleep_until(deadline) => return Err(SnapshotError::Timeout(timeout.as_secs_f64())),
        }
    }
}

/// Why `status` gives no fresh picture now, and when to ask again.
pub fn offline(status: &crate::camera::Status, now: Instant) -> SnapshotError {
    let reason =
        status.last_error.as_ref().map_or_else(|| format!("{:?}", status.state).to_lowercase(), |e| e.to_string());
    let retry_after = status.retry_at.map(|t| t.saturating_duration_since(now));
    SnapshotError::Offline { reason, retry_after }
}

async fn encode(
    cam: &Camera,
    frame: Arc<Frame>,
    quality: u8,
    req: &SnapshotRequest,
    source: SnapshotSource,
) -> Result<Snapshot, SnapshotError> {
    let size = fit_size((frame.width(), frame.height()), req.width, req.height);
    let (jpeg, _hit) =
        cam.jpegs().get(frame.clone(), quality, size, cam.counters()).await.map_err(SnapshotError::Encode)?;
    Ok(Snapshot {
        jpeg,
        frame_id: frame.frame_id,
        captured: frame.captured,
        captured_mono: frame.captured_mono,
        width: size.0,
        height: size.1,
        source,
    })
}

#[cfg(test)]
mod tests;
