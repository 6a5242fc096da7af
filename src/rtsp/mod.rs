//! The RTSP restream: every camera at `rtsp://HOST:PORT/<camera>` (and
//! `/<camera>/sub` for its sub-stream), H.264 and H.265 passed through as they
//! arrived, over RTP on TCP (interleaved) or UDP, with Basic and Digest auth
//! from `server.auth`.
//!
//! The protocol is GStreamer's RTSP server (`gst-rtsp-server`, through its
//! Rust bindings): sessions, transports, RTCP, auth and keep-alives are its
//! work. camhub gives it one media factory per camera path (`factory.rs`):
//! each client gets a small pipeline `appsrc ! parse ! pay` fed by a task of
//! ours (`feed.rs`) with the camera's GOP cache first (paced fast, so players
//! show the current picture at once) and then the live units. The client holds
//! a connected lease on the camera while it plays: the camera's one upstream
//! connection serves every client, snapshot and viewer.

mod factory;
mod feed;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer_rtsp_server as rtsp_server;
use gstreamer_rtsp_server::prelude::*;
use parking_lot::Mutex;
use tracing::info;

use crate::camera::Camera;
use crate::clock::Clock;
use crate::config::{AuthConfig, RtspConfig};

pub use factory::Lookup;

/// Clients' figures, for the API and metrics.
#[derive(Debug, Default)]
pub struct RtspStats {
    /// Clients playing now.
    pub clients: AtomicU64,
    /// Clients served since the start.
    pub sessions: AtomicU64,
    /// Units a slow client did not get (it resumed at the next keyframe).
    pub units_dropped: AtomicU64,
}

/// The running restream server.
pub struct Restream {
    server: rtsp_server::RTSPServer,
    mounts: rtsp_server::RTSPMountPoints,
    main_loop: glib::MainLoop,
    mounted: Mutex<std::collections::BTreeMap<String, factory::CameraFactory>>,
    ctx: factory::Shared,
    pub port: u16,
    pub listen: String,
}

/// What `/api/health` says of the restream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RtspInfo {
    pub listen: Option<String>,
    pub port: Option<u16>,
    pub error: Option<String>,
    pub clients: u64,
    pub sessions: u64,
    pub units_dropped: u64,
}

impl Restream {
    /// Starts serving on `cfg.listen`; `lookup` finds a path's camera at connect
    /// time. Call inside a tokio runtime (clients' feeders run on it).
    pub fn start(cfg: &RtspConfig, auth: &AuthConfig, lookup: Lookup, clock: Clock) -> Result<Restream, String> {
        let listen = cfg.listen.clone().ok_or("the RTSP restream is off")?;
        let addr: std::net::SocketAddr = listen
            .parse()
            .map_err(|_| format!("server.rtsp.listen {listen:?}: expected HOST:PORT, e.g. 127.0.0.1:8554"))?;
        gst::init().map_err(|e| format!("GStreamer did not start: {e}"))?;
        let server = rtsp_server::RTSPServer::new();
        server.set_address(&addr.ip().to_string());
        server.set_service(&addr.port().to_string());
        // A client per thread (a slow camera's first connect waits in its own).
        if let Some(pool) = server.thread_pool() {
            pool.set_max_threads(64);
        }
        let mounts = server.mount_points().ok_or("the RTSP server has no mount points")?;
        let context = glib::MainContext::new();
        // (The server's listening source lives in `context` from here on.)
        let _source = server
            .attach(Some(&context))
            .map_err(|e| format!("cannot serve RTSP on {listen}: {e} (is the port taken? set server.rtsp.listen)"))?;
        let port = u16::try_from(server.bound_port()).unwrap_or(0);
        let main_loop = glib::MainLoop::new(Some(&context), false);
        let ml = main_loop.clone();
        std::thread::Builder::new()
            .name("rtsp-server".into())
            .spawn(move || {
                context.with_thread_default(|| ml.run()).ok();
            })
            .map_err(|e| format!("no thread for the RTSP server: {e}"))?;
        let ctx = factory::Shared {
            lookup,
            handle: tokio::runtime::Handle::current(),
            clock,
            burst_mbps: f64::from(cfg.burst_mbps),
            stats: Arc::default(),
            auth_roles: Mutex::new(false),
        };
        let r = Restream { server, mounts, main_loop, mounted: Mutex::default(), ctx, port, listen };
        r.set_auth(auth);
        info!("RTSP restream on rtsp://{}:{port}/<camera>", addr.ip());
        Ok(r)
    }

    /// Who may play: `server.auth`'s users (Basic or Digest), and its tokens as
    /// the password of the user `token`. No auth configured: anyone who reaches the port.
    pub fn set_auth(&self, auth: &AuthConfig) {
        if !auth.enabled() {
            self.server.set_auth(None::<&rtsp_server::RTSPAuth>);
            *self.ctx.auth_roles.lock() = false;
            return;
        }
        let a = rtsp_server::RTSPAuth::new();
        let token =
            rtsp_server::RTSPToken::builder().field(rtsp_server::RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer").build();
        let logins = auth
            .users
            .iter()
            .map(|(u, p)| (u.as_str(), p.expose()))
            .chain(auth.tokens.iter().map(|t| ("token", t.expose())));
        for (user, pass) in logins {
            a.add_basic(&rtsp_server::RTSPAuth::make_basic(user, pass), &token);
            a.add_digest(user, pass, &token);
        }
        crate::ffi::rtsp_auth_basic_and_digest(&a);
        self.server.set_auth(Some(&a));
        *self.ctx.auth_roles.lock() = true;
        // Factories mounted from now on get the role; those mounted already, now.
        for f in self.mounted.lock().values() {
            factory::allow_viewers(f.upcast_ref());
        }
    }

    /// Mounts exactly `paths` (`/<camera>`, `/<camera>/sub`): new ones are added,
    /// gone ones removed (their clients keep playing until their camera stops).
    pub fn sync(&self, paths: &BTreeSet<String>) {
        let mut mounted = self.mounted.lock();
        mounted.retain(|path, _| {
            let keep = paths.contains(path);
            if !keep {
                self.mounts.remove_factory(path);
            }
            keep
        });
        for new in paths {
            if !mounted.contains_key(new) {
                let f = factory::CameraFactory::new(new, &self.ctx);
                self.mounts.add_factory(new, f.clone());
                mounted.insert(new.clone(), f);
            }
        }
    }

    pub fn info(&self) -> RtspInfo {
        let s = &self.ctx.stats;
        RtspInfo {
            listen: Some(self.listen.clone()),
            port: Some(self.port),
            error: None,
            clients: s.clients.load(Ordering::Relaxed),
            sessions: s.sessions.load(Ordering::Relaxed),
            units_dropped: s.units_dropped.load(Ordering::Relaxed),
        }
    }

    pub fn stats(&self) -> &Arc<RtspStats> {
        &self.ctx.stats
    }
}

impl Drop for Restream {
    fn drop(&mut self) {
        self.main_loop.quit();
    }
}

/// The mount paths of `cameras`: `/<name>`, and `/<name>/sub` for those with a sub-stream.
pub fn paths<'a>(cameras: impl IntoIterator<Item = (&'a Camera, bool)>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (cam, has_sub) in cameras {
        out.insert(format!("/{}", cam.name()));
        if has_sub {
            out.insert(format!("/{}/sub", cam.name()));
        }
    }
    out
}
