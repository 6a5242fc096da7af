//! Time to first frame of a browser-style WebRTC (WHEP) viewer: the real
//! `camhub` binary forwarding a 720p 6 fps H.264 camera (10 s GOP) over str0m,
//! an aiortc viewer (`tests/support/whep_client.py`) that decodes what it gets.
//! Reference: waiting for the camera's next keyframe, which is what a WebRTC
//! forwarder without a GOP cache (or a snapshot that waits for an IDR) needs.
//!
//! `cargo bench --bench whep [-- --quick]`; writes its section of BENCHMARKS.md.

use std::process::Command;
use std::time::{Duration, Instant};

#[path = "support.rs"]
mod support;
use support::*;

fn gop_units(base: &str) -> u64 {
    get_json(&format!("{base}/api/cameras/cam"))["gop_cache"]["units"].as_u64().unwrap_or(0)
}

fn main() {
    let Some(quick) = bench_mode("whep") else { return };
    let trials = if quick { 5 } else { 20 };
    let clip = make_720p_clip();
    let (_server, url) = start_rtsp_server(&clip);
    let dir = std::env::temp_dir().join(format!("camhub-whep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("whep.yaml");
    // aiortc offers only non-loopback addresses: offer the machine's own too.
    let lan = Command::new(repo().join(".venv/bin/python"))
        .args(["-c", "from aioice.ice import get_host_addresses as g; print(g(True, False)[0])"])
        .output()
        .unwrap();
    let lan = String::from_utf8_lossy(&lan.stdout).trim().to_string();
    std::fs::write(&cfg, format!("server:\n  webrtc: {{ips: [{lan}]}}\ncameras:\n  cam: {url}\n")).unwrap();
    let (hub, base) = start_hub(env!("CARGO_BIN_EXE_camhub"), &cfg);
    let t = Instant::now();
    while gop_units(&base) == 0 && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("WHEP: {trials} viewers at random moments...");
    let out = Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("benches/py/whep_ttff.py"))
        .args([&base, "cam", &trials.to_string(), &GOP.to_string(), &FPS.to_string()])
        .output()
        .unwrap();
    drop(hub);
    let _ = std::fs::remove_dir_all(&dir);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("whep_ttff.py: {}", String::from_utf8_lossy(&out.stderr)));
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let rows = [
        format!(
            "| first picture (the cached keyframe) | p50 {:.0} ms, p90 {:.0} ms | wait for the next keyframe: mean {:.0} ms, up to {:.0} ms | {:.0}x sooner (p50 vs mean) |",
            f("first_p50"),
            f("first_p90"),
            f("keyframe_wait_mean"),
            f("keyframe_wait_max"),
            f("keyframe_wait_mean") / f("first_p50"),
        ),
        format!(
            "| the picture that was current at the request (burst caught up) | p50 {:.0} ms, p90 {:.0} ms | | |",
            f("current_p50"),
            f("current_p90"),
        ),
    ];
    let section = format!(
        "## WebRTC live view: time to first frame\n\n\
         Command: `make bench` (`cargo bench --bench whep{}`), {}, {}.\n\
         One camera: GStreamer RTSP server on loopback, H.264 1280x720, 6 fps, ~1 Mbit/s, a keyframe every 10 s; \
         camhub release build forwarding it over WHEP (str0m, no transcode, no decode). Viewer: aiortc in Python \
         (`tests/support/whep_client.py`), {} trials at moments spread over the GOP; time runs from just before the \
         POST of the offer to the decoded picture, so it includes ICE, DTLS and the viewer's own decode of the burst. \
         The reference is the wait a forwarder without a GOP cache has: from the request to the camera's next \
         keyframe (computed from the GOP position at each request).\n\n\
         | what the viewer sees | camhub | reference | |\n|---|---|---|---|\n{}\n\n",
        if quick { " -- --quick" } else { "" },
        stamp(),
        machine(),
        trials,
        rows.join("\n"),
    );
    println!("{section}");
    write_section(&repo().join("BENCHMARKS.md"), "## WebRTC live view: time to first frame", &section);
}
