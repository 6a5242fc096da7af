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

/// Query parameters that carry credentials in camera URLs (`snapshot.cgi?user=admin&pwd=...`),
/// compared without regard to case.
const CREDENTIAL_PARAMS: &[&str] =
    &["pwd", "pass", "passwd", "password", "token", "access_token", "auth", "key", "api_key", "apikey", "secret"];

/// Whether a query parameter of this (decoded) name carries a credential.
pub fn is_credential_param(name: &str) -> bool {
    CREDENTIAL_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// The query's `name=value` pairs as written, with the decoded name.
fn query_pairs(query: &str) -> impl Iterator<Item = (String, &str, Option<&str>)> {
    query.split('&').map(|kv| {
        let (k, v) = kv.split_once('=').map_or((kv, None), |(k, v)| (k, Some(v)));
        let name = url::form_urlencoded::parse(k.as_bytes()).next().map_or_else(String::new, |(n, _)| n.into_owned());
        (name, k, v)
    })
}

/// A query string (without its `?`) with the value of every credential parameter shown as `***`.
pub fn redact_query(query: &str) -> String {
    query_pairs(query)
        .map(|(name, k, v)| match v {
            Some(_) if is_credential_param(&name) => format!("{k}=***"),
            Some(v) => format!("{k}={v}"),
            None => k.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The values of a URL's credential query parameters, as written and decoded: secrets to scrub.
pub fn query_secrets(url: &Url) -> Vec<String> {
    let mut out = Vec::new();
    for (name, _, v) in query_pairs(url.query().unwrap_or_default()) {
        if let Some(v) = v.filter(|v| !v.is_empty() && is_credential_param(&name)) {
            let decoded = url::form_urlencoded::parse(format!("v={v}").as_bytes())
                .next()
                .map_or_else(String::new, |(_, d)| d.into_owned());
            out.push(v.to_owned());
            if decoded != v {
                out.push(decoded);
            }
        }
    }
    out
}

/// A URL as it may be shown: user info removed and credential query values
/// (`?pwd=`, `?token=`, ...) hidden; the scheme/host/path kept.
pub fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_username("");
        let _ = u.set_password(None);
    }
    if let Some(q) = u.query().map(redact_query) {
        u.set_query(Some(&q));
    }
    u.to_string()
}

/// Replaces every occurrence of each secret in `text` with `***`.
pub fn scrub<S: AsRef<str>>(text: &str, secrets: &[S]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        let s = s.as_ref();
        if s.len() >= 2 {
            out = out.replace(s, "***");
            // Percent-encoded forms appear inside URLs.
            let enc = url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            if enc != s {
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
    fn redacts_credentials_in_the_query_whatever_their_case() {
        let u =
            Url::parse("http://10.0.0.5/snap.cgi?user=admin&PWD=hunter2&Password=p%40ss&x=1&Token=t0k&auth&key=k3y")
                .unwrap();
        let shown = redact_url(&u);
        assert_eq!(shown, "http://10.0.0.5/snap.cgi?user=admin&PWD=***&Password=***&x=1&Token=***&auth&key=***");
        let s = query_secrets(&u);
        for v in ["hunter2", "p%40ss", "p@ss", "t0k", "k3y"] {
            assert!(s.iter().any(|x| x == v), "{v} in {s:?}");
        }
        assert!(!s.iter().any(|x| x == "admin" || x == "1"), "{s:?}");
        let t = scrub("GET http://10.0.0.5/snap.cgi?PWD=hunter2&Password=p@ss failed", &s);
        assert!(!t.contains("hunter2") && !t.contains("p@ss"), "{t}");
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
