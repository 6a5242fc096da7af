//! camhub: one process that holds a fleet of cameras and serves their newest
//! pictures, at once, for almost no CPU while nobody is looking.
//!
//! The flow, one direction: `source` (RTSP, files) yields `EncodedUnit`s, the
//! camera keeps them in a `gop` cache, a `decode` thread runs while someone holds
//! a decoding lease (`demand`), `frame`s are encoded once per variant (`encode`)
//! and served by `api`/`snapshot`.
#![deny(unsafe_code)]

// The floors, bottom up (ARCHITECTURE.md, "Layers"; `tests/layers.rs` checks them).
// L0 vocabulary
pub mod backoff;
pub mod clock;
pub mod config;
pub mod error;
mod ffi;
pub mod secret;
pub mod telemetry;
// L1 media
pub mod media;
// L2 stages
pub mod decode;
pub mod encode;
pub mod source;
// L3 camera
pub mod camera;
// L4 consumers
pub mod mqtt;
pub mod output;
pub mod rtsp;
pub mod snapshot;
pub mod whep;
// L5 composition
pub mod hub;
// L6 faces
pub mod api;
pub mod cli;
