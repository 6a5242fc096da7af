//! A ring file mapped shared: atomics at fixed offsets for the words other
//! processes read or write concurrently, plain bytes for what only this process
//! writes, and futex waits and wakes on the header's `notify` word.
//!
//! The ordering rules (docs/shm.md, "Writing and reading a frame"): the writer
//! stores `seq_begin`, fences (release), writes pixels and fields, then stores
//! `seq_end`, `write_seq` and `notify` with release; a reader loads `write_seq`
//! and `seq_end` with acquire, reads fields and pixels, fences (acquire), and
//! loads `seq_begin` to check nothing was overwritten meanwhile.

use std::io;
use std::os::fd::AsFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use rustix::mm::{MapFlags, ProtFlags};
use rustix::thread::futex;

pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every access that may race with
// another thread or process goes through the atomics below, and `bytes_mut`
// needs `&mut self`.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

/// How a futex wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The word changed, or a wake came (callers look again either way).
    Woken,
    TimedOut,
}

impl Mapping {
    /// Maps the whole file read-write, shared.
    pub fn new(fd: impl AsFd) -> io::Result<Mapping> {
        let len = rustix::fs::fstat(&fd)?.st_size as usize;
        Self::with_len(fd, len)
    }

    /// Maps the file's first `len` bytes read-write, shared.
    pub fn with_len(fd: impl AsFd, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty file cannot be mapped"));
        }
        // SAFETY: a fresh mapping at an address the kernel picks; nothing else
        // refers to it until it is returned.
        let p = unsafe {
            rustix::mm::mmap(std::ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::SHARED, fd, 0)?
        };
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The mapping's first byte (for views other languages build on it).
    pub fn address(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Whether a `size`-byte atomic fits at `offset` (in bounds and aligned).
    pub fn fits(&self, offset: usize, size: usize) -> bool {
        offset.is_multiple_of(size) && offset.checked_add(size).is_some_and(|end| end <= self.len)
    }

    fn checked_ptr(&self, offset: usize, size: usize) -> *mut u8 {
        assert!(self.fits(offset, size), "bad atomic offset {offset} (of {} bytes)", self.len);
        // The map's base is page-aligned, so an offset aligned to `size` is too.
        self.ptr.as_ptr().wrapping_add(offset)
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
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.len), "bytes {offset}+{len} outside the map");
        // SAFETY: in bounds (checked); `&mut self` keeps this process's other
        // accesses out for the slice's lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset), len) }
    }

    /// Wakes every process waiting (shared futex) on the u32 at `offset`.
    pub fn wake(&self, offset: usize) {
        let _ = futex::wake(self.u32_at(offset), futex::Flags::empty(), i32::MAX as u32);
    }

    /// Sleeps while the u32 at `offset` equals `expected`, at most `timeout`
    /// (None: until woken). A spurious wake-up returns `Woken`: look again.
    pub fn wait(&self, offset: usize, expected: u32, timeout: Option<Duration>) -> Waited {
        let ts = timeout.map(timespec);
        match futex::wait(self.u32_at(offset), futex::Flags::empty(), expected, ts.as_ref()) {
            Err(rustix::io::Errno::TIMEDOUT) => Waited::TimedOut,
            Ok(()) | Err(_) => Waited::Woken,
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `with_len` with this length, and no
        // reference into it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn timespec(d: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec { tv_sec: d.as_secs() as i64, tv_nsec: i64::from(d.subsec_nanos()) }
}

/// Sleeps until any of `words` no longer holds its expected value (or a wake
/// comes for it), at most `timeout` (None: no limit). Returns the index of a
/// word that changed, or None when the time ran out. One system call for all
/// of them (`futex_waitv`, Linux 5.16+); on older kernels, slices of 1 ms on
/// the first word. At most 128 words (the kernel's limit).
pub fn wait_any(words: &[(&AtomicU32, u32)], timeout: Option<Duration>) -> io::Result<Option<usize>> {
    use std::sync::atomic::Ordering::Acquire;
    if words.len() > 128 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "at most 128 words at once"));
    }
    let changed = || words.iter().position(|(w, v)| w.load(Acquire) != *v);
    let start = std::time::Instant::now();
    let left = || timeout.map(|t| t.saturating_sub(start.elapsed()));
    loop {
        if let Some(i) = changed() {
            return Ok(Some(i));
        }
        if words.is_empty() || left() == Some(Duration::ZERO) {
            if words.is_empty()
                && let Some(t) = left()
            {
                std::thread::sleep(t);
            }
            return Ok(None);
        }
        match waitv(words, left()) {
            Ok(i) => {
                if words[i].0.load(Acquire) != words[i].1 {
                    return Ok(Some(i));
                }
            }
            Err(rustix::io::Errno::TIMEDOUT) => return Ok(changed()),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::NOSYS) => {
                let slice = left().map_or(Duration::from_millis(1), |l| l.min(Duration::from_millis(1)));
                let _ = futex::wait(words[0].0, futex::Flags::empty(), words[0].1, Some(&timespec(slice)));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// One `futex_waitv` over shared u32 words, `timeout` from now.
fn waitv(words: &[(&AtomicU32, u32)], timeout: Option<Duration>) -> rustix::io::Result<usize> {
    let waiters: Vec<futex::Wait> = words
        .iter()
        .map(|(w, v)| {
            let mut x = futex::Wait::new();
            x.val = u64::from(*v);
            x.uaddr = futex::WaitPtr::new(w.as_ptr().cast());
            x.flags = futex::WaitFlags::SIZE_U32;
            x
        })
        .collect();
    // futex_waitv takes an absolute time on the clock it is given.
    let deadline = timeout.map(|t| {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let ns = now.tv_nsec as u128 + t.subsec_nanos() as u128;
        rustix::time::Timespec {
            tv_sec: now.tv_sec.saturating_add(t.as_secs() as i64).saturating_add((ns / 1_000_000_000) as i64),
            tv_nsec: (ns % 1_000_000_000) as i64,
        }
    });
    futex::waitv(&waiters, futex::WaitvFlags::empty(), deadline.as_ref(), rustix::time::ClockId::Monotonic)
}

#[cfg(test)]
mod tests;
