//! `GET /api/cameras/{name}/snapshot.jpg`: the snapshot contract over HTTP.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, rfc3339_ms};
use crate::hub::Hub;
use crate::snapshot::{self, SnapshotError, SnapshotRequest};

/// Largest width or height a client may ask for.
const MAX_SIDE: u32 = 8192;

pub async fn get(
    State(hub): State<Arc<Hub>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let cam = hub
        .get(&name)
        .ok_or_else(|| ApiError::unknown_camera(&name))?;
    let req =
        parse_query(&q).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e, Some(&name)))?;
    let shot = snapshot::take(&cam, &req).await.map_err(|e| {
        let status = match &e {
            SnapshotError::Offline { .. } | SnapshotError::NoPicture(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            SnapshotError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            SnapshotError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut err = ApiError::new(status, e.to_string(), Some(&name));
        if let SnapshotError::Offline { retry_after, .. } = &e {
            err.retry_after =
                Some(retry_after.map_or(1, |d| d.as_secs_f64().ceil().max(1.0) as u64));
        }
        err
    })?;
    let age = Instant::now().saturating_duration_since(shot.captured_mono);
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-id", HeaderValue::from(shot.frame_id));
    if let Ok(v) = HeaderValue::from_str(&rfc3339_ms(shot.captured)) {
        h.insert("x-frame-timestamp", v);
    }
    h.insert("x-frame-age-ms", HeaderValue::from(age.as_millis() as u64));
    h.insert(
        "x-snapshot-source",
        HeaderValue::from_static(shot.source.as_str()),
    );
    Ok((h, shot.jpeg).into_response())
}

fn parse_query(q: &HashMap<String, String>) -> Result<SnapshotRequest, String> {
    let mut req = SnapshotRequest::default();
    for (k, v) in q {
        let num = |lo: u64, hi: u64| -> Result<u64, String> {
            v.parse::<u64>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| format!("{k} must be a whole number from {lo} to {hi}, not {v:?}"))
        };
        match k.as_str() {
            "quality" => req.quality = Some(num(1, 100)? as u8),
            "width" => req.width = Some(num(1, MAX_SIDE as u64)? as u32),
            "height" => req.height = Some(num(1, MAX_SIDE as u64)? as u32),
            "max_age_ms" => req.max_age = Some(Duration::from_millis(num(0, 86_400_000)?)),
            "cached" => {
                req.cached = match v.as_str() {
                    "" | "1" | "true" | "yes" => true,
                    "0" | "false" | "no" => false,
                    _ => return Err(format!("cached must be true or false, not {v:?}")),
                }
            }
            _ => {
                return Err(format!(
                    "unknown query parameter {k:?} (known: quality, width, height, max_age_ms, cached)"
                ));
            }
        }
    }
    Ok(req)
}
