//! The configuration file: strict YAML, a one-line form per camera
//! (`name: url`) and a long form with options. Every error names the file, line
//! and column. `${VAR}` in a camera's url, username or password is taken from
//! the environment, so secrets need not sit in the file.

mod camera;
mod cluster;
mod env;
mod mqtt;
mod outputs;
pub mod persist;
mod server;
mod urls;
mod values;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::secret::Secret;
pub use camera::{
    CameraConfig, CameraConfigError, CameraOptions, SUB_SUFFIX, SourceSpec, StreamRole, Streams, SubStream,
    validate_name,
};
pub use cluster::ClusterConfig;
pub use env::{EnvError, interpolate};
pub use mqtt::{MqttConfig, MqttUrl};
pub use outputs::{Fps, Mode, OutputConfig, OutputDemand, PixelFormat, RedisOptions, ShmOptions};
pub use server::{AuthConfig, LogConfig, LogFormat, RtspConfig, ServerConfig, WebRtcConfig};
pub use values::{ByteSize, DecoderOptions, Hwaccel, Keep, Linger, PortRange, Seconds, SnapshotDefault, Transport};

/// A configuration error, already formatted with file, line and column.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The whole file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    cameras: BTreeMap<String, Spanned<CameraEntry>>,
    #[serde(default)]
    mqtt: Option<Spanned<MqttConfig>>,
    #[serde(default)]
    cluster: Option<Spanned<ClusterConfig>>,
}

/// One camera in the file: either just a URL or the long form.
#[derive(Debug)]
enum CameraEntry {
    Url(String),
    Full(Box<CameraOptions>),
}

impl<'de> Deserialize<'de> for CameraEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CameraEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a camera URL or a map of camera options")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CameraEntry, E> {
                Ok(CameraEntry::Url(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<CameraEntry, A::Error> {
                CameraOptions::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|o| CameraEntry::Full(Box::new(o)))
            }
        }
        d.deserialize_any(V)
    }
}

/// The hub's whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub cameras: Vec<CameraConfig>,
    /// `mqtt:`: state on an MQTT broker (None: off).
    pub mqtt: Option<MqttConfig>,
    /// `cluster:`: several nodes share the fleet through Redis (None: one node).
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &path.display().to_string(), base)
    }

    /// Parses config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<Self, ConfigError> {
        let file: FileConfig = serde_saphyr::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!("{origin}:{}:{}", l.line(), l.column()))
                .unwrap_or_else(|| origin.to_owned());
            ConfigError(format!("{at}: {e}"))
        })?;
        let mut cameras = Vec::new();
        for (name, entry) in file.cameras {
            let (line, col) = (entry.referenced.line(), entry.referenced.column());
            let mut options = match entry.value {
                CameraEntry::Url(u) => CameraOptions::from_url(u),
                CameraEntry::Full(o) => *o,
            };
            let cam =
                options.interpolate_env().and_then(|()| CameraConfig::resolve(&name, options, base)).map_err(|e| {
                    // An unset variable is pointed at where it is used, not at the camera.
                    let at = match &e {
                        CameraConfigError::Env(EnvError::Unset(var)) => {
                            let used = format!("${{{var}");
                            text.lines()
                                .enumerate()
                                .skip((line as usize).saturating_sub(1))
                                .find_map(|(i, l)| l.find(&used).map(|c| (i + 1, c + 1)))
                        }
                        _ => None,
                    }
                    .map_or_else(|| format!("{origin}:{line}:{col}"), |(l, c)| format!("{origin}:{l}:{c}"));
                    ConfigError(format!("{at}: camera {name:?}: {e}"))
                })?;
            cameras.push(cam);
        }
        let mut server = file.server;
        server.media_dirs = server.media_dirs.iter().map(|d| base.join(d)).collect();
        let secret = |v: &Secret, what: &str| {
            interpolate(v.expose())
                .map_err(|e| e.to_string())
                .and_then(|s| if s.is_empty() { Err(format!("{what} is empty")) } else { Ok(Secret::new(s)) })
                .map_err(|e| ConfigError(format!("{origin}: server.auth: {e}")))
        };
        server.auth.tokens = server.auth.tokens.iter().map(|t| secret(t, "a token")).collect::<Result<_, _>>()?;
        for (user, pw) in server.auth.users.iter_mut() {
            *pw = secret(pw, &format!("the password of {user:?}"))?;
        }
        server
            .listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| ConfigError(format!("{origin}: server.listen {:?}: {e}", server.listen)))?;
        if server.max_connections == 0 {
            return Err(ConfigError(format!("{origin}: server.max_connections must be at least 1")));
        }
        if server.header_timeout.0.is_zero() {
            return Err(ConfigError(format!("{origin}: server.header_timeout must be more than 0")));
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
        if let Some(w) = server.decode.workers
            && !(1..=4 * cores).contains(&w)
        {
            return Err(ConfigError(format!(
                "{origin}: server.decode.workers must be 1-{} (4x the {cores} cores), not {w}",
                4 * cores
            )));
        }
        let mqtt = match file.mqtt {
            None => None,
            Some(m) => {
                let (line, col) = (m.referenced.line(), m.referenced.column());
                let mut m = m.value;
                let url = &m.url.referenced;
                let (url_line, url_col) = (url.line(), url.column());
                m.resolve_url().map_err(|e| ConfigError(format!("{origin}:{url_line}:{url_col}: {e}")))?;
                m.resolve().map_err(|e| ConfigError(format!("{origin}:{line}:{col}: {e}")))?;
                Some(m)
            }
        };
        let cluster = match file.cluster {
            None => None,
            Some(c) => {
                let (line, col) = (c.referenced.line(), c.referenced.column());
                let mut c = c.value;
                c.resolve().map_err(|e| ConfigError(format!("{origin}:{line}:{col}: {e}")))?;
                Some(c)
            }
        };
        Ok(Config { server, cameras, mqtt, cluster })
    }
}

#[cfg(test)]
mod tests;
