//! Test support at the `Source` seam: a scripted source whose connections the
//! test opens, feeds and ends, real units from the test clips (the frames carry
//! their index as a barcode), and a camera driven by a stepped clock. Used by the
//! actor tests here and the snapshot tests one floor up.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Camera, Status};
use crate::clock::Clock;
use crate::config::{CameraConfig, CameraOptions};
use crate::error::{Error, Result};
use crate::media::EncodedUnit;
use crate::source::{Source, UnitStream};
use crate::telemetry::metrics::Metrics;

/// One scripted connection attempt.
enum Attempt {
    Refuse(Error),
    /// The attempt panics (a bug in a source): the camera's supervisor restarts it.
    Panic(&'static str),
    Accept(mpsc::UnboundedReceiver<Result<EncodedUnit>>),
}

/// A source that answers each `open` with the next scripted attempt; with none
/// left, the attempt hangs (the connect timeout decides).
#[derive(Default)]
pub struct ScriptedSource {
    attempts: Mutex<VecDeque<Attempt>>,
    opens: AtomicUsize,
}

/// The test's end of an accepted connection.
pub struct Feed {
    tx: mpsc::UnboundedSender<Result<EncodedUnit>>,
    clock: Clock,
}

impl Feed {
    /// Sends a unit as received now (on the test's clock).
    pub fn send(&self, unit: &EncodedUnit) {
        let mut u = unit.clone();
        (u.received, u.received_mono) = self.clock.stamp();
        let _ = self.tx.send(Ok(u));
    }
}

impl ScriptedSource {
    /// The next attempt connects; units sent on the returned feed flow; dropping it ends the stream.
    pub fn accept(&self, clock: &Clock) -> Feed {
        let (tx, rx) = mpsc::unbounded_channel();
        self.attempts.lock().push_back(Attempt::Accept(rx));
        Feed { tx, clock: clock.clone() }
    }

    pub fn refuse(&self, e: Error) {
        self.attempts.lock().push_back(Attempt::Refuse(e));
    }

    /// The next attempt panics with `message`.
    pub fn panic(&self, message: &'static str) {
        self.attempts.lock().push_back(Attempt::Panic(message));
    }

    /// Connection attempts so far.
    pub fn opens(&self) -> usize {
        self.opens.load(Ordering::SeqCst)
    }
}

impl Source for ScriptedSource {
    fn open(&self) -> BoxFuture<'static, Result<UnitStream>> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        let next = self.attempts.lock().pop_front();
        Box::pin(async move {
            match next {
                Some(Attempt::Refuse(e)) => Err(e),
                Some(Attempt::Panic(message)) => panic!("{message}"),
                Some(Attempt::Accept(rx)) => {
                    let s = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
                    Ok(s.boxed())
                }
                None => std::future::pending().await,
            }
        })
    }
}

/// Every unit of a test clip, in order (`codec`: "h264" or "h265").
pub fn clip_units(codec: &str) -> Vec<EncodedUnit> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/clips/idx-{codec}.{codec}"));
    // Read on a thread of its own: the tests call this from inside their runtime.
    let out: Vec<EncodedUnit> = std::thread::spawn(move || {
        let mut rx = crate::source::replay_units(path, Clock::real()).expect("the test clip opens");
        let mut out = Vec::new();
        while let Some(u) = rx.blocking_recv() {
            out.push(u.expect("the test clip reads"));
        }
        out
    })
    .join()
    .expect("the clip reader");
    assert!(out.len() > 60 && out[0].keyframe, "a clip of {} units", out.len());
    out
}

/// A camera named `cam` with options from `edit`, reading `source`, on `clock`.
pub fn camera(source: Arc<ScriptedSource>, clock: &Clock, edit: impl FnOnce(&mut CameraOptions)) -> Arc<Camera> {
    camera_in(source, &context(clock), edit)
}

/// A context of its own for test cameras (one scheduler they share).
pub fn context(clock: &Clock) -> crate::camera::Context {
    let metrics = Arc::new(Metrics::new(clock.wall(), &[]));
    crate::camera::Context::standalone(clock.clone(), metrics)
}

/// A camera named `cam` in `ctx` (sharing its scheduler), reading `source`.
pub fn camera_in(
    source: Arc<ScriptedSource>,
    ctx: &crate::camera::Context,
    edit: impl FnOnce(&mut CameraOptions),
) -> Arc<Camera> {
    let mut o = CameraOptions::from_url("rtsp://scripted.invalid/cam");
    edit(&mut o);
    let cfg = CameraConfig::resolve("cam", o, Path::new("/")).expect("a valid camera");
    Camera::spawn_with_source(cfg, source, ctx.clone(), CancellationToken::new())
}

/// Waits (in real time, bounded) until the camera's status satisfies `pred`.
pub async fn until(cam: &Camera, what: &str, pred: impl Fn(&Status) -> bool) -> Status {
    let mut rx = cam.subscribe_status();
    let wait = rx.wait_for(|s| pred(s));
    match tokio::time::timeout(Duration::from_secs(10), wait).await {
        Ok(Ok(s)) => s.clone(),
        _ => panic!("camera never got {what}: {:?}", cam.status()),
    }
}

/// Waits (in real time, bounded) until the decoder has published frame `id` or newer.
pub async fn until_frame(cam: &Camera, id: u64) -> Arc<crate::media::Frame> {
    let mut rx = cam.subscribe_progress();
    let wait = rx.wait_for(|p| p.frame.as_ref().is_some_and(|f| f.frame_id >= id));
    match tokio::time::timeout(Duration::from_secs(10), wait).await {
        Ok(Ok(p)) => p.frame.clone().expect("a frame"),
        _ => panic!("no frame {id} decoded; newest {:?}", cam.latest_frame().map(|f| f.frame_id)),
    }
}

/// Lets the actor handle what is queued (it runs on the same runtime).
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
}
