//! What `camhub -V` and `camhub --version` print: camhub's version and the git
//! commit it was built from; `--version` adds the C libraries it runs with.

use std::sync::OnceLock;

use crate::ffi::versions;

/// `0.1.0 (git abc1234)`: `-V`, and the first line of `--version`.
pub fn short() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| format!("{} (git {})", env!("CARGO_PKG_VERSION"), env!("CAMHUB_GIT_COMMIT")))
}

/// `--version`: [`short`], then FFmpeg, libjpeg-turbo, GStreamer and OpenSSL,
/// one a line, as loaded now (libjpeg-turbo: as built, it cannot say at run time).
pub fn long() -> &'static str {
    static S: OnceLock<String> = OnceLock::new();
    S.get_or_init(|| {
        format!(
            "{}\nFFmpeg {}\nlibjpeg-turbo {} (built with; TurboJPEG reports no version at run time)\nGStreamer {}\n{}",
            short(),
            versions::ffmpeg(),
            versions::LIBJPEG_TURBO_BUILT,
            versions::gstreamer(),
            versions::openssl(),
        )
    })
}
