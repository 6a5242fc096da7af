//! A camera's URLs: resolved into a source with the credentials taken out, and
//! shown with them hidden.

use std::path::Path;

use url::Url;

use super::camera::{CameraConfigError, SourceSpec};
use crate::secret::{redact_query, redact_url};

/// Resolves one stream's URL: its source, with the user info moved into
/// `username` and `password` where those are not set already.
pub(super) fn resolve_url(
    raw: &str,
    username: &mut Option<String>,
    password: &mut Option<String>,
    base: &Path,
) -> Result<SourceSpec, CameraConfigError> {
    if !raw.contains("://") {
        return Ok(SourceSpec::File(base.join(raw)));
    }
    let mut url = Url::parse(raw).map_err(|e| format!("bad url {:?}: {e}", redact_str(raw)))?;
    match url.scheme() {
        "rtsp" | "rtsps" | "http" | "https" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(format!("url {} has no host", redact_url(&url)).into());
            }
            if !url.username().is_empty() && username.is_none() {
                *username = Some(percent_decode(url.username()));
            }
            if let Some(p) = url.password()
                && password.is_none()
            {
                *password = Some(percent_decode(p));
            }
            let _ = url.set_username("");
            let _ = url.set_password(None);
            Ok(if url.scheme().starts_with("rtsp") { SourceSpec::Rtsp(url) } else { SourceSpec::Http(url) })
        }
        "file" => Ok(SourceSpec::File(url.to_file_path().map_err(|()| format!("bad file url {url}"))?)),
        other => {
            Err(format!("unsupported url scheme {other:?} (supported: rtsp://, rtsps://, http://, https://, file://, or a file path)")
                .into())
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A URL-ish string with anything between `://` and `@` hidden, and credential query values.
pub(super) fn redact_str(s: &str) -> String {
    let (s, query) = s.split_once('?').map_or((s, None), |(s, q)| (s, Some(q)));
    let shown = match (s.find("://"), s.rfind('@')) {
        (Some(a), Some(b)) if b > a => format!("{}://***@{}", &s[..a], &s[b + 1..]),
        _ => s.to_owned(),
    };
    match query {
        Some(q) => format!("{shown}?{}", redact_query(q)),
        None => shown,
    }
}
