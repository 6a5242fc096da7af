//! `${VAR}` in config values, taken from the environment so that secrets need
//! not sit in the file.

/// Why a value's `${VAR}` could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("unclosed ${{ in value")]
    Unclosed,
    #[error("environment variable {0} is not set (used as ${{{0}}})")]
    Unset(String),
}

/// Replaces `${VAR}` with the environment variable, `${VAR:-default}` with a
/// fallback; `$$` is a literal `$`.
pub fn interpolate(s: &str) -> Result<String, EnvError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(EnvError::Unclosed)?;
            let expr = &body[..end];
            let (var, default) = match expr.split_once(":-") {
                Some((v, d)) => (v, Some(d)),
                None => (expr, None),
            };
            match (std::env::var(var), default) {
                (Ok(v), _) => out.push_str(&v),
                (Err(_), Some(d)) => out.push_str(d),
                (Err(_), None) => {
                    return Err(EnvError::Unset(var.to_owned()));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}
