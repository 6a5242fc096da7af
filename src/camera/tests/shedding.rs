//! Shedding under overload, on the stepped clock: a background camera decodes
//! its fair share of each GOP (the keyframe and the head), leaves the tail, and
//! a person who starts looking mid-GOP gets the newest picture at once.

use super::*;
use crate::camera::testing::{Feed, camera_in, context};
use crate::decode::schedule::Priority;

/// Sends `units` in small chunks, each once the actor has accounted for the
/// last (decoded or shed), so the decoder's queue never overflows; returns the
/// newest unit's number.
async fn feed_paced(cam: &Camera, feed: &Feed, units: &[EncodedUnit], mut seq: u64) -> u64 {
    let c = cam.counters().clone();
    let accounted = move || {
        Counters::get(&c.frames_decoded) + Counters::get(&c.frames_shed_overload) + Counters::get(&c.frames_shed_behind)
    };
    for chunk in units.chunks(16) {
        let before = accounted();
        for u in chunk {
            feed.send(u);
        }
        seq += chunk.len() as u64;
        let want = before + chunk.len() as u64;
        let accounted_for = async {
            while accounted() < want {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), accounted_for).await.is_err() {
            panic!("units {seq} not accounted for: {:?}", cam.status());
        }
    }
    seq
}

/// (decoded, shed for overload) so far.
fn counts(cam: &Camera) -> (u64, u64) {
    let c = cam.counters();
    (Counters::get(&c.frames_decoded), Counters::get(&c.frames_shed_overload))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_budget_a_background_camera_decodes_the_head_of_each_gop_and_a_person_gets_the_rest() {
    let clock = Clock::stepped();
    let ctx = context(&clock);
    let src = Arc::new(ScriptedSource::default());
    let units = clip_units("h264");
    // The clip's GOPs: 100 units each.
    let keys: Vec<usize> = (0..units.len()).filter(|&i| units[i].keyframe).collect();
    assert_eq!(keys, [0, 100, 200], "the test clip's keyframes");
    let feed = src.accept(&clock);
    // Decoding for nobody in particular (a linger keeps it going): background.
    let cam = camera_in(src.clone(), &ctx, |o| o.decode_linger = Linger::Forever);
    until(&cam, "streaming", |s| s.state == State::Streaming).await;

    // Within budget: the first GOP is decoded in full.
    let seq = feed_paced(&cam, &feed, &units[..100], 0).await;
    assert_eq!(counts(&cam), (100, 0));
    assert_eq!(cam.priority(), Priority::Background);

    // Over budget, half of each GOP shed: the next GOP's keyframe and first
    // half are decoded (its length is known from the last: 100 units), its
    // tail is not, and the camera says so.
    ctx.scheduler.pin_shed(Some(0.5));
    let seq = feed_paced(&cam, &feed, &units[100..200], seq).await;
    assert_eq!(counts(&cam), (100 + 50, 50), "units 0-49 of the GOP decoded, 50-99 shed");
    assert!(cam.status().shedding, "{:?}", cam.status());
    assert_eq!(cam.latest_frame().unwrap().frame_id, 100 + 50, "the newest picture is the head's last frame");
    assert_eq!(ctx.scheduler.stats().shed_overload, 50);

    // The next keyframe starts the share again; a person who asks mid-GOP,
    // after the cut, gets the newest unit decoded (a replay, at once).
    let seq = feed_paced(&cam, &feed, &units[200..260], seq).await;
    assert_eq!(counts(&cam), (150 + 50, 50 + 10), "units 0-49 of the GOP decoded again");
    assert!(cam.status().shedding);
    let lease = cam.lease(Tier::Decoding);
    let f = until_frame(&cam, seq).await;
    assert_eq!(f.frame_id, seq, "the person's picture is the newest unit");
    assert_eq!(cam.priority(), Priority::Person);
    assert!(!cam.status().shedding, "{:?}", cam.status());
    // While the person looks, nothing is shed.
    let shed = counts(&cam).1;
    let seq = feed_paced(&cam, &feed, &units[260..], seq).await;
    assert_eq!(until_frame(&cam, seq).await.frame_id, seq);
    assert_eq!(counts(&cam).1, shed, "a person's camera sheds nothing");
    drop(lease);
    let gone = async {
        while cam.priority() != Priority::Background {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), gone).await.expect("the person's lease never went");

    // Keyframes only at a share of 1: one picture per GOP.
    ctx.scheduler.pin_shed(Some(1.0));
    let (decoded, shed) = counts(&cam);
    let seq = feed_paced(&cam, &feed, &units[..200], seq).await;
    assert_eq!(counts(&cam), (decoded + 2, shed + 198), "two GOPs, two keyframes decoded");
    assert_eq!(cam.latest_frame().unwrap().frame_id, seq - 99, "the second GOP's keyframe");
    cam.stop().await;
}
