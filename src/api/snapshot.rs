//! `GET /api/cameras/{name}/snapshot.jpg`: the snapshot contract over HTTP.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, query, rfc3339_ms};
use crate::config::StreamRole;
use crate::hub::Hub;
use crate::snapshot::{self, SnapshotError, SnapshotRequest};

/// The newest picture, fresh by default.
#[utoipa::path(
    get,
    path = super::SNAPSHOT,
    operation_id = "snapshot",
    tag = "pictures",
    params(super::openapi::CameraName, query::SnapshotParams),
    responses(
        (
            status = 200,
            description = "A JPEG.",
            content_type = "image/jpeg",
            headers(
                (
                    "X-Frame-Id" = u64,
                    description = "Sequence number of the compressed frame the picture was decoded from \
                                   (per camera, monotonic)."
                ),
                (
                    "X-Frame-Timestamp" = inline(super::openapi::Timestamp),
                    description = "Capture time (when camhub received the frame), RFC 3339 UTC with ms."
                ),
                ("X-Frame-Age-Ms" = u64, description = "Age of the picture when sent."),
                (
                    "X-Snapshot-Source" = inline(super::openapi::SnapshotSourceName),
                    description = "How the picture was obtained."
                ),
                (
                    "X-Snapshot-Stream" = inline(super::openapi::StreamName),
                    description = "The camera stream that served it: main, or sub (streams.sub)."
                ),
                (
                    "X-Snapshot-Age-Ms" = u64,
                    description = "X-Frame-Age-Ms under the name other snapshot caches use."
                ),
                (
                    "X-Snapshot-Timestamp" = inline(super::openapi::Timestamp),
                    description = "X-Frame-Timestamp under the name other snapshot caches use."
                ),
                (
                    "X-Snapshot-Cached" = bool,
                    description = "true when the picture already existed (X-Snapshot-Source cache): nothing new \
                                   was decoded for this answer."
                ),
            ),
        ),
        (status = 400, description = "Bad query, or stream=sub on a camera without one.", body = super::ErrorBody),
        (status = 404, description = "Unknown camera.", body = super::ErrorBody),
        (
            status = 503,
            description = "Camera offline (Retry-After), or no picture young enough for cached/max_age_ms.",
            body = super::ErrorBody,
        ),
        (status = 504, description = "No picture within snapshot_timeout.", body = super::ErrorBody),
    ),
)]
pub async fn get(
    State(hub): State<Arc<Hub>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let cam = hub.get(&name).ok_or_else(|| ApiError::unknown_camera(&name))?;
    let started = cam.clock().now();
    let q =
        query::parse(&q, super::SNAPSHOT_PARAMS).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e, Some(&name)))?;
    let pick = hub.pick(&name, q.stream, q.width, q.height).map_err(|e| ApiError::route(&e, &name))?;
    let default = cam.config().options.snapshot_default.unwrap_or_else(|| hub.server().snapshot_default);
    let req = SnapshotRequest {
        quality: q.quality,
        width: q.width,
        height: q.height,
        max_age: q.max_age,
        cached: q.cached(default),
        keyframe: q.keyframe,
    };
    let (mut cam, mut role) = (pick.camera.clone(), pick.role);
    let mut shot = snapshot::take(&cam, &req).await;
    if let Some(main) = &pick.main
        && (shot.is_err() || !pick.covered(q.width, q.height))
    {
        // The sub-stream's size was unknown and it turned out too small (or gave
        // nothing): the main serves; the sub's size is known from now on.
        (cam, role) = (main.clone(), StreamRole::Main);
        shot = snapshot::take(&cam, &req).await;
    }
    let shot = shot.map_err(|e| error(&e, &name))?;
    hub.metrics().observe_snapshot(shot.source.as_str(), cam.clock().since(started));
    let age = cam.clock().since(shot.captured_mono);
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-id", HeaderValue::from(shot.frame_id));
    // The X-Snapshot-* names say the same as X-Frame-* for dashboards written
    // against other snapshot caches, so they read camhub unchanged.
    if let Ok(v) = HeaderValue::from_str(&rfc3339_ms(shot.captured)) {
        h.insert("x-frame-timestamp", v.clone());
        h.insert("x-snapshot-timestamp", v);
    }
    let age_ms = age.as_millis() as u64;
    h.insert("x-frame-age-ms", HeaderValue::from(age_ms));
    h.insert("x-snapshot-age-ms", HeaderValue::from(age_ms));
    h.insert("x-snapshot-source", HeaderValue::from_static(shot.source.as_str()));
    h.insert("x-snapshot-stream", HeaderValue::from_static(role.as_str()));
    let cached = shot.source == snapshot::SnapshotSource::Cache;
    h.insert("x-snapshot-cached", HeaderValue::from_static(if cached { "true" } else { "false" }));
    Ok((h, shot.jpeg).into_response())
}

/// A picture that could not be had: offline 503 (with `Retry-After`), none young
/// enough 503, none within the timeout 504. MJPEG's first part answers the same way.
pub(super) fn error(e: &SnapshotError, camera: &str) -> ApiError {
    let status = match e {
        SnapshotError::Offline { .. } | SnapshotError::NoPicture(_) => StatusCode::SERVICE_UNAVAILABLE,
        SnapshotError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        SnapshotError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut err = ApiError::new(status, e.to_string(), Some(camera));
    if let SnapshotError::Offline { retry_after, .. } = e {
        err.retry_after = Some(retry_after.map_or(1, |d| d.as_secs_f64().ceil().max(1.0) as u64));
    }
    err
}
