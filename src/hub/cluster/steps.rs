//! A node's steps: every tick it renews what it holds, looks at who is alive
//! and who owns what, claims what is planned for it and free, and hands over
//! what is planned elsewhere; without Redis it fences itself in time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::store::{self, Lease, Store};
use super::{Cluster, FENCE_MARGIN, Held, IO_TIMEOUT, View, assign};
use crate::hub::Hub;

/// Steps until the hub stops, then leaves (releasing every lease).
pub(super) async fn run(
    c: Arc<Cluster>,
    hub: std::sync::Weak<Hub>,
    mut store: Option<Store>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut st = Steps::default();
    loop {
        let Some(h) = hub.upgrade() else { return };
        let clock = h.clock.clone();
        drop(h);
        tokio::select! {
            _ = clock.sleep(c.tick()) => {}
            _ = c.wake.notified() => {}
            _ = stop.cancelled() => break,
        }
        let Some(h) = hub.upgrade() else { return };
        if store.is_none() {
            match Store::connect(c.cfg.redis.expose(), &c.cfg.key_prefix, c.ttl(), IO_TIMEOUT).await {
                Ok(s) => store = Some(s),
                Err(e) => failed(&c, format!("cannot reach Redis: {}", c.redact(&e))),
            }
        }
        if let Some(s) = store.as_mut() {
            let r = tokio::time::timeout(4 * IO_TIMEOUT, step(&c, &h, s, &mut st)).await;
            match r {
                Ok(Ok(())) => {
                    if !c.redis_ok.swap(true, Ordering::Relaxed) {
                        tracing::info!("cluster: Redis is back");
                    }
                    *c.last_error.lock() = None;
                }
                Ok(Err(e)) => {
                    failed(&c, format!("Redis: {}", c.redact(&e)));
                    store = None;
                }
                Err(_) => {
                    failed(&c, "Redis: a step timed out".into());
                    store = None;
                }
            }
        }
        if store.is_none() {
            st.gate.outage = true;
        }
        // Self-fencing: a lease that could not be renewed stops its camera before
        // it can have expired in Redis (and so before anyone else can take it).
        let now = h.clock.now();
        let expiring: Vec<String> =
            c.held.lock().iter().filter(|(_, l)| l.valid_until <= now + FENCE_MARGIN).map(|(n, _)| n.clone()).collect();
        for name in expiring {
            tracing::warn!(camera = %name, "cluster: lease not renewed in time; stopping the camera here");
            c.held.lock().remove(&name);
            h.remove(&name).await;
        }
    }
    // A clean stop: give every lease up at once (the others take the cameras
    // within a step) and leave.
    let held: Vec<(String, Lease)> =
        std::mem::take(&mut *c.held.lock()).into_iter().map(|(n, h)| (n, h.lease)).collect();
    if let Some(s) = store.as_mut() {
        let refs: Vec<(&str, &Lease)> = held.iter().map(|(n, l)| (n.as_str(), l)).collect();
        let r = async {
            s.release(&refs).await?;
            s.leave(c.node(), &c.me).await
        };
        match tokio::time::timeout(IO_TIMEOUT, r).await {
            Ok(Ok(())) => tracing::info!("cluster: left, {} lease(s) released", held.len()),
            _ => tracing::warn!("cluster: could not release the leases; they expire within {:?}", c.ttl()),
        }
    }
    c.left.notify_one();
}

/// What a node's steps carry from one to the next.
#[derive(Default)]
struct Steps {
    /// Steps in a row each camera was seen without a lease.
    orphaned: BTreeMap<String, u32>,
    /// When the held leases were last renewed (sent).
    renewed_at: Option<Instant>,
    gate: ClaimGate,
    /// The node each camera's lease was last seen with, kept after the lease
    /// is gone: a claim of a camera last seen elsewhere is a takeover, however
    /// many steps it stood free (a dead node's leases can run out before its
    /// node key does, and the claim comes a step or more later).
    last_owner: BTreeMap<String, String>,
}

/// When this node may claim cameras. After it lost Redis for a while, or Redis
/// lost its data, a missing lease does not mean the camera is stopped: a node
/// that held it stops it only when its own lease would have run out. So no
/// claims for one TTL (and the margin) after Redis is whole again.
#[derive(Default)]
struct ClaimGate {
    outage: bool,
    epoch: Option<String>,
    until: Option<Instant>,
    /// The largest fencing token seen (claims go above it).
    fence_seen: u64,
}

impl ClaimGate {
    /// Records this step's epoch at `now`; whether claims are allowed.
    fn open(&mut self, epoch: String, now: Instant, ttl: Duration) -> bool {
        let restarted = self.epoch.as_ref().is_some_and(|e| *e != epoch);
        if restarted || std::mem::take(&mut self.outage) {
            self.until = Some(now + ttl + FENCE_MARGIN);
            if restarted {
                tracing::warn!(
                    "cluster: Redis lost its data; no camera is taken for {ttl:?}, until every old lease has run out"
                );
            }
        }
        self.epoch = Some(epoch);
        self.until.is_none_or(|u| now >= u)
    }
}

fn failed(c: &Cluster, msg: String) {
    if c.redis_ok.swap(false, Ordering::Relaxed) || c.last_error.lock().as_deref() != Some(&msg) {
        tracing::warn!("cluster: {msg}; keeping this node's cameras until their leases would expire");
    }
    *c.last_error.lock() = Some(msg);
}

/// One step: renew, look, claim, hand over.
async fn step(c: &Arc<Cluster>, h: &Arc<Hub>, s: &mut Store, st: &mut Steps) -> store::RResult<()> {
    let Steps { orphaned, renewed_at, gate, last_owner } = st;
    let name = c.node().to_owned();
    let sent = h.clock.now();
    let epoch = s.epoch().await?;
    let may_claim = gate.open(epoch, sent, c.ttl());
    if !s.renew_node(&name, &c.me).await? && s.join(&name, &c.me).await?.is_some() {
        tracing::error!("cluster: another instance took node name {name:?}");
    }
    let nodes = s.nodes().await?;
    // The API's changes, from any node: cameras run here take a changed config.
    c.refresh(s.shared().await?);
    let held: Vec<String> = c.held.lock().keys().cloned().collect();
    for name in held {
        let cfg = c.fleet.lock().get(&name).cloned();
        if let Some(cfg) = cfg
            && h.get(&name).is_some_and(|cam| *cam.config() != cfg)
        {
            let (cam, _) = h.put(cfg).await;
            if let Some(l) = c.held.lock().get(&name) {
                cam.set_owner(&l.lease.node, l.lease.fence);
            }
        }
    }
    let fleet: Vec<String> = c.fleet.lock().keys().cloned().collect();
    let refs: Vec<&str> = fleet.iter().map(String::as_str).collect();
    let leases = s.leases(&refs).await?;
    c.commands.fetch_add(7, Ordering::Relaxed);
    gate.fence_seen = gate.fence_seen.max(leases.values().map(|l| l.fence).max().unwrap_or(0));

    // Renew what is held, every third of the TTL.
    if renewed_at.is_none_or(|t| sent.saturating_duration_since(t) >= c.ttl() / 3) {
        let held: Vec<(String, Lease)> = c.held.lock().iter().map(|(n, h)| (n.clone(), h.lease.clone())).collect();
        let refs: Vec<(&str, &Lease)> = held.iter().map(|(n, l)| (n.as_str(), l)).collect();
        let t0 = h.clock.now();
        let still = s.renew(&refs).await?;
        c.renew_us.store(h.clock.since(t0).as_micros() as u64, Ordering::Relaxed);
        c.commands.fetch_add(refs.len() as u64, Ordering::Relaxed);
        *renewed_at = Some(sent);
        for ((cam, _), ok) in held.iter().zip(still) {
            if ok {
                if let Some(x) = c.held.lock().get_mut(cam) {
                    x.valid_until = sent + c.ttl();
                }
            } else {
                tracing::warn!(camera = %cam, "cluster: lease lost; stopping the camera here");
                c.held.lock().remove(cam);
                h.remove(cam).await;
            }
        }
    }

    let names: std::collections::BTreeSet<String> = nodes.keys().cloned().collect();
    let owners: BTreeMap<String, String> = leases.iter().map(|(k, l)| (k.clone(), l.node.clone())).collect();
    last_owner.retain(|cam, _| c.in_fleet(cam));
    last_owner.extend(owners.iter().map(|(k, n)| (k.clone(), n.clone())));
    for cam in &fleet {
        if owners.contains_key(cam) {
            orphaned.remove(cam);
        } else {
            *orphaned.entry(cam.clone()).or_default() += 1;
        }
    }
    let watched = |cam: &str| h.get(cam).is_some_and(|x| x.leases(crate::camera::demand::Tier::Connected) > 0);
    let plan = assign::plan(&assign::View {
        me: &name,
        nodes: &names,
        cameras: &refs,
        owners: &owners,
        orphaned,
        watched: &watched,
    });
    let mut leases = leases;
    let claims = if may_claim { plan.claim } else { Vec::new() };
    for cam in claims {
        let sent = h.clock.now();
        c.commands.fetch_add(1, Ordering::Relaxed);
        let Some(fence) = s.claim(&cam, &name, gate.fence_seen).await? else { continue };
        gate.fence_seen = gate.fence_seen.max(fence);
        let lease = Lease { node: name.clone(), fence };
        c.held.lock().insert(cam.clone(), Held { lease: lease.clone(), valid_until: sent + c.ttl() });
        leases.insert(cam.clone(), lease);
        orphaned.remove(&cam);
        if last_owner.insert(cam.clone(), name.clone()).is_some_and(|n| n != name) {
            c.takeovers.fetch_add(1, Ordering::Relaxed);
        }
        let cfg = c.fleet.lock().get(&cam).cloned();
        if let Some(cfg) = cfg {
            tracing::info!(camera = %cam, fence, "cluster: camera taken");
            h.put(cfg).await.0.set_owner(&name, fence);
        }
    }
    for cam in plan.release {
        // Stopped first, released after: never running on two nodes.
        let Some(held) = c.held.lock().remove(&cam) else { continue };
        h.remove(&cam).await;
        c.commands.fetch_add(1, Ordering::Relaxed);
        s.release(&[(cam.as_str(), &held.lease)]).await?;
        leases.remove(&cam);
        tracing::info!(camera = %cam, "cluster: camera handed over");
    }
    // Cameras that left the fleet (a reload): stop and release.
    let gone: Vec<(String, Held)> = {
        let mut held = c.held.lock();
        let names: Vec<String> = held.keys().filter(|n| !c.in_fleet(n)).cloned().collect();
        names.into_iter().filter_map(|n| held.remove(&n).map(|h| (n, h))).collect()
    };
    for (cam, held) in gone {
        h.remove(&cam).await;
        s.release(&[(cam.as_str(), &held.lease)]).await?;
    }
    *c.view.lock() = View { nodes, leases };
    Ok(())
}
