//! `/metrics` read by Prometheus' own OpenMetrics parser (prometheus_client from
//! PyPI, in the venv `make test` sets up), and `/api/health`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

/// Parses OpenMetrics text with prometheus_client; returns {family: {type, unit, samples}}.
fn parse(text: &str) -> Value {
    let python = repo().join(".venv/bin/python");
    assert!(python.exists(), "no .venv: run `make test`, which sets it up");
    let mut child = Command::new(python)
        .arg(repo().join("tests/support/parse_metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "prometheus_client rejected /metrics: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of the sample `name` whose labels include all of `labels`.
fn sample(m: &Value, family: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let fam = m.get(family).unwrap_or_else(|| panic!("no family {family}"));
    fam["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s[0] == name && labels.iter().all(|(k, v)| s[1][k] == *v))
        .unwrap_or_else(|| panic!("no sample {name} {labels:?} in {fam}"))[2]
        .as_f64()
        .unwrap()
}

#[test]
fn metrics_parse_and_tell_the_truth() {
    let server = RtspServer::start("h264", None);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let hub = Hub::start(&format!(
        "cameras:\n  cam:\n    url: {}\n    keep: decoded\n  dead: rtsp://admin:Metr1cs-Secret@127.0.0.1:{dead}/x\n",
        server.url()
    ));
    hub.wait_streaming("cam");
    hub.wait_camera("dead", "backoff", Duration::from_secs(10), |c| c["state"] == "backoff");
    hub.wait_camera("cam", "decoding", Duration::from_secs(10), |c| c["latest_frame"].is_object());
    for _ in 0..3 {
        assert_eq!(hub.get("/api/cameras/cam/snapshot.jpg").status, 200);
    }
    let r = hub.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type").unwrap(), "application/openmetrics-text; version=1.0.0; charset=utf-8");
    let text = r.text();
    assert!(!text.contains("Metr1cs-Secret"));
    let m = parse(&text);

    let state = |cam: &str, st: &str| {
        sample(&m, "camhub_camera_state", "camhub_camera_state", &[("camera", cam), ("state", st)])
    };
    assert_eq!(state("cam", "streaming"), 1.0);
    assert_eq!(state("cam", "backoff"), 0.0);
    assert_eq!(state("dead", "backoff"), 1.0);
    assert_eq!(m["camhub_units_received"]["type"], "counter");
    let units = sample(&m, "camhub_units_received", "camhub_units_received_total", &[("camera", "cam")]);
    let api_units = hub.camera("cam")["counters"]["units_in"].as_f64().unwrap();
    assert!(units > 0.0 && units <= api_units, "{units} vs {api_units}");
    assert!(sample(&m, "camhub_frames_decoded", "camhub_frames_decoded_total", &[("camera", "cam")]) > 0.0);
    assert!(sample(&m, "camhub_reconnects", "camhub_reconnects_total", &[("camera", "dead")]) >= 1.0);
    assert!(sample(&m, "camhub_gop_cache_bytes", "camhub_gop_cache_bytes", &[("camera", "cam")]) > 0.0);
    assert_eq!(sample(&m, "camhub_leases", "camhub_leases", &[("camera", "cam"), ("tier", "variant")]), 0.0);

    assert_eq!(m["camhub_snapshot_duration_seconds"]["type"], "histogram");
    assert_eq!(m["camhub_snapshot_duration_seconds"]["unit"], "seconds");
    let warm =
        sample(&m, "camhub_snapshot_duration_seconds", "camhub_snapshot_duration_seconds_count", &[("source", "warm")]);
    assert!(warm >= 3.0, "{warm} warm snapshots counted");
    let inf = sample(
        &m,
        "camhub_snapshot_duration_seconds",
        "camhub_snapshot_duration_seconds_bucket",
        &[("source", "warm"), ("le", "+Inf")],
    );
    assert_eq!(inf, warm);
    assert!(sample(&m, "camhub_decode_duration_seconds", "camhub_decode_duration_seconds_count", &[]) > 0.0);
    assert!(sample(&m, "camhub_jpeg_encode_duration_seconds", "camhub_jpeg_encode_duration_seconds_count", &[]) >= 1.0);
    assert!(sample(&m, "process_resident_memory_bytes", "process_resident_memory_bytes", &[]) > 1e6);
    assert!(sample(&m, "process_open_fds", "process_open_fds", &[]) > 3.0);
    assert!(sample(&m, "process_cpu_seconds", "process_cpu_seconds_total", &[]) > 0.0);
    let started = sample(&m, "process_start_time_seconds", "process_start_time_seconds", &[]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(started <= now && now - started < 60.0, "started at {started}, now {now}");
    assert_eq!(m["camhub_build"]["type"], "info");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(sample(&m, "camhub_build", "camhub_build_info", &[("version", version)]), 1.0);

    let h = hub.get("/api/health").json();
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["cameras"]["total"], 2);
    assert_eq!(h["cameras"]["streaming"], 1);
    assert_eq!(h["cameras"]["failed"], 1);
}
