//! The actor, driven through the `Source` seam with a scripted source and a
//! stepped clock: watchdog, reconnects, lingers, decoder overruns and codec
//! changes happen when the test says the time has come, in milliseconds.

use std::sync::Arc;
use std::time::Duration;

use super::demand::Tier;
use super::testing::{ScriptedSource, camera, clip_units, settle, until, until_frame};
use super::*;
use crate::clock::Clock;
use crate::config::{Linger, Seconds};
use crate::error::{Error, ErrorKind};
use crate::media::Codec;
use crate::telemetry::stats::Counters;

const S: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_camera_is_stalled_then_reconnected_by_the_clock_not_by_waiting() {
    let clock = Clock::stepped();
    let src = Arc::new(ScriptedSource::default());
    let units = clip_units("h264");
    let first = src.accept(&clock);
    let second = src.accept(&clock);
    let cam = camera(src.clone(), &clock, |o| o.stall_timeout = Seconds::from_secs(10));
    until(&cam, "streaming", |s| s.state == State::Streaming).await;
    for u in &units[..5] {
        first.send(u);
    }
    until(&cam, "five units", |s| s.newest_seq == 5).await;
    // The status shows a unit before the reconciler has taken its time: let it.
    settle().await;

    clock.advance(9 * S);
    settle().await;
    assert_eq!(cam.status().state, State::Streaming, "silent for 9 s of a 10 s stall timeout");
    assert_eq!(src.opens(), 1);

    clock.advance(2 * S);
    let s = until(&cam, "stalled", |s| s.state == State::Stalled).await;
    assert!(s.last_error.as_ref().is_some_and(|e| e.kind == ErrorKind::Timeout), "{:?}", s.last_error);
    assert!(s.retry_at.is_some(), "a stalled camera says when it retries");
    // The retry comes after the backoff, on the clock: step until it reconnects.
    for _ in 0..120 {
        if src.opens() == 2 {
            break;
        }
        clock.advance(S / 2);
        settle().await;
    }
    assert_eq!(src.opens(), 2, "reconnected once the backoff ran out");
    until(&cam, "streaming again", |s| s.state == State::Streaming && s.session == 2).await;
    for u in &units[..3] {
        second.send(u);
    }
    let s = until(&cam, "units of the new session", |s| s.newest_seq == 8).await;
    assert_eq!(s.session_first_seq, 6, "unit numbers go on across reconnects");
    assert_eq!(s.attempts, 2);
    cam.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decoder_lingers_exactly_decode_linger_after_the_last_lease() {
    let clock = Clock::stepped();
    let src = Arc::new(ScriptedSource::default());
    let units = clip_units("h264");
    let feed = src.accept(&clock);
    let cam = camera(src.clone(), &clock, |o| {
        o.decode_linger = Linger::After(10 * S);
        o.stall_timeout = Seconds::from_secs(60);
    });
    until(&cam, "streaming", |s| s.state == State::Streaming).await;
    for u in &units[..10] {
        feed.send(u);
    }
    until(&cam, "ten units", |s| s.newest_seq == 10).await;
    assert!(!cam.status().decoder_running, "nobody asked for pictures");

    let lease = cam.lease(Tier::Decoding);
    until(&cam, "a decoder", |s| s.decoder_running).await;
    assert_eq!(until_frame(&cam, 10).await.frame_id, 10, "the GOP cache was replayed up to the newest unit");
    drop(lease);
    clock.advance(9 * S);
    settle().await;
    assert!(cam.status().decoder_running, "still lingering at 9 s of 10");
    clock.advance(2 * S);
    until(&cam, "the decoder stopped", |s| !s.decoder_running).await;
    assert_eq!(cam.status().state, State::Streaming, "the connection has its own, longer linger");
    cam.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decoder_that_falls_behind_skips_to_the_next_keyframe_instead_of_replaying() {
    let clock = Clock::stepped();
    let src = Arc::new(ScriptedSource::default());
    let units = clip_units("h264");
    let feed = src.accept(&clock);
    let cam = camera(src.clone(), &clock, |o| o.decode_linger = Linger::Forever);
    until(&cam, "streaming", |s| s.state == State::Streaming).await;
    feed.send(&units[0]);
    until_frame(&cam, 1).await;
    // A burst far larger than the decoder's queue, all at once: it cannot keep up.
    let burst: Vec<_> = units.iter().chain(units.iter()).collect();
    for u in &burst {
        feed.send(u);
    }
    let newest = 1 + burst.len() as u64;
    until(&cam, "the whole burst", |s| s.newest_seq == newest).await;
    let c = cam.counters();
    assert!(Counters::get(&c.decoder_overruns) >= 1, "the burst overran the decoder's queue");
    assert!(Counters::get(&c.frames_shed_behind) >= 1, "what it could not take was shed");
    // Nobody looks (a linger keeps it decoding): it waits for the next keyframe
    // rather than replay the GOP, so fewer units were decoded than arrived...
    // (Once the decoder has worked through what its queue took.)
    let mut decoded = Counters::get(&c.frames_decoded);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let now = Counters::get(&c.frames_decoded);
        if now == decoded {
            break;
        }
        decoded = now;
    }
    assert!(decoded < newest, "{decoded} of {newest} decoded: the backlog was not replayed");
    // ...and the next GOP, at a pace it keeps up with, is decoded from its keyframe on.
    for (i, chunk) in units.chunks(32).enumerate() {
        for u in chunk {
            feed.send(u);
        }
        until_frame(&cam, newest + (32 * i + chunk.len()) as u64).await;
    }
    let last = newest + units.len() as u64;
    let f = until_frame(&cam, last).await;
    assert_eq!(f.frame_id, last);
    assert!(Counters::get(&c.frames_decoded) < last, "still nothing replayed");
    cam.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_waiting_on_a_decoder_that_fell_behind_gets_a_replay_at_once() {
    let clock = Clock::stepped();
    let src = Arc::new(ScriptedSource::default());
    let units = clip_units("h264");
    let feed = src.accept(&clock);
    let cam = camera(src.clone(), &clock, |o| o.decode_linger = Linger::Forever);
    until(&cam, "streaming", |s| s.state == State::Streaming).await;
    feed.send(&units[0]);
    until_frame(&cam, 1).await;
    let burst: Vec<_> = units.iter().chain(units.iter()).collect();
    for u in &burst {
        feed.send(u);
    }
    let newest = 1 + burst.len() as u64;
    until(&cam, "the whole burst", |s| s.newest_seq == newest).await;
    assert!(Counters::get(&cam.counters().decoder_overruns) >= 1);
    // A person asks (a snapshot's lease): no keyframe comes, yet the newest unit is decoded.
    let _lease = cam.lease(crate::camera::demand::Tier::Decoding);
    let f = until_frame(&cam, newest).await;
    assert_eq!(f.frame_id, newest, "the person's replay reached the newest unit");
    cam.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codec_change_mid_stream_starts_a_decoder_for_the_new_codec() {
    let clock = Clock::stepped();
    let src = Arc::new(ScriptedSource::default());
    let (h264, h265) = (clip_units("h264"), clip_units("h265"));
    let feed = src.accept(&clock);
    let cam = camera(src.clone(), &clock, |o| o.decode_linger = Linger::Forever);
    for u in &h264[..5] {
        feed.send(u);
    }
    until_frame(&cam, 5).await;
    assert_eq!(cam.status().codec, Some(Codec::H264));
    for u in &h265[..5] {
        feed.send(u);
    }
    let f = until_frame(&cam, 10).await;
    assert_eq!(f.frame_id, 10);
    let s = cam.status();
    assert_eq!(s.codec, Some(Codec::H265));
    assert_eq!((s.gop_units, s.decoder_running), (5, true), "the GOP cache holds the new codec's units only");
    assert_eq!(Counters::get(&cam.counters().decode_errors), 0, "no H.265 unit reached the H.264 decoder");
    cam.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_first_connect_backs_off_and_a_stop_is_seen_before_the_actor_runs() {
    let clock = Clock::stepped();
    let src = Arc::new(ScriptedSource::default());
    src.refuse(Error::new(ErrorKind::Unreachable, "connection refused"));
    let cam = camera(src.clone(), &clock, |_| {});
    let s = until(&cam, "backoff", |s| s.state == State::Backoff).await;
    assert!(s.retry_at.is_some_and(|t| t > clock.now()), "the retry is in the future");
    settle().await;
    assert_eq!(src.opens(), 1, "no retry before the backoff runs out");

    // A camera stopped at once, before its task first ran, stops all the same.
    let src2 = Arc::new(ScriptedSource::default());
    let cam2 = camera(src2, &clock, |_| {});
    tokio::time::timeout(Duration::from_secs(5), cam2.stop()).await.expect("the stop was not lost");
    assert_eq!(cam2.status().state, State::Stopped);
    cam.stop().await;
}
