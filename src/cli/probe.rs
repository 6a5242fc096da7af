//! `camhub probe URL`: connect to a camera and report what it sends (codec,
//! profile, resolution, fps, keyframe interval, bitrate, transport), or why it
//! cannot be read, in words a person adding a camera can act on.

use std::fmt;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::config::{CameraConfig, SourceSpec, Transport};
use crate::error::{Error, ErrorKind, Result};
use crate::media::Codec;

#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub url: String,
    pub transport: Option<Transport>,
    pub codec: Codec,
    pub profile: String,
    pub width: u32,
    pub height: u32,
    pub fps: Option<f64>,
    /// Seconds between keyframes, if two were seen; else at least this long.
    pub keyframe_interval: Result<f64, f64>,
    pub bitrate_kbps: f64,
    pub seconds: f64,
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "url:                {}", self.url)?;
        if let Some(t) = self.transport {
            writeln!(f, "transport:          {}", if t == Transport::Tcp { "tcp" } else { "udp" })?;
        }
        writeln!(f, "codec:              {} ({})", self.codec.name(), self.profile)?;
        writeln!(f, "resolution:         {}x{}", self.width, self.height)?;
        match self.fps {
            Some(fps) => writeln!(f, "fps:                {fps:.1}")?,
            None => writeln!(f, "fps:                unknown (too few frames)")?,
        }
        match self.keyframe_interval {
            Ok(s) => writeln!(f, "keyframe interval:  {s:.1} s")?,
            Err(s) => writeln!(f, "keyframe interval:  more than {s:.1} s (one keyframe seen)")?,
        }
        writeln!(f, "bitrate:            {:.0} kbit/s", self.bitrate_kbps)?;
        write!(f, "measured over:      {:.1} s", self.seconds)
    }
}

/// Watches the camera for up to `window` (stopping early after a second keyframe).
pub async fn probe(cfg: &CameraConfig, window: Duration) -> Result<ProbeReport> {
    let clock = crate::clock::Clock::real();
    let source = crate::source::for_camera(cfg, &clock);
    let timeout = cfg.options.connect_timeout.0;
    let mut stream = tokio::time::timeout(timeout, source.open())
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, format!("no answer within {:.1} s", timeout.as_secs_f64())))??;
    let start = clock.now();
    let (mut units, mut bytes, mut keys) = (0u64, 0u64, Vec::<Instant>::new());
    let (mut first_unit, mut last_unit) = (None::<Instant>, start);
    let mut codec = None;
    let mut first_key: Option<bytes::Bytes> = None;
    while clock.since(start) < window && keys.len() < 2 {
        let left = window.saturating_sub(clock.since(start));
        let item = match tokio::time::timeout(left, stream.next()).await {
            Err(_) => break,
            Ok(None) => {
                return Err(Error::new(ErrorKind::EndOfStream, "the camera closed the stream"));
            }
            Ok(Some(item)) => item?,
        };
        let now = clock.now();
        if item.keyframe {
            keys.push(now);
            first_key.get_or_insert(item.data.clone());
        }
        if !keys.is_empty() {
            units += 1;
            bytes += item.data.len() as u64;
            first_unit.get_or_insert(now);
            last_unit = now;
        }
        codec = Some(item.codec);
    }
    let (Some(codec), Some(key)) = (codec, first_key) else {
        return Err(Error::new(ErrorKind::Timeout, format!("no keyframe within {:.1} s", window.as_secs_f64())));
    };
    let (width, height, profile) = describe_keyframe(codec, &key)?;
    let span = first_unit.map_or(0.0, |f| last_unit.duration_since(f).as_secs_f64());
    Ok(ProbeReport {
        url: cfg.display_url(),
        transport: matches!(cfg.source, SourceSpec::Rtsp(_)).then_some(cfg.options.transport),
        codec,
        profile,
        width,
        height,
        fps: (units >= 3 && span > 0.0).then(|| (units - 1) as f64 / span),
        keyframe_interval: match keys.as_slice() {
            [a, b, ..] => Ok(b.duration_since(*a).as_secs_f64()),
            [a] => Err(clock.now().duration_since(*a).as_secs_f64()),
            [] => Err(0.0),
        },
        bitrate_kbps: if span > 0.0 { bytes as f64 * 8.0 / span / 1000.0 } else { 0.0 },
        seconds: clock.since(start).as_secs_f64(),
    })
}

/// Decodes one keyframe to learn its size and profile.
fn describe_keyframe(codec: Codec, data: &[u8]) -> Result<(u32, u32, String)> {
    crate::media::init_ffmpeg();
    let id = match codec {
        Codec::H264 => ffmpeg_next::codec::Id::H264,
        Codec::H265 => ffmpeg_next::codec::Id::HEVC,
        Codec::Mjpeg => ffmpeg_next::codec::Id::MJPEG,
    };
    let found = ffmpeg_next::decoder::find(id)
        .ok_or_else(|| Error::new(ErrorKind::Unsupported, format!("no {} decoder", codec.name())))?;
    let mut dec = ffmpeg_next::codec::context::Context::new_with_codec(found)
        .decoder()
        .video()
        .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
    let bad =
        |e: ffmpeg_next::Error| Error::new(ErrorKind::Protocol, format!("the first keyframe does not decode: {e}"));
    dec.send_packet(&ffmpeg_next::Packet::copy(data)).map_err(bad)?;
    dec.send_eof().map_err(bad)?;
    let mut frame = ffmpeg_next::frame::Video::empty();
    dec.receive_frame(&mut frame).map_err(bad)?;
    let profile =
        format!("{:?}", dec.profile()).replace("H264(", "").replace("HEVC(", "").trim_end_matches(')').to_string();
    Ok((frame.width(), frame.height(), profile))
}
