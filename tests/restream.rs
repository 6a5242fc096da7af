//! The RTSP restream against real clients: ffmpeg over TCP and UDP, OpenCV's
//! VideoCapture and GStreamer's rtspsrc play `rtsp://HOST:PORT/<camera>` and
//! decode the test clip (pixels checked); many clients share the hub's one
//! upstream connection; auth, unknown paths and garbage get RTSP answers.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A hub restreaming camera `door` of `server`, and its RTSP port.
fn hub_with(server: &RtspServer, server_yaml: &str, camera_yaml: &str) -> (Hub, u16) {
    let cfg = format!(
        "server:\n  rtsp:\n    listen: 127.0.0.1:0\n{server_yaml}cameras:\n  door:\n    url: {}\n{camera_yaml}",
        server.url()
    );
    let hub = Hub::start(&cfg);
    let rtsp = hub.get("/api/health").json()["rtsp"].clone();
    let port = rtsp["port"].as_u64().unwrap_or_else(|| panic!("no RTSP port: {rtsp}\n{}", hub.log()));
    (hub, port as u16)
}

/// The JPEGs in a stream of concatenated ones.
fn split_jpegs(b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = None;
    for i in 0..b.len().saturating_sub(1) {
        if b[i] == 0xff && b[i + 1] == 0xd8 && start.is_none() {
            start = Some(i);
        } else if b[i] == 0xff
            && b[i + 1] == 0xd9
            && let Some(s) = start.take()
        {
            out.push(b[s..i + 2].to_vec());
        }
    }
    out
}

/// ffmpeg plays `url` over `transport` and returns its first `frames` pictures
/// (as JPEGs), or its error output.
fn ffmpeg_frames(url: &str, transport: &str, frames: usize) -> Result<Vec<Vec<u8>>, String> {
    let out = Command::new("timeout")
        .args(["30", "ffmpeg", "-hide_banner", "-loglevel", "error", "-rtsp_transport", transport, "-i", url])
        // Every decoded frame, whatever its timestamp (no frame-rate conversion).
        .args(["-fps_mode", "passthrough", "-vf", "setpts=N/10/TB", "-frames:v", &frames.to_string()])
        .args(["-f", "image2pipe", "-c:v", "mjpeg", "-q:v", "3", "-"])
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg");
    let pictures = split_jpegs(&out.stdout);
    if out.status.success() && pictures.len() == frames {
        Ok(pictures)
    } else {
        Err(format!("ffmpeg {}: {} pictures; {}", out.status, pictures.len(), String::from_utf8_lossy(&out.stderr)))
    }
}

/// The clip's frames, in order and real: each picture has colour, and their
/// barcodes (clip indexes) rise one at a time, bar the wrap of the clip.
fn assert_clip_frames(pictures: &[Vec<u8>]) {
    let codes: Vec<i64> = pictures.iter().map(|j| Picture::decode(j).barcode()).collect();
    for (j, code) in pictures.iter().zip(&codes) {
        let p = Picture::decode(j);
        assert!(p.colour_spread() > 20.0, "a real picture, not grey: barcode {code}");
    }
    for w in codes.windows(2) {
        assert_eq!(clip_diff(w[1], w[0]), 1, "consecutive frames of the clip: {codes:?}");
    }
}

#[test]
fn ffmpeg_plays_the_restream_over_tcp_and_udp_starting_at_the_newest_picture() {
    let server = RtspServer::start("h264", None);
    let (hub, port) = hub_with(&server, "", "    keep: connected\n");
    hub.wait_streaming("door");
    let url = format!("rtsp://127.0.0.1:{port}/door");
    for transport in ["tcp", "udp"] {
        let pictures = ffmpeg_frames(&url, transport, 12).unwrap_or_else(|e| panic!("{transport}: {e}\n{}", hub.log()));
        assert_clip_frames(&pictures);
    }
    // The GOP cache comes first (from its keyframe, older than the client), paced
    // fast: reading as many pictures as the cache holds, and a few more, ends near
    // the newest the camera sent, not `cached` pictures behind it as a replay at
    // the camera's own pace would. A cache of 30+ pictures (3 s at 10 fps) tells
    // the two apart; the margin grows with it, as a loaded machine's lag does.
    let deadline = Instant::now() + Duration::from_secs(15);
    let before = loop {
        let at = server.sent().index;
        if at % GOP >= 29 {
            break at;
        }
        assert!(Instant::now() < deadline, "the camera never got 30 frames into a GOP: at {at}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let cached = before % GOP + 1;
    let pictures = ffmpeg_frames(&url, "tcp", cached as usize + 5).unwrap();
    let first = Picture::decode(&pictures[0]).barcode();
    let last = Picture::decode(pictures.last().unwrap()).barcode();
    let newest = server.sent().index;
    assert_eq!(first % GOP, 0, "the first picture is a keyframe's: {first}");
    assert!((-5..GOP).contains(&clip_diff(before, first)), "from the cache: keyframe {first}, camera was at {before}");
    let lag = clip_diff(newest, last).abs();
    assert!(lag <= 5 + cached / 2, "the restream caught up: read {last}, camera at {newest}, {cached} cached");
    let h = hub.get("/api/health").json();
    assert_eq!(h["rtsp"]["sessions"], 3, "three clients so far: {}", h["rtsp"]);
}

#[test]
fn twenty_clients_share_the_hubs_one_connection_to_an_on_demand_camera() {
    let server = RtspServer::start("h264", None);
    let (hub, port) = hub_with(&server, "", "    keep: on_demand\n    connect_linger: 2\n");
    assert_eq!(connections_to(hub.pid(), server.port), 0, "nobody asked yet: no connection");
    let url = format!("rtsp://127.0.0.1:{port}/door");
    let mut clients: Vec<_> = (0..20)
        .map(|_| {
            Command::new("timeout")
                .args(["40", "ffmpeg", "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", &url])
                .args(["-frames:v", "60", "-f", "null", "-"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("ffmpeg")
        })
        .collect();
    // While they start and play (however long a loaded machine takes): exactly
    // one upstream session.
    let t = Instant::now();
    let mut most = 0;
    while clients.iter_mut().any(|c| c.try_wait().unwrap().is_none()) && t.elapsed() < Duration::from_secs(45) {
        most = most.max(connections_to(hub.pid(), server.port));
        std::thread::sleep(Duration::from_millis(100));
    }
    for c in clients {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "a client failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(most, 1, "20 RTSP clients, one connection to the camera");
    // The clients gone, the connection lingers 2 s, then closes.
    hub.wait_camera("door", "disconnected after the linger", Duration::from_secs(15), |c| c["state"] == "idle");
}

#[test]
fn clients_need_credentials_when_server_auth_is_set() {
    let server = RtspServer::start("h264", None);
    let auth = "  auth:\n    users:\n      viewer: s3cret\n";
    // (The API needs the credentials too: the client's DESCRIBE waits for the camera instead.)
    let (hub, port) = hub_with(&server, auth, "    keep: connected\n");
    let refused = ffmpeg_frames(&format!("rtsp://127.0.0.1:{port}/door"), "tcp", 2).unwrap_err();
    assert!(refused.contains("401") || refused.contains("Unauthorized"), "{refused}");
    let wrong = ffmpeg_frames(&format!("rtsp://viewer:nope@127.0.0.1:{port}/door"), "tcp", 2).unwrap_err();
    assert!(wrong.contains("401") || wrong.contains("Unauthorized"), "{wrong}");
    let pictures = ffmpeg_frames(&format!("rtsp://viewer:s3cret@127.0.0.1:{port}/door"), "tcp", 3).unwrap();
    assert_clip_frames(&pictures);
    assert!(!hub.log().contains("s3cret"), "the password is never logged");
}

/// One request on a fresh connection; what the server answered (its status line).
fn rtsp_exchange(port: u16, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned()
}

#[test]
fn unknown_paths_garbage_and_removed_cameras_get_rtsp_answers_and_others_play_on() {
    let server = RtspServer::start("h264", None);
    let (hub, port) = hub_with(&server, "", "    keep: connected\n");
    hub.wait_streaming("door");
    let describe = |path: &str| {
        format!("DESCRIBE rtsp://127.0.0.1:{port}/{path} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n")
    };
    assert_eq!(rtsp_exchange(port, describe("nope").as_bytes()), "RTSP/1.0 404 Not Found");
    assert_eq!(rtsp_exchange(port, describe("door/sub").as_bytes()), "RTSP/1.0 404 Not Found", "no sub-stream");
    let garbage = rtsp_exchange(port, b"HELLO THERE\r\n\r\n");
    assert!(garbage.is_empty() || garbage.starts_with("RTSP/1.0 4"), "{garbage:?}");
    assert!(rtsp_exchange(port, describe("door").as_bytes()).starts_with("RTSP/1.0 200"));
    // A camera added through the API is served at once; a removed one is gone.
    let body = format!("{{\"url\": \"{}\", \"keep\": \"connected\"}}", server.url());
    assert_eq!(hub.send("PUT", "/api/cameras/yard", Some(&body)).status, 201);
    hub.wait_streaming("yard");
    assert_clip_frames(&ffmpeg_frames(&format!("rtsp://127.0.0.1:{port}/yard"), "tcp", 3).unwrap());
    assert_eq!(hub.send("DELETE", "/api/cameras/yard", None).status, 204);
    assert_eq!(rtsp_exchange(port, describe("yard").as_bytes()), "RTSP/1.0 404 Not Found");
    assert_clip_frames(&ffmpeg_frames(&format!("rtsp://127.0.0.1:{port}/door"), "tcp", 3).unwrap());
}

#[test]
fn the_restream_can_be_turned_off_and_a_taken_port_leaves_the_hub_running() {
    let server = RtspServer::start("h264", None);
    let off = Hub::start(&format!("server:\n  rtsp: false\ncameras:\n  door:\n    url: {}\n", server.url()));
    let r = off.get("/api/health").json()["rtsp"].clone();
    assert!(r["port"].is_null() && r["error"].as_str().is_some_and(|e| e.contains("off")), "{r}");
    // Another process holds the port: the hub says so and serves the rest.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let hub = Hub::start(&format!(
        "server:\n  rtsp:\n    listen: 127.0.0.1:{port}\ncameras:\n  door:\n    url: {}\n    keep: connected\n",
        server.url()
    ));
    let r = hub.get("/api/health").json()["rtsp"].clone();
    assert!(r["error"].as_str().is_some_and(|e| e.contains(&port.to_string())), "{r}");
    hub.wait_streaming("door");
    assert_eq!(hub.get("/api/cameras/door/snapshot.jpg").status, 200);
}

/// The frames an ffmpeg client has decoded so far, from its `-progress` lines.
fn progress(reader: std::process::ChildStdout) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    use std::io::BufRead;
    let frames = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let f = frames.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(reader).lines().map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("frame=").and_then(|n| n.trim().parse().ok()) {
                f.store(n, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    frames
}

#[test]
fn a_client_playing_when_the_camera_drops_resumes_when_it_comes_back() {
    let mut server = RtspServer::start("h264", None);
    let camera_port = server.port;
    let (hub, port) = hub_with(&server, "", "    keep: connected\n");
    hub.wait_streaming("door");
    let mut client = Command::new("timeout")
        .args(["90", "ffmpeg", "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp"])
        .args(["-i", &format!("rtsp://127.0.0.1:{port}/door"), "-progress", "pipe:1", "-f", "null", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let frames = progress(client.stdout.take().unwrap());
    let decoded = || frames.load(std::sync::atomic::Ordering::Relaxed);
    let until = |what: &str, t: Duration, pred: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !pred() {
            assert!(start.elapsed() < t, "{what}: {} frames\n{}", decoded(), hub.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    until("the client plays", Duration::from_secs(20), &|| decoded() > 10);
    // The camera goes away: the client stalls (its session stays), the hub backs off.
    server.kill();
    hub.wait_camera("door", "off line", Duration::from_secs(30), |c| c["state"] != "streaming");
    std::thread::sleep(Duration::from_secs(2));
    let stalled = decoded();
    assert!(client.try_wait().unwrap().is_none(), "the client is still connected");
    // Back at the same address: the hub reconnects and the same client plays on.
    let _server = RtspServer::start_on("h264", None, camera_port);
    hub.wait_camera("door", "reconnected", Duration::from_secs(60), |c| c["state"] == "streaming");
    until("the client resumes", Duration::from_secs(30), &|| decoded() > stalled + 10);
    let _ = client.kill();
    let _ = client.wait();
}

#[test]
fn an_unsupported_transport_gets_461_and_an_endless_request_is_cut_off_with_bounded_memory() {
    let server = RtspServer::start("h264", None);
    let (hub, port) = hub_with(&server, "", "    keep: connected\n");
    hub.wait_streaming("door");
    let setup = format!(
        "SETUP rtsp://127.0.0.1:{port}/door/stream=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/SAVPF/SCTP;unicast\r\n\r\n"
    );
    let answer = rtsp_exchange(port, setup.as_bytes());
    assert!(answer.starts_with("RTSP/1.0 461"), "{answer}");
    // A request line that never ends: 16 MiB, sent as fast as the hub takes it.
    let rss = || proc_stats(hub.pid()).2;
    let before = rss();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"DESCRIBE rtsp://127.0.0.1/").unwrap();
    let chunk = vec![b'a'; 1 << 20];
    let mut sent = 0;
    while sent < 16 && s.write_all(&chunk).is_ok() {
        sent += 1;
    }
    let grown_kib = rss().saturating_sub(before);
    assert!(grown_kib < 8 * 1024, "{sent} MiB sent, the hub grew by {grown_kib} KiB");
    eprintln!("endless request: {sent} MiB taken, the hub grew by {grown_kib} KiB");
    drop(s);
    // Everyone else plays on.
    assert_clip_frames(&ffmpeg_frames(&format!("rtsp://127.0.0.1:{port}/door"), "tcp", 3).unwrap());
}
