//! Local files (MP4, MKV, raw Annex B) through libavformat, looped forever and
//! paced in real time by their timestamps, so a file behaves like a live camera.

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::{Codec, EncodedUnit, Source, UnitStream};
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::media::annexb::{self, Framing};

/// How a file's units are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Like a live camera: paced by the file's timestamps, looped forever.
    RealTime,
    /// Replay: every unit once, in order, as fast as the consumer takes them
    /// (the stream waits while nobody takes), then the stream ends.
    Consumer,
}

pub struct FileSource {
    path: PathBuf,
    pacing: Pacing,
    clock: Clock,
}

impl FileSource {
    pub fn new(path: PathBuf, pacing: Pacing, clock: Clock) -> Self {
        FileSource { path, pacing, clock }
    }
}

impl Source for FileSource {
    fn open(&self) -> BoxFuture<'static, Result<UnitStream>> {
        let (path, clock, live) = (self.path.clone(), self.clock.clone(), self.pacing == Pacing::RealTime);
        Box::pin(async move {
            // Opening probes the file: do it off the async workers.
            let (tx, rx) = mpsc::channel::<Result<EncodedUnit>>(4);
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            thread::Builder::new()
                .name("camhub-file".into())
                .spawn(move || {
                    match Reader::open(&path) {
                        Ok(reader) => {
                            let _ = ready_tx.send(Ok(()));
                            reader.run(&path, &tx, live, &clock);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    };
                })
                .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start file reader: {e}")).caused_by(e))?;
            ready_rx.await.map_err(|_| Error::new(ErrorKind::Internal, "file reader died"))??;
            let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
            Ok(stream.boxed())
        })
    }
}

/// Every unit of a file once, in order, as fast as the receiver takes them
/// (replay mode: the consumer's pace is the file's pace).
pub fn replay_units(path: PathBuf, clock: Clock) -> Result<mpsc::Receiver<Result<EncodedUnit>>> {
    let reader = Reader::open(&path)?;
    let (tx, rx) = mpsc::channel::<Result<EncodedUnit>>(4);
    thread::Builder::new()
        .name("camhub-replay-read".into())
        .spawn(move || reader.run(&path, &tx, false, &clock))
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot start file reader: {e}")).caused_by(e))?;
    Ok(rx)
}

/// Only regular files are read: opening a FIFO or a device blocks (a FIFO
/// until a writer comes, a tty or socket for ever) in a thread nobody can
/// interrupt, one more per reconnect attempt, outliving the camera.
fn check_regular(path: &std::path::Path) -> Result<()> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::new(ErrorKind::NotFound, format!("no such file: {}", path.display())))
        }
        Err(e) => Err(Error::new(ErrorKind::NotFound, format!("cannot read {}: {e}", path.display())).caused_by(e)),
        Ok(m) if !m.is_file() => Err(Error::new(
            ErrorKind::Unsupported,
            format!("{} is not a regular file (a FIFO, device or folder is never opened)", path.display()),
        )),
        Ok(_) => Ok(()),
    }
}

struct Reader {
    input: ffmpeg_next::format::context::Input,
    stream_index: usize,
    codec: Codec,
    framing: Framing,
    time_base: f64,
    /// Seconds from one frame to the next (the stream's average rate, else 0.1).
    step: f64,
}

impl Reader {
    fn open(path: &std::path::Path) -> Result<Reader> {
        crate::media::init_ffmpeg();
        check_regular(path)?;
        let input = ffmpeg_next::format::input(path).map_err(|e| {
            Error::new(ErrorKind::Protocol, format!("cannot read {}: {e}", path.display())).caused_by(e)
        })?;
        let stream = input
            .streams()
            .best(ffmpeg_next::media::Type::Video)
            .ok_or_else(|| Error::new(ErrorKind::Unsupported, format!("{} has no video stream", path.display())))?;
        let id = stream.parameters().id();
        let codec = match id {
            ffmpeg_next::codec::Id::H264 => Codec::H264,
            ffmpeg_next::codec::Id::HEVC => Codec::H265,
            other => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!("{}: video codec {other:?} (camhub takes H.264 and H.265)", path.display()),
                ));
            }
        };
        let framing = annexb::framing(codec, &crate::ffi::stream_extradata(&stream))
            .map_err(|e| Error::new(ErrorKind::Protocol, format!("{}: {e}", path.display())).caused_by(e))?;
        let tb = stream.time_base();
        let time_base = if tb.denominator() != 0 { f64::from(tb) } else { 1.0 / 90000.0 };
        let stream_index = stream.index();
        let step = [stream.avg_frame_rate(), stream.rate()]
            .into_iter()
            .find(|r| r.numerator() > 0 && r.denominator() > 0)
            .map_or(0.1, |r| 1.0 / f64::from(r))
            .clamp(0.001, 10.0);
        Ok(Reader { input, stream_index, codec, framing, time_base, step })
    }

    /// Live: sends units paced by their timestamps, looping, until the receiver
    /// goes away. Otherwise: every unit once, unpaced.
    fn run(mut self, path: &std::path::Path, tx: &mpsc::Sender<Result<EncodedUnit>>, live: bool, clock: &Clock) {
        let start = clock.now();
        // Seconds of media already played in earlier loops.
        let mut offset = 0.0f64;
        loop {
            let mut first_ts: Option<i64> = None;
            // The previous unit's time in this pass, and the latest.
            let (mut last, mut end) = (0.0f64, 0.0f64);
            let mut sent = 0usize;
            for (stream, packet) in self.input.packets() {
                if stream.index() != self.stream_index {
                    continue;
                }
                let Some(data) = packet.data() else { continue };
                // Paced in decode order, as a camera sends: by pts, B-frames (whose pts
                // lie behind the frame before them) would go out in bursts, their
                // pictures one on top of the other for live consumers.
                let ts = packet.dts().or(packet.pts());
                let t = match (ts, first_ts) {
                    (Some(ts), None) => {
                        first_ts = Some(ts);
                        0.0
                    }
                    (Some(ts), Some(f)) => (ts - f) as f64 * self.time_base,
                    (None, _) => last + self.step,
                };
                // Never less than half a frame after the previous unit: where the
                // container gives no dts for the first units (MKV), pts and dts mix,
                // and two units at once make two pictures at once, of which a live
                // consumer sees only the second. The delay is caught up in a few frames.
                let t = if sent > 0 { t.max(last + self.step / 2.0) } else { t };
                last = t;
                end = end.max(t);
                let due = start + Duration::from_secs_f64((offset + t).max(0.0));
                let now = clock.now();
                if live && due > now {
                    thread::sleep(due - now);
                }
                let unit = annexb::to_annexb(&self.framing, data, packet.is_key())
                    .map(|d| EncodedUnit::new(self.codec, d.into(), packet.is_key(), clock))
                    .map_err(|e| Error::new(ErrorKind::Protocol, format!("{}: {e}", path.display())).caused_by(e));
                if tx.blocking_send(unit).is_err() {
                    return;
                }
                sent += 1;
            }
            if sent == 0 {
                let _ = tx.blocking_send(Err(Error::new(
                    ErrorKind::Protocol,
                    format!("{}: no video packets", path.display()),
                )));
                return;
            }
            if !live {
                return;
            }
            // Loop: the next pass starts one frame after this one's latest.
            offset += end + self.step;
            match Reader::open(path) {
                Ok(r) => self = r,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    }
}
