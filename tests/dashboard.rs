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

/// Many cameras in a small window: only the tiles in view ask the hub for
/// pictures, and those ask for the cheap one (the current GOP's keyframe,
/// decoded alone); a tile scrolled into view fetches and paints at once.
#[test]
fn dashboard_feeds_only_tiles_in_view_with_keyframe_pictures() {
    const CAMERAS: usize = 16;
    let server = RtspServer::start("h264", None);
    let mut yaml = String::from("cameras:\n");
    for i in 0..CAMERAS {
        yaml += &format!("  cam{i:02}: {}\n", server.url());
    }
    let hub = Hub::start(&yaml);
    for i in 0..CAMERAS {
        hub.wait_streaming(&format!("cam{i:02}"));
    }
    let out = Command::new("node")
        .arg(repo().join("tests/support/dashboard_many.mjs"))
        .arg(format!("{}/", hub.base))
        .output()
        .expect("node");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["errors"], serde_json::json!([]), "no script errors");
    println!("tiles in view painted {} ms after load; after the scroll {} ms", r["firstMs"], r["scrolledMs"]);
    let requests = |phase: &str, cam: &str| r[phase][cam].as_array().map_or(0, Vec::len);
    let tiles = |phase: &str| r[phase].as_array().unwrap().clone();
    let in_view = |phase: &str| -> Vec<String> {
        tiles(phase).iter().filter(|t| t["inView"] == true).map(|t| t["camera"].as_str().unwrap().to_owned()).collect()
    };
    let (top, bottom) = (in_view("top"), in_view("bottom"));
    assert!(top.len() >= 2 && top.len() <= CAMERAS / 2, "a small window shows a few tiles: {top:?}");

    // (a) Every tile in view shows the camera's picture and how old it is.
    for phase in ["top", "bottom"] {
        for t in tiles(phase).iter().filter(|t| t["inView"] == true) {
            assert_eq!(t["width"], 480, "{phase}: a real picture at the tile's size: {t}");
            assert!(t["spread"].as_f64().unwrap() > 30.0, "{phase}: not a grey picture: {t}");
            let age = t["age"].as_str().unwrap();
            assert!(age.ends_with(" s ago") && age.split(' ').next().unwrap().parse::<u64>().is_ok(), "{t}");
        }
    }
    // (b) Before the scroll, the tiles out of view asked for nothing.
    for t in tiles("top") {
        let cam = t["camera"].as_str().unwrap();
        let n = requests("topRequests", cam);
        if top.iter().any(|c| c == cam) {
            assert!(n >= 1, "{cam} in view asked for its picture");
        } else {
            assert_eq!(n, 0, "{cam} out of view made no snapshot request");
        }
    }
    // (c) Scrolling to the bottom brought new tiles into view: each fetched and painted.
    let entered: Vec<_> = bottom.iter().filter(|c| !top.contains(c)).collect();
    assert!(!entered.is_empty(), "the scroll showed other tiles: {top:?} then {bottom:?}");
    for cam in &entered {
        assert_eq!(requests("topRequests", cam), 0, "{cam} was out of view before");
        assert!(requests("requests", cam) >= 1, "{cam} fetched once in view");
    }
    // The cheap picture: keyframes decoded alone, never a GOP replay.
    for (cam, reqs) in r["requests"].as_object().unwrap() {
        for q in reqs.as_array().unwrap() {
            assert_eq!(q["status"], 200, "{cam}: {q}");
            assert!(q["query"].as_str().unwrap().contains("keyframe=true"), "{cam}: {q}");
            let source = q["source"].as_str().unwrap();
            assert!(["keyframe", "cache", "warm"].contains(&source), "{cam}: no GOP replay for a tile: {q}");
        }
    }
    // The hub's side: a camera never in view decoded nothing; one in view decoded
    // its keyframes only (at most one per GOP received, the clip's GOP is 101 frames).
    for i in 0..CAMERAS {
        let name = format!("cam{i:02}");
        let c = hub.camera(&name);
        let decoded = c["counters"]["frames_decoded"].as_u64().unwrap();
        let units = c["counters"]["units_in"].as_u64().unwrap();
        if top.contains(&name) || bottom.contains(&name) {
            assert!(decoded >= 1 && decoded <= units / 100 + 2, "{name}: keyframes only: {decoded} of {units} units");
        } else {
            assert_eq!(requests("requests", &name), 0, "{name} was never in view");
            assert_eq!(decoded, 0, "{name} never in view cost no decode: {}", c["counters"]);
            assert_eq!(c["leases"]["keyframes"], 0, "{name}: {}", c["leases"]);
        }
    }
}
