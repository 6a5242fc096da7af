//! The standard process metrics (CPU time, resident memory, open files), read
//! from /proc/self at each scrape. A family whose file cannot be read is left out.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;

use super::metrics::{Kind, Labels, family};

/// Clock ticks per second of /proc/self/stat's times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug)]
pub(super) struct Process;

const NO_LABELS: Labels<0> = [];

impl Collector for Process {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command name (which may contain spaces): utime and stime in ticks.
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let f: Vec<&str> = rest.split_whitespace().collect();
            let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            let cpu = (tick(11) + tick(12)) / TICKS_PER_SECOND;
            let name = ("process_cpu", Some(Unit::Seconds), Kind::Counter);
            family(&mut enc, name, "User and system CPU time.", [(NO_LABELS, cpu)])?;
        }
        if let Some(kb) = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        }) {
            let name = ("process_resident_memory", Some(Unit::Bytes), Kind::Gauge);
            family(&mut enc, name, "Resident memory.", [(NO_LABELS, kb * 1024)])?;
        }
        if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
            let name = ("process_open_fds", None, Kind::Gauge);
            family(&mut enc, name, "Open file descriptors.", [(NO_LABELS, d.count() as u64)])?;
        }
        Ok(())
    }
}
