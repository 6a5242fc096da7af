//! The writer of a shared-memory frame ring (layout and protocol: docs/shm.md).
//! The file exists from the moment the output is configured (header only until
//! the first frame), is replaced by rename when the geometry changes, and is
//! marked CLOSED and unlinked when the output goes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{FlockOperation, flock};

use crate::clock::Clock;
use crate::config::{Fps, Mode, PixelFormat};
use camhub_ring::Mapping as SharedMap;

pub use camhub_ring::layout::{
    CLOSED, ENDED, HEADER_SIZE, MAGIC, MAX_READERS, NOT_MEASURED, PLANE_SIZE, READER_SIZE, READY, SLOT_HEADER, VERSION,
};

/// The ring file's layout (docs/shm.md, "Layout"), from the crate the Python
/// client's reader is built from too: the header's fields here, a slot's and a
/// reader table entry's below; `ring/tests.rs` holds them against the document.
mod off {
    pub use camhub_ring::layout::header::*;
    pub use camhub_ring::layout::{reader, slot};
}

/// One plane of a slot's pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plane {
    pub offset: usize,
    pub stride: usize,
    pub row_bytes: usize,
    pub rows: usize,
}

/// Width, height and format of the frames in a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
}

impl Geometry {
    /// Tightly packed planes (stride = used bytes per row), as OpenCV expects for I420/NV12.
    pub fn planes(&self) -> Vec<Plane> {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let plane = |offset, row_bytes, rows| Plane { offset, stride: row_bytes, row_bytes, rows };
        match self.format {
            PixelFormat::Gray => vec![plane(0, w, h)],
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => vec![plane(0, 3 * w, h)],
            PixelFormat::I420 => vec![plane(0, w, h), plane(w * h, cw, ch), plane(w * h + cw * ch, cw, ch)],
            PixelFormat::Nv12 => vec![plane(0, w, h), plane(w * h, 2 * cw, ch)],
        }
    }

    pub fn frame_size(&self) -> usize {
        self.planes().iter().map(|p| p.stride * p.rows).sum()
    }
}

/// A registered reader, from the reader table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reader {
    pub pid: u32,
    pub read_seq: u64,
}

pub fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// The ring's path for a camera's output.
pub fn ring_path(dir: &Path, camera: &str, output: &str) -> PathBuf {
    dir.join(format!("camhub.{camera}.{output}"))
}

/// A pixel format's code in the header (docs/shm.md, `camhub_ring::layout::FORMATS`).
pub fn format_code(f: PixelFormat) -> u32 {
    let name = match f {
        PixelFormat::Gray => "gray",
        PixelFormat::I420 => "i420",
        PixelFormat::Nv12 => "nv12",
        PixelFormat::Rgb24 => "rgb24",
        PixelFormat::Bgr24 => "bgr24",
    };
    camhub_ring::layout::FORMATS.iter().find(|(_, n, _)| *n == name).map_or(0, |(code, _, _)| *code)
}

/// An output's rate as the header says it: rate x 1000, 0 every frame, 1 keyframes.
pub fn fps_code(fps: Fps) -> u64 {
    match fps {
        Fps::All => 0,
        Fps::Keyframes => 1,
        Fps::Rate(r) => ((r * 1000.0).round() as u64).max(2),
    }
}

pub struct RingWriter {
    path: PathBuf,
    file: File,
    map: SharedMap,
    geometry: Option<Geometry>,
    slots: u32,
    mode: Mode,
    perms: u32,
    fps_milli: u64,
    camera: String,
    output: String,
    seq: u64,
    /// Frames skipped as similar, and the newest frame seen.
    skipped: u64,
    last_frame_id: u64,
    /// The newest frame skipped as similar and its luma difference (0: none yet).
    last_skip: (u64, f64),
    clock: Clock,
    /// This process's hold on the ring's name (dropped after the ring is removed).
    _owner: std::sync::Arc<owner::Owner>,
    /// The bytes of the hub's memory budget this ring holds (its laid-out size).
    reserved: u64,
}

/// What a ring is asked to be: its slots, file mode, replay or live, and rate.
#[derive(Debug, Clone, Copy)]
pub struct RingSpec {
    pub slots: u32,
    pub perms: u32,
    pub mode: Mode,
    pub fps: Fps,
}

/// What a frame carries into its slot besides the pixels.
#[derive(Debug, Clone, Copy)]
pub struct SlotMeta {
    pub frame_id: u64,
    pub captured: SystemTime,
    pub decoded: SystemTime,
    /// The luma difference from the previous published frame (0..1), when the
    /// output measures it (`skip_similar`) and there was one.
    pub similarity: Option<f64>,
}

impl RingWriter {
    /// Creates the ring, header only, replacing any file left under its name
    /// (a crashed hub's: its readers see CLOSED and reopen).
    pub fn create(dir: &Path, camera: &str, output: &str, spec: RingSpec, clock: Clock) -> io::Result<RingWriter> {
        let RingSpec { slots, perms, mode, fps } = spec;
        let fps_milli = fps_code(fps);
        let path = ring_path(dir, camera, output);
        let _owner = owner::acquire(&path, perms)?;
        let (file, map) = Self::make_file(&path, HEADER_SIZE, perms)?;
        let mut w = RingWriter {
            path,
            file,
            map,
            geometry: None,
            slots,
            mode,
            perms,
            fps_milli,
            camera: camera.into(),
            output: output.into(),
            seq: 0,
            skipped: 0,
            last_frame_id: 0,
            last_skip: (0, 0.0),
            clock,
            _owner,
            reserved: 0,
        };
        w.write_header(0);
        w.install()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tmp_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".tmp{}", std::process::id()));
        p.into()
    }

    fn make_file(path: &Path, len: usize, perms: u32) -> io::Result<(File, SharedMap)> {
        let mut tmp = path.to_path_buf().into_os_string();
        tmp.push(format!(".tmp{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let file = OpenOptions::new().read(true).write(true).create_new(true).mode(perms).open(&tmp)?;
        // The umask may have taken bits away: set exactly what was asked.
        file.set_permissions(std::fs::Permissions::from_mode(perms))?;
        file.set_len(len as u64)?;
        let map = SharedMap::new(&file)?;
        Ok((file, map))
    }

    /// Writes the header for the current geometry (flags `READY` if there is one).
    fn write_header(&mut self, flags: u32) {
        let g = self.geometry;
        let planes = g.map(|g| g.planes()).unwrap_or_default();
        let frame_size = g.map_or(0, |g| g.frame_size());
        let slot_size = if g.is_some() { (SLOT_HEADER + frame_size).next_multiple_of(4096) } else { 0 };
        let m = &mut self.map;
        m.bytes_mut(off::MAGIC, MAGIC.len()).copy_from_slice(MAGIC);
        let put32 = |m: &mut SharedMap, o: usize, v: u32| m.bytes_mut(o, 4).copy_from_slice(&v.to_le_bytes());
        let put64 = |m: &mut SharedMap, o: usize, v: u64| m.bytes_mut(o, 8).copy_from_slice(&v.to_le_bytes());
        put32(m, off::VERSION, VERSION);
        put32(m, off::HEADER_SIZE, HEADER_SIZE as u32);
        put32(m, off::FORMAT, g.map_or(0, |g| format_code(g.format)));
        put32(m, off::WIDTH, g.map_or(0, |g| g.width));
        put32(m, off::HEIGHT, g.map_or(0, |g| g.height));
        put32(m, off::SLOT_COUNT, if g.is_some() { self.slots } else { 0 });
        put32(m, off::PLANE_COUNT, planes.len() as u32);
        put64(m, off::SLOT_SIZE, slot_size as u64);
        put64(m, off::FRAME_SIZE, frame_size as u64);
        put32(m, off::WRITER_PID, std::process::id());
        put32(m, off::MODE, u32::from(self.mode == Mode::Replay));
        for (i, p) in planes.iter().enumerate() {
            let o = off::PLANES + PLANE_SIZE * i;
            for (j, v) in [p.offset, p.stride, p.row_bytes, p.rows].into_iter().enumerate() {
                put32(m, o + 4 * j, v as u32);
            }
        }
        put64(m, off::FPS_MILLI, self.fps_milli);
        put64(m, off::CREATED_NS, unix_ns(self.clock.wall()));
        for (o, name) in [(off::CAMERA, &self.camera), (off::OUTPUT, &self.output)] {
            let b = name.as_bytes();
            m.bytes_mut(o, b.len().min(63)).copy_from_slice(&b[..b.len().min(63)]);
        }
        self.map.u64_at(off::WRITE_SEQ).store(self.seq, Ordering::Release);
        self.map.u64_at(off::LAST_FRAME_ID).store(self.last_frame_id, Ordering::Relaxed);
        self.map.u64_at(off::SKIPPED_SIMILAR).store(self.skipped, Ordering::Relaxed);
        self.map.u64_at(off::LAST_SKIP_FRAME_ID).store(self.last_skip.0, Ordering::Relaxed);
        self.map.u64_at(off::LAST_SKIP_SIMILARITY).store(self.last_skip.1.to_bits(), Ordering::Relaxed);
        self.map.u32_at(off::FLAGS).store(flags, Ordering::Release);
    }

    /// Puts the new file (already at the temporary name) under the ring's name,
    /// then tells readers of the old one to reopen.
    fn install(&mut self) -> io::Result<()> {
        let old = OpenOptions::new().read(true).write(true).open(&self.path).ok();
        std::fs::rename(self.tmp_path(), &self.path)?;
        if let Some(old) = old
            && old.metadata().is_ok_and(|m| m.len() >= HEADER_SIZE as u64)
            && let Ok(map) = SharedMap::new(&old)
        {
            let mut magic = [0u8; 8];
            for (i, b) in magic.iter_mut().enumerate() {
                *b = (map.u64_at(off::MAGIC).load(Ordering::Relaxed) >> (8 * i)) as u8;
            }
            if &magic == MAGIC {
                close_map(&map);
            }
        }
        Ok(())
    }

    /// Lays the ring out for `g` if it is not already: a new file, renamed into place.
    pub fn ensure_geometry(&mut self, g: Geometry) -> io::Result<()> {
        if self.geometry == Some(g) {
            return Ok(());
        }
        let frame = (SLOT_HEADER + g.frame_size()).next_multiple_of(4096);
        let len = HEADER_SIZE + frame * self.slots as usize;
        self.reserve(len as u64, g)?;
        let (file, map) = Self::make_file(&self.path, len, self.perms)?;
        let old_map = std::mem::replace(&mut self.map, map);
        self.file = file;
        self.geometry = Some(g);
        self.write_header(READY);
        self.install()?;
        // The old file (the header-only one, or the old geometry): readers reopen.
        close_map(&old_map);
        Ok(())
    }

    /// Takes `len` bytes for the ring from the hub's memory budget (giving back what
    /// the old layout held), and checks the ring's filesystem has room for it: a
    /// ring is refused, with the figures, rather than filling RAM or `/dev/shm`.
    fn reserve(&mut self, len: u64, g: Geometry) -> io::Result<()> {
        let budget = &crate::telemetry::memory::GLOBAL;
        budget.give(self.reserved);
        let held = std::mem::take(&mut self.reserved);
        let refuse = |why: String| {
            budget.take(held);
            Err(io::Error::other(format!(
                "{} slots of {}x{} {:?} would take {}: {why}",
                self.slots,
                g.width,
                g.height,
                g.format,
                mib(len)
            )))
        };
        let free = rustix::fs::statvfs(self.path.parent().unwrap_or(Path::new("/")))
            .map(|v| v.f_bavail.saturating_mul(v.f_frsize))
            .unwrap_or(u64::MAX);
        if len > free.saturating_add(held) {
            return refuse(format!(
                "{} has only {} free",
                self.path.parent().unwrap_or(Path::new("/")).display(),
                mib(free)
            ));
        }
        if !budget.try_take(len) {
            return refuse(format!(
                "over the hub's memory_budget ({} of {} in use)",
                mib(budget.used()),
                mib(budget.limit())
            ));
        }
        self.reserved = len;
        Ok(())
    }

    /// Whether any reader holds its shared lock on the current file.
    pub fn attached(&self) -> bool {
        match flock(&self.file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                let _ = flock(&self.file, FlockOperation::Unlock);
                false
            }
            Err(_) => true,
        }
    }

    /// Registered readers whose process still exists.
    pub fn readers(&self) -> Vec<Reader> {
        (0..MAX_READERS)
            .filter_map(|k| {
                let o = off::READERS + READER_SIZE * k;
                let pid = self.map.u32_at(o + off::reader::PID).load(Ordering::Acquire);
                // A process that exists but is not ours to signal is alive too.
                let alive = rustix::process::Pid::from_raw(pid as i32).is_some_and(|p| {
                    matches!(rustix::process::test_kill_process(p), Ok(()) | Err(rustix::io::Errno::PERM))
                });
                alive.then(|| Reader {
                    pid,
                    read_seq: self.map.u64_at(o + off::reader::READ_SEQ).load(Ordering::Acquire),
                })
            })
            .collect()
    }

    /// Replay pacing: whether frame `seq + 1` may be written now, i.e. every
    /// registered reader is done with the frame it would overwrite. `None`: no
    /// reader is registered in this file (yet, or any more).
    pub fn may_write_next(&self) -> Option<bool> {
        let readers = self.readers();
        if readers.is_empty() {
            return None;
        }
        let oldest_kept = (self.seq + 1).saturating_sub(u64::from(self.slots));
        Some(readers.iter().all(|r| r.read_seq >= oldest_kept))
    }

    /// Notes a frame the output took but did not write (skipped as similar,
    /// `similarity` from the last published frame). A reader may see the id and
    /// the score of two successive skips mixed: both are for tuning, not sync.
    pub fn note_skipped(&mut self, frame_id: u64, similarity: f64) {
        self.skipped += 1;
        self.last_frame_id = frame_id;
        self.last_skip = (frame_id, similarity);
        self.map.u64_at(off::LAST_SKIP_SIMILARITY).store(similarity.to_bits(), Ordering::Relaxed);
        self.map.u64_at(off::LAST_SKIP_FRAME_ID).store(frame_id, Ordering::Relaxed);
        self.map.u64_at(off::SKIPPED_SIMILAR).store(self.skipped, Ordering::Relaxed);
        self.map.u64_at(off::LAST_FRAME_ID).store(frame_id, Ordering::Relaxed);
    }

    /// Publishes one frame: `fill` writes the pixels into the slot (planes at `Geometry::planes`).
    /// Returns the frame's sequence number and slot.
    pub fn publish(&mut self, meta: SlotMeta, fill: impl FnOnce(&mut [u8])) -> (u64, u32) {
        let g = self.geometry.expect("publish needs a geometry");
        let n = self.seq + 1;
        let slot = ((n - 1) % u64::from(self.slots)) as u32;
        let slot_size = (SLOT_HEADER + g.frame_size()).next_multiple_of(4096);
        let base = HEADER_SIZE + slot as usize * slot_size;
        self.map.u64_at(base + off::slot::SEQ_BEGIN).store(n, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        fill(self.map.bytes_mut(base + off::slot::PIXELS, g.frame_size()));
        let m = &self.map;
        m.u64_at(base + off::slot::FRAME_ID).store(meta.frame_id, Ordering::Relaxed);
        m.u64_at(base + off::slot::CAPTURED_NS).store(unix_ns(meta.captured), Ordering::Relaxed);
        m.u64_at(base + off::slot::DECODED_NS).store(unix_ns(meta.decoded), Ordering::Relaxed);
        let similarity = meta.similarity.unwrap_or(NOT_MEASURED);
        m.u64_at(base + off::slot::SIMILARITY).store(similarity.to_bits(), Ordering::Relaxed);
        m.u64_at(base + off::slot::PUBLISHED_NS).store(unix_ns(self.clock.wall()), Ordering::Relaxed);
        m.u64_at(base + off::slot::SEQ_END).store(n, Ordering::Release);
        m.u64_at(off::WRITE_SEQ).store(n, Ordering::Release);
        m.u64_at(off::LAST_FRAME_ID).store(meta.frame_id, Ordering::Relaxed);
        m.u32_at(off::NOTIFY).fetch_add(1, Ordering::Release);
        m.wake(off::NOTIFY);
        self.seq = n;
        self.last_frame_id = meta.frame_id;
        (n, slot)
    }

    /// Replay finished: no frame will follow.
    pub fn set_ended(&self) {
        set_flag(&self.map, ENDED);
    }
}

fn set_flag(map: &SharedMap, flag: u32) {
    map.u32_at(off::FLAGS).fetch_or(flag, Ordering::AcqRel);
    map.u32_at(off::NOTIFY).fetch_add(1, Ordering::Release);
    map.wake(off::NOTIFY);
}

fn close_map(map: &SharedMap) {
    set_flag(map, CLOSED);
}

impl Drop for RingWriter {
    /// The output is gone: readers are told, and the name is freed.
    fn drop(&mut self) {
        close_map(&self.map);
        // Only our own file: a replacement camera (config reload) may own the name by now.
        use std::os::unix::fs::MetadataExt;
        let ours = |m: std::fs::Metadata| self.file.metadata().is_ok_and(|f| f.ino() == m.ino() && f.dev() == m.dev());
        if std::fs::metadata(&self.path).is_ok_and(ours) {
            let _ = std::fs::remove_file(&self.path);
        }
        let _ = std::fs::remove_file(self.tmp_path());
        crate::telemetry::memory::GLOBAL.give(self.reserved);
    }
}

/// Bytes as MiB with one decimal, for messages.
fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

mod owner;
#[cfg(test)]
mod tests;
