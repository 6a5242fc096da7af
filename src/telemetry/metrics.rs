//! The hub's metrics: one prometheus-client `Registry`, owned by the hub and
//! handed down to whoever observes (no global statics). It holds the latency
//! histograms the stages observe, the process's own metrics, and the families
//! the hub reads from its cameras at scrape time (a `Collector` it registers);
//! `render` writes the whole page as OpenMetrics text.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// Bucket bounds in seconds, from 0.5 ms to 10 s.
pub const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// What `Metrics::render` writes: OpenMetrics text, which Prometheus scrapes natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A latency histogram (seconds, `BUCKETS`). Clones share their counts, so a
/// stage holds its own clone of the one the registry encodes.
#[derive(Clone, Debug)]
pub struct Latency(Histogram);

impl Latency {
    fn new() -> Self {
        Latency(new_histogram())
    }

    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64())
    }
}

fn new_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The label of the snapshot histogram: how the picture was had (`X-Snapshot-Source`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

/// The registry and the histograms that are observed into it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    snapshot: Family<SourceLabel, Histogram, fn() -> Histogram>,
    decode: Latency,
    encode: Latency,
    redis_flush: Latency,
}

impl Metrics {
    /// `started`: when the process started (from the hub's clock, read once);
    /// `snapshot_sources`: the `source` label values, shown from the start even
    /// before a snapshot of that kind was taken.
    pub fn new(started: SystemTime, snapshot_sources: &[&'static str]) -> Metrics {
        let snapshot: Family<SourceLabel, Histogram, fn() -> Histogram> = Family::new_with_constructor(new_histogram);
        for source in snapshot_sources {
            drop(snapshot.get_or_create(&SourceLabel { source }));
        }
        let (decode, encode, redis_flush) = (Latency::new(), Latency::new(), Latency::new());
        let mut registry = Registry::default();
        // A sub-registry is encoded after the top one's collectors: the hub's
        // families (`register_collector`) stay first on the page, as they always were.
        // (The registry adds the final `.` to each help text, and the unit to each name.)
        let own = registry.sub_registry_with_labels(std::iter::empty());
        let seconds = || Unit::Seconds;
        own.register_with_unit(
            "camhub_snapshot_duration",
            "Snapshot answer time, by X-Snapshot-Source",
            seconds(),
            snapshot.clone(),
        );
        own.register_with_unit(
            "camhub_decode_duration",
            "Time to decode one compressed frame",
            seconds(),
            decode.0.clone(),
        );
        own.register_with_unit("camhub_jpeg_encode_duration", "Time to make one JPEG", seconds(), encode.0.clone());
        own.register_with_unit(
            "camhub_redis_flush_duration",
            "Time to write one pipelined batch of records to Redis (every output)",
            seconds(),
            redis_flush.0.clone(),
        );
        own.register_collector(Box::new(super::process::Process));
        let since_epoch = started.duration_since(UNIX_EPOCH).unwrap_or_default();
        own.register_with_unit(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            seconds(),
            ConstGauge::new(since_epoch.as_secs_f64()),
        );
        own.register("camhub_build", "The camhub version", Info::new([("version", env!("CARGO_PKG_VERSION"))]));
        Metrics { registry, snapshot, decode, encode, redis_flush }
    }

    /// Adds families read at scrape time; they come first on the page.
    pub fn register_collector(&mut self, c: impl Collector) {
        self.registry.register_collector(Box::new(c));
    }

    /// The histogram of the time to decode one unit.
    pub fn decode(&self) -> Latency {
        self.decode.clone()
    }

    /// The histogram of the time to make one JPEG (scaling included).
    pub fn jpeg_encode(&self) -> Latency {
        self.encode.clone()
    }

    /// The histogram of the time to write one batch of records to Redis.
    pub fn redis_flush(&self) -> Latency {
        self.redis_flush.clone()
    }

    /// Counts one snapshot answer, by how its picture was had.
    pub fn observe_snapshot(&self, source: &'static str, d: Duration) {
        self.snapshot.get_or_create(&SourceLabel { source }).observe(d.as_secs_f64());
    }

    /// The whole page, OpenMetrics text (`CONTENT_TYPE`), ending in `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String fails only if a collector does; what it wrote stays.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("metrics page incomplete: {e}");
        }
        out
    }
}

/// A family's kind, for `family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Its samples get the `_total` suffix.
    Counter,
    Gauge,
}

/// Labels of a sample written by a collector: `[("camera", name), ...]`.
pub type Labels<'a, const N: usize> = [(&'static str, &'a str); N];

/// Writes one family whose samples a `Collector` reads at scrape time: its
/// HELP, TYPE (and UNIT) lines, then one sample per row, even when there are none.
/// `name` comes without the unit and `_total` suffixes: the encoder adds them.
pub fn family<L, V>(
    enc: &mut DescriptorEncoder,
    (name, unit, kind): (&str, Option<Unit>, Kind),
    help: &str,
    rows: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result
where
    L: EncodeLabelSet,
    V: EncodeCounterValue + EncodeGaugeValue,
{
    let ty = match kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
    };
    let mut m = enc.encode_descriptor(name, help, unit.as_ref(), ty)?;
    for (labels, v) in rows {
        let sample = m.encode_family(&labels)?;
        match kind {
            Kind::Counter => ConstCounter::new(v).encode(sample)?,
            Kind::Gauge => ConstGauge::new(v).encode(sample)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> (Metrics, SystemTime) {
        let started = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        (Metrics::new(started, &["warm", "cold"]), started)
    }

    #[test]
    fn buckets_are_cumulative_and_keep_their_bounds() {
        let (m, _) = page();
        let d = m.decode();
        d.observe(Duration::from_micros(300));
        d.observe(Duration::from_millis(30));
        d.observe(Duration::from_secs(60));
        let s = m.render();
        let name = "camhub_decode_duration_seconds";
        for (le, n) in [("0.0005", 1), ("0.025", 1), ("0.05", 2), ("10.0", 2), ("+Inf", 3)] {
            assert!(s.contains(&format!("{name}_bucket{{le=\"{le}\"}} {n}\n")), "le={le}:\n{s}");
        }
        let bounds = s.lines().filter(|l| l.starts_with(&format!("{name}_bucket"))).count();
        assert_eq!(bounds, BUCKETS.len() + 1, "{s}");
        assert!(s.contains(&format!("{name}_count 3\n")), "{s}");
        assert!(s.contains(&format!("# TYPE {name} histogram\n# UNIT {name} seconds\n")), "{s}");
    }

    #[test]
    fn snapshots_by_source_start_at_zero_and_count() {
        let (m, _) = page();
        m.observe_snapshot("warm", Duration::from_millis(2));
        let s = m.render();
        let name = "camhub_snapshot_duration_seconds";
        assert!(s.contains(&format!("{name}_count{{source=\"warm\"}} 1\n")), "{s}");
        assert!(s.contains(&format!("{name}_count{{source=\"cold\"}} 0\n")), "{s}");
        assert!(s.contains(&format!("{name}_bucket{{le=\"0.0025\",source=\"warm\"}} 1\n")), "{s}");
    }

    #[test]
    fn the_page_has_the_start_time_the_version_and_collected_families() {
        #[derive(Debug)]
        struct Fixed;
        impl Collector for Fixed {
            fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
                let rows = [([("camera", "a")], 3u64), ([("camera", "b")], 4)];
                family(&mut enc, ("x_received", Some(Unit::Bytes), Kind::Counter), "Bytes.", rows)?;
                family(&mut enc, ("x_none", None, Kind::Gauge), "Nothing yet.", Vec::<(Labels<1>, u64)>::new())
            }
        }
        let (mut m, _) = page();
        m.register_collector(Fixed);
        let s = m.render();
        assert!(s.starts_with("# HELP x_received_bytes Bytes.\n# TYPE x_received_bytes counter\n"), "{s}");
        assert!(s.contains("x_received_bytes_total{camera=\"b\"} 4\n# HELP x_none Nothing yet.\n"), "{s}");
        assert!(s.contains("process_start_time_seconds 1700000000.25\n"), "{s}");
        let version = env!("CARGO_PKG_VERSION");
        assert!(
            s.contains(&format!("# TYPE camhub_build info\ncamhub_build_info{{version=\"{version}\"}} 1\n")),
            "{s}"
        );
        assert!(s.ends_with("# EOF\n"), "{s}");
    }
}
