//! Query parameters of the picture routes, parsed strictly: an unknown
//! parameter or a bad value is a 400 that says what is allowed.

use std::collections::HashMap;
use std::time::Duration;

use utoipa::IntoParams;

use crate::config::SnapshotDefault;
use utoipa::openapi::path::{Parameter, ParameterIn};

use crate::config::StreamRole;

/// Largest width or height a client may ask for.
const MAX_SIDE: u64 = 8192;

#[derive(Debug, Default)]
pub struct PictureQuery {
    pub quality: Option<u8>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub max_age: Option<Duration>,
    /// `cached=...` as asked; none: the camera's `snapshot_default` decides.
    pub cached: Option<bool>,
    /// `fresh=...` as asked: `true` is a fresh picture whatever the default.
    pub fresh: Option<bool>,
    pub keyframe: bool,
    pub fps: Option<f64>,
    /// `stream=main|sub`: the stream that must serve, whatever the size.
    pub stream: Option<StreamRole>,
}

impl PictureQuery {
    /// Whether this request gets the newest picture already made (`cached`
    /// semantics): as it asked, or, when it names none of `cached`, `fresh`,
    /// `max_age_ms` and `keyframe`, as the camera's `snapshot_default` says.
    pub fn cached(&self, default: SnapshotDefault) -> bool {
        match (self.cached, self.fresh) {
            _ if self.keyframe => false,
            (Some(c), _) => c,
            (None, Some(f)) => !f,
            (None, None) => self.max_age.is_none() && default == SnapshotDefault::Cached,
        }
    }
}

/// Parses `q`, accepting only the parameters named in `allowed`.
pub fn parse(q: &HashMap<String, String>, allowed: &[&str]) -> Result<PictureQuery, String> {
    let mut out = PictureQuery::default();
    for (k, v) in q {
        if !allowed.contains(&k.as_str()) {
            return Err(format!("unknown query parameter {k:?} (known: {})", allowed.join(", ")));
        }
        let num = |lo: u64, hi: u64| -> Result<u64, String> {
            v.parse::<u64>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| format!("{k} must be a whole number from {lo} to {hi}, not {v:?}"))
        };
        let flag = || match v.as_str() {
            "" | "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" => Ok(false),
            _ => Err(format!("{k} must be true or false, not {v:?}")),
        };
        match k.as_str() {
            "quality" => out.quality = Some(num(1, 100)? as u8),
            "width" => out.width = Some(num(1, MAX_SIDE)? as u32),
            "height" => out.height = Some(num(1, MAX_SIDE)? as u32),
            "max_age_ms" => out.max_age = Some(Duration::from_millis(num(0, 86_400_000)?)),
            "cached" => out.cached = Some(flag()?),
            "fresh" => out.fresh = Some(flag()?),
            "keyframe" => out.keyframe = flag()?,
            "fps" => {
                let f: f64 = v
                    .parse()
                    .ok()
                    .filter(|f: &f64| (0.1..=60.0).contains(f))
                    .ok_or_else(|| format!("fps must be a number from 0.1 to 60, not {v:?}"))?;
                out.fps = Some(f);
            }
            "stream" => {
                out.stream = Some(match v.as_str() {
                    "main" => StreamRole::Main,
                    "sub" => StreamRole::Sub,
                    _ => return Err(format!("stream must be main or sub, not {v:?}")),
                })
            }
            _ => unreachable!("allowed lists only known parameters"),
        }
    }
    if out.keyframe && (out.cached == Some(true) || out.max_age.is_some()) {
        return Err("keyframe=true takes no cached or max_age_ms: it answers the current GOP's picture".into());
    }
    if out.fresh == Some(true) && (out.cached == Some(true) || out.max_age.is_some() || out.keyframe) {
        return Err("fresh=true takes no cached, max_age_ms or keyframe: it asks for a fresh picture".into());
    }
    if out.fresh == Some(false) && out.cached == Some(false) {
        return Err("fresh=false and cached=false contradict each other".into());
    }
    Ok(out)
}

/// Every picture parameter, for the OpenAPI document; each route documents the ones
/// it takes (`SNAPSHOT_PARAMS`, `STREAM_PARAMS`), the same lists `parse` accepts.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // only its documentation is used
struct PictureParams {
    /// JPEG quality (default: the camera's jpeg_quality).
    #[param(minimum = 1, maximum = 100)]
    quality: Option<u8>,
    /// Scale to this width, aspect kept (rounded to even).
    #[param(minimum = 1, maximum = 8192)]
    width: Option<u32>,
    /// Scale to this height, aspect kept; with width, fit inside the box.
    #[param(minimum = 1, maximum = 8192)]
    height: Option<u32>,
    /// Accept an existing picture up to this old.
    #[param(minimum = 0, maximum = 86400000)]
    max_age_ms: Option<u64>,
    /// Never wait: the newest picture already made (a fresh one if none yet), kept
    /// current by a cheap refresh; 503 if older than max_age_ms. Default: the
    /// camera's snapshot_default.
    cached: Option<bool>,
    /// A fresh picture, whatever the camera's snapshot_default (cached=false).
    /// Not with cached, max_age_ms or keyframe.
    fresh: Option<bool>,
    /// The cheap picture: the current GOP's keyframe (decoded alone, one unit), or a
    /// newer picture already decoded; keeps keyframe-only decoding for decode_linger.
    /// Not with cached or max_age_ms.
    keyframe: Option<bool>,
    /// Frames per second at most (default: every frame).
    #[param(minimum = 0.1, maximum = 60)]
    fps: Option<f64>,
    /// `main` or `sub`: the stream that serves (default: the sub-stream when the
    /// camera has one and its size covers width/height, else the main).
    stream: Option<StreamRole>,
}

fn picture_params(names: &[&str]) -> Vec<Parameter> {
    PictureParams::into_params(|| None).into_iter().filter(|p| names.contains(&p.name.as_str())).collect()
}

/// The query of `GET .../snapshot.jpg`.
pub struct SnapshotParams;

impl IntoParams for SnapshotParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        picture_params(super::SNAPSHOT_PARAMS)
    }
}

/// The query of `GET .../stream.mjpeg`.
pub struct StreamParams;

impl IntoParams for StreamParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        picture_params(super::STREAM_PARAMS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(q: &str, default: SnapshotDefault) -> Result<bool, String> {
        let q: HashMap<String, String> = q
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        parse(&q, crate::api::SNAPSHOT_PARAMS).map(|p| p.cached(default))
    }

    #[test]
    fn the_snapshot_default_applies_to_requests_that_do_not_say() {
        use SnapshotDefault::{Cached, Fresh};
        for (q, fresh_default, cached_default) in [
            ("", false, true),
            ("width=320&quality=50", false, true),
            ("cached=true", true, true),
            ("cached=false", false, false),
            ("fresh=true", false, false),
            ("fresh=false", true, true),
            ("max_age_ms=500", false, false),
            ("max_age_ms=500&cached=true", true, true),
            ("keyframe=true", false, false),
        ] {
            assert_eq!(cached(q, Fresh), Ok(fresh_default), "{q:?} on a fresh camera");
            assert_eq!(cached(q, Cached), Ok(cached_default), "{q:?} on a cached camera");
        }
        for q in ["fresh=true&cached=true", "fresh=true&max_age_ms=5", "fresh=true&keyframe=true", "fresh=no&cached=no"]
        {
            assert!(cached(q, Cached).is_err(), "{q:?}");
        }
    }
}
