use std::collections::BTreeMap;

use super::*;

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("camhub-ring-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A live two-slot ring of camera `cam`, output `ai`, in `d`.
fn live_ring(d: &Path) -> RingWriter {
    let spec = RingSpec { slots: 2, perms: 0o600, mode: Mode::Live, fps: Fps::All };
    RingWriter::create(d, "cam", "ai", spec, Clock::real()).unwrap()
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
        // Frame 4 was measured 0.25 from frame 3, the others not at all.
        let similarity = (i == 4).then_some(0.25);
        let meta = SlotMeta { frame_id: 100 + i, captured: t, decoded: t, similarity };
        let (seq, slot) = w.publish(meta, |px| px.fill(i as u8));
        assert_eq!((seq, slot), (i, ((i - 1) % 3) as u32));
    }
    w.note_skipped(105, 0.0125);
    let b = std::fs::read(&path).unwrap();
    assert_eq!(u32_at(&b, off::FLAGS), READY);
    assert_eq!((u32_at(&b, off::FORMAT), u32_at(&b, off::WIDTH), u32_at(&b, off::HEIGHT)), (2, 6, 4));
    assert_eq!((u32_at(&b, off::SLOT_COUNT), u32_at(&b, off::PLANE_COUNT)), (3, 3));
    let (slot_size, frame_size) = (u64_at(&b, off::SLOT_SIZE) as usize, u64_at(&b, off::FRAME_SIZE) as usize);
    assert_eq!(frame_size, 6 * 4 + 2 * 3 * 2);
    assert_eq!(slot_size % 4096, 0);
    assert_eq!(b.len(), HEADER_SIZE + 3 * slot_size);
    // Planes: Y 6x4, U and V 3x2, tight.
    let plane = |i: usize| (0..4).map(|j| u32_at(&b, off::PLANES + PLANE_SIZE * i + 4 * j)).collect::<Vec<_>>();
    assert_eq!(plane(0), vec![0, 6, 6, 4]);
    assert_eq!(plane(1), vec![24, 3, 3, 2]);
    assert_eq!(plane(2), vec![30, 3, 3, 2]);
    assert_eq!(u64_at(&b, off::WRITE_SEQ), 4);
    let f64_at = |o: usize| f64::from_bits(u64_at(&b, o));
    assert_eq!((u64_at(&b, off::LAST_SKIP_FRAME_ID), f64_at(off::LAST_SKIP_SIMILARITY)), (105, 0.0125));
    assert_eq!((u64_at(&b, off::SKIPPED_SIMILAR), u64_at(&b, off::LAST_FRAME_ID)), (1, 105));
    assert_eq!(u64_at(&b, off::FPS_MILLI), 5000);
    assert_eq!(&b[off::CAMERA..off::CAMERA + 4], b"cam\0");
    // Frame 4 overwrote slot 0; slot 2 still holds frame 3.
    for (slot, seq) in [(0usize, 4u64), (1, 2), (2, 3)] {
        let s = HEADER_SIZE + slot * slot_size;
        assert_eq!(u64_at(&b, s + off::slot::SEQ_BEGIN), seq);
        assert_eq!(u64_at(&b, s + off::slot::SEQ_END), seq);
        assert_eq!(u64_at(&b, s + off::slot::FRAME_ID), 100 + seq);
        assert_eq!(u64_at(&b, s + off::slot::CAPTURED_NS), 1_700_000_000_000_000_000);
        let similarity = if seq == 4 { 0.25 } else { NOT_MEASURED };
        assert_eq!(f64_at(s + off::slot::SIMILARITY), similarity);
        assert!(b[s + SLOT_HEADER..s + SLOT_HEADER + frame_size].iter().all(|v| u64::from(*v) == seq));
    }
    drop(w);
    assert!(!path.exists(), "a removed output frees its name");
}

#[test]
fn a_replaced_writer_leaves_its_successors_file_alone() {
    let d = dir("successor");
    let old = live_ring(&d);
    let new = live_ring(&d);
    drop(old); // the old camera stops after the new one started (config reload)
    assert!(new.path().exists(), "the new camera's ring survives the old one's clean-up");
    drop(new);
    assert!(!d.join("camhub.cam.ai").exists());
}

#[test]
fn a_crashed_hubs_ring_is_closed_and_replaced() {
    let d = dir("crash");
    let w = live_ring(&d);
    let path = w.path().to_path_buf();
    std::mem::forget(w); // a crash: no clean-up ran
    let stale = File::open(&path).unwrap();
    let _w2 = live_ring(&d);
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
    w.map.u32_at(off::READERS + READER_SIZE).store(0x3fff_fff0, Ordering::Release);
    w.map.u64_at(off::READERS + READER_SIZE + off::reader::READ_SEQ).store(0, Ordering::Release);
    assert_eq!(w.readers().iter().map(|r| r.pid).collect::<Vec<_>>(), vec![me], "dead pids do not count");
    let now = Clock::real().wall();
    let meta = SlotMeta { frame_id: 1, captured: now, decoded: now, similarity: None };
    w.publish(meta, |_| {});
    w.publish(meta, |_| {});
    assert_eq!(w.may_write_next(), Some(false), "frame 3 would overwrite frame 1, which the reader still uses");
    w.map.u64_at(off::READERS + off::reader::READ_SEQ).store(1, Ordering::Release);
    assert_eq!(w.may_write_next(), Some(true));
    w.map.u32_at(off::READERS).store(0, Ordering::Release);
    assert_eq!(w.may_write_next(), None, "nobody registered");
    drop(reader);
    assert!(!w.attached(), "closing the file drops the lock");
}

/// One row of a layout table in docs/shm.md.
struct Row {
    offset: usize,
    /// Entries and bytes per entry (`4 x 16 bytes`: 4, 16; `u64`: 1, 8); None for the pixels.
    size: Option<(usize, usize)>,
    field: String,
}

/// The layout tables of docs/shm.md (`| offset | type | field |`), in the document's
/// order; a field's name is the first word of its description.
fn documented_tables() -> Vec<Vec<Row>> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/shm.md")).unwrap();
    let mut tables = Vec::new();
    let mut table: Option<Vec<Row>> = None;
    for line in doc.lines() {
        let inner = line.trim().strip_prefix('|').and_then(|l| l.strip_suffix('|'));
        let cells: Vec<&str> = inner.map(|l| l.split('|').map(str::trim).collect()).unwrap_or_default();
        if cells == ["offset", "type", "field"] {
            table = Some(Vec::new());
            continue;
        }
        let Some(rows) = table.as_mut() else { continue };
        match cells[..] {
            [] => tables.extend(table.take()),
            [o, ..] if o.starts_with("---") => {}
            [offset, ty, field] => rows.push(Row {
                offset: offset.parse().unwrap_or_else(|_| panic!("docs/shm.md: offset in {line:?}")),
                size: size_of(ty).unwrap_or_else(|| panic!("docs/shm.md: type in {line:?}")),
                field: field.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap().into(),
            }),
            _ => panic!("docs/shm.md: a layout row with other than 3 cells: {line:?}"),
        }
    }
    tables.extend(table);
    tables
}

/// `u32`, `u64`, `[u8; N]`, `N bytes`, `N x M bytes`, or nothing (the pixels: Some(None)).
fn size_of(ty: &str) -> Option<Option<(usize, usize)>> {
    let ty = ty.trim_matches('`');
    let n = |s: &str| s.trim().parse::<usize>().ok();
    Some(Some(match ty {
        "" => return Some(None),
        "u32" => (1, 4),
        "u64" | "f64" => (1, 8),
        _ if ty.starts_with("[u8;") => (1, n(ty.strip_prefix("[u8;")?.strip_suffix(']')?)?),
        _ => match ty.strip_suffix(" bytes")?.split_once(" x ") {
            Some((count, size)) => (n(count)?, n(size)?),
            None => (1, n(ty.strip_suffix(" bytes")?)?),
        },
    }))
}

#[test]
fn offsets_are_the_documented_layout() {
    let tables = documented_tables();
    let ours = [
        ("header", off::FIELDS, HEADER_SIZE),
        ("slot", off::slot::FIELDS, SLOT_HEADER),
        ("reader table entry", off::reader::FIELDS, READER_SIZE),
    ];
    assert_eq!(tables.len(), ours.len(), "docs/shm.md: the layout tables are the header, a slot, a reader entry");
    for (rows, (table, fields, extent)) in tables.iter().zip(ours) {
        // Every documented field has its constant at its offset, and every constant is documented.
        let documented: BTreeMap<String, usize> =
            rows.iter().filter(|r| r.field != "reserved").map(|r| (r.field.to_uppercase(), r.offset)).collect();
        let constants: BTreeMap<String, usize> = fields.iter().map(|&(name, at)| (name.into(), at)).collect();
        assert_eq!(constants, documented, "src/output/ring.rs's {table} offsets (left) against docs/shm.md (right)");
        // The document itself: fields in order, aligned, not overlapping, inside the table's extent.
        for (i, r) in rows.iter().enumerate() {
            let Some((count, size)) = r.size else {
                assert_eq!(i, rows.len() - 1, "{table}: only the pixels, last, have no size");
                continue;
            };
            let end = rows.get(i + 1).map_or(extent, |next| next.offset);
            assert!(r.offset + count * size <= end, "{table}: {} at {} runs into what follows", r.field, r.offset);
            if count == 1 && size <= 8 {
                assert_eq!(r.offset % size, 0, "{table}: {} at {} is not aligned", r.field, r.offset);
            }
        }
    }
    let array = |name: &str| tables[0].iter().find(|r| r.field == name).and_then(|r| r.size);
    assert_eq!(array("planes"), Some((4, PLANE_SIZE)));
    assert_eq!(array("readers"), Some((MAX_READERS, READER_SIZE)));
}

#[test]
fn a_ring_owned_by_another_hub_is_refused_naming_its_pid() {
    use rustix::fs::{FlockOperation, flock};
    let d = dir("owned");
    let spec = RingSpec { slots: 2, perms: 0o600, mode: Mode::Live, fps: Fps::All };
    // Another hub's hold: its own open of the lock file, locked, with its PID inside.
    let lock_path = d.join("camhub.cam.ai.lock");
    let lock = File::options().read(true).write(true).create(true).truncate(true).open(&lock_path).unwrap();
    flock(&lock, FlockOperation::NonBlockingLockExclusive).unwrap();
    std::fs::write(&lock_path, "4242").unwrap();
    let Err(e) = RingWriter::create(&d, "cam", "ai", spec, Clock::real()) else { panic!("a second writer") };
    assert!(e.to_string().contains("another hub (pid 4242)"), "{e}");
    assert!(!d.join("camhub.cam.ai").exists(), "the owner's ring name is left alone");
    drop(lock); // that hub exits
    let w = RingWriter::create(&d, "cam", "ai", spec, Clock::real()).unwrap();
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), std::process::id().to_string());
    drop(w);
    assert!(!lock_path.exists() && !d.join("camhub.cam.ai").exists(), "both names are freed");
}
