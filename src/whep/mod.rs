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

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::format::Codec as RtcCodec;
use str0m::media::{MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};
use tracing::{Instrument, debug, info};

use crate::camera::demand::Tier;
use crate::camera::{Camera, Lease, UnitFeed};
use crate::clock::Clock;
use crate::config::WebRtcConfig;
use crate::media::{Codec, EncodedUnit};

/// Why a WHEP request was refused; `status` is the HTTP status to answer.
#[derive(Debug)]
pub struct WhepError {
    pub status: u16,
    pub message: String,
}

fn err(status: u16, message: impl Into<String>) -> WhepError {
    WhepError { status, message: message.into() }
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
    next: AtomicU64,
    clock: Clock,
}

/// What the browser reached the API at: the address it can reach us at over UDP too.
pub fn host_ip(host_header: Option<&str>, local: Option<IpAddr>) -> Option<IpAddr> {
    let host = host_header?.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host })
    };
    match name.parse::<IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => Some(ip),
        _ if name.eq_ignore_ascii_case("localhost") => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        _ => local.filter(|ip| !ip.is_unspecified()),
    }
}

impl Whep {
    pub fn new(clock: Clock) -> Self {
        Whep { clock, ..Whep::default() }
    }

    pub fn configure(&self, c: WebRtcConfig) {
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = c;
    }

    fn config(&self) -> WebRtcConfig {
        self.config.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn viewers(&self, camera: &str) -> Vec<ViewerInfo> {
        let now = self.clock.now();
        let s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
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

    /// Answers a viewer's offer and starts its session. `ip` is the address the
    /// viewer reached the API at (from its Host header).
    pub async fn create(
        &self,
        cam: &Arc<Camera>,
        offer: &str,
        ip: Option<IpAddr>,
    ) -> Result<(String, String), WhepError> {
        let cfg = self.config();
        if !cfg.enabled {
            return Err(err(403, "WebRTC is switched off (server.webrtc.enabled: false); use the MJPEG stream"));
        }
        match cam.status().codec {
            Some(Codec::H264) | None => {}
            Some(other) => {
                return Err(err(
                    422,
                    format!(
                        "camera {:?} sends {}; browsers' WebRTC takes H.264 only, so watch its MJPEG stream instead",
                        cam.name(),
                        pretty(other)
                    ),
                ));
            }
        }
        if self.viewers(cam.name()).len() >= cfg.max_viewers as usize {
            return Err(err(
                503,
                format!(
                    "camera {:?} already has {} WebRTC viewers (server.webrtc.max_viewers)",
                    cam.name(),
                    cfg.max_viewers
                ),
            ));
        }
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| err(400, format!("not an SDP offer: {e}")))?;
        init_crypto();
        let mut ips: Vec<IpAddr> = cfg.ips.clone();
        if let Some(ip) = ip.filter(|ip| !ips.contains(ip)) {
            ips.insert(0, ip);
        }
        if ips.is_empty() {
            ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        let sockets = bind(&ips, &cfg).await.map_err(|e| err(503, format!("no UDP port for WebRTC: {e}")))?;
        let mut rtc = RtcConfig::new().clear_codecs().enable_h264(true).build(self.clock.now());
        for s in &sockets {
            if let Ok(c) = s.local_addr().map_err(|_| ()).and_then(|a| Candidate::host(a, "udp").map_err(|_| ())) {
                rtc.add_local_candidate(c);
            }
        }
        let port = sockets[0].local_addr().map(|a| a.port()).unwrap_or(0);
        let answer =
            rtc.sdp_api().accept_offer(offer).map_err(|e| err(400, format!("cannot answer this offer: {e}")))?;
        // Hold the connection while the viewer is here, and take the GOP cache and the live units.
        let lease = cam.lease(Tier::Connected);
        let feed = cam.unit_feed().await.ok_or_else(|| err(503, "the camera is stopping"))?;
        let id = format!("{:x}{:08x}", self.next.fetch_add(1, Ordering::Relaxed), fastrand::u32(..));
        let (control, control_rx) = mpsc::channel(16);
        let connected = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let units_sent = Arc::new(AtomicU64::new(0));
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(
            id.clone(),
            Session {
                camera: cam.name().to_owned(),
                created: self.clock.now(),
                connected: connected.clone(),
                units_sent: units_sent.clone(),
                control,
            },
        );
        let viewer = Viewer {
            rtc,
            sockets,
            feed,
            control: control_rx,
            ice_timeout: cfg.ice_timeout.0,
            pace: Duration::from_secs_f64(8.0 / (cfg.burst_mbps.max(1.0) * 1e6)),
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
                sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&sid);
                info!("viewer left: {why}");
            }
            .instrument(span),
        );
        Ok((id, answer.to_sdp_string()))
    }

    /// Ends a session (`DELETE` on its URL).
    pub fn delete(&self, camera: &str, id: &str) -> bool {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
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
            let s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            match s.get(id) {
                Some(v) if v.camera == camera => v.control.clone(),
                _ => return Err(err(404, "no such WebRTC session")),
            }
        };
        let mut n = 0;
        for line in sdpfrag.lines().map(str::trim) {
            let Some(c) = line.strip_prefix("a=") else { continue };
            if !c.starts_with("candidate:") {
                continue;
            }
            let cand = Candidate::from_sdp_string(c).map_err(|e| err(400, format!("bad candidate {c:?}: {e}")))?;
            if tx.try_send(cand).is_ok() {
                n += 1;
            }
        }
        Ok(n)
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

/// One viewer's session.
struct Viewer {
    clock: Clock,
    rtc: Rtc,
    sockets: Vec<UdpSocket>,
    feed: UnitFeed,
    control: mpsc::Receiver<Candidate>,
    ice_timeout: Duration,
    /// Time per byte sent (the burst's pace).
    pace: Duration,
    connected: Arc<std::sync::atomic::AtomicBool>,
    units_sent: Arc<AtomicU64>,
    _lease: Lease,
}

/// RTP timestamps (90 kHz) for forwarded units: the GOP burst at the start is
/// squeezed to 1 ms apart, ending at the newest cached unit (the anchor), so the
/// browser decodes it all and shows the newest at once; live units keep their
/// real spacing after it.
struct Stamper {
    anchor: Option<Instant>,
    /// Burst units still to stamp.
    burst: u64,
    last: u64,
}

impl Stamper {
    const BASE: u64 = 90_000 * 60;
    const TICK: u64 = 90;

    fn stamp(&mut self, received: Instant) -> u64 {
        let anchor = *self.anchor.get_or_insert(received);
        let t = if self.burst > 0 {
            self.burst -= 1;
            Self::BASE - self.burst * Self::TICK
        } else {
            let mapped = Self::BASE + received.saturating_duration_since(anchor).as_micros() as u64 * 9 / 100;
            mapped.max(self.last + Self::TICK)
        };
        self.last = t;
        t
    }
}

impl Viewer {
    async fn run(mut self) -> String {
        let clock = self.clock.clone();
        let started = clock.now();
        let mut buf = vec![0u8; 2000];
        let mut media: Option<(Mid, Pt)> = None;
        let mut pending: std::collections::VecDeque<Arc<EncodedUnit>> = std::mem::take(&mut self.feed.gop).into();
        let mut next_send = clock.now();
        let mut stamper = Stamper { anchor: None, burst: pending.len() as u64, last: 0 };
        // The burst is stamped as ending now: anchor at the newest cached unit.
        if let Some(last) = pending.back() {
            stamper.anchor = Some(last.received_mono);
        }
        let mut need_keyframe = pending.front().is_none_or(|u| !u.keyframe);
        let locals: Vec<Option<SocketAddr>> = self.sockets.iter().map(|s| s.local_addr().ok()).collect();
        loop {
            // Connected with a video m-line: forward what is waiting.
            if let (true, Some((mid, pt))) = (self.connected.load(Ordering::Relaxed), media) {
                // Paced: a whole GOP at line rate would overrun the viewer's receive buffer.
                while clock.now() >= next_send {
                    let Some(unit) = pending.pop_front() else { break };
                    if unit.codec != Codec::H264 {
                        return format!("the camera now sends {}; WebRTC takes H.264 only", pretty(unit.codec));
                    }
                    let rtp = MediaTime::from_90khz(stamper.stamp(unit.received_mono));
                    need_keyframe &= !unit.keyframe;
                    if need_keyframe {
                        continue;
                    }
                    if let Some(w) = self.rtc.writer(mid)
                        && let Err(e) = w.write(pt, clock.now(), rtp, unit.data.to_vec())
                    {
                        return format!("cannot send: {e}");
                    }
                    self.units_sent.fetch_add(1, Ordering::Relaxed);
                    next_send = next_send.max(clock.now()) + self.pace.mul_f64(unit.data.len() as f64);
                }
            }
            // Then do what str0m wants done now.
            let deadline = loop {
                match self.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => break t,
                    Ok(Output::Transmit(t)) => {
                        let i = locals.iter().position(|l| *l == Some(t.source)).unwrap_or(0);
                        let _ = self.sockets[i].send_to(&t.contents, t.destination).await;
                    }
                    Ok(Output::Event(e)) => match e {
                        Event::Connected => {
                            self.connected.store(true, Ordering::Relaxed);
                            debug!("ICE and DTLS connected after {} ms", clock.since(started).as_millis());
                        }
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                            return "ICE disconnected".into();
                        }
                        Event::MediaAdded(m) if m.kind == MediaKind::Video => {
                            media = self.rtc.writer(m.mid).and_then(|w| h264_pt(&w).map(|pt| (m.mid, pt)));
                            if media.is_none() {
                                return "the viewer's offer has no H.264 (packetization-mode 1)".into();
                            }
                        }
                        _ => {}
                    },
                    Err(e) => return format!("WebRTC error: {e}"),
                }
            };
            if !self.rtc.is_alive() {
                return "session closed".into();
            }
            if !self.connected.load(Ordering::Relaxed) && clock.since(started) > self.ice_timeout {
                return format!("no ICE connection within {} s", self.ice_timeout.as_secs_f32());
            }
            let sending = self.connected.load(Ordering::Relaxed) && media.is_some() && !pending.is_empty();
            if sending && clock.now() >= next_send {
                continue; // just connected: send the burst before waiting
            }
            let until = if sending { deadline.min(next_send) } else { deadline };
            let wait = until.saturating_duration_since(clock.now()).min(Duration::from_millis(500));
            let input = tokio::select! {
                r = recv_any(&self.sockets, &mut buf) => match r {
                    Ok((i, n, source)) => {
                        let Some(destination) = locals[i] else { continue };
                        let Ok(contents) = buf[..n].try_into() else { continue };
                        Input::Receive(clock.now(), Receive { proto: Protocol::Udp, source, destination, contents })
                    }
                    Err(e) => return format!("socket error: {e}"),
                },
                _ = clock.sleep(wait) => Input::Timeout(clock.now()),
                u = self.feed.live.recv() => {
                    match u {
                        Ok(u) => pending.push_back(u),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            debug!("viewer fell {n} units behind: waiting for the next keyframe");
                            pending.clear();
                            need_keyframe = true;
                        }
                        Err(broadcast::error::RecvError::Closed) => return "the camera went away".into(),
                    }
                    if pending.len() > crate::camera::FEED_UNITS {
                        pending.clear();
                        need_keyframe = true;
                    }
                    continue;
                }
                _ = self.feed.stopped.cancelled() => { self.rtc.disconnect(); return "the camera stopped".into(); }
                c = self.control.recv() => match c {
                    Some(c) => { self.rtc.add_remote_candidate(c); continue; }
                    None => { self.rtc.disconnect(); return "the viewer ended the session".into(); }
                },
            };
            if let Err(e) = self.rtc.handle_input(input) {
                return format!("WebRTC error: {e}");
            }
        }
    }
}

/// The viewer's H.264 payload type, preferring packetization-mode 1.
fn h264_pt(w: &str0m::media::Writer) -> Option<Pt> {
    let h264: Vec<_> = w.payload_params().filter(|p| p.spec().codec == RtcCodec::H264).collect();
    h264.iter().find(|p| p.spec().format.packetization_mode == Some(1)).or(h264.first()).map(|p| p.pt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_header_says_which_address_to_offer() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(host_ip(Some("192.168.1.5:8080"), None), Some(ip("192.168.1.5")));
        assert_eq!(host_ip(Some("[fe80::1]:8080"), None), Some(ip("fe80::1")));
        assert_eq!(host_ip(Some("localhost:8080"), None), Some(ip("127.0.0.1")));
        assert_eq!(host_ip(Some("cams.example"), Some(ip("10.0.0.2"))), Some(ip("10.0.0.2")));
        assert_eq!(host_ip(Some("0.0.0.0:80"), None), None);
        assert_eq!(host_ip(None, Some(ip("10.0.0.2"))), None);
    }

    #[test]
    fn the_gop_burst_is_squeezed_and_live_units_keep_their_spacing() {
        let t0 = crate::clock::Clock::stepped().now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        // GOP cached over 2 s, newest at 2000 ms: anchored there.
        let mut c = Stamper { anchor: Some(ms(2000)), burst: 5, last: 0 };
        let burst: Vec<u64> = [0, 500, 1000, 1500, 2000].iter().map(|m| c.stamp(ms(*m))).collect();
        assert_eq!(
            burst,
            (0..5).map(|i| Stamper::BASE - (4 - i) * 90).collect::<Vec<_>>(),
            "1 ms apart, ending at the anchor"
        );
        let live = c.stamp(ms(2100));
        assert_eq!(live - burst[4], 9000, "100 ms later is 9000 ticks at 90 kHz");
    }
}
