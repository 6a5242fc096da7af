//! The `server:` section: where the API listens, who may use it, and WebRTC.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ByteSize, PortRange, Seconds, SnapshotDefault};
use crate::secret::Secret;

/// `server:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP API listens on. Default `127.0.0.1:8080`: set
    /// `0.0.0.0:8080` to serve the LAN.
    pub listen: String,
    /// Who may use the API, streams and dashboard. None configured: open.
    pub auth: AuthConfig,
    /// Origins allowed to call the API from a browser page (CORS). Empty: CORS off.
    pub cors_origins: Vec<String>,
    /// Live view in browsers (WHEP).
    pub webrtc: WebRtcConfig,
    /// The RTSP restream of every camera (`rtsp: false`: off).
    pub rtsp: RtspConfig,
    /// Bytes every camera's GOP cache may hold together (default: no limit).
    pub memory_budget: Option<ByteSize>,
    /// Folders whose files cameras added through the API may read (relative to the
    /// config file). Default none: the API takes network cameras only, so a caller
    /// cannot make the hub open, or tell apart, arbitrary paths.
    pub media_dirs: Vec<PathBuf>,
    /// Open HTTP connections at most (default 1024, at least 1): one more is
    /// answered `503` and closed, so idle sockets cannot use up the hub's files.
    pub max_connections: u32,
    /// A connection must send a request head within this, from when it opens or
    /// from its previous response, else it is closed (default 10 s): idle and
    /// slow clients do not hold a connection. A streaming answer is not idle.
    pub header_timeout: Seconds,
    /// The decode scheduler.
    pub decode: DecodeConfig,
    /// What a snapshot request without `cached`, `fresh`, `max_age_ms` or `keyframe`
    /// gets, for cameras that do not say (default `fresh`).
    pub snapshot_default: SnapshotDefault,
    /// Cameras added, changed or removed through the API are written into the
    /// config file, so a restart serves the same cameras (default true); a file
    /// that cannot be written refuses the change. `false`: run-time changes only.
    pub persist: bool,
    /// How the hub logs (flags and `CAMHUB_LOG` win over these).
    pub log: LogConfig,
}

/// `server.log`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default; colour only on a terminal) or `json` (one object per line).
    pub format: LogFormat,
    /// `error`, `warn`, `info` (default), `debug` or `trace` for camhub's own
    /// lines, or a full filter (`camhub=debug,retina=info`).
    pub level: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `server.decode`: the hub's budget of decode workers.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeConfig {
    /// Decodes that run at once (default: the number of cores; 1 to 4x the cores).
    pub workers: Option<u32>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            auth: AuthConfig::default(),
            cors_origins: Vec::new(),
            webrtc: WebRtcConfig::default(),
            rtsp: RtspConfig::default(),
            memory_budget: None,
            media_dirs: Vec::new(),
            max_connections: 1024,
            header_timeout: Seconds::from_secs(10),
            decode: DecodeConfig::default(),
            snapshot_default: SnapshotDefault::default(),
            persist: true,
            log: LogConfig::default(),
        }
    }
}

/// `server.webrtc`: WHEP live view.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebRtcConfig {
    /// Whether `POST .../whep` is served (default true).
    pub enabled: bool,
    /// UDP ports for media, one per viewer: `"40000-40100"`; default any free port.
    pub ports: Option<PortRange>,
    /// Addresses offered to browsers besides the one they reached the API at
    /// (e.g. the public IP of a NAT that forwards `ports`).
    pub ips: Vec<std::net::IpAddr>,
    /// Viewers per camera at most (default 10).
    pub max_viewers: u32,
    /// A viewer whose ICE has not connected by then is dropped (default 10 s).
    pub ice_timeout: Seconds,
    /// How fast a new viewer gets the cached GOP, in Mbit/s (default 30): faster
    /// shows the current picture sooner, too fast overruns a slow viewer's buffers.
    pub burst_mbps: f64,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            enabled: true,
            ports: None,
            ips: Vec::new(),
            max_viewers: 10,
            ice_timeout: Seconds::from_secs(10),
            burst_mbps: 30.0,
        }
    }
}

/// `server.rtsp`: every camera at `rtsp://HOST:PORT/<camera>` (and `/<camera>/sub`),
/// passed through as it arrived. `rtsp: false` turns it off; `rtsp: {listen: ADDR}`
/// moves it (default `127.0.0.1:8554`, port 0: any free one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtspConfig {
    /// Where it listens; None: off.
    pub listen: Option<String>,
    /// How fast a new client gets the cached GOP, in Mbit/s (default 30).
    pub burst_mbps: u32,
}

impl Default for RtspConfig {
    fn default() -> Self {
        RtspConfig { listen: Some("127.0.0.1:8554".into()), burst_mbps: 30 }
    }
}

impl<'de> Deserialize<'de> for RtspConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            listen: Option<String>,
            burst_mbps: Option<u32>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            On(bool),
            Table(Table),
        }
        let default = RtspConfig::default();
        match Form::deserialize(d) {
            Ok(Form::On(true)) => Ok(default),
            Ok(Form::On(false)) => Ok(RtspConfig { listen: None, ..default }),
            Ok(Form::Table(t)) => Ok(RtspConfig {
                listen: Some(t.listen.unwrap_or(default.listen.unwrap_or_default())),
                burst_mbps: t.burst_mbps.unwrap_or(default.burst_mbps).max(1),
            }),
            Err(_) => {
                Err(serde::de::Error::custom("rtsp: expected false, true, or {listen: \"HOST:PORT\", burst_mbps: N}"))
            }
        }
    }
}

/// `server.auth`: bearer tokens and/or Basic users; `${VAR}` is read from the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accepted as `Authorization: Bearer TOKEN` (or `?token=TOKEN` for players that cannot set headers).
    pub tokens: Vec<Secret>,
    /// Accepted as HTTP Basic auth: user name to password.
    pub users: BTreeMap<String, Secret>,
    /// Whether `/metrics` needs credentials too (default true).
    pub protect_metrics: bool,
    /// Whether `/api/health` needs credentials too (default false: for load balancers).
    pub protect_health: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { tokens: Vec::new(), users: BTreeMap::new(), protect_metrics: true, protect_health: false }
    }
}

impl AuthConfig {
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || !self.users.is_empty()
    }
}
