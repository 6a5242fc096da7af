//! JPEG from a decoded frame. Planar YUV goes straight to libjpeg-turbo (video
//! range is stretched to JPEG's full range on the way); a resize or any other
//! pixel format goes through swscale first.

use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling;
use ffmpeg_next::util::color::Range;

use crate::error::{Error, ErrorKind, Result};
use crate::ffi::{Subsampling, compress_yuv_planes};
use crate::media::Frame;

/// The size a picture of `src` gets for a requested width and/or height, aspect kept:
/// one side given scales the other; both given fit the picture inside that box.
/// Never larger than `src`: a request above the source's size gets the source's
/// size (upscaling adds no detail, only work: 8192 px streams saturated the
/// hub's cores). Rounded to even numbers (chroma is subsampled by two).
pub fn fit_size(src: (u32, u32), width: Option<u32>, height: Option<u32>) -> (u32, u32) {
    let (sw, sh) = (src.0.max(1) as f64, src.1.max(1) as f64);
    let scale = match (width, height) {
        (None, None) => return src,
        (Some(w), None) => w as f64 / sw,
        (None, Some(h)) => h as f64 / sh,
        (Some(w), Some(h)) => (w as f64 / sw).min(h as f64 / sh),
    };
    if scale >= 1.0 {
        return src;
    }
    // Below 1 the rounding cannot pass an even side, nor an odd one (x < 2k+1 rounds to at most 2k).
    let even = |v: f64| ((v / 2.0).round() as u32 * 2).max(2);
    (even(sw * scale), even(sh * scale))
}

/// Width and height from a JPEG's frame header, without decoding it.
pub fn jpeg_size(data: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    while i + 9 < data.len() {
        if data[i] != 0xFF {
            return None;
        }
        let marker = data[i + 1];
        let len = usize::from(data[i + 2]) << 8 | usize::from(data[i + 3]);
        // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            let h = u32::from(data[i + 5]) << 8 | u32::from(data[i + 6]);
            let w = u32::from(data[i + 7]) << 8 | u32::from(data[i + 8]);
            return Some((w, h));
        }
        i += 2 + len;
    }
    None
}

fn subsampling(p: Pixel) -> Option<(Subsampling, bool)> {
    Some(match p {
        Pixel::YUV420P => (Subsampling::S420, false),
        Pixel::YUVJ420P => (Subsampling::S420, true),
        Pixel::YUV422P => (Subsampling::S422, false),
        Pixel::YUVJ422P => (Subsampling::S422, true),
        Pixel::YUV444P => (Subsampling::S444, false),
        Pixel::YUVJ444P => (Subsampling::S444, true),
        Pixel::GRAY8 => (Subsampling::Gray, false),
        _ => return None,
    })
}

/// Encodes `frame` at `quality`, scaled to `size` (from `fit_size`).
pub fn encode_jpeg(frame: &Frame, quality: u8, size: (u32, u32)) -> Result<Vec<u8>> {
    let v = frame.video();
    let same_size = size == (v.width(), v.height());
    let direct = subsampling(v.format()).filter(|_| same_size);
    let err = |e: String| Error::new(ErrorKind::Internal, e);
    match direct {
        Some((sub, full)) if full || v.color_range() == Range::JPEG => {
            let (planes, strides) = if sub == Subsampling::Gray {
                ([v.data(0); 3], [v.stride(0); 3])
            } else {
                ([v.data(0), v.data(1), v.data(2)], [v.stride(0), v.stride(1), v.stride(2)])
            };
            compress_yuv_planes(planes, strides, v.width() as usize, v.height() as usize, sub, quality).map_err(err)
        }
        Some((sub, _)) => {
            // Video range (16-235) to JPEG's full range, through a lookup table.
            let (w, h) = (v.width() as usize, v.height() as usize);
            let n = if sub == Subsampling::Gray { 1 } else { 3 };
            let mut owned: Vec<Vec<u8>> = Vec::with_capacity(n);
            let mut dims = Vec::with_capacity(n);
            for i in 0..n {
                let pw = if i == 0 { w } else { v.plane_width(i) as usize };
                let ph = if i == 0 { h } else { v.plane_height(i) as usize };
                let lut = if i == 0 { &*LUMA } else { &*CHROMA };
                let (src, stride) = (v.data(i), v.stride(i));
                let mut dst = vec![0u8; pw * ph];
                for (row, out) in dst.chunks_exact_mut(pw).enumerate() {
                    let line = &src[row * stride..row * stride + pw];
                    for (o, s) in out.iter_mut().zip(line) {
                        *o = lut[*s as usize];
                    }
                }
                owned.push(dst);
                dims.push(pw);
            }
            let (planes, strides) = if n == 1 {
                ([&owned[0][..]; 3], [dims[0]; 3])
            } else {
                ([&owned[0][..], &owned[1][..], &owned[2][..]], [dims[0], dims[1], dims[2]])
            };
            compress_yuv_planes(planes, strides, w, h, sub, quality).map_err(err)
        }
        None => {
            let mut scaler = scaling::Context::get(
                v.format(),
                v.width(),
                v.height(),
                Pixel::YUVJ420P,
                size.0,
                size.1,
                scaling::Flags::BILINEAR,
            )
            .map_err(|e| err(format!("cannot scale {:?} to {}x{}: {e}", v.format(), size.0, size.1)))?;
            let mut out = ffmpeg_next::frame::Video::empty();
            scaler.run(v, &mut out).map_err(|e| err(format!("scaling failed: {e}")))?;
            compress_yuv_planes(
                [out.data(0), out.data(1), out.data(2)],
                [out.stride(0), out.stride(1), out.stride(2)],
                size.0 as usize,
                size.1 as usize,
                Subsampling::S420,
                quality,
            )
            .map_err(err)
        }
    }
}

static LUMA: std::sync::LazyLock<[u8; 256]> = std::sync::LazyLock::new(|| lut(|y| (y - 16.0) * 255.0 / 219.0));
static CHROMA: std::sync::LazyLock<[u8; 256]> =
    std::sync::LazyLock::new(|| lut(|c| (c - 128.0) * 255.0 / 224.0 + 128.0));

fn lut(f: impl Fn(f64) -> f64) -> [u8; 256] {
    std::array::from_fn(|i| f(i as f64).round().clamp(0.0, 255.0) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_size_keeps_aspect_and_even_sides() {
        assert_eq!(fit_size((1280, 720), None, None), (1280, 720));
        assert_eq!(fit_size((1280, 720), Some(320), None), (320, 180));
        assert_eq!(fit_size((1280, 720), None, Some(90)), (160, 90));
        assert_eq!(fit_size((1280, 720), Some(320), Some(320)), (320, 180));
        assert_eq!(fit_size((640, 360), Some(101), None), (102, 56));
        assert_eq!(fit_size((640, 360), Some(1), None), (2, 2));
    }

    #[test]
    fn fit_size_never_scales_above_the_source() {
        assert_eq!(fit_size((640, 360), Some(8192), None), (640, 360));
        assert_eq!(fit_size((640, 360), None, Some(8192)), (640, 360));
        assert_eq!(fit_size((640, 360), Some(8192), Some(8192)), (640, 360));
        assert_eq!(fit_size((640, 360), Some(640), None), (640, 360));
        assert_eq!(fit_size((640, 360), Some(641), None), (640, 360));
        // A box larger on one side only still fits the picture to the other.
        assert_eq!(fit_size((640, 360), Some(8192), Some(180)), (320, 180));
        // Odd sources keep their size, and a scale just below 1 never rounds up past them.
        assert_eq!(fit_size((641, 361), Some(4000), None), (641, 361));
        for w in 600..641 {
            let (fw, fh) = fit_size((641, 361), Some(w), None);
            assert!(fw <= 641 && fh <= 361, "{w}: {fw}x{fh}");
        }
    }

    #[test]
    fn range_tables_stretch_video_range_to_full() {
        assert_eq!(LUMA[16], 0);
        assert_eq!(LUMA[235], 255);
        assert_eq!(CHROMA[128], 128);
        assert!(CHROMA[16] <= 1, "{}", CHROMA[16]);
        assert!(CHROMA[240] >= 254, "{}", CHROMA[240]);
    }
}
