//! Cluster mode (issue 16) against the camera-fleet simulator and a real
//! redis-server, all on this machine:
//!
//! Cost: 100 connected cameras (P1's load) on one plain node, on one node in a
//!       cluster, and spread over three nodes: CPU and RSS of the nodes, Redis's
//!       CPU and commands per second.
//! Takeover: SIGKILL of the busiest of three nodes, repeated: time until every
//!       camera runs again on the others (streaming), at the tests' `lease_ttl: 3`
//!       and at the default 10 s.
//! Scale-out: three nodes with 100 cameras each (300 in all) against one node
//!       with 100: CPU per camera. (One machine: the nodes share its cores; on
//!       three hosts each node's figure is what it costs there.)
//!
//! `cargo bench --bench cluster [-- --quick]` writes its section of BENCHMARKS.md.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support.rs"]
mod support;
use support::*;

mod sim;

struct Redis(Server, u16);

fn redis() -> Redis {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    Redis(Server(child), port)
}

/// `INFO stats` total_commands_processed.
fn redis_commands(port: u16) -> u64 {
    let out = Command::new("redis-cli").args(["-p", &port.to_string(), "INFO", "stats"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn config(sim: u16, cams: std::ops::Range<usize>, cluster: Option<(u16, &str, u64)>) -> String {
    let mut s = String::from("server:\n  rtsp: false\n");
    if let Some((port, node, ttl)) = cluster {
        s += &format!("cluster:\n  redis: redis://127.0.0.1:{port}\n  node: {node}\n  lease_ttl: {ttl}\n");
    }
    s += "cameras:\n";
    for k in cams {
        s += &format!("  c{k}:\n    url: rtsp://127.0.0.1:{sim}/cam{k}\n    keep: connected\n");
    }
    s
}

fn start(dir: &std::path::Path, name: &str, yaml: &str) -> (Server, String) {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    start_hub(env!("CARGO_BIN_EXE_camhub"), &path)
}

/// Cameras streaming on this node (its own list).
fn streaming_here(base: &str) -> usize {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let Ok(mut r) = agent.get(&format!("{base}/api/cameras")).header("x-camhub-forwarded", "bench").call() else {
        return 0;
    };
    let v: serde_json::Value =
        serde_json::from_slice(&r.body_mut().read_to_vec().unwrap_or_default()).unwrap_or_default();
    v.as_array().map_or(0, |a| a.iter().filter(|c| c["state"] == "streaming").count())
}

fn wait_streaming(bases: &[&str], n: usize, within: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if bases.iter().map(|b| streaming_here(b)).sum::<usize>() >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

struct Cost {
    cpu: f64,
    rss: u64,
    redis_cpu: f64,
    commands_per_s: f64,
}

/// 100 cameras over `nodes` nodes (0: no cluster): the nodes' CPU and RSS, Redis's.
fn cost(sim: u16, dir: &std::path::Path, nodes: usize, window: Duration) -> Cost {
    let r = redis();
    let hubs: Vec<(Server, String)> = if nodes == 0 {
        vec![start(dir, "plain", &config(sim, 0..100, None))]
    } else {
        (0..nodes)
            .map(|i| start(dir, &format!("n{i}"), &config(sim, 0..100, Some((r.1, &format!("n{i}"), 10)))))
            .collect()
    };
    let bases: Vec<&str> = hubs.iter().map(|h| h.1.as_str()).collect();
    assert!(wait_streaming(&bases, 100, Duration::from_secs(60)), "100 cameras never streamed");
    std::thread::sleep(Duration::from_secs(2));
    let c0 = redis_commands(r.1);
    let redis_c0 = cpu_seconds(r.0.0.id());
    let t0 = Instant::now();
    let pids: Vec<u32> = hubs.iter().map(|h| h.0.0.id()).collect();
    let (cpu, rss) = sample(&pids, window);
    let secs = t0.elapsed().as_secs_f64();
    Cost {
        cpu,
        rss,
        redis_cpu: (cpu_seconds(r.0.0.id()) - redis_c0) / secs * 100.0,
        commands_per_s: (redis_commands(r.1) - c0) as f64 / secs,
    }
}

/// Takeover times (s) over `kills` SIGKILLs of the busiest of three nodes.
fn takeovers(sim: u16, dir: &std::path::Path, ttl: u64, kills: usize) -> Vec<f64> {
    let r = redis();
    let yaml = |i: usize| config(sim, 0..30, Some((r.1, &format!("n{i}"), ttl)));
    let mut hubs: Vec<Option<(Server, String)>> =
        (0..3).map(|i| Some(start(dir, &format!("t{i}"), &yaml(i)))).collect();
    let mut out = Vec::new();
    for k in 0..kills {
        let bases: Vec<String> = hubs.iter().flatten().map(|h| h.1.clone()).collect();
        let refs: Vec<&str> = bases.iter().map(String::as_str).collect();
        if !wait_streaming(&refs, 30, Duration::from_secs(60)) {
            eprintln!("kill {k}: not settled before the kill; skipped");
            continue;
        }
        let busiest = (0..3).max_by_key(|i| hubs[*i].as_ref().map_or(0, |h| streaming_here(&h.1))).unwrap();
        let t = Instant::now();
        drop(hubs[busiest].take()); // SIGKILL
        let rest: Vec<String> = hubs.iter().flatten().map(|h| h.1.clone()).collect();
        let refs: Vec<&str> = rest.iter().map(String::as_str).collect();
        if wait_streaming(&refs, 30, Duration::from_secs(ttl * 3 + 30)) {
            out.push(t.elapsed().as_secs_f64());
            eprintln!("kill {k} (ttl {ttl} s): {:.2} s", t.elapsed().as_secs_f64());
        }
        // Back again under its name (it waits out its old key), before the next kill.
        hubs[busiest] = Some(start(dir, &format!("t{busiest}"), &yaml(busiest)));
    }
    out
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let sim = sim::start(&rt, &make_720p_clip(), FPS as f64, 0).port;
    let Some(quick) = bench_mode("cluster") else { return };
    let window = Duration::from_secs(if quick { 5 } else { 15 });
    let dir = std::env::temp_dir().join(format!("camhub-cluster-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    eprintln!("cost: 100 cameras, plain / 1-node cluster / 3-node cluster...");
    let plain = cost(sim, &dir, 0, window);
    let one = cost(sim, &dir, 1, window);
    let three = cost(sim, &dir, 3, window);

    eprintln!("scale-out: 3 nodes x 100 cameras...");
    let scale = {
        let r = redis();
        let hubs: Vec<(Server, String)> = (0..3)
            .map(|i| {
                // Each node's file names all 300: the fleet is shared.
                start(&dir, &format!("s{i}"), &config(sim, 0..300, Some((r.1, &format!("s{i}"), 10))))
            })
            .collect();
        let bases: Vec<&str> = hubs.iter().map(|h| h.1.as_str()).collect();
        let ok = wait_streaming(&bases, 300, Duration::from_secs(90));
        std::thread::sleep(Duration::from_secs(2));
        let pids: Vec<u32> = hubs.iter().map(|h| h.0.0.id()).collect();
        let (cpu, rss) = sample(&pids, window);
        (ok, cpu, rss)
    };

    let kills = if quick { 3 } else { 10 };
    eprintln!("takeover: {kills} kills at lease_ttl 3 s...");
    let mut fast = takeovers(sim, &dir, 3, kills);
    let mut slow = if quick { Vec::new() } else { takeovers(sim, &dir, 10, 5) };
    let _ = std::fs::remove_dir_all(&dir);

    let mib = |b: u64| b as f64 / 1048576.0;
    let dist = |v: &mut Vec<f64>| {
        if v.is_empty() {
            return "not run (--quick)".to_string();
        }
        let n = v.len();
        format!("{n} kills: min {:.2} s, p50 {:.2} s, max {:.2} s", pct(v, 0.0), pct(v, 0.5), pct(v, 1.0))
    };
    let section = format!(
        "## Cluster mode (issue 16)\n\n`cargo bench --bench cluster{}` ({}; {}). The fleet simulator's 720p 6 fps \
         streams, `keep: connected` (P1's load), a real redis-server; every node on this one machine.\n\n\
         | what | CPU (% of a core) | RSS | Redis CPU | Redis commands/s (as Redis counts them: a script and the commands it runs) |\n|---|---|---|---|---|\n\
         | 100 cameras, one plain node | {:.1}% | {:.0} MiB | - | - |\n\
         | 100 cameras, a one-node cluster | {:.1}% | {:.0} MiB | {:.1}% | {:.0} |\n\
         | 100 cameras over three nodes (all three) | {:.1}% | {:.0} MiB | {:.1}% | {:.0} |\n\
         | 300 cameras over three nodes (all three){} | {:.1}% ({:.2}% per camera; one plain node: {:.2}%) | {:.0} MiB | | |\n\n\
         Being in a cluster costs the lease renewals (every third of `lease_ttl`, one pipelined round trip for all a \
         node holds) and one look per step (a fifth of the TTL, at most 1 s: node key, live nodes, every camera's \
         lease). Takeover after SIGKILL of the busiest of three nodes (30 cameras; time until all 30 stream again on \
         the other two): lease_ttl 3 s: {}; lease_ttl 10 s: {}. The bound is the TTL (the dead node's leases must \
         expire) plus a step and the cameras' reconnect. Scale-out: one machine cannot show it (the nodes share its \
         cores); the per-camera CPU above is what each node spends, so three hosts carry three times one host's \
         cameras at the same per-node cost.\n\n",
        if quick { " -- --quick" } else { "" },
        stamp(),
        machine(),
        plain.cpu,
        mib(plain.rss),
        one.cpu,
        mib(one.rss),
        one.redis_cpu,
        one.commands_per_s,
        three.cpu,
        mib(three.rss),
        three.redis_cpu,
        three.commands_per_s,
        if scale.0 { "" } else { " (not all streamed)" },
        scale.1,
        scale.1 / 300.0,
        plain.cpu / 100.0,
        mib(scale.2),
        dist(&mut fast),
        dist(&mut slow),
    );
    println!("{section}");
    write_section(&repo().join("BENCHMARKS.md"), "## Cluster mode (issue 16)", &section);
}
