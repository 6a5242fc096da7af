//! The variant tier through its first consumer, MJPEG: viewers of one
//! (quality, size) share one encode per frame, each gets fresh frames, and
//! when the last viewer leaves the encoder and the decoder stop after their lingers.
//! No size asked for above the source's is ever upscaled (snapshots, streams, outputs).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn viewers_of_one_variant_share_each_encode_and_leave_nothing_running() {
    let server = RtspServer::start("h264", None);
    let hub = Hub::start(&format!(
        "cameras:\n  cam:\n    url: {}\n    decode_linger: 0\n    variant_linger: 0\n",
        server.url()
    ));
    hub.wait_streaming("cam");
    let url = format!("{}/api/cameras/cam/stream.mjpeg?width=320&quality=60", hub.base);
    let open = || open_mjpeg(&url);
    let mut a = open();
    let mut b = open();
    let encodes = |h: &Hub| h.camera("cam")["counters"]["jpeg_encodes"].as_u64().unwrap();
    let first_a = read_part(&mut a).0;
    read_part(&mut b);
    let e0 = encodes(&hub);
    let mut last = first_a;
    for _ in 0..10 {
        let before = server.sent().index;
        let (id, jpeg) = read_part(&mut a);
        assert!(id > last, "ids increase");
        last = id;
        let pic = Picture::decode(&jpeg);
        assert_eq!((pic.width, pic.height), (320, 180));
        assert!(clip_diff(pic.barcode(), before) >= -1, "fresh: {} vs {before}", pic.barcode());
        read_part(&mut b);
    }
    let c = hub.camera("cam");
    assert_eq!(c["leases"]["variants"][0]["leases"], 2, "{c:#}");
    assert_eq!(c["tier"], "decoding");
    let frames = last - first_a;
    let e = encodes(&hub) - e0;
    assert!(e <= frames + 2, "{e} encodes for {frames} frames and two viewers");

    // A viewer that stops reading does not hold the other back.
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(read_part(&mut a).0);
    }
    assert!(ids.windows(2).all(|w| w[1] > w[0]));

    drop(a);
    drop(b);
    let c = hub.wait_camera("cam", "decoder off", Duration::from_secs(10), |c| c["decoder"]["running"] == false);
    assert_eq!(c["leases"]["variants"], serde_json::json!([]), "{c:#}");
    assert_eq!(c["state"], "streaming", "keep: connected stays connected");
}

#[test]
fn bad_stream_queries_are_400() {
    let hub = Hub::start_demo();
    for q in ["fps=0", "fps=abc", "quality=101", "max_age_ms=5"] {
        let r = hub.get(&format!("/api/cameras/demo/stream.mjpeg?{q}"));
        assert_eq!(r.status, 400, "{q}");
    }
    assert_eq!(hub.get("/api/cameras/nope/stream.mjpeg").status, 404);
}

#[test]
fn opencv_and_ffprobe_play_the_stream() {
    let server = RtspServer::start("h264", None);
    let hub = Hub::start(&format!("cameras:\n  cam: {}\n", server.url()));
    hub.wait_streaming("cam");
    let url = format!("{}/api/cameras/cam/stream.mjpeg?width=320", hub.base);

    let python = repo().join(".venv/bin/python");
    assert!(python.exists(), "no .venv: run `make test`, which sets it up");
    let before = server.sent().index;
    let out = std::process::Command::new(python)
        .arg(repo().join("tests/support/opencv_mjpeg.py"))
        .args([&url, "8"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let frames: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(frames.len(), 8);
    let codes: Vec<i64> = frames.iter().map(|f| f["barcode"].as_i64().unwrap()).collect();
    for f in &frames {
        assert_eq!(f["shape"], serde_json::json!([180, 320, 3]));
    }
    assert!(clip_diff(codes[0], before) >= -1, "OpenCV's first frame is fresh: {codes:?} vs {before}");
    assert!(codes.windows(2).all(|w| clip_diff(w[1], w[0]) > 0), "frames advance: {codes:?}");

    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "json", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let probe: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &probe["streams"][0];
    assert_eq!(
        (s["codec_name"].as_str(), s["width"].as_u64(), s["height"].as_u64()),
        (Some("mjpeg"), Some(320), Some(180))
    );
}

#[test]
fn sizes_above_the_source_are_never_upscaled() {
    // Issue 15, item 8: width=8192 used to upscale a 640x360 camera (8 such streams
    // saturated both cores). Snapshots, streams and outputs all get the source's size.
    let server = RtspServer::start("h264", None);
    let shm = temp_dir("shm-upscale");
    let shm_dir = shm.to_str().unwrap();
    let hub = Hub::start_env(
        &format!(
            "cameras:\n  cam:\n    url: {}\n    outputs:\n      big:\n        shm: {{width: 8192, format: gray, demand: always, slots: 2}}\n",
            server.url()
        ),
        &[("CAMHUB_SHM_DIR", shm_dir)],
    );
    hub.wait_streaming("cam");
    for q in ["width=8192", "height=8192", "width=8192&height=8192", "width=641"] {
        let r = hub.get(&format!("/api/cameras/cam/snapshot.jpg?{q}"));
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        let pic = Picture::decode(&r.body);
        assert_eq!((pic.width, pic.height), (640, 360), "snapshot {q}");
    }
    let mut a = open_mjpeg(&format!("{}/api/cameras/cam/stream.mjpeg?width=8192", hub.base));
    let mut b = open_mjpeg(&format!("{}/api/cameras/cam/stream.mjpeg?width=4000", hub.base));
    for _ in 0..3 {
        let pic = Picture::decode(&read_part(&mut a).1);
        assert_eq!((pic.width, pic.height), (640, 360), "stream width=8192");
        let pic = Picture::decode(&read_part(&mut b).1);
        assert_eq!((pic.width, pic.height), (640, 360), "stream width=4000");
    }
    // Both are the source's own size: one variant, one encode per frame.
    let c = hub.camera("cam");
    assert_eq!(c["leases"]["variants"].as_array().unwrap().len(), 1, "{:#}", c["leases"]);
    // The ring's header names its geometry (docs/shm.md: width at 24, height at 28).
    let ring = shm.join("camhub.cam.big");
    let end = std::time::Instant::now() + Duration::from_secs(15);
    let (w, h) = loop {
        let bytes = std::fs::read(&ring).unwrap_or_default();
        let le = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        if bytes.len() >= 32 && le(24) != 0 {
            break (le(24), le(28));
        }
        assert!(std::time::Instant::now() < end, "the ring never got a frame:\n{}", hub.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!((w, h), (640, 360), "shm output width=8192");
    drop(hub);
    let _ = std::fs::remove_dir_all(shm);
}

/// A viewer that comes after an earlier viewer of the same variant left (its
/// encoder stopped, its last JPEG kept) starts with a fresh picture, not that one.
#[test]
fn a_new_viewer_starts_with_a_fresh_picture() {
    let server = RtspServer::start("h264", None);
    let hub = Hub::start(&format!(
        "cameras:\n  cam:\n    url: {}\n    decode_linger: 0\n    variant_linger: 0\n",
        server.url()
    ));
    hub.wait_streaming("cam");
    let url = format!("{}/api/cameras/cam/stream.mjpeg?width=320&quality=60", hub.base);
    let mut a = open_mjpeg(&url);
    read_part(&mut a);
    read_part(&mut a);
    drop(a);
    hub.wait_camera("cam", "decoder off", Duration::from_secs(10), |c| c["decoder"]["running"] == false);
    // Long enough for the old picture to be many frames behind (the clip runs at 6 fps).
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..2 {
        let before = server.sent().index;
        let mut b = open_mjpeg(&url);
        let (_, jpeg) = read_part(&mut b);
        let shown = Picture::decode(&jpeg).barcode();
        assert!(clip_diff(shown, before) >= -1, "the first part shows frame {shown}, the server had sent {before}");
        drop(b);
        hub.wait_camera("cam", "decoder off", Duration::from_secs(10), |c| c["decoder"]["running"] == false);
        std::thread::sleep(Duration::from_millis(1500));
    }
}

/// An unreachable camera's stream answers 503 with Retry-After, like its snapshot,
/// instead of 200 and then nothing.
#[test]
fn an_offline_cameras_stream_is_503() {
    let hub = Hub::start("cameras:\n  gone:\n    url: rtsp://127.0.0.1:9/cam\n    keep: connected\n");
    hub.wait_camera("gone", "backoff", Duration::from_secs(10), |c| c["state"] == "backoff");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    for q in ["", "?width=320"] {
        let r = agent.get(&format!("{}/api/cameras/gone/stream.mjpeg{q}", hub.base)).call().unwrap();
        assert_eq!(r.status(), 503, "{q}");
        assert!(r.headers().get("retry-after").is_some(), "{q}: {:?}", r.headers());
    }
}
