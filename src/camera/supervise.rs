//! Keeps a camera's actor running: a run that panics is logged with the panic's
//! message, shown as the camera's failure (`backoff`, an `internal` error), and
//! started again after an exponential backoff, counted in `restarts`. Leases,
//! subscribers and pictures live in `Shared`, so they carry over to the new run.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tracing::error;

use super::actor;
use super::{Shared, State};
use crate::backoff::Backoff;
use crate::error::{Error, ErrorKind};
use crate::source::Source;

/// A run that lasted this long before panicking starts the backoff afresh.
const STEADY: Duration = Duration::from_secs(60);

pub(super) async fn run(
    shared: Arc<Shared>,
    source: Arc<dyn Source>,
    feeds: tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<super::UnitFeed>>,
) {
    let feeds = Arc::new(tokio::sync::Mutex::new(feeds));
    let mut backoff = Backoff::new(fastrand::u64(..));
    loop {
        // The run's token exists before the run: a stop sent at any moment is seen.
        let life = shared.stop.child_token();
        let started = shared.clock.now();
        let held = feeds.clone().lock_owned().await;
        let result =
            AssertUnwindSafe(actor::run(shared.clone(), source.clone(), held, life.clone())).catch_unwind().await;
        // A run that panicked takes its variant encoders with it.
        life.cancel();
        let Err(panic) = result else { return };
        let what = panic_message(panic.as_ref());
        if shared.clock.since(started) >= STEADY {
            backoff.reset();
        }
        let delay = backoff.next_delay(false);
        error!(camera = %shared.config.name, "camera task panicked: {what}; restarting in {:.1} s", delay.as_secs_f64());
        let (wall, now) = shared.clock.stamp();
        let message = crate::secret::scrub(&format!("camera task panicked: {what}"), &shared.config.secrets());
        shared.update_status(|s| {
            s.set_state(State::Backoff, wall);
            s.last_error = Some(Error::new(ErrorKind::Internal, message));
            s.retry_at = Some(now + delay);
            s.decoder_running = false;
            s.gop_units = 0;
            s.gop_bytes = 0;
            s.restarts += 1;
            s.history.push((State::Backoff, wall));
            let extra = s.history.len().saturating_sub(32);
            s.history.drain(..extra);
        });
        let clock = shared.clock.clone();
        tokio::select! {
            _ = shared.stop.cancelled() => {
                let wall = shared.clock.wall();
                shared.update_status(|s| {
                    s.set_state(State::Stopped, wall);
                    s.retry_at = None;
                });
                return;
            }
            _ = clock.sleep(delay) => {}
        }
    }
}

/// What a panic said (its payload is a `&str` or a `String` when it said anything).
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}
