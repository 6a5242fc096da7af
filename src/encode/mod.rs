//! Encoding decoded frames for people: JPEG from the decoder's planes, once
//! per (frame, quality, size) however many clients ask.

mod cache;
mod jpeg;

pub use cache::{JpegCache, JpegKey};
pub use jpeg::{encode_jpeg, fit_size, jpeg_size};
