//! What a client sees when things go wrong: unknown cameras, bad queries, a
//! camera whose server died (503, or a picture honestly labelled with its age,
//! never an old picture passed off as new), and a wrong password.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn unknown_camera_and_bad_queries_get_json_errors() {
    let server = RtspServer::start("h264", None);
    let hub = Hub::start(&format!("cameras:\n  cam: {}\n", server.url()));
    let r = hub.get("/api/cameras/nope/snapshot.jpg");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["camera"], "nope");
    assert!(r.json()["error"].as_str().unwrap().contains("no camera named"));
    assert_eq!(hub.get("/api/cameras/nope").status, 404);
    assert_eq!(hub.get("/api/nothing/here").status, 404);
    for (q, word) in [
        ("quality=0", "quality"),
        ("width=abc", "width"),
        ("height=99999", "height"),
        ("qualty=5", "unknown query parameter"),
        ("cached=maybe", "cached"),
        ("keyframe=2", "keyframe"),
        ("keyframe=true&cached=true", "keyframe=true takes no cached"),
        ("keyframe=true&max_age_ms=500", "max_age_ms"),
    ] {
        let r = hub.get(&format!("/api/cameras/cam/snapshot.jpg?{q}"));
        assert_eq!(r.status, 400, "{q}");
        assert!(r.json()["error"].as_str().unwrap().contains(word), "{q}: {}", r.text());
    }
    let list = hub.get("/api/cameras").json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "cam");
}

#[test]
fn a_dead_camera_answers_503_or_an_honestly_aged_picture() {
    let mut server = RtspServer::start("h264", None);
    let port = server.port;
    let hub = Hub::start(&format!(
        "cameras:\n  cam:\n    url: {}\n    decode_linger: 0\n    stall_timeout: 3\n",
        server.url()
    ));
    hub.wait_streaming("cam");
    let r = hub.get("/api/cameras/cam/snapshot.jpg");
    assert_eq!(r.status, 200, "{}", r.text());
    let last_id = r.frame_id();

    // cached=true before any failure: the picture just made, labelled as cache.
    let r = hub.get("/api/cameras/cam/snapshot.jpg?cached=true");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-snapshot-source"), Some("cache"));

    server.kill();
    let killed = Instant::now();
    let cam = hub.wait_camera("cam", "offline", Duration::from_secs(10), |c| {
        c["state"] != "streaming" && c["state"] != "connecting"
    });
    assert!(cam["last_error"]["message"].is_string(), "{cam:#}");
    std::thread::sleep(Duration::from_millis(300));

    let r = hub.get("/api/cameras/cam/snapshot.jpg");
    assert_eq!(r.status, 503, "a dead camera must not serve an old picture as new: {}", r.text());
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert!(r.json()["error"].as_str().unwrap().contains("offline"), "{}", r.text());

    // Allowed to be old: the last picture, with its true age.
    for q in ["max_age_ms=600000", "cached=true"] {
        let r = hub.get(&format!("/api/cameras/cam/snapshot.jpg?{q}"));
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        assert_eq!(r.header("x-snapshot-source"), Some("cache"));
        // The newest picture decoded before the server died (the decoder may have
        // finished one more frame after the snapshot's lease went).
        assert!((last_id..last_id + 3).contains(&r.frame_id()), "{q}: frame {}", r.frame_id());
        let since_kill = killed.elapsed().as_millis() as u64;
        assert!(r.age_ms() >= since_kill, "{q}: age {} ms but the camera died {since_kill} ms ago", r.age_ms());
    }
    // Too old for what was asked: no picture.
    let r = hub.get("/api/cameras/cam/snapshot.jpg?max_age_ms=50&cached=true");
    assert_eq!(r.status, 503);

    // The camera comes back by itself when its server does.
    let server = RtspServer::start_on("h264", None, port);
    hub.wait_camera("cam", "back", Duration::from_secs(30), |c| {
        c["state"] == "streaming" && c["gop_cache"]["units"].as_u64() > Some(0)
    });
    let r = hub.get("/api/cameras/cam/snapshot.jpg");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.frame_id() > last_id);
    assert!(r.age_ms() < 5000);
    let shown = Picture::decode(&r.body).barcode();
    assert!(clip_diff(shown, server.sent().index) >= -1, "fresh after recovery");
    let cam = hub.camera("cam");
    assert!(cam["counters"]["reconnects"].as_u64().unwrap() >= 1);
    let states: Vec<&str> = cam["history"].as_array().unwrap().iter().map(|h| h["state"].as_str().unwrap()).collect();
    assert!(states.ends_with(&["backoff", "connecting", "streaming"]), "{states:?}");
}

#[test]
fn wrong_password_is_a_clear_auth_error_and_never_shown() {
    let server = RtspServer::start("h264", Some(("viewer", "right-pass")));
    let url = format!("rtsp://viewer:Wr0ng-Secret-77@127.0.0.1:{}/cam", server.port);
    let good = format!("rtsp://viewer:right-pass@127.0.0.1:{}/cam", server.port);
    let missing = format!("rtsp://127.0.0.1:{}/no-such-path", server.port);
    let hub = Hub::start(&format!("cameras:\n  bad: {url}\n  good: {good}\n  missing: {missing}\n"));
    let c = hub.wait_camera("missing", "not_found", Duration::from_secs(15), |c| c["state"] == "not_found");
    assert_eq!(c["last_error"]["kind"], "not_found", "{c:#}");
    let cam = hub.wait_camera("bad", "auth_failed", Duration::from_secs(15), |c| c["state"] == "auth_failed");
    assert_eq!(cam["last_error"]["kind"], "auth");
    assert!(cam["last_error"]["message"].as_str().unwrap().contains("check the username and password"), "{cam:#}");
    assert_eq!(cam["url"], format!("rtsp://127.0.0.1:{}/cam", server.port));
    // A slow retry, not a hot loop.
    assert!(cam["retry_in_ms"].as_u64().unwrap() >= 20_000, "{cam:#}");

    let r = hub.get("/api/cameras/bad/snapshot.jpg");
    assert_eq!(r.status, 503);
    assert!(r.json()["error"].as_str().unwrap().contains("authentication failed"), "{}", r.text());

    // The right password on the same server works.
    hub.wait_streaming("good");
    assert_eq!(hub.get("/api/cameras/good/snapshot.jpg").status, 200);

    let everything =
        format!("{}{}{}{}", hub.get("/api/cameras").text(), r.text(), hub.log(), hub.get("/api/cameras/good").text());
    for secret in ["Wr0ng-Secret-77", "right-pass"] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}

#[test]
fn demo_cameras_serve_the_built_in_clip() {
    let hub = Hub::start_demo();
    hub.wait_streaming("demo");
    let r = hub.get("/api/cameras/demo/snapshot.jpg");
    assert_eq!(r.status, 200, "{}", r.text());
    let pic = Picture::decode(&r.body);
    assert_eq!((pic.width, pic.height), (640, 360));
    assert!(pic.colour_spread() > 40.0);
    // The demo clip has 200 frames; the hub has been up for a moment only.
    assert!((0..200).contains(&pic.barcode()), "barcode {}", pic.barcode());
    let cam = hub.wait_camera("demo-decoded", "decoding", Duration::from_secs(10), |c| c["decoder"]["running"] == true);
    assert_eq!(cam["keep"], "decoded");
    let r = hub.get("/api/cameras/demo-decoded/snapshot.jpg");
    assert_eq!(r.header("x-snapshot-source"), Some("warm"));
    // Two snapshots a second apart show frames about ten apart (paced in real time).
    let a = Picture::decode(&hub.get("/api/cameras/demo/snapshot.jpg").body).barcode();
    std::thread::sleep(Duration::from_millis(1000));
    let b = Picture::decode(&hub.get("/api/cameras/demo/snapshot.jpg").body).barcode();
    let d = (b - a).rem_euclid(200);
    assert!((7..=14).contains(&d), "frames {a} then {b}: not paced at 10 fps");
}
