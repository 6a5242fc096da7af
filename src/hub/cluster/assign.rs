//! Which node should own which camera, and what this node does about it in one
//! step. Pure: every node computes the same answer from the same live nodes and
//! fleet, with no coordination beyond the leases.
//!
//! Rendezvous hashing with bounded loads: each camera ranks the live nodes by a
//! stable hash of (node, camera); cameras, in a stable order, each take their
//! highest-ranked node that still has room (at most `ceil(cameras / nodes)`).
//! Cameras spread evenly (within one of each other), and a node joining or
//! leaving moves few of them.

use std::collections::{BTreeMap, BTreeSet};

/// Cameras this node gives up per step when another node should own them:
/// a join rebalances gently, never all at once.
pub const MOVES_PER_STEP: usize = 2;
/// Steps a camera may go unowned before any node may claim it (its planned
/// owner is alive but has not claimed it: busy, or failing to).
pub const ORPHAN_STEPS: u32 = 3;

/// FNV-1a, then a finaliser: stable across builds and machines (every node
/// must rank alike), well spread.
fn weight(node: &str, camera: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain([0xff]).chain(camera.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// The owner each camera should have among `nodes` (empty: none).
pub fn desired<'a>(nodes: &'a BTreeSet<String>, cameras: &[&'a str]) -> BTreeMap<&'a str, &'a str> {
    let mut out = BTreeMap::new();
    if nodes.is_empty() {
        return out;
    }
    let cap = cameras.len().div_ceil(nodes.len());
    let mut load: BTreeMap<&str, usize> = nodes.iter().map(|n| (n.as_str(), 0)).collect();
    let mut order: Vec<&str> = cameras.to_vec();
    order.sort_by_key(|c| (weight("", c), *c));
    for cam in order {
        let mut ranked: Vec<&str> = nodes.iter().map(String::as_str).collect();
        ranked.sort_by_key(|n| (std::cmp::Reverse(weight(n, cam)), *n));
        let node = ranked.into_iter().find(|n| load[n] < cap).expect("room: cap * nodes >= cameras");
        *load.get_mut(node).unwrap() += 1;
        out.insert(cam, node);
    }
    out
}

/// What one node sees at a step.
pub struct View<'a> {
    pub me: &'a str,
    /// Nodes alive now (this one among them).
    pub nodes: &'a BTreeSet<String>,
    /// The fleet: every camera any node may run.
    pub cameras: &'a [&'a str],
    /// Each camera's owner by its lease (absent: no lease).
    pub owners: &'a BTreeMap<String, String>,
    /// How many steps each camera has gone without an owner.
    pub orphaned: &'a BTreeMap<String, u32>,
    /// Whether someone is watching a camera this node runs.
    pub watched: &'a dyn Fn(&str) -> bool,
}

/// What this node does at a step.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Cameras to claim (unowned; planned here, or orphaned).
    pub claim: Vec<String>,
    /// Cameras to hand over (owned here, planned elsewhere, not watched).
    pub release: Vec<String>,
}

pub fn plan(v: &View) -> Plan {
    let want = desired(v.nodes, v.cameras);
    let mut p = Plan::default();
    for cam in v.cameras {
        let owner = v.owners.get(*cam).map(String::as_str);
        let planned = want.get(cam).copied();
        match owner {
            None => {
                let orphan = v.orphaned.get(*cam).copied().unwrap_or(0) >= ORPHAN_STEPS;
                if planned == Some(v.me) || orphan {
                    p.claim.push((*cam).to_owned());
                }
            }
            Some(o) if o == v.me => {
                if planned.is_some_and(|n| n != v.me) && !(v.watched)(cam) && p.release.len() < MOVES_PER_STEP {
                    p.release.push((*cam).to_owned());
                }
            }
            Some(_) => {}
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: &[&str]) -> BTreeSet<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    fn cams(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("cam{i}")).collect()
    }

    #[test]
    fn every_node_gets_its_share_within_one() {
        for (n, c) in [(3, 6), (3, 100), (2, 7), (5, 3), (1, 10)] {
            let ns: Vec<String> = (0..n).map(|i| format!("node-{i}")).collect();
            let set = nodes(&ns.iter().map(String::as_str).collect::<Vec<_>>());
            let cs = cams(c);
            let refs: Vec<&str> = cs.iter().map(String::as_str).collect();
            let d = desired(&set, &refs);
            assert_eq!(d.len(), c);
            let mut load: BTreeMap<&str, usize> = BTreeMap::new();
            for node in d.values() {
                *load.entry(node).or_default() += 1;
            }
            let (lo, hi) = (c / n, c.div_ceil(n));
            for node in &ns {
                let l = load.get(node.as_str()).copied().unwrap_or(0);
                assert!((lo.saturating_sub(1)..=hi).contains(&l), "{n} nodes, {c} cameras: {node} has {l}");
            }
        }
    }

    #[test]
    fn a_joining_node_moves_few_cameras() {
        let cs = cams(100);
        let refs: Vec<&str> = cs.iter().map(String::as_str).collect();
        let three = nodes(&["a", "b", "c"]);
        let four = nodes(&["a", "b", "c", "d"]);
        let before = desired(&three, &refs);
        let after = desired(&four, &refs);
        let moved = refs.iter().filter(|c| before[*c] != after[*c]).count();
        assert!(moved <= 40, "a quarter should move to d, give or take: {moved}");
        assert_eq!(after.values().filter(|n| **n == "d").count(), 25);
    }

    #[test]
    fn a_step_claims_its_own_hands_over_gently_and_keeps_watched_cameras() {
        let cs = cams(12);
        let refs: Vec<&str> = cs.iter().map(String::as_str).collect();
        let all = nodes(&["a", "b"]);
        // a owned everything alone; b joined.
        let owners: BTreeMap<String, String> = cs.iter().map(|c| (c.clone(), "a".to_owned())).collect();
        let none = BTreeMap::new();
        let want = desired(&all, &refs);
        let for_b: Vec<&str> = refs.iter().copied().filter(|c| want[c] == "b").collect();
        let watched_one = for_b[0];
        let watched = |c: &str| c == watched_one;
        let v = View { me: "a", nodes: &all, cameras: &refs, owners: &owners, orphaned: &none, watched: &watched };
        let p = plan(&v);
        assert!(p.claim.is_empty());
        assert_eq!(p.release.len(), MOVES_PER_STEP);
        assert!(p.release.iter().all(|c| want[c.as_str()] == "b" && c != watched_one), "{p:?}");
        // b claims what is planned for it once it is free, and nothing else.
        let mut owners = owners;
        for c in &p.release {
            owners.remove(c);
        }
        let v = View { me: "b", nodes: &all, cameras: &refs, owners: &owners, orphaned: &none, watched: &|_| false };
        assert_eq!(plan(&v).claim, p.release);
        // An orphan (its planned owner never claims it) is anyone's after a few steps.
        let orphaned: BTreeMap<String, u32> = p.release.iter().map(|c| (c.clone(), ORPHAN_STEPS)).collect();
        let v =
            View { me: "a", nodes: &all, cameras: &refs, owners: &owners, orphaned: &orphaned, watched: &|_| false };
        assert_eq!(plan(&v).claim, p.release);
    }
}
