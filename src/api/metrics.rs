//! `GET /metrics` (the hub's registry, OpenMetrics text) and `GET /api/health`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::camera::State as CamState;
use crate::hub::Hub;
use crate::telemetry::metrics::CONTENT_TYPE;

/// The hub's metrics, OpenMetrics text.
#[utoipa::path(
    get,
    path = super::METRICS,
    operation_id = "metrics",
    tag = "hub",
    responses(
        (status = 200, description = "Metrics.", content_type = "application/openmetrics-text"),
        (status = 401, description = "Credentials required.", body = super::ErrorBody),
    ),
)]
pub async fn metrics(State(hub): State<Arc<Hub>>) -> Response {
    let mut r = hub.metrics().render().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

/// Liveness and a summary.
///
/// 200 while the process serves; `status` is `degraded` when a camera that should be
/// up is failing.
#[utoipa::path(
    get,
    path = super::HEALTH,
    operation_id = "health",
    tag = "hub",
    security(()),
    responses(
        (
            status = 200,
            description = "status ok or degraded, version, camera counts, warnings (e.g. an open API on the network).",
            content_type = "application/json",
        ),
    ),
)]
pub async fn health(State(hub): State<Arc<Hub>>) -> Json<serde_json::Value> {
    let cams = hub.list();
    let states: Vec<CamState> = cams.iter().map(|c| c.status().state).collect();
    let failed = states.iter().filter(|s| s.is_failed()).count();
    let streaming = states.iter().filter(|s| **s == CamState::Streaming).count();
    Json(json!({
        "status": if failed == 0 { "ok" } else { "degraded" },
        "warnings": hub.warnings(),
        "version": env!("CARGO_PKG_VERSION"),
        "cameras": { "total": cams.len(), "streaming": streaming, "failed": failed },
        // The decode scheduler: workers, who waits (person, program, background),
        // how busy, and the share of background GOPs shed to keyframes.
        "decode": hub.scheduler.stats(),
        // The RTSP restream: where, how many clients, or why it is not running.
        "rtsp": hub.rtsp_info(),
        // The MQTT connection (`mqtt:`; null when not configured): state, last error, messages.
        "mqtt": hub.mqtt_info(),
        // Cluster mode (`cluster:`; null on a single node): this node, the live
        // nodes, the cameras it holds, and whether it reaches Redis.
        "cluster": hub.cluster().map(|c| {
            let v = c.view();
            json!({
                "node": c.node(),
                "advertise": c.me.advertise,
                "nodes": v.nodes.iter().map(|(n, node)| json!({ "name": n, "advertise": node.advertise })).collect::<Vec<_>>(),
                "fleet": c.fleet().len(),
                "owned": c.owned(),
                "unowned": c.fleet().iter().filter(|f| !v.leases.contains_key(&f.name)).count(),
                "redis": if c.redis_ok.load(std::sync::atomic::Ordering::Relaxed) { "ok" } else { "error" },
                "error": *c.last_error.lock(),
                "takeovers": c.takeovers.load(std::sync::atomic::Ordering::Relaxed),
            })
        }),
    }))
}
