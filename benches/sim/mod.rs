//! A camera fleet on loopback: one process serving N RTSP H.264 streams (TCP
//! interleaved) from one pre-encoded clip, paced in real time. The clip is
//! packetized once (RTP payloads shared as `Bytes`); a session only writes a
//! 4-byte interleave header and a 12-byte RTP header per packet. Each path has
//! its own timeline (path k starts k x 1.37 s into the clip), so a new session
//! joins mid-GOP like a real camera.
//!
//! Paths: `/cam<k>`; fault modes by prefix: `/drop/cam<k>` (the session is closed
//! after 10 s), `/freeze/cam<k>` (the stream stops after 5 s, the connection
//! stays), `/refuse/cam<k>` (the connection is closed at once).
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const MTU_PAYLOAD: usize = 1200;

/// One access unit, packetized.
struct Frame {
    /// RTP payloads (single NAL units or FU-A fragments), in order.
    packets: Vec<Bytes>,
}

/// The clip, packetized once for every session.
pub struct Clip {
    frames: Vec<Frame>,
    fps: f64,
    sprop: String,
    profile_level: String,
}

fn nal_units(au: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= au.len() {
        if au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    for (k, s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(au.len(), |n| n - 3);
        while end > *s && au[end - 1] == 0 {
            end -= 1; // a 4-byte start code's leading zero, or trailing zeros
        }
        if end > *s {
            out.push(&au[*s..end]);
        }
    }
    out
}

impl Clip {
    /// Splits an Annex B H.264 clip at its access unit delimiters and packetizes it.
    pub fn load(data: &[u8], fps: f64) -> Clip {
        let nals = nal_units(data);
        let mut frames: Vec<Vec<&[u8]>> = Vec::new();
        let (mut sps, mut pps) = (None, None);
        for n in nals {
            let t = n[0] & 0x1f;
            if t == 9 || frames.is_empty() {
                frames.push(Vec::new());
            }
            match t {
                7 => sps = sps.or(Some(n)),
                8 => pps = pps.or(Some(n)),
                _ => {}
            }
            if t != 9 {
                frames.last_mut().unwrap().push(n);
            }
        }
        frames.retain(|f| !f.is_empty());
        let b64 = |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b);
        let sps = sps.expect("the clip has an SPS");
        let pps = pps.expect("the clip has a PPS");
        let frames = frames
            .into_iter()
            .map(|nals| {
                let mut packets = Vec::new();
                for n in nals {
                    if n.len() <= MTU_PAYLOAD {
                        packets.push(Bytes::copy_from_slice(n));
                        continue;
                    }
                    // FU-A: indicator (F, NRI, type 28), header (S, E, type), fragment.
                    let (hdr, body) = (n[0], &n[1..]);
                    let chunks: Vec<&[u8]> = body.chunks(MTU_PAYLOAD - 2).collect();
                    for (i, c) in chunks.iter().enumerate() {
                        let mut p = Vec::with_capacity(c.len() + 2);
                        p.push((hdr & 0xe0) | 28);
                        let s = if i == 0 { 0x80 } else { 0 };
                        let e = if i + 1 == chunks.len() { 0x40 } else { 0 };
                        p.push(s | e | (hdr & 0x1f));
                        p.extend_from_slice(c);
                        packets.push(Bytes::from(p));
                    }
                }
                Frame { packets }
            })
            .collect();
        Clip {
            frames,
            fps,
            sprop: format!("{},{}", b64(sps), b64(pps)),
            profile_level: format!("{:02x}{:02x}{:02x}", sps[1], sps[2], sps[3]),
        }
    }

    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    fn sdp(&self) -> String {
        format!(
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=camhub fleet\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
             m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
             a=fmtp:96 packetization-mode=1;profile-level-id={};sprop-parameter-sets={}\r\n\
             a=control:trackID=0\r\n",
            self.profile_level, self.sprop
        )
    }
}

/// What the simulator has done, for the bench to print.
#[derive(Default)]
pub struct SimStats {
    pub sessions: AtomicU64,
    pub bytes: AtomicU64,
}

/// A simulated fleet running on a runtime: `rtsp://127.0.0.1:{port}/cam<k>`.
pub struct Fleet {
    pub port: u16,
    pub clip: Arc<Clip>,
    pub stats: Arc<SimStats>,
    /// When it started serving (the clip's position follows from it).
    pub started: Instant,
}

/// Loads the H.264 clip at `clip_path`, paced at `fps`, and serves it on `rt`
/// from `127.0.0.1:port` (0: a free port) until the process ends.
pub fn start(rt: &tokio::runtime::Runtime, clip_path: &std::path::Path, fps: f64, port: u16) -> Fleet {
    let clip = Arc::new(Clip::load(&std::fs::read(clip_path).unwrap(), fps));
    let stats = Arc::new(SimStats::default());
    let listener = rt.block_on(TcpListener::bind(("127.0.0.1", port))).unwrap();
    let port = listener.local_addr().unwrap().port();
    let started = Instant::now();
    rt.spawn(serve(listener, clip.clone(), stats.clone()));
    Fleet { port, clip, stats, started }
}

/// Serves the clip on `listener` until the process ends.
pub async fn serve(listener: TcpListener, clip: Arc<Clip>, stats: Arc<SimStats>) {
    let start = Instant::now();
    loop {
        let Ok((sock, _)) = listener.accept().await else { continue };
        let _ = sock.set_nodelay(true);
        let (clip, stats) = (clip.clone(), stats.clone());
        tokio::spawn(async move {
            let _ = session(sock, clip, stats, start).await;
        });
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    Drop,
    Freeze,
    Refuse,
}

fn path_of(url: &str) -> (Fault, u64) {
    let path = url.split("://").nth(1).and_then(|r| r.find('/').map(|i| &r[i..])).unwrap_or(url);
    let path = path.trim_end_matches('/').trim_end_matches("/trackID=0");
    let (fault, rest) = if let Some(r) = path.strip_prefix("/drop") {
        (Fault::Drop, r)
    } else if let Some(r) = path.strip_prefix("/freeze") {
        (Fault::Freeze, r)
    } else if let Some(r) = path.strip_prefix("/refuse") {
        (Fault::Refuse, r)
    } else {
        (Fault::None, path)
    };
    let k = rest.trim_start_matches("/cam").parse().unwrap_or(0);
    (fault, k)
}

async fn session(sock: TcpStream, clip: Arc<Clip>, stats: Arc<SimStats>, t0: Instant) -> std::io::Result<()> {
    let (rd, mut wr) = sock.into_split();
    let mut rd = BufReader::new(rd);
    let mut path = (Fault::None, 0u64);
    let session_id = format!("{:08x}", stats.sessions.fetch_add(1, Ordering::Relaxed) + 1);
    // Requests until PLAY.
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, url) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let Some(cseq) = read_head(&mut rd).await? else { return Ok(()) };
        if method != "OPTIONS" {
            path = path_of(&url);
        }
        if path.0 == Fault::Refuse {
            return Ok(());
        }
        let reply = match method.as_str() {
            "OPTIONS" => {
                format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n\r\n")
            }
            "DESCRIBE" => {
                let sdp = clip.sdp();
                format!(
                    "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Base: {url}/\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                    sdp.len()
                )
            }
            "SETUP" => format!(
                "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nSession: {session_id};timeout=60\r\n\r\n"
            ),
            "PLAY" => format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nSession: {session_id}\r\nRange: npt=0.000-\r\n\r\n"),
            "TEARDOWN" => {
                wr.write_all(format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n\r\n").as_bytes()).await?;
                return Ok(());
            }
            _ => format!("RTSP/1.0 501 Not Implemented\r\nCSeq: {cseq}\r\n\r\n"),
        };
        wr.write_all(reply.as_bytes()).await?;
        if method == "PLAY" {
            break;
        }
    }
    // What the client sends now: RTCP receiver reports (skipped) and keep-alives
    // (GET_PARAMETER or OPTIONS), answered as a camera does, between RTP frames.
    let (replies, mut reply_rx) = tokio::sync::mpsc::channel::<String>(8);
    tokio::spawn(async move {
        while let Ok(Some(cseq)) = next_request(&mut rd).await {
            if replies.send(format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n\r\n")).await.is_err() {
                break;
            }
        }
    });
    let (fault, k) = path;
    let period = Duration::from_secs_f64(1.0 / clip.fps);
    // This path's timeline: where in the clip it is now.
    let offset = Duration::from_millis(k * 1370);
    let mut n = ((t0.elapsed() + offset).as_secs_f64() * clip.fps) as u64;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let ssrc: u32 = 0x1234_0000 + k as u32;
    let mut seq: u16 = (k as u16).wrapping_mul(977);
    let started = Instant::now();
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(reply) = reply_rx.recv() => {
                wr.write_all(reply.as_bytes()).await?;
                continue;
            }
        }
        n += 1;
        let elapsed = started.elapsed();
        if fault == Fault::Drop && elapsed > Duration::from_secs(10) {
            return Ok(());
        }
        if fault == Fault::Freeze && elapsed > Duration::from_secs(5) {
            continue;
        }
        let frame = &clip.frames[(n % clip.frames.len() as u64) as usize];
        let ts = (n as f64 * 90_000.0 / clip.fps) as u32;
        buf.clear();
        for (i, p) in frame.packets.iter().enumerate() {
            let marker = if i + 1 == frame.packets.len() { 0x80 } else { 0 };
            let len = (12 + p.len()) as u16;
            buf.extend_from_slice(&[b'$', 0, (len >> 8) as u8, len as u8]);
            buf.extend_from_slice(&[0x80, marker | 96]);
            buf.extend_from_slice(&seq.to_be_bytes());
            buf.extend_from_slice(&ts.to_be_bytes());
            buf.extend_from_slice(&ssrc.to_be_bytes());
            buf.extend_from_slice(p);
            seq = seq.wrapping_add(1);
        }
        wr.write_all(&buf).await?;
        stats.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
    }
}

/// Skips interleaved frames (`$`, channel, length) and returns the CSeq of the
/// next RTSP request (None at the end of the stream).
async fn next_request<R: tokio::io::AsyncBufRead + Unpin>(rd: &mut R) -> std::io::Result<Option<String>> {
    loop {
        let first = match rd.fill_buf().await? {
            [] => return Ok(None),
            b => b[0],
        };
        if first == b'$' {
            let mut head = [0u8; 4];
            rd.read_exact(&mut head).await?;
            let mut body = vec![0u8; usize::from(u16::from_be_bytes([head[2], head[3]]))];
            rd.read_exact(&mut body).await?;
            continue;
        }
        let mut line = String::new();
        rd.read_line(&mut line).await?; // the request line
        return read_head(rd).await;
    }
}

/// A request's headers and body (skipped): its CSeq, or None at the end of the stream.
async fn read_head<R: tokio::io::AsyncBufRead + Unpin>(rd: &mut R) -> std::io::Result<Option<String>> {
    let (mut cseq, mut len) = (String::from("0"), 0usize);
    loop {
        let mut h = String::new();
        if rd.read_line(&mut h).await? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "cseq" => cseq = v.trim().to_string(),
                "content-length" => len = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; len.min(65536)];
    rd.read_exact(&mut body).await?;
    Ok(Some(cseq))
}
