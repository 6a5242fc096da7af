//! One viewer's session: its `Rtc` (sans-IO), its UDP sockets, and the units
//! it forwards (`Burst` decides which and when). Ends when the viewer says
//! DELETE, when ICE does not connect within `ice_timeout`, when ICE
//! disconnects, or when the camera goes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use str0m::format::Codec as RtcCodec;
use str0m::media::{MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};
use tracing::debug;

use super::{pretty, recv_any};
use crate::camera::{Lease, UnitFeed};
use crate::clock::Clock;
use crate::media::Codec;
use crate::media::burst::Burst;

/// One viewer's session.
pub(super) struct Viewer {
    pub clock: Clock,
    pub rtc: Rtc,
    pub sockets: Vec<UdpSocket>,
    pub feed: UnitFeed,
    pub control: mpsc::Receiver<Candidate>,
    pub ice_timeout: Duration,
    /// How fast the cached GOP goes out (Mbit/s).
    pub burst_mbps: f64,
    pub connected: Arc<std::sync::atomic::AtomicBool>,
    pub units_sent: Arc<AtomicU64>,
    pub _lease: Lease,
}

impl Viewer {
    pub(super) async fn run(mut self) -> String {
        let clock = self.clock.clone();
        let started = clock.now();
        let mut buf = vec![0u8; 2000];
        let mut media: Option<(Mid, Pt)> = None;
        let mut burst =
            Burst::new(std::mem::take(&mut self.feed.gop), self.burst_mbps, crate::camera::FEED_UNITS, clock.now());
        let locals: Vec<Option<SocketAddr>> = self.sockets.iter().map(|s| s.local_addr().ok()).collect();
        loop {
            // Connected with a video m-line: forward what is waiting.
            if let (true, Some((mid, pt))) = (self.connected.load(Ordering::Relaxed), media) {
                while let Some((unit, rtp)) = burst.poll(clock.now()) {
                    if unit.codec != Codec::H264 {
                        return format!("the camera now sends {}; WebRTC takes H.264 only", pretty(unit.codec));
                    }
                    if let Some(w) = self.rtc.writer(mid)
                        && let Err(e) = w.write(pt, clock.now(), MediaTime::from_90khz(rtp), unit.data.to_vec())
                    {
                        return format!("cannot send: {e}");
                    }
                    self.units_sent.fetch_add(1, Ordering::Relaxed);
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
            let due = burst.next_due().filter(|_| self.connected.load(Ordering::Relaxed) && media.is_some());
            if due.is_some_and(|t| clock.now() >= t) {
                continue; // just connected: send the burst before waiting
            }
            let until = due.map_or(deadline, |t| deadline.min(t));
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
                        Ok(u) => burst.push(u),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            debug!("viewer fell {n} units behind: waiting for the next keyframe");
                            burst.lost();
                        }
                        Err(broadcast::error::RecvError::Closed) => return "the camera went away".into(),
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
