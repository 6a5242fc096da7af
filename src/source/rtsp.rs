//! RTSP cameras through retina: DESCRIBE, SETUP of the first H.264/H.265 video
//! stream, PLAY, then one `EncodedUnit` per depacketized frame (Annex B with
//! parameter sets on keyframes).
//!
//! `transport: udp` falls back to TCP (RTP interleaved in the RTSP connection)
//! when the camera refuses UDP (a SETUP answered `461 Unsupported Transport`, or
//! a refusal that names the transport) or when no video arrives over UDP within
//! `UDP_FIRST_FRAME` of PLAY (a firewall or NAT that drops it). The source then
//! stays on TCP for its life, which is the camera's until its config changes.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use retina::client::{Credentials, PlayOptions, Session, SessionOptions, SetupOptions};
use retina::codec::{CodecItem, FrameFormat};
use tracing::warn;
use url::Url;

use super::tls::RtspTls;
use super::{Codec, EncodedUnit, Source, UnitStream};
use crate::clock::Clock;
use crate::config::Transport;
use crate::error::{Error, ErrorKind, Result};
use crate::secret::{Secret, scrub};

/// How long a UDP session may go without its first video frame after PLAY
/// before the camera is reconnected over TCP.
pub const UDP_FIRST_FRAME: Duration = Duration::from_secs(5);

pub struct RtspSource {
    url: Url,
    creds: Option<Credentials>,
    transport: Transport,
    /// `rtsps://`: TLS over the RTSP connection (RTP interleaved in it).
    tls: Option<Arc<RtspTls>>,
    clock: Clock,
    /// Why UDP was given up for TCP, once it was.
    fallback: Arc<Mutex<Option<String>>>,
}

impl RtspSource {
    /// `url` must carry no user info; credentials come separately.
    pub fn new(
        url: Url,
        username: Option<String>,
        password: Option<Secret>,
        transport: Transport,
        clock: Clock,
    ) -> Self {
        let creds = username.map(|u| Credentials {
            username: u,
            password: password.map(|p| p.expose().to_owned()).unwrap_or_default(),
        });
        RtspSource { url, creds, transport, tls: None, clock, fallback: Arc::default() }
    }

    /// `rtsps://` URLs: TLS, checking the camera's certificate and name when
    /// `verify` (`tls_verify`); RTP always interleaved in the TLS connection.
    pub fn verify_tls(mut self, verify: bool) -> Self {
        if self.url.scheme() == "rtsps" {
            self.tls = Some(RtspTls::new(verify));
            self.transport = Transport::Tcp;
        }
        self
    }

    fn map_err(&self, e: retina::Error) -> Error {
        let secrets: Vec<&str> = self.creds.iter().map(|c| c.password.as_str()).collect();
        let raw = e.to_string();
        let text = scrub(&raw, &secrets);
        // retina appends connection context on further lines; the first says what failed.
        let first = text.lines().next().unwrap_or_default().to_owned();
        let kind = match e.status_code() {
            Some(401) | Some(403) => ErrorKind::Auth,
            Some(404) => ErrorKind::NotFound,
            Some(_) => ErrorKind::Protocol,
            None if first.starts_with("Unable to connect") => ErrorKind::Unreachable,
            None if first.starts_with("Timeout") => ErrorKind::Timeout,
            None if first.starts_with("Unsupported") => ErrorKind::Unsupported,
            None => ErrorKind::Protocol,
        };
        let message = match kind {
            ErrorKind::Auth if self.creds.is_none() => {
                format!("{first} (the camera wants credentials; none are configured)")
            }
            ErrorKind::Auth => format!("{first} (check the username and password)"),
            _ => first,
        };
        // The whole retina error (with its connection context) is kept as the
        // cause, unless its text named a secret.
        let err = Error::new(kind, message);
        if text == raw { err.caused_by(e) } else { err }
    }
}

/// Whether a SETUP refusal is about the transport (so TCP may be accepted).
fn refuses_transport(e: &retina::Error) -> bool {
    match e.status_code() {
        Some(461) => true,
        Some(401 | 403 | 404) => false,
        Some(_) => e.to_string().lines().next().unwrap_or_default().to_ascii_lowercase().contains("transport"),
        None => false,
    }
}

impl RtspSource {
    /// Gives up UDP for the rest of the source's life, saying why, once.
    fn fall_back(fallback: &Mutex<Option<String>>, why: &str) {
        let mut f = fallback.lock();
        if f.is_none() {
            warn!("{why}; falling back to TCP (RTP interleaved) until the camera's config changes");
            *f = Some(why.to_owned());
        }
    }

    /// DESCRIBE, SETUP over `transport` (UDP refused: over TCP), PLAY: the stream of units.
    async fn session(&self, transport: Transport) -> Result<UnitStream> {
        let mut opts = SessionOptions::default()
            .creds(self.creds.clone())
            .user_agent(format!("camhub/{}", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = &self.tls {
            opts = opts.tls(tls.clone());
        }
        let mut session = Session::describe(self.url.clone(), opts).await.map_err(|e| self.map_err(e))?;
        let (index, codec) = session
            .streams()
            .iter()
            .enumerate()
            .find_map(|(i, s)| {
                let codec = match (s.media(), s.encoding_name()) {
                    ("video", "h264") => Codec::H264,
                    ("video", "h265") => Codec::H265,
                    _ => return None,
                };
                Some((i, codec))
            })
            .ok_or_else(|| {
                let found: Vec<String> =
                    session.streams().iter().map(|s| format!("{}/{}", s.media(), s.encoding_name())).collect();
                Error::new(
                    ErrorKind::Unsupported,
                    format!("no H.264 or H.265 video stream (camera offers: {})", found.join(", ")),
                )
            })?;
        let setup = |t: Transport| {
            let t = match t {
                Transport::Tcp => retina::client::Transport::Tcp(Default::default()),
                Transport::Udp => retina::client::Transport::Udp(Default::default()),
            };
            SetupOptions::default().transport(t).frame_format(FrameFormat::SIMPLE)
        };
        let mut transport = transport;
        if let Err(e) = session.setup(index, setup(transport)).await {
            if transport != Transport::Udp || !refuses_transport(&e) {
                return Err(self.map_err(e));
            }
            let first = e.to_string().lines().next().unwrap_or_default().to_owned();
            Self::fall_back(&self.fallback, &format!("UDP refused ({first})"));
            // The same session asks again over TCP (a new DESCRIBE right after a
            // refused one is answered 503 by some servers while they tear down).
            transport = Transport::Tcp;
            session.setup(index, setup(transport)).await.map_err(|e| self.map_err(e))?;
        }
        let playing = session
            .play(PlayOptions::default())
            .await
            .map_err(|e| self.map_err(e))?
            .demuxed()
            .map_err(|e| self.map_err(e))?;
        let mapper = self.clone_for_stream();
        let clock = self.clock.clone();
        let stream = playing
            .filter_map(move |item| {
                let out = match item {
                    Ok(CodecItem::VideoFrame(f)) if f.stream_id() == index => {
                        let key = f.is_random_access_point();
                        Some(Ok(EncodedUnit::new(codec, f.into_data().into(), key, &clock)))
                    }
                    Ok(_) => None,
                    Err(e) => Some(Err(mapper.map_err(e))),
                };
                std::future::ready(out)
            })
            .boxed();
        Ok(match transport {
            Transport::Tcp => stream,
            Transport::Udp => self.first_frame_watch(stream),
        })
    }

    /// A UDP stream whose first frame must come within `UDP_FIRST_FRAME` of
    /// PLAY; if it does not, the stream fails and the next connection uses TCP.
    fn first_frame_watch(&self, stream: UnitStream) -> UnitStream {
        let clock = self.clock.clone();
        let deadline = clock.now() + UDP_FIRST_FRAME;
        let fallback = self.fallback.clone();
        futures::stream::unfold((stream, Some(deadline)), move |(mut s, deadline)| {
            let (clock, fallback) = (clock.clone(), fallback.clone());
            async move {
                let Some(d) = deadline else {
                    return s.next().await.map(|x| (x, (s, None)));
                };
                tokio::select! {
                    item = s.next() => item.map(|x| (x, (s, None))),
                    _ = clock.sleep_until(d) => {
                        let why = format!("no UDP packets in {} s", UDP_FIRST_FRAME.as_secs());
                        Self::fall_back(&fallback, &why);
                        let e = Error::new(ErrorKind::Timeout, format!("{why}; reconnecting over TCP"));
                        Some((Err(e), (s, None)))
                    }
                }
            }
        })
        .boxed()
    }

    /// What the stream needs of the source to map its errors.
    fn clone_for_stream(&self) -> RtspSource {
        RtspSource {
            url: self.url.clone(),
            creds: self.creds.clone(),
            transport: self.transport,
            tls: self.tls.clone(),
            clock: self.clock.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

impl Source for RtspSource {
    fn open(&self) -> BoxFuture<'static, Result<UnitStream>> {
        let this = self.clone_for_stream();
        Box::pin(async move {
            let transport = if this.fallback().is_some() { Transport::Tcp } else { this.transport };
            this.session(transport).await
        })
    }

    fn fallback(&self) -> Option<String> {
        self.fallback.lock().clone()
    }
}

#[cfg(test)]
mod tests;
