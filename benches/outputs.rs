//! P2 and P7 of PERFORMANCE.md: frames for programs.
//!
//! P2: 20 cameras (the same 720p 6 fps H.264 RTSP stream on loopback, one session
//!     each) decoded continuously into SHM rings, against `ffmpeg -threads 1 ...
//!     -f null` per camera (decode only: compared with camhub writing I420, no
//!     conversion) and against a Python/OpenCV reader per camera (decode + BGR:
//!     compared with camhub writing BGR24). CPU from /proc over the same window.
//! P7: a Python reader (the repo's client, futex wait) on one camera: time from
//!     decode to the frame in Python, and from publish to wake-up; zero-copy check.
//!
//! `cargo bench --bench outputs [-- --quick]`; writes its section of BENCHMARKS.md.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support.rs"]
mod support;
use support::*;

const CAMERAS: usize = 20;

fn python() -> String {
    repo().join(".venv/bin/python").display().to_string()
}

/// Frames published by every camera's outputs: (total, the fewest of any camera).
fn published(base: &str) -> (u64, u64) {
    let cams = get_json(&format!("{base}/api/cameras")).as_array().cloned().unwrap_or_default();
    let per: Vec<u64> = cams
        .iter()
        .map(|c| c["outputs"].as_array().into_iter().flatten().map(|o| o["published"].as_u64().unwrap_or(0)).sum())
        .collect();
    (per.iter().sum(), per.iter().copied().min().unwrap_or(0))
}

struct Run {
    cpu: f64,
    fps: f64,
    p7: Option<serde_json::Value>,
}

/// camhub with `cameras` cameras writing `format` rings; P7's reader on c0 during the window.
fn camhub_run(url: &str, cameras: usize, format: &str, window: Duration, dir: &Path) -> Run {
    let mut cfg = String::from("cameras:\n");
    for i in 0..cameras {
        cfg += &format!(
            "  c{i}:\n    url: {url}\n    outputs:\n      ai:\n        shm: {{format: {format}, demand: always}}\n"
        );
    }
    let path = dir.join(format!("p2-{cameras}-{format}.yaml"));
    std::fs::write(&path, cfg).unwrap();
    let (hub, base) = start_hub(env!("CARGO_BIN_EXE_camhub"), &path);
    let pid = hub.0.id();
    let t = Instant::now();
    // Each session joins the camera mid-GOP: wait until every camera has had its first keyframe.
    let wait = if window < Duration::from_secs(10) { Duration::from_secs(6) } else { Duration::from_secs(60) };
    while published(&base).1 < 6 && t.elapsed() < wait {
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(1));
    let reader = Command::new(python())
        .arg(repo().join("benches/py/shm_latency.py"))
        .args(["c0", "ai", &format!("{}", window.as_secs_f64() - 1.0)])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let p0 = published(&base).0;
    let t0 = Instant::now();
    let cpu = sample(&[pid], window).0;
    let fps = (published(&base).0 - p0) as f64 / t0.elapsed().as_secs_f64();
    let out = reader.wait_with_output().unwrap();
    let p7 = serde_json::from_slice(&out.stdout).ok();
    drop(hub);
    Run { cpu, fps, p7 }
}

/// One reference process per camera; their summed CPU over the window.
fn reference(window: Duration, spawn: impl Fn() -> Child) -> f64 {
    measure_references((0..CAMERAS).map(|_| spawn()).collect(), Duration::from_secs(4), window).0
}

/// A row's figures from `benches/py/aio_many.py`.
fn many_row(v: &Option<serde_json::Value>) -> String {
    v.as_ref().map_or("reader failed".to_string(), |v| {
        format!(
            "{} of {} frames read from {} rings; reader {}% of a core, **{} us CPU per frame**; {} waiter thread(s)",
            v["read"], v["published"], v["rings_read"], v["cpu_percent"], v["cpu_us_per_frame"], v["waiter_threads"]
        )
    })
}

fn main() {
    let Some(quick) = bench_mode("outputs") else { return };
    let window = Duration::from_secs(if quick { 5 } else { 20 });
    let clip = make_720p_clip();
    let (_server, url) = start_rtsp_server(&clip);
    let dir = std::env::temp_dir().join(format!("camhub-outputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    eprintln!("P2: camhub, {CAMERAS} cameras into I420 rings, {} s...", window.as_secs());
    let i420 = camhub_run(&url, CAMERAS, "i420", window, &dir);
    eprintln!("P2: ffmpeg -threads 1 -f null x {CAMERAS}...");
    let ffmpeg = reference(window, || {
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp", "-threads", "1", "-i", &url])
            .args(["-f", "null", "-"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    });
    eprintln!("P2: camhub, {CAMERAS} cameras into BGR24 rings...");
    let bgr = camhub_run(&url, CAMERAS, "bgr24", window, &dir);
    eprintln!("P2: Python/OpenCV reader x {CAMERAS}...");
    let opencv = reference(window, || {
        Command::new(python())
            .arg(repo().join("benches/py/opencv_reader.py"))
            .args([&url, &format!("{}", window.as_secs() + 8)])
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    });
    eprintln!("P7: one camera into a BGR24 ring, machine otherwise idle...");
    let single = camhub_run(&url, 1, "bgr24", window, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("P7: 100 rings read from one asyncio loop, then from one thread with camhub.select...");
    let many = |mode: &str| -> Option<serde_json::Value> {
        let out = Command::new(python())
            .arg(repo().join("benches/py/aio_many.py"))
            .args(["100", "5", &window.as_secs().max(8).to_string(), mode])
            .stderr(Stdio::inherit())
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    };
    let (aio, select) = (many("aio"), many("select"));

    let expected = (CAMERAS as u32 * FPS) as f64;
    let p7 = |r: &Run| {
        r.p7.as_ref().map_or("reader failed".to_string(), |v| {
            format!(
                "{} frames: decode to Python p50 {:.2} ms, p99 {:.2} ms; publish to wake-up p50 {:.2} ms, p99 {:.2} ms; zero-copy: {}",
                v["frames"],
                v["decode_p50"].as_f64().unwrap_or(f64::NAN),
                v["decode_p99"].as_f64().unwrap_or(f64::NAN),
                v["wake_p50"].as_f64().unwrap_or(f64::NAN),
                v["wake_p99"].as_f64().unwrap_or(f64::NAN),
                v["zero_copy"],
            )
        })
    };
    // CPU per frame: camhub's per frame it published, the reference's per frame of the
    // streams (taken as all of them: a reference still waiting for its first keyframe
    // only makes it look cheaper, so the ratio errs against camhub).
    let per_frame = |cpu: f64, fps: f64, reference: f64| (cpu / fps.max(0.1)) / (reference / expected);
    let rows = [
        format!(
            "| P2: {CAMERAS} cameras decoded into I420 rings | camhub {:.1}% of a core ({:.0} of {expected:.0} frames/s published) | `ffmpeg -threads 1 -f null` x {CAMERAS}: {ffmpeg:.1}% | **{:.2}x** per frame | within 1.15x |",
            i420.cpu,
            i420.fps,
            per_frame(i420.cpu, i420.fps, ffmpeg),
        ),
        format!(
            "| P2: {CAMERAS} cameras decoded into BGR24 rings | camhub {:.1}% ({:.0} of {expected:.0} frames/s) | Python/OpenCV reader x {CAMERAS}: {opencv:.1}% | **{:.2}x** per frame | beat it (< 1x) |",
            bgr.cpu,
            bgr.fps,
            per_frame(bgr.cpu, bgr.fps, opencv),
        ),
        format!(
            "| P7: Python reader, BGR24 720p, one camera, machine otherwise idle | {} | | | < 2 ms after decode, zero copies |",
            p7(&single)
        ),
        format!(
            "| P7: Python reader, I420 720p, during the I420 run | {} | | | < 2 ms after decode, zero copies |",
            p7(&i420)
        ),
        format!(
            "| P7: Python reader, BGR24 720p, during the BGR24 run | {} | | | < 2 ms after decode, zero copies |",
            p7(&bgr)
        ),
        format!(
            "| P7: 100 rings (64x36 gray, 5 fps each) read from one asyncio loop (`camhub.aio`) | {} | one thread with `camhub.select`: {} | | CPU per frame, for the record |",
            many_row(&aio),
            many_row(&select),
        ),
    ];
    let section = format!(
        "## Frames for programs (P2, P7)\n\n\
         Command: `make bench` (`cargo bench --bench outputs{}`), {}, {}.\n\
         Each camera is its own RTSP session (TCP) of the same GStreamer RTSP server on loopback \
         (H.264 1280x720, 6 fps, ~1 Mbit/s, 10 s GOP); camhub release build with `demand: always` SHM outputs; \
         each reference runs in the same bench run, one process per camera, over the same {} s window; \
         CPU is utime+stime from /proc of camhub or of the reference processes. \
         The I420 ring is the decoder's own planes copied into the slot; BGR24 adds one swscale conversion \
         per frame, as OpenCV's reader does. P7's reader is `benches/py/shm_latency.py` (the repo's Python client, \
         futex wait, through the native module since issue 17); \"decode to Python\" includes the conversion and the copy \
         into the slot. The 100-ring rows are `benches/py/aio_many.py` (a writer process publishing small frames \
         into 100 rings; the reader's own CPU, loop and waiter thread included, per frame read).\n\n\
         | scenario | camhub | reference | ratio | target |\n|---|---|---|---|---|\n{}\n\n",
        if quick { " -- --quick" } else { "" },
        stamp(),
        machine(),
        window.as_secs(),
        rows.join("\n"),
    );
    println!("{section}");
    write_section(&repo().join("BENCHMARKS.md"), "## Frames for programs (P2, P7)", &section);
}
