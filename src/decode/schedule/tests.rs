use super::*;

const MS: Duration = Duration::from_millis(1);

fn cell(p: Priority) -> Arc<PriorityCell> {
    PriorityCell::new(p)
}

#[test]
fn workers_are_granted_until_full_then_waiters_go_by_priority_then_arrival() {
    let mut q = Queue::new(2);
    let (person, program, background) = (cell(Priority::Person), cell(Priority::Program), cell(Priority::Background));
    assert_eq!(q.request(&background, MS, "b0"), Some("b0"));
    assert_eq!(q.request(&background, MS, "b1"), Some("b1"));
    assert_eq!(q.request(&background, 60 * MS, "b2"), None, "both workers busy");
    assert_eq!(q.request(&program, MS, "p0"), None);
    assert_eq!(q.request(&background, MS, "b3"), None);
    assert_eq!(q.request(&person, 300 * MS, "person"), None);
    assert_eq!(q.request(&program, MS, "p1"), None);
    assert_eq!(q.waiting(), ([1, 2, 2], 363 * MS));
    let order: Vec<_> = (0..5).filter_map(|_| q.release()).collect();
    assert_eq!(order, ["person", "p0", "p1", "b2", "b3"], "a person first, then programs, each in arrival order");
    assert_eq!(q.running(), 2, "each wake took over a worker");
    assert_eq!(q.release(), None);
    assert_eq!(q.release(), None);
    assert_eq!(q.running(), 0);
}

#[test]
fn a_waiters_priority_is_read_when_the_next_one_is_picked() {
    let mut q = Queue::new(1);
    let (a, b) = (cell(Priority::Background), cell(Priority::Background));
    q.request(&a, MS, "running");
    q.request(&a, MS, "a");
    q.request(&b, MS, "b");
    // A person starts watching b's camera while its decode waits: it moves up.
    b.set(Priority::Person);
    assert_eq!(q.release(), Some("b"));
    assert_eq!(q.release(), Some("a"));
}

#[test]
fn a_new_request_never_jumps_a_line_that_exists() {
    let mut q = Queue::new(1);
    let p = cell(Priority::Program);
    q.request(&p, MS, 1);
    q.request(&p, MS, 2);
    // The worker is freed and handed to 2; a newcomer then waits its turn.
    assert_eq!(q.release(), Some(2));
    assert_eq!(q.request(&cell(Priority::Person), MS, 3), None);
}

#[test]
fn fewer_workers_take_effect_as_jobs_end_and_more_wake_waiters_at_once() {
    let mut q = Queue::new(3);
    let p = cell(Priority::Program);
    for i in 0..3 {
        assert!(q.request(&p, MS, i).is_some());
    }
    q.request(&p, MS, 10);
    assert!(q.set_workers(1).is_empty());
    assert_eq!(q.release(), None, "3 running for 1 worker: the job ends, nobody takes it");
    assert_eq!(q.release(), None);
    assert_eq!(q.release(), Some(10), "down to the budget: the waiter runs");
    q.request(&p, MS, 11);
    q.request(&p, MS, 12);
    assert_eq!(q.set_workers(3), vec![11, 12]);
    assert_eq!(q.running(), 3);
}

#[test]
fn the_governor_sheds_more_when_busy_or_behind_and_less_when_there_is_room() {
    let clock = Clock::stepped();
    let t0 = clock.now();
    let s = Duration::from_secs(1).as_nanos() as u64;
    let mut g = Governor::default();
    g.update(t0, 0, 2);
    let tick = std::cell::Cell::new(0u32);
    let run = |g: &mut Governor, busy_per_s: u64, ticks: u32, busy: &mut u64| {
        for _ in 0..ticks {
            tick.set(tick.get() + 1);
            *busy += busy_per_s;
            g.update(t0 + tick.get() * GOVERNOR_TICK, *busy, 2);
        }
    };
    let mut busy = 0;
    // Two workers busy all the time: the smoothed utilisation climbs past 92%,
    // then the shed share rises by small steps, one per tick.
    run(&mut g, 2 * s, 4, &mut busy);
    assert!(g.utilisation() > 0.7 && g.utilisation() < 0.92 && g.shed() == 0.0, "smoothed: {}", g.utilisation());
    run(&mut g, 2 * s, 6, &mut busy);
    let early = g.shed();
    run(&mut g, 2 * s, 10, &mut busy);
    assert!((g.shed() - early - 10.0 * STEP).abs() < 1e-9, "{} then {}", early, g.shed());
    // Updates within a tick change nothing.
    let before = g.shed();
    g.update(t0 + tick.get() * GOVERNOR_TICK + 10 * MS, busy + s, 2);
    assert_eq!(g.shed(), before);
    // A decoder fell behind: a double step, whatever the utilisation.
    g.fell_behind();
    run(&mut g, 2 * s, 1, &mut busy);
    assert!((g.shed() - before - 2.0 * STEP).abs() < 1e-9, "{}", g.shed());
    // Room again (half busy): the share comes down, to 0 and no further.
    run(&mut g, s, 60, &mut busy);
    assert!((g.utilisation() - 0.5).abs() < 0.01, "{}", g.utilisation());
    assert_eq!(g.shed(), 0.0);
    // Never above 1.
    for _ in 0..100 {
        g.fell_behind();
        run(&mut g, 2 * s, 1, &mut busy);
    }
    assert_eq!(g.shed(), 1.0);
}

#[test]
fn one_busy_tick_among_quiet_ones_does_not_move_the_share() {
    let clock = Clock::stepped();
    let t0 = clock.now();
    let s = Duration::from_secs(1).as_nanos() as u64;
    let mut g = Governor::default();
    g.update(t0, 0, 2);
    let mut busy = 0;
    // 85% busy (inside the dead band), with one tick where a long replay ended (100%).
    for i in 1..=30u32 {
        busy += if i == 15 { 2 * s } else { 17 * s / 10 };
        g.update(t0 + i * GOVERNOR_TICK, busy, 2);
    }
    assert_eq!(g.shed(), 0.0, "a single busy tick is smoothed away: {}", g.utilisation());
}

/// Frames decoded per camera over a window, for cameras whose GOPs start at
/// different moments (`phase`: units into their GOP at the start).
fn decoded_in_window(
    gop: usize,
    phases: &[usize],
    warmup: usize,
    window: usize,
    shed: impl Fn(usize) -> f64,
) -> Vec<u32> {
    let mut cams: Vec<GopShare> = phases.iter().map(|_| GopShare::default()).collect();
    let mut decoded = vec![0u32; phases.len()];
    for t in 0..warmup + window {
        for (i, c) in cams.iter_mut().enumerate() {
            let keyframe = (t + gop - phases[i]).is_multiple_of(gop);
            if c.take(keyframe, shed(t)) && t >= warmup {
                decoded[i] += 1;
            }
        }
    }
    decoded
}

#[test]
fn every_camera_decodes_the_same_share_of_each_gop() {
    let phases: Vec<usize> = (0..7).map(|i| i * 60 / 7).collect();
    for shed in [0.0, 0.25, 0.4, 0.5, 0.9, 1.0] {
        // Three whole GOPs of 60 units, after two to learn the GOP's length.
        let n = decoded_in_window(60, &phases, 120, 180, |_| shed);
        let keep = ((1.0 - shed) * 60.0).ceil().max(1.0) as u32;
        for (i, d) in n.iter().enumerate() {
            assert!(d.abs_diff(3 * keep) <= 1, "shed {shed}: camera {i} decoded {d}, expected {}", 3 * keep);
        }
        if shed == 1.0 {
            assert_eq!(n, vec![3; 7], "keyframes only");
        }
    }
}

#[test]
fn a_changing_shed_share_stays_fair_and_takes_effect_within_the_gop() {
    let phases: Vec<usize> = (0..10).map(|i| i * 6).collect();
    // The share climbs from 0 to 0.8 and back while the window runs.
    let shed = |t: usize| if t < 120 { 0.0 } else { (((t - 120) % 240) as f64 / 150.0).min(0.8) };
    let n = decoded_in_window(60, &phases, 120, 240, shed);
    let (lo, hi) = (*n.iter().min().unwrap(), *n.iter().max().unwrap());
    assert!(f64::from(hi) / f64::from(lo) < 1.3, "decoded per camera: {n:?}");
    // A share raised mid-GOP cuts that same GOP: half shed from the 30th unit on
    // leaves a camera at its keyframe's 31st unit with nothing more.
    let mut c = GopShare::default();
    for t in 0..61usize {
        assert!(c.take(t.is_multiple_of(60), 0.0));
    }
    for _ in 1..30 {
        assert!(c.take(false, 0.0));
    }
    assert!(!c.take(false, 0.5), "the 30th unit of a 60-unit GOP is past half");
    assert!(c.cut());
    assert!(!c.take(false, 0.1), "once cut, the GOP stays cut (its frames need the ones skipped)");
    assert!(c.take(true, 0.1), "the next keyframe starts again");
    assert!(c.take(false, 0.0) && !c.cut(), "with nothing shed, nothing is cut");
}

#[test]
fn threads_wait_for_a_worker_and_the_person_goes_first() {
    use std::sync::atomic::AtomicUsize;
    let sched = Scheduler::new(2, Clock::real());
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    // Two jobs hold both workers until told to finish.
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let hold_rx = Arc::new(std::sync::Mutex::new(hold_rx));
    let mut threads = Vec::new();
    let spawn = |name: &'static str, p: Priority, hold: bool, threads: &mut Vec<std::thread::JoinHandle<()>>| {
        let (sched, running, most, order, hold_rx) =
            (sched.clone(), running.clone(), most.clone(), order.clone(), hold_rx.clone());
        threads.push(std::thread::spawn(move || {
            let _g = sched.acquire(&PriorityCell::new(p), MS);
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            order.lock().push(name);
            if hold {
                let _ = hold_rx.lock().unwrap().recv();
            }
            running.fetch_sub(1, Ordering::SeqCst);
        }));
    };
    let wait_for = |n: usize| {
        while {
            let w = sched.stats().waiting;
            w.person + w.program + w.background
        } < n
        {
            std::thread::sleep(MS);
        }
    };
    spawn("hold1", Priority::Background, true, &mut threads);
    spawn("hold2", Priority::Background, true, &mut threads);
    while running.load(Ordering::SeqCst) < 2 {
        std::thread::sleep(MS);
    }
    for (i, name) in ["bg1", "bg2", "bg3"].into_iter().enumerate() {
        spawn(name, Priority::Background, false, &mut threads);
        wait_for(i + 1);
    }
    spawn("person", Priority::Person, false, &mut threads);
    wait_for(4);
    assert_eq!(sched.stats().waiting, ByPriority::new([1, 0, 3]));
    // One worker frees: the person, who came last, takes it.
    hold_tx.send(()).unwrap();
    while order.lock().len() < 3 {
        std::thread::sleep(MS);
    }
    hold_tx.send(()).unwrap();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 2, "never more than the workers at once");
    let order = order.lock().clone();
    assert_eq!(order[2], "person", "the person was served before the background waiters: {order:?}");
    assert_eq!(&order[3..], ["bg1", "bg2", "bg3"]);
    let st = sched.stats();
    assert_eq!((st.running, st.granted), (0, ByPriority::new([1, 0, 5])));
}
