//! When many look at once: P9 and P11 of PERFORMANCE.md against the fleet
//! simulator (100 RTSP H.264 720p 6 fps 10 s-GOP cameras in this process).
//!
//! P9: every one of 100 connected cameras asked for a fresh snapshot at once (a
//!     dashboard's first paint). Floor, measured in the same run: one cold GOP
//!     replay's time x 100 / cores.
//! P10: the dashboard open on 100 cameras (headless Chromium): CPU, tiles painted, RSS.
//! P11: 100 cameras decoding all the time (`keep: decoded`) on this machine's
//!     cores: a person's snapshot latency, per-camera decoded fps (fairness),
//!     frames shed and decoder-overrun replays, CPU and RSS.
//! P12: memory: 100 cameras decoding into I420 rings, and RSS 30 s after the P9
//!     burst against the idle figure before it.
//!
//! `cargo bench --bench load [-- --quick]` writes its section of BENCHMARKS.md.

use std::time::{Duration, Instant};

#[path = "support.rs"]
mod support;
use support::*;

#[path = "sim/mod.rs"]
mod sim;

const N: usize = 100;

fn get(url: &str) -> (u16, Duration) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let t = Instant::now();
    match agent.get(url).call() {
        Ok(mut r) => {
            let _ = r.body_mut().read_to_vec();
            (r.status().as_u16(), t.elapsed())
        }
        Err(_) => (0, t.elapsed()),
    }
}

fn cameras(base: &str) -> Vec<serde_json::Value> {
    get_json(&format!("{base}/api/cameras")).as_array().cloned().unwrap_or_default()
}

/// `extra`: more keys for every camera (e.g. `decode_linger: 0`), or none for the defaults.
fn start(port: u16, keep: &str, extra: &str, dir: &std::path::Path, tag: &str) -> (Server, String) {
    let mut cfg = String::from("cameras:\n");
    for k in 0..N {
        cfg += &format!("  c{k}:\n    url: rtsp://127.0.0.1:{port}/cam{k}\n    keep: {keep}\n{extra}");
    }
    let path = dir.join(format!("load-{tag}.yaml"));
    std::fs::write(&path, cfg).unwrap();
    start_hub(env!("CARGO_BIN_EXE_camhub"), &path)
}

fn wait_warm(base: &str, wait: Duration) {
    let t = Instant::now();
    while t.elapsed() < wait {
        let warm = cameras(base).iter().filter(|c| c["gop_cache"]["units"].as_u64().unwrap_or(0) > 0).count();
        if warm == N {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

struct P9 {
    one_cold_ms: f64,
    floor_ms: f64,
    ok: usize,
    first_ms: f64,
    p50_ms: f64,
    last_ms: f64,
    /// RSS before the burst (100 cameras connected, nobody decoding), right after
    /// it, and 30 s after it (decode_linger 0: every decoder stopped at once).
    rss_idle: u64,
    rss_burst: u64,
    rss_after: u64,
}

fn p9(port: u16, dir: &std::path::Path, quick: bool) -> P9 {
    let (hub, base) = start(port, "connected", "    decode_linger: 0\n", dir, "p9");
    wait_warm(&base, Duration::from_secs(if quick { 12 } else { 25 }));
    // One cold replay at a time: the floor's unit (mid-GOP on average, like the burst's).
    let mut singles: Vec<f64> = (0..5)
        .map(|i| {
            let (st, d) = get(&format!("{base}/api/cameras/c{}/snapshot.jpg", 90 + i));
            assert_eq!(st, 200);
            std::thread::sleep(Duration::from_millis(300));
            d.as_secs_f64() * 1e3
        })
        .collect();
    let one_cold_ms = pct(&mut singles, 0.5);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    let floor_ms = one_cold_ms * N as f64 / cores;
    std::thread::sleep(Duration::from_secs(3));
    let pid = hub.0.id();
    let rss_idle = proc_stat(pid).1;
    let start = Instant::now();
    let threads: Vec<_> = (0..N)
        .map(|k| {
            let url = format!("{base}/api/cameras/c{k}/snapshot.jpg");
            std::thread::spawn(move || {
                let (st, _) = get(&url);
                (st, start.elapsed())
            })
        })
        .collect();
    let mut res: Vec<(u16, Duration)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    res.sort_by_key(|r| r.1);
    let rss_burst = proc_stat(pid).1;
    std::thread::sleep(Duration::from_secs(30));
    let rss_after = proc_stat(pid).1;
    drop(hub);
    let mut ms: Vec<f64> = res.iter().map(|r| r.1.as_secs_f64() * 1e3).collect();
    P9 {
        one_cold_ms,
        floor_ms,
        ok: res.iter().filter(|r| r.0 == 200).count(),
        first_ms: ms[0],
        p50_ms: pct(&mut ms, 0.5),
        last_ms: *ms.last().unwrap(),
        rss_idle,
        rss_burst,
        rss_after,
    }
}

struct P10 {
    /// Until every tile in view had a picture (None: not within 15 s).
    all_ms: Option<f64>,
    tiles: u64,
    in_view: u64,
    painted: u64,
    cpu: f64,
    rss_before: u64,
    rss_open: u64,
    rss_after: Option<u64>,
}

/// The dashboard open on 100 cameras in headless Chromium: camhub's CPU while it
/// is open, the tiles painted, RSS before, during and 30 s after it closed.
fn p10(port: u16, dir: &std::path::Path, quick: bool) -> P10 {
    let (hub, base) = start(port, "connected", "", dir, "p10");
    wait_warm(&base, Duration::from_secs(if quick { 12 } else { 25 }));
    std::thread::sleep(Duration::from_secs(2));
    let pid = hub.0.id();
    let rss_before = proc_stat(pid).1;
    let window = Duration::from_secs(if quick { 10 } else { 40 });
    let settle = Duration::from_secs(5);
    let mut node = std::process::Command::new("node")
        .arg(repo().join("benches/dashboard_open.mjs"))
        .arg(format!("{base}/"))
        .arg((settle + window).as_secs().to_string())
        .env("NODE_PATH", repo().join("tests/support/node_modules"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node (make test installs it)");
    {
        use std::io::BufRead;
        let err = std::io::BufReader::new(node.stderr.take().unwrap());
        for line in err.lines() {
            if line.unwrap_or_default().contains("READY") {
                break;
            }
        }
    }
    std::thread::sleep(settle);
    let (cpu, rss_open) = sample(&[pid], window);
    let out = node.wait_with_output().unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    // (The quick run leaves out the half minute after closing.)
    let rss_after = (!quick).then(|| {
        std::thread::sleep(Duration::from_secs(30));
        proc_stat(pid).1
    });
    drop(hub);
    P10 {
        all_ms: r["allMs"].as_f64(),
        tiles: r["end"]["tiles"].as_u64().unwrap_or(0),
        in_view: r["end"]["inView"].as_u64().unwrap_or(0),
        painted: r["end"]["painted"].as_u64().unwrap_or(0),
        cpu,
        rss_before,
        rss_open,
        rss_after,
    }
}

struct P12 {
    rss: u64,
    shm: u64,
    rings: usize,
    decoded_per_s: f64,
}

/// Resident shared memory (the rings' pages this process touched), from /proc.
fn rss_shmem(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("RssShmem:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// 100 cameras decoding 720p into I420 rings (`demand: always`): memory per
/// decoding camera, against the same hub idle.
fn p12(port: u16, dir: &std::path::Path, quick: bool) -> P12 {
    let shm = dir.join("shm");
    std::fs::create_dir_all(&shm).unwrap();
    let mut cfg = String::from("cameras:\n");
    for k in 0..N {
        cfg += &format!(
            "  c{k}:\n    url: rtsp://127.0.0.1:{port}/cam{k}\n    keep: connected\n    \
             outputs:\n      ai:\n        shm: {{format: i420, demand: always, slots: 2}}\n"
        );
    }
    let path = dir.join("load-p12.yaml");
    std::fs::write(&path, cfg).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_camhub"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"]).arg(&path).env("CAMHUB_SHM_DIR", &shm);
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().unwrap();
    let line = {
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap()).lines().next().unwrap().unwrap()
    };
    let hub = Server(child);
    let base = line.trim_start_matches("camhub listening on ").trim().to_string();
    let pid = hub.0.id();
    wait_warm(&base, Duration::from_secs(if quick { 12 } else { 25 }));
    std::thread::sleep(Duration::from_secs(if quick { 4 } else { 20 }));
    let before: u64 = cameras(&base).iter().map(|c| c["counters"]["frames_decoded"].as_u64().unwrap_or(0)).sum();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(if quick { 6 } else { 30 }));
    let after: u64 = cameras(&base).iter().map(|c| c["counters"]["frames_decoded"].as_u64().unwrap_or(0)).sum();
    let rss = proc_stat(pid).1;
    let shm_bytes = rss_shmem(pid);
    // (Each ring has a lock file beside it: count the rings alone.)
    let rings = std::fs::read_dir(&shm).map_or(0, |d| {
        d.filter_map(Result::ok).filter(|e| !e.file_name().to_string_lossy().ends_with(".lock")).count()
    });
    drop(hub);
    P12 { rss, shm: shm_bytes, rings, decoded_per_s: (after - before) as f64 / t.elapsed().as_secs_f64() }
}

struct P11 {
    cpu: f64,
    rss: u64,
    snap_ms: Vec<f64>,
    snap_ok: usize,
    fps_min: f64,
    fps_max: f64,
    fps_mean: f64,
    /// The cameras a person asked for, mean.
    asked_fps: f64,
    shed_behind: u64,
    shed_overload: u64,
    overruns: u64,
    shed_share: f64,
    window: Duration,
}

fn p11(port: u16, dir: &std::path::Path, quick: bool) -> P11 {
    let (hub, base) = start(port, "decoded", "", dir, "p11");
    wait_warm(&base, Duration::from_secs(if quick { 12 } else { 25 }));
    // Let the scheduler settle into its shed share.
    std::thread::sleep(Duration::from_secs(if quick { 20 } else { 30 }));
    // Each GOP (10 s) is shed the same share: the window takes whole GOPs.
    let window = Duration::from_secs(if quick { 20 } else { 60 });
    let decoded = |cams: &[serde_json::Value]| -> Vec<u64> {
        cams.iter().map(|c| c["counters"]["frames_decoded"].as_u64().unwrap_or(0)).collect()
    };
    let before = decoded(&cameras(&base));
    let pid = hub.0.id();
    let c0 = cpu_seconds(pid);
    let t0 = Instant::now();
    // A person's snapshots during the window, spread over it.
    let mut snap_ms = Vec::new();
    let mut snap_ok = 0;
    let shots = 8;
    // (A person's camera is decoded in full while its snapshot's linger lasts:
    // fairness is among the background cameras, the rest.)
    let asked: Vec<usize> = (0..shots as usize).map(|i| (i * 13) % N).collect();
    for (i, k) in asked.iter().enumerate() {
        std::thread::sleep(window.saturating_sub(t0.elapsed()) / (shots - i as u32 + 1));
        let (st, d) = get(&format!("{base}/api/cameras/c{k}/snapshot.jpg"));
        if st != 200 {
            eprintln!(
                "P11: a person's snapshot of c{k} answered {st} after {d:?}: {:#}",
                get_json(&format!("{base}/api/cameras/c{k}"))
            );
        }
        snap_ok += usize::from(st == 200);
        snap_ms.push(d.as_secs_f64() * 1e3);
    }
    std::thread::sleep(window.saturating_sub(t0.elapsed()));
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (cpu_seconds(pid) - c0) / secs * 100.0;
    let rss = proc_stat(pid).1;
    let cams = cameras(&base);
    let after = decoded(&cams);
    let all: Vec<f64> = after.iter().zip(&before).map(|(a, b)| (a - b) as f64 / secs).collect();
    let fps: Vec<f64> = all.iter().enumerate().filter(|(k, _)| !asked.contains(k)).map(|(_, f)| *f).collect();
    let asked_fps = asked.iter().map(|&k| all[k]).sum::<f64>() / asked.len() as f64;
    let sum = |k: &str| cams.iter().map(|c| c["counters"][k].as_u64().unwrap_or(0)).sum::<u64>();
    let health = get_json(&format!("{base}/api/health"));
    drop(hub);
    P11 {
        cpu,
        rss,
        snap_ms,
        snap_ok,
        fps_min: fps.iter().copied().fold(f64::INFINITY, f64::min),
        fps_max: fps.iter().copied().fold(0.0, f64::max),
        fps_mean: fps.iter().sum::<f64>() / fps.len() as f64,
        asked_fps,
        shed_behind: sum("frames_shed_behind"),
        shed_overload: sum("frames_shed_overload"),
        overruns: sum("decoder_overruns"),
        shed_share: health["decode"]["shed"].as_f64().unwrap_or(0.0),
        window,
    }
}

fn main() {
    // Two workers: with one, a simulated camera starved by the overload once missed a keepalive reply for 30 s.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let Some(quick) = bench_mode("load") else { return };
    let port = sim::start(&rt, &make_720p_clip(), FPS as f64, 0).port;
    let dir = std::env::temp_dir().join(format!("camhub-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    eprintln!("P9: burst of {N} fresh snapshots...");
    let b = p9(port, &dir, quick);
    eprintln!("P10: the dashboard open on {N} cameras...");
    let d = p10(port, &dir, quick);
    eprintln!("P11: {N} cameras always decoding...");
    let o = p11(port, &dir, quick);
    eprintln!("P12: {N} cameras decoding into I420 rings...");
    let m = p12(port, &dir, quick);
    let _ = std::fs::remove_dir_all(&dir);

    let mut snaps = o.snap_ms.clone();
    let section = format!(
        "## When many look at once (P9-P12)\n\n\
         Command: `make bench` (`cargo bench --bench load{}`), {}, {}.\n\
         Cameras: the fleet simulator (`benches/sim/`: {N} RTSP H.264 720p 6 fps 10 s-GOP paths, each on its own \
         timeline). camhub release build, default `server.decode.workers` (one per core); P9 with `decode_linger: 0` \
         (every decoder stops when its answer is out, so the memory figure after it is honest), the rest with the \
         defaults a user has.\n\n\
         | scenario | camhub | reference (same run) | ratio | target |\n|---|---|---|---|---|\n\
         | P9: {N} fresh snapshots at once (dashboard first paint) | {}/{N} answered 200; first {:.0} ms, p50 {:.0} ms, last {:.0} ms | floor: one cold replay {:.0} ms x {N} / cores = {:.0} ms | last = **{:.2}x** the floor | all 200; last <= 1.5x the floor; before the scheduler: 12.4 s, p50 6.1 s, 14 failures |\n\
         | P10: the dashboard open on {N} cameras (1600x1000, headless Chromium) | camhub {:.0}% of a core; {} of {} tiles in view painted ({} tiles), all in view painted {} after load; RSS {:.0} MiB before, {:.0} MiB open, {} 30 s after closing | | | under 60% of a core; every tile in view within 2 s; before: 179%, 59 of 100 decoders keeping up, 605 MB kept |\n\
         | P11: {N} cameras always decoding: a person's snapshot | {}/{} answered 200; p50 {:.0} ms, max {:.0} ms | | | < 1 s; before: 504 after 10.7 s |\n\
         | P11: fairness, decoded fps per background camera over {} s | min {:.2}, mean {:.2}, max {:.2} fps ({} cameras; the {} a person asked for: {:.2} fps, in full while their snapshot's linger lasts) | | max/min **{:.1}x** | within 2x |\n\
         | P11: overload handling | shed share {:.2}; frames shed: {} behind, {} overload; {} queue overflows, 0 GOP replays for them | | | no decoder-overrun replays; before: 60 |\n\
         | P11: CPU and RSS | {:.0}% of a core, {:.0} MiB | | | before: 194%, 1.6 GB |\n\
         | P12: memory, {N} cameras decoding 720p into I420 rings | RSS {:.0} MiB ({:.0} MiB of it ring pages; {} rings), {:.1} MiB per camera over the same fleet connected and idle ({:.0} MiB, P9); {:.0} frames/s decoded in all | | | under 1 GB; before: 1.6 GB |\n\
         | P12: memory comes back after the P9 burst | idle {:.0} MiB, right after the burst {:.0} MiB, 30 s later {:.0} MiB (**{:+.0} MiB** over idle) | | | within 64 MB of idle 30 s after; before: 605 MB not returned |\n\n",
        if quick { " -- --quick" } else { "" },
        stamp(),
        machine(),
        b.ok,
        b.first_ms,
        b.p50_ms,
        b.last_ms,
        b.one_cold_ms,
        b.floor_ms,
        b.last_ms / b.floor_ms.max(1.0),
        d.cpu,
        d.painted,
        d.in_view,
        d.tiles,
        d.all_ms.map_or("not within 15 s".to_string(), |ms| format!("{ms:.0} ms")),
        d.rss_before as f64 / 1048576.0,
        d.rss_open as f64 / 1048576.0,
        d.rss_after.map_or("not measured (--quick)".to_string(), |r| format!("{:.0} MiB", r as f64 / 1048576.0)),
        o.snap_ok,
        o.snap_ms.len(),
        pct(&mut snaps, 0.5),
        o.snap_ms.iter().copied().fold(0.0, f64::max),
        o.window.as_secs(),
        o.fps_min,
        o.fps_mean,
        o.fps_max,
        N - o.snap_ms.len(),
        o.snap_ms.len(),
        o.asked_fps,
        o.fps_max / o.fps_min.max(1e-3),
        o.shed_share,
        o.shed_behind,
        o.shed_overload,
        o.overruns,
        o.cpu,
        o.rss as f64 / 1048576.0,
        m.rss as f64 / 1048576.0,
        m.shm as f64 / 1048576.0,
        m.rings,
        (m.rss.saturating_sub(b.rss_idle)) as f64 / 1048576.0 / N as f64,
        b.rss_idle as f64 / 1048576.0,
        m.decoded_per_s,
        b.rss_idle as f64 / 1048576.0,
        b.rss_burst as f64 / 1048576.0,
        b.rss_after as f64 / 1048576.0,
        (b.rss_after as f64 - b.rss_idle as f64) / 1048576.0,
    );
    println!("{section}");
    write_section(&repo().join("BENCHMARKS.md"), "## When many look at once (P9-P12)", &section);
}
