//! libavutil's hardware device contexts (CUDA, VAAPI) for libavcodec's
//! decoders, and moving a decoded hardware picture into system memory.
//! ffmpeg-next has no safe API for either.

use std::sync::{Arc, OnceLock};

use ffmpeg_next::ffi as av;

/// A hardware device type a decoder may run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HwKind {
    Cuda,
    Vaapi,
}

impl HwKind {
    pub fn name(self) -> &'static str {
        match self {
            HwKind::Cuda => "cuda",
            HwKind::Vaapi => "vaapi",
        }
    }

    fn av(self) -> av::AVHWDeviceType {
        match self {
            HwKind::Cuda => av::AVHWDeviceType::AV_HWDEVICE_TYPE_CUDA,
            HwKind::Vaapi => av::AVHWDeviceType::AV_HWDEVICE_TYPE_VAAPI,
        }
    }

    /// Why the device cannot be there, checked before asking libavutil (whose
    /// own reason goes to its log, not to its caller).
    fn missing(self) -> Option<String> {
        let (dir, prefix, what) = match self {
            HwKind::Vaapi => ("/dev/dri", "renderD", "no /dev/dri/renderD* render node"),
            HwKind::Cuda => ("/dev", "nvidia", "no /dev/nvidia* device"),
        };
        let found = std::fs::read_dir(dir)
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(prefix)))
            .unwrap_or(false);
        (!found).then(|| what.to_owned())
    }
}

/// One reference to a hardware device context.
pub struct HwDevice {
    buf: *mut av::AVBufferRef,
    kind: HwKind,
}

// SAFETY: an AVBufferRef's reference count is atomic, and a device context is
// not changed after av_hwdevice_ctx_create initialised it; FFmpeg documents
// device contexts as usable from several threads and decoders at once (every
// decoder takes its own reference with av_buffer_ref).
unsafe impl Send for HwDevice {}
// SAFETY: as above; `&HwDevice` only lends the pointer to av_buffer_ref.
unsafe impl Sync for HwDevice {}

impl Drop for HwDevice {
    fn drop(&mut self) {
        // SAFETY: `buf` is the one reference this value owns; av_buffer_unref
        // frees it (and the device with its last reference) and nulls the pointer.
        unsafe { av::av_buffer_unref(&mut self.buf) };
    }
}

impl std::fmt::Debug for HwDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HwDevice({})", self.kind.name())
    }
}

impl HwDevice {
    fn create(kind: HwKind) -> Result<HwDevice, String> {
        if !compiled_in(kind) {
            return Err(format!("this FFmpeg build has no {} support", kind.name()));
        }
        if let Some(why) = kind.missing() {
            return Err(why);
        }
        let mut buf: *mut av::AVBufferRef = std::ptr::null_mut();
        // SAFETY: `buf` is a valid out-pointer; a null device name and options
        // ask for the default device; on success libavutil stores one new
        // reference in `buf`, which HwDevice then owns.
        let ret = unsafe { av::av_hwdevice_ctx_create(&mut buf, kind.av(), std::ptr::null(), std::ptr::null_mut(), 0) };
        if ret < 0 || buf.is_null() {
            return Err(format!("cannot open the {} device: {}", kind.name(), ffmpeg_next::Error::from(ret)));
        }
        Ok(HwDevice { buf, kind })
    }
}

/// Whether libavutil was built with `kind`.
fn compiled_in(kind: HwKind) -> bool {
    let mut t = av::AVHWDeviceType::AV_HWDEVICE_TYPE_NONE;
    loop {
        // SAFETY: av_hwdevice_iterate_types only reads a static table; NONE starts it and ends it.
        t = unsafe { av::av_hwdevice_iterate_types(t) };
        if t == av::AVHWDeviceType::AV_HWDEVICE_TYPE_NONE {
            return false;
        }
        if t == kind.av() {
            return true;
        }
    }
}

/// The process's device of `kind`, opened on first use and shared by every
/// decoder (a CUDA context costs hundreds of MB). `Err` says why there is none;
/// the answer is kept for the life of the process, so asking again is free.
pub fn hw_device(kind: HwKind) -> Result<Arc<HwDevice>, String> {
    static CUDA: OnceLock<Result<Arc<HwDevice>, String>> = OnceLock::new();
    static VAAPI: OnceLock<Result<Arc<HwDevice>, String>> = OnceLock::new();
    let cell = match kind {
        HwKind::Cuda => &CUDA,
        HwKind::Vaapi => &VAAPI,
    };
    cell.get_or_init(|| HwDevice::create(kind).map(Arc::new)).clone()
}

/// Whether `codec`'s decoder can decode on a device of `kind` given as a device context.
pub fn decoder_supports(codec: &ffmpeg_next::Codec, kind: HwKind) -> bool {
    for i in 0.. {
        // SAFETY: `codec` borrows a static AVCodec; avcodec_get_hw_config returns
        // a pointer into its static table, or null past its end.
        let cfg = unsafe { av::avcodec_get_hw_config(codec.as_ptr(), i) };
        if cfg.is_null() {
            return false;
        }
        // SAFETY: non-null, so it points at a live entry of that static table.
        let cfg = unsafe { &*cfg };
        if cfg.device_type == kind.av() && cfg.methods & av::AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX as i32 != 0 {
            return true;
        }
    }
    false
}

/// Makes `ctx` (not yet opened) decode on `device`: libavcodec's default
/// `get_format` then picks the device's pixel format, and the decoder's
/// pictures stay in device memory until `transfer_frame`.
pub fn attach_device(ctx: &mut ffmpeg_next::codec::context::Context, device: &HwDevice) -> Result<(), String> {
    // SAFETY: `device.buf` is a live reference; av_buffer_ref returns a new one
    // (or null when out of memory), which the codec context owns and frees
    // with itself. The context is not open yet, so no thread reads the field.
    unsafe {
        let r = av::av_buffer_ref(device.buf);
        if r.is_null() {
            return Err("out of memory referencing the device".to_owned());
        }
        let c = ctx.as_mut_ptr();
        av::av_buffer_unref(&mut (*c).hw_device_ctx);
        (*c).hw_device_ctx = r;
    }
    Ok(())
}

/// Whether `frame`'s picture lives in device memory.
pub fn is_hw_frame(frame: &ffmpeg_next::frame::Video) -> bool {
    // SAFETY: `frame` owns a live AVFrame; reading a pointer field is sound.
    unsafe { !(*frame.as_ptr()).hw_frames_ctx.is_null() }
}

/// Copies a device picture (`is_hw_frame`) into `dst` in system memory
/// (the device's software format, NV12 for 8-bit 4:2:0), with its pts and
/// other properties.
pub fn transfer_frame(src: &ffmpeg_next::frame::Video, dst: &mut ffmpeg_next::frame::Video) -> Result<(), String> {
    if !is_hw_frame(src) {
        return Err("not a hardware picture".to_owned());
    }
    // SAFETY: both frames own live AVFrames, distinct (one is borrowed mutably);
    // `dst` is unreferenced first so av_hwframe_transfer_data allocates its
    // buffers; av_frame_copy_props only copies metadata between the two.
    unsafe {
        av::av_frame_unref(dst.as_mut_ptr());
        let ret = av::av_hwframe_transfer_data(dst.as_mut_ptr(), src.as_ptr(), 0);
        if ret < 0 {
            return Err(format!("cannot copy the picture from the device: {}", ffmpeg_next::Error::from(ret)));
        }
        let ret = av::av_frame_copy_props(dst.as_mut_ptr(), src.as_ptr());
        if ret < 0 {
            return Err(format!("cannot copy the picture's properties: {}", ffmpeg_next::Error::from(ret)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_device_here_says_why_and_the_answer_is_kept() {
        // This machine has neither a GPU nor a VAAPI render node.
        for kind in [HwKind::Cuda, HwKind::Vaapi] {
            if kind.missing().is_none() {
                continue; // a machine with the device: nothing to check here
            }
            let e = hw_device(kind).unwrap_err();
            assert!(e.contains("no /dev/") || e.contains("no cuda") || e.contains("no vaapi"), "{e}");
            assert_eq!(hw_device(kind).unwrap_err(), e);
        }
        let h264 = ffmpeg_next::decoder::find(ffmpeg_next::codec::Id::H264).unwrap();
        // Debian's libavcodec has VAAPI hwaccels for H.264.
        assert!(decoder_supports(&h264, HwKind::Vaapi) || !compiled_in(HwKind::Vaapi));
    }

    #[test]
    fn a_software_picture_is_not_transferred() {
        let src = ffmpeg_next::frame::Video::new(ffmpeg_next::format::Pixel::YUV420P, 16, 16);
        let mut dst = ffmpeg_next::frame::Video::empty();
        assert!(!is_hw_frame(&src));
        assert!(transfer_frame(&src, &mut dst).is_err());
    }
}
