//! Memory accounting and budgets against the real hub: each camera's bytes are
//! in the API and metrics, a camera's own budget and the hub's shared budget
//! bound the GOP caches, drops are counted, and snapshots still work.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn budgets_bound_the_gop_caches_and_count_what_they_drop() {
    let server = RtspServer::start("h264", None);
    // The clip's 10 s GOP is ~150 KB (a ~20 KB keyframe, then ~1.3 KB frames).
    let hub = Hub::start(&format!(
        "server:\n  memory_budget: 120KiB\ncameras:\n  free:\n    url: {u}\n  tight:\n    url: {u}\n    memory_budget: 40KiB\n  free2:\n    url: {u}\n",
        u = server.url()
    ));
    for name in ["free", "tight", "free2"] {
        hub.wait_streaming(name);
    }
    // Read while the over-budget GOP lasts (a new keyframe starts a GOP that is not truncated yet).
    let tight = hub.wait_camera("tight", "over its budget", Duration::from_secs(25), |c| {
        c["memory"]["budget_drops"].as_u64() > Some(0) && c["gop_cache"]["truncated"].as_bool() == Some(true)
    });
    let m = &tight["memory"];
    assert_eq!(m["budget_bytes"], 40 * 1024);
    assert!(m["gop_bytes"].as_u64().unwrap() <= 40 * 1024, "the GOP cache stopped at the budget: {m}");
    assert_eq!(
        m["total_bytes"].as_u64().unwrap(),
        m["gop_bytes"].as_u64().unwrap() + m["frame_bytes"].as_u64().unwrap() + m["jpeg_cache_bytes"].as_u64().unwrap()
    );
    assert!(tight["gop_cache"]["truncated"].as_bool().unwrap(), "{tight}");
    // The hub's budget: all GOP caches together stay within 120 KiB, and someone drops.
    let total = |h: &Hub| -> u64 {
        ["free", "tight", "free2"].iter().map(|n| h.camera(n)["memory"]["gop_bytes"].as_u64().unwrap()).sum()
    };
    hub.wait_camera("free", "over the hub's budget", Duration::from_secs(25), |_| {
        ["free", "free2"].iter().any(|n| hub.camera(n)["memory"]["budget_drops"].as_u64() > Some(0))
    });
    // (A keyframe is never refused, so the bound may be passed by one keyframe, ~4 KB, per camera.)
    assert!(total(&hub) <= 120 * 1024 + 3 * 8 * 1024, "GOP caches hold {} bytes together", total(&hub));
    // Snapshots still answer from what was kept, with an honest age; the decoded frame
    // and the JPEG then count towards the camera's memory too.
    for name in ["free", "tight", "free2"] {
        let r = hub.get(&format!("/api/cameras/{name}/snapshot.jpg"));
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert!(Picture::decode(&r.body).colour_spread() > 20.0);
    }
    let m = hub.camera("tight")["memory"].clone();
    assert!(m["frame_bytes"].as_u64().unwrap() >= 640 * 360 * 3 / 2 && m["jpeg_cache_bytes"].as_u64() > Some(0), "{m}");
    let metrics = hub.get("/metrics").text();
    assert!(metrics.contains("camhub_memory_bytes{camera=\"tight\",kind=\"gop\"}"), "{metrics}");
    assert!(metrics.contains("camhub_memory_gop_budget_bytes{what=\"limit\"} 122880"), "{metrics}");
    let drops: u64 = metrics
        .lines()
        .find(|l| l.starts_with("camhub_memory_budget_drops_total{camera=\"tight\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert!(drops > 0);
}

/// A camera budget smaller than one decoded frame (640x360 I420 is ~340 KiB) still
/// keeps each keyframe, so its snapshots move on with every GOP instead of showing
/// one picture for ever, and each says how old its picture is.
#[test]
fn a_budget_smaller_than_a_frame_keeps_keyframes_and_snapshots_advance() {
    let server = RtspServer::start("h264", None);
    let hub = Hub::start(&format!(
        "cameras:\n  tiny:\n    url: {}\n    memory_budget: 24KiB\n    decode_linger: 0\n",
        server.url()
    ));
    hub.wait_streaming("tiny");
    let shot = || {
        let r = hub.get("/api/cameras/tiny/snapshot.jpg");
        assert_eq!(r.status, 200, "{}", r.text());
        r
    };
    let first = shot();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut ids = vec![first.frame_id()];
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let sent = server.sent().index;
        let r = shot();
        let shown = Picture::decode(&r.body).barcode();
        // The picture may be the GOP's keyframe, older than the newest unit: its age says so.
        let behind = clip_diff(sent, shown).max(0) as u64;
        assert!(
            r.age_ms() + 400 >= behind * 100,
            "frame {shown} is {behind} frames behind {sent}, age {} ms",
            r.age_ms()
        );
        ids.push(r.frame_id());
        if r.frame_id() > first.frame_id() + 5 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the snapshot never moved on: ids {ids:?}");
    }
    let tiny = hub.camera("tiny");
    assert!(tiny["memory"]["budget_drops"].as_u64() > Some(0), "the budget was binding: {tiny:#}");
}

/// Issue 15, item 9: one POST could make a 7.2 GB ring in /dev/shm. A ring's bytes
/// count in the hub's memory budget; a ring that would not fit is refused with the
/// figures in its output's state, and the camera's other outputs and pictures go on.
#[test]
fn rings_count_in_the_memory_budget_and_an_oversize_one_is_refused() {
    let server = RtspServer::start("h264", None);
    let shm = temp_dir("shm-budget");
    let hub = Hub::start_env(
        &format!(
            "server:\n  memory_budget: 4MiB\ncameras:\n  cam:\n    url: {}\n    outputs:\n      \
             small:\n        shm: {{width: 64, format: gray, demand: always, slots: 2}}\n      \
             huge:\n        shm: {{format: bgr24, demand: always, slots: 64}}\n",
            server.url()
        ),
        &[("CAMHUB_SHM_DIR", shm.to_str().unwrap())],
    );
    hub.wait_streaming("cam");
    let output = |c: &serde_json::Value, name: &str| {
        c["outputs"].as_array().unwrap().iter().find(|o| o["name"] == name).cloned().unwrap()
    };
    let c = hub.wait_camera("cam", "the huge ring refused", Duration::from_secs(20), |c| {
        output(c, "huge")["error"].is_string() && output(c, "small")["published"].as_u64() > Some(2)
    });
    let err = output(&c, "huge")["error"].as_str().unwrap().to_string();
    // 64 slots of 640x360 BGR (~44 MiB) against a 4 MiB budget.
    assert!(err.contains("64 slots of 640x360") && err.contains("over the hub's memory_budget"), "{err}");
    assert_eq!(output(&c, "huge")["published"], 0, "{c:#}");
    // Its file stayed the header-only one: nothing near 44 MiB was made.
    let len = std::fs::metadata(shm.join("camhub.cam.huge")).map(|m| m.len()).unwrap_or(0);
    assert!(len <= 4096, "the refused ring's file is {len} bytes");
    // The small ring, laid out within the budget, goes on; so do snapshots.
    let small = std::fs::metadata(shm.join("camhub.cam.small")).unwrap().len();
    assert!(small > 4096, "the small ring was laid out ({small} bytes)");
    let r = hub.get("/api/cameras/cam/snapshot.jpg");
    assert_eq!(r.status, 200, "{}", r.text());
    drop(hub);
    let _ = std::fs::remove_dir_all(shm);
}
