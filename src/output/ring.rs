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
use crate::ffi::SharedMap;

pub const MAGIC: &[u8; 8] = b"CAMHUBRG";
pub const VERSION: u32 = 1;
pub const HEADER_SIZE: usize = 4096;
pub const SLOT_HEADER: usize = 64;
pub const MAX_READERS: usize = 32;

pub const READY: u32 = 1;
pub const CLOSED: u32 = 2;
pub const ENDED: u32 = 4;

mod off {
    pub const FLAGS: usize = 16;
    pub const FORMAT: usize = 20;
    pub const WIDTH: usize = 24;
    pub const HEIGHT: usize = 28;
    pub const SLOT_COUNT: usize = 32;
    pub const PLANE_COUNT: usize = 36;
    pub const SLOT_SIZE: usize = 40;
    pub const FRAME_SIZE: usize = 48;
    pub const WRITER_PID: usize = 56;
    pub const MODE: usize = 60;
    pub const WRITE_SEQ: usize = 64;
    pub const NOTIFY: usize = 72;
    pub const PLANES: usize = 80;
    pub const LAST_FRAME_ID: usize = 144;
    pub const SKIPPED: usize = 152;
    pub const FPS_MILLI: usize = 160;
    pub const CREATED_NS: usize = 168;
    pub const CAMERA: usize = 256;
    pub const OUTPUT: usize = 320;
    pub const READERS: usize = 1024;
    // Within a slot.
    pub const SEQ_BEGIN: usize = 0;
    pub const FRAME_ID: usize = 8;
    pub const CAPTURED_NS: usize = 16;
    pub const PUBLISHED_NS: usize = 24;
    pub const DECODED_NS: usize = 32;
    pub const SEQ_END: usize = 56;
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

/// A pixel format's code in the header (docs/shm.md).
pub fn format_code(f: PixelFormat) -> u32 {
    match f {
        PixelFormat::Gray => 1,
        PixelFormat::I420 => 2,
        PixelFormat::Nv12 => 3,
        PixelFormat::Rgb24 => 4,
        PixelFormat::Bgr24 => 5,
    }
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
    clock: Clock,
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
}

impl RingWriter {
    /// Creates the ring, header only, replacing any file left under its name
    /// (a crashed hub's: its readers see CLOSED and reopen).
    pub fn create(dir: &Path, camera: &str, output: &str, spec: RingSpec, clock: Clock) -> io::Result<RingWriter> {
        let RingSpec { slots, perms, mode, fps } = spec;
        let fps_milli = fps_code(fps);
        let path = ring_path(dir, camera, output);
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
            clock,
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
        m.bytes_mut(0, 8).copy_from_slice(MAGIC);
        let put32 = |m: &mut SharedMap, o: usize, v: u32| m.bytes_mut(o, 4).copy_from_slice(&v.to_le_bytes());
        let put64 = |m: &mut SharedMap, o: usize, v: u64| m.bytes_mut(o, 8).copy_from_slice(&v.to_le_bytes());
        put32(m, 8, VERSION);
        put32(m, 12, HEADER_SIZE as u32);
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
            let o = off::PLANES + 16 * i;
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
        self.map.u64_at(off::SKIPPED).store(self.skipped, Ordering::Relaxed);
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
                *b = (map.u64_at(0).load(Ordering::Relaxed) >> (8 * i)) as u8;
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
        let (file, map) = Self::make_file(&self.path, HEADER_SIZE + frame * self.slots as usize, self.perms)?;
        let old_map = std::mem::replace(&mut self.map, map);
        self.file = file;
        self.geometry = Some(g);
        self.write_header(READY);
        self.install()?;
        // The old file (the header-only one, or the old geometry): readers reopen.
        close_map(&old_map);
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
                let o = off::READERS + 32 * k;
                let pid = self.map.u32_at(o).load(Ordering::Acquire);
                // A process that exists but is not ours to signal is alive too.
                let alive = rustix::process::Pid::from_raw(pid as i32).is_some_and(|p| {
                    matches!(rustix::process::test_kill_process(p), Ok(()) | Err(rustix::io::Errno::PERM))
                });
                alive.then(|| Reader { pid, read_seq: self.map.u64_at(o + 8).load(Ordering::Acquire) })
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

    /// Notes a frame the output took but did not write (skipped as similar).
    pub fn note_skipped(&mut self, frame_id: u64) {
        self.skipped += 1;
        self.last_frame_id = frame_id;
        self.map.u64_at(off::SKIPPED).store(self.skipped, Ordering::Relaxed);
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
        self.map.u64_at(base + off::SEQ_BEGIN).store(n, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        fill(self.map.bytes_mut(base + SLOT_HEADER, g.frame_size()));
        let m = &self.map;
        m.u64_at(base + off::FRAME_ID).store(meta.frame_id, Ordering::Relaxed);
        m.u64_at(base + off::CAPTURED_NS).store(unix_ns(meta.captured), Ordering::Relaxed);
        m.u64_at(base + off::DECODED_NS).store(unix_ns(meta.decoded), Ordering::Relaxed);
        m.u64_at(base + off::PUBLISHED_NS).store(unix_ns(self.clock.wall()), Ordering::Relaxed);
        m.u64_at(base + off::SEQ_END).store(n, Ordering::Release);
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("camhub-ring-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn header_slots_and_replacement_follow_the_documented_layout() {
        let d = dir("layout");
        let mut w = RingWriter::create(
            &d,
            "cam",
            "ai",
            RingSpec { slots: 3, perms: 0o640, mode: Mode::Live, fps: Fps::Rate(5.0) },
            Clock::real(),
        )
        .unwrap();
        let path = d.join("camhub.cam.ai");
        let header_only = std::fs::read(&path).unwrap();
        assert_eq!(header_only.len(), HEADER_SIZE);
        assert_eq!(&header_only[..8], MAGIC);
        assert_eq!(u32_at(&header_only, off::FLAGS), 0, "not READY before the first frame");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        let old = File::open(&path).unwrap();

        let g = Geometry { width: 6, height: 4, format: PixelFormat::I420 };
        w.ensure_geometry(g).unwrap();
        let mut old_header = vec![0u8; 32];
        std::os::unix::fs::FileExt::read_at(&old, &mut old_header, 0).unwrap();
        assert_eq!(u32_at(&old_header, off::FLAGS) & CLOSED, CLOSED, "readers of the old file are told to reopen");

        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        for i in 1..=4u64 {
            let meta = SlotMeta { frame_id: 100 + i, captured: t, decoded: t };
            let (seq, slot) = w.publish(meta, |px| px.fill(i as u8));
            assert_eq!((seq, slot), (i, ((i - 1) % 3) as u32));
        }
        let b = std::fs::read(&path).unwrap();
        assert_eq!(u32_at(&b, off::FLAGS), READY);
        assert_eq!((u32_at(&b, off::FORMAT), u32_at(&b, off::WIDTH), u32_at(&b, off::HEIGHT)), (2, 6, 4));
        assert_eq!((u32_at(&b, off::SLOT_COUNT), u32_at(&b, off::PLANE_COUNT)), (3, 3));
        let (slot_size, frame_size) = (u64_at(&b, off::SLOT_SIZE) as usize, u64_at(&b, off::FRAME_SIZE) as usize);
        assert_eq!(frame_size, 6 * 4 + 2 * 3 * 2);
        assert_eq!(slot_size % 4096, 0);
        assert_eq!(b.len(), HEADER_SIZE + 3 * slot_size);
        // Planes: Y 6x4, U and V 3x2, tight.
        let plane = |i: usize| (0..4).map(|j| u32_at(&b, off::PLANES + 16 * i + 4 * j)).collect::<Vec<_>>();
        assert_eq!(plane(0), vec![0, 6, 6, 4]);
        assert_eq!(plane(1), vec![24, 3, 3, 2]);
        assert_eq!(plane(2), vec![30, 3, 3, 2]);
        assert_eq!(u64_at(&b, off::WRITE_SEQ), 4);
        assert_eq!(u64_at(&b, off::FPS_MILLI), 5000);
        assert_eq!(&b[off::CAMERA..off::CAMERA + 4], b"cam\0");
        // Frame 4 overwrote slot 0; slot 2 still holds frame 3.
        for (slot, seq) in [(0usize, 4u64), (1, 2), (2, 3)] {
            let s = HEADER_SIZE + slot * slot_size;
            assert_eq!(u64_at(&b, s + off::SEQ_BEGIN), seq);
            assert_eq!(u64_at(&b, s + off::SEQ_END), seq);
            assert_eq!(u64_at(&b, s + off::FRAME_ID), 100 + seq);
            assert_eq!(u64_at(&b, s + off::CAPTURED_NS), 1_700_000_000_000_000_000);
            assert!(b[s + SLOT_HEADER..s + SLOT_HEADER + frame_size].iter().all(|v| u64::from(*v) == seq));
        }
        drop(w);
        assert!(!path.exists(), "a removed output frees its name");
    }

    #[test]
    fn a_replaced_writer_leaves_its_successors_file_alone() {
        let d = dir("successor");
        let old = RingWriter::create(
            &d,
            "cam",
            "ai",
            RingSpec { slots: 2, perms: 0o600, mode: Mode::Live, fps: Fps::All },
            Clock::real(),
        )
        .unwrap();
        let new = RingWriter::create(
            &d,
            "cam",
            "ai",
            RingSpec { slots: 2, perms: 0o600, mode: Mode::Live, fps: Fps::All },
            Clock::real(),
        )
        .unwrap();
        drop(old); // the old camera stops after the new one started (config reload)
        assert!(new.path().exists(), "the new camera's ring survives the old one's clean-up");
        drop(new);
        assert!(!d.join("camhub.cam.ai").exists());
    }

    #[test]
    fn a_crashed_hubs_ring_is_closed_and_replaced() {
        let d = dir("crash");
        let w = RingWriter::create(
            &d,
            "cam",
            "ai",
            RingSpec { slots: 2, perms: 0o600, mode: Mode::Live, fps: Fps::All },
            Clock::real(),
        )
        .unwrap();
        let path = w.path().to_path_buf();
        std::mem::forget(w); // a crash: no clean-up ran
        let stale = File::open(&path).unwrap();
        let _w2 = RingWriter::create(
            &d,
            "cam",
            "ai",
            RingSpec { slots: 2, perms: 0o600, mode: Mode::Live, fps: Fps::All },
            Clock::real(),
        )
        .unwrap();
        let mut h = vec![0u8; 32];
        std::os::unix::fs::FileExt::read_at(&stale, &mut h, 0).unwrap();
        assert_eq!(u32_at(&h, off::FLAGS) & CLOSED, CLOSED);
        let fresh = std::fs::read(&path).unwrap();
        assert_eq!(u32_at(&fresh, off::FLAGS) & CLOSED, 0);
    }

    #[test]
    fn readers_are_seen_by_lock_and_table_and_pace_replay() {
        let d = dir("readers");
        let mut w = RingWriter::create(
            &d,
            "cam",
            "ai",
            RingSpec { slots: 2, perms: 0o600, mode: Mode::Replay, fps: Fps::All },
            Clock::real(),
        )
        .unwrap();
        w.ensure_geometry(Geometry { width: 4, height: 2, format: PixelFormat::Gray }).unwrap();
        assert!(!w.attached());
        let reader = File::open(w.path()).unwrap();
        flock(&reader, FlockOperation::LockShared).unwrap();
        assert!(w.attached(), "a shared lock is an attached reader");
        // Register as the docs say: our own pid (alive), and a dead one.
        let me = std::process::id();
        w.map.u32_at(off::READERS).store(me, Ordering::Release);
        w.map.u32_at(off::READERS + 32).store(0x3fff_fff0, Ordering::Release);
        w.map.u64_at(off::READERS + 32 + 8).store(0, Ordering::Release);
        assert_eq!(w.readers().iter().map(|r| r.pid).collect::<Vec<_>>(), vec![me], "dead pids do not count");
        let now = Clock::real().wall();
        let meta = SlotMeta { frame_id: 1, captured: now, decoded: now };
        w.publish(meta, |_| {});
        w.publish(meta, |_| {});
        assert_eq!(w.may_write_next(), Some(false), "frame 3 would overwrite frame 1, which the reader still uses");
        w.map.u64_at(off::READERS + 8).store(1, Ordering::Release);
        assert_eq!(w.may_write_next(), Some(true));
        w.map.u32_at(off::READERS).store(0, Ordering::Release);
        assert_eq!(w.may_write_next(), None, "nobody registered");
        drop(reader);
        assert!(!w.attached(), "closing the file drops the lock");
    }
}
