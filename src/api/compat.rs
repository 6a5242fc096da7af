//! The URLs other tools already use, as thin aliases of camhub's own routes: the
//! same handlers, so the same snapshot contract, headers and errors. go2rtc's
//! `/api/frame.jpeg?src=`, `/api/stream.mjpeg?src=`, `/api/streams`; Frigate's
//! `/api/<camera>/latest.jpg?h=`. Each alias only renames its query parameters
//! into camhub's (`src` is the camera, `w`/`h` are `width`/`height`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{ApiError, mjpeg, snapshot};
use crate::hub::Hub;

/// go2rtc's names for a camera and a size, as camhub's: (theirs, ours).
const GO2RTC_RENAMES: &[(&str, &str)] = &[("w", "width"), ("h", "height")];
/// Frigate's `h` is the height; its drawing options are accepted and ignored
/// (camhub draws no detections, boxes or timestamps on pictures).
const FRIGATE_RENAMES: &[(&str, &str)] = &[("h", "height")];
pub const FRIGATE_IGNORED: &[&str] = &["bbox", "timestamp", "zones", "mask", "motion", "regions"];

/// The query parameters each alias takes: its own, then the native route's.
pub fn frame_params() -> Vec<&'static str> {
    [&["src", "name", "w", "h"][..], super::SNAPSHOT_PARAMS].concat()
}
pub fn mjpeg_params() -> Vec<&'static str> {
    [&["src", "name"][..], super::STREAM_PARAMS].concat()
}
pub fn latest_params() -> Vec<&'static str> {
    [&["h"][..], FRIGATE_IGNORED, super::SNAPSHOT_PARAMS].concat()
}
pub const STREAMS_PARAMS: &[&str] = &["src"];

/// The camera (`src`, or go2rtc's other name for it, `name`) and the rest of the
/// query in camhub's names. A parameter given under both names is refused.
fn translate(
    mut q: HashMap<String, String>,
    renames: &[(&str, &str)],
    ignored: &[&str],
) -> Result<(Option<String>, HashMap<String, String>), ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m, None);
    let src = match (q.remove("src"), q.remove("name")) {
        (Some(_), Some(_)) => return Err(bad("give the camera once: src or name".into())),
        (s, n) => s.or(n),
    };
    for (theirs, ours) in renames {
        if let Some(v) = q.remove(*theirs) {
            if q.contains_key(*ours) {
                return Err(bad(format!("give {ours} once: {theirs} or {ours}")));
            }
            q.insert((*ours).to_owned(), v);
        }
    }
    q.retain(|k, _| !ignored.contains(&k.as_str()));
    Ok((src, q))
}

fn need_src(src: Option<String>) -> Result<String, ApiError> {
    src.filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "src=<camera> is required", None))
}

/// go2rtc's snapshot URL: alias of `GET /api/cameras/{src}/snapshot.jpg`.
#[utoipa::path(
    get,
    path = super::GO2RTC_FRAME,
    operation_id = "alias_go2rtc_frame",
    tag = "aliases",
    params(super::openapi::AliasSrc, super::openapi::AliasSize, super::query::SnapshotParams),
    responses(
        (status = 200, description = "As GET /api/cameras/{name}/snapshot.jpg.", content_type = "image/jpeg"),
        (status = 400, description = "No src, or a bad query.", body = super::ErrorBody),
        (status = 404, description = "Unknown camera.", body = super::ErrorBody),
        (status = 503, description = "Camera offline (Retry-After).", body = super::ErrorBody),
        (status = 504, description = "No picture within snapshot_timeout.", body = super::ErrorBody),
    ),
)]
pub async fn go2rtc_frame(
    hub: State<Arc<Hub>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (src, q) = translate(q, GO2RTC_RENAMES, &[])?;
    snapshot::get(hub, Path(need_src(src)?), Query(q)).await
}

/// go2rtc's MJPEG URL: alias of `GET /api/cameras/{src}/stream.mjpeg`.
#[utoipa::path(
    get,
    path = super::GO2RTC_MJPEG,
    operation_id = "alias_go2rtc_mjpeg",
    tag = "aliases",
    params(super::openapi::AliasSrc, super::query::StreamParams),
    responses(
        (
            status = 200,
            description = "As GET /api/cameras/{name}/stream.mjpeg.",
            content_type = "multipart/x-mixed-replace"
        ),
        (status = 400, description = "No src, or a bad query.", body = super::ErrorBody),
        (status = 404, description = "Unknown camera.", body = super::ErrorBody),
        (status = 503, description = "Camera offline, or too many variants.", body = super::ErrorBody),
    ),
)]
pub async fn go2rtc_mjpeg(
    hub: State<Arc<Hub>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (src, q) = translate(q, &[], &[])?;
    mjpeg::get(hub, Path(need_src(src)?), Query(q)).await
}

/// go2rtc's stream list: an object keyed by camera name (`?src=` for one), each
/// with its `producers` (the camera's streams, URLs without credentials) and
/// `consumers` (an empty list: camhub counts viewers in `/api/cameras`).
#[utoipa::path(
    get,
    path = super::GO2RTC_STREAMS,
    operation_id = "alias_go2rtc_streams",
    tag = "aliases",
    params(super::openapi::AliasStreams),
    responses(
        (status = 200, description = "{name: {producers: [{url}], consumers: []}}.", content_type = "application/json"),
        (status = 404, description = "Unknown camera (src).", body = super::ErrorBody),
    ),
)]
pub async fn go2rtc_streams(
    State(hub): State<Arc<Hub>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let entry = |cfg: &crate::config::CameraConfig| {
        let mut producers = vec![json!({ "url": cfg.display_url() })];
        producers.extend(cfg.display_sub_url().map(|u| json!({ "url": u })));
        json!({ "producers": producers, "consumers": [] })
    };
    // The whole fleet in cluster mode, whichever node runs each camera.
    let cameras: Vec<crate::config::CameraConfig> = match hub.cluster() {
        Some(c) => c.fleet(),
        None => hub.list().iter().map(|c| c.config().clone()).collect(),
    };
    if let Some(name) = q.get("src") {
        let cfg = cameras.iter().find(|c| c.name == *name).ok_or_else(|| ApiError::unknown_camera(name))?;
        return Ok(Json(entry(cfg)));
    }
    let all: Map<String, Value> = cameras.iter().map(|c| (c.name.clone(), entry(c))).collect();
    Ok(Json(Value::Object(all)))
}

/// Frigate's latest picture URL: alias of `GET /api/cameras/{name}/snapshot.jpg`
/// (`h` is the height; Frigate's drawing options are ignored).
#[utoipa::path(
    get,
    path = super::FRIGATE_LATEST,
    operation_id = "alias_frigate_latest",
    tag = "aliases",
    params(super::openapi::CameraName, super::openapi::AliasFrigate, super::query::SnapshotParams),
    responses(
        (status = 200, description = "As GET /api/cameras/{name}/snapshot.jpg.", content_type = "image/jpeg"),
        (status = 400, description = "Bad query.", body = super::ErrorBody),
        (status = 404, description = "Unknown camera.", body = super::ErrorBody),
        (status = 503, description = "Camera offline (Retry-After).", body = super::ErrorBody),
        (status = 504, description = "No picture within snapshot_timeout.", body = super::ErrorBody),
    ),
)]
pub async fn frigate_latest(
    hub: State<Arc<Hub>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (_, q) = translate(q, FRIGATE_RENAMES, FRIGATE_IGNORED)?;
    snapshot::get(hub, Path(name), Query(q)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn renames_their_parameters_into_ours() {
        let (src, rest) =
            translate(q(&[("src", "door"), ("w", "320"), ("quality", "70")]), GO2RTC_RENAMES, &[]).unwrap();
        assert_eq!(src.as_deref(), Some("door"));
        assert_eq!(rest, q(&[("width", "320"), ("quality", "70")]));
        let (src, rest) = translate(q(&[("name", "yard"), ("h", "90")]), GO2RTC_RENAMES, &[]).unwrap();
        assert_eq!((src.as_deref(), rest), (Some("yard"), q(&[("height", "90")])));
        let (_, rest) =
            translate(q(&[("h", "277"), ("bbox", "1"), ("fresh", "1")]), FRIGATE_RENAMES, FRIGATE_IGNORED).unwrap();
        assert_eq!(rest, q(&[("height", "277"), ("fresh", "1")]));
    }

    #[test]
    fn a_parameter_given_twice_is_refused() {
        assert!(translate(q(&[("w", "1"), ("width", "2")]), GO2RTC_RENAMES, &[]).is_err());
        assert!(translate(q(&[("src", "a"), ("name", "b")]), &[], &[]).is_err());
        assert!(need_src(None).is_err() && need_src(Some(String::new())).is_err());
    }
}
