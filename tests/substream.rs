//! Sub-streams (`streams: {main, sub}`): two real RTSP servers on loopback, the
//! main sending the 640x360 test clip and the sub a 320x180 copy of it. Requests
//! the sub covers are served from it while the main stays disconnected (its
//! server never sees a session); full-size requests go to the main.

mod common;

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

const SUB_PASSWORD: &str = "5ub-pa55";

/// The test clip scaled to 320x180 (same GOP, no B-frames), made once per test in `dir`.
fn small_clip(dir: &Path) -> PathBuf {
    let out = dir.join("sub-320x180.h264");
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(repo().join("tests/clips/idx-h264.h264"))
        .args([
            "-vf",
            "scale=320:180",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "100",
            "-bf",
            "0",
            "-x264-params",
            "aud=1",
        ])
        .args(["-f", "h264"])
        .arg(&out)
        .status()
        .expect("run ffmpeg");
    assert!(st.success(), "ffmpeg could not make the sub clip");
    out
}

fn sub_url(sub: &RtspServer) -> String {
    format!("rtsp://viewer:{SUB_PASSWORD}@127.0.0.1:{}/cam", sub.port)
}

fn snapshot(hub: &Hub, query: &str) -> (String, (usize, usize)) {
    let r = hub.get(&format!("/api/cameras/gate/snapshot.jpg{query}"));
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    let stream = r.header("x-snapshot-stream").expect("X-Snapshot-Stream").to_owned();
    let pic = Picture::decode(&r.body);
    (stream, (pic.width, pic.height))
}

/// prometheus_client (the venv's) accepts the page, `<name>.sub` rows included.
fn assert_valid_openmetrics(text: &str) {
    use std::io::Write;
    let mut child = Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("tests/support/parse_metrics.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("no .venv: run `make test`, which sets it up");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "prometheus_client rejected /metrics: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn small_requests_use_the_sub_and_the_main_stays_disconnected() {
    let dir = temp_dir("substream");
    let main = RtspServer::start("h264", None);
    let sub = RtspServer::start_clip("h264", &small_clip(&dir), Some(("viewer", SUB_PASSWORD)));
    let hub = Hub::start(&format!(
        "cameras:\n  gate:\n    streams:\n      main: {}\n      sub: {}\n    keep: on_demand\n  plain:\n    url: {}\n    keep: on_demand\n",
        main.url(),
        sub_url(&sub),
        main.url()
    ));
    let cam = hub.camera("gate");
    assert_eq!(cam["state"], "idle", "{cam:#}");
    assert_eq!(cam["sub"]["state"], "idle", "{cam:#}");
    assert_eq!(cam["sub"]["url"], format!("rtsp://127.0.0.1:{}/cam", sub.port), "no credentials: {cam:#}");
    let names: Vec<String> =
        hub.get("/api/cameras").json().as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().into()).collect();
    assert_eq!(names, ["gate", "plain"], "the sub is not a camera of its own");

    // The sub's size is not known yet: it is tried, and it covers 320 px.
    assert_eq!(snapshot(&hub, "?width=320"), ("sub".into(), (320, 180)));
    // Known now: smaller requests go straight to it, and the tiles' request too.
    assert_eq!(snapshot(&hub, "?width=160"), ("sub".into(), (160, 90)));
    assert_eq!(snapshot(&hub, "?keyframe=true&height=180&quality=70"), ("sub".into(), (320, 180)));
    assert_eq!(snapshot(&hub, "?stream=sub"), ("sub".into(), (320, 180)), "forced");
    // An MJPEG viewer of a size the sub covers is fed by it.
    {
        let url = format!("{}/api/cameras/gate/stream.mjpeg?width=320", hub.base);
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(30))).build().into();
        let r = agent.get(&url).call().unwrap();
        assert_eq!(r.headers()["x-snapshot-stream"], "sub");
        let mut body = BufReader::new(r.into_body().into_reader());
        for _ in 0..2 {
            let (_, jpeg) = read_part(&mut body);
            let pic = Picture::decode(&jpeg);
            assert_eq!((pic.width, pic.height), (320, 180));
        }
        let cam = hub.camera("gate");
        assert_eq!(cam["sub"]["leases"]["variants"][0]["leases"], 1, "{cam:#}");
    }
    // All that without the main: its server never saw a session.
    assert_eq!(main.sent().count, 0, "the main stream was never played");
    let cam = hub.camera("gate");
    assert_eq!((cam["state"].as_str(), cam["tier"].as_str()), (Some("idle"), Some("idle")), "{cam:#}");
    assert_eq!(cam["counters"]["units_in"], 0, "{cam:#}");
    assert_eq!((cam["sub"]["width"].as_u64(), cam["sub"]["height"].as_u64()), (Some(320), Some(180)), "{cam:#}");
    assert!(sub.sent().count > 0);

    // Full size, a size the sub cannot cover, or forced: the main.
    assert_eq!(snapshot(&hub, ""), ("main".into(), (640, 360)));
    assert_eq!(snapshot(&hub, "?width=480"), ("main".into(), (480, 270)));
    assert_eq!(snapshot(&hub, "?width=160&stream=main"), ("main".into(), (160, 90)));
    assert!(main.sent().count > 0);

    // A camera without a sub-stream cannot be asked for one; a bad value is a 400.
    let r = hub.get("/api/cameras/plain/snapshot.jpg?stream=sub");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("no sub-stream"), "{}", r.text());
    assert_eq!(hub.get("/api/cameras/gate/snapshot.jpg?stream=side").status, 400);
    assert_eq!(hub.get("/api/cameras/plain/stream.mjpeg?stream=sub").status, 400);

    // The sub's rows are on /metrics, its password nowhere.
    let metrics = hub.get("/metrics").text();
    assert!(metrics.contains("camhub_camera_state{camera=\"gate.sub\",state=\"streaming\"} 1"), "{metrics}");
    assert_valid_openmetrics(&metrics);
    for text in [hub.get("/api/cameras").text(), metrics, hub.log()] {
        assert!(!text.contains(SUB_PASSWORD), "the sub's password leaked: {text}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_output_from_the_sub_leaves_the_main_idle() {
    let dir = temp_dir("substream-out");
    let shm = dir.join("shm");
    std::fs::create_dir_all(&shm).unwrap();
    let main = RtspServer::start("h264", None);
    let sub = RtspServer::start_clip("h264", &small_clip(&dir), Some(("viewer", SUB_PASSWORD)));
    let hub = Hub::start_env(
        &format!(
            "cameras:\n  gate:\n    url: {}\n    streams: {{sub: \"{}\"}}\n    keep: on_demand\n    outputs:\n      ai:\n        shm: {{from: sub, demand: always, format: gray, fps: 5}}\n",
            main.url(),
            sub_url(&sub)
        ),
        &[("CAMHUB_SHM_DIR", shm.to_str().unwrap())],
    );
    let cam = hub.wait_camera("gate", "publishing from the sub", Duration::from_secs(20), |c| {
        c["outputs"][0]["published"].as_u64() >= Some(3)
    });
    assert_eq!(cam["outputs"][0]["ring"], shm.join("camhub.gate.ai").display().to_string(), "named by the camera");
    assert_eq!(cam["sub"]["state"], "streaming", "{cam:#}");
    assert_eq!((cam["sub"]["width"].as_u64(), cam["sub"]["height"].as_u64()), (Some(320), Some(180)), "{cam:#}");
    assert_eq!(cam["sub"]["leases"]["decoding"], 1, "the output's lease is on the sub: {cam:#}");
    assert_eq!(cam["leases"]["decoding"], 0, "{cam:#}");
    assert_eq!(cam["state"], "idle", "{cam:#}");
    assert_eq!(main.sent().count, 0, "the main stream was never played");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_api_adds_a_camera_with_a_sub_stream_and_never_shows_its_password() {
    let hub = Hub::start("cameras: {}\n");
    let body = format!(
        r#"{{"name": "door", "keep": "on_demand", "streams": {{"main": "rtsp://127.0.0.1:9/main", "sub": "rtsp://viewer:{SUB_PASSWORD}@127.0.0.1:9/sub"}}}}"#
    );
    let r = hub.send("POST", "/api/cameras", Some(&body));
    assert_eq!(r.status, 201, "{}", r.text());
    let cam = r.json();
    assert_eq!(cam["url"], "rtsp://127.0.0.1:9/main");
    assert_eq!(cam["sub"]["url"], "rtsp://127.0.0.1:9/sub", "{cam:#}");
    assert!(!r.text().contains(SUB_PASSWORD));
    // The same keys and checks as the file: one main stream, and from: sub needs a sub.
    let r = hub.send("PUT", "/api/cameras/door", Some(r#"{"url": "rtsp://h/a", "streams": {"main": "rtsp://h/b"}}"#));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("not both"), "{}", r.text());
    let r = hub.send(
        "PUT",
        "/api/cameras/door",
        Some(r#"{"url": "rtsp://h/a", "outputs": {"x": {"shm": {"from": "sub"}}}}"#),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // Replaced by a camera without one: no sub object any more.
    let r = hub.send("PUT", "/api/cameras/door", Some(r#"{"url": "rtsp://127.0.0.1:9/main", "keep": "on_demand"}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["sub"].is_null());
    assert_eq!(hub.send("DELETE", "/api/cameras/door", None).status, 204);
    assert!(!hub.log().contains(SUB_PASSWORD));
}
