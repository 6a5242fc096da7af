//! Query parameters of the picture routes, parsed strictly: an unknown
//! parameter or a bad value is a 400 that says what is allowed.

use std::collections::HashMap;
use std::time::Duration;

/// Largest width or height a client may ask for.
const MAX_SIDE: u64 = 8192;

#[derive(Debug, Default)]
pub struct PictureQuery {
    pub quality: Option<u8>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub max_age: Option<Duration>,
    pub cached: bool,
    pub fps: Option<f64>,
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
        match k.as_str() {
            "quality" => out.quality = Some(num(1, 100)? as u8),
            "width" => out.width = Some(num(1, MAX_SIDE)? as u32),
            "height" => out.height = Some(num(1, MAX_SIDE)? as u32),
            "max_age_ms" => out.max_age = Some(Duration::from_millis(num(0, 86_400_000)?)),
            "cached" => {
                out.cached = match v.as_str() {
                    "" | "1" | "true" | "yes" => true,
                    "0" | "false" | "no" => false,
                    _ => return Err(format!("cached must be true or false, not {v:?}")),
                }
            }
            "fps" => {
                let f: f64 = v
                    .parse()
                    .ok()
                    .filter(|f: &f64| (0.1..=60.0).contains(f))
                    .ok_or_else(|| format!("fps must be a number from 0.1 to 60, not {v:?}"))?;
                out.fps = Some(f);
            }
            _ => unreachable!("allowed lists only known parameters"),
        }
    }
    Ok(out)
}
