//! camhub: one process that holds a fleet of cameras and serves their newest
//! pictures, at once, for almost no CPU while nobody is looking.
//!
//! The flow, one direction: `source` (RTSP, files) yields `EncodedUnit`s, the
//! camera keeps them in a `gop` cache, a `decode` thread runs while someone holds
//! a decoding lease (`demand`), `frame`s are encoded once per variant (`encode`)
//! and served by `api`/`snapshot`.
#![deny(unsafe_code)]

pub mod api;
pub mod camera;
pub mod config;
pub mod decode;
pub mod demand;
pub mod demo;
pub mod encode;
pub mod error;
mod ffi;
pub mod frame;
pub mod gop;
pub mod hub;
pub mod memory;
pub mod metrics;
pub mod output;
pub mod probe;
pub mod secret;
pub mod snapshot;
pub mod source;
pub mod stats;
pub mod whep;
