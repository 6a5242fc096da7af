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

/// The log lines of what runs on this thread while the returned guard lives.
fn capture_log() -> (Arc<parking_lot::Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct W(Arc<parking_lot::Mutex<Vec<u8>>>);
    impl std::io::Write for W {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let w = W(buf.clone());
    let sub = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || w.clone())
        .finish();
    (buf, tracing::subscriber::set_default(sub))
}

// Current-thread runtime: the actor opens its decoders on this thread, under the captured log.
#[tokio::test]
async fn hwaccel_without_a_device_decodes_in_software_says_why_and_logs_it_once() {
    use crate::config::Hwaccel;
    // This machine has no GPU and no VAAPI render node (a machine with one skips the check).
    for (want, kind) in [(Hwaccel::Vaapi, "vaapi"), (Hwaccel::Cuda, "cuda")] {
        let (log, _guard) = capture_log();
        let clock = Clock::stepped();
        let src = Arc::new(ScriptedSource::default());
        let units = clip_units("h264");
        let feed = src.accept(&clock);
        let cam = camera(src.clone(), &clock, |o| {
            o.decoder.hwaccel = want;
            o.decode_linger = Linger::After(S);
            o.stall_timeout = Seconds::from_secs(60);
        });
        until(&cam, "streaming", |s| s.state == State::Streaming).await;
        for u in &units[..10] {
            feed.send(u);
        }
        until(&cam, "ten units", |s| s.newest_seq == 10).await;
        // Two decoders, one after the other: each opens in software.
        for round in 0..2 {
            let lease = cam.lease(Tier::Decoding);
            until(&cam, "a decoder", |s| s.decoder_running).await;
            assert_eq!(until_frame(&cam, 10).await.frame_id, 10, "{kind}, decoder {round}: pictures, in software");
            drop(lease);
            clock.advance(2 * S);
            until(&cam, "the decoder stopped", |s| !s.decoder_running).await;
        }
        let hw = cam.hwaccel();
        if hw.active.is_some() {
            cam.stop().await;
            continue; // a machine with the device
        }
        let why = hw.fallback.expect("the reason it decodes in software");
        assert!(why.starts_with(&format!("hwaccel {kind} unavailable (")), "{why}");
        assert!(!hw.failed);
        assert_eq!(Counters::get(&cam.counters().hwaccel_fallbacks), 0, "unavailable is not a mid-stream failure");
        let text = String::from_utf8_lossy(&log.lock()).into_owned();
        let line = format!("camera cam: hwaccel {kind} unavailable (");
        assert_eq!(text.matches(&line).count(), 1, "said once for two decoders:\n{text}");
        assert!(text.contains("); decoding in software"), "{text}");
        cam.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hwaccel_none_tries_no_device_and_says_nothing() {
    let clock = Clock::stepped();
    let src = Arc::new(ScriptedSource::default());
    let units = clip_units("h264");
    let feed = src.accept(&clock);
    let cam = camera(src.clone(), &clock, |o| o.decode_linger = Linger::Forever);
    until(&cam, "streaming", |s| s.state == State::Streaming).await;
    let _lease = cam.lease(Tier::Decoding);
    feed.send(&units[0]);
    until_frame(&cam, 1).await;
    assert_eq!(cam.hwaccel(), crate::decode::HwInfo::default());
    cam.stop().await;
}

#[test]
fn a_device_failing_mid_stream_reopens_the_decoder_in_software_and_is_counted() {
    use crate::config::Hwaccel;
    use crate::decode::{HwRequest, HwState, SyncDecoder};
    use crate::ffi::HwKind;
    let units: Vec<_> = clip_units("h264").into_iter().map(Arc::new).collect();
    let clock = Clock::stepped();
    let metrics = crate::telemetry::metrics::Metrics::new(clock.wall(), &[]);
    let state = Arc::new(HwState::default());
    let req = HwRequest { hwaccel: Hwaccel::Vaapi, camera: "yard".into(), state: state.clone() };
    let mut dec = SyncDecoder::with_hwaccel(Codec::H264, clock, metrics.decode(), 1 << 24, req).unwrap();
    let counters = Counters::default();
    let mut got = Vec::new();
    for u in &units[..3] {
        dec.decode(u.clone(), &counters, |f| got.push(f.frame_id));
    }
    let seqs: Vec<u64> = units[..3].iter().map(|u| u.seq).collect();
    assert_eq!(got, seqs);
    // The "device" fails at a difference frame: software from the next keyframe.
    dec.pretend_device_fails_next(HwKind::Vaapi);
    dec.decode(units[3].clone(), &counters, |f| got.push(f.frame_id));
    assert_eq!(dec.hwaccel(), None);
    assert_eq!(Counters::get(&counters.hwaccel_fallbacks), 1);
    let info = state.info();
    assert_eq!(info.active, None);
    assert!(info.failed);
    assert!(info.fallback.as_deref().is_some_and(|w| w.starts_with("hwaccel vaapi failed mid-stream")), "{info:?}");
    let key = units.iter().skip(4).position(|u| u.keyframe).map(|i| i + 4).expect("a second keyframe in the clip");
    for u in &units[4..=key] {
        dec.decode(u.clone(), &counters, |f| got.push(f.frame_id));
    }
    assert_eq!(got.last(), Some(&units[key].seq), "decoding again, in software, from the keyframe");
    // At a keyframe, the failing unit itself is decoded again in software.
    dec.pretend_device_fails_next(HwKind::Cuda);
    let n = got.len();
    let next_key = units.iter().skip(key + 1).position(|u| u.keyframe).map(|i| i + key + 1);
    if let Some(k) = next_key {
        dec.resync();
        dec.decode(units[k].clone(), &counters, |f| got.push(f.frame_id));
        assert_eq!(got[n..], [units[k].seq]);
        assert_eq!(Counters::get(&counters.hwaccel_fallbacks), 2);
    }
    // The camera's later decoders stay in software.
    let req = HwRequest { hwaccel: Hwaccel::Vaapi, camera: "yard".into(), state: state.clone() };
    let clock = Clock::stepped();
    let dec = SyncDecoder::with_hwaccel(Codec::H264, clock, metrics.decode(), 1 << 24, req).unwrap();
    assert_eq!(dec.hwaccel(), None);
}

mod shedding;
