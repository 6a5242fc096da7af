//! Cameras added, changed and removed through the API are written into the
//! config file, so that a restart serves the same cameras: the rest of the file
//! (comments, `${VAR}` references, other cameras) stays as it was; parallel
//! writes never corrupt it; a file that cannot be written refuses the change
//! with the reason and changes nothing; run-time-only changes say so.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::*;

fn names(hub: &Hub) -> BTreeSet<String> {
    hub.get("/api/cameras").json().as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect()
}

fn stop(hub: &mut Hub) {
    signal(hub.pid(), "TERM");
    assert!(hub.wait_exit(Duration::from_secs(15)).success());
}

fn post(hub: &Hub, body: &str) -> Response {
    hub.send("POST", "/api/cameras", Some(body))
}

#[test]
fn api_changes_are_written_into_the_config_file_and_survive_a_restart() {
    let server = RtspServer::start("h264", None);
    let text = format!(
        "# camhub at home\nserver:\n  rtsp: false   # no restream here\n\ncameras:\n  # the door: its password from the environment\n  door:\n    url: {}\n    username: admin\n    password: \"${{DOOR_PW}}\"\n    keep: on_demand\n  old: rtsp://127.0.0.1:9/old  # goes away\n\n# end of cameras\n",
        server.url()
    );
    let env = [("DOOR_PW", "d00r-secret")];
    let mut hub = Hub::start_env(&text, &env);
    let file = hub.dir.join("cameras.yaml");

    let r = post(&hub, &format!(r#"{{"name": "yard", "url": "{}", "keep": "connected"}}"#, server.url()));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("warning"), None, "saved: nothing to warn about");
    let r = hub.send("PUT", "/api/cameras/gate", Some(r#"{"url": "rtsp://127.0.0.1:9/gate$1", "keep": "on_demand"}"#));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(hub.send("DELETE", "/api/cameras/old", None).status, 204);

    let now = std::fs::read_to_string(&file).unwrap();
    for kept in [
        "# camhub at home\n",
        "  rtsp: false   # no restream here\n",
        "  # the door: its password from the environment\n  door:\n",
        "    password: \"${DOOR_PW}\"\n",
        "\n# end of cameras\n",
    ] {
        assert!(now.contains(kept), "{kept:?} kept:\n{now}");
    }
    assert!(now.contains("  yard:\n") && now.contains("  gate:\n"), "{now}");
    assert!(now.contains("gate$$1"), "a literal $ from the API stays literal: {now}");
    assert!(!now.contains("old"), "{now}");
    assert!(!now.contains("d00r-secret"), "the environment's value is not written: {now}");

    // The restart serves the same cameras, the same way.
    let before: Vec<_> = ["door", "yard", "gate"].iter().map(|n| hub.camera(n)).collect();
    stop(&mut hub);
    let hub = Hub::start_file(&file, &env);
    assert_eq!(names(&hub), BTreeSet::from(["door".into(), "gate".into(), "yard".into()]));
    for b in &before {
        let a = hub.camera(b["name"].as_str().unwrap());
        for key in ["url", "keep", "transport"] {
            assert_eq!(a[key], b[key], "{key} of {}", b["name"]);
        }
    }
    assert!(hub.camera("gate")["url"].as_str().unwrap().ends_with("/gate$1"));
    let r = hub.get("/api/cameras/yard/snapshot.jpg");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!((0..CLIP_FRAMES).contains(&Picture::decode(&r.body).barcode()));
    // A reload of the file changes nothing now: it already says what runs.
    signal(hub.pid(), "HUP");
    hub.wait_log("config reloaded", Duration::from_secs(10));
    assert!(hub.log().contains("added [], changed [], removed []"), "{}", hub.log());
}

#[test]
fn parallel_writes_leave_a_file_that_loads_with_every_change() {
    let mut hub = Hub::start("server:\n  rtsp: false\ncameras:\n  first: rtsp://127.0.0.1:9/first\n");
    let file = hub.dir.join("cameras.yaml");
    std::thread::scope(|s| {
        for i in 0..16 {
            let hub = &hub;
            s.spawn(move || {
                let body = format!(r#"{{"name": "c{i}", "url": "rtsp://127.0.0.1:9/c{i}", "keep": "on_demand"}}"#);
                assert_eq!(post(hub, &body).status, 201);
                if i % 4 == 0 {
                    let body = r#"{"url": "rtsp://127.0.0.1:9/changed", "keep": "on_demand"}"#;
                    assert_eq!(hub.send("PUT", &format!("/api/cameras/c{i}"), Some(body)).status, 200);
                }
                if i % 5 == 1 {
                    assert_eq!(hub.send("DELETE", &format!("/api/cameras/c{i}"), None).status, 204);
                }
            });
        }
    });
    let running = names(&hub);
    let urls: Vec<String> = running.iter().map(|n| hub.camera(n)["url"].as_str().unwrap().to_owned()).collect();
    assert_eq!(running.len(), 1 + 16 - 3, "c1, c6 and c11 removed: {running:?}");
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_camhub")).arg("check").arg(&file).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    stop(&mut hub);
    let hub = Hub::start_file(&file, &[]);
    assert_eq!(names(&hub), running);
    let again: Vec<String> = running.iter().map(|n| hub.camera(n)["url"].as_str().unwrap().to_owned()).collect();
    assert_eq!(again, urls);
}

fn assert_refused(hub: &Hub, file: &Path, says: &str) {
    let was = std::fs::read_to_string(file).unwrap();
    let r = post(hub, r#"{"name": "new", "url": "rtsp://127.0.0.1:9/new"}"#);
    assert_eq!(r.status, 409, "{}", r.text());
    let msg = r.json()["error"].as_str().unwrap().to_owned();
    assert!(msg.starts_with("not changed: cannot save to") && msg.contains(says), "{msg}");
    assert_eq!(hub.send("DELETE", "/api/cameras/a", None).status, 409);
    assert_eq!(names(hub), BTreeSet::from(["a".to_owned()]), "nothing changed");
    assert_eq!(std::fs::read_to_string(file).unwrap(), was);
}

#[test]
fn a_file_that_cannot_be_written_refuses_the_change_and_run_time_only_changes_say_so() {
    // Read-only (as a service whose /etc is mounted read-only).
    let dir = temp_dir("ro");
    let file = dir.join("cameras.yaml");
    std::fs::write(&file, "server:\n  rtsp: false\ncameras:\n  a: rtsp://127.0.0.1:9/a\n").unwrap();
    let hub = Hub::start_file_read_only(&file);
    assert_refused(&hub, &file, "server.persist: false");
    drop(hub);

    // A form camhub does not edit: refused, naming the line.
    let hub = Hub::start("server:\n  rtsp: false\ncameras: {a: \"rtsp://127.0.0.1:9/a\"}\n");
    assert_refused(&hub, &hub.dir.join("cameras.yaml"), "line 3: `cameras:` is written in flow style");
    drop(hub);

    // persist: false, and the demo (no file): changes apply and say they will not last.
    let hub = Hub::start("server:\n  rtsp: false\n  persist: false\ncameras:\n  a: rtsp://127.0.0.1:9/a\n");
    let r = post(&hub, r#"{"name": "new", "url": "rtsp://127.0.0.1:9/new"}"#);
    assert_eq!(r.status, 201);
    assert!(r.header("warning").unwrap().contains("run-time only (server.persist is false)"), "{:?}", r.headers);
    assert!(!std::fs::read_to_string(hub.dir.join("cameras.yaml")).unwrap().contains("new"));
    let demo = Hub::start_demo();
    let r = demo.send("DELETE", "/api/cameras/demo", None);
    assert_eq!(r.status, 204);
    assert!(r.header("warning").unwrap().contains("no config file"), "{:?}", r.headers);
}
