//! RTSP cameras through retina: DESCRIBE, SETUP of the first H.264/H.265 video
//! stream, PLAY, then one `EncodedUnit` per depacketized frame (Annex B with
//! parameter sets on keyframes).

use futures::StreamExt;
use futures::future::BoxFuture;
use retina::client::{Credentials, PlayOptions, Session, SessionOptions, SetupOptions};
use retina::codec::{CodecItem, FrameFormat};
use url::Url;

use super::{Codec, EncodedUnit, Source, UnitStream};
use crate::clock::Clock;
use crate::config::Transport;
use crate::error::{Error, ErrorKind, Result};
use crate::secret::{Secret, scrub};

pub struct RtspSource {
    url: Url,
    creds: Option<Credentials>,
    transport: Transport,
    clock: Clock,
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
        RtspSource { url, creds, transport, clock }
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

impl Source for RtspSource {
    fn open(&self) -> BoxFuture<'static, Result<UnitStream>> {
        let url = self.url.clone();
        let creds = self.creds.clone();
        let transport = self.transport;
        let clock = self.clock.clone();
        let mapper = RtspSource { url: url.clone(), creds: creds.clone(), transport, clock: clock.clone() };
        Box::pin(async move {
            let opts =
                SessionOptions::default().creds(creds).user_agent(format!("camhub/{}", env!("CARGO_PKG_VERSION")));
            let mut session = Session::describe(url, opts).await.map_err(|e| mapper.map_err(e))?;
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
            let t = match transport {
                Transport::Tcp => retina::client::Transport::Tcp(Default::default()),
                Transport::Udp => retina::client::Transport::Udp(Default::default()),
            };
            session
                .setup(index, SetupOptions::default().transport(t).frame_format(FrameFormat::SIMPLE))
                .await
                .map_err(|e| mapper.map_err(e))?;
            let playing = session
                .play(PlayOptions::default())
                .await
                .map_err(|e| mapper.map_err(e))?
                .demuxed()
                .map_err(|e| mapper.map_err(e))?;
            let stream = playing.filter_map(move |item| {
                let out = match item {
                    Ok(CodecItem::VideoFrame(f)) if f.stream_id() == index => {
                        let key = f.is_random_access_point();
                        Some(Ok(EncodedUnit::new(codec, f.into_data().into(), key, &clock)))
                    }
                    Ok(_) => None,
                    Err(e) => Some(Err(mapper.map_err(e))),
                };
                std::future::ready(out)
            });
            Ok(stream.boxed())
        })
    }
}
