//! The `mqtt:` section: camhub's availability and every camera's state on an
//! MQTT broker, and (optionally) Home Assistant's MQTT discovery. Plain
//! `mqtt://` only: camhub carries no TLS stack for MQTT (a broker on the LAN, or
//! a TLS tunnel such as stunnel in front of a remote one).

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Seconds, interpolate};
use crate::secret::Secret;

/// `mqtt:` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// The broker: `mqtt://HOST[:PORT]` (default port 1883). Required. Kept as
    /// written (never shown: a URL may carry a password) and read by `resolve`
    /// into `broker`, so that its error names its line without repeating it.
    pub url: Spanned<Secret>,
    /// The broker `url` names (set by `resolve`).
    #[serde(skip)]
    pub broker: MqttUrl,
    /// User name for the broker (`${VAR}` is read from the environment).
    #[serde(default)]
    pub username: Option<String>,
    /// Password for the broker (`${VAR}` is read from the environment); never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// The first level of every topic camhub publishes (default `camhub`).
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    /// MQTT client id (default `camhub-<topic_prefix>`); two hubs on one broker need two.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Publish Home Assistant discovery configs (default false).
    #[serde(default)]
    pub discovery: bool,
    /// Where Home Assistant listens for discovery (default `homeassistant`).
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    /// Publish a JPEG of every camera to `<prefix>/<camera>/snapshot` this often
    /// (default off). Home Assistant's MQTT camera shows these; off, discovery
    /// announces no camera entity (use the snapshot URL in a Generic Camera).
    #[serde(default)]
    pub snapshot_interval: Option<Seconds>,
    /// How often a camera's attributes are published again while they change
    /// (frame age, fps, bitrate; default 10 s, at least 1 s). State changes go out at once.
    #[serde(default = "default_attributes_interval")]
    pub attributes_interval: Seconds,
    /// The hub's address as Home Assistant reaches it (`http://camhub.lan:8080`):
    /// gives each camera's attributes a `snapshot_url` and the device a link. Optional.
    #[serde(default)]
    pub public_url: Option<String>,
}

fn default_prefix() -> String {
    "camhub".into()
}

fn default_discovery_prefix() -> String {
    "homeassistant".into()
}

fn default_attributes_interval() -> Seconds {
    Seconds::from_secs(10)
}

/// A broker address from `mqtt.url`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MqttUrl {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for MqttUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mqtt://{}:{}", self.host, self.port)
    }
}

impl std::str::FromStr for MqttUrl {
    type Err = String;
    /// The errors never repeat the URL: it might carry a password.
    fn from_str(s: &str) -> Result<Self, String> {
        let expect = "expected mqtt://HOST[:PORT]";
        let u = url::Url::parse(s.trim()).map_err(|e| format!("mqtt.url is not a URL ({e}): {expect}"))?;
        match u.scheme() {
            "mqtt" | "tcp" => {}
            "mqtts" | "ssl" | "ws" | "wss" => {
                return Err(format!(
                    "mqtt.url: {}:// is not supported: camhub speaks plain MQTT ({expect}); \
                     reach a TLS-only broker through a local TLS tunnel",
                    u.scheme()
                ));
            }
            other => return Err(format!("mqtt.url: unknown scheme {other:?}: {expect}")),
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err("mqtt.url: credentials go in mqtt.username and mqtt.password, not in the URL".into());
        }
        if !matches!(u.path(), "" | "/") || u.query().is_some() || u.fragment().is_some() {
            return Err(format!("mqtt.url: no path or query is taken: {expect}"));
        }
        let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("mqtt.url has no host: {expect}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        Ok(MqttUrl { host, port: u.port().unwrap_or(1883) })
    }
}

/// A topic level camhub builds on: not empty, no wildcards, no leading or trailing `/`.
fn check_prefix(what: &str, p: &str) -> Result<(), String> {
    if p.is_empty() || p.contains(['+', '#', '\0']) || p.starts_with('/') || p.ends_with('/') {
        return Err(format!("mqtt.{what} {p:?}: use a topic like \"camhub\" (no +, #, leading or trailing /)"));
    }
    Ok(())
}

impl MqttConfig {
    /// Reads `url` into `broker`; the error names neither the URL nor its secrets.
    pub fn resolve_url(&mut self) -> Result<(), String> {
        self.broker = self.url.value.expose().parse()?;
        Ok(())
    }

    /// Resolves `${VAR}` in the credentials and checks what serde cannot; the
    /// errors name the key, never a secret's value.
    pub fn resolve(&mut self) -> Result<(), String> {
        if let Some(u) = &self.username {
            self.username = Some(interpolate(u).map_err(|e| format!("mqtt.username: {e}"))?);
        }
        if let Some(p) = &self.password {
            self.password = Some(Secret::new(interpolate(p.expose()).map_err(|e| format!("mqtt.password: {e}"))?));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err("mqtt.password is set without mqtt.username".into());
        }
        check_prefix("topic_prefix", &self.topic_prefix)?;
        check_prefix("discovery_prefix", &self.discovery_prefix)?;
        if self.attributes_interval.0 < std::time::Duration::from_secs(1) {
            return Err("mqtt.attributes_interval must be at least 1 s".into());
        }
        if let Some(s) = self.snapshot_interval
            && s.0 < std::time::Duration::from_secs(1)
        {
            return Err("mqtt.snapshot_interval must be at least 1 s (leave it out for none)".into());
        }
        if let Some(id) = &self.client_id
            && (id.is_empty() || id.len() > 128)
        {
            return Err("mqtt.client_id must be 1-128 characters".into());
        }
        if let Some(p) = &self.public_url {
            let u = url::Url::parse(p).map_err(|e| format!("mqtt.public_url {p:?}: {e}"))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(format!("mqtt.public_url {p:?}: expected http://HOST:PORT"));
            }
            self.public_url = Some(p.trim_end_matches('/').to_owned());
        }
        Ok(())
    }

    /// Whether two configs ask for the same (the URL's place in the file aside).
    pub fn same_as(&self, o: &MqttConfig) -> bool {
        self.url.value == o.url.value
            && (&self.username, &self.password, &self.topic_prefix, &self.client_id)
                == (&o.username, &o.password, &o.topic_prefix, &o.client_id)
            && (self.discovery, &self.discovery_prefix, self.snapshot_interval, self.attributes_interval)
                == (o.discovery, &o.discovery_prefix, o.snapshot_interval, o.attributes_interval)
            && self.public_url == o.public_url
    }

    /// The client id in force.
    pub fn client_id(&self) -> String {
        self.client_id.clone().unwrap_or_else(|| format!("camhub-{}", self.topic_prefix.replace('/', "-")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u: MqttUrl = "mqtt://broker.lan".parse().unwrap();
        assert_eq!(u, MqttUrl { host: "broker.lan".into(), port: 1883 });
        assert_eq!("tcp://10.0.0.2:1884".parse::<MqttUrl>().unwrap().port, 1884);
        assert_eq!("mqtt://[::1]:1885/".parse::<MqttUrl>().unwrap().host, "::1");
        let e = "mqtts://broker:8883".parse::<MqttUrl>().unwrap_err();
        assert!(e.contains("mqtts:// is not supported"), "{e}");
        let e = "mqtt://user:hunter2@broker".parse::<MqttUrl>().unwrap_err();
        assert!(e.contains("mqtt.username") && !e.contains("hunter2"), "{e}");
        assert!("http://broker".parse::<MqttUrl>().unwrap_err().contains("unknown scheme"));
        assert!("broker:1883".parse::<MqttUrl>().is_err());
        assert!("mqtt://broker/topic".parse::<MqttUrl>().unwrap_err().contains("no path"));
        assert!("mqtt://broker:99999".parse::<MqttUrl>().is_err());
    }

    fn cfg() -> MqttConfig {
        let mut c: MqttConfig = serde_saphyr::from_str("url: mqtt://b:1884\n").unwrap();
        c.resolve_url().unwrap();
        assert_eq!(c.broker, MqttUrl { host: "b".into(), port: 1884 });
        assert_eq!(format!("{:?}", c.url.value), "\"***\"");
        c
    }

    #[test]
    fn resolve_checks_prefixes_and_credentials() {
        let mut c = cfg();
        c.resolve().unwrap();
        assert_eq!(c.client_id(), "camhub-camhub");
        c.topic_prefix = "home/+/x".into();
        assert!(c.resolve().unwrap_err().contains("topic_prefix"));
        let mut c = cfg();
        c.password = Some(Secret::new("pw"));
        assert!(c.resolve().unwrap_err().contains("without mqtt.username"));
        let mut c = cfg();
        c.username = Some("u".into());
        c.password = Some(Secret::new("${CAMHUB_TEST_SURELY_UNSET_MQTT}"));
        let e = c.resolve().unwrap_err();
        assert!(e.starts_with("mqtt.password:") && e.contains("CAMHUB_TEST_SURELY_UNSET_MQTT"), "{e}");
        let mut c = cfg();
        c.public_url = Some("http://hub.lan:8080/".into());
        c.resolve().unwrap();
        assert_eq!(c.public_url.as_deref(), Some("http://hub.lan:8080"));
    }
}
