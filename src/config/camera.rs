//! One camera: its long form as written (`CameraOptions`, with the defaults),
//! and the camera resolved and validated from it (`CameraConfig`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use super::env::{EnvError, interpolate};
use super::urls::resolve_url;
use super::{ByteSize, DecoderOptions, Keep, Linger, Mode, OutputConfig, Seconds, SnapshotDefault, Transport, outputs};
use crate::secret::{Secret, query_secrets, redact_url};

/// The long form of a camera. Every field but `url` (or `streams.main`) has a default.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CameraOptions {
    /// `rtsp://[user:pass@]host[:port]/path`, `file:///abs/path.mp4`, or a file
    /// path (relative to the config file). Required unless `streams.main` gives it.
    #[serde(default)]
    pub url: String,
    /// The camera's streams by role: `main` (the same as `url`: give one of the two)
    /// and `sub`, a smaller stream that serves the requests it covers by size.
    #[serde(default)]
    pub streams: Option<Streams>,
    /// Credentials, if not in the URL. In the config file (never through the API),
    /// `${VAR}` is read from the environment.
    #[serde(default)]
    pub username: Option<String>,
    /// The password of `username`; in the config file, `${VAR}` is read from the environment.
    #[serde(default)]
    pub password: Option<String>,
    /// RTP transport for RTSP: `tcp` (default, interleaved) or `udp`.
    #[serde(default)]
    pub transport: Transport,
    /// The floor of what runs with nobody asking: `connected` (default),
    /// `on_demand` or `decoded`.
    #[serde(default)]
    pub keep: Keep,
    /// How long the connection stays up after the last lease: -1 forever, 0 at once, N s.
    #[serde(default = "defaults::connect_linger")]
    pub connect_linger: Linger,
    /// How long the decoder runs after the last lease: -1 forever (start at boot),
    /// 0 at once, N seconds (default 10).
    #[serde(default = "defaults::decode_linger")]
    pub decode_linger: Linger,
    /// Bound on the compressed frames kept since the newest keyframe (default 8MiB).
    #[serde(default = "defaults::gop_cache_bytes")]
    pub gop_cache_bytes: ByteSize,
    /// Give up connecting after this long (default 10 s).
    #[serde(default = "defaults::connect_timeout")]
    pub connect_timeout: Seconds,
    /// No data for this long means the camera is stalled: reconnect (default 10 s).
    #[serde(default = "defaults::stall_timeout")]
    pub stall_timeout: Seconds,
    /// A snapshot that has no picture within this long answers 504 (default 10 s).
    #[serde(default = "defaults::snapshot_timeout")]
    pub snapshot_timeout: Seconds,
    /// What a snapshot request without `cached`, `fresh`, `max_age_ms` or `keyframe`
    /// gets: `fresh` or `cached` (the newest picture at once, kept current by a cheap
    /// refresh). Default: `server.snapshot_default` (itself `fresh` by default).
    #[serde(default)]
    pub snapshot_default: Option<SnapshotDefault>,
    /// Default JPEG quality, 1-100 (default 80).
    #[serde(default = "defaults::jpeg_quality")]
    #[schema(minimum = 1, maximum = 100)]
    pub jpeg_quality: u8,
    /// How long a shared JPEG encoder for one (quality, size) keeps running
    /// after its last viewer: -1, 0 or N seconds (default 10).
    #[serde(default = "defaults::decode_linger")]
    pub variant_linger: Linger,
    /// HTTP snapshot cameras (a URL that answers one JPEG): how often to ask (default 1 s).
    #[serde(default = "defaults::poll_interval")]
    pub poll_interval: Seconds,
    /// `https://` and `rtsps://` cameras: check the camera's certificate and name (default true).
    /// `false` accepts a self-signed camera (the connection is still encrypted).
    #[serde(default = "defaults::tls_verify")]
    pub tls_verify: bool,
    /// Cold-start guard: after connecting, skip this many frames before a
    /// snapshot may show one (cameras whose exposure needs a moment). Default 0.
    #[serde(default)]
    pub warmup_frames: u32,
    /// Cold-start guard by time: skip frames captured within this long of connecting. Default 0.
    #[serde(default = "defaults::warmup")]
    pub warmup: Seconds,
    /// Outputs for programs, by name: `shm` rings and `redis` streams (docs/shm.md, docs/redis.md).
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputConfig>,
    /// Bytes this camera may hold (GOP cache, decoded frame, JPEG cache); over it the
    /// GOP cache stops growing for the rest of its GOP (counted). Default: no limit.
    #[serde(default)]
    pub memory_budget: Option<ByteSize>,
    /// `live` (default) or `replay`: a file's every frame, in order, once, as fast as
    /// the outputs' readers go (files only).
    #[serde(default)]
    pub mode: Mode,
    /// The largest picture (width x height) the camera may send; a larger one is
    /// refused before it is decoded or kept, and the camera says why. Default
    /// 33177600 (8K, 7680x4320); at most 268435456 (16384x16384).
    #[serde(default = "defaults::max_pixels")]
    #[schema(minimum = 1, maximum = 268435456)]
    pub max_pixels: u64,
    /// `decoder: {hwaccel: none | auto | vaapi | cuda}`: decode on a GPU where the
    /// machine has one (default `none`: software).
    #[serde(default)]
    pub decoder: DecoderOptions,
}

/// `streams:` a camera's URLs by role. Credentials go in each URL; a `sub` URL
/// without them uses the camera's (`username`, `password`, or the main URL's).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Streams {
    /// The full-size stream (what `url` says when there is no `streams`).
    #[serde(default)]
    pub main: Option<String>,
    /// The sub-stream: any URL `url` takes (another codec or size is fine).
    #[serde(default)]
    pub sub: Option<String>,
}

/// The default `max_pixels`: 8K (7680x4320).
pub const DEFAULT_MAX_PIXELS: u64 = 7680 * 4320;
/// The most `max_pixels` may be set to: 16384x16384 (a 1 GiB RGBA picture).
pub const MAX_MAX_PIXELS: u64 = 16384 * 16384;

mod defaults {
    use super::*;
    pub fn connect_linger() -> Linger {
        Linger::After(std::time::Duration::from_secs(30))
    }
    pub fn decode_linger() -> Linger {
        Linger::After(std::time::Duration::from_secs(10))
    }
    pub fn gop_cache_bytes() -> ByteSize {
        ByteSize(8 << 20)
    }
    pub fn connect_timeout() -> Seconds {
        Seconds::from_secs(10)
    }
    pub fn stall_timeout() -> Seconds {
        Seconds::from_secs(10)
    }
    pub fn snapshot_timeout() -> Seconds {
        Seconds::from_secs(10)
    }
    pub fn jpeg_quality() -> u8 {
        80
    }
    pub fn poll_interval() -> Seconds {
        Seconds::from_secs(1)
    }
    pub fn tls_verify() -> bool {
        true
    }
    pub fn warmup() -> Seconds {
        Seconds(std::time::Duration::ZERO)
    }
    pub fn max_pixels() -> u64 {
        super::DEFAULT_MAX_PIXELS
    }
}

impl CameraOptions {
    /// Replaces `${VAR}` in the url, the credentials and the Redis URLs with the
    /// environment. A step of loading the config file only: what the API receives
    /// is literal, or any caller could read the hub's environment.
    pub fn interpolate_env(&mut self) -> Result<(), CameraConfigError> {
        self.url = interpolate(&self.url)?;
        if let Some(st) = &mut self.streams {
            for v in [&mut st.main, &mut st.sub].into_iter().flatten() {
                *v = interpolate(v)?;
            }
        }
        for v in [&mut self.username, &mut self.password].into_iter().flatten() {
            *v = interpolate(v)?;
        }
        for (name, out) in self.outputs.iter_mut() {
            if let OutputConfig::Redis(r) = out {
                let url = interpolate(r.url.expose()).map_err(|e| format!("output {name:?}: {e}"))?;
                r.url = Secret::new(url);
            }
        }
        Ok(())
    }

    /// The options of the one-line form `name: url`.
    pub fn from_url(url: impl Into<String>) -> Self {
        CameraOptions {
            url: url.into(),
            streams: None,
            username: None,
            password: None,
            transport: Transport::default(),
            keep: Keep::default(),
            connect_linger: defaults::connect_linger(),
            decode_linger: defaults::decode_linger(),
            gop_cache_bytes: defaults::gop_cache_bytes(),
            connect_timeout: defaults::connect_timeout(),
            stall_timeout: defaults::stall_timeout(),
            snapshot_timeout: defaults::snapshot_timeout(),
            snapshot_default: None,
            jpeg_quality: defaults::jpeg_quality(),
            variant_linger: defaults::decode_linger(),
            poll_interval: defaults::poll_interval(),
            tls_verify: defaults::tls_verify(),
            warmup_frames: 0,
            warmup: defaults::warmup(),
            outputs: BTreeMap::new(),
            memory_budget: None,
            mode: Mode::Live,
            max_pixels: defaults::max_pixels(),
            decoder: DecoderOptions::default(),
        }
    }
}

/// Where a camera's stream comes from, resolved from its URL.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// RTSP URL with user info removed; credentials live in `CameraConfig`.
    Rtsp(Url),
    /// HTTP MJPEG stream or JPEG snapshot URL, user info removed.
    Http(Url),
    File(PathBuf),
}

/// A camera, validated and resolved, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraConfig {
    pub name: String,
    pub source: SourceSpec,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The sub-stream (`streams.sub`), resolved like the main one.
    pub sub: Option<SubStream>,
    pub options: CameraOptions,
}

/// A camera's sub-stream: where it comes from and its credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct SubStream {
    pub source: SourceSpec,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

/// Which of a camera's streams a consumer reads.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StreamRole {
    /// The full-size stream (`url`, or `streams.main`).
    #[default]
    Main,
    /// The sub-stream (`streams.sub`).
    Sub,
}

impl StreamRole {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamRole::Main => "main",
            StreamRole::Sub => "sub",
        }
    }
}

/// The suffix of a sub-stream's internal camera name (`porch.sub`): a camera
/// name has no '.', so it cannot collide with one.
pub const SUB_SUFFIX: &str = ".sub";

/// Why a camera's options were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CameraConfigError {
    /// A `${VAR}` could not be resolved.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// A bad value, with what is allowed.
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for CameraConfigError {
    fn from(s: String) -> Self {
        CameraConfigError::Invalid(s)
    }
}

impl CameraConfig {
    /// Builds a camera from options, resolving the URL and credentials, every value
    /// taken literally (`${VAR}` is the config file's: `CameraOptions::interpolate_env`).
    /// `base` is the directory relative file paths are taken from.
    pub fn resolve(name: &str, mut options: CameraOptions, base: &Path) -> Result<Self, CameraConfigError> {
        validate_name(name)?;
        let mut username = options.username.clone();
        let mut password = options.password.clone();
        for (key, v) in [
            ("connect_timeout", options.connect_timeout),
            ("stall_timeout", options.stall_timeout),
            ("snapshot_timeout", options.snapshot_timeout),
            ("poll_interval", options.poll_interval),
        ] {
            if v.0.is_zero() {
                return Err(format!("{key} must be more than 0").into());
            }
        }
        if !(1..=100).contains(&options.jpeg_quality) {
            return Err(format!("jpeg_quality must be 1-100, not {}", options.jpeg_quality).into());
        }
        if !(1..=MAX_MAX_PIXELS).contains(&options.max_pixels) {
            return Err(format!("max_pixels must be 1-{MAX_MAX_PIXELS}, not {}", options.max_pixels).into());
        }
        let streams = options.streams.take().unwrap_or_default();
        match (options.url.is_empty(), streams.main) {
            (false, Some(_)) => {
                return Err("give the main stream once: url or streams.main, not both".to_owned().into());
            }
            (true, None) => return Err("a camera needs a url (or streams: {main: URL})".to_owned().into()),
            (true, Some(main)) => options.url = main,
            (false, None) => {}
        }
        let source = resolve_url(&options.url, &mut username, &mut password, base)?;
        let sub = match streams.sub {
            Some(u) => {
                let (mut su, mut sp) = (None, None);
                let source = resolve_url(&u, &mut su, &mut sp, base).map_err(|e| format!("streams.sub: {e}"))?;
                if su.is_none() {
                    // The same camera: its credentials, unless the sub URL has its own.
                    (su, sp) = (username.clone(), password.clone());
                }
                if sp.is_some() && su.is_none() {
                    return Err("streams.sub: a password is set but no username".to_owned().into());
                }
                Some(SubStream { source, username: su, password: sp.map(Secret::new) })
            }
            None => None,
        };
        let rtsps = |s: &SourceSpec| matches!(s, SourceSpec::Rtsp(u) if u.scheme() == "rtsps");
        if options.transport == Transport::Udp && (rtsps(&source) || sub.as_ref().is_some_and(|s| rtsps(&s.source))) {
            return Err("transport: udp cannot be used with rtsps:// (RTP over UDP would leave the TLS connection \
                 unencrypted): rtsps cameras stream over TCP"
                .to_owned()
                .into());
        }
        outputs::validate(&options.outputs)?;
        if options.mode == Mode::Replay {
            if !matches!(source, SourceSpec::File(_)) {
                return Err("mode: replay is for files only (a live camera cannot be replayed)".to_owned().into());
            }
            if options.outputs.is_empty() {
                return Err("mode: replay needs at least one output (shm or redis) to replay into".to_owned().into());
            }
            if sub.is_some() {
                return Err("mode: replay takes no streams.sub (one file, every frame)".to_owned().into());
            }
        }
        if sub.is_none()
            && let Some((n, _)) = options.outputs.iter().find(|(_, o)| o.stream() == StreamRole::Sub)
        {
            return Err(format!("output {n:?}: from: sub needs a sub-stream (streams: {{sub: URL}})").into());
        }
        if password.is_some() && username.is_none() {
            return Err("a password is set but no username".to_owned().into());
        }
        options.username = None;
        options.password = None;
        Ok(CameraConfig { name: name.to_owned(), source, username, password: password.map(Secret::new), sub, options })
    }

    /// The sub-stream as a camera of its own (`<name>.sub`): the same options,
    /// its own source and credentials. The hub runs it; it is never listed alone.
    pub fn sub_camera(&self) -> Option<CameraConfig> {
        let sub = self.sub.as_ref()?;
        Some(CameraConfig {
            name: format!("{}{SUB_SUFFIX}", self.name),
            source: sub.source.clone(),
            username: sub.username.clone(),
            password: sub.password.clone(),
            sub: None,
            options: self.options.clone(),
        })
    }

    /// The sub-stream's URL as it may be shown to anyone: no credentials.
    pub fn display_sub_url(&self) -> Option<String> {
        self.sub.as_ref().map(|s| display_source(&s.source))
    }

    /// The URL as it may be shown to anyone: no credentials.
    pub fn display_url(&self) -> String {
        display_source(&self.source)
    }

    /// The secrets that must never appear in any output for this camera: the
    /// password, credentials in the URL's query (`?pwd=`, `?token=`, ...) and Redis passwords.
    pub fn secrets(&self) -> Vec<String> {
        let mut s: Vec<String> = self.password.iter().map(|p| p.expose().to_owned()).collect();
        if let SourceSpec::Rtsp(u) | SourceSpec::Http(u) = &self.source {
            s.extend(query_secrets(u));
        }
        if let Some(sub) = &self.sub {
            s.extend(sub.password.iter().map(|p| p.expose().to_owned()));
            if let SourceSpec::Rtsp(u) | SourceSpec::Http(u) = &sub.source {
                s.extend(query_secrets(u));
            }
        }
        for o in self.options.outputs.values() {
            if let OutputConfig::Redis(r) = o
                && let Ok(u) = Url::parse(r.url.expose())
            {
                // The redis URL holds it percent-encoded; scrub() also catches the encoded form.
                s.extend(u.password().map(str::to_owned));
                s.extend(query_secrets(&u));
            }
        }
        s
    }
}

fn display_source(source: &SourceSpec) -> String {
    match source {
        SourceSpec::Rtsp(u) | SourceSpec::Http(u) => redact_url(u),
        SourceSpec::File(p) => format!("file://{}", p.display()),
    }
}

/// Camera names appear in URLs and file names: keep them plain.
pub fn validate_name(name: &str) -> Result<(), CameraConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(()) } else { Err(format!("bad camera name {name:?}: use 1-64 letters, digits, '_' or '-'").into()) }
}
