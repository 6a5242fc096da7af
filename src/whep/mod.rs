//! Live view in browsers: WHEP (RFC 9725) on str0m. A viewer's offer gets an
//! answer and a session that forwards the camera's own H.264, as it arrived, no
//! transcode. A new viewer starts from the GOP cache (its keyframe and every frame
//! since, stamped a millisecond apart so the browser shows the newest at once),
//! then live.
//!
//! One task per viewer owns its `Rtc` (sans-IO) and one UDP socket (any free
//! port, or one from `server.webrtc.ports`); it holds a connected lease on the
//! camera (no decode) and ends when the viewer says DELETE, when ICE does not
//! connect within `ice_timeout`, when ICE disconnects, or when the camera goes.

mod viewer;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};

use parking_lot::Mutex;
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::{Candidate, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{Instrument, info};

use self::viewer::Viewer;
use crate::camera::Camera;
use crate::camera::demand::Tier;
use crate::clock::Clock;
use crate::config::WebRtcConfig;
use crate::media::Codec;

/// Why a WHEP request was refused, as far as the answer is concerned (the API
/// maps each to its HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Live view is switched off in the configuration.
    Disabled,
    /// The camera's codec cannot go to a browser as it is.
    Unsupported,
    /// The camera has its most viewers already.
    Busy,
    /// The offer or candidate cannot be used.
    BadRequest,
    /// Nothing to serve it with now (no UDP port, the camera is stopping).
    Unavailable,
    /// No such session.
    NoSession,
}

/// A refused WHEP request: its kind and what to tell the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct WhepError {
    pub refusal: Refusal,
    pub message: String,
}

fn err(refusal: Refusal, message: impl Into<String>) -> WhepError {
    WhepError { refusal, message: message.into() }
}

/// What the API shows of a viewer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ViewerInfo {
    pub id: String,
    pub connected: bool,
    pub units_sent: u64,
    pub age_ms: u64,
}

struct Session {
    camera: String,
    created: Instant,
    connected: Arc<std::sync::atomic::AtomicBool>,
    units_sent: Arc<AtomicU64>,
    /// Closing it ends the session; it also carries trickled remote candidates.
    control: mpsc::Sender<Candidate>,
}

/// Every WHEP session of the hub.
#[derive(Default)]
pub struct Whep {
    config: Mutex<WebRtcConfig>,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    /// Places taken by offers still being answered, per camera (lock after `sessions`).
    pending: Arc<Mutex<HashMap<String, usize>>>,
    next: AtomicU64,
    clock: Clock,
}

/// Where a viewer's UDP socket binds: the address its API request reached this hub
/// at (the listen address, or the interface it came in on when listening on all),
/// never a name from the request; the loopback address when unknown.
pub fn bind_ip(local: Option<IpAddr>) -> Option<IpAddr> {
    local.map(|ip| ip.to_canonical()).filter(|ip| !ip.is_unspecified())
}

impl Whep {
    pub fn new(clock: Clock) -> Self {
        Whep { clock, ..Whep::default() }
    }

    pub fn configure(&self, c: WebRtcConfig) {
        *self.config.lock() = c;
    }

    fn config(&self) -> WebRtcConfig {
        self.config.lock().clone()
    }

    pub fn viewers(&self, camera: &str) -> Vec<ViewerInfo> {
        let now = self.clock.now();
        let s = self.sessions.lock();
        s.iter()
            .filter(|(_, v)| v.camera == camera)
            .map(|(id, v)| ViewerInfo {
                id: id.clone(),
                connected: v.connected.load(Ordering::Relaxed),
                units_sent: v.units_sent.load(Ordering::Relaxed),
                age_ms: now.duration_since(v.created).as_millis() as u64,
            })
            .collect()
    }

    /// Takes a place for a viewer of `camera` if fewer than `max` have one.
    fn reserve(&self, camera: &str, max: u32) -> Option<Slot> {
        let sessions = self.sessions.lock();
        let mut pending = self.pending.lock();
        let taken = sessions.values().filter(|s| s.camera == camera).count() + pending.get(camera).map_or(0, |n| *n);
        if taken >= max as usize {
            return None;
        }
        *pending.entry(camera.to_owned()).or_default() += 1;
        Some(Slot { pending: self.pending.clone(), camera: camera.to_owned() })
    }

    /// Answers a viewer's offer and starts its session. `ip` is the address the
    /// viewer's request reached the hub at (`bind_ip`), offered with `webrtc.ips`.
    pub async fn create(
        &self,
        cam: &Arc<Camera>,
        offer: &str,
        ip: Option<IpAddr>,
    ) -> Result<(String, String), WhepError> {
        let cfg = self.config();
        if !cfg.enabled {
            return Err(err(
                Refusal::Disabled,
                "WebRTC is switched off (server.webrtc.enabled: false); use the MJPEG stream",
            ));
        }
        match cam.status().codec {
            Some(Codec::H264) | None => {}
            Some(other) => {
                return Err(err(
                    Refusal::Unsupported,
                    format!(
                        "camera {:?} sends {}; browsers' WebRTC takes H.264 only, so watch its MJPEG stream instead",
                        cam.name(),
                        pretty(other)
                    ),
                ));
            }
        }
        // The place is taken now, before the awaits below, so that concurrent offers
        // cannot all pass the check; an offer that fails gives it back on drop.
        let Some(slot) = self.reserve(cam.name(), cfg.max_viewers) else {
            return Err(err(
                Refusal::Busy,
                format!(
                    "camera {:?} already has {} WebRTC viewers (server.webrtc.max_viewers)",
                    cam.name(),
                    cfg.max_viewers
                ),
            ));
        };
        let offer = SdpOffer::from_sdp_string(offer).map_err(|_| {
            // The parser's own message shows the address where it stopped: not for callers.
            err(Refusal::BadRequest, "the body is not an SDP offer (RFC 8866): it could not be parsed".to_owned())
        })?;
        init_crypto();
        let mut ips: Vec<IpAddr> = cfg.ips.clone();
        if let Some(ip) = ip.filter(|ip| !ips.contains(ip)) {
            ips.insert(0, ip);
        }
        if ips.is_empty() {
            ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        let sockets =
            bind(&ips, &cfg).await.map_err(|e| err(Refusal::Unavailable, format!("no UDP port for WebRTC: {e}")))?;
        let mut rtc = RtcConfig::new().clear_codecs().enable_h264(true).build(self.clock.now());
        for s in &sockets {
            if let Ok(c) = s.local_addr().map_err(|_| ()).and_then(|a| Candidate::host(a, "udp").map_err(|_| ())) {
                rtc.add_local_candidate(c);
            }
        }
        let port = sockets[0].local_addr().map(|a| a.port()).unwrap_or(0);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| err(Refusal::BadRequest, format!("cannot answer this offer: {e}")))?;
        // Hold the connection while the viewer is here, and take the GOP cache and the live units.
        let lease = cam.lease(Tier::Connected);
        let feed = cam.unit_feed().await.ok_or_else(|| err(Refusal::Unavailable, "the camera is stopping"))?;
        let id = format!("{:x}{:08x}", self.next.fetch_add(1, Ordering::Relaxed), fastrand::u32(..));
        let (control, control_rx) = mpsc::channel(16);
        let connected = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let units_sent = Arc::new(AtomicU64::new(0));
        let mut sessions = self.sessions.lock();
        sessions.insert(
            id.clone(),
            Session {
                camera: cam.name().to_owned(),
                created: self.clock.now(),
                connected: connected.clone(),
                units_sent: units_sent.clone(),
                control,
            },
        );
        // The session holds the place from here: the reservation ends under the same lock.
        drop(slot);
        drop(sessions);
        let viewer = Viewer {
            rtc,
            sockets,
            feed,
            control: control_rx,
            ice_timeout: cfg.ice_timeout.0,
            burst_mbps: cfg.burst_mbps,
            connected,
            units_sent,
            _lease: lease,
            clock: self.clock.clone(),
        };
        let sessions = self.sessions.clone();
        let sid = id.clone();
        let span = tracing::info_span!("whep", camera = %cam.name(), viewer = %id);
        tokio::spawn(
            async move {
                info!("viewer joined (udp port {port})");
                let why = viewer.run().await;
                sessions.lock().remove(&sid);
                info!("viewer left: {why}");
            }
            .instrument(span),
        );
        Ok((id, answer.to_sdp_string()))
    }

    /// Ends a session (`DELETE` on its URL).
    pub fn delete(&self, camera: &str, id: &str) -> bool {
        let mut s = self.sessions.lock();
        match s.get(id) {
            Some(v) if v.camera == camera => {
                // Dropping the sender ends the viewer's task.
                s.remove(id);
                true
            }
            _ => false,
        }
    }

    /// Trickled ICE (`PATCH` with an `application/trickle-ice-sdpfrag` body).
    pub fn trickle(&self, camera: &str, id: &str, sdpfrag: &str) -> Result<usize, WhepError> {
        let tx = {
            let s = self.sessions.lock();
            match s.get(id) {
                Some(v) if v.camera == camera => v.control.clone(),
                _ => return Err(err(Refusal::NoSession, "no such WebRTC session")),
            }
        };
        let mut n = 0;
        for line in sdpfrag.lines().map(str::trim) {
            let Some(c) = line.strip_prefix("a=") else { continue };
            if !c.starts_with("candidate:") {
                continue;
            }
            let cand = Candidate::from_sdp_string(c)
                .map_err(|e| err(Refusal::BadRequest, format!("bad candidate {c:?}: {e}")))?;
            if tx.try_send(cand).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// A viewer's place under `max_viewers` while its offer is answered; dropping it
/// (the offer failed, or its session now counts) gives the place back.
struct Slot {
    pending: Arc<Mutex<HashMap<String, usize>>>,
    camera: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut p = self.pending.lock();
        if let Some(n) = p.get_mut(&self.camera) {
            *n -= 1;
            if *n == 0 {
                p.remove(&self.camera);
            }
        }
    }
}

fn pretty(c: Codec) -> &'static str {
    match c {
        Codec::H264 => "H.264",
        Codec::H265 => "H.265",
        Codec::Mjpeg => "MJPEG",
    }
}

fn init_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
}

/// One socket per offered address, all on the same port (from `ports`, or any
/// free one): a packet's socket tells which local address it came to, as ICE needs.
async fn bind(ips: &[IpAddr], cfg: &WebRtcConfig) -> std::io::Result<Vec<UdpSocket>> {
    async fn all(ips: &[IpAddr], port: u16) -> std::io::Result<Vec<UdpSocket>> {
        let first = UdpSocket::bind((ips[0], port)).await?;
        let port = first.local_addr()?.port();
        let mut v = vec![first];
        for ip in &ips[1..] {
            v.push(UdpSocket::bind((*ip, port)).await?);
        }
        Ok(v)
    }
    let tries: Vec<u16> = match cfg.ports {
        Some(r) => r.ports().collect(),
        None => vec![0; 8],
    };
    let mut last = std::io::Error::new(std::io::ErrorKind::AddrInUse, "no port tried");
    for port in tries {
        match all(ips, port).await {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Waits for a datagram on any of the sockets: (which socket, length, sender).
async fn recv_any(sockets: &[UdpSocket], buf: &mut [u8]) -> std::io::Result<(usize, usize, SocketAddr)> {
    std::future::poll_fn(|cx| {
        for (i, s) in sockets.iter().enumerate() {
            let mut rb = tokio::io::ReadBuf::new(buf);
            if let std::task::Poll::Ready(r) = s.poll_recv_from(cx, &mut rb) {
                return std::task::Poll::Ready(r.map(|from| (i, rb.filled().len(), from)));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_where_the_request_came_in_never_on_an_unspecified_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(bind_ip(Some(ip("192.168.1.5"))), Some(ip("192.168.1.5")));
        assert_eq!(bind_ip(Some(ip("::ffff:10.0.0.2"))), Some(ip("10.0.0.2")));
        assert_eq!(bind_ip(Some(ip("0.0.0.0"))), None);
        assert_eq!(bind_ip(None), None);
    }
}
