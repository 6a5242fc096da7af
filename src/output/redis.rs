//! Redis Streams publishing: frame records go into a bounded queue (a live
//! camera never waits for Redis: the oldest records are dropped and counted),
//! and one task per output flushes them with pipelined `XADD ... MAXLEN ~`,
//! at most every ~25 ms or ~100 records, reconnecting with backoff. Each batch's
//! write time goes into a histogram; one over `SLOW_FLUSH` is counted and
//! logged, at most once per `SLOW_LOG_EVERY` per output.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::secret::{Secret, scrub};
use crate::telemetry::metrics::Latency;

/// Records per pipeline at most.
pub const BATCH: usize = 100;
/// How long the first record of a batch waits for company.
pub const LINGER: Duration = Duration::from_millis(25);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// A batch write slower than this is counted and logged: Redis (or the path to
/// it) is falling behind, and the queue will soon drop records.
pub const SLOW_FLUSH: Duration = Duration::from_millis(50);
/// Slow flushes are logged at most this often per output (the rest are counted).
pub const SLOW_LOG_EVERY: Duration = Duration::from_secs(10);

/// One stream entry: field names and values, in order.
#[derive(Debug, Clone, Default)]
pub struct Record(pub Vec<(&'static str, Bytes)>);

impl Record {
    pub fn field(mut self, name: &'static str, value: impl ToString) -> Self {
        self.0.push((name, Bytes::from(value.to_string())));
        self
    }
    pub fn bytes(mut self, name: &'static str, value: Bytes) -> Self {
        self.0.push((name, value));
        self
    }
}

/// The queue between the frame path and the publisher, and what it reports.
pub struct RecordQueue {
    q: Mutex<VecDeque<Record>>,
    space: Condvar,
    cap: usize,
    notify: Notify,
    pub dropped: AtomicU64,
    pub sent: AtomicU64,
    /// Batches that took over `SLOW_FLUSH` to write.
    pub slow_flushes: AtomicU64,
    pub connected: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

impl RecordQueue {
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(RecordQueue {
            q: Mutex::new(VecDeque::with_capacity(cap.min(1024))),
            space: Condvar::new(),
            cap: cap.max(1),
            notify: Notify::new(),
            dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            slow_flushes: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            last_error: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Record>> {
        self.q.lock()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live: never waits; a full queue drops its oldest record.
    pub fn push(&self, r: Record) {
        let mut q = self.lock();
        while q.len() >= self.cap {
            q.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back(r);
        drop(q);
        self.notify.notify_one();
    }

    /// Replay: waits for room (the publisher sets the pace) unless `stop` is set.
    pub fn push_wait(&self, r: Record, stop: &CancellationToken) -> bool {
        let mut q = self.lock();
        while q.len() >= self.cap {
            if stop.is_cancelled() {
                return false;
            }
            self.space.wait_for(&mut q, Duration::from_millis(100));
        }
        q.push_back(r);
        drop(q);
        self.notify.notify_one();
        true
    }

    fn take(&self, n: usize) -> Vec<Record> {
        let mut q = self.lock();
        let k = n.min(q.len());
        let out = q.drain(..k).collect();
        drop(q);
        self.space.notify_all();
        out
    }

    /// A batch that could not be sent goes back in front, within the bound.
    fn put_back(&self, batch: Vec<Record>) {
        let mut q = self.lock();
        for r in batch.into_iter().rev() {
            if q.len() >= self.cap {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                q.push_front(r);
            }
        }
    }

    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock() = e;
    }
}

/// Where and how one output publishes.
pub struct Target {
    pub url: Secret,
    pub stream: String,
    pub maxlen: u64,
    /// Text that must not appear in logs or errors (the URL's password).
    pub secrets: Vec<String>,
    /// For logs: camera/output.
    pub label: String,
    /// The hub's histogram of batch write times.
    pub flush: Latency,
}

/// Rate-limits the slow-flush warning: the first at once, then at most one per
/// `SLOW_LOG_EVERY`, which says how many there were since and the slowest.
#[derive(Debug, Default)]
struct SlowLog {
    last: Option<Instant>,
    since: u64,
    worst: Duration,
}

impl SlowLog {
    /// A batch took `took`: what to log now, if anything (slow ones since the
    /// last warning, this one included, and the slowest of them).
    fn note(&mut self, now: Instant, took: Duration) -> Option<(u64, Duration)> {
        if took <= SLOW_FLUSH {
            return None;
        }
        self.since += 1;
        self.worst = self.worst.max(took);
        if self.last.is_some_and(|l| now.saturating_duration_since(l) < SLOW_LOG_EVERY) {
            return None;
        }
        self.last = Some(now);
        let out = (self.since, self.worst);
        (self.since, self.worst) = (0, Duration::ZERO);
        Some(out)
    }
}

/// Flushes `queue` to Redis until `stop`.
pub async fn run(queue: Arc<RecordQueue>, target: Target, stop: CancellationToken, clock: Clock) {
    let secrets: Vec<&str> = target.secrets.iter().map(String::as_str).collect();
    let clean = |e: &dyn std::fmt::Display| scrub(&e.to_string(), &secrets);
    let client = match redis::Client::open(target.url.expose()) {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("bad redis url: {}", clean(&e));
            tracing::warn!(output = %target.label, "{msg}");
            queue.set_error(Some(msg));
            return;
        }
    };
    let mut backoff = Backoff::new(fastrand::u64(..));
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut slow = SlowLog::default();
    loop {
        // Wait for a first record, then up to LINGER for a full batch.
        while queue.is_empty() {
            tokio::select! {
                _ = queue.notify.notified() => {}
                _ = stop.cancelled() => return,
            }
        }
        let deadline = clock.now() + LINGER;
        while queue.len() < BATCH && clock.now() < deadline {
            tokio::select! {
                _ = queue.notify.notified() => {}
                _ = clock.sleep_until(deadline) => {}
                _ = stop.cancelled() => return,
            }
        }
        if conn.is_none() {
            match timeout(IO_TIMEOUT, client.get_multiplexed_async_connection()).await {
                Ok(Ok(c)) => {
                    tracing::info!(output = %target.label, "connected to redis");
                    conn = Some(c);
                    queue.connected.store(true, Ordering::Relaxed);
                    queue.set_error(None);
                }
                Ok(Err(e)) => {
                    fail(&queue, &target.label, format!("cannot connect to redis: {}", clean(&e)));
                }
                Err(_) => fail(&queue, &target.label, "cannot connect to redis: timed out".into()),
            }
        }
        let Some(c) = conn.as_mut() else {
            if wait_or_stop(backoff.next_delay(false), &stop, &clock).await {
                return;
            }
            continue;
        };
        let batch = queue.take(BATCH);
        let mut pipe = redis::pipe();
        for r in &batch {
            let cmd = pipe.cmd("XADD").arg(&target.stream).arg("MAXLEN").arg("~").arg(target.maxlen).arg("*");
            for (k, v) in &r.0 {
                cmd.arg(*k).arg(v.as_ref());
            }
            cmd.ignore();
        }
        let started = clock.now();
        let wrote = timeout(IO_TIMEOUT, pipe.query_async::<()>(c)).await;
        let took = clock.since(started);
        target.flush.observe(took);
        if took > SLOW_FLUSH {
            queue.slow_flushes.fetch_add(1, Ordering::Relaxed);
        }
        match wrote {
            Ok(Ok(())) => {
                queue.sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
                backoff.reset();
                if let Some((n, worst)) = slow.note(clock.now(), took) {
                    tracing::warn!(
                        output = %target.label,
                        "slow redis: {n} batch(es) took over {} ms to write (the slowest {} ms, the last {} records \
                         in {} ms); records queue up and the oldest are dropped beyond `buffer`",
                        SLOW_FLUSH.as_millis(),
                        worst.as_millis(),
                        batch.len(),
                        took.as_millis(),
                    );
                }
            }
            other => {
                let why = match other {
                    Ok(Err(e)) => clean(&e),
                    _ => "timed out".into(),
                };
                queue.put_back(batch);
                conn = None;
                fail(&queue, &target.label, format!("redis write failed: {why}"));
                if wait_or_stop(backoff.next_delay(false), &stop, &clock).await {
                    return;
                }
            }
        }
    }
}

fn fail(queue: &RecordQueue, label: &str, msg: String) {
    if queue.connected.swap(false, Ordering::Relaxed) || queue.last_error.lock().is_none() {
        tracing::warn!(output = %label, "{msg}");
    }
    queue.set_error(Some(msg));
}

/// Sleeps `d`; true if told to stop meanwhile.
async fn wait_or_stop(d: Duration, stop: &CancellationToken, clock: &Clock) -> bool {
    tokio::select! {
        _ = clock.sleep(d) => false,
        _ = stop.cancelled() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_flushes_are_logged_at_once_then_at_most_every_ten_seconds() {
        let t0 = crate::clock::Clock::stepped().now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let ms = Duration::from_millis;
        let mut log = SlowLog::default();
        assert_eq!(log.note(at(0), ms(50)), None, "50 ms is not slow");
        assert_eq!(log.note(at(10), ms(80)), Some((1, ms(80))), "the first slow one at once");
        assert_eq!(log.note(at(20), ms(300)), None);
        assert_eq!(log.note(at(30), ms(5)), None);
        assert_eq!(log.note(at(9_000), ms(60)), None);
        assert_eq!(log.note(at(10_010), ms(70)), Some((3, ms(300))), "three since, the slowest 300 ms");
        assert_eq!(log.note(at(10_020), ms(70)), None);
        assert_eq!(log.note(at(30_000), ms(51)), Some((2, ms(70))));
    }

    #[test]
    fn a_full_queue_drops_its_oldest_records_and_counts_them() {
        let q = RecordQueue::new(3);
        for i in 0..5 {
            q.push(Record::default().field("frame_id", i));
        }
        assert_eq!(q.dropped.load(Ordering::Relaxed), 2);
        let ids: Vec<_> = q.take(10).iter().map(|r| r.0[0].1.clone()).collect();
        assert_eq!(ids, vec![Bytes::from("2"), Bytes::from("3"), Bytes::from("4")]);
        // A failed batch goes back in front, still within the bound.
        q.push(Record::default().field("frame_id", 9));
        q.put_back(vec![Record::default().field("frame_id", 7), Record::default().field("frame_id", 8)]);
        let ids: Vec<_> = q.take(10).iter().map(|r| r.0[0].1.clone()).collect();
        assert_eq!(ids, vec![Bytes::from("7"), Bytes::from("8"), Bytes::from("9")]);
    }
}
