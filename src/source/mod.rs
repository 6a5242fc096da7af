//! The I/O edge: a `Source` opens a camera and yields `EncodedUnit`s, one per
//! compressed access unit. One implementation per protocol; tests can script
//! their own.

mod file;
pub use file::replay_units;
mod http;
pub mod multipart;
mod rtsp;
mod tls;

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::clock::Clock;
use crate::config::{CameraConfig, Mode, SourceSpec};
use crate::error::Result;
pub use crate::media::{Codec, EncodedUnit};
pub use file::{FileSource, Pacing};
pub use http::HttpSource;
pub use rtsp::RtspSource;

/// A running connection: units until the camera stops or fails. End of stream
/// means the camera hung up.
pub type UnitStream = BoxStream<'static, Result<EncodedUnit>>;

/// Opens a camera. Each call is a new connection.
pub trait Source: Send + Sync + 'static {
    fn open(&self) -> BoxFuture<'static, Result<UnitStream>>;

    /// Why the source gave up its configured transport for another (RTSP:
    /// `transport: udp` that the camera refused or that delivered nothing), if it did.
    fn fallback(&self) -> Option<String> {
        None
    }
}

/// The source for a camera's configuration.
/// The source for a camera's configuration; its units are stamped on `clock`.
pub fn for_camera(cfg: &CameraConfig, clock: &Clock) -> Arc<dyn Source> {
    let clock = clock.clone();
    match &cfg.source {
        SourceSpec::Rtsp(url) => Arc::new(
            RtspSource::new(url.clone(), cfg.username.clone(), cfg.password.clone(), cfg.options.transport, clock)
                .verify_tls(cfg.options.tls_verify),
        ),
        SourceSpec::File(path) => {
            let pacing = if cfg.options.mode == Mode::Replay { Pacing::Consumer } else { Pacing::RealTime };
            Arc::new(FileSource::new(path.clone(), pacing, clock))
        }
        SourceSpec::Http(url) => Arc::new(
            HttpSource::new(
                url.clone(),
                cfg.username.clone(),
                cfg.password.clone(),
                cfg.options.poll_interval.0,
                clock,
            )
            .verify_tls(cfg.options.tls_verify),
        ),
    }
}
