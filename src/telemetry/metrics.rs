//! Latency histograms, process-wide, in Prometheus' cumulative-bucket form.
//! Counters and gauges live with each camera; `api::metrics` renders it all.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket bounds in seconds, from 0.5 ms to 10 s.
pub const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub const fn new() -> Self {
        Histogram {
            counts: [const { AtomicU64::new(0) }; BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Writes the `_bucket`, `_sum` and `_count` lines; `labels` is `k="v",` or empty.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{b}\"}} {cum}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let trimmed = labels.trim_end_matches(',');
        let braces = if trimmed.is_empty() { String::new() } else { format!("{{{trimmed}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// Snapshot answer time, by `X-Snapshot-Source` (cache, warm, gop, cold).
pub static SNAPSHOT: [Histogram; 4] = [Histogram::new(), Histogram::new(), Histogram::new(), Histogram::new()];
/// Time to decode one unit.
pub static DECODE: Histogram = Histogram::new();
/// Time to make one JPEG (scaling included).
pub static ENCODE: Histogram = Histogram::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let h = Histogram::new();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(60));
        let mut s = String::new();
        h.render(&mut s, "x_seconds", "a=\"b\",");
        assert!(s.contains("x_seconds_bucket{a=\"b\",le=\"0.0005\"} 1\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{a=\"b\",le=\"0.05\"} 2\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{a=\"b\",le=\"10\"} 2\n"), "{s}");
        assert!(s.contains("x_seconds_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("x_seconds_count{a=\"b\"} 3\n"), "{s}");
    }
}
