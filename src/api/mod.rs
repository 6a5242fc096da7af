//! The HTTP API (axum): camera listing and state, and snapshots. Errors are
//! JSON `{ "error": ..., "camera": ... }` with a status that says what to do.

mod auth;
mod cameras;
mod cluster;
mod compat;
mod manage;
mod metrics;
mod mjpeg;
mod openapi;
mod query;
mod serve;
mod snapshot;
mod whep;

pub use serve::{ConnLimits, serve};

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::hub::Hub;

/// Every route and its methods. The router below is built from these paths, the
/// handlers' `#[utoipa::path]` name them too, and `tests/openapi.rs` checks that
/// `/api/openapi.json` documents exactly these.
pub const ROUTES: &[(&str, &[&str])] = &[
    (DASHBOARD, &["get"]),
    (HEALTH, &["get"]),
    (METRICS, &["get"]),
    (OPENAPI, &["get"]),
    (CAMERAS, &["get", "post"]),
    (CAMERA, &["get", "put", "delete"]),
    (SNAPSHOT, &["get"]),
    (STREAM, &["get"]),
    (WHEP, &["post"]),
    (WHEP_SESSION, &["patch", "delete"]),
    (GO2RTC_FRAME, &["get"]),
    (GO2RTC_MJPEG, &["get"]),
    (GO2RTC_STREAMS, &["get"]),
    (FRIGATE_LATEST, &["get"]),
];
const DASHBOARD: &str = "/";
const HEALTH: &str = "/api/health";
const METRICS: &str = "/metrics";
const OPENAPI: &str = "/api/openapi.json";
const CAMERAS: &str = "/api/cameras";
const CAMERA: &str = "/api/cameras/{name}";
const SNAPSHOT: &str = "/api/cameras/{name}/snapshot.jpg";
const STREAM: &str = "/api/cameras/{name}/stream.mjpeg";
const WHEP: &str = "/api/cameras/{name}/whep";
const WHEP_SESSION: &str = "/api/cameras/{name}/whep/{session}";
const GO2RTC_FRAME: &str = "/api/frame.jpeg";
const GO2RTC_MJPEG: &str = "/api/stream.mjpeg";
const GO2RTC_STREAMS: &str = "/api/streams";
const FRIGATE_LATEST: &str = "/api/{name}/latest.jpg";

/// The routes that are other tools' URLs for camhub's own (`compat`), and the
/// route each stands for (marked `x-alias-of` in the OpenAPI document).
pub const ALIASES: &[(&str, &str)] =
    &[(GO2RTC_FRAME, SNAPSHOT), (GO2RTC_MJPEG, STREAM), (GO2RTC_STREAMS, CAMERAS), (FRIGATE_LATEST, SNAPSHOT)];

/// The query parameters of each alias route (its own names, then the native route's).
pub fn alias_params(path: &str) -> Vec<&'static str> {
    match path {
        GO2RTC_FRAME => compat::frame_params(),
        GO2RTC_MJPEG => compat::mjpeg_params(),
        GO2RTC_STREAMS => compat::STREAMS_PARAMS.to_vec(),
        FRIGATE_LATEST => compat::latest_params(),
        _ => Vec::new(),
    }
}

/// Query parameters each picture route takes (and documents: `query::SnapshotParams`).
pub const SNAPSHOT_PARAMS: &[&str] =
    &["quality", "width", "height", "max_age_ms", "cached", "fresh", "keyframe", "stream"];
pub const STREAM_PARAMS: &[&str] = &["quality", "width", "height", "fps", "stream"];

/// The dashboard: one page, no build step, served from the binary.
pub const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// The OpenAPI 3.1 description of this API, as JSON.
pub fn openapi_json() -> &'static str {
    openapi::json()
}

/// The dashboard: every camera as a live tile; a click opens a large MJPEG view.
///
/// Pass ?token= to reach a protected hub.
#[utoipa::path(
    get,
    path = DASHBOARD,
    operation_id = "dashboard",
    tag = "hub",
    responses(
        (status = 200, description = "HTML.", content_type = "text/html"),
        (status = 401, description = "Credentials required.", body = ErrorBody),
    ),
)]
async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(DASHBOARD_HTML)
}

/// The whole HTTP surface, behind the auth/CORS guard of the hub's `server:`
/// settings (read per request: a reload applies them at once).
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route(DASHBOARD, get(dashboard))
        .route(HEALTH, get(metrics::health))
        .route(METRICS, get(metrics::metrics))
        .route(OPENAPI, get(openapi::serve))
        .route(CAMERAS, get(cameras::list).post(manage::add))
        .route(CAMERA, get(cameras::one).put(manage::put).delete(manage::remove))
        .route(SNAPSHOT, get(snapshot::get))
        .route(STREAM, get(mjpeg::get))
        .route(WHEP, axum::routing::post(whep::offer))
        .route(WHEP_SESSION, axum::routing::patch(whep::trickle).delete(whep::end))
        .route(GO2RTC_FRAME, get(compat::go2rtc_frame))
        .route(GO2RTC_MJPEG, get(compat::go2rtc_mjpeg))
        .route(GO2RTC_STREAMS, get(compat::go2rtc_streams))
        .route(FRIGATE_LATEST, get(compat::frigate_latest))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route", None) })
        .with_state(hub.clone())
        .layer(axum::middleware::from_fn_with_state(hub.clone(), cluster::route))
        .layer(axum::middleware::from_fn_with_state(hub, auth::guard))
}

/// The hub's side of a request's connection (its local address): where a WHEP
/// viewer's UDP socket binds. `serve` adds it to every request of a connection.
#[derive(Clone, Copy, Debug)]
pub struct LocalAddr(pub std::net::SocketAddr);

/// The body of every error answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
struct ErrorBody {
    /// What went wrong, and what to do about it.
    error: String,
    /// The camera it concerns, if any.
    camera: Option<String>,
}

/// A JSON error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    camera: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>, camera: Option<&str>) -> Self {
        ApiError { status, message: message.into(), camera: camera.map(str::to_owned), retry_after: None }
    }
    pub(crate) fn unknown_camera(name: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("no camera named {name:?}"), Some(name))
    }
    /// A request the router refused: unknown camera 404, `stream=sub` on a camera without one 400.
    pub(crate) fn route(e: &crate::hub::route::RouteError, name: &str) -> Self {
        match e {
            crate::hub::route::RouteError::UnknownCamera(_) => Self::unknown_camera(name),
            crate::hub::route::RouteError::NoSub(_) => Self::new(StatusCode::BAD_REQUEST, e.to_string(), Some(name)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.message, camera: self.camera };
        let mut r = (self.status, Json(body)).into_response();
        r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-11-21T06:14:03.250Z`.
pub fn rfc3339_ms(t: std::time::SystemTime) -> String {
    let ts = jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn formats_rfc3339_with_millis() {
        assert_eq!(rfc3339_ms(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_245_243_250);
        assert_eq!(rfc3339_ms(t), "2026-11-21T07:14:03.250Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_ms(leap), "2000-02-29T00:00:00.000Z");
    }
}
