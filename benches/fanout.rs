//! P5 and P6 of PERFORMANCE.md: one camera (720p, 6 fps, ~1 Mbit/s H.264 from
//! GStreamer's RTSP server on loopback), many clients of the real `camhub` binary.
//!
//! P5: 500 clients each poll a snapshot once a second (random phase, keep-alive):
//!     JPEG encodes per second against the camera's fps, latency, camhub's CPU.
//! P6: 200 MJPEG viewers plus one that never reads: frames each viewer got
//!     against frames made, camhub's CPU.
//!
//! `cargo bench --bench fanout [-- --quick]`; writes its section of BENCHMARKS.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as TokioBufReader};
use tokio::net::TcpStream;

#[path = "support.rs"]
mod support;
use support::*;

/// One keep-alive HTTP/1.1 GET; returns the status and the body length.
async fn get(conn: &mut TokioBufReader<TcpStream>, host: &str, path: &str) -> std::io::Result<(u16, usize)> {
    conn.get_mut().write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await?;
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut len = 0usize;
    loop {
        line.clear();
        conn.read_line(&mut line).await?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).await?;
    Ok((status, len))
}

fn camera_counter(base: &str, key: &str) -> u64 {
    get_json(&format!("{base}/api/cameras/cam"))["counters"][key].as_u64().unwrap()
}

fn main() {
    let Some(quick) = bench_mode("fanout") else { return };
    let window = Duration::from_secs(if quick { 8 } else { 20 });
    let (pollers, viewers) = (500usize, 200usize);
    let clip = make_720p_clip();
    let (_server, url) = start_rtsp_server(&clip);
    let dir = std::env::temp_dir().join(format!("camhub-fanout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("fanout.yaml");
    std::fs::write(&cfg, format!("cameras:\n  cam:\n    url: {url}\n    keep: decoded\n")).unwrap();
    let (hub, base) = start_hub(env!("CARGO_BIN_EXE_camhub"), &cfg);
    let pid = hub.0.id();
    let host = base.trim_start_matches("http://").to_string();
    while camera_counter(&base, "frames_decoded") < 12 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();

    // Idle baseline: decoding one camera with nobody asking.
    let (c0, d0) = (cpu_seconds(pid), camera_counter(&base, "frames_decoded"));
    std::thread::sleep(Duration::from_secs(5));
    let idle_cpu = (cpu_seconds(pid) - c0) / 5.0 * 100.0;
    let idle_fps = (camera_counter(&base, "frames_decoded") - d0) as f64 / 5.0;

    // P5: 500 pollers, once a second each, random phase.
    eprintln!("P5: {pollers} clients polling snapshots for {} s...", window.as_secs());
    let (e0, f0, c0) =
        (camera_counter(&base, "jpeg_encodes"), camera_counter(&base, "frames_decoded"), cpu_seconds(pid));
    let started = Instant::now();
    let lat: Vec<f64> = rt.block_on(async {
        let tasks: Vec<_> = (0..pollers)
            .map(|i| {
                let host = host.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    let phase = Duration::from_millis((i as u64 * 7919) % 1000);
                    tokio::time::sleep(phase).await;
                    let mut conn = TokioBufReader::new(TcpStream::connect(&host).await.unwrap());
                    let mut next = Instant::now();
                    while started.elapsed() < window {
                        let t = Instant::now();
                        let (status, len) = get(&mut conn, &host, "/api/cameras/cam/snapshot.jpg").await.unwrap();
                        assert!(status == 200 && len > 1000);
                        out.push(t.elapsed().as_secs_f64() * 1e3);
                        next += Duration::from_secs(1);
                        tokio::time::sleep_until(next.into()).await;
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let secs = started.elapsed().as_secs_f64();
    let p5_cpu = (cpu_seconds(pid) - c0) / secs * 100.0;
    let encodes = (camera_counter(&base, "jpeg_encodes") - e0) as f64 / secs;
    let fps = (camera_counter(&base, "frames_decoded") - f0) as f64 / secs;
    let rps = lat.len() as f64 / secs;

    // P6: 200 viewers and one that never reads.
    eprintln!("P6: {viewers} MJPEG viewers (+1 stalled) for {} s...", window.as_secs());
    let stop = Arc::new(AtomicBool::new(false));
    let (p6_frames, p6_cpu, made) = rt.block_on(async {
        let mut stalled = TcpStream::connect(&host).await.unwrap();
        stalled
            .write_all(format!("GET /api/cameras/cam/stream.mjpeg HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let counts: Vec<Arc<AtomicU64>> = (0..viewers).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let mut tasks = Vec::new();
        for n in &counts {
            let (host, n, stop) = (host.clone(), n.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut s = TcpStream::connect(&host).await.unwrap();
                s.write_all(format!("GET /api/cameras/cam/stream.mjpeg HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
                let mut buf = vec![0u8; 256 * 1024];
                let mut seen = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let k = match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        Ok(Ok(k)) => k,
                        Err(_) => continue,
                    };
                    // Count part headers as they stream by.
                    seen += buf[..k].windows(13).filter(|w| *w == b"--camhubframe").count();
                    n.store(seen as u64, Ordering::Relaxed);
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await; // all connected and streaming
        let start: Vec<u64> = counts.iter().map(|n| n.load(Ordering::Relaxed)).collect();
        let (e0, c0, t0) = (camera_counter(&base, "jpeg_encodes"), cpu_seconds(pid), Instant::now());
        tokio::time::sleep(window).await;
        let secs = t0.elapsed().as_secs_f64();
        let made = camera_counter(&base, "jpeg_encodes") - e0;
        let cpu = (cpu_seconds(pid) - c0) / secs * 100.0;
        let got: Vec<u64> = counts.iter().zip(&start).map(|(n, s)| n.load(Ordering::Relaxed) - s).collect();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        drop(stalled);
        (got, cpu, made)
    });
    drop(hub);
    let _ = std::fs::remove_dir_all(&dir);

    let frac: Vec<f64> = p6_frames.iter().map(|g| *g as f64 / made.max(1) as f64).collect();
    let min_frac = frac.iter().cloned().fold(f64::MAX, f64::min);
    let mean_frac = frac.iter().sum::<f64>() / frac.len() as f64;
    let rows = [
        format!(
            "| idle: one camera decoding, nobody asking | {idle_fps:.1} fps decoded | {idle_cpu:.1}% of a core | | |"
        ),
        format!(
            "| P5: {pollers} clients polling snapshots 1/s | {rps:.0} req/s; p50 {:.1} ms, p99 {:.1} ms | {p5_cpu:.1}% of a core | {encodes:.2} encodes/s for {fps:.2} frames/s ({:.2}x) | encodes/s = fps; p99 < 20 ms |",
            pct(&mut lat.clone(), 0.5),
            pct(&mut lat.clone(), 0.99),
            encodes / fps.max(0.01),
        ),
        format!(
            "| P6: {viewers} MJPEG viewers + 1 stalled | {made} frames made; each viewer got min {:.1}%, mean {:.1}% | {p6_cpu:.1}% of a core | one encode per frame for all viewers | < 15% of a core; every viewer >= 95% |",
            min_frac * 100.0,
            mean_frac * 100.0,
        ),
    ];
    let section = format!(
        "## Fan-out (P5, P6)\n\n\
         Command: `make bench` (`cargo bench --bench fanout{}`), {}, {}.\n\
         One camera: GStreamer RTSP server on loopback, H.264 1280x720, 6 fps, ~1 Mbit/s, `keep: decoded`; \
         camhub release build; clients in the same process as this bench (tokio, keep-alive HTTP/1.1), on the \
         same 2 cores, over {} s windows. CPU is camhub's own (utime+stime from /proc) and includes decoding \
         the camera.\n\n\
         | scenario | what clients saw | camhub CPU | encodes | target |\n|---|---|---|---|---|\n{}\n\n",
        if quick { " -- --quick" } else { "" },
        stamp(),
        machine(),
        window.as_secs(),
        rows.join("\n"),
    );
    println!("{section}");
    write_section(&repo().join("BENCHMARKS.md"), "## Fan-out (P5, P6)", &section);
}
