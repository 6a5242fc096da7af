//! Cluster mode with a real redis-server and several camhub processes on
//! loopback: each camera runs on exactly one node (counted as connections to
//! the test camera), cameras spread evenly, any node serves any camera (pixels
//! checked), a killed node's cameras move within the lease TTL, a clean stop's
//! within about a second, a Redis that restarts without its data never has a
//! camera run twice, a joining node takes its share without dropping a watched
//! stream, and a second node with a taken name refuses to start.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

/// The tests here start many processes: one at a time on a small machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
const TTL: u64 = 3;
const CAMERAS: usize = 6;

struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Redis::start_on(port)
    }

    fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (make deps installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Redis { child, port }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn config(redis: u16, node: &str, camera_url: &str) -> String {
    let mut s = format!(
        "server:\n  rtsp: false\ncluster:\n  redis: redis://127.0.0.1:{redis}\n  node: {node}\n  lease_ttl: {TTL}\ncameras:\n"
    );
    for i in 0..CAMERAS {
        s.push_str(&format!("  cam{i}:\n    url: {camera_url}\n    keep: connected\n"));
    }
    s
}

fn node(redis: u16, name: &str, camera: &RtspServer) -> Hub {
    Hub::start(&config(redis, name, &camera.url()))
}

/// The cameras a node runs itself (its own list, as other nodes ask for it).
fn local(hub: &Hub) -> BTreeSet<String> {
    let r = http_request("GET", &format!("{}/api/cameras", hub.base), &[("x-camhub-forwarded", "test")], None);
    r.json().as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect()
}

/// Waits until the live `nodes` run every camera between them, each once, all
/// streaming; returns who runs what.
fn settled(nodes: &[&Hub], camera: &RtspServer, within: Duration) -> BTreeMap<String, BTreeSet<String>> {
    settled_when(nodes, camera, within, |_| true)
}

/// `settled`, and `also` holds of who runs what.
fn settled_when(
    nodes: &[&Hub],
    camera: &RtspServer,
    within: Duration,
    also: impl Fn(&BTreeMap<String, BTreeSet<String>>) -> bool,
) -> BTreeMap<String, BTreeSet<String>> {
    let deadline = Instant::now() + within;
    loop {
        let owned: BTreeMap<String, BTreeSet<String>> = nodes.iter().map(|n| (n.base.clone(), local(n))).collect();
        let all: Vec<&String> = owned.values().flatten().collect();
        let distinct: BTreeSet<&String> = all.iter().copied().collect();
        let streaming = all.len() == CAMERAS
            && distinct.len() == CAMERAS
            && nodes.iter().all(|n| local(n).iter().all(|c| n.camera(c)["state"] == "streaming"));
        let conns: usize = nodes.iter().map(|n| connections_to(n.pid(), camera.port)).sum();
        if streaming && conns == CAMERAS && also(&owned) {
            return owned;
        }
        assert!(
            Instant::now() < deadline,
            "not settled within {within:?}: {owned:?}, {conns} connections\n{}",
            nodes.iter().map(|n| n.log()).collect::<Vec<_>>().join("\n----\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn three_nodes_run_each_camera_once_and_any_node_answers_for_any_camera() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let redis = Redis::start();
    let camera = RtspServer::start("h264", None);
    let nodes: Vec<Hub> = ["n1", "n2", "n3"].iter().map(|n| node(redis.port, n, &camera)).collect();
    let refs: Vec<&Hub> = nodes.iter().collect();
    let owned = settled(&refs, &camera, Duration::from_secs(30));
    // Even: 2 each give or take one (within ±50%).
    for (n, cams) in &owned {
        assert!((1..=3).contains(&cams.len()), "{n} runs {cams:?}");
        let h = nodes.iter().find(|h| &h.base == n).unwrap();
        assert_eq!(connections_to(h.pid(), camera.port), cams.len(), "{n}: one connection per camera it runs");
    }
    // Any node: a fresh snapshot of every camera, from its owner (pixels checked).
    for via in &nodes {
        for i in 0..CAMERAS {
            let cam = format!("cam{i}");
            let r = via.get(&format!("/api/cameras/{cam}/snapshot.jpg"));
            assert_eq!(r.status, 200, "{cam} via {}: {}", via.base, r.text());
            let owner = owned.iter().find(|(_, c)| c.contains(&cam)).unwrap().0;
            let owner_node = nodes.iter().position(|h| &h.base == owner).unwrap();
            assert_eq!(r.header("x-camhub-node"), Some(["n1", "n2", "n3"][owner_node]), "{cam} via {}", via.base);
            assert!(r.header("x-camhub-fence").unwrap().parse::<u64>().unwrap() > 0);
            assert!((0..CLIP_FRAMES).contains(&Picture::decode(&r.body).barcode()), "{cam}: a picture of the clip");
        }
    }
    // The fleet from any node, each camera with its owner; an MJPEG stream through a non-owner.
    let list = nodes[0].get("/api/cameras").json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), CAMERAS, "{list:?}");
    for c in list {
        assert_eq!(c["state"], "streaming", "{c}");
        assert!(["n1", "n2", "n3"].contains(&c["cluster"]["node"].as_str().unwrap()), "{c}");
    }
    let remote = list.iter().find(|c| c["cluster"]["node"] != "n1").unwrap()["name"].as_str().unwrap().to_owned();
    let mut s = open_mjpeg(&format!("{}/api/cameras/{remote}/stream.mjpeg?width=320", nodes[0].base));
    let (a, _) = read_part(&mut s);
    let (b, jpeg) = read_part(&mut s);
    assert!(b > a && Picture::decode(&jpeg).width == 320);
    let h = nodes[1].get("/api/health").json();
    assert_eq!((h["cluster"]["fleet"].as_u64(), h["cluster"]["unowned"].as_u64()), (Some(6), Some(0)), "{h}");
    assert_eq!(h["cluster"]["nodes"].as_array().unwrap().len(), 3);

    // A camera added through one node's API joins the shared fleet: some node
    // runs it, every node serves it; removed through another, it stops.
    let body = format!(r#"{{"name": "added", "url": "{}", "keep": "connected"}}"#, camera.url());
    let r = nodes[2].send("POST", "/api/cameras", Some(&body));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["name"], "added");
    assert!(r.header("x-camhub-node").is_some());
    assert_eq!(nodes[0].send("POST", "/api/cameras", Some(&body)).status, 409, "the name is taken cluster-wide");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = nodes[1].get("/api/cameras/added/snapshot.jpg");
        if r.status == 200 {
            assert!((0..CLIP_FRAMES).contains(&Picture::decode(&r.body).barcode()));
            break;
        }
        assert!(Instant::now() < deadline, "the added camera never served: {}", r.text());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(nodes[0].get("/api/cameras").json().as_array().unwrap().len(), CAMERAS + 1);
    let conns = |nodes: &[Hub]| nodes.iter().map(|n| connections_to(n.pid(), camera.port)).sum::<usize>();
    assert_eq!(conns(&nodes), CAMERAS + 1, "the added camera runs once");
    assert_eq!(nodes[0].send("DELETE", "/api/cameras/added", None).status, 204);
    let deadline = Instant::now() + Duration::from_secs(15);
    while conns(&nodes) != CAMERAS || nodes[1].get("/api/cameras/added").status != 404 {
        assert!(Instant::now() < deadline, "the removed camera still runs");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The newest record of a camera's Redis stream output: (node, fence).
fn newest_record(redis: u16, cam: &str) -> Option<(String, u64)> {
    let out = Command::new("redis-cli")
        .args(["-p", &redis.to_string(), "-n", "1", "XREVRANGE", &format!("camhub:{cam}"), "+", "-", "COUNT", "1"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let after = |k: &str| lines.iter().position(|l| *l == k).and_then(|i| lines.get(i + 1)).map(|v| v.to_string());
    Some((after("node")?, after("fence")?.parse().ok()?))
}

#[test]
fn a_killed_node_s_cameras_move_within_the_ttl_and_a_clean_stop_s_at_once() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let redis = Redis::start();
    let camera = RtspServer::start("h264", None);
    // Every camera also publishes frame records to a Redis stream (database 1).
    let output = format!(
        "    outputs:\n      events:\n        redis: {{url: \"redis://127.0.0.1:{}/1\", fps: 1}}\n",
        redis.port
    );
    let with_output = |n: &str| {
        let cfg = config(redis.port, n, &camera.url())
            .replace("    keep: connected\n", &format!("    keep: connected\n{output}"));
        Hub::start(&cfg)
    };
    let mut nodes: Vec<Hub> = ["n1", "n2", "n3"].iter().map(|n| with_output(n)).collect();
    let owned = settled(&nodes.iter().collect::<Vec<_>>(), &camera, Duration::from_secs(30));
    let busiest = owned.iter().max_by_key(|(_, c)| c.len()).unwrap().0.clone();
    // The streams' records say who published them, under which lease.
    let moved = owned[&busiest].iter().next().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    let first = loop {
        if let Some(r) = newest_record(redis.port, &moved) {
            break r;
        }
        assert!(Instant::now() < deadline, "no records from {moved}'s redis output");
        std::thread::sleep(Duration::from_millis(200));
    };
    let i = nodes.iter().position(|h| h.base == busiest).unwrap();
    let mut killed = nodes.remove(i);
    let t = Instant::now();
    signal(killed.pid(), "KILL");
    killed.wait_exit(Duration::from_secs(5));
    settled(&nodes.iter().collect::<Vec<_>>(), &camera, Duration::from_secs(TTL + 5));
    let took = t.elapsed();
    assert!(took <= Duration::from_secs(TTL + 5), "taken over in {took:?}");
    let takeovers: u64 =
        nodes.iter().map(|n| n.get("/api/health").json()["cluster"]["takeovers"].as_u64().unwrap()).sum();
    assert!(takeovers >= 1, "counted as takeovers");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (node, fence) = newest_record(redis.port, &moved).unwrap();
        if node != first.0 {
            assert!(fence > first.1, "the new owner's records carry a larger fencing token: {fence} after {}", first.1);
            break;
        }
        assert!(Instant::now() < deadline, "{moved}'s stream never got the new owner's records");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A clean stop hands its cameras over at once (released, not expired).
    let mut stopping = nodes.remove(0);
    let t = Instant::now();
    signal(stopping.pid(), "TERM");
    assert!(stopping.wait_exit(Duration::from_secs(10)).success());
    settled(&[&nodes[0]], &camera, Duration::from_secs(5));
    let took = t.elapsed();
    assert!(took <= Duration::from_secs(2), "a clean stop's cameras moved in {took:?} (the TTL is {TTL} s)");
    assert!(stopping.log().contains("lease(s) released"), "{}", stopping.log());
}

#[test]
fn redis_restarting_without_its_data_never_runs_a_camera_twice() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut redis = Redis::start();
    let camera = RtspServer::start("h264", None);
    let nodes: Vec<Hub> = ["n1", "n2"].iter().map(|n| node(redis.port, n, &camera)).collect();
    let refs: Vec<&Hub> = nodes.iter().collect();
    settled(&refs, &camera, Duration::from_secs(30));
    let port = redis.port;
    let pids: Vec<u32> = nodes.iter().map(Hub::pid).collect();
    let cam_port = camera.port;
    // Sample the camera's connections from every node throughout.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (t0, mut most, mut timeline) = (Instant::now(), 0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let each: Vec<usize> = pids.iter().map(|p| connections_to(*p, cam_port)).collect();
                most = most.max(each.iter().sum::<usize>());
                if timeline.last().is_none_or(|(_, e)| *e != each) {
                    timeline.push((t0.elapsed().as_millis(), each));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (most, timeline)
        })
    };
    redis.kill();
    std::thread::sleep(Duration::from_millis(1500));
    let _redis = Redis::start_on(port);
    // Leases lost with the data: every node sees it, waits out a TTL, then the cameras return.
    for n in &nodes {
        n.wait_log("Redis lost its data", Duration::from_secs(20));
    }
    settled(&refs, &camera, Duration::from_secs(4 * TTL + 10));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (most, timeline) = sampler.join().unwrap();
    assert!(
        most <= CAMERAS,
        "a camera ran on two nodes at once: {most} connections for {CAMERAS} cameras; (ms, per node): {timeline:?}\n{}",
        nodes.iter().map(|n| n.log()).collect::<Vec<_>>().join("\n----\n")
    );
}

#[test]
fn a_joining_node_takes_its_share_without_dropping_a_watched_stream() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let redis = Redis::start();
    let camera = RtspServer::start("h264", None);
    let first = node(redis.port, "n1", &camera);
    settled(&[&first], &camera, Duration::from_secs(30));
    // Every camera on n1; one of them watched (an MJPEG viewer on n1).
    let mut viewer = open_mjpeg(&format!("{}/api/cameras/cam0/stream.mjpeg", first.base));
    let (mut last, _) = read_part(&mut viewer);
    let second = node(redis.port, "n2", &camera);
    let owned = settled_when(&[&first, &second], &camera, Duration::from_secs(30), |o| o[&second.base].len() >= 2);
    let on_second = &owned[&second.base];
    assert!((2..=3).contains(&on_second.len()), "n2 took its share: {owned:?}");
    assert!(owned[&first.base].contains("cam0"), "the watched camera stayed: {owned:?}");
    // The viewer never noticed: its stream goes on, frame after frame.
    for _ in 0..10 {
        let (id, _) = read_part(&mut viewer);
        assert!(id > last);
        last = id;
    }
}

#[test]
fn a_taken_node_name_or_a_missing_redis_is_a_clear_refusal() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let redis = Redis::start();
    let camera = RtspServer::start("h264", None);
    let first = node(redis.port, "same", &camera);
    let run = |yaml: &str| {
        let dir = temp_dir("cluster-refused");
        std::fs::write(dir.join("c.yaml"), yaml).unwrap();
        Command::new(env!("CARGO_BIN_EXE_camhub"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(dir.join("c.yaml"))
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out = run(&config(redis.port, "same", &camera.url())).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("cluster.node \"same\" is in use by a live node at") && err.contains(&first.base), "{err}");

    // No Redis at start: a clear error; with required: false, one node alone.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let yaml = config(dead, "alone", &camera.url()).replace("redis://127.0.0.1:", "redis://:pw-redis@127.0.0.1:");
    let out = run(&yaml).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("cannot reach the cluster's Redis"), "{err}");
    assert!(!err.contains("pw-redis"), "the Redis password stays secret: {err}");
    let mut alone = run(&yaml.replace("  lease_ttl:", "  required: false\n  lease_ttl:"));
    let mut lines = BufReader::new(alone.stdout.take().unwrap()).lines();
    let line = lines.next().expect("listening").unwrap();
    let base = line.strip_prefix("camhub listening on ").unwrap().trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(&format!("{base}/api/cameras/cam0/snapshot.jpg")).status != 200 {
        assert!(Instant::now() < deadline, "the lone node serves its cameras");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(http_get(&format!("{base}/api/cameras")).json().as_array().unwrap().len(), CAMERAS);
    let _ = alone.kill();
    let _ = alone.wait();
}
