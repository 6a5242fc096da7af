//! The three paths of the snapshot contract, through the `Source` seam with a
//! scripted source and a stepped clock: cold (connect on request), gop (a fresh
//! decoder replays the cache) and warm (the running decoder's newest picture),
//! each answering with the newest unit received and its honest age.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::camera::testing::{ScriptedSource, camera, clip_units, settle, until, until_frame};
use crate::clock::Clock;
use crate::config::{Keep, Linger};

fn req() -> SnapshotRequest {
    SnapshotRequest::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_gop_and_warm_snapshots_each_show_the_newest_unit() {
    let clock = Clock::stepped();
    let units = clip_units("h264");

    // Cold: nothing runs until the snapshot asks; it connects and waits for a picture.
    let src = Arc::new(ScriptedSource::default());
    let feed = src.accept(&clock);
    let cam = camera(src.clone(), &clock, |o| {
        o.keep = Keep::OnDemand;
        o.decode_linger = Linger::After(Duration::ZERO);
    });
    assert_eq!(src.opens(), 0, "on_demand: no connection before anyone asks");
    let shot = tokio::spawn({
        let cam = cam.clone();
        async move { take(&cam, &req()).await }
    });
    until(&cam, "connected by the snapshot", |s| s.state == State::Streaming).await;
    feed.send(&units[0]);
    let cold = shot.await.unwrap().expect("a cold snapshot");
    assert_eq!((cold.source, cold.frame_id), (SnapshotSource::Cold, 1));
    assert!(cold.jpeg.starts_with(&[0xFF, 0xD8]) && cold.width == 640, "a real JPEG of the frame");

    // Gop: connected with the decoder off; a fresh decoder replays the cache to the newest unit.
    for u in &units[1..25] {
        feed.send(u);
    }
    until(&cam, "25 units, decoder stopped", |s| s.newest_seq == 25 && !s.decoder_running).await;
    clock.advance(Duration::from_millis(400));
    let gop = take(&cam, &req()).await.expect("a gop snapshot");
    assert_eq!((gop.source, gop.frame_id), (SnapshotSource::Gop, 25));
    assert_eq!(clock.since(gop.captured_mono), Duration::from_millis(400), "the age is the unit's, on the clock");

    // Warm: a decoder running (someone holds a lease); the snapshot waits for the newest unit.
    let lease = cam.lease(crate::camera::demand::Tier::Decoding);
    until(&cam, "a running decoder", |s| s.decoder_running).await;
    until_frame(&cam, 25).await;
    for u in &units[25..30] {
        feed.send(u);
    }
    until(&cam, "30 units", |s| s.newest_seq == 30).await;
    let warm = take(&cam, &req()).await.expect("a warm snapshot");
    assert_eq!((warm.source, warm.frame_id), (SnapshotSource::Warm, 30));

    // Cache: an existing picture within max_age costs nothing new.
    let cached = take(&cam, &SnapshotRequest { max_age: Some(Duration::from_secs(1)), ..req() }).await.unwrap();
    assert_eq!((cached.source, cached.frame_id), (SnapshotSource::Cache, 30));
    clock.advance(Duration::from_secs(5));
    let stale = take(&cam, &SnapshotRequest { cached: true, max_age: Some(Duration::from_secs(1)), ..req() }).await;
    assert!(matches!(stale, Err(SnapshotError::NoPicture(_))), "a 5 s old picture is not within 1 s: {stale:?}");
    drop(lease);
    cam.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_times_out_on_the_clock_when_no_picture_comes() {
    let clock = Clock::stepped();
    let src = Arc::new(ScriptedSource::default());
    let _feed = src.accept(&clock);
    let cam = camera(src.clone(), &clock, |o| o.snapshot_timeout = crate::config::Seconds::from_secs(10));
    until(&cam, "streaming", |s| s.state == State::Streaming).await;
    let shot = tokio::spawn({
        let cam = cam.clone();
        async move { take(&cam, &req()).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!shot.is_finished(), "the camera sent nothing yet: still waiting");
    clock.advance(Duration::from_secs(11));
    let r = tokio::time::timeout(Duration::from_secs(5), shot).await.expect("answered").unwrap();
    assert!(matches!(r, Err(SnapshotError::Timeout(t)) if t == 10.0), "{r:?}");
    cam.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_polls_keep_the_picture_fresh_and_start_with_a_fresh_one() {
    let clock = Clock::stepped();
    let units = clip_units("h264");
    let src = Arc::new(ScriptedSource::default());
    let feed = src.accept(&clock);
    let cam = camera(src.clone(), &clock, |o| o.decode_linger = Linger::After(Duration::from_secs(3)));
    until(&cam, "streaming", |s| s.state == State::Streaming).await;
    for u in &units[..5] {
        feed.send(u);
    }
    until(&cam, "5 units, nothing decoded", |s| s.newest_seq == 5 && !s.decoder_running).await;
    assert!(cam.latest_frame().is_none());
    let cached = SnapshotRequest { cached: true, ..req() };

    // Nothing decoded yet: a fresh picture rather than a refusal.
    let first = take(&cam, &cached).await.expect("cached=true with no picture yet makes a fresh one");
    assert_eq!((first.source, first.frame_id), (SnapshotSource::Gop, 5));

    // Each poll holds a decoding lease, so within decode_linger the decoder keeps
    // running between polls and the next poll shows newer units.
    clock.advance(Duration::from_secs(4));
    until(&cam, "the decoder stopped after its linger", |s| !s.decoder_running).await;
    let poll = take(&cam, &cached).await.expect("a cached picture");
    assert_eq!(poll.source, SnapshotSource::Cache);
    until(&cam, "the decoder kept running after the poll", |s| s.decoder_running).await;
    for u in &units[5..12] {
        feed.send(u);
    }
    until_frame(&cam, 12).await;
    clock.advance(Duration::from_secs(1));
    let later = take(&cam, &cached).await.expect("a cached picture");
    assert_eq!((later.source, later.frame_id), (SnapshotSource::Cache, 12), "the polled picture advanced");
    cam.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_task_that_panics_is_shown_failed_restarted_after_its_backoff_and_serves_again() {
    let clock = Clock::stepped();
    let units = clip_units("h264");
    let src = Arc::new(ScriptedSource::default());
    src.panic("scripted source bug");
    let feed = src.accept(&clock);
    let cam = camera(src.clone(), &clock, |o| o.decode_linger = Linger::After(Duration::from_secs(60)));
    // Taken before the crash: the lease and the subscriber must outlive the crashed run.
    let lease = cam.lease(crate::camera::demand::Tier::Decoding);
    let mut progress = cam.subscribe_progress();

    let s = until(&cam, "failed after the panic", |s| s.restarts == 1).await;
    assert_eq!(s.state, State::Backoff, "a crashed camera counts as failed");
    let e = s.last_error.expect("the panic is the camera's error");
    assert_eq!(e.to_string(), "internal error: camera task panicked: scripted source bug");
    let retry = s.retry_at.expect("a crashed camera says when it restarts");
    let wait = retry.saturating_duration_since(clock.now());
    assert!(wait >= Duration::from_millis(500) && wait <= Duration::from_secs(1), "first backoff: {wait:?}");
    let offline = take(&cam, &req()).await;
    assert!(matches!(offline, Err(SnapshotError::Offline { .. })), "{offline:?}");

    // No restart before the backoff runs out, on the clock.
    settle().await;
    clock.advance(wait - Duration::from_millis(100));
    settle().await;
    assert_eq!(src.opens(), 1, "restarted before its backoff ran out");
    clock.advance(Duration::from_millis(200));
    until(&cam, "streaming again", |s| s.state == State::Streaming).await;
    assert_eq!(src.opens(), 2);

    for u in &units[..5] {
        feed.send(u);
    }
    until(&cam, "five units", |s| s.newest_seq == 5).await;
    let shot = take(&cam, &req()).await.expect("a snapshot after the restart");
    assert_eq!(shot.frame_id, 5);
    assert!(shot.jpeg.starts_with(&[0xFF, 0xD8]));
    let seen = progress.wait_for(|p| p.frame.as_ref().is_some_and(|f| f.frame_id == 5));
    tokio::time::timeout(Duration::from_secs(5), seen).await.expect("the old subscriber sees new pictures").unwrap();
    assert!(cam.status().decoder_running, "the lease taken before the crash still holds the decoder");
    assert_eq!(cam.status().restarts, 1);
    drop(lease);
    cam.stop().await;
    assert_eq!(cam.status().state, State::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_snapshots_decode_one_unit_per_gop() {
    use std::sync::atomic::Ordering::Relaxed;
    let clock = Clock::stepped();
    let units = clip_units("h264");
    let next_key = 1 + units[1..].iter().position(|u| u.keyframe).expect("a second keyframe in the clip");
    let src = Arc::new(ScriptedSource::default());
    let feed = src.accept(&clock);
    let cam = camera(src.clone(), &clock, |o| o.decode_linger = Linger::After(Duration::from_secs(10)));
    until(&cam, "streaming", |s| s.state == State::Streaming).await;
    for u in &units[..20] {
        feed.send(u);
    }
    until(&cam, "20 units, nothing decoded", |s| s.newest_seq == 20 && !s.decoder_running).await;
    clock.advance(Duration::from_millis(700));
    let key = SnapshotRequest { keyframe: true, width: Some(320), ..req() };

    // The GOP's keyframe alone is decoded: not a replay of the 20 units.
    let first = take(&cam, &key).await.expect("a keyframe snapshot");
    assert_eq!((first.source, first.frame_id, first.width), (SnapshotSource::Keyframe, 1, 320));
    assert_eq!(clock.since(first.captured_mono), Duration::from_millis(700), "the keyframe's own age");
    assert_eq!(cam.counters().frames_decoded.load(Relaxed), 1, "one unit decoded");

    // The lease lingers: the decoder takes each new keyframe and nothing else.
    let again = take(&cam, &key).await.unwrap();
    assert_eq!((again.source, again.frame_id), (SnapshotSource::Cache, 1));
    for u in &units[20..=next_key] {
        feed.send(u);
    }
    until_frame(&cam, next_key as u64 + 1).await;
    let later = take(&cam, &key).await.unwrap();
    assert_eq!((later.source, later.frame_id), (SnapshotSource::Cache, next_key as u64 + 1), "the next GOP's picture");
    assert_eq!(cam.counters().frames_decoded.load(Relaxed), 2, "two keyframes decoded, no difference frames");
    assert_eq!(cam.leases(crate::camera::demand::Tier::Keyframes), 0, "the lease was the request's");
    cam.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_decoder_releases_its_picture_and_cached_answers_from_the_jpeg_kept() {
    let clock = Clock::stepped();
    let units = clip_units("h264");
    let src = Arc::new(ScriptedSource::default());
    let feed = src.accept(&clock);
    let cam = camera(src.clone(), &clock, |o| o.decode_linger = Linger::After(Duration::ZERO));
    until(&cam, "streaming", |s| s.state == State::Streaming).await;
    for u in &units[..8] {
        feed.send(u);
    }
    until(&cam, "8 units", |s| s.newest_seq == 8).await;
    let fresh = take(&cam, &req()).await.expect("a fresh snapshot");
    assert_eq!(fresh.frame_id, 8);
    // Nobody wants pictures now: the decoder stops and the picture's pixels go
    // (a whole decoded picture per idle camera is what kept RSS up after a burst).
    until(&cam, "the decoder stopped", |s| !s.decoder_running).await;
    let info = cam.latest_info().expect("what the picture was stays");
    assert_eq!((info.frame_id, info.width, info.height), (8, 640, 360));
    assert!(cam.latest_frame().is_none(), "the pixels were released");
    assert_eq!(cam.memory().frame, 0);
    // A cached poll still answers at once, from the JPEG made for it.
    let cached = take(&cam, &SnapshotRequest { cached: true, ..req() }).await.expect("a cached picture");
    assert_eq!((cached.source, cached.frame_id), (SnapshotSource::Cache, 8));
    assert_eq!(cached.jpeg, fresh.jpeg, "the very JPEG, not a new encode");
    // Its pixels are gone, yet a new size is still made, from the GOP cache (or by
    // the decoder the cached poll restarted for its refresh).
    let small = take(&cam, &SnapshotRequest { width: Some(320), ..req() }).await.expect("a picture");
    assert!(matches!(small.source, SnapshotSource::Gop | SnapshotSource::Warm), "{:?}", small.source);
    assert_eq!((small.frame_id, small.width), (8, 320));
    cam.stop().await;
}
