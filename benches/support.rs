//! What the benchmarks share: the 720p test stream, a GStreamer RTSP server
//! serving it, percentiles, and writing one section of BENCHMARKS.md.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const FPS: u32 = 6;
pub const GOP: usize = 60;
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 720;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// 720p, 6 fps, ~1 Mbit/s, a keyframe every 10 s, frames numbered by a barcode (made once).
pub fn make_720p_clip() -> PathBuf {
    let dir = repo().join("target/bench-clips");
    std::fs::create_dir_all(&dir).unwrap();
    let clip = dir.join("720p6-gop10s.h264");
    if !clip.exists() {
        eprintln!("making the 720p bench clip with ffmpeg...");
        let barcode = "geq=lum='if(lt(Y,40),255*mod(floor(N/pow(2,floor(X/40))),2),lum(X,Y))':cb='if(lt(Y,40),128,cb(X,Y))':cr='if(lt(Y,40),128,cr(X,Y))'";
        let st = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=s={WIDTH}x{HEIGHT}:r={FPS}:d=60,{barcode}"))
            .args(["-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "1M"])
            .args(["-maxrate", "1.2M", "-bufsize", "2M", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0"])
            .args(["-bf", "0", "-x264-params", "aud=1:repeat-headers=1", "-f", "h264"])
            .arg(&clip)
            .status()
            .unwrap();
        assert!(st.success());
    }
    clip
}

/// A child process, killed on drop.
pub struct Server(pub Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_rtsp_server(clip: &Path) -> (Server, String) {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(repo().join("tests/support/rtsp_server.py")).arg("--clip").arg(clip).args([
        "--codec",
        "h264",
        "--fps",
        &FPS.to_string(),
        "--quiet",
    ]);
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let line = BufReader::new(child.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    let port: u16 = line.trim_start_matches("PORT ").trim().parse().unwrap();
    (Server(child), format!("rtsp://127.0.0.1:{port}/cam"))
}

/// `camhub serve --config cfg` on a free loopback port: the process and its base URL.
pub fn start_hub(bin: &str, cfg: &Path) -> (Server, String) {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"]).arg(cfg).stderr(Stdio::null());
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let line = BufReader::new(child.stdout.take().unwrap()).lines().next().unwrap().unwrap();
    (Server(child), line.trim_start_matches("camhub listening on ").trim().to_string())
}

pub fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Date and commit of this run.
pub fn stamp() -> String {
    let out =
        |c: &mut Command| c.output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    let date = out(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]));
    let commit = out(Command::new("git").args(["rev-parse", "--short", "HEAD"]));
    format!("{date}, commit {commit}")
}

/// Cores and CPU model.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    format!("{} cores ({cpu})", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0))
}

/// Replaces (or appends) one `## ` section of BENCHMARKS.md, keeping the others.
pub fn write_section(path: &Path, heading: &str, section: &str) {
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# camhub benchmarks\n\nEvery figure is measured side by side with its reference in one run on the \
         same machine (see `../shared/design/PERFORMANCE.md` for the targets). Regenerate with the command \
         given in each section.\n\n"
            .to_string()
    });
    let out = match old.find(heading) {
        Some(start) => {
            let end = old[start + heading.len()..].find("\n## ").map_or(old.len(), |e| start + heading.len() + e + 1);
            format!("{}{}{}", &old[..start], section, &old[end..])
        }
        None => format!("{}{}", old, section),
    };
    std::fs::write(path, out).unwrap();
}

/// Like `write_section`, but a new section goes first (before every other `## `).
pub fn write_section_first(path: &Path, heading: &str, section: &str) {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    if old.contains(heading) {
        return write_section(path, heading, section);
    }
    let out = match old.find("\n## ") {
        Some(i) => format!("{}{}{}", &old[..=i], section, &old[i + 1..]),
        None => format!("{old}{section}"),
    };
    std::fs::write(path, out).unwrap();
}

/// Every table row of BENCHMARKS.md that reports a PERFORMANCE.md scenario
/// (its first cell starts with `P<n>`), plus the WebRTC first-picture row: the
/// scenario and the rest of its cells, in P order.
pub fn scenario_rows(text: &str) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = h.to_string();
            continue;
        }
        if section.starts_with("Summary") || !line.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let first = cells.first().copied().unwrap_or("");
        let webrtc = section.starts_with("WebRTC") && first.starts_with("first picture");
        let is_p = first.len() > 1 && first.starts_with('P') && first.as_bytes()[1].is_ascii_digit();
        if is_p || webrtc {
            let name = if webrtc { format!("WebRTC {first}") } else { first.to_string() };
            let rest: Vec<&str> = cells[1..].iter().copied().filter(|c| !c.is_empty()).collect();
            rows.push((name, rest.join(" · ")));
        }
    }
    let number = |n: &str| -> u32 {
        let digits: String = n.strip_prefix('P').unwrap_or("").chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap_or(99)
    };
    rows.sort_by_key(|(n, _)| number(n));
    rows
}

/// CPU seconds (utime + stime) and resident bytes of a process, from /proc (0 if gone).
pub fn proc_stat(pid: u32) -> (f64, u64) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return (0.0, 0) };
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cpu = (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0;
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0u64);
    (cpu, rss * 1024)
}

pub fn cpu_seconds(pid: u32) -> f64 {
    proc_stat(pid).0
}

/// CPU (% of one core, summed) and summed RSS (bytes, at the end) of `pids` over `window`.
pub fn sample(pids: &[u32], window: Duration) -> (f64, u64) {
    let c0: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let t0 = Instant::now();
    std::thread::sleep(window);
    let (c1, rss) = pids.iter().map(|p| proc_stat(*p)).fold((0.0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    ((c1 - c0) / t0.elapsed().as_secs_f64() * 100.0, rss)
}

/// A reference run: `children` (one process per camera) settle for `warmup`, then
/// their CPU and RSS over `window`; they are killed after.
pub fn measure_references(children: Vec<Child>, warmup: Duration, window: Duration) -> (f64, u64) {
    std::thread::sleep(warmup);
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    let r = sample(&pids, window);
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    r
}

/// GET `url` as JSON (null if it is not JSON).
pub fn get_json(url: &str) -> serde_json::Value {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut r = agent.get(url).call().unwrap();
    serde_json::from_slice(&r.body_mut().read_to_vec().unwrap()).unwrap_or_default()
}

/// `Some(quick)` when run as a benchmark (`cargo bench` passes `--bench`); otherwise
/// (`cargo test` building benches) says how to run it and gives `None`.
pub fn bench_mode(name: &str) -> Option<bool> {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("{name} benchmark: run with `make bench` or `cargo bench --bench {name}`");
        return None;
    }
    Some(args.iter().any(|a| a == "--quick"))
}
