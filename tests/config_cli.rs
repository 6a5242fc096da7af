//! The config file as a user meets it: the sample loads, and a broken file is
//! rejected with its file, line and column, by `camhub check` and `camhub serve`.

mod common;

use std::process::Command;

use common::*;

fn camhub(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_camhub")).args(args).output().unwrap()
}

#[test]
fn the_sample_config_loads() {
    let sample = repo().join("cameras.example.yaml");
    let cfg = camhub::config::Config::load(&sample).unwrap();
    let names: Vec<&str> = cfg.cameras.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["clip", "driveway", "porch"]);
    let out = camhub(&["check", sample.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("porch: rtsp://192.168.1.20:554/stream1"), "{text}");
    assert!(
        text.contains(
            "driveway: rtsp://192.168.1.21/h264Preview_01_main (sub: rtsp://192.168.1.21/h264Preview_01_sub)"
        ),
        "{text}"
    );
    assert!(!text.contains("changeme"), "passwords are never printed: {text}");
}

#[test]
fn a_broken_config_names_its_line() {
    let dir = temp_dir("cfg");
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "cameras:\n  ok: rtsp://10.0.0.1/s\n  yard:\n    url: rtsp://10.0.0.2/s\n    keep: sometimes\n",
    )
    .unwrap();
    for args in [vec!["check"], vec!["serve", "--listen", "127.0.0.1:0", "--config"]] {
        let mut a = args.clone();
        a.push(bad.to_str().unwrap());
        let out = camhub(&a);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{}:5:", bad.display())), "{args:?}: {err}");
        assert!(err.contains("sometimes"), "{err}");
    }
    std::fs::write(
        &bad,
        "cameras:\n  a: rtsp://x/y\n  b: rtsp://x/y\n  c:\n    url: rtsp://x/y\n    password: ${CAMHUB_SURELY_UNSET}\n",
    )
    .unwrap();
    let out = camhub(&["check", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(":6:") && err.contains("CAMHUB_SURELY_UNSET is not set"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn check_never_prints_a_sub_stream_password() {
    let dir = temp_dir("cfg-sub");
    let f = dir.join("cams.yaml");
    std::fs::write(
        &f,
        "cameras:\n  gate:\n    streams:\n      main: rtsp://admin:ma1n-pw@10.0.0.2/main\n      sub: \"rtsp://admin:5ub-pw@10.0.0.2/sub?password=5ub-q\"\n",
    )
    .unwrap();
    let out = camhub(&["check", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("gate: rtsp://10.0.0.2/main (sub: rtsp://10.0.0.2/sub?password=***)"), "{text}");
    for s in ["ma1n-pw", "5ub-pw", "5ub-q"] {
        assert!(!text.contains(s), "{s}: {text}");
    }
    // A broken sub URL is refused without showing its password either.
    std::fs::write(&f, "cameras:\n  gate:\n    streams: {main: rtsp://h/m, sub: \"rtsp://u:5ub-pw@[h/s\"}\n").unwrap();
    let out = camhub(&["check", f.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(":3:") && err.contains("streams.sub: bad url"), "{err}");
    assert!(!err.contains("5ub-pw"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
