//! The decode scheduler against the real hub: every camera's decoding runs
//! under `server.decode.workers`, a person's snapshot goes before the
//! background decoders that fill the workers, and the API and metrics say who
//! waits, how busy the workers are and what was shed.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_persons_snapshot_goes_first_while_background_decoders_fill_the_one_worker() {
    let server = RtspServer::start("h264", None);
    // Six cameras decoding for nobody in particular (keep: decoded), one worker,
    // and one camera that decodes only when asked.
    let mut cfg = String::from("server:\n  decode:\n    workers: 1\ncameras:\n");
    for i in 0..6 {
        cfg += &format!("  bg{i}:\n    url: {}\n    keep: decoded\n", server.url());
    }
    cfg += &format!("  asked:\n    url: {}\n    keep: connected\n    decode_linger: 0\n", server.url());
    let hub = Hub::start(&cfg);
    for i in 0..6 {
        hub.wait_streaming(&format!("bg{i}"));
    }
    hub.wait_streaming("asked");
    let bg = hub.wait_camera("bg0", "a background decoder at work", Duration::from_secs(20), |c| {
        c["counters"]["frames_decoded"].as_u64() > Some(10)
    });
    assert_eq!(bg["decoder"]["priority"], "background", "{:#}", bg["decoder"]);
    let health = hub.get("/api/health").json();
    let d = &health["decode"];
    assert_eq!(d["workers"], 1, "{d:#}");
    assert!(d["granted"]["background"].as_u64() > Some(0), "{d:#}");
    assert_eq!(d["granted"]["person"], 0, "nobody asked yet: {d:#}");

    // A person asks for a fresh picture of the idle camera: a GOP replay, at the
    // person's priority, ahead of every background decode waiting.
    let r = hub.get("/api/cameras/asked/snapshot.jpg");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-snapshot-source"), Some("gop"));
    assert!(Picture::decode(&r.body).colour_spread() > 20.0, "real decoded pixels");
    let d = hub.get("/api/health").json()["decode"].clone();
    assert!(d["granted"]["person"].as_u64() >= Some(1), "the replay ran as a person's job: {d:#}");
    assert!(d["running"].as_u64() <= Some(1), "never more than the one worker: {d:#}");
    // The metrics say the same.
    let m = hub.get("/metrics").text();
    for line in [
        "camhub_decode_workers{scope=\"hub\"} 1",
        "camhub_decode_jobs_total{priority=\"person\"}",
        "camhub_decode_waiting{priority=\"background\"}",
        "camhub_frames_shed_total{camera=\"bg0\",reason=\"behind\"}",
        "camhub_frames_shed_total{camera=\"bg0\",reason=\"overload\"}",
    ] {
        assert!(m.contains(line), "{line} missing from /metrics:\n{m}");
    }
    // Each background camera kept decoding (none was starved by the others).
    for i in 0..6 {
        let c = hub.camera(&format!("bg{i}"));
        assert!(c["counters"]["frames_decoded"].as_u64() > Some(0), "bg{i}: {:#}", c["counters"]);
    }
}
