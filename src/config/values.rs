//! Value types of the config file: lingers, durations, byte sizes, enums.
//! Each accepts the forms a person would write (`10`, `"10s"`, `"500ms"`, `-1`,
//! `"8MiB"`) and rejects anything else with a message that says what is allowed.
//! Their OpenAPI schemas say the same: a number or a text, described by the sentence
//! the error message uses.

use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Visitor};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// How long a tier keeps running after its last lease goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linger {
    /// `-1`: keep running once started, and start at boot.
    Forever,
    /// `0`: stop at once; `N`: stop N seconds after the last lease.
    After(Duration),
}

/// A duration in seconds: `10`, `2.5`, `"500ms"`, `"10s"`, `"2m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl Seconds {
    pub const fn from_secs(s: u64) -> Self {
        Seconds(Duration::from_secs(s))
    }
}

/// A size in bytes: `1048576`, `"512KiB"`, `"8MiB"`, `"8MB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// An inclusive range of UDP ports: `"40000-40100"`, or one port (`50000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn ports(self) -> std::ops::RangeInclusive<u16> {
        self.first..=self.last
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a port or a range like \"40000-40100\"");
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let p = |v: &str| v.trim().parse::<u16>().map_err(|_| bad());
        let (first, last) = (p(a)?, p(b)?);
        if first == 0 || last < first {
            return Err(bad());
        }
        Ok(PortRange { first, last })
    }
}

/// RTP transport for RTSP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    #[default]
    Tcp,
    Udp,
}

/// Where a camera's decoder runs: `none` (default, software), `auto` (CUDA,
/// then VAAPI, else software), `vaapi` or `cuda` (that device, else software).
/// A device that is missing, or that fails mid-stream, means software, said once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Hwaccel {
    Auto,
    Vaapi,
    Cuda,
    #[default]
    None,
}

impl Hwaccel {
    pub fn name(self) -> &'static str {
        match self {
            Hwaccel::Auto => "auto",
            Hwaccel::Vaapi => "vaapi",
            Hwaccel::Cuda => "cuda",
            Hwaccel::None => "none",
        }
    }
}

/// A camera's `decoder:` block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecoderOptions {
    /// `none` (default), `auto`, `vaapi` or `cuda`.
    #[serde(default)]
    pub hwaccel: Hwaccel,
}

/// What a snapshot request that names none of `cached`, `fresh`, `max_age_ms` or
/// `keyframe` gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotDefault {
    /// A fresh picture: the newest frame received, decoded now if need be.
    #[default]
    Fresh,
    /// The newest picture already made, at once, while each request keeps a cheap
    /// refresh going (the decoder runs for `decode_linger`): `cached=true`.
    Cached,
}

/// The floor of what a camera keeps running with nobody asking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// Nothing runs until someone asks; the first snapshot pays for connecting.
    OnDemand,
    /// Connected with the GOP cache warm, so snapshots are instant.
    #[default]
    Connected,
    /// Always decoding.
    Decoded,
}

fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0 && v * mult < 1e9).then(|| Duration::from_secs_f64(v * mult))
}

// What each value type accepts: said by a bad value's error and by its schema.
const LINGER: &str = "a linger: -1 (forever), 0 (stop at once), or seconds like 10 or \"500ms\"";
const DURATION: &str = "a duration like 10, 2.5, \"500ms\" or \"1m\"";
const SIZE: &str = "a size like 1048576, \"512KiB\" or \"8MiB\"";
const PORTS: &str = "a UDP port or a range like \"40000-40100\"";

struct NumOrStr<T>(fn(f64) -> Option<T>, fn(&str) -> Option<T>, &'static str);

impl<T> Visitor<'_> for NumOrStr<T> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.2)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.visit_f64(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_f64(v as f64)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        (self.0)(v).ok_or_else(|| E::custom(format!("{v} is not {}", self.2)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.1)(v).ok_or_else(|| E::custom(format!("{v:?} is not {}", self.2)))
    }
}

impl<'de> Deserialize<'de> for Linger {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn num(v: f64) -> Option<Linger> {
            if v == -1.0 {
                Some(Linger::Forever)
            } else {
                (0.0..1e9).contains(&v).then(|| Linger::After(Duration::from_secs_f64(v)))
            }
        }
        fn text(s: &str) -> Option<Linger> {
            match s.trim() {
                "-1" | "forever" | "always" => Some(Linger::Forever),
                s => parse_duration(s).map(Linger::After),
            }
        }
        d.deserialize_any(NumOrStr(num, text, LINGER))
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn num(v: f64) -> Option<Seconds> {
            (0.0..1e9).contains(&v).then(|| Seconds(Duration::from_secs_f64(v)))
        }
        fn text(s: &str) -> Option<Seconds> {
            parse_duration(s).map(Seconds)
        }
        d.deserialize_any(NumOrStr(num, text, DURATION))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn num(v: f64) -> Option<ByteSize> {
            (v >= 0.0 && v.fract() == 0.0 && v < 1e15).then_some(ByteSize(v as u64))
        }
        fn text(s: &str) -> Option<ByteSize> {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
            let (n, unit) = s.split_at(split);
            let mult: f64 = match unit.trim() {
                "" | "B" => 1.0,
                "KB" | "kB" => 1e3,
                "MB" => 1e6,
                "GB" => 1e9,
                "KiB" => 1024.0,
                "MiB" => 1048576.0,
                "GiB" => 1073741824.0,
                _ => return None,
            };
            let v: f64 = n.parse().ok()?;
            (v >= 0.0 && v * mult < 1e15).then_some(ByteSize((v * mult) as u64))
        }
        d.deserialize_any(NumOrStr(num, text, SIZE))
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn num(v: f64) -> Option<PortRange> {
            (v.fract() == 0.0 && (1.0..=65535.0).contains(&v)).then_some(PortRange { first: v as u16, last: v as u16 })
        }
        fn text(s: &str) -> Option<PortRange> {
            s.parse().ok()
        }
        d.deserialize_any(NumOrStr(num, text, PORTS))
    }
}

/// The schema of a value written as a number or as a text; `what` describes both.
pub(super) fn number_or_text(what: &str, number: ObjectBuilder, texts: &[&str]) -> RefOr<Schema> {
    let text = ObjectBuilder::new().schema_type(Type::String).examples(texts.iter().copied());
    OneOfBuilder::new().item(number).item(text).description(Some(what)).into()
}

impl PartialSchema for Linger {
    fn schema() -> RefOr<Schema> {
        let number = ObjectBuilder::new().schema_type(Type::Number).minimum(Some(-1));
        number_or_text(LINGER, number, &["forever", "500ms", "10s"])
    }
}
impl ToSchema for Linger {}

impl PartialSchema for Seconds {
    fn schema() -> RefOr<Schema> {
        let number = ObjectBuilder::new().schema_type(Type::Number).minimum(Some(0));
        number_or_text(DURATION, number, &["500ms", "10s", "1m"])
    }
}
impl ToSchema for Seconds {}

impl PartialSchema for ByteSize {
    fn schema() -> RefOr<Schema> {
        let number = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0));
        number_or_text(SIZE, number, &["512KiB", "8MiB", "8MB"])
    }
}
impl ToSchema for ByteSize {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_are_validated() {
        assert_eq!("40000-40100".parse(), Ok(PortRange { first: 40000, last: 40100 }));
        assert_eq!("50000".parse(), Ok(PortRange { first: 50000, last: 50000 }));
        assert!("40100-40000".parse::<PortRange>().is_err());
        assert!("0".parse::<PortRange>().is_err());
        assert!("lots".parse::<PortRange>().is_err());
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("-3s"), None);
        assert_eq!(parse_duration("soon"), None);
    }
}
