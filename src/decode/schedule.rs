//! The hub's decode scheduler. Decoding is the one scarce resource, so all of
//! it (live decoders, GOP replays, keyframe-only decodes) runs under a grant
//! from one `Scheduler` with a fixed number of workers (`server.decode.workers`,
//! default the number of cores). Waiters are served by priority, then arrival:
//! a person's request first, then programs' outputs, then the rest; a GOP
//! replay is one job (its cost is its units times the camera's measured cost
//! per unit), so a burst of replays runs a few at a time and the first answers
//! come after one replay, not after all of them.
//!
//! Over budget, the `Governor` sheds fairly: it raises the share of each GOP
//! that background cameras (programs and the rest, never a person's) leave
//! undecoded (the GOP's tail, see `GopShare`), the same share for every camera,
//! up to keyframes only, and lowers it again when the workers have room.
//! The decisions are pure (`Queue`, `Governor`, `GopShare`: events
//! and `now` in) and tested with stepped time; the blocking is at the edge.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::clock::Clock;

/// Who is waiting for a decode, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// A person: a snapshot, an MJPEG viewer, a dashboard tile in view.
    Person = 0,
    /// A program: shared-memory and Redis outputs.
    Program = 1,
    /// Anything else: `keep: decoded`, a linger after the last lease.
    Background = 2,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::Person, Priority::Program, Priority::Background];

    pub fn name(self) -> &'static str {
        match self {
            Priority::Person => "person",
            Priority::Program => "program",
            Priority::Background => "background",
        }
    }

    fn from_u8(v: u8) -> Priority {
        match v {
            0 => Priority::Person,
            1 => Priority::Program,
            _ => Priority::Background,
        }
    }
}

/// A camera's current priority, set by its actor from the leases it holds and
/// read by the scheduler when it picks the next waiter (so a waiter whose camera
/// a person starts watching moves up the queue at once).
#[derive(Debug)]
pub struct PriorityCell(AtomicU8);

impl PriorityCell {
    pub fn new(p: Priority) -> Arc<Self> {
        Arc::new(PriorityCell(AtomicU8::new(p as u8)))
    }
    pub fn get(&self) -> Priority {
        Priority::from_u8(self.0.load(Ordering::Relaxed))
    }
    pub fn set(&self, p: Priority) {
        self.0.store(p as u8, Ordering::Relaxed);
    }
}

/// Cost of one unit before a camera has measured its own.
pub const DEFAULT_UNIT_COST: Duration = Duration::from_millis(5);

/// The waiting line, pure: who runs next.
#[derive(Debug, Default)]
pub struct Queue<W> {
    workers: usize,
    running: usize,
    arrivals: u64,
    waiting: Vec<Waiter<W>>,
}

#[derive(Debug)]
struct Waiter<W> {
    arrival: u64,
    priority: Arc<PriorityCell>,
    cost: Duration,
    wake: W,
}

impl<W> Queue<W> {
    pub fn new(workers: usize) -> Self {
        Queue { workers: workers.max(1), running: 0, arrivals: 0, waiting: Vec::new() }
    }

    /// Asks for a worker: `true` if granted at once, else `wake` is queued.
    pub fn request(&mut self, priority: &Arc<PriorityCell>, cost: Duration, wake: W) -> Option<W> {
        if self.running < self.workers && self.waiting.is_empty() {
            self.running += 1;
            return Some(wake);
        }
        self.arrivals += 1;
        self.waiting.push(Waiter { arrival: self.arrivals, priority: priority.clone(), cost, wake });
        None
    }

    /// A worker is free: the next waiter to wake (it now holds the worker), if any.
    pub fn release(&mut self) -> Option<W> {
        if self.running > self.workers || self.waiting.is_empty() {
            // Fewer workers than running (a reload lowered them), or nobody waits.
            self.running = self.running.saturating_sub(1);
            return None;
        }
        let best =
            self.waiting.iter().enumerate().min_by_key(|(_, w)| (w.priority.get(), w.arrival)).map(|(i, _)| i)?;
        Some(self.waiting.remove(best).wake)
    }

    pub fn set_workers(&mut self, n: usize) -> Vec<W> {
        self.workers = n.max(1);
        let mut woken = Vec::new();
        while self.running < self.workers && !self.waiting.is_empty() {
            self.running += 1;
            let best =
                (0..self.waiting.len()).min_by_key(|&i| (self.waiting[i].priority.get(), self.waiting[i].arrival));
            woken.push(self.waiting.remove(best.unwrap_or(0)).wake);
        }
        woken
    }

    pub fn workers(&self) -> usize {
        self.workers
    }
    pub fn running(&self) -> usize {
        self.running
    }
    /// Waiters per priority, and the work they bring (estimated).
    pub fn waiting(&self) -> ([usize; 3], Duration) {
        let mut n = [0; 3];
        let mut cost = Duration::ZERO;
        for w in &self.waiting {
            n[w.priority.get() as usize] += 1;
            cost += w.cost;
        }
        (n, cost)
    }
}

/// The share of each background GOP left undecoded, from how busy the
/// workers are. Pure: busy time and `now` in.
#[derive(Debug, Clone)]
pub struct Governor {
    /// 0: every GOP decoded in full; 1: keyframes only for every background camera.
    shed: f64,
    last: Option<(Instant, u64)>,
    /// Decoders that fell behind and skipped since the last tick.
    behind: u64,
    utilisation: f64,
}

/// How often the governor looks at the workers' busy time.
pub const GOVERNOR_TICK: Duration = Duration::from_secs(1);
/// Above this utilisation, shed more; below the lower one, shed less.
const HIGH: f64 = 0.92;
const LOW: f64 = 0.75;
/// How far the shed share moves per tick.
const STEP: f64 = 0.02;

impl Default for Governor {
    fn default() -> Self {
        Governor { shed: 0.0, last: None, behind: 0, utilisation: 0.0 }
    }
}

impl Governor {
    pub fn shed(&self) -> f64 {
        self.shed
    }
    pub fn utilisation(&self) -> f64 {
        self.utilisation
    }
    /// A decoder fell behind and skipped to a keyframe: the clearest sign of overload.
    pub fn fell_behind(&mut self) {
        self.behind += 1;
    }

    /// Looks at the busy time once per tick; `busy_ns` is the workers' total so far.
    pub fn update(&mut self, now: Instant, busy_ns: u64, workers: usize) {
        let Some((then, busy_then)) = self.last else {
            self.last = Some((now, busy_ns));
            return;
        };
        let dt = now.saturating_duration_since(then);
        if dt < GOVERNOR_TICK {
            return;
        }
        self.last = Some((now, busy_ns));
        let util = (busy_ns.saturating_sub(busy_then)) as f64 / (dt.as_nanos() as f64 * workers.max(1) as f64);
        // Smoothed: one long replay ending in a tick makes that tick look busier
        // than it was.
        self.utilisation = 0.7 * self.utilisation + 0.3 * util.min(1.0);
        // Small, even steps: a change takes effect only as each camera reaches its
        // next keyframe (up to a GOP later), so big steps overshoot and oscillate.
        let step = if self.behind > 0 {
            STEP * 2.0
        } else if self.utilisation > HIGH {
            STEP
        } else if self.utilisation < LOW {
            -STEP
        } else {
            0.0
        };
        self.behind = 0;
        self.shed = (self.shed + step).clamp(0.0, 1.0);
    }
}

/// How a blocked thread is woken.
struct Wake {
    granted: AtomicBool,
    thread: Thread,
}

/// The hub's decode scheduler (see the module's notes).
pub struct Scheduler {
    queue: Mutex<Queue<Arc<Wake>>>,
    governor: Mutex<Governor>,
    clock: Clock,
    busy_ns: AtomicU64,
    granted: [AtomicU64; 3],
    waited_ns: [AtomicU64; 3],
    /// Frames not decoded, by reason: `behind` (a decoder skipped its backlog to
    /// the next keyframe), `overload` (the tail of a background GOP left undecoded).
    shed_behind: AtomicU64,
    shed_overload: AtomicU64,
    /// Tests of what cameras do under a given share pin it here.
    #[cfg(test)]
    pinned: Mutex<Option<f64>>,
}

/// One figure per priority, named in the API.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ByPriority<T> {
    pub person: T,
    pub program: T,
    pub background: T,
}

impl<T: Copy> ByPriority<T> {
    fn new(v: [T; 3]) -> Self {
        ByPriority { person: v[0], program: v[1], background: v[2] }
    }
    pub fn get(&self, p: Priority) -> T {
        match p {
            Priority::Person => self.person,
            Priority::Program => self.program,
            Priority::Background => self.background,
        }
    }
}

/// What the API and metrics show of the scheduler.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SchedulerStats {
    pub workers: usize,
    pub running: usize,
    /// Decodes waiting for a worker, per priority.
    pub waiting: ByPriority<usize>,
    /// The work those waiters bring, estimated (seconds).
    pub waiting_seconds: f64,
    /// Workers' busy share over the last second (0-1).
    pub utilisation: f64,
    /// The share of each background GOP left undecoded (0-1; 1: keyframes only).
    pub shed: f64,
    pub busy_seconds: f64,
    pub granted: ByPriority<u64>,
    pub waited_seconds: ByPriority<f64>,
    pub shed_behind: u64,
    pub shed_overload: u64,
}

impl Scheduler {
    pub fn new(workers: usize, clock: Clock) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            queue: Mutex::new(Queue::new(workers)),
            governor: Mutex::new(Governor::default()),
            clock,
            busy_ns: AtomicU64::new(0),
            granted: Default::default(),
            waited_ns: Default::default(),
            shed_behind: AtomicU64::new(0),
            shed_overload: AtomicU64::new(0),
            #[cfg(test)]
            pinned: Mutex::new(None),
        })
    }

    /// One worker per core: the default budget.
    pub fn default_workers() -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }

    pub fn set_workers(&self, n: usize) {
        let woken = self.queue.lock().set_workers(n);
        for w in woken {
            w.granted.store(true, Ordering::Release);
            w.thread.unpark();
        }
    }

    /// Blocks the calling (decoder) thread until a worker is free for it; the
    /// grant holds the worker until dropped.
    pub fn acquire(self: &Arc<Self>, priority: &Arc<PriorityCell>, cost: Duration) -> Grant {
        let since = self.clock.now();
        let wake = Arc::new(Wake { granted: AtomicBool::new(false), thread: std::thread::current() });
        let now = self.queue.lock().request(priority, cost, wake.clone()).is_some();
        if !now {
            while !wake.granted.load(Ordering::Acquire) {
                std::thread::park();
            }
        }
        let started = self.clock.now();
        let p = priority.get() as usize;
        self.granted[p].fetch_add(1, Ordering::Relaxed);
        self.waited_ns[p].fetch_add(started.saturating_duration_since(since).as_nanos() as u64, Ordering::Relaxed);
        Grant { sched: self.clone(), started }
    }

    fn release(&self, started: Instant) {
        let busy = self.clock.since(started).as_nanos() as u64;
        let total = self.busy_ns.fetch_add(busy, Ordering::Relaxed) + busy;
        let next = self.queue.lock().release();
        if let Some(w) = next {
            w.granted.store(true, Ordering::Release);
            w.thread.unpark();
        }
        self.tick(total);
    }

    fn tick(&self, busy_ns: u64) {
        let workers = self.queue.lock().workers();
        self.governor.lock().update(self.clock.now(), busy_ns, workers);
    }

    /// The share of each background GOP to leave undecoded, now.
    pub fn shed(&self) -> f64 {
        #[cfg(test)]
        if let Some(shed) = *self.pinned.lock() {
            return shed;
        }
        self.tick(self.busy_ns.load(Ordering::Relaxed));
        self.governor.lock().shed()
    }

    /// Fixes the shed share (tests of how cameras follow it; the governor has its own).
    #[cfg(test)]
    pub fn pin_shed(&self, shed: Option<f64>) {
        *self.pinned.lock() = shed;
    }

    /// A decoder fell behind and dropped `frames` queued units to resync at a keyframe.
    pub fn fell_behind(&self, frames: u64) {
        self.shed_behind.fetch_add(frames, Ordering::Relaxed);
        self.governor.lock().fell_behind();
    }

    /// Frames of a background GOP not decoded (its tail, under overload).
    pub fn shed_overload(&self, frames: u64) {
        self.shed_overload.fetch_add(frames, Ordering::Relaxed);
    }

    pub fn stats(&self) -> SchedulerStats {
        let (workers, running, (waiting, cost)) = {
            let q = self.queue.lock();
            (q.workers(), q.running(), q.waiting())
        };
        let g = self.governor.lock().clone();
        let secs = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e9;
        SchedulerStats {
            workers,
            running,
            waiting: ByPriority::new(waiting),
            waiting_seconds: cost.as_secs_f64(),
            utilisation: g.utilisation(),
            shed: g.shed(),
            busy_seconds: secs(&self.busy_ns),
            granted: ByPriority::new(std::array::from_fn(|i| self.granted[i].load(Ordering::Relaxed))),
            waited_seconds: ByPriority::new(std::array::from_fn(|i| secs(&self.waited_ns[i]))),
            shed_behind: self.shed_behind.load(Ordering::Relaxed),
            shed_overload: self.shed_overload.load(Ordering::Relaxed),
        }
    }
}

/// A worker held for one decode job; dropping it frees the worker for the next waiter.
pub struct Grant {
    sched: Arc<Scheduler>,
    started: Instant,
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.sched.release(self.started);
    }
}

mod share;
#[cfg(test)]
mod tests;

pub use share::GopShare;
