//! The versions of the C libraries camhub links, as each reports itself at run
//! time (the library actually loaded, not the headers it was built against), for
//! `camhub --version`. libjpeg-turbo is the exception: TurboJPEG 2.x has no call
//! that says its version, so it is the one built against (build.rs, pkg-config).

use std::ffi::CStr;

use ffmpeg_next::ffi as av;

/// libjpeg-turbo's version at build time (`unknown` without pkg-config).
pub const LIBJPEG_TURBO_BUILT: &str = env!("CAMHUB_TURBOJPEG_VERSION");

/// `5.1.7-0+deb12u1: libavcodec 59.37.100, libavformat 59.27.100, ...`: FFmpeg's
/// release and the version of each of its libraries that camhub uses.
pub fn ffmpeg() -> String {
    // SAFETY: av_version_info takes nothing and returns null or a pointer to a
    // static NUL-terminated string that libavutil never frees or changes.
    let release = unsafe {
        let p = av::av_version_info();
        if p.is_null() { "unknown".into() } else { CStr::from_ptr(p).to_string_lossy().into_owned() }
    };
    format!(
        "{release}: libavcodec {}, libavformat {}, libavutil {}, libswscale {}",
        dotted(ffmpeg_next::codec::version()),
        dotted(ffmpeg_next::format::version()),
        dotted(ffmpeg_next::util::version()),
        dotted(ffmpeg_next::software::scaling::version()),
    )
}

/// `1.22.0` (GStreamer, for the RTSP restream).
pub fn gstreamer() -> String {
    let (major, minor, micro, nano) = gstreamer::version();
    match nano {
        0 => format!("{major}.{minor}.{micro}"),
        1 => format!("{major}.{minor}.{micro} (git)"),
        _ => format!("{major}.{minor}.{micro} (prerelease)"),
    }
}

/// `OpenSSL 3.0.19 1 Jul 2025` (TLS cameras, WebRTC's DTLS).
pub fn openssl() -> &'static str {
    openssl::version::version()
}

/// libav's `AV_VERSION_INT` as `major.minor.micro`.
fn dotted(v: u32) -> String {
    format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff)
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_are_dotted_numbers() {
        assert_eq!(super::dotted((59 << 16) | (37 << 8) | 100), "59.37.100");
        assert!(super::ffmpeg().contains(": libavcodec "), "{}", super::ffmpeg());
        assert!(super::gstreamer().starts_with("1."), "{}", super::gstreamer());
        assert!(super::openssl().starts_with("OpenSSL "), "{}", super::openssl());
    }
}
