//! The dashboard as a person sees it, in headless Chromium (Debian's, driven by
//! playwright-core): healthy cameras show real pictures with their facts, an
//! offline camera says so, and a click opens a live large view. With
//! `CAMHUB_SCREENSHOT=path` the screenshot is kept there (README uses docs/dashboard.png).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn dashboard_shows_live_tiles_and_offline_cameras() {
    let server = RtspServer::start("h264", None);
    let hevc = RtspServer::start("h265", None);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let hub = Hub::start(&format!(
        "cameras:\n  front-door: {}\n  backyard:\n    url: {}\n    transport: udp\n  side-gate: {}\n  garage: rtsp://admin:G4rage-Pw@127.0.0.1:{dead}/stream1\n",
        server.url(),
        server.url(),
        hevc.url(),
    ));
    hub.wait_streaming("front-door");
    hub.wait_streaming("backyard");
    hub.wait_streaming("side-gate");
    hub.wait_camera("garage", "offline", Duration::from_secs(10), |c| c["state"] == "backoff");

    let shot = std::env::var("CAMHUB_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| temp_dir("dash").join("dashboard.png"));
    let node_modules = repo().join("tests/support/node_modules/playwright-core");
    assert!(node_modules.exists(), "run `make test`: it installs playwright-core");
    let out = Command::new("node")
        .arg(repo().join("tests/support/dashboard.mjs"))
        .arg(format!("{}/", hub.base))
        .arg(&shot)
        .output()
        .expect("node");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["errors"], serde_json::json!([]), "no script errors");
    let tile = |name: &str| r["tiles"].as_array().unwrap().iter().find(|t| t["camera"] == name).unwrap().clone();
    for name in ["front-door", "backyard", "side-gate"] {
        let t = tile(name);
        assert_eq!(t["state"], "streaming", "{t}");
        assert_eq!(t["failed"], false);
        assert_eq!(t["width"], 480, "a real picture at the tile's size: {t}");
        assert!(t["spread"].as_f64().unwrap() > 30.0, "not a grey picture: {t}");
        let facts = t["facts"].as_str().unwrap();
        let codec = if name == "side-gate" { "H265" } else { "H264" };
        assert!(facts.contains(codec) && facts.contains("640×360") && facts.contains("fps"), "{facts}");
    }
    let g = tile("garage");
    assert_eq!(g["offlineShown"], true, "{g}");
    assert!(g["offlineText"].as_str().unwrap().contains("offline"), "{g}");
    assert!(g["offlineText"].as_str().unwrap().contains("backoff"), "{g}");
    let page = r["pageText"].as_str().unwrap();
    assert!(page.contains("garage") && page.contains("Connection refused"), "the page text was read");
    assert!(!page.contains("G4rage-Pw"), "no camera password on the page");
    assert!(r["summary"].as_str().unwrap().contains("4 cameras"), "{}", r["summary"]);
    // H.264 cameras play over WebRTC: a video whose time advances, showing the camera's picture.
    for name in ["front-door", "backyard"] {
        let big = &r["bigs"][name];
        assert_eq!(big["mode"], "WebRTC", "{name}: {big}");
        assert_eq!(big["videoWidth"], 640, "{name}: the camera's own stream, full size: {big}");
        assert!(big["time"].as_f64().unwrap() > big["time0"].as_f64().unwrap() + 0.5, "{name}: playing: {big}");
        assert!(big["spread"].as_f64().unwrap() > 30.0, "{name}: not a blank picture: {big}");
        assert_eq!(big["closedVideo"], true, "{name}: closing stops the video");
        println!("{name}: WebRTC picture after {} ms", big["firstMs"]);
    }
    // H.265 cannot go to a browser over WebRTC: MJPEG, and the view says why.
    let big = &r["bigs"]["side-gate"];
    assert_eq!(big["mode"], "MJPEG (H265)", "{big}");
    assert_eq!(big["width"], 640, "the large view plays the full-size stream: {big}");
    assert!(big["src"].as_str().unwrap().ends_with("stream.mjpeg"));
    assert!(big["spread"].as_f64().unwrap() > 30.0, "{big}");
    assert!(big["closedSrc"].is_null(), "closing drops the stream");
    // The page ended its WebRTC sessions (DELETE): no viewer is left on the hub.
    hub.wait_camera("front-door", "no WebRTC viewers left", Duration::from_secs(10), |c| {
        c["webrtc"]["viewers"].as_array().is_some_and(|v| v.is_empty())
    });
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    let phone = &r["phone"];
    assert_eq!(phone["columns"], 1, "one column on a phone: {phone}");
    assert_eq!(phone["overflow"], false, "no sideways scrolling on a phone: {phone}");
    assert!(phone["widest"].as_f64().unwrap() <= 390.0, "{phone}");
}
