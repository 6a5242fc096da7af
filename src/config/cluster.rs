//! The `cluster:` section: several camhub nodes share one camera fleet through
//! Redis (docs/cluster.md). Each camera is owned by one node at a time, by a
//! lease in Redis that its owner renews; any node answers for any camera.

use serde::Deserialize;

use super::{Seconds, interpolate};
use crate::secret::Secret;

/// `cluster:` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The coordination store: `redis://[:PASSWORD@]HOST[:PORT][/DB]` (`${VAR}` read
    /// from the environment; never shown).
    pub redis: Secret,
    /// This node's name, unique in the cluster (default: the host name; `${VAR}`
    /// read from the environment).
    #[serde(default)]
    pub node: Option<String>,
    /// How the other nodes reach this one over HTTP: `http://HOST:PORT` (default:
    /// the address the API listens on; `${VAR}` read from the environment).
    #[serde(default)]
    pub advertise: Option<String>,
    /// How long a lease lives unless renewed (default 10 s, at least 2 s): a
    /// killed node's cameras move within about this long.
    #[serde(default = "default_ttl")]
    pub lease_ttl: Seconds,
    /// Refuse to start without Redis (default true); `false` runs single-node
    /// with a warning.
    #[serde(default = "yes")]
    pub required: bool,
    /// The first part of every Redis key (default `camhub`): two clusters on one
    /// Redis need two.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
}

fn default_ttl() -> Seconds {
    Seconds::from_secs(10)
}
fn yes() -> bool {
    true
}
fn default_prefix() -> String {
    "camhub".into()
}

impl ClusterConfig {
    /// Resolves `${VAR}` and the defaults that need the machine (`node`), and
    /// checks what serde cannot. Errors name the key, never the Redis password.
    pub fn resolve(&mut self) -> Result<(), String> {
        self.redis = Secret::new(interpolate(self.redis.expose()).map_err(|e| format!("cluster.redis: {e}"))?);
        let url = url::Url::parse(self.redis.expose()).map_err(|e| format!("cluster.redis is not a URL: {e}"))?;
        match url.scheme() {
            "redis" => {}
            "rediss" => {
                return Err("cluster.redis: rediss:// (TLS) is not supported by this build: use redis:// on a \
                            trusted network, or a TLS tunnel"
                    .into());
            }
            other => return Err(format!("cluster.redis: expected redis://HOST:PORT, not {other}://")),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("cluster.redis has no host".into());
        }
        let node = match self.node.take() {
            Some(n) => interpolate(&n).map_err(|e| format!("cluster.node: {e}"))?,
            None => {
                std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
            }
        };
        let ok = !node.is_empty()
            && node.len() <= 64
            && node.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok {
            return Err(format!("cluster.node {node:?}: use 1-64 letters, digits, '.', '_' or '-'"));
        }
        self.node = Some(node);
        if let Some(a) = &self.advertise {
            let a = &interpolate(a).map_err(|e| format!("cluster.advertise: {e}"))?;
            let u = url::Url::parse(a).map_err(|e| format!("cluster.advertise {a:?}: {e}"))?;
            if u.scheme() != "http" || u.host_str().is_none() {
                return Err(format!("cluster.advertise {a:?}: expected http://HOST:PORT"));
            }
            self.advertise = Some(a.trim_end_matches('/').to_owned());
        }
        if self.lease_ttl.0 < std::time::Duration::from_secs(2) {
            return Err("cluster.lease_ttl must be at least 2 s".into());
        }
        let prefix_ok = !self.key_prefix.is_empty()
            && self.key_prefix.len() <= 64
            && self.key_prefix.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'{' | b'}'));
        if !prefix_ok {
            return Err(format!("cluster.key_prefix {:?}: use 1-64 visible characters", self.key_prefix));
        }
        Ok(())
    }

    /// The node name (after `resolve`).
    pub fn node(&self) -> &str {
        self.node.as_deref().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(redis: &str) -> ClusterConfig {
        serde_saphyr::from_str(&format!("redis: \"{redis}\"\nnode: a\n")).unwrap()
    }

    #[test]
    fn defaults_and_checks() {
        let mut c = cfg("redis://127.0.0.1:6379/0");
        c.resolve().unwrap();
        assert_eq!((c.node(), c.lease_ttl.0.as_secs(), c.required), ("a", 10, true));
        for (url, want) in [
            ("rediss://h:6380", "TLS"),
            ("http://h", "expected redis://"),
            ("redis://", "no host"),
            ("nonsense", "not a URL"),
        ] {
            let e = cfg(url).resolve().unwrap_err();
            assert!(e.contains(want), "{url}: {e}");
        }
        let mut c = cfg("redis://:pw@h");
        c.node = Some("bad name".into());
        let e = c.resolve().unwrap_err();
        assert!(e.contains("cluster.node") && !e.contains("pw"), "{e}");
        let mut c = cfg("redis://h");
        c.node = None;
        c.resolve().unwrap();
        assert!(!c.node().is_empty(), "the host name");
        // From the environment (one file for every node).
        let mut c = cfg("redis://h");
        c.node = Some("cam-${CAMHUB_TEST_UNSET_NODE:-n1}".into());
        c.advertise = Some("http://${CAMHUB_TEST_UNSET_IP:-10.0.0.9}:8080/".into());
        c.resolve().unwrap();
        assert_eq!(c.node(), "cam-n1");
        assert_eq!(c.advertise.as_deref(), Some("http://10.0.0.9:8080"));
        let mut c = cfg("redis://h");
        c.advertise = Some("http://${CAMHUB_TEST_UNSET_IP}:8080".into());
        assert!(c.resolve().unwrap_err().contains("cluster.advertise"));
    }
}
