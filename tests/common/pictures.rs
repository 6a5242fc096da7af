//! Decoded pictures (the clip's barcode, colour, reference frames from ffmpeg)
//! and MJPEG stream reading, for tests that check what people would see.

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::Duration;

use super::{CLIP_FRAMES, repo};

/// A decoded JPEG as RGB.
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Picture {
    pub fn decode(jpeg: &[u8]) -> Picture {
        let mut d = jpeg_decoder::Decoder::new(jpeg);
        let px = d.decode().expect("a valid JPEG");
        let info = d.info().unwrap();
        assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
        Picture { width: info.width as usize, height: info.height as usize, rgb: px }
    }

    pub fn luma(&self, x: usize, y: usize) -> f64 {
        let i = (y * self.width + x) * 3;
        let p = &self.rgb[i..i + 3];
        0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64
    }

    /// The frame index drawn along the top: 16 blocks of 40x40 (at 640 wide).
    pub fn barcode(&self) -> i64 {
        let s = self.width as f64 / 640.0;
        (0..16)
            .map(|b| {
                let x = ((40 * b + 20) as f64 * s) as usize;
                let y = (20.0 * s) as usize;
                i64::from(self.luma(x, y) > 128.0) << b
            })
            .sum()
    }

    /// Standard deviation of the colour channels below the barcode: a grey or
    /// blank picture has almost none; the test clip's colour bars have plenty.
    pub fn colour_spread(&self) -> f64 {
        let start = (self.width * (self.height / 8)) * 3;
        let px = &self.rgb[start..];
        let n = px.len() as f64;
        let mean = px.iter().map(|v| *v as f64).sum::<f64>() / n;
        (px.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
    }

    /// Mean absolute difference per channel against another picture of the same size.
    pub fn mean_abs_diff(&self, other: &Picture) -> f64 {
        assert_eq!((self.width, self.height), (other.width, other.height));
        self.rgb.iter().zip(&other.rgb).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>() / self.rgb.len() as f64
    }
}

/// Frame `index` of a test clip, decoded by ffmpeg, as RGB at `width`x`height`.
pub fn reference_frame(codec: &str, index: i64, width: usize, height: usize) -> Picture {
    let clip = repo().join(format!("tests/clips/idx-{codec}.{codec}"));
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&clip)
        .args([
            "-vf",
            &format!("select=eq(n\\,{index}),scale={width}:{height}"),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len(), width * height * 3);
    Picture { width, height, rgb: out.stdout }
}

/// `a - b` for clip indices, in (-N/2, N/2] (the clip loops).
pub fn clip_diff(a: i64, b: i64) -> i64 {
    let d = (a - b).rem_euclid(CLIP_FRAMES);
    if d > CLIP_FRAMES / 2 { d - CLIP_FRAMES } else { d }
}

/// An MJPEG stream, opened and checked to be `multipart/x-mixed-replace`.
pub fn open_mjpeg(url: &str) -> BufReader<ureq::BodyReader<'static>> {
    open_mjpeg_with(url, &[])
}

/// An MJPEG stream opened with extra request headers (say, `Authorization`).
pub fn open_mjpeg_with(url: &str, headers: &[(&str, &str)]) -> BufReader<ureq::BodyReader<'static>> {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(30))).build().into();
    let mut req = agent.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let ctype = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("multipart/x-mixed-replace"), "{ctype}");
    BufReader::new(r.into_body().into_reader())
}

/// Reads one part of a multipart MJPEG stream: (X-Frame-Id, JPEG bytes).
pub fn read_part(r: &mut impl BufRead) -> (u64, Vec<u8>) {
    let (mut len, mut id) = (None, 0);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "stream ended");
        let l = line.trim_end();
        if let Some(v) = l.strip_prefix("Content-Length: ") {
            len = Some(v.parse::<usize>().unwrap());
        } else if let Some(v) = l.strip_prefix("X-Frame-Id: ") {
            id = v.parse().unwrap();
        } else if l.is_empty() && len.is_some() {
            break;
        }
    }
    let mut jpeg = vec![0; len.unwrap()];
    std::io::Read::read_exact(r, &mut jpeg).unwrap();
    (id, jpeg)
}
