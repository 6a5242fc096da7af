//! Racing API calls against the real hub (issue 15, item 11): many concurrent
//! PUT and DELETE of the same few camera names. Every request answers, the list
//! shows exactly the cameras that should exist, and no camera keeps running
//! unseen: the hub holds one RTSP connection per listed camera, no more.

mod common;

use std::time::{Duration, Instant};

use common::*;

const NAMES: [&str; 4] = ["r0", "r1", "r2", "r3"];
const THREADS: u64 = 8;
const OPS_PER_THREAD: u64 = 12;

fn listed(hub: &Hub) -> Vec<String> {
    let r = hub.get("/api/cameras");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .into()
}

#[test]
fn concurrent_put_and_delete_of_the_same_names_leave_no_hidden_camera() {
    let server = RtspServer::start("h264", None);
    let hub = Hub::start("cameras: {}\n");
    let started = Instant::now();
    let answers: Vec<(String, u16)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (base, url) = (hub.base.clone(), server.url());
                s.spawn(move || {
                    let agent = agent();
                    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    let mut next = move || {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed
                    };
                    let mut out = Vec::new();
                    for _ in 0..OPS_PER_THREAD {
                        let r = next();
                        let name = NAMES[(r % NAMES.len() as u64) as usize];
                        let at = format!("{base}/api/cameras/{name}");
                        let what = if r >> 8 & 3 == 0 { "DELETE" } else { "PUT" };
                        let res = if what == "DELETE" {
                            agent.delete(&at).call()
                        } else {
                            // Different options each time, so a PUT replaces the running camera.
                            let body = format!(r#"{{"url": "{url}", "decode_linger": {}}}"#, (r >> 16) % 5);
                            agent.put(&at).header("content-type", "application/json").send(&body)
                        };
                        let status = res.unwrap_or_else(|e| panic!("{what} {name} got no answer: {e}")).status();
                        out.push((format!("{what} {name}"), status.as_u16()));
                    }
                    out
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("a request loop failed")).collect()
    });
    assert_eq!(answers.len() as u64, THREADS * OPS_PER_THREAD);
    for (what, status) in &answers {
        let ok: &[u16] = if what.starts_with("PUT") { &[200, 201] } else { &[204, 404] };
        assert!(ok.contains(status), "{what}: {status}");
    }
    assert!(started.elapsed() < Duration::from_secs(60), "the requests took {:?}", started.elapsed());

    // Whatever order the race took, what is listed is what runs.
    // The count must reach `want` and stay there (a hidden camera may still be connecting).
    let settle = |want: usize| {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            let n = connections_to(hub.pid(), server.port);
            if n == want {
                std::thread::sleep(Duration::from_secs(1));
                let again = connections_to(hub.pid(), server.port);
                if again == want {
                    return want;
                }
            } else if Instant::now() > end {
                return n;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let after_race = listed(&hub);
    let n = settle(after_race.len());
    assert_eq!(n, after_race.len(), "connections to the camera for the listed {after_race:?}\n{}", hub.log());

    // Then a known end: two kept, two deleted, one at a time.
    for (i, name) in NAMES.iter().enumerate() {
        let status = if i < 2 {
            hub.send("PUT", &format!("/api/cameras/{name}"), Some(&format!(r#"{{"url": "{}"}}"#, server.url()))).status
        } else {
            hub.send("DELETE", &format!("/api/cameras/{name}"), None).status
        };
        assert!([200, 201, 204, 404].contains(&status), "{name}: {status}");
    }
    assert_eq!(listed(&hub), ["r0", "r1"]);
    let n = settle(2);
    assert_eq!(n, 2, "one upstream session per camera, no orphan\n{}", hub.log());
}
