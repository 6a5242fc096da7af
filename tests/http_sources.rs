//! HTTP cameras against a real multipart MJPEG server on loopback
//! (`tests/support/mjpeg_server.py`): their JPEGs pass straight through to
//! snapshots and MJPEG with no decode and no encode, byte for byte; another size
//! is decoded and encoded; snapshot URLs are polled; and broken servers (a
//! truncated part, a wrong boundary, an endless part) fail clearly, with bounded
//! memory, and are retried, while a good camera beside them streams on; a
//! picture above `max_pixels` is refused before it is decoded, and the camera
//! says why.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

struct MjpegServer {
    child: Child,
    port: u16,
    sent: Arc<Mutex<i64>>,
    frames: Vec<Vec<u8>>,
}

impl MjpegServer {
    fn start() -> Self {
        Self::spawn(&[])
    }

    /// Over https, with a fresh self-signed certificate for 127.0.0.1.
    fn start_tls() -> Self {
        let (cert, key) = self_signed_cert("mjpeg-tls");
        Self::spawn(&["--tls".as_ref(), cert.as_os_str(), key.as_os_str()])
    }

    fn spawn(extra: &[&std::ffi::OsStr]) -> Self {
        let dir = temp_dir("mjpeg-frames");
        let mut child = Command::new("/usr/bin/python3")
            .arg(repo().join("tests/support/mjpeg_server.py"))
            .arg("--clip")
            .arg(repo().join("tests/clips/idx-h264.h264"))
            .arg("--frames-dir")
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines.next().unwrap().unwrap().trim_start_matches("PORT ").trim().parse().unwrap();
        let sent = Arc::new(Mutex::new(-1));
        let s = sent.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                if let Some(i) = l.strip_prefix("SENT ") {
                    *s.lock().unwrap() = i.trim().parse().unwrap();
                }
            }
        });
        let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        paths.sort();
        let frames = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
        MjpegServer { child, port, sent, frames }
    }
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    /// Which of the server's frames these bytes are, if any.
    fn which(&self, jpeg: &[u8]) -> Option<usize> {
        self.frames.iter().position(|f| f == jpeg)
    }
}

impl Drop for MjpegServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn counter(hub: &Hub, cam: &str, key: &str) -> u64 {
    hub.camera(cam)["counters"][key].as_u64().unwrap()
}

#[test]
fn jpeg_cameras_pass_through_untouched_unless_another_size_is_asked() {
    let srv = MjpegServer::start();
    let hub = Hub::start(&format!(
        "cameras:\n  cam: {}\n  nolen: {}\n  snap:\n    url: {}\n    poll_interval: 0.2\n  authcam: http://u:p@127.0.0.1:{p}/auth/stream\n  badauth: http://u:wrong-pw@127.0.0.1:{p}/auth/stream\n",
        srv.url("/stream"),
        srv.url("/nolength"),
        srv.url("/snapshot.jpg"),
        p = srv.port
    ));
    hub.wait_streaming("cam");
    assert_eq!(hub.camera("cam")["codec"], "mjpeg");
    let before = *srv.sent.lock().unwrap();
    let r = hub.get("/api/cameras/cam/snapshot.jpg");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-snapshot-source"), Some("warm"));
    let idx = srv.which(&r.body).expect("the camera's own JPEG, byte for byte") as i64;
    assert!(idx >= before - 1 || before - idx > 30, "fresh: frame {idx}, server had sent {before}");

    // MJPEG out with no quality or size: the camera's frames as they came.
    let mut body = open_mjpeg(&format!("{}/api/cameras/cam/stream.mjpeg", hub.base));
    for _ in 0..3 {
        let (_, jpeg) = read_part(&mut body);
        assert!(srv.which(&jpeg).is_some(), "streamed frame is the camera's own");
    }
    drop(body);
    assert_eq!(counter(&hub, "cam", "frames_decoded"), 0, "no decode for passthrough");
    assert_eq!(counter(&hub, "cam", "jpeg_encodes"), 0, "no encode for passthrough");

    // Another size: decoded and encoded, and still the clip's picture.
    let r = hub.get("/api/cameras/cam/snapshot.jpg?width=320");
    assert_eq!(r.status, 200);
    let pic = Picture::decode(&r.body);
    assert_eq!((pic.width, pic.height), (320, 180));
    assert!((0..60).contains(&pic.barcode()));
    assert!(counter(&hub, "cam", "frames_decoded") >= 1 && counter(&hub, "cam", "jpeg_encodes") >= 1);

    hub.wait_streaming("nolen");
    assert!(srv.which(&hub.get("/api/cameras/nolen/snapshot.jpg").body).is_some());

    hub.wait_streaming("snap");
    let u0 = counter(&hub, "snap", "units_in");
    std::thread::sleep(Duration::from_secs(1));
    let polled = counter(&hub, "snap", "units_in") - u0;
    assert!((3..=7).contains(&polled), "{polled} polls in 1 s at 0.2 s");
    assert!(srv.which(&hub.get("/api/cameras/snap/snapshot.jpg").body).is_some());

    hub.wait_streaming("authcam");
    let c = hub.wait_camera("badauth", "auth_failed", Duration::from_secs(10), |c| c["state"] == "auth_failed");
    assert!(c["last_error"]["message"].as_str().unwrap().contains("check the username and password"), "{c:#}");
    assert!(!hub.get("/api/cameras").text().contains("wrong-pw"));
}

#[test]
fn broken_mjpeg_servers_fail_clearly_with_bounded_memory_and_are_retried() {
    let srv = MjpegServer::start();
    let hub = Hub::start(&format!(
        "cameras:\n  truncated: {}\n  wrong: {}\n  endless: {}\n  good: {}\n",
        srv.url("/truncated"),
        srv.url("/wrongboundary"),
        srv.url("/endless"),
        srv.url("/stream"),
    ));
    for (cam, why) in [("truncated", "truncated frame"), ("wrong", "wrong boundary"), ("endless", "endless part")] {
        let c = hub.wait_camera(cam, "retried after failing", Duration::from_secs(30), |c| {
            c["attempts"].as_u64() >= Some(2) && c["last_error"]["message"].as_str().is_some_and(|m| m.contains(why))
        });
        // Each attempt connects for a moment, then fails: a snapshot never gets a picture.
        assert_eq!(c["counters"]["units_in"], 0, "{c:#}");
        assert_eq!(hub.get(&format!("/api/cameras/{cam}/snapshot.jpg")).status, 503);
    }
    let (_, _, rss_kib) = proc_stats(hub.pid());
    assert!(rss_kib < 200 * 1024, "RSS {rss_kib} KiB: the endless part must not grow memory");
    hub.wait_streaming("good");
    for _ in 0..3 {
        let r = hub.get("/api/cameras/good/snapshot.jpg");
        assert_eq!(r.status, 200);
        assert!(srv.which(&r.body).is_some());
    }
    assert_eq!(hub.camera("good")["counters"]["reconnects"], 0);
}

/// A JPEG whose frame header (SOF) declares `w` x `h`, the rest untouched.
fn declare_size(jpeg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut j = jpeg.to_vec();
    let mut i = 2;
    while i + 9 < j.len() {
        let (marker, len) = (j[i + 1], usize::from(j[i + 2]) << 8 | usize::from(j[i + 3]));
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            j[i + 5..i + 7].copy_from_slice(&h.to_be_bytes());
            j[i + 7..i + 9].copy_from_slice(&w.to_be_bytes());
            return j;
        }
        i += 2 + len;
    }
    panic!("no SOF marker");
}

/// A snapshot-URL camera on loopback that answers every request with `jpeg`.
fn serve_jpeg(jpeg: Vec<u8>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                jpeg.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&jpeg);
        }
    });
    port
}

#[test]
fn pictures_above_max_pixels_are_refused_before_decoding() {
    // Issue 15, item 5: a 7 MB 16000x16000 JPEG made the hub hold 768 MB for
    // one camera. Here the body is one small real frame, its header says 16000x16000.
    let srv = MjpegServer::start();
    let huge = serve_jpeg(declare_size(&srv.frames[0], 16000, 16000));
    let hub = Hub::start(&format!(
        "cameras:\n  huge:\n    url: http://127.0.0.1:{huge}/snap.jpg\n    poll_interval: 0.2\n  strict:\n    url: {s}\n    max_pixels: 100000\n  good: {s}\n",
        s = srv.url("/stream"),
    ));
    for (cam, size) in [("huge", "16000x16000"), ("strict", "640x360")] {
        let c = hub.wait_camera(cam, "refused", Duration::from_secs(10), |c| !c["last_error"].is_null());
        let msg = c["last_error"]["message"].as_str().unwrap();
        assert!(msg.contains(size) && msg.contains("max_pixels"), "{cam}: {c:#}");
        assert_eq!(c["last_error"]["kind"], "unsupported", "{c:#}");
        assert_eq!(c["state"], "backoff", "{c:#}");
        assert_eq!(c["counters"]["frames_decoded"], 0, "{c:#}");
        assert_eq!(hub.get(&format!("/api/cameras/{cam}/snapshot.jpg?width=320")).status, 503);
    }
    let (_, _, rss_kib) = proc_stats(hub.pid());
    assert!(rss_kib < 200 * 1024, "RSS {rss_kib} KiB");
    hub.wait_streaming("good");
    let r = hub.get("/api/cameras/good/snapshot.jpg?width=320");
    assert_eq!(r.status, 200);
    assert_eq!(Picture::decode(&r.body).width, 320);
}

#[test]
fn an_https_camera_with_a_self_signed_certificate_needs_tls_verify_false() {
    let srv = MjpegServer::start_tls();
    let url = format!("https://u:p@127.0.0.1:{}/auth/stream", srv.port);
    let hub = Hub::start(&format!(
        "cameras:\n  strict:\n    url: {url}\n    keep: connected\n  selfsigned:\n    url: {url}\n    keep: connected\n    tls_verify: false\n"
    ));
    // Encrypted, credentials inside: the frames pass through untouched.
    hub.wait_streaming("selfsigned");
    let r = hub.get("/api/cameras/selfsigned/snapshot.jpg");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(srv.which(&r.body).is_some(), "one of the camera's own JPEGs");
    // Checked by default: refused, with what to do, and no password anywhere.
    let c = hub.wait_camera("strict", "the certificate refused", Duration::from_secs(20), |c| {
        c["last_error"]["message"].as_str().is_some_and(|m| m.contains("TLS"))
    });
    let msg = c["last_error"]["message"].as_str().unwrap();
    assert!(msg.contains("certificate") && msg.contains("tls_verify: false"), "{msg}");
    assert!(!hub.log().contains(":p@") && !c.to_string().contains(":p@"), "the password stays secret");
}
