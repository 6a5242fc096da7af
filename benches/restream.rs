//! The RTSP restream (issue 13): how soon an RTSP client (ffmpeg) has a picture,
//! and the newest picture, through the hub against connecting to the camera
//! directly, with trials spread over the camera's GOP; and the CPU of 20
//! clients on one camera through the hub against 20 direct connections.
//!
//! `cargo bench --bench restream [-- --quick]`; writes its section of BENCHMARKS.md.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support.rs"]
mod support;
use support::*;

fn gop_units(base: &str) -> u64 {
    get_json(&format!("{base}/api/cameras/cam"))["gop_cache"]["units"].as_u64().unwrap_or(0)
}

fn ffmpeg(url: &str, frames: u64, copy: bool) -> Command {
    let mut c = Command::new("ffmpeg");
    // ffmpeg probes a live stream for up to 5 s by default before it decodes: that
    // would hide what the stream gives. One second, the same on both sides.
    c.args(["-hide_banner", "-loglevel", "error", "-analyzeduration", "1000000", "-rtsp_transport", "tcp", "-i", url]);
    if copy {
        c.args(["-c", "copy"]);
    }
    c.args(["-frames:v", &frames.to_string(), "-f", "null", "-"]).stdin(Stdio::null()).stdout(Stdio::null());
    c
}

/// How long ffmpeg takes from its start to its `frames`-th decoded picture (it exits then).
fn time_to(url: &str, frames: u64) -> Option<f64> {
    let t = Instant::now();
    let ok = ffmpeg(url, frames, false).stderr(Stdio::null()).status().ok()?.success();
    ok.then(|| t.elapsed().as_secs_f64() * 1e3)
}

fn clients(url: &str, n: usize) -> Vec<Child> {
    (0..n).map(|_| ffmpeg(url, 1_000_000, true).stderr(Stdio::null()).spawn().unwrap()).collect()
}

fn main() {
    let Some(quick) = bench_mode("restream") else { return };
    let trials = if quick { 4 } else { 10 };
    let window = Duration::from_secs(if quick { 5 } else { 15 });
    let clip = make_720p_clip();
    let (server, camera_url) = start_rtsp_server(&clip);
    let dir = std::env::temp_dir().join(format!("camhub-restream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("restream.yaml");
    std::fs::write(
        &cfg,
        format!(
            "server:\n  rtsp:\n    listen: 127.0.0.1:0\ncameras:\n  cam:\n    url: {camera_url}\n    keep: connected\n"
        ),
    )
    .unwrap();
    let (hub, base) = start_hub(env!("CARGO_BIN_EXE_camhub"), &cfg);
    let t = Instant::now();
    while gop_units(&base) == 0 && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let port = get_json(&format!("{base}/api/health"))["rtsp"]["port"].as_u64().expect("the restream's port");
    let restream_url = format!("rtsp://127.0.0.1:{port}/cam");

    eprintln!("restream: {trials} trials spread over the GOP...");
    let (mut first, mut edge, mut direct) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..trials {
        // Start each trial at its own point of the GOP: i/trials of the way through.
        let want = (i as u64 * GOP as u64) / trials as u64;
        let t = Instant::now();
        while gop_units(&base) != want.max(1) && t.elapsed() < Duration::from_secs(12) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let units = gop_units(&base);
        first.extend(time_to(&restream_url, 1));
        // The newest picture: the whole cached GOP decoded, and the frame after it.
        edge.extend(time_to(&restream_url, units + 1));
        direct.extend(time_to(&camera_url, 1));
    }

    eprintln!("restream: 20 clients through the hub, then 20 straight to the camera...");
    let through = clients(&restream_url, 20);
    std::thread::sleep(Duration::from_secs(3));
    let hub_cpu = sample(&[hub.0.id()], window).0;
    for mut c in through {
        let _ = c.kill();
        let _ = c.wait();
    }
    let camera_idle = sample(&[server.0.id()], Duration::from_secs(3)).0;
    let straight = clients(&camera_url, 20);
    std::thread::sleep(Duration::from_secs(3));
    let camera_cpu = sample(&[server.0.id()], window).0;
    for mut c in straight {
        let _ = c.kill();
        let _ = c.wait();
    }
    drop(hub);
    let _ = std::fs::remove_dir_all(&dir);

    let row = |v: &mut Vec<f64>| {
        if v.is_empty() {
            return "no run succeeded".to_string();
        }
        let n = v.len();
        format!("p50 {:.0} ms, max {:.0} ms ({n} runs)", pct(v, 0.5), pct(v, 1.0))
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let rows = [
        format!(
            "| first picture (ffmpeg start to its first decoded frame) | {} | camera directly: {} | {:.1}x sooner (means) |",
            row(&mut first.clone()),
            row(&mut direct.clone()),
            mean(&direct) / mean(&first).max(1.0),
        ),
        format!(
            "| the newest picture (the cached GOP decoded, and the frame after) | {} | camera directly: the first picture is the newest, {} | target: under 2 s every time |",
            row(&mut edge.clone()),
            row(&mut direct.clone()),
        ),
        format!(
            "| 20 clients on one camera (`ffmpeg -c copy`) | hub {hub_cpu:.1}% of a core (one camera connection) | the camera (GStreamer's RTSP server) with 20 direct connections: {camera_cpu:.1}% (idle with the hub's one: {camera_idle:.1}%) | |",
        ),
    ];
    let section = format!(
        "## RTSP restream\n\n\
         Command: `make bench` (`cargo bench --bench restream{}`), {}, {}.\n\
         One camera: GStreamer RTSP server on loopback, H.264 1280x720, 6 fps, ~1 Mbit/s, a keyframe every 10 s; \
         camhub release build with `server.rtsp` (GStreamer's RTSP server fed from the GOP cache, no decode). \
         Client: `ffmpeg -rtsp_transport tcp -analyzeduration 1000000` (its default 5 s probe would hide the stream), timed from its start (connect, probe and decode included) to its \
         Nth decoded frame; {} trials, each starting at its own point of the GOP (0 to 9/10 of the way through); \
         through the hub and to the camera directly in the same trial.\n\n\
         | | camhub restream | reference (same run) | |\n|---|---|---|---|\n{}\n\n",
        if quick { " -- --quick" } else { "" },
        stamp(),
        machine(),
        trials,
        rows.join("\n"),
    );
    println!("{section}");
    write_section(&repo().join("BENCHMARKS.md"), "## RTSP restream", &section);
}
