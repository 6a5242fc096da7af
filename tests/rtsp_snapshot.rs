//! Snapshots of real RTSP cameras (GStreamer's server on loopback), H.264 and
//! H.265: the picture is the newest frame the camera sent, decoded pixels match
//! the clip, and a cold decoder answers from the GOP cache without waiting for
//! the next keyframe (the clip has one keyframe every 10 s).

mod common;

use std::time::Duration;

use common::*;

fn config(server: &RtspServer) -> String {
    format!(
        "cameras:\n  cold:\n    url: {url}\n    decode_linger: 0\n  warm:\n    url: {url}\n    keep: decoded\n",
        url = server.url()
    )
}

/// Takes a snapshot and checks it shows the newest frame: at most one frame
/// behind what the server had sent when the request went out.
fn fresh_snapshot(hub: &Hub, server: &RtspServer, camera: &str, expect_source: &str) -> (Response, i64) {
    let (r, shown) = fresh_snapshot_q(hub, server, camera, "");
    assert_eq!(r.header("x-snapshot-source"), Some(expect_source));
    (r, shown)
}

/// As `fresh_snapshot`, with a query (`?...`), whatever its source.
fn fresh_snapshot_q(hub: &Hub, server: &RtspServer, camera: &str, q: &str) -> (Response, i64) {
    let before = server.sent();
    let r = hub.get(&format!("/api/cameras/{camera}/snapshot.jpg{q}"));
    let after = server.sent();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_ne!(r.header("x-snapshot-source"), Some("cache"), "a fresh picture");
    assert!(r.header("x-frame-timestamp").unwrap().ends_with('Z'));
    let pic = Picture::decode(&r.body);
    assert_eq!((pic.width, pic.height), (640, 360));
    let shown = pic.barcode();
    assert!(
        clip_diff(shown, before.index) >= -1 && clip_diff(after.index, shown) >= 0,
        "{camera}: snapshot shows frame {shown}, server had sent {} before the request and {} after",
        before.index,
        after.index
    );
    (r, shown)
}

fn check_pixels(codec: &str, r: &Response, shown: i64) {
    let pic = Picture::decode(&r.body);
    assert!(pic.colour_spread() > 40.0, "picture is flat: spread {}", pic.colour_spread());
    let same = reference_frame(codec, shown, pic.width, pic.height);
    let diff = pic.mean_abs_diff(&same);
    assert!(diff < 8.0, "pixels differ from clip frame {shown}: mean abs diff {diff:.1}");
}

fn snapshots_are_fresh(codec: &'static str) {
    let server = RtspServer::start(codec, None);
    let hub = Hub::start(&config(&server));
    hub.wait_streaming("cold");
    hub.wait_streaming("warm");
    // Let the GOP grow well past its keyframe: the next keyframe is 10 s away.
    std::thread::sleep(Duration::from_secs(3));

    let (first, shown) = fresh_snapshot(&hub, &server, "cold", "gop");
    check_pixels(codec, &first, shown);
    let sent = server.sent();
    assert!(shown % GOP >= 20, "frame {shown} should be well inside a GOP");
    assert!(
        sent.index / GOP == shown / GOP,
        "the answer came before the server's next keyframe (sent {}, shown {shown})",
        sent.index
    );
    let cam = hub.camera("cold");
    assert!(cam["gop_cache"]["units"].as_u64().unwrap() >= 20, "{cam:#}");
    // decode_linger 0: the decoder stopped with the last lease.
    hub.wait_camera("cold", "decoder off", Duration::from_secs(5), |c| c["decoder"]["running"] == false);

    // A decoder that is running answers from its newest frame.
    let (r, shown) = fresh_snapshot(&hub, &server, "warm", "warm");
    check_pixels(codec, &r, shown);

    // A second fresh snapshot of the cold camera is newer than the first.
    std::thread::sleep(Duration::from_millis(300));
    let (second, shown2) = fresh_snapshot(&hub, &server, "cold", "gop");
    assert!(second.frame_id() > first.frame_id(), "a later snapshot shows a later frame");
    assert!(clip_diff(shown2, shown) >= 3, "frames {shown} then {shown2}");
}

#[test]
fn h264_snapshot_is_the_newest_frame_without_waiting_for_a_keyframe() {
    snapshots_are_fresh("h264");
}

#[test]
fn h265_snapshot_is_the_newest_frame_without_waiting_for_a_keyframe() {
    snapshots_are_fresh("h265");
}

#[test]
fn scaled_and_requality_snapshots_share_one_encode_per_key() {
    let server = RtspServer::start("h264", None);
    let hub =
        Hub::start(&format!("cameras:\n  cam:\n    url: {}\n    keep: decoded\n    decode_linger: -1\n", server.url()));
    hub.wait_streaming("cam");
    hub.wait_camera("cam", "decoding", Duration::from_secs(10), |c| c["latest_frame"].is_object());

    let r = hub.get("/api/cameras/cam/snapshot.jpg?width=320&max_age_ms=60000");
    assert_eq!(r.status, 200, "{}", r.text());
    let pic = Picture::decode(&r.body);
    assert_eq!((pic.width, pic.height), (320, 180));
    check_pixels("h264", &r, pic.barcode());
    assert_eq!(r.header("x-snapshot-source"), Some("cache"));

    let r = hub.get("/api/cameras/cam/snapshot.jpg?height=90&quality=40&max_age_ms=60000");
    let pic = Picture::decode(&r.body);
    assert_eq!((pic.width, pic.height), (160, 90));

    // Many concurrent requests for the same frame and variant: one encode.
    let before = hub.camera("cam")["counters"]["jpeg_encodes"].as_u64().unwrap();
    let shots: Vec<Response> = std::thread::scope(|s| {
        let hs: Vec<_> =
            (0..12).map(|_| s.spawn(|| hub.get("/api/cameras/cam/snapshot.jpg?cached=true&quality=55"))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ids: std::collections::BTreeSet<u64> = shots.iter().map(|r| r.frame_id()).collect();
    let after = hub.camera("cam")["counters"]["jpeg_encodes"].as_u64().unwrap();
    assert!(shots.iter().all(|r| r.status == 200));
    assert!(after - before <= ids.len() as u64, "{} encodes for {} distinct frames", after - before, ids.len());
}

/// A dashboard polling `cached=true`: the first poll (nothing decoded yet) gets a
/// fresh picture, and each poll keeps the decoder running for its linger, so the
/// pictures advance instead of freezing on the first one.
#[test]
fn polling_cached_snapshots_shows_advancing_pictures() {
    let server = RtspServer::start("h264", None);
    let hub = Hub::start(&format!("cameras:\n  cam:\n    url: {}\n    decode_linger: 3\n", server.url()));
    hub.wait_streaming("cam");
    std::thread::sleep(Duration::from_secs(1));
    let mut ids = Vec::new();
    for _ in 0..8 {
        let r = hub.get("/api/cameras/cam/snapshot.jpg?cached=true");
        assert_eq!(r.status, 200, "{}", r.text());
        ids.push(r.frame_id());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(ids.windows(2).all(|w| w[1] >= w[0]), "ids never go back: {ids:?}");
    let distinct = ids.windows(2).filter(|w| w[1] > w[0]).count();
    assert!(distinct >= 5, "the polled picture advances (the clip runs at 6 fps): {ids:?}");
}

/// `snapshot_default: cached` (server-wide, and per camera over it): a request that
/// names neither `cached` nor `fresh` answers from the newest picture at once (a
/// fresh one when none is made yet) and keeps a cheap refresh going, so the polled
/// picture advances; `fresh=true` asks for a fresh one; a camera that says `fresh`
/// keeps the fresh default.
#[test]
fn snapshot_default_cached_answers_from_the_newest_picture_and_fresh_true_overrides_it() {
    let server = RtspServer::start("h264", None);
    let hub = Hub::start(&format!(
        "server:\n  snapshot_default: cached\ncameras:\n  c:\n    url: {url}\n    decode_linger: 3\n  f:\n    url: {url}\n    snapshot_default: fresh\n",
        url = server.url()
    ));
    hub.wait_streaming("c");
    hub.wait_streaming("f");
    std::thread::sleep(Duration::from_secs(1));
    let get = |cam: &str, q: &str| {
        let r = hub.get(&format!("/api/cameras/{cam}/snapshot.jpg{q}"));
        assert_eq!(r.status, 200, "{cam}{q}: {}", r.text());
        let cached = r.header("x-snapshot-cached").unwrap().to_owned();
        assert_eq!(cached == "true", r.header("x-snapshot-source") == Some("cache"), "{cam}{q}");
        r
    };

    // Nothing decoded yet: the first one is made fresh, then they come from the cache.
    let first = get("c", "");
    assert_eq!(first.header("x-snapshot-cached"), Some("false"));
    assert_eq!(first.header("x-snapshot-source"), Some("gop"));
    let mut ids = vec![first.frame_id()];
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(400));
        let r = get("c", "");
        assert_eq!(r.header("x-snapshot-cached"), Some("true"), "cached by default");
        check_pixels("h264", &r, Picture::decode(&r.body).barcode());
        ids.push(r.frame_id());
    }
    assert!(ids.windows(2).all(|w| w[1] >= w[0]), "ids never go back: {ids:?}");
    assert!(ids.windows(2).filter(|w| w[1] > w[0]).count() >= 4, "a cheap refresh keeps it current: {ids:?}");

    // fresh=true: the newest frame received, decoded for this answer.
    let (r, _) = fresh_snapshot_q(&hub, &server, "c", "?fresh=true");
    assert_eq!(r.header("x-snapshot-cached"), Some("false"));
    assert_eq!(r.header("x-snapshot-source"), Some("warm"), "the refresh keeps the decoder running");
    // cached=false says the same; fresh=true with cached=true is a contradiction.
    assert_eq!(get("c", "?cached=false").header("x-snapshot-cached"), Some("false"));
    assert_eq!(hub.get("/api/cameras/c/snapshot.jpg?fresh=true&cached=true").status, 400);

    // The camera that says fresh: every plain request is fresh.
    for _ in 0..3 {
        let (r, _) = fresh_snapshot_q(&hub, &server, "f", "");
        assert_eq!(r.header("x-snapshot-cached"), Some("false"));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get("f", "?cached=true").header("x-snapshot-cached"), Some("true"));
}

/// The H.265 clip's keyframes after its first are CRA pictures (NAL type 21), as
/// many encoders make them. Each is a random access point: the GOP cache restarts
/// there (it used to restart only at the clip's IDR, once per loop: a GOP of
/// 300 units, and snapshots of a camera that joined mid-loop waited for the loop).
#[test]
fn h265_cra_keyframes_restart_the_gop_cache() {
    let server = RtspServer::start("h265", None);
    let hub = Hub::start(&format!("cameras:\n  cam:\n    url: {}\n", server.url()));
    hub.wait_streaming("cam");
    let units = || hub.camera("cam")["gop_cache"]["units"].as_u64().unwrap_or(0);
    let (mut most, mut restarts, mut last) = (0, 0, units());
    let end = std::time::Instant::now() + Duration::from_secs(22);
    while std::time::Instant::now() < end && restarts < 2 {
        std::thread::sleep(Duration::from_millis(200));
        let n = units();
        if n < last {
            restarts += 1;
        }
        (most, last) = (most.max(n), n);
    }
    assert!(restarts >= 2, "the GOP cache restarted {restarts} times in 22 s (keyframes every ~10 s)");
    assert!(most <= 110, "a GOP of {most} units: CRA keyframes (every ~100 frames) were not taken as keyframes");
}
