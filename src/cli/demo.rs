//! The built-in demo cameras: a small clip compiled into the binary, served as
//! live cameras (looped, paced in real time) when no config is given, so that
//! `camhub serve` shows something with no camera at hand.

use std::path::PathBuf;

use crate::config::{CameraConfig, CameraOptions, Keep, Linger};

/// 640x360, 10 fps, 20 s, keyframe every 4 s; each frame shows its index as a
/// barcode along the top (made by `scripts/make-clips.sh`).
pub const CLIP: &[u8] = include_bytes!("../../assets/demo.mp4");

/// Writes the clip to a private temporary file and returns the demo cameras:
/// `demo` (connected, decodes on demand) and `demo-decoded` (always decoding).
pub fn cameras() -> std::io::Result<(Vec<CameraConfig>, DemoFile)> {
    let dir = std::env::temp_dir().join(format!("camhub-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("demo.mp4");
    std::fs::write(&path, CLIP)?;
    let mut cams = Vec::new();
    for (name, keep) in [("demo", Keep::Connected), ("demo-decoded", Keep::Decoded)] {
        let mut o = CameraOptions::from_url(path.to_string_lossy().into_owned());
        o.keep = keep;
        if keep == Keep::Decoded {
            o.decode_linger = Linger::Forever;
        }
        let cam = CameraConfig::resolve(name, o, &dir).map_err(std::io::Error::other)?;
        cams.push(cam);
    }
    Ok((cams, DemoFile(dir)))
}

/// Removes the demo clip's temporary directory when dropped.
pub struct DemoFile(PathBuf);

impl Drop for DemoFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
