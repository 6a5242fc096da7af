//! The hub's own consumers of every camera: the RTSP restream (one mount per
//! camera and sub-stream) and MQTT (each camera's state), kept in step with the
//! cameras as they come and go (`remount`), and what `/api/health` says of them.

use std::sync::Arc;

use super::Hub;
use crate::config::{MqttConfig, ServerConfig};

impl Hub {
    /// Starts the RTSP restream if `server.rtsp` asks for it; a port that cannot
    /// be had is logged and shown in `/api/health`, and the rest of the hub runs on.
    pub(super) fn start_restream(self: &Arc<Self>, server: &ServerConfig) {
        let me = Arc::downgrade(self);
        let lookup: crate::rtsp::Lookup = Arc::new(move |path: &str| {
            let hub = me.upgrade()?;
            let path = path.trim_start_matches('/');
            match path.strip_suffix("/sub") {
                Some(name) => hub.sub(name),
                None => hub.get(path),
            }
        });
        let r = match &server.rtsp.listen {
            None => Err("off (server.rtsp: false)".to_string()),
            Some(_) => crate::rtsp::Restream::start(&server.rtsp, &server.auth, lookup, self.clock.clone()),
        };
        if let Err(e) = &r
            && server.rtsp.listen.is_some()
        {
            tracing::error!("RTSP restream not started: {e}");
        }
        let _ = self.restream.set(r);
        self.remount();
    }

    /// Mounts every camera (and sub-stream) on the restream, and only those;
    /// tells MQTT the cameras to publish.
    pub(super) fn remount(&self) {
        if let Some(Ok(r)) = self.restream.get() {
            let members: Vec<_> = self.members.read().values().cloned().collect();
            r.sync(&crate::rtsp::paths(members.iter().map(|m| (&*m.camera, m.sub.is_some()))));
        }
        if let Some(m) = self.mqtt.get() {
            m.sync(&self.list());
        }
    }

    /// Starts publishing to MQTT (`mqtt:`), in the background: a broker that is
    /// away is retried with backoff and shown in `/api/health`. Once, at start.
    pub fn start_mqtt(&self, cfg: Option<MqttConfig>) {
        let Some(cfg) = cfg else { return };
        // JPEGs for `snapshot_interval`: the GOP's keyframe (or a newer picture), the cheapest fresh one.
        let snapshots: crate::mqtt::SnapshotFn = Arc::new(|cam| -> futures::future::BoxFuture<'static, _> {
            Box::pin(async move {
                let req = crate::snapshot::SnapshotRequest { keyframe: true, ..Default::default() };
                crate::snapshot::take(&cam, &req).await.ok().map(|s| s.jpeg)
            })
        });
        let m = crate::mqtt::Mqtt::start(cfg, snapshots, self.clock.clone(), self.stop.child_token());
        if self.mqtt.set(m).is_ok() {
            self.remount();
        }
    }

    /// What `/api/health` says of MQTT (None: not configured).
    pub fn mqtt_info(&self) -> Option<crate::mqtt::MqttInfo> {
        self.mqtt.get().map(|m| m.info())
    }

    /// Whether a reloaded `mqtt:` differs from the one in force (it applies only at start).
    pub fn mqtt_changed(&self, new: Option<&MqttConfig>) -> bool {
        match (self.mqtt.get(), new) {
            (Some(m), Some(new)) => !m.config().same_as(new),
            (None, None) => false,
            _ => true,
        }
    }

    /// What `/api/health` says of the restream.
    pub fn rtsp_info(&self) -> crate::rtsp::RtspInfo {
        match self.restream.get() {
            Some(Ok(r)) => r.info(),
            other => crate::rtsp::RtspInfo {
                listen: self.server.read().rtsp.listen.clone(),
                port: None,
                error: other.and_then(|r| r.as_ref().err().cloned()),
                clients: 0,
                sessions: 0,
                units_dropped: 0,
            },
        }
    }
}
