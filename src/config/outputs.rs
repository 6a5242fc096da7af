//! `outputs:` of a camera, for programs: shared-memory rings (`shm`) and Redis
//! Streams (`redis`). Each output has a name (its ring is
//! `/dev/shm/camhub.<camera>.<output>`) and its own rate, size and format.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{self, Visitor};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::StreamRole;
use crate::secret::Secret;

/// Pixel formats an output can deliver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PixelFormat {
    Gray,
    I420,
    Nv12,
    Rgb24,
    #[default]
    Bgr24,
}

impl PixelFormat {
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Gray => "gray",
            PixelFormat::I420 => "i420",
            PixelFormat::Nv12 => "nv12",
            PixelFormat::Rgb24 => "rgb24",
            PixelFormat::Bgr24 => "bgr24",
        }
    }
}

/// How many frames an output takes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Fps {
    /// Every decoded frame.
    #[default]
    All,
    /// At most this many per second, evenly spaced.
    Rate(f64),
    /// Keyframes only, decoded alone (the decoder skips everything else).
    Keyframes,
}

/// What `fps` accepts: said by a bad value's error and by its schema.
const FPS_WHAT: &str = "frames per second (a number above 0, up to 1000) or \"keyframes\"";

impl<'de> Deserialize<'de> for Fps {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Fps;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(FPS_WHAT)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Fps, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Fps, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Fps, E> {
                if v > 0.0 && v <= 1000.0 { Ok(Fps::Rate(v)) } else { Err(E::custom(format!("{v} is not {FPS_WHAT}"))) }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Fps, E> {
                match v.trim() {
                    "keyframes" => Ok(Fps::Keyframes),
                    "all" => Ok(Fps::All),
                    s => s
                        .parse::<f64>()
                        .map_err(|_| E::custom(format!("{v:?} is not {FPS_WHAT}")))
                        .and_then(|f| self.visit_f64(f)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl PartialSchema for Fps {
    fn schema() -> RefOr<Schema> {
        let number = ObjectBuilder::new().schema_type(Type::Number).exclusive_minimum(Some(0)).maximum(Some(1000));
        super::values::number_or_text(FPS_WHAT, number, &["keyframes"])
    }
}
impl ToSchema for Fps {}

/// When an SHM output decodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputDemand {
    /// Only while a reader is attached to the ring.
    #[default]
    Auto,
    /// Always, reader or not.
    Always,
}

/// `live` (latest frame, a slow reader skips) or `replay` (files: every frame once, paced by readers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Live,
    Replay,
}

/// One output, by kind.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum OutputConfig {
    Shm(ShmOptions),
    Redis(RedisOptions),
}

/// `shm:` a ring of frames in `/dev/shm` (layout: docs/shm.md).
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShmOptions {
    /// Frames per second, evenly spaced, or `keyframes`; default every decoded frame.
    #[serde(default)]
    pub fps: Fps,
    /// Scaled to this width, aspect kept (like snapshots); default the camera's size.
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    /// Pixel format of the frames (default `bgr24`).
    #[serde(default)]
    pub format: PixelFormat,
    /// Ring depth, 2-64 (default 4).
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// `auto` (default): decode only while a reader is attached; `always`.
    #[serde(default)]
    pub demand: OutputDemand,
    /// File mode as an octal string (default "0600").
    #[serde(default = "default_permissions")]
    pub permissions: String,
    /// Skip a frame whose luma thumbnail differs from the last published one by less
    /// than this (mean absolute difference as a fraction of full scale, 0-1).
    #[serde(default)]
    pub skip_similar: Option<f64>,
    /// The camera stream it reads: `main` (default) or `sub` (the camera's
    /// `streams.sub`; the main stream is then not needed for it).
    #[serde(default)]
    pub from: StreamRole,
}

/// `redis:` one Redis Streams record per published frame.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisOptions {
    /// `redis://[user:pass@]host[:port][/db]` or `unix:///path/redis.sock`; `${VAR}` is read from the environment.
    #[schema(value_type = String)]
    pub url: Secret,
    /// Stream key (default `camhub:<camera>`).
    #[serde(default)]
    pub stream: Option<String>,
    /// `XADD ... MAXLEN ~ maxlen` (default 1000).
    #[serde(default = "default_maxlen")]
    pub maxlen: u64,
    /// Like `shm`: a rate, or `keyframes`; default every decoded frame.
    #[serde(default)]
    pub fps: Fps,
    /// Put the frame as a JPEG in the record (field `jpeg`).
    #[serde(default)]
    pub include_jpeg: bool,
    /// JPEG quality (default: the camera's `jpeg_quality`).
    #[serde(default)]
    pub quality: Option<u8>,
    /// JPEG size (aspect kept); default the camera's.
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    /// Announce the frames of this camera's `shm` output (records carry its ring and
    /// slot; rate and size are the ring's).
    #[serde(default)]
    pub ring: Option<String>,
    /// As for `shm`: skip a frame that barely differs from the last one published (0-1).
    #[serde(default)]
    pub skip_similar: Option<f64>,
    /// Records held while Redis is slow or away; the oldest are dropped beyond (default 1000).
    #[serde(default = "default_buffer")]
    pub buffer: u32,
    /// As for `shm`: `main` (default) or `sub`; with `ring`, the ring's.
    #[serde(default)]
    pub from: StreamRole,
}

fn default_slots() -> u32 {
    4
}
fn default_permissions() -> String {
    "0600".into()
}
fn default_maxlen() -> u64 {
    1000
}
fn default_buffer() -> u32 {
    1000
}

impl OutputConfig {
    /// The camera stream it reads: `from: main` (default) or `from: sub`.
    pub fn stream(&self) -> StreamRole {
        match self {
            OutputConfig::Shm(o) => o.from,
            OutputConfig::Redis(o) => o.from,
        }
    }
}

impl ShmOptions {
    /// The file mode, from the octal `permissions`.
    pub fn mode(&self) -> u32 {
        u32::from_str_radix(self.permissions.trim_start_matches("0o"), 8).unwrap_or(0o600)
    }
}

fn check_size(w: Option<u32>, h: Option<u32>) -> Result<(), String> {
    for (k, v) in [("width", w), ("height", h)] {
        if let Some(v) = v
            && !(16..=8192).contains(&v)
        {
            return Err(format!("{k} must be 16-8192, not {v}"));
        }
    }
    Ok(())
}

fn check_skip(s: Option<f64>) -> Result<(), String> {
    match s {
        Some(v) if !(0.0..=1.0).contains(&v) => Err(format!("skip_similar must be 0-1, not {v}")),
        _ => Ok(()),
    }
}

/// Checks every output of a camera, its values taken literally.
pub fn validate(outputs: &BTreeMap<String, OutputConfig>) -> Result<(), String> {
    let shm_names: Vec<String> =
        outputs.iter().filter(|(_, o)| matches!(o, OutputConfig::Shm(_))).map(|(n, _)| n.clone()).collect();
    for (name, out) in outputs {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(format!("bad output name {name:?}: use 1-64 letters, digits, '_' or '-'"));
        }
        let at = |e: String| format!("output {name:?}: {e}");
        match out {
            OutputConfig::Shm(s) => {
                check_size(s.width, s.height).map_err(at)?;
                check_skip(s.skip_similar).map_err(at)?;
                if !(2..=64).contains(&s.slots) {
                    return Err(at(format!("slots must be 2-64, not {}", s.slots)));
                }
                let p = s.permissions.trim_start_matches("0o");
                if p.is_empty() || u32::from_str_radix(p, 8).map_or(true, |m| m > 0o777) {
                    return Err(at(format!(
                        "permissions must be an octal file mode like \"0640\", not {:?}",
                        s.permissions
                    )));
                }
            }
            OutputConfig::Redis(r) => {
                check_size(r.width, r.height).map_err(at)?;
                check_skip(r.skip_similar).map_err(at)?;
                let parsed = url::Url::parse(r.url.expose()).map_err(|e| at(format!("bad redis url: {e}")))?;
                if !["redis", "unix", "redis+unix"].contains(&parsed.scheme()) {
                    return Err(at(format!(
                        "redis url scheme {:?} is not supported (use redis:// or unix://)",
                        parsed.scheme()
                    )));
                }
                if let Some(q) = r.quality
                    && !(1..=100).contains(&q)
                {
                    return Err(at(format!("quality must be 1-100, not {q}")));
                }
                if r.maxlen == 0 || r.buffer == 0 {
                    return Err(at("maxlen and buffer must be more than 0".into()));
                }
                if let Some(ring) = &r.ring
                    && !shm_names.contains(ring)
                {
                    return Err(at(format!("ring {ring:?} is not an shm output of this camera")));
                }
                if r.ring.is_some() && (r.fps != Fps::All || r.width.is_some() || r.height.is_some()) {
                    return Err(at("an output that follows a ring takes the ring's fps and size".into()));
                }
                if let Some(ring) = &r.ring
                    && outputs.get(ring).is_some_and(|o| o.stream() != r.from)
                {
                    return Err(at(format!("it follows ring {ring:?}: give both the same from (main or sub)")));
                }
            }
        }
    }
    Ok(())
}
