//! The hub's families on `/metrics`, read from its cameras, outputs and viewers
//! at each scrape: a prometheus-client `Collector` in the hub's registry. Names,
//! help texts and labels are the page's contract with dashboards and alerts.
//! Label values are camera and output names (letters, digits, `_`, `-`); a
//! camera's sub-stream (`streams.sub`) has its own rows, labelled `<name>.sub`.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;

use super::Hub;
use crate::camera::demand::Tier;
use crate::camera::{Camera, State};
use crate::output::OutputStats;
use crate::telemetry::metrics::{Kind, Labels, family};
use crate::telemetry::stats::Counters;

/// Every state, in the order `camhub_camera_state` lists them.
pub const STATES: [State; 9] = [
    State::Idle,
    State::Connecting,
    State::Streaming,
    State::Stalled,
    State::Backoff,
    State::AuthFailed,
    State::NotFound,
    State::Stopped,
    State::Finished,
];

/// A state as the API and the metrics name it.
pub fn state_name(s: State) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The hub's families. It holds the hub weakly: the hub owns the registry that holds this.
#[derive(Debug)]
pub(super) struct Families(pub Weak<Hub>);

const COUNTER: Kind = Kind::Counter;
const GAUGE: Kind = Kind::Gauge;

impl Collector for Families {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let Some(hub) = self.0.upgrade() else {
            return Ok(());
        };
        let mut cams = hub.list();
        cams.extend(hub.subs());
        let e = &mut enc;
        let names = STATES.map(state_name);
        family(e, ("camhub_camera_state", None, GAUGE), "1 for the state each camera is in.", {
            cams.iter().flat_map(|c| {
                let now = c.status().state;
                STATES
                    .iter()
                    .zip(&names)
                    .map(move |(s, n)| ([("camera", c.name()), ("state", n.as_str())], u64::from(*s == now)))
            })
        })?;
        counters(e, &cams)?;
        family(e, ("camhub_leases", None, GAUGE), "Leases held, by tier.", {
            cams.iter().flat_map(|c| {
                let variants: u32 = c.variant_leases().iter().map(|(_, n)| n).sum();
                [
                    ("connected", c.leases(Tier::Connected)),
                    ("decoding", c.leases(Tier::Decoding)),
                    ("keyframes", c.leases(Tier::Keyframes)),
                    ("variant", variants),
                ]
                .map(|(tier, n)| ([("camera", c.name()), ("tier", tier)], u64::from(n)))
            })
        })?;
        let help = "Compressed bytes kept since the newest keyframe.";
        let rows = cams.iter().map(|c| (by_camera(c), c.status().gop_bytes as u64));
        family(e, ("camhub_gop_cache", Some(Unit::Bytes), GAUGE), help, rows)?;
        let rows = cams.iter().map(|c| (by_camera(c), c.jpegs().bytes() as u64));
        family(e, ("camhub_jpeg_cache", Some(Unit::Bytes), GAUGE), "Bytes of JPEGs kept for sharing.", rows)?;
        outputs(e, &hub, &cams)?;
        let help = "WebRTC (WHEP) viewers, and how many of them are connected.";
        family(e, ("camhub_webrtc_viewers", None, GAUGE), help, {
            cams.iter().flat_map(|c| {
                let v = hub.whep.viewers(c.name());
                let connected = v.iter().filter(|v| v.connected).count();
                [("all", v.len()), ("connected", connected)]
                    .map(|(state, n)| ([("camera", c.name()), ("state", state)], n as u64))
            })
        })?;
        memory(e, &hub, &cams)?;
        mqtt(e, &hub)?;
        cluster(e, &hub)?;
        decode(e, &hub, &cams)
    }
}

/// Cluster mode (`cluster:`): this node's part of the fleet and its Redis.
fn cluster(e: &mut DescriptorEncoder, hub: &Hub) -> fmt::Result {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(c) = hub.cluster() else { return Ok(()) };
    let v = c.view();
    let one = |x: u64| [([("node", c.node())], x)];
    family(e, ("camhub_cluster_nodes", None, GAUGE), "Live nodes in the cluster.", one(v.nodes.len() as u64))?;
    family(e, ("camhub_cluster_cameras", None, GAUGE), "Cameras in the fleet.", one(c.fleet().len() as u64))?;
    family(e, ("camhub_cluster_cameras_owned", None, GAUGE), "Cameras this node holds the lease of.", {
        one(c.owned() as u64)
    })?;
    let help = "1 while this node reaches the cluster's Redis.";
    family(e, ("camhub_cluster_redis_up", None, GAUGE), help, one(u64::from(c.redis_ok.load(Relaxed))))?;
    let help = "The last lease renewal's round trip to Redis, in seconds (all held leases, pipelined).";
    let renew = c.renew_us.load(Relaxed) as f64 / 1e6;
    family(e, ("camhub_cluster_lease_renew_seconds", None, GAUGE), help, [([("node", c.node())], renew)])?;
    let help = "Cameras this node took over from another node.";
    family(e, ("camhub_cluster_takeovers", None, COUNTER), help, one(c.takeovers.load(Relaxed)))?;
    let help = "Redis commands this node sent for the cluster.";
    family(e, ("camhub_cluster_redis_commands", None, COUNTER), help, one(c.commands.load(Relaxed)))
}

/// The MQTT connection (`mqtt:`), when configured.
fn mqtt(e: &mut DescriptorEncoder, hub: &Hub) -> fmt::Result {
    let Some(m) = hub.mqtt_info() else { return Ok(()) };
    let one = |v: u64| [([("broker", m.broker.as_str())], v)];
    let connected = u64::from(m.state == crate::mqtt::LinkState::Connected);
    family(e, ("camhub_mqtt_connected", None, GAUGE), "1 while connected to the MQTT broker.", one(connected))?;
    family(e, ("camhub_mqtt_connects", None, COUNTER), "Connections made to the MQTT broker.", one(m.connects))?;
    let help = "Messages sent to the MQTT broker.";
    family(e, ("camhub_mqtt_messages_published", None, COUNTER), help, one(m.published))?;
    let help = "Messages not sent because the MQTT client's queue was full.";
    family(e, ("camhub_mqtt_messages_dropped", None, COUNTER), help, one(m.dropped))
}

/// The decode scheduler: its workers, who waits, how busy, what is shed.
fn decode(e: &mut DescriptorEncoder, hub: &Hub, cams: &[Arc<Camera>]) -> fmt::Result {
    use crate::decode::schedule::Priority;
    let st = hub.scheduler.stats();
    let one = |v: f64| [([("scope", "hub")], v)];
    family(e, ("camhub_decode_workers", None, GAUGE), "Decodes that may run at once (server.decode.workers).", {
        one(st.workers as f64)
    })?;
    family(e, ("camhub_decode_running", None, GAUGE), "Decodes running now.", one(st.running as f64))?;
    let help = "Workers' busy share over the last second (0-1).";
    family(e, ("camhub_decode_utilisation", None, GAUGE), help, one(st.utilisation))?;
    let help = "Share of background GOPs decoded as keyframes only (0: none shed, 1: all).";
    family(e, ("camhub_decode_shed_ratio", None, GAUGE), help, one(st.shed))?;
    let help = "Time the decode workers spent decoding.";
    family(e, ("camhub_decode_busy", Some(Unit::Seconds), COUNTER), help, one(st.busy_seconds))?;
    let help = "Estimated decode work waiting for a worker.";
    family(e, ("camhub_decode_queued_work", Some(Unit::Seconds), GAUGE), help, one(st.waiting_seconds))?;
    let by = |p: Priority| [("priority", p.name())];
    let help = "Decodes waiting for a worker, by priority (person, program, background).";
    let rows = Priority::ALL.map(|p| (by(p), st.waiting.get(p) as u64));
    family(e, ("camhub_decode_waiting", None, GAUGE), help, rows)?;
    let rows = Priority::ALL.map(|p| (by(p), st.granted.get(p)));
    family(e, ("camhub_decode_jobs", None, COUNTER), "Decode jobs granted a worker, by priority.", rows)?;
    let rows = Priority::ALL.map(|p| (by(p), st.waited_seconds.get(p)));
    family(e, ("camhub_decode_wait", Some(Unit::Seconds), COUNTER), "Time decode jobs waited for a worker.", rows)?;
    let help = "Frames not decoded: behind (a decoder skipped its backlog to a keyframe), overload (a background GOP decoded as keyframes only).";
    family(e, ("camhub_frames_shed", None, COUNTER), help, {
        cams.iter().flat_map(|c| {
            let k = c.counters();
            [("behind", Counters::get(&k.frames_shed_behind)), ("overload", Counters::get(&k.frames_shed_overload))]
                .map(|(reason, n)| ([("camera", c.name()), ("reason", reason)], n))
        })
    })
}

fn by_camera(c: &Camera) -> Labels<'_, 1> {
    [("camera", c.name())]
}

/// The per-camera counters, one family each.
fn counters(e: &mut DescriptorEncoder, cams: &[Arc<Camera>]) -> fmt::Result {
    type Get = fn(&Camera) -> u64;
    let rows: [(&str, Option<Unit>, &str, Get); 10] = [
        ("camhub_units_received", None, "Compressed frames received.", |c| Counters::get(&c.counters().units_in)),
        ("camhub_received", Some(Unit::Bytes), "Compressed bytes received.", |c| Counters::get(&c.counters().bytes_in)),
        ("camhub_frames_decoded", None, "Frames decoded.", |c| Counters::get(&c.counters().frames_decoded)),
        ("camhub_frames_dropped", None, "Compressed frames the GOP cache could not keep.", |c| {
            c.status().gop_dropped_units
        }),
        ("camhub_decode_errors", None, "Units the decoder rejected.", |c| Counters::get(&c.counters().decode_errors)),
        ("camhub_decoder_overruns", None, "Times the decoder's queue overflowed (it then skips to a keyframe).", |c| {
            Counters::get(&c.counters().decoder_overruns)
        }),
        (
            "camhub_hwaccel_fallbacks",
            None,
            "Times a hardware decoder failed mid-stream (the camera went on in software).",
            |c| Counters::get(&c.counters().hwaccel_fallbacks),
        ),
        ("camhub_jpeg_encodes", None, "JPEG encodes (one per frame and variant).", |c| {
            Counters::get(&c.counters().jpeg_encodes)
        }),
        ("camhub_reconnects", None, "Connections lost or failed.", |c| Counters::get(&c.counters().reconnects)),
        ("camhub_camera_restarts", None, "Times a camera's task panicked and was restarted.", |c| c.status().restarts),
    ];
    for (name, unit, help, get) in rows {
        family(e, (name, unit, COUNTER), help, cams.iter().map(|c| (by_camera(c), get(c))))?;
    }
    Ok(())
}

/// Outputs for programs, labelled by camera and output name.
fn outputs(e: &mut DescriptorEncoder, hub: &Hub, cams: &[Arc<Camera>]) -> fmt::Result {
    type Get = fn(&OutputStats) -> Option<u64>;
    let rows: [(&str, Kind, &str, Get); 8] = [
        ("camhub_output_frames", COUNTER, "Frames published by an output (SHM slots, Redis records).", |s| {
            Some(s.published.load(Ordering::Relaxed))
        }),
        ("camhub_output_skipped_similar", COUNTER, "Frames an output skipped as the same picture.", |s| {
            Some(s.skipped_similar.load(Ordering::Relaxed))
        }),
        ("camhub_output_active", GAUGE, "1 while an output takes frames (SHM: a reader is attached).", |s| {
            Some(u64::from(s.active.load(Ordering::Relaxed)))
        }),
        ("camhub_shm_readers", GAUGE, "Readers registered in an SHM ring.", |s| {
            s.path.as_ref().map(|_| u64::from(s.readers.load(Ordering::Relaxed)))
        }),
        ("camhub_redis_records_sent", COUNTER, "Records written to Redis.", |s| {
            s.queue.as_ref().map(|q| q.sent.load(Ordering::Relaxed))
        }),
        ("camhub_redis_records_dropped", COUNTER, "Records dropped while Redis was slow or away.", |s| {
            s.queue.as_ref().map(|q| q.dropped.load(Ordering::Relaxed))
        }),
        ("camhub_redis_slow_flushes", COUNTER, "Batches that took over 50 ms to write to Redis.", |s| {
            s.queue.as_ref().map(|q| q.slow_flushes.load(Ordering::Relaxed))
        }),
        ("camhub_redis_connected", GAUGE, "1 while the output is connected to Redis.", |s| {
            s.queue.as_ref().map(|q| u64::from(q.connected.load(Ordering::Relaxed)))
        }),
    ];
    let stats: Vec<(&Arc<Camera>, Vec<Arc<OutputStats>>)> = cams.iter().map(|c| (c, hub.outputs(c.name()))).collect();
    for (name, kind, help, get) in rows {
        family(e, (name, None, kind), help, {
            stats.iter().flat_map(|(c, outs)| {
                outs.iter()
                    .filter_map(move |s| get(s).map(|v| ([("camera", c.name()), ("output", s.name.as_str())], v)))
            })
        })?;
    }
    Ok(())
}

/// What each camera holds, and the hub's GOP budget.
fn memory(e: &mut DescriptorEncoder, hub: &Hub, cams: &[Arc<Camera>]) -> fmt::Result {
    let mems: Vec<_> = cams.iter().map(|c| (c.name(), hub.memory(c))).collect();
    let help = "What each camera holds, by kind (rings are shared memory).";
    family(e, ("camhub_memory", Some(Unit::Bytes), GAUGE), help, {
        mems.iter().flat_map(|(name, m)| {
            [("gop", m.gop), ("frame", m.frame), ("jpeg_cache", m.jpeg_cache), ("rings", m.rings)]
                .map(|(kind, v)| ([("camera", *name), ("kind", kind)], v as u64))
        })
    })?;
    let help = "GOP units dropped because a memory budget ran out.";
    let rows = mems.iter().map(|(name, m)| ([("camera", *name)], m.budget_drops));
    family(e, ("camhub_memory_budget_drops", None, COUNTER), help, rows)?;
    let g = &crate::telemetry::memory::GLOBAL;
    let help = "The hub's budget for all GOP caches (0: none), and what is used.";
    let rows = [([("what", "limit")], g.limit()), ([("what", "used")], g.used())];
    family(e, ("camhub_memory_gop_budget", Some(Unit::Bytes), GAUGE), help, rows)
}
