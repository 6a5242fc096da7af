//! Camera credentials never leave the process: URLs are shown without their
//! user info, and any text that could carry a password is scrubbed before it
//! reaches a log, an API answer or an error message.

use url::Url;

/// A password or other secret: never printed, even by `{:?}`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Compares in time that depends only on the lengths, not on where the bytes differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// A URL as it may be shown: user info removed, the scheme/host/path kept.
pub fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_username("");
        let _ = u.set_password(None);
    }
    u.to_string()
}

/// Replaces every occurrence of each secret in `text` with `***`.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if s.len() >= 2 {
            out = out.replace(s, "***");
            // Percent-encoded forms appear inside URLs.
            let enc = url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            if enc != *s {
                out = out.replace(&enc, "***");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_user_info_from_urls() {
        let u = Url::parse("rtsp://admin:hunter2@10.0.0.5:554/stream1").unwrap();
        let shown = redact_url(&u);
        assert_eq!(shown, "rtsp://10.0.0.5:554/stream1");
    }

    #[test]
    fn scrubs_plain_and_encoded_secrets() {
        let t = scrub("failed for p@ss w0rd and p%40ss+w0rd", &["p@ss w0rd"]);
        assert!(!t.contains("w0rd"), "{t}");
        assert_eq!(format!("{:?}", Secret::new("x")), "\"***\"");
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
