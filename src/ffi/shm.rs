//! A shared-memory file mapped read-write: atomics at fixed offsets for the
//! fields other processes read or write concurrently, plain byte slices for the
//! pixels only this process writes, and a futex wake for waiting readers.

use std::fs::File;
use std::sync::atomic::{AtomicU32, AtomicU64};

pub struct SharedMap {
    map: memmap2::MmapMut,
}

impl SharedMap {
    pub fn new(file: &File) -> std::io::Result<SharedMap> {
        // SAFETY: the mapping is shared with other processes by design. Every
        // location they may write (reader table, header words) is only ever
        // accessed through the atomics below; the pixel bytes are written by this
        // process alone. The file is never truncated while mapped (a new geometry
        // gets a new file), so the memory stays valid for the map's lifetime.
        let map = unsafe { memmap2::MmapMut::map_mut(file)? };
        Ok(SharedMap { map })
    }

    fn checked_ptr(&self, offset: usize, size: usize) -> *mut u8 {
        assert!(offset.is_multiple_of(size) && offset + size <= self.map.len(), "bad atomic offset {offset}");
        // The map's base is page-aligned, so an offset aligned to `size` is too.
        self.map.as_ptr().wrapping_add(offset).cast_mut()
    }

    pub fn u64_at(&self, offset: usize) -> &AtomicU64 {
        let p = self.checked_ptr(offset, 8);
        // SAFETY: in bounds and 8-aligned (checked above); the mapping outlives the
        // returned reference; all concurrent access to these bytes is atomic.
        unsafe { AtomicU64::from_ptr(p.cast()) }
    }

    pub fn u32_at(&self, offset: usize) -> &AtomicU32 {
        let p = self.checked_ptr(offset, 4);
        // SAFETY: as for `u64_at`, with 4-byte alignment.
        unsafe { AtomicU32::from_ptr(p.cast()) }
    }

    /// Bytes only this process writes (pixels, names), for plain copies.
    pub fn bytes_mut(&mut self, offset: usize, len: usize) -> &mut [u8] {
        &mut self.map[offset..offset + len]
    }

    /// Wakes every process waiting (`FUTEX_WAIT`, shared) on the u32 at `offset`.
    pub fn wake(&self, offset: usize) {
        let word = self.u32_at(offset);
        let _ = rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), i32::MAX as u32);
    }
}
