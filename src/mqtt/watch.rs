//! One camera on the broker: its state at once when it changes, its
//! attributes then and every `attributes_interval` while they change, its
//! discovery configs and everything again at each connect, its JPEGs every
//! `snapshot_interval`; and, when the camera is removed, its retained topics
//! and discovery configs cleared (an empty retained payload).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use serde_json::Value;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::topics::{Figures, Rate, name_of, state_name};
use super::{Exit, Shared};
use crate::camera::{Camera, State, Status};
use crate::telemetry::stats::Counters;

/// What was last published, so that only changes go out.
#[derive(Default)]
struct Sent {
    state: Option<State>,
    attributes: Option<Value>,
}

/// The camera's figures now.
fn figures(cam: &Camera, s: &Status, sh: &Shared, rate: &Rate) -> Figures {
    let frame = cam.latest_info();
    let now = sh.clock.now();
    let streaming = s.state == State::Streaming;
    Figures {
        state: state_name(s.state),
        reason: s.last_error.as_ref().filter(|_| !streaming).map(|e| e.message.clone()),
        error_kind: s.last_error.as_ref().filter(|_| !streaming).map(|e| name_of(&e.kind)),
        codec: s.codec.map(|c| name_of(&c)),
        width: frame.as_ref().map(|f| f.width),
        height: frame.as_ref().map(|f| f.height),
        fps: rate.fps.filter(|_| streaming),
        bitrate_kbps: rate.kbps.filter(|_| streaming),
        age_ms: frame.as_ref().map(|f| f.age(now).as_millis() as u64),
        snapshot_url: sh.cfg.public_url.as_ref().map(|u| format!("{u}/api/cameras/{}/snapshot.jpg", cam.name())),
    }
}

impl Sent {
    /// Publishes the state and attributes that differ from those sent (all of them with `force`).
    fn publish(&mut self, cam: &Camera, sh: &Shared, rate: &Rate, force: bool) {
        if !sh.connected.load(Ordering::Acquire) {
            // Nothing is queued while away: the next connect sends it all.
            *self = Sent::default();
            return;
        }
        let status = cam.status();
        let f = figures(cam, &status, sh, rate);
        if force || self.state != Some(status.state) {
            sh.publish(sh.topics.state(cam.name()), true, f.state.clone());
            self.state = Some(status.state);
        }
        let attributes = f.to_json();
        if force || self.attributes.as_ref() != Some(&attributes) {
            sh.publish(sh.topics.attributes(cam.name()), true, attributes.to_string());
            self.attributes = Some(attributes);
        }
    }
}

/// Home Assistant's discovery configs for the camera (with `discovery`).
fn announce(cam: &str, sh: &Shared) {
    if !sh.cfg.discovery {
        return;
    }
    let url = sh.cfg.public_url.as_deref();
    sh.publish(sh.topics.discovery_connected(cam), true, sh.topics.connected_config(cam, url).to_string());
    if sh.cfg.snapshot_interval.is_some() {
        sh.publish(sh.topics.discovery_camera(cam), true, sh.topics.camera_config(cam, url).to_string());
    }
}

/// A removed camera: its retained topics and discovery configs cleared.
pub(super) fn clear(cam: &str, sh: &Shared) {
    for topic in [sh.topics.state(cam), sh.topics.attributes(cam)] {
        sh.publish(topic, true, Vec::new());
    }
    if sh.cfg.discovery {
        sh.publish(sh.topics.discovery_connected(cam), true, Vec::new());
        sh.publish(sh.topics.discovery_camera(cam), true, Vec::new());
    }
}

pub(super) async fn run(cam: Arc<Camera>, sh: Arc<Shared>, stop: CancellationToken, exit: Arc<AtomicU8>) {
    let mut status = cam.subscribe_status();
    let mut generation = sh.generation.subscribe();
    let mut tick = tokio::time::interval(sh.cfg.attributes_interval.0);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    if let Some(every) = sh.cfg.snapshot_interval {
        tokio::spawn(snapshots(cam.clone(), sh.clone(), stop.clone(), every.0));
    }
    let mut rate = Rate::default();
    let mut sent = Sent::default();
    // Connected already (a camera added at run time): announce it now.
    generation.mark_changed();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            r = status.changed() => {
                if r.is_err() {
                    // The camera's actor is gone; its removal will stop this task.
                    stop.cancelled().await;
                    break;
                }
                // Every unit received changes the status: only a new state is news.
                let state = status.borrow_and_update().state;
                if sent.state != Some(state) {
                    sent.publish(&cam, &sh, &rate, false);
                }
            }
            _ = generation.changed() => {
                generation.borrow_and_update();
                if sh.connected.load(Ordering::Acquire) {
                    announce(cam.name(), &sh);
                    sent.publish(&cam, &sh, &rate, true);
                }
            }
            _ = tick.tick() => {
                let c = cam.counters();
                rate.update(sh.clock.now(), Counters::get(&c.units_in), Counters::get(&c.bytes_in));
                sent.publish(&cam, &sh, &rate, false);
            }
        }
    }
    match Exit::from(exit.load(Ordering::Acquire)) {
        Exit::Clear => clear(cam.name(), &sh),
        Exit::Flush => sent.publish(&cam, &sh, &rate, false),
        // Replaced: the new camera's task publishes from here on.
        Exit::Quiet => {}
    }
}

/// A JPEG every `every` while connected to the broker and the camera is not failing.
async fn snapshots(cam: Arc<Camera>, sh: Arc<Shared>, stop: CancellationToken, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !sh.connected.load(Ordering::Acquire) || cam.status().state.is_failed() {
            continue;
        }
        let shot = tokio::select! {
            _ = stop.cancelled() => return,
            shot = (sh.snapshots)(cam.clone()) => shot,
        };
        if let Some(jpeg) = shot {
            sh.publish(sh.topics.snapshot(cam.name()), false, jpeg.to_vec());
        }
    }
}
