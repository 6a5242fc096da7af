//! `GET /api/cameras` and `GET /api/cameras/{name}`: what each camera is doing.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::{ApiError, rfc3339_ms};
use crate::camera::demand::Tier;
use crate::camera::{Camera, State as CamState};
use crate::config::Linger;
use crate::hub::Hub;
use crate::output::OutputStats;
use crate::telemetry::stats::Counters;

/// All cameras.
#[utoipa::path(
    get,
    path = super::CAMERAS,
    operation_id = "list_cameras",
    tag = "cameras",
    responses(
        (status = 200, description = "Cameras.", body = Vec<super::openapi::Camera>),
        (status = 401, description = "Credentials required.", body = super::ErrorBody),
    ),
)]
pub async fn list(
    State(hub): State<Arc<Hub>>,
    headers: axum::http::HeaderMap,
    token: Option<axum::Extension<super::cluster::QueryToken>>,
) -> Json<Value> {
    let local: Vec<Value> = hub.list().iter().map(|c| describe(&hub, c)).collect();
    if hub.cluster().is_none() {
        return Json(Value::Array(local));
    }
    // The other nodes are asked with this request's credentials.
    let auth = headers.get(axum::http::header::AUTHORIZATION).cloned().or_else(|| {
        token.and_then(|axum::Extension(t)| axum::http::HeaderValue::from_str(&format!("Bearer {}", t.0)).ok())
    });
    let forwarded = headers.contains_key(&super::cluster::FORWARDED);
    Json(Value::Array(super::cluster::fleet(&hub, local, forwarded, auth).await))
}

/// One camera.
#[utoipa::path(
    get,
    path = super::CAMERA,
    operation_id = "get_camera",
    tag = "cameras",
    params(super::openapi::CameraName),
    responses(
        (status = 200, description = "The camera.", body = super::openapi::Camera),
        (status = 404, description = "Unknown camera.", body = super::ErrorBody),
    ),
)]
pub async fn one(State(hub): State<Arc<Hub>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let cam = hub.get(&name).ok_or_else(|| ApiError::unknown_camera(&name))?;
    Ok(Json(describe(&hub, &cam)))
}

fn linger(l: Linger) -> Value {
    match l {
        Linger::Forever => json!(-1),
        Linger::After(d) => json!(d.as_secs_f64()),
    }
}

/// A camera as the API shows it. Its URL never carries credentials.
pub fn describe(hub: &Hub, cam: &Camera) -> Value {
    let s = cam.status();
    let cfg = cam.config();
    let o = &cfg.options;
    let now = cam.clock().now();
    let frame = cam.latest_info();
    let c = cam.counters();
    let mem = hub.memory(cam);
    let hw = cam.hwaccel();
    json!({
        "name": cam.name(),
        "url": cfg.display_url(),
        "codec": s.codec,
        "state": s.state,
        "since": rfc3339_ms(s.since),
        "last_error": s.last_error.as_ref().map(|e| json!({ "kind": e.kind, "message": e.message })),
        "retry_in_ms": s.retry_at.map(|t| t.saturating_duration_since(now).as_millis() as u64),
        "keep": o.keep,
        "transport": o.transport,
        "transport_fallback": cam.transport_fallback().map(|why| json!({ "transport": "tcp", "reason": why })),
        "width": frame.as_ref().map(|f| f.width),
        "height": frame.as_ref().map(|f| f.height),
        "latest_frame": frame.as_ref().map(|f| json!({
            "frame_id": f.frame_id,
            "timestamp": rfc3339_ms(f.captured),
            "age_ms": f.age(now).as_millis() as u64,
        })),
        "tier": tier(s.state, s.decoder_running),
        "attempts": s.attempts,
        "restarts": s.restarts,
        "history": s.history.iter().map(|(st, t)| json!({ "state": st, "at": rfc3339_ms(*t) })).collect::<Vec<_>>(),
        "decoder": {
            "running": s.decoder_running,
            "linger_s": linger(o.decode_linger),
            // Whose pictures it makes (the scheduler's order), and whether it
            // decodes keyframes only to fit the decode budget.
            "priority": cam.priority(),
            "shedding": s.shedding,
            // `decoder.hwaccel` as configured, the device in use ("none": software),
            // and why not the one asked for (missing, or failed mid-stream).
            "hwaccel_requested": o.decoder.hwaccel,
            "hwaccel": hw.active.map_or("none", |k| k.name()),
            "hwaccel_fallback": hw.fallback,
        },
        "leases": {
            "connected": cam.leases(Tier::Connected),
            "decoding": cam.leases(Tier::Decoding),
            "keyframes": cam.leases(Tier::Keyframes),
            "variants": cam.variant_leases().iter().map(|(k, n)| json!({
                "quality": k.quality, "width": k.width, "height": k.height, "leases": n,
            })).collect::<Vec<_>>(),
        },
        "gop_cache": {
            "units": s.gop_units,
            "bytes": s.gop_bytes,
            "limit_bytes": o.gop_cache_bytes.0,
            "truncated": s.gop_truncated,
            "dropped_units": s.gop_dropped_units,
            "dropped_bytes": s.gop_dropped_bytes,
        },
        "jpeg_cache_bytes": cam.jpegs().bytes(),
        "memory": {
            "gop_bytes": mem.gop,
            "frame_bytes": mem.frame,
            "jpeg_cache_bytes": mem.jpeg_cache,
            "ring_bytes": mem.rings,
            "total_bytes": mem.total(),
            "budget_bytes": mem.budget,
            "budget_drops": mem.budget_drops,
        },
        "mode": o.mode,
        "webrtc": { "viewers": hub.whep.viewers(cam.name()) },
        "outputs": hub.outputs(cam.name()).iter().map(|o| describe_output(o)).collect::<Vec<_>>(),
        "counters": {
            "units_in": Counters::get(&c.units_in),
            "bytes_in": Counters::get(&c.bytes_in),
            "frames_decoded": Counters::get(&c.frames_decoded),
            "decode_errors": Counters::get(&c.decode_errors),
            "decoder_overruns": Counters::get(&c.decoder_overruns),
            "frames_shed_behind": Counters::get(&c.frames_shed_behind),
            "frames_shed_overload": Counters::get(&c.frames_shed_overload),
            // Compressed frames the GOP cache could not keep (over gop_cache_bytes).
            "frames_dropped": s.gop_dropped_units,
            "hwaccel_fallbacks": Counters::get(&c.hwaccel_fallbacks),
            "jpeg_encodes": Counters::get(&c.jpeg_encodes),
            "reconnects": Counters::get(&c.reconnects),
        },
        "sub": hub.sub(cam.name()).map(|sub| describe_sub(&sub, cfg.display_sub_url())),
        "cluster": hub.cluster().map(|c| json!({ "node": c.node(), "fence": c.fence(cam.name()) })),
    })
}

/// A camera's sub-stream: its own state, picture size and leases (its own demand).
fn describe_sub(sub: &Camera, url: Option<String>) -> Value {
    let s = sub.status();
    let now = sub.clock().now();
    let frame = sub.latest_info();
    json!({
        "url": url,
        "state": s.state,
        "since": rfc3339_ms(s.since),
        "codec": s.codec,
        "tier": tier(s.state, s.decoder_running),
        "width": frame.as_ref().map(|f| f.width),
        "height": frame.as_ref().map(|f| f.height),
        "latest_frame": frame.as_ref().map(|f| json!({
            "frame_id": f.frame_id,
            "timestamp": rfc3339_ms(f.captured),
            "age_ms": f.age(now).as_millis() as u64,
        })),
        "last_error": s.last_error.as_ref().map(|e| json!({ "kind": e.kind, "message": e.message })),
        "leases": {
            "connected": sub.leases(Tier::Connected),
            "decoding": sub.leases(Tier::Decoding),
            "keyframes": sub.leases(Tier::Keyframes),
            "variants": sub.variant_leases().iter().map(|(k, n)| json!({
                "quality": k.quality, "width": k.width, "height": k.height, "leases": n,
            })).collect::<Vec<_>>(),
        },
        "counters": {
            "units_in": Counters::get(&sub.counters().units_in),
            "frames_decoded": Counters::get(&sub.counters().frames_decoded),
            "reconnects": Counters::get(&sub.counters().reconnects),
        },
    })
}

/// What runs, as the API names it.
fn tier(state: CamState, decoding: bool) -> &'static str {
    match (state, decoding) {
        (CamState::Streaming, true) => "decoding",
        (CamState::Streaming, false) | (CamState::Connecting, _) => "connected",
        _ => "idle",
    }
}

/// An output for programs: what it is, whether it runs, what it did.
fn describe_output(o: &OutputStats) -> serde_json::Value {
    let mut v = json!({
        "name": o.name,
        "type": o.kind,
        "active": o.active.load(Ordering::Relaxed),
        "published": o.published.load(Ordering::Relaxed),
        "skipped_similar": o.skipped_similar.load(Ordering::Relaxed),
        "error": o.error(),
    });
    if let Some(p) = &o.path {
        v["ring"] = json!(p.display().to_string());
        v["readers"] = json!(o.readers.load(Ordering::Relaxed));
    }
    if let Some(s) = &o.stream {
        v["stream"] = json!(s);
    }
    if let Some(q) = &o.queue {
        v["redis"] = json!({
            "connected": q.connected.load(Ordering::Relaxed),
            "queued": q.len(),
            "sent": q.sent.load(Ordering::Relaxed),
            "dropped": q.dropped.load(Ordering::Relaxed),
            "slow_flushes": q.slow_flushes.load(Ordering::Relaxed),
            "error": q.last_error.lock().clone(),
        });
    }
    v
}
