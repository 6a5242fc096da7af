use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::*;

/// A fresh 8 KiB file mapped twice, as a writer and a reader process would.
fn two_maps(tag: &str) -> (Mapping, Mapping) {
    let path = std::env::temp_dir().join(format!("camhub-ring-map-{tag}-{}", std::process::id()));
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    f.set_len(8192).unwrap();
    let maps = (Mapping::new(&f).unwrap(), Mapping::new(&f).unwrap());
    std::fs::remove_file(&path).unwrap();
    maps
}

#[test]
fn a_store_through_one_mapping_is_seen_through_the_other() {
    let (w, r) = two_maps("store");
    assert_eq!(w.len(), 8192);
    w.u64_at(64).store(42, Ordering::Release);
    assert_eq!(r.u64_at(64).load(Ordering::Acquire), 42);
    assert!(r.fits(8184, 8) && !r.fits(8188, 8) && !r.fits(12, 8));
}

#[test]
fn an_empty_file_is_refused() {
    let f = tempfile();
    assert!(Mapping::new(&f).is_err());
}

fn tempfile() -> std::fs::File {
    let path = std::env::temp_dir().join(format!("camhub-ring-empty-{}", std::process::id()));
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    f
}

#[test]
fn wait_returns_on_a_wake_and_on_its_timeout() {
    let (w, r) = two_maps("wait");
    assert_eq!(r.wait(72, 0, Some(Duration::from_millis(20))), Waited::TimedOut);
    assert_eq!(r.wait(72, 5, None), Waited::Woken, "the word is not 5: no sleep at all");
    let w = Arc::new(w);
    let waker = {
        let w = w.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            w.u32_at(72).fetch_add(1, Ordering::Release);
            w.wake(72);
        })
    };
    assert_eq!(r.wait(72, 0, Some(Duration::from_secs(10))), Waited::Woken);
    assert_eq!(r.u32_at(72).load(Ordering::Acquire), 1);
    waker.join().unwrap();
}

#[test]
fn wait_any_says_which_of_several_rings_changed() {
    let rings: Vec<(Mapping, Mapping)> = (0..5).map(|i| two_maps(&format!("any{i}"))).collect();
    let words: Vec<(&AtomicU32, u32)> = rings.iter().map(|(_, r)| (r.u32_at(72), 0)).collect();
    let t = Instant::now();
    assert_eq!(wait_any(&words, Some(Duration::from_millis(30))).unwrap(), None);
    assert!(t.elapsed() >= Duration::from_millis(30), "it slept until the timeout");
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            rings[3].0.u32_at(72).fetch_add(1, Ordering::Release);
            rings[3].0.wake(72);
        });
        assert_eq!(wait_any(&words, Some(Duration::from_secs(10))).unwrap(), Some(3));
    });
    // Already changed: at once, without sleeping.
    assert_eq!(wait_any(&words, None).unwrap(), Some(3));
    assert_eq!(wait_any(&[], Some(Duration::ZERO)).unwrap(), None);
    let too_many: Vec<(&AtomicU32, u32)> = (0..129).map(|_| words[0]).collect();
    assert!(wait_any(&too_many, None).is_err());
}
