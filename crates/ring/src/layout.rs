//! The ring file's layout: a byte offset per field, one table per table of
//! docs/shm.md ("Layout"), named as the document names them.

pub const MAGIC: &[u8; 8] = b"CAMHUBRG";
pub const VERSION: u32 = 1;
pub const HEADER_SIZE: usize = 4096;
pub const SLOT_HEADER: usize = slot::PIXELS;
/// A slot's `similarity` when none was measured (no `skip_similar`, or the first frame).
pub const NOT_MEASURED: f64 = -1.0;
pub const MAX_READERS: usize = 32;
/// The byte of the header readers lock (`lockf`) while they change the reader table.
pub const TABLE_LOCK_BYTE: usize = 4095;

/// Header flags.
pub const READY: u32 = 1;
pub const CLOSED: u32 = 2;
pub const ENDED: u32 = 4;

/// Header `mode`.
pub const LIVE: u32 = 0;
pub const REPLAY: u32 = 1;

/// Bytes per entry of the header's plane array (4 entries) and reader table (`MAX_READERS`).
pub const PLANE_SIZE: usize = 16;
pub const READER_SIZE: usize = 32;

/// Pixel formats by their header code: (code, name, planes).
pub const FORMATS: &[(u32, &str, u32)] =
    &[(1, "gray", 1), (2, "i420", 3), (3, "nv12", 2), (4, "rgb24", 1), (5, "bgr24", 1)];

/// One table of the layout: a byte offset per field, and `FIELDS`, the table
/// itself (for the tests that hold it against docs/shm.md, and for readers that
/// take the offsets by name).
macro_rules! layout {
    ($($(#[$attr:meta])* $name:ident = $at:literal,)*) => {
        $($(#[$attr])* pub const $name: usize = $at;)*
        pub const FIELDS: &[(&str, usize)] = &[$((stringify!($name), $name)),*];
    };
}

/// The header's fields.
pub mod header {
    layout! {
        MAGIC = 0,
        VERSION = 8,
        HEADER_SIZE = 12,
        FLAGS = 16,
        FORMAT = 20,
        WIDTH = 24,
        HEIGHT = 28,
        SLOT_COUNT = 32,
        PLANE_COUNT = 36,
        SLOT_SIZE = 40,
        FRAME_SIZE = 48,
        WRITER_PID = 56,
        MODE = 60,
        WRITE_SEQ = 64,
        NOTIFY = 72,
        PLANES = 80,
        LAST_FRAME_ID = 144,
        SKIPPED_SIMILAR = 152,
        FPS_MILLI = 160,
        CREATED_NS = 168,
        LAST_SKIP_FRAME_ID = 176,
        LAST_SKIP_SIMILARITY = 184,
        CAMERA = 256,
        OUTPUT = 320,
        READERS = 1024,
    }
}

/// A slot's fields, from the slot's start.
pub mod slot {
    layout! {
        SEQ_BEGIN = 0,
        FRAME_ID = 8,
        CAPTURED_NS = 16,
        PUBLISHED_NS = 24,
        DECODED_NS = 32,
        SIMILARITY = 40,
        SEQ_END = 56,
        PIXELS = 64,
    }
}

/// A reader table entry's fields, from the entry's start.
pub mod reader {
    layout! {
        PID = 0,
        READ_SEQ = 8,
        HEARTBEAT_NS = 16,
    }
}

// The reader table ends before the byte readers lock; the plane array before the next field.
const _: () = assert!(header::READERS + READER_SIZE * MAX_READERS <= TABLE_LOCK_BYTE);
const _: () = assert!(header::PLANES + PLANE_SIZE * 4 <= header::LAST_FRAME_ID);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_aligned_for_their_atomics_and_inside_their_tables() {
        for (name, at) in header::FIELDS {
            assert!(at % 4 == 0 && *at < HEADER_SIZE, "header {name} at {at}");
        }
        for (name, at) in slot::FIELDS {
            assert!(at % 8 == 0 && *at <= SLOT_HEADER, "slot {name} at {at}");
        }
        for (name, at) in reader::FIELDS {
            assert!(at % 8 == 0 && *at < READER_SIZE, "reader {name} at {at}");
        }
    }
}
