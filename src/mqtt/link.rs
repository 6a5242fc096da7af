//! The connection to the broker: rumqttc's event loop, polled by one task.
//! After an error the loop would reconnect at once on the next poll; we wait a
//! jittered, growing backoff first (slower when the broker refuses our
//! credentials), and show the state and error in `/api/health`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rumqttc::{ConnectReturnCode, ConnectionError, Event, EventLoop, Outgoing, Packet, QoS};
use tokio_util::sync::CancellationToken;

use super::{LinkState, Shared};
use crate::backoff::Backoff;

/// What a failed connection says, for the log and `/api/health`; whether it
/// will not fix itself (refused credentials). Never a credential.
fn describe(e: &ConnectionError, broker: &str) -> (String, bool) {
    match e {
        ConnectionError::ConnectionRefused(
            code @ (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized),
        ) => (
            format!("the broker at {broker} refused the login ({code:?}): check mqtt.username and mqtt.password"),
            true,
        ),
        ConnectionError::ConnectionRefused(code) => {
            (format!("the broker at {broker} refused the connection ({code:?})"), false)
        }
        ConnectionError::Io(io) => (format!("cannot reach the broker at {broker}: {io}"), false),
        other => (format!("connection to the broker at {broker} failed: {other}"), false),
    }
}

/// Runs until `stop`, or until a clean stop (`closing`) has sent its DISCONNECT.
pub(super) async fn run(mut events: EventLoop, sh: Arc<Shared>, stop: CancellationToken, closing: Arc<AtomicBool>) {
    let broker = sh.cfg.broker.to_string();
    let mut backoff = Backoff::new(fastrand::u64(..));
    let mut logged_error = false;
    loop {
        let polled = tokio::select! {
            _ = stop.cancelled() => return,
            r = events.poll() => r,
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                // A refused CONNACK comes as an error; this one is accepted.
                sh.set_link(LinkState::Connected, None);
                sh.connects.fetch_add(1, Ordering::Relaxed);
                backoff.reset();
                logged_error = false;
                tracing::info!("MQTT: connected to {broker}");
                sh.publish(sh.topics.available(), true, "online");
                if sh.client.try_subscribe(sh.topics.states_filter(), QoS::AtLeastOnce).is_err() {
                    sh.dropped.fetch_add(1, Ordering::Relaxed);
                }
                sh.generation.send_modify(|g| *g += 1);
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.retain && !p.payload.is_empty() => {
                // A retained state of a camera camhub no longer has (removed while
                // it or the broker was away): clear it, and its discovery configs.
                if let Some(cam) = sh.topics.camera_of_state(&p.topic)
                    && !sh.known.lock().contains(cam)
                {
                    tracing::info!("MQTT: clearing the retained topics of camera {cam:?}, no longer configured");
                    super::watch::clear(cam, &sh);
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                sh.published.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) if closing.load(Ordering::Acquire) => return,
            Ok(_) => {}
            Err(e) => {
                if closing.load(Ordering::Acquire) {
                    return;
                }
                let (msg, persistent) = describe(&e, &broker);
                // Logged once per outage, not at every retry.
                if !logged_error {
                    tracing::warn!("MQTT: {msg}; retrying with backoff");
                    logged_error = true;
                }
                sh.set_link(LinkState::Error, Some(msg));
                let delay = backoff.next_delay(persistent);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                let error = sh.link.lock().1.clone();
                sh.set_link(LinkState::Connecting, error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_to_do_and_which_are_persistent() {
        let (m, p) = describe(&ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized), "mqtt://b:1883");
        assert!(p && m.contains("mqtt.username"), "{m}");
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let (m, p) = describe(&ConnectionError::Io(io), "mqtt://b:1883");
        assert!(!p && m.contains("cannot reach the broker at mqtt://b:1883"), "{m}");
    }
}
