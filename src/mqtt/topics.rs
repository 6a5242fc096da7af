//! What goes where: topic names and payloads, pure functions of the config and
//! a camera's figures, so they are unit-tested without a broker.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::camera::State;
use crate::config::MqttConfig;

/// The topics of one hub.
#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
    discovery_prefix: String,
    /// The first part of every unique id and discovery object id (the prefix, made
    /// safe: two hubs with two prefixes announce two sets of entities).
    node: String,
}

impl Topics {
    pub fn new(cfg: &MqttConfig) -> Self {
        let node =
            cfg.topic_prefix.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        Topics { prefix: cfg.topic_prefix.clone(), discovery_prefix: cfg.discovery_prefix.clone(), node }
    }

    /// `online` (retained) while camhub runs; `offline` at a clean stop and as the last will.
    pub fn available(&self) -> String {
        format!("{}/available", self.prefix)
    }

    /// The camera's state name, retained.
    pub fn state(&self, cam: &str) -> String {
        format!("{}/{cam}/state", self.prefix)
    }

    /// Every camera's state topic: at connect, camhub reads the retained ones to
    /// clear those of cameras it no longer has (removed while it or the broker was away).
    pub fn states_filter(&self) -> String {
        format!("{}/+/state", self.prefix)
    }

    /// The camera a state topic is of.
    pub fn camera_of_state<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let cam = topic.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?.strip_suffix("/state")?;
        (!cam.is_empty() && !cam.contains('/')).then_some(cam)
    }

    /// The camera's figures as JSON, retained.
    pub fn attributes(&self, cam: &str) -> String {
        format!("{}/{cam}/attributes", self.prefix)
    }

    /// JPEG pictures (`snapshot_interval`), not retained.
    pub fn snapshot(&self, cam: &str) -> String {
        format!("{}/{cam}/snapshot", self.prefix)
    }

    /// Home Assistant's discovery topic of the camera's connectivity sensor.
    pub fn discovery_connected(&self, cam: &str) -> String {
        format!("{}/binary_sensor/{}_{cam}_connected/config", self.discovery_prefix, self.node)
    }

    /// Home Assistant's discovery topic of the camera entity (with `snapshot_interval`).
    pub fn discovery_camera(&self, cam: &str) -> String {
        format!("{}/camera/{}_{cam}/config", self.discovery_prefix, self.node)
    }

    /// The device every entity of a camera belongs to.
    fn device(&self, cam: &str, public_url: Option<&str>) -> Value {
        let mut d = json!({
            "identifiers": [format!("{}_{cam}", self.node)],
            "name": cam,
            "manufacturer": "camhub",
            "model": "camera",
            "sw_version": env!("CARGO_PKG_VERSION"),
        });
        if let Some(u) = public_url {
            d["configuration_url"] = json!(format!("{u}/api/cameras/{cam}"));
        }
        d
    }

    /// The connectivity binary sensor: ON while the camera streams.
    pub fn connected_config(&self, cam: &str, public_url: Option<&str>) -> Value {
        json!({
            "name": "Connected",
            "unique_id": format!("{}_{cam}_connected", self.node),
            "device_class": "connectivity",
            "state_topic": self.state(cam),
            "value_template": "{{ 'ON' if value == 'streaming' else 'OFF' }}",
            "json_attributes_topic": self.attributes(cam),
            "availability_topic": self.available(),
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": self.device(cam, public_url),
        })
    }

    /// The camera entity: Home Assistant's MQTT camera shows the JPEGs of `snapshot`.
    pub fn camera_config(&self, cam: &str, public_url: Option<&str>) -> Value {
        json!({
            "name": null,
            "unique_id": format!("{}_{cam}_camera", self.node),
            "topic": self.snapshot(cam),
            "json_attributes_topic": self.attributes(cam),
            "availability_topic": self.available(),
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": self.device(cam, public_url),
        })
    }
}

/// A state's name as the API and the state topic show it (`streaming`, `auth_failed`, ...).
pub fn state_name(s: State) -> String {
    name_of(&s)
}

/// A unit enum's name as the API writes it (a codec, an error kind).
pub fn name_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// A camera's figures at one moment, as the attributes topic shows them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub state: String,
    /// Why the camera is not streaming (its last error, already free of credentials).
    pub reason: Option<String>,
    pub error_kind: Option<String>,
    pub codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Units received per second over the last interval.
    pub fps: Option<f64>,
    pub bitrate_kbps: Option<f64>,
    /// Age of the newest decoded picture.
    pub age_ms: Option<u64>,
    pub snapshot_url: Option<String>,
}

impl Figures {
    pub fn to_json(&self) -> Value {
        let round = |v: Option<f64>| v.map(|v| (v * 10.0).round() / 10.0);
        json!({
            "state": self.state,
            "reason": self.reason,
            "error_kind": self.error_kind,
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
            "fps": round(self.fps),
            "bitrate_kbps": round(self.bitrate_kbps),
            "age_ms": self.age_ms,
            "snapshot_url": self.snapshot_url,
        })
    }
}

/// Frame rate and bitrate from the camera's running counters, between two reads.
#[derive(Debug, Default)]
pub struct Rate {
    last: Option<(Instant, u64, u64)>,
    /// The figures of the last complete interval.
    pub fps: Option<f64>,
    pub kbps: Option<f64>,
}

impl Rate {
    /// Takes the counters (units and bytes received so far) at `now`; an interval
    /// under half a second keeps the previous figures.
    pub fn update(&mut self, now: Instant, units: u64, bytes: u64) {
        if let Some((t, u, b)) = self.last {
            let dt = now.saturating_duration_since(t);
            if dt < Duration::from_millis(500) {
                return;
            }
            let s = dt.as_secs_f64();
            self.fps = Some(units.saturating_sub(u) as f64 / s);
            self.kbps = Some(bytes.saturating_sub(b) as f64 * 8.0 / s / 1000.0);
        }
        self.last = Some((now, units, bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(prefix: &str) -> Topics {
        let mut cfg: MqttConfig = serde_saphyr::from_str("url: mqtt://b\n").unwrap();
        cfg.topic_prefix = prefix.into();
        Topics::new(&cfg)
    }

    #[test]
    fn names() {
        let t = topics("camhub");
        assert_eq!(t.available(), "camhub/available");
        assert_eq!(t.state("door"), "camhub/door/state");
        assert_eq!(t.attributes("door"), "camhub/door/attributes");
        assert_eq!(t.snapshot("door"), "camhub/door/snapshot");
        assert_eq!(t.discovery_connected("door"), "homeassistant/binary_sensor/camhub_door_connected/config");
        assert_eq!(t.discovery_camera("door"), "homeassistant/camera/camhub_door/config");
        let t = topics("site/a.b");
        assert_eq!(t.state("door"), "site/a.b/door/state");
        assert_eq!(t.discovery_camera("door"), "homeassistant/camera/site_a_b_door/config");
        assert_eq!(t.states_filter(), "site/a.b/+/state");
        assert_eq!(t.camera_of_state("site/a.b/door/state"), Some("door"));
        assert_eq!(t.camera_of_state("site/a.b/door/attributes"), None);
        assert_eq!(t.camera_of_state("site/a.b/x/door/state"), None);
        assert_eq!(t.camera_of_state("site/a.bc/door/state"), None);
        assert_eq!(state_name(State::AuthFailed), "auth_failed");
        assert_eq!(state_name(State::Streaming), "streaming");
    }

    #[test]
    fn discovery_payloads() {
        let t = topics("camhub");
        let c = t.connected_config("door", Some("http://hub:8080"));
        assert_eq!(c["unique_id"], "camhub_door_connected");
        assert_eq!(c["device_class"], "connectivity");
        assert_eq!(c["state_topic"], "camhub/door/state");
        assert_eq!(c["availability_topic"], "camhub/available");
        assert_eq!(c["device"]["identifiers"][0], "camhub_door");
        assert_eq!(c["device"]["manufacturer"], "camhub");
        assert_eq!(c["device"]["configuration_url"], "http://hub:8080/api/cameras/door");
        let cam = t.camera_config("door", None);
        assert_eq!(cam["topic"], "camhub/door/snapshot");
        assert_eq!(cam["unique_id"], "camhub_door_camera");
        assert!(cam["device"].get("configuration_url").is_none());
    }

    #[test]
    fn figures_and_rates() {
        let f =
            Figures { state: "streaming".into(), codec: Some("h264".into()), fps: Some(5.9876), ..Default::default() };
        let j = f.to_json();
        assert_eq!(j["state"], "streaming");
        assert_eq!(j["codec"], "h264");
        assert_eq!(j["fps"], 6.0);
        assert!(j["reason"].is_null() && j["width"].is_null());
        let t0 = crate::clock::Clock::stepped().now();
        let mut r = Rate::default();
        r.update(t0, 0, 0);
        assert_eq!(r.fps, None);
        r.update(t0 + Duration::from_millis(100), 1, 100);
        assert_eq!(r.fps, None, "too short an interval is skipped");
        r.update(t0 + Duration::from_secs(2), 12, 250_000);
        assert_eq!(r.fps, Some(6.0));
        assert_eq!(r.kbps, Some(1000.0));
    }
}
