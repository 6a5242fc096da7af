//! HTTP cameras: an MJPEG stream (`multipart/x-mixed-replace`, as ESP32 cameras,
//! ustreamer, mjpg-streamer and other hubs serve it) or a JPEG snapshot URL polled
//! at an interval; which one is told by the answer's Content-Type. Each JPEG
//! becomes one unit as it is, to be passed through untouched.

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use url::Url;

use super::multipart::Multipart;
use super::tls::{self, Conn};
use super::{Codec, EncodedUnit, Source, UnitStream};
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

/// Largest JPEG (or multipart part) accepted from a camera.
pub const MAX_FRAME_BYTES: usize = 16 << 20;

pub struct HttpSource {
    url: Url,
    authorization: Option<String>,
    poll: Duration,
    clock: Clock,
    /// `https://`: check the certificate (`tls_verify`).
    verify: bool,
}

impl HttpSource {
    /// `url` must carry no user info; credentials come separately (sent as Basic auth).
    pub fn new(url: Url, username: Option<String>, password: Option<Secret>, poll: Duration, clock: Clock) -> Self {
        let authorization = username.map(|u| {
            let pair = format!("{u}:{}", password.as_ref().map_or("", |p| p.expose()));
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
        });
        HttpSource { url, authorization, poll, clock, verify: true }
    }

    /// `https://` cameras: whether their certificate is checked (default yes).
    pub fn verify_tls(mut self, verify: bool) -> Self {
        self.verify = verify;
        self
    }
}

impl Source for HttpSource {
    fn open(&self) -> BoxFuture<'static, Result<UnitStream>> {
        let (url, auth, poll, clock) = (self.url.clone(), self.authorization.clone(), self.poll, self.clock.clone());
        let verify = self.verify;
        Box::pin(async move {
            let resp = get(&url, auth.as_deref(), verify).await?;
            let ctype =
                resp.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            let lower = ctype.to_ascii_lowercase();
            if lower.starts_with("multipart/") {
                let boundary = ctype
                    .split(';')
                    .find_map(|p| p.trim().strip_prefix("boundary=").or_else(|| p.trim().strip_prefix("BOUNDARY=")))
                    .ok_or_else(|| Error::new(ErrorKind::Protocol, format!("{ctype:?} names no boundary")))?
                    .to_owned();
                Ok(multipart_stream(resp.into_body(), Multipart::new(&boundary, MAX_FRAME_BYTES), clock))
            } else if lower.starts_with("image/jpeg") {
                let first = jpeg_unit(read_body(resp.into_body()).await?, &clock)?;
                Ok(poll_stream(url, auth, poll, verify, first, clock))
            } else {
                Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("the camera answered {ctype:?}; camhub reads multipart MJPEG streams and JPEG snapshots"),
                ))
            }
        })
    }
}

/// One GET on a fresh connection; non-2xx answers become errors of their kind.
async fn get(url: &Url, auth: Option<&str>, verify: bool) -> Result<hyper::Response<Incoming>> {
    let host = url.host_str().ok_or_else(|| Error::new(ErrorKind::Protocol, "url has no host"))?.to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| {
        Error::new(ErrorKind::Unreachable, format!("cannot connect to {host}:{port}: {e}")).caused_by(e)
    })?;
    let io: Box<dyn Conn> = if url.scheme() == "https" {
        Box::new(tls::connect(tcp, &host, verify).await.map_err(|e| Error::new(ErrorKind::Protocol, e))?)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| Error::new(ErrorKind::Protocol, format!("HTTP handshake failed: {e}")).caused_by(e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let mut req = hyper::Request::get(path)
        .header(hyper::header::HOST, host_header)
        .header(hyper::header::USER_AGENT, concat!("camhub/", env!("CARGO_PKG_VERSION")));
    if let Some(a) = auth {
        req = req.header(hyper::header::AUTHORIZATION, a);
    }
    let req =
        req.body(Empty::<Bytes>::new()).map_err(|e| Error::new(ErrorKind::Internal, e.to_string()).caused_by(e))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| Error::new(ErrorKind::Protocol, format!("no HTTP answer: {e}")).caused_by(e))?;
    let status = resp.status();
    match status.as_u16() {
        200..=299 => Ok(resp),
        401 | 403 if auth.is_none() => Err(Error::new(
            ErrorKind::Auth,
            format!("HTTP {status} (the camera wants credentials; none are configured)"),
        )),
        401 | 403 => Err(Error::new(ErrorKind::Auth, format!("HTTP {status} (check the username and password)"))),
        404 => Err(Error::new(ErrorKind::NotFound, format!("HTTP {status}"))),
        _ => Err(Error::new(ErrorKind::Protocol, format!("HTTP {status}"))),
    }
}

async fn read_body(mut body: Incoming) -> Result<Bytes> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| Error::new(ErrorKind::EndOfStream, format!("body cut short: {e}")).caused_by(e))?;
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
            if out.len() > MAX_FRAME_BYTES {
                return Err(Error::new(ErrorKind::Protocol, format!("a JPEG larger than {MAX_FRAME_BYTES} bytes")));
            }
        }
    }
    Ok(out.into())
}

fn jpeg_unit(data: Bytes, clock: &Clock) -> Result<EncodedUnit> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err(Error::new(ErrorKind::Protocol, format!("a frame of {} bytes that is not a JPEG", data.len())));
    }
    Ok(EncodedUnit::new(Codec::Mjpeg, data, true, clock))
}

fn multipart_stream(body: Incoming, parser: Multipart, clock: Clock) -> UnitStream {
    let state = (body, parser, VecDeque::<Bytes>::new(), false);
    futures::stream::unfold(state, move |(mut body, mut parser, mut ready, done)| {
        let clock = clock.clone();
        async move {
            loop {
                if let Some(part) = ready.pop_front() {
                    return Some((jpeg_unit(part, &clock), (body, parser, ready, done)));
                }
                if done {
                    return None;
                }
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            match parser.push(&data) {
                                Ok(parts) => ready.extend(parts),
                                Err(e) => {
                                    return Some((
                                        Err(Error::new(ErrorKind::Protocol, e)),
                                        (body, parser, ready, true),
                                    ));
                                }
                            }
                        }
                    }
                    Some(Err(e)) => {
                        let err = Error::new(ErrorKind::EndOfStream, format!("stream cut short: {e}"));
                        return Some((Err(err), (body, parser, ready, true)));
                    }
                    None => {
                        let why = if parser.between_parts() {
                            "the camera closed the stream"
                        } else {
                            "the stream ended inside a part (truncated frame)"
                        };
                        return Some((Err(Error::new(ErrorKind::EndOfStream, why)), (body, parser, ready, true)));
                    }
                }
            }
        }
    })
    .boxed()
}

/// A snapshot URL asked again every `poll`; the first answer is already in hand.
fn poll_stream(
    url: Url,
    auth: Option<String>,
    poll: Duration,
    verify: bool,
    first: EncodedUnit,
    clock: Clock,
) -> UnitStream {
    let first = futures::stream::once(async move { Ok(first) });
    let start = clock.now();
    let rest = futures::stream::unfold((url, auth, start), move |(url, auth, last)| {
        let clock = clock.clone();
        async move {
            let next = last + poll;
            clock.sleep_until(next).await;
            let unit = match get(&url, auth.as_deref(), verify).await {
                Ok(resp) => match read_body(resp.into_body()).await {
                    Ok(b) => jpeg_unit(b, &clock),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            Some((unit, (url, auth, next.max(clock.now() - poll))))
        }
    });
    first.chain(rest).boxed()
}
