//! `GET /api/cameras/{name}/stream.mjpeg`: a `multipart/x-mixed-replace` stream.
//! Every viewer of one (quality, size) shares one encode per frame (a variant
//! lease); each viewer always gets the newest JPEG, so a slow viewer skips frames
//! instead of queueing them and never slows the others. The lease goes when
//! the viewer does.
//!
//! Like a snapshot, a stream starts with a fresh picture: the first part is at
//! least as new as the newest unit received when the viewer came (a variant's
//! last JPEG may be from a viewer long gone), and it is awaited before the
//! answer, so an offline camera answers 503 with `Retry-After`, not 200 and silence.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;

use super::{ApiError, query, rfc3339_ms};
use crate::camera::demand::VariantKey;
use crate::camera::{Camera, Lease, State as CamState, VariantFrame, VariantRx};
use crate::config::StreamRole;
use crate::hub::Hub;
use crate::snapshot::{self, SnapshotError};

const BOUNDARY: &str = "camhubframe";

/// MJPEG (multipart/x-mixed-replace); one encode per frame per variant, newest frame to every viewer.
#[utoipa::path(
    get,
    path = super::STREAM,
    operation_id = "stream",
    tag = "pictures",
    params(super::openapi::CameraName, query::StreamParams),
    responses(
        (
            status = 200,
            description = "Parts with Content-Type, Content-Length, X-Frame-Id, X-Frame-Timestamp; \
                           the answer's X-Snapshot-Stream says which stream (main or sub) serves.",
            content_type = "multipart/x-mixed-replace",
        ),
        (status = 400, description = "Bad query, or stream=sub on a camera without one.", body = super::ErrorBody),
        (status = 404, description = "Unknown camera.", body = super::ErrorBody),
        (status = 503, description = "Camera offline (with Retry-After), or too many variants on this camera.", body = super::ErrorBody),
        (status = 504, description = "No picture within snapshot_timeout.", body = super::ErrorBody),
    ),
)]
pub async fn get(
    State(hub): State<Arc<Hub>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let q =
        query::parse(&q, super::STREAM_PARAMS).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e, Some(&name)))?;
    let pick = hub.pick(&name, q.stream, q.width, q.height).map_err(|e| ApiError::route(&e, &name))?;
    let mut role = pick.role;
    let mut opened = Viewer::open(pick.camera.clone(), &q, &name)?;
    let mut first = opened.0.first_part(opened.1).await;
    if let Some(main) = &pick.main
        && (first.is_err() || !pick.covered(q.width, q.height))
    {
        // The sub-stream's size was unknown and it turned out too small (or gave
        // nothing): the main serves.
        role = StreamRole::Main;
        opened = Viewer::open(main.clone(), &q, &name)?;
        first = opened.0.first_part(opened.1).await;
    }
    let first = first.map_err(|e| super::snapshot::error(&e, &name))?;
    let viewer = opened.0;
    let rest = futures::stream::unfold(viewer, |mut v| async move {
        let part = v.next_part().await?;
        Some((part, v))
    });
    let parts = futures::stream::once(async move { first })
        .chain(rest)
        .flat_map(|chunks| futures::stream::iter(chunks.into_iter().map(Ok::<_, Infallible>)));
    let mut r = Response::new(Body::from_stream(parts));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("multipart/x-mixed-replace; boundary=camhubframe"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    h.insert("x-snapshot-stream", HeaderValue::from_static(role.as_str()));
    Ok(r.into_response())
}

struct Viewer {
    cam: Arc<Camera>,
    _lease: Lease,
    rx: VariantRx,
    interval: Option<Duration>,
    next: Instant,
    last: u64,
}

impl Viewer {
    /// A viewer of `cam` with its lease: a JPEG variant of the query's quality and
    /// size, or the camera's own JPEGs if it sends them and nothing else is asked.
    /// Also says whether it passes the camera's JPEGs through.
    fn open(cam: Arc<Camera>, q: &query::PictureQuery, name: &str) -> Result<(Viewer, bool), ApiError> {
        let key = VariantKey {
            quality: q.quality.unwrap_or(cam.config().options.jpeg_quality),
            width: q.width,
            height: q.height,
        };
        let passthrough = cam.passes_jpeg_through() && q.quality.is_none() && q.width.is_none() && q.height.is_none();
        let (lease, rx) = if passthrough {
            // The camera's own JPEGs, untouched: no decoder, no encoder.
            cam.lease_passthrough()
        } else {
            cam.lease_variant(key)
                .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), Some(name)))?
        };
        let interval = q.fps.map(|f| Duration::from_secs_f64(1.0 / f));
        let next = cam.clock().now();
        Ok((Viewer { cam, _lease: lease, rx, interval, next, last: 0 }, passthrough))
    }

    /// The first part: a JPEG of the newest unit received when the viewer came (of
    /// the first one decodable, if not streaming yet), within `snapshot_timeout`.
    async fn first_part(&mut self, passthrough: bool) -> Result<[Bytes; 3], SnapshotError> {
        let cam = self.cam.clone();
        let timeout = cam.config().options.snapshot_timeout.0;
        let deadline = cam.clock().now() + timeout;
        let mut status_rx = cam.subscribe_status();
        let mut from: Option<u64> = None;
        let gone = || SnapshotError::Offline { reason: "camera removed".into(), retry_after: None };
        loop {
            status_rx.borrow_and_update();
            let st = cam.status();
            if st.state.is_failed() {
                return Err(snapshot::offline(&st, cam.clock().now()));
            }
            // A JPEG camera's frames are its units; a variant's come from decoded units.
            let newest = if passthrough { st.newest_seq } else { st.decodable_seq };
            if from.is_none() && st.state == CamState::Streaming && newest >= st.session_first_seq.max(1) {
                from = Some(newest);
            }
            let frame = self.rx.borrow_and_update().clone();
            if let Some(f) = frame.filter(|f| from.is_some_and(|from| f.frame_id >= from)) {
                self.next = cam.clock().now() + self.interval.unwrap_or_default();
                return Ok(self.part(&f));
            }
            tokio::select! {
                r = status_rx.changed() => if r.is_err() { return Err(gone()) },
                r = self.rx.changed() => if r.is_err() { return Err(gone()) },
                _ = cam.clock().sleep_until(deadline) => return Err(SnapshotError::Timeout(timeout.as_secs_f64())),
            }
        }
    }

    fn part(&mut self, f: &VariantFrame) -> [Bytes; 3] {
        self.last = f.frame_id;
        let head = format!(
            "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Frame-Id: {}\r\nX-Frame-Timestamp: {}\r\n\r\n",
            f.jpeg.len(),
            f.frame_id,
            rfc3339_ms(f.captured)
        );
        [Bytes::from(head), f.jpeg.clone(), Bytes::from_static(b"\r\n")]
    }

    /// The next part: the newest JPEG newer than the last one sent (paced to
    /// `fps` if asked). None when the camera is removed.
    async fn next_part(&mut self) -> Option<[Bytes; 3]> {
        let mut status = self.cam.subscribe_status();
        let stop = self.cam.stop_token().clone();
        loop {
            if stop.is_cancelled() || self.cam.status().state == CamState::Stopped {
                return None;
            }
            let newest = self.rx.borrow_and_update().clone();
            if let Some(f) = newest.filter(|f| f.frame_id > self.last) {
                if let Some(iv) = self.interval {
                    let now = self.cam.clock().now();
                    if now < self.next {
                        tokio::select! {
                            _ = self.cam.clock().sleep_until(self.next) => continue,
                            _ = stop.cancelled() => return None,
                        }
                    }
                    self.next = self.next.max(now - iv) + iv;
                }
                return Some(self.part(&f));
            }
            tokio::select! {
                r = self.rx.changed() => if r.is_err() { return None },
                r = status.changed() => if r.is_err() { return None },
                // The camera is stopping (removed, replaced, the hub draining): the stream ends now.
                _ = stop.cancelled() => return None,
            }
        }
    }
}
