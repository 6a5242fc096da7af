//! libjpeg-turbo's TurboJPEG API (Debian's libturbojpeg), used to make a JPEG
//! straight from decoded Y/U/V planes with no colour conversion.

use std::cell::RefCell;
use std::ffi::{CStr, c_char, c_int, c_uchar, c_ulong, c_void};

type Handle = *mut c_void;

#[link(name = "turbojpeg")]
unsafe extern "C" {
    fn tjInitCompress() -> Handle;
    fn tjDestroy(handle: Handle) -> c_int;
    fn tjFree(buffer: *mut c_uchar);
    fn tjGetErrorStr2(handle: Handle) -> *mut c_char;
    fn tjCompressFromYUVPlanes(
        handle: Handle,
        src_planes: *const *const c_uchar,
        width: c_int,
        strides: *const c_int,
        height: c_int,
        subsamp: c_int,
        jpeg_buf: *mut *mut c_uchar,
        jpeg_size: *mut c_ulong,
        jpeg_qual: c_int,
        flags: c_int,
    ) -> c_int;
}

const TJFLAG_FASTDCT: c_int = 2048;

/// Chroma subsampling of the planes handed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subsampling {
    S444 = 0,
    S422 = 1,
    S420 = 2,
    Gray = 3,
}

impl Subsampling {
    /// Chroma plane size for a `w`x`h` picture.
    fn chroma(self, w: usize, h: usize) -> (usize, usize) {
        match self {
            Subsampling::S444 => (w, h),
            Subsampling::S422 => (w.div_ceil(2), h),
            Subsampling::S420 => (w.div_ceil(2), h.div_ceil(2)),
            Subsampling::Gray => (0, 0),
        }
    }
}

struct Compressor(Handle);

impl Drop for Compressor {
    fn drop(&mut self) {
        // SAFETY: the handle came from tjInitCompress and is destroyed once.
        unsafe { tjDestroy(self.0) };
    }
}

thread_local! {
    // One compressor per encoding thread: creating one costs more than a small encode.
    static COMPRESSOR: RefCell<Option<Compressor>> = const { RefCell::new(None) };
}

/// Encodes planes (Y, then U and V unless `Gray`) with their strides into a JPEG.
pub fn compress_yuv_planes(
    planes: [&[u8]; 3],
    strides: [usize; 3],
    width: usize,
    height: usize,
    subsampling: Subsampling,
    quality: u8,
) -> Result<Vec<u8>, String> {
    if width == 0 || height == 0 || width > 65500 || height > 65500 {
        return Err(format!("bad picture size {width}x{height}"));
    }
    // Check that every row the library will read lies inside its plane.
    let (cw, ch) = subsampling.chroma(width, height);
    let need = |stride: usize, w: usize, h: usize| if h == 0 { 0 } else { stride * (h - 1) + w };
    let nplanes = if subsampling == Subsampling::Gray { 1 } else { 3 };
    for i in 0..nplanes {
        let (w, h) = if i == 0 { (width, height) } else { (cw, ch) };
        if strides[i] < w || planes[i].len() < need(strides[i], w, h) {
            return Err(format!("plane {i} is too small for {width}x{height}"));
        }
    }
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            // SAFETY: plain constructor; a null return is checked below.
            let h = unsafe { tjInitCompress() };
            if h.is_null() {
                return Err("tjInitCompress failed".to_string());
            }
            *c = Some(Compressor(h));
        }
        let handle = c.as_ref().map(|c| c.0).unwrap_or(std::ptr::null_mut());
        let ptrs: [*const c_uchar; 3] = [planes[0].as_ptr(), planes[1].as_ptr(), planes[2].as_ptr()];
        let strides_c: [c_int; 3] = [strides[0] as c_int, strides[1] as c_int, strides[2] as c_int];
        let mut buf: *mut c_uchar = std::ptr::null_mut();
        let mut size: c_ulong = 0;
        // SAFETY: the planes were checked above to cover every row read for this
        // size and subsampling; the library allocates `buf` (freed below with tjFree).
        let rc = unsafe {
            tjCompressFromYUVPlanes(
                handle,
                ptrs.as_ptr(),
                width as c_int,
                strides_c.as_ptr(),
                height as c_int,
                subsampling as c_int,
                &mut buf,
                &mut size,
                c_int::from(quality.clamp(1, 100)),
                TJFLAG_FASTDCT,
            )
        };
        let result = if rc == 0 && !buf.is_null() {
            // SAFETY: on success buf holds `size` bytes written by the library.
            Ok(unsafe { std::slice::from_raw_parts(buf, size as usize) }.to_vec())
        } else {
            // SAFETY: the error string belongs to the handle and is NUL-terminated.
            let msg = unsafe { CStr::from_ptr(tjGetErrorStr2(handle)) };
            Err(format!("JPEG encode failed: {}", msg.to_string_lossy()))
        };
        if !buf.is_null() {
            // SAFETY: buf was allocated by the library for this call.
            unsafe { tjFree(buf) };
        }
        result
    })
}
