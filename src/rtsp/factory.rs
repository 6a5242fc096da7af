//! One media factory per mount path: at each client's DESCRIBE it finds the
//! path's camera, takes a connected lease, waits (bounded) for the camera to
//! say its codec, and builds `appsrc ! parse ! pay` for it, fed by a task of
//! ours (`feed.rs`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp_server;
use gstreamer_rtsp_server::prelude::*;
use gstreamer_rtsp_server::subclass::prelude::*;
use parking_lot::Mutex;
use tracing::{info, warn};

use super::RtspStats;
use crate::camera::Camera;
use crate::camera::demand::Tier;
use crate::clock::Clock;
use crate::media::Codec;

/// Finds a mount path's camera (`/door` or `/door/sub`) when a client arrives.
pub type Lookup = Arc<dyn Fn(&str) -> Option<Arc<Camera>> + Send + Sync>;

/// How long a client's DESCRIBE waits for a camera that is not connected yet
/// (an `on_demand` camera connects when the first client arrives).
const FIRST_CONNECT: Duration = Duration::from_secs(10);
/// Bytes waiting in a client's appsrc before it skips to the next keyframe.
pub const CLIENT_QUEUE_BYTES: u64 = 8 << 20;

/// What every factory of the server shares.
pub struct Shared {
    pub lookup: Lookup,
    pub handle: tokio::runtime::Handle,
    pub clock: Clock,
    pub burst_mbps: f64,
    pub stats: Arc<RtspStats>,
    /// Auth is on: factories let the `viewer` role in.
    pub auth_roles: Mutex<bool>,
}

/// What one factory knows: its path and the server's shared parts.
pub struct Inner {
    path: String,
    lookup: Lookup,
    handle: tokio::runtime::Handle,
    clock: Clock,
    burst_mbps: f64,
    stats: Arc<RtspStats>,
}

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct CameraFactory {
        pub inner: OnceLock<Inner>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for CameraFactory {
        const NAME: &'static str = "CamhubCameraFactory";
        type Type = super::CameraFactory;
        type ParentType = rtsp_server::RTSPMediaFactory;
    }

    impl ObjectImpl for CameraFactory {}

    impl RTSPMediaFactoryImpl for CameraFactory {
        fn create_element(&self, _url: &gstreamer_rtsp::RTSPUrl) -> Option<gst::Element> {
            let inner = self.inner.get()?;
            match inner.element() {
                Ok(e) => Some(e),
                Err(why) => {
                    warn!(path = %inner.path, "RTSP client refused: {why}");
                    None
                }
            }
        }
    }
}

glib::wrapper! {
    pub struct CameraFactory(ObjectSubclass<imp::CameraFactory>) @extends rtsp_server::RTSPMediaFactory;
}

impl CameraFactory {
    pub fn new(path: &str, shared: &Shared) -> CameraFactory {
        let f: CameraFactory = glib::Object::new();
        let inner = Inner {
            path: path.to_owned(),
            lookup: shared.lookup.clone(),
            handle: shared.handle.clone(),
            clock: shared.clock.clone(),
            burst_mbps: shared.burst_mbps,
            stats: shared.stats.clone(),
        };
        let _ = f.imp().inner.set(inner);
        // A pipeline per client: each starts at its own keyframe, from the GOP cache.
        f.set_shared(false);
        f.set_eos_shutdown(false);
        f.set_latency(0);
        if *shared.auth_roles.lock() {
            allow_viewers(f.upcast_ref());
        }
        f
    }
}

/// Lets clients with the `viewer` role (any user of `server.auth`) play from `f`.
pub fn allow_viewers(f: &rtsp_server::RTSPMediaFactory) {
    f.add_role_from_structure(
        &gst::Structure::builder("viewer")
            .field(rtsp_server::RTSP_PERM_MEDIA_FACTORY_ACCESS, true)
            .field(rtsp_server::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, true)
            .build(),
    );
}

impl Inner {
    /// A client's pipeline, its feeder started.
    fn element(&self) -> Result<gst::Element, String> {
        let cam = (self.lookup)(&self.path).ok_or("no such camera (removed?)")?;
        let lease = cam.lease(Tier::Connected);
        let codec = self.handle.block_on(async {
            let mut rx = cam.subscribe_status();
            let known = rx.wait_for(|s| s.codec.is_some());
            match tokio::time::timeout(FIRST_CONNECT, known).await {
                Ok(Ok(s)) => s.codec,
                _ => None,
            }
        });
        let (parse, pay, caps) = match codec {
            Some(Codec::H264) => ("h264parse", "rtph264pay", "video/x-h264"),
            Some(Codec::H265) => ("h265parse", "rtph265pay", "video/x-h265"),
            Some(Codec::Mjpeg) => return Err("an MJPEG camera: the restream carries H.264 and H.265".into()),
            None => return Err(format!("the camera sent no video within {} s", FIRST_CONNECT.as_secs())),
        };
        let feed = self.handle.block_on(cam.unit_feed()).ok_or("the camera is stopping")?;
        let desc = format!(
            "appsrc name=src is-live=true format=time do-timestamp=true max-bytes={} \
             ! {parse} config-interval=-1 ! {pay} name=pay0 pt=96 config-interval=-1",
            2 * CLIENT_QUEUE_BYTES
        );
        let bin = gst::parse::bin_from_description(&desc, false).map_err(|e| format!("pipeline: {e}"))?;
        let src = bin.by_name("src").and_then(|e| e.downcast::<gst_app::AppSrc>().ok()).ok_or("pipeline: no appsrc")?;
        src.set_caps(Some(
            &gst::Caps::builder(caps).field("stream-format", "byte-stream").field("alignment", "au").build(),
        ));
        info!(camera = %cam.name(), path = %self.path, "RTSP client: {} units from the GOP cache, then live", feed.gop.len());
        let job = super::feed::Feeder {
            src: src.downgrade(),
            feed,
            burst_mbps: self.burst_mbps,
            clock: self.clock.clone(),
            stats: self.stats.clone(),
            _lease: lease,
        };
        self.handle.spawn(job.run());
        Ok(bin.upcast())
    }
}
