//! The only `unsafe` in camhub: the few C calls the safe crates lack.
//! Each block says why it is sound.
#![allow(unsafe_code)]

mod shm;
mod turbojpeg;

pub use shm::SharedMap;
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
