//! Frames into the size and pixel format an output asks for: swscale once per
//! (frame, geometry), shared by every output that asks for the same, then copied
//! row by row into a ring slot.

use std::collections::HashMap;

use ffmpeg_next::format::Pixel;
use ffmpeg_next::frame::Video;
use ffmpeg_next::software::scaling;

use super::ring::Geometry;
use crate::config::PixelFormat;
use crate::encode::fit_size;
use crate::error::{Error, ErrorKind, Result};
use crate::media::Frame;

/// The geometry a frame takes for an output's width, height and format.
pub fn target(frame: &Frame, width: Option<u32>, height: Option<u32>, format: PixelFormat) -> Geometry {
    let (w, h) = fit_size((frame.width(), frame.height()), width, height);
    Geometry { width: w, height: h, format }
}

fn av_pixel(f: PixelFormat) -> Pixel {
    match f {
        PixelFormat::Gray => Pixel::GRAY8,
        PixelFormat::I420 => Pixel::YUV420P,
        PixelFormat::Nv12 => Pixel::NV12,
        PixelFormat::Rgb24 => Pixel::RGB24,
        PixelFormat::Bgr24 => Pixel::BGR24,
    }
}

type ScalerKey = (Pixel, u32, u32, Geometry);

/// Conversions of the current frame, and the scalers that made them (kept
/// across frames; one per source and target geometry).
#[derive(Default)]
pub struct Converter {
    scalers: Vec<(ScalerKey, scaling::Context)>,
    frame_id: u64,
    done: HashMap<Geometry, Video>,
    /// The last frame's conversions, whose buffers the next frame's reuse: a new
    /// 720p BGR picture each frame would be a fresh 2.7 MB mapping (glibc maps
    /// blocks over 128 KiB, `return_freed_memory_promptly`), page-faulted in anew.
    spare: HashMap<Geometry, Video>,
    /// Conversions made (one per frame and distinct geometry).
    pub conversions: u64,
}

impl Converter {
    /// Whether the frame's own planes are already what `g` asks for.
    fn direct(frame: &Frame, g: Geometry) -> bool {
        g.format == PixelFormat::I420
            && (frame.width(), frame.height()) == (g.width, g.height)
            && matches!(frame.format(), Pixel::YUV420P | Pixel::YUVJ420P)
    }

    /// `frame` in geometry `g`: converted at most once per frame.
    pub fn get<'a>(&'a mut self, frame: &'a Frame, g: Geometry) -> Result<&'a Video> {
        if Self::direct(frame, g) {
            return Ok(frame.video());
        }
        if self.frame_id != frame.frame_id {
            self.frame_id = frame.frame_id;
            self.spare.clear();
            self.spare.extend(self.done.drain());
        }
        if !self.done.contains_key(&g) {
            let v = frame.video();
            let key = (v.format(), v.width(), v.height(), g);
            let err = |e: String| Error::new(ErrorKind::Internal, e);
            let found = self.scalers.iter().position(|(k, _)| *k == key);
            let at = if let Some(i) = found {
                i
            } else {
                if self.scalers.len() >= 16 {
                    self.scalers.clear();
                }
                let ctx = scaling::Context::get(
                    v.format(),
                    v.width(),
                    v.height(),
                    av_pixel(g.format),
                    g.width,
                    g.height,
                    scaling::Flags::BILINEAR,
                )
                .map_err(|e| {
                    err(format!("cannot convert {:?} to {}x{} {}: {e}", v.format(), g.width, g.height, g.format.name()))
                })?;
                self.scalers.push((key, ctx));
                self.scalers.len() - 1
            };
            let target = (av_pixel(g.format), g.width, g.height);
            let mut out = match self.spare.remove(&g) {
                Some(v) if (v.format(), v.width(), v.height()) == target => v,
                _ => Video::empty(),
            };
            self.scalers[at].1.run(v, &mut out).map_err(|e| err(format!("conversion failed: {e}")))?;
            self.conversions += 1;
            self.done.insert(g, out);
        }
        Ok(&self.done[&g])
    }
}

/// Copies a picture's planes into a slot laid out as `g.planes()`.
pub fn copy_planes(src: &Video, g: Geometry, dst: &mut [u8]) {
    for (i, p) in g.planes().iter().enumerate() {
        let (s, stride) = (src.data(i), src.stride(i));
        for row in 0..p.rows {
            let from = &s[row * stride..row * stride + p.row_bytes];
            dst[p.offset + row * p.stride..p.offset + row * p.stride + p.row_bytes].copy_from_slice(from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64x32 video-range I420 picture: luma 16 on the left half, 235 on the right.
    fn frame(id: u64) -> Frame {
        frame_lr(id, 16, 235)
    }

    /// A 64x32 I420 picture with luma `left` on the left half, `right` on the right.
    fn frame_lr(id: u64, left: u8, right: u8) -> Frame {
        crate::media::init_ffmpeg();
        let mut v = Video::new(Pixel::YUV420P, 64, 32);
        let stride = v.stride(0);
        for (i, px) in v.data_mut(0).iter_mut().enumerate() {
            *px = if i % stride < 32 { left } else { right };
        }
        v.data_mut(1).fill(128);
        v.data_mut(2).fill(128);
        let (wall, now) = crate::clock::Clock::real().stamp();
        Frame::new(id, wall, now, true, wall, v)
    }

    #[test]
    fn each_geometry_is_converted_once_per_frame_and_native_i420_not_at_all() {
        let mut c = Converter::default();
        let f = frame(1);
        let gray = target(&f, Some(32), None, PixelFormat::Gray);
        assert_eq!((gray.width, gray.height), (32, 16));
        let bgr = target(&f, None, None, PixelFormat::Bgr24);
        for _ in 0..3 {
            c.get(&f, gray).unwrap();
            c.get(&f, bgr).unwrap();
        }
        assert_eq!(c.conversions, 2, "two geometries, one conversion each, however many outputs ask");
        c.get(&f, target(&f, None, None, PixelFormat::I420)).unwrap();
        assert_eq!(c.conversions, 2, "the decoder's own I420 planes need no conversion");
        let f2 = frame(2);
        c.get(&f2, gray).unwrap();
        assert_eq!(c.conversions, 3, "a new frame is converted again");
    }

    #[test]
    fn the_next_frame_is_converted_into_the_last_ones_buffer() {
        let mut c = Converter::default();
        let f = frame(1);
        let bgr = target(&f, None, None, PixelFormat::Bgr24);
        let first = c.get(&f, bgr).unwrap().data(0).as_ptr();
        // Frame 2 is the mirror image: dark on the right.
        let f2 = frame_lr(2, 235, 16);
        let out = c.get(&f2, bgr).unwrap();
        assert_eq!(out.data(0).as_ptr(), first, "no new picture buffer per frame");
        let row = &out.data(0)[..3 * 64];
        assert!(row[0] > 200 && row[3 * 63] < 40, "frame 2's pixels, not frame 1's: {:?}", &row[..6]);
    }

    #[test]
    fn copied_planes_hold_the_converted_pixels() {
        let mut c = Converter::default();
        let f = frame(1);
        let g = target(&f, None, None, PixelFormat::Bgr24);
        let mut slot = vec![0u8; g.frame_size()];
        copy_planes(c.get(&f, g).unwrap(), g, &mut slot);
        let px = |x: usize, y: usize| &slot[y * 64 * 3 + x * 3..y * 64 * 3 + x * 3 + 3];
        assert!(px(5, 5).iter().all(|v| *v < 8), "video black is black: {:?}", px(5, 5));
        assert!(px(60, 20).iter().all(|v| *v > 247), "video white is white: {:?}", px(60, 20));
        let i420 = target(&f, None, None, PixelFormat::I420);
        let mut raw = vec![0u8; i420.frame_size()];
        copy_planes(c.get(&f, i420).unwrap(), i420, &mut raw);
        assert_eq!((raw[0], raw[63], raw[64 * 32]), (16, 235, 128), "Y left, Y right, first U");
    }
}
