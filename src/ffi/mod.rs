//! The only `unsafe` in camhub: the few C calls the safe crates lack.
//! Each block says why it is sound.
#![allow(unsafe_code)]

mod hwaccel;
mod turbojpeg;
pub mod versions;

pub use hwaccel::{HwDevice, HwKind, attach_device, decoder_supports, hw_device, is_hw_frame, transfer_frame};
pub use turbojpeg::{Subsampling, compress_yuv_planes};

/// The codec extradata (`avcC`, `hvcC`, or Annex B parameter sets) of a stream.
pub fn stream_extradata(stream: &ffmpeg_next::format::stream::Stream) -> Vec<u8> {
    // SAFETY: `stream` borrows a live AVStream owned by its format context; its
    // codecpar and extradata stay valid and unchanged while that borrow lasts,
    // and extradata_size is the length libavformat allocated.
    unsafe {
        let par = (*stream.as_ptr()).codecpar;
        if par.is_null() || (*par).extradata.is_null() || (*par).extradata_size <= 0 {
            return Vec::new();
        }
        std::slice::from_raw_parts((*par).extradata, (*par).extradata_size as usize).to_vec()
    }
}

unsafe extern "C" {
    /// glibc: gives free heap memory at the top of each arena, and free whole
    /// pages inside them, back to the kernel.
    fn malloc_trim(pad: usize) -> std::ffi::c_int;
}

static TRIM_PENDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Returns freed heap memory to the system, soon: a stopped decoder's picture
/// pools (tens of MB at 720p) are freed to glibc's arenas, which keep them
/// unless trimmed. Returns at once (the trims run on a thread of their own); the calls of many
/// decoders stopping together (a dashboard closed) coalesce into one trim a
/// moment after the first, and one 15 s later.
pub fn trim_heap_soon() {
    use std::sync::atomic::Ordering;
    if TRIM_PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    // On a thread of its own: the caller (a decoder thread that its camera joins
    // when it stops) must not wait for it.
    let spawned = std::thread::Builder::new().name("heap-trim".into()).spawn(|| {
        // Once soon, and once more after the threads that served the burst (tokio's
        // blocking pool keeps idle threads 10 s) have ended and freed their caches.
        for wait in [500, 15_000] {
            std::thread::sleep(std::time::Duration::from_millis(wait));
            // SAFETY: malloc_trim takes no pointers and only walks glibc's own arenas
            // under their locks; it is safe to call from any thread at any time.
            unsafe {
                malloc_trim(0);
            }
        }
        TRIM_PENDING.store(false, Ordering::Release);
    });
    if spawned.is_err() {
        TRIM_PENDING.store(false, Ordering::Release);
    }
}

unsafe extern "C" {
    fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
}

/// glibc's `M_MMAP_THRESHOLD`.
const M_MMAP_THRESHOLD: std::ffi::c_int = -3;

/// Fixes glibc's mmap threshold at `bytes`: larger blocks are mapped on their
/// own and unmapped when freed. Left dynamic, glibc raises the threshold to the
/// size of each large block freed (up to 32 MiB), after which such blocks come
/// from its arenas and stay resident once freed.
pub fn fix_mmap_threshold(bytes: i32) -> bool {
    // SAFETY: mallopt takes two integers and adjusts glibc's own settings under
    // its lock; any value is accepted or refused (0), never undefined.
    unsafe { mallopt(M_MMAP_THRESHOLD, bytes) == 1 }
}

/// Lets `auth` challenge with both Basic and Digest: the bindings take one
/// `RTSPAuthMethod` at a time, the C call a bit set.
pub fn rtsp_auth_basic_and_digest(auth: &gstreamer_rtsp_server::RTSPAuth) {
    use gstreamer::glib::translate::ToGlibPtr;
    let methods = gstreamer_rtsp::ffi::GST_RTSP_AUTH_BASIC | gstreamer_rtsp::ffi::GST_RTSP_AUTH_DIGEST;
    // SAFETY: `auth` is a live GstRTSPAuth for the call; the setter takes the
    // object's lock and stores the integer.
    unsafe {
        gstreamer_rtsp_server::ffi::gst_rtsp_auth_set_supported_methods(auth.to_glib_none().0, methods);
    }
}
