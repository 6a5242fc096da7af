//! `GET /metrics` (Prometheus text format) and `GET /api/health`.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::camera::demand::Tier;
use crate::camera::{Camera, State as CamState};
use crate::hub::Hub;
use crate::output::OutputStats;
use crate::snapshot::SnapshotSource;
use crate::telemetry::metrics::{DECODE, ENCODE, SNAPSHOT};
use crate::telemetry::stats::Counters;

pub(super) const STATES: [CamState; 9] = [
    CamState::Idle,
    CamState::Connecting,
    CamState::Streaming,
    CamState::Stalled,
    CamState::Backoff,
    CamState::AuthFailed,
    CamState::NotFound,
    CamState::Stopped,
    CamState::Finished,
];

pub(super) fn state_name(s: CamState) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Prometheus text format.
// Label values are camera names (letters, digits, `_`, `-`): nothing to escape.
#[utoipa::path(
    get,
    path = super::METRICS,
    operation_id = "metrics",
    tag = "hub",
    responses(
        (status = 200, description = "Metrics.", content_type = "text/plain"),
        (status = 401, description = "Credentials required.", body = super::ErrorBody),
    ),
)]
pub async fn metrics(State(hub): State<Arc<Hub>>) -> Response {
    let mut o = String::with_capacity(16 * 1024);
    let cams = hub.list();
    let mut family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(&mut o, "camhub_camera_state", "gauge", "1 for the state each camera is in.");
    for c in &cams {
        let st = c.status().state;
        for s in STATES {
            let _ = writeln!(
                o,
                "camhub_camera_state{{camera=\"{}\",state=\"{}\"}} {}",
                c.name(),
                state_name(s),
                u8::from(s == st)
            );
        }
    }
    type Get = fn(&Camera) -> u64;
    let counters: [(&str, &str, Get); 8] = [
        ("camhub_units_received_total", "Compressed frames received.", |c| Counters::get(&c.counters().units_in)),
        ("camhub_received_bytes_total", "Compressed bytes received.", |c| Counters::get(&c.counters().bytes_in)),
        ("camhub_frames_decoded_total", "Frames decoded.", |c| Counters::get(&c.counters().frames_decoded)),
        ("camhub_frames_dropped_total", "Compressed frames the GOP cache could not keep.", |c| {
            c.status().gop_dropped_units
        }),
        ("camhub_decode_errors_total", "Units the decoder rejected.", |c| Counters::get(&c.counters().decode_errors)),
        ("camhub_decoder_overruns_total", "Times the decoder fell behind and restarted.", |c| {
            Counters::get(&c.counters().decoder_overruns)
        }),
        ("camhub_jpeg_encodes_total", "JPEG encodes (one per frame and variant).", |c| {
            Counters::get(&c.counters().jpeg_encodes)
        }),
        ("camhub_reconnects_total", "Connections lost or failed.", |c| Counters::get(&c.counters().reconnects)),
    ];
    for (name, help, get) in counters {
        family(&mut o, name, "counter", help);
        for c in &cams {
            let _ = writeln!(o, "{name}{{camera=\"{}\"}} {}", c.name(), get(c));
        }
    }
    family(&mut o, "camhub_leases", "gauge", "Leases held, by tier.");
    for c in &cams {
        let variants: u32 = c.variant_leases().iter().map(|(_, n)| n).sum();
        for (tier, n) in [
            ("connected", c.leases(Tier::Connected)),
            ("decoding", c.leases(Tier::Decoding)),
            ("keyframes", c.leases(Tier::Keyframes)),
            ("variant", variants),
        ] {
            let _ = writeln!(o, "camhub_leases{{camera=\"{}\",tier=\"{tier}\"}} {n}", c.name());
        }
    }
    family(&mut o, "camhub_gop_cache_bytes", "gauge", "Compressed bytes kept since the newest keyframe.");
    for c in &cams {
        let _ = writeln!(o, "camhub_gop_cache_bytes{{camera=\"{}\"}} {}", c.name(), c.status().gop_bytes);
    }
    family(&mut o, "camhub_jpeg_cache_bytes", "gauge", "Bytes of JPEGs kept for sharing.");
    for c in &cams {
        let _ = writeln!(o, "camhub_jpeg_cache_bytes{{camera=\"{}\"}} {}", c.name(), c.jpegs().bytes());
    }
    outputs(&mut o, &hub, &cams, &mut family);
    family(&mut o, "camhub_webrtc_viewers", "gauge", "WebRTC (WHEP) viewers, and how many of them are connected.");
    for c in &cams {
        let v = hub.whep.viewers(c.name());
        let connected = v.iter().filter(|v| v.connected).count();
        let _ = writeln!(o, "camhub_webrtc_viewers{{camera=\"{}\",state=\"all\"}} {}", c.name(), v.len());
        let _ = writeln!(o, "camhub_webrtc_viewers{{camera=\"{}\",state=\"connected\"}} {connected}", c.name());
    }
    family(&mut o, "camhub_memory_bytes", "gauge", "What each camera holds, by kind (rings are shared memory).");
    let mems: Vec<_> = cams.iter().map(|c| (c.name().to_owned(), hub.memory(c))).collect();
    for (name, m) in &mems {
        for (kind, v) in [("gop", m.gop), ("frame", m.frame), ("jpeg_cache", m.jpeg_cache), ("rings", m.rings)] {
            let _ = writeln!(o, "camhub_memory_bytes{{camera=\"{name}\",kind=\"{kind}\"}} {v}");
        }
    }
    family(&mut o, "camhub_memory_budget_drops_total", "counter", "GOP units dropped because a memory budget ran out.");
    for (name, m) in &mems {
        let _ = writeln!(o, "camhub_memory_budget_drops_total{{camera=\"{name}\"}} {}", m.budget_drops);
    }
    family(
        &mut o,
        "camhub_memory_gop_budget_bytes",
        "gauge",
        "The hub's budget for all GOP caches (0: none), and what is used.",
    );
    let g = &crate::telemetry::memory::GLOBAL;
    let _ = writeln!(o, "camhub_memory_gop_budget_bytes{{what=\"limit\"}} {}", g.limit());
    let _ = writeln!(o, "camhub_memory_gop_budget_bytes{{what=\"used\"}} {}", g.used());
    family(&mut o, "camhub_snapshot_duration_seconds", "histogram", "Snapshot answer time, by X-Snapshot-Source.");
    for s in SnapshotSource::ALL {
        SNAPSHOT[s.index()].render(&mut o, "camhub_snapshot_duration_seconds", &format!("source=\"{}\",", s.as_str()));
    }
    family(&mut o, "camhub_decode_duration_seconds", "histogram", "Time to decode one compressed frame.");
    DECODE.render(&mut o, "camhub_decode_duration_seconds", "");
    family(&mut o, "camhub_jpeg_encode_duration_seconds", "histogram", "Time to make one JPEG.");
    ENCODE.render(&mut o, "camhub_jpeg_encode_duration_seconds", "");
    process(&mut o, &mut family);
    let mut r = o.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

/// Outputs for programs, labelled by camera and output name (both plain names).
fn outputs(o: &mut String, hub: &Hub, cams: &[Arc<Camera>], family: &mut impl FnMut(&mut String, &str, &str, &str)) {
    type Get = fn(&OutputStats) -> Option<u64>;
    let rows: [(&str, &str, &str, Get); 7] = [
        ("camhub_output_frames_total", "counter", "Frames published by an output (SHM slots, Redis records).", |s| {
            Some(s.published.load(Ordering::Relaxed))
        }),
        ("camhub_output_skipped_similar_total", "counter", "Frames an output skipped as the same picture.", |s| {
            Some(s.skipped_similar.load(Ordering::Relaxed))
        }),
        ("camhub_output_active", "gauge", "1 while an output takes frames (SHM: a reader is attached).", |s| {
            Some(u64::from(s.active.load(Ordering::Relaxed)))
        }),
        ("camhub_shm_readers", "gauge", "Readers registered in an SHM ring.", |s| {
            s.path.as_ref().map(|_| u64::from(s.readers.load(Ordering::Relaxed)))
        }),
        ("camhub_redis_records_sent_total", "counter", "Records written to Redis.", |s| {
            s.queue.as_ref().map(|q| q.sent.load(Ordering::Relaxed))
        }),
        ("camhub_redis_records_dropped_total", "counter", "Records dropped while Redis was slow or away.", |s| {
            s.queue.as_ref().map(|q| q.dropped.load(Ordering::Relaxed))
        }),
        ("camhub_redis_connected", "gauge", "1 while the output is connected to Redis.", |s| {
            s.queue.as_ref().map(|q| u64::from(q.connected.load(Ordering::Relaxed)))
        }),
    ];
    for (name, kind, help, get) in rows {
        family(o, name, kind, help);
        for c in cams {
            for s in hub.outputs(c.name()) {
                if let Some(v) = get(&s) {
                    let _ = writeln!(o, "{name}{{camera=\"{}\",output=\"{}\"}} {v}", c.name(), s.name);
                }
            }
        }
    }
}

/// The standard process metrics, from /proc/self.
fn process(o: &mut String, family: &mut impl FnMut(&mut String, &str, &str, &str)) {
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may contain spaces): utime and stime in ticks.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        family(o, "process_cpu_seconds_total", "counter", "User and system CPU time.");
        let _ = writeln!(o, "process_cpu_seconds_total {}", ticks / 100.0);
    }
    if let Some(kb) = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    }) {
        family(o, "process_resident_memory_bytes", "gauge", "Resident memory.");
        let _ = writeln!(o, "process_resident_memory_bytes {}", kb * 1024);
    }
    if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
        family(o, "process_open_fds", "gauge", "Open file descriptors.");
        let _ = writeln!(o, "process_open_fds {}", d.count());
    }
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
            description = "status ok or degraded, version, camera counts.",
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
        "version": env!("CARGO_PKG_VERSION"),
        "cameras": { "total": cams.len(), "streaming": streaming, "failed": failed },
    }))
}
