//! Logs for operations: no terminal colour codes when stderr is not a terminal,
//! `--log-format json` (one JSON object per line) and `--log-level` flags and
//! their `server.log` config keys, and a camera that keeps failing writes one
//! line for the failure, not one per retry.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs `camhub serve` on `config` with `flags` (no `CAMHUB_LOG`, no
/// `NO_COLOR`: as a service manager would) until camera `bad` has failed at
/// least three times; its stderr.
fn serve_log(config: &str, flags: &[&str]) -> String {
    let dir = temp_dir("logs");
    let file = dir.join("cameras.yaml");
    std::fs::write(&file, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_camhub"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .args(flags)
        .env_remove("CAMHUB_LOG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = out.next().expect("a listening line").unwrap();
    let base = line.strip_prefix("camhub listening on ").expect("listening line").trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = http_get(&format!("{base}/api/cameras/bad")).json();
        if c["attempts"].as_u64().unwrap_or(0) >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "camera bad never failed three times: {c}");
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(child.id(), "TERM");
    assert!(child.wait().unwrap().success());
    err.join().unwrap()
}

const CONFIG: &str = "server:\n  rtsp: false\ncameras:\n  bad: rtsp://127.0.0.1:9/nothing-listens\n";

#[test]
fn json_lines_with_the_camera_and_one_line_for_a_failure_that_repeats() {
    let log = serve_log(CONFIG, &["--log-format", "json"]);
    let lines: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{log}"))).collect();
    for v in &lines {
        assert!(v["timestamp"].is_string() && v["level"].is_string() && v["message"].is_string(), "{v}");
    }
    let failures: Vec<_> = lines
        .iter()
        .filter(|v| v["spans"][0]["camera"] == "bad" && v["message"].as_str().unwrap().contains("retrying"))
        .collect();
    assert_eq!(failures.len(), 1, "three failures, one line: {log}");
    assert_eq!(failures[0]["level"], "WARN");
    assert!(failures[0]["message"].as_str().unwrap().contains("Connection refused"), "{log}");
    assert!(lines.iter().any(|v| v["message"] == "stopped" && v["level"] == "INFO"), "{log}");
}

#[test]
fn text_logs_carry_no_colour_codes_off_a_terminal_and_levels_filter() {
    let log = serve_log(CONFIG, &[]);
    assert!(!log.contains('\x1b'), "no ANSI escapes when stderr is a pipe:\n{log}");
    assert!(log.contains(" INFO ") && log.contains("listening on"), "{log}");
    assert_eq!(log.matches("retrying in").count(), 1, "{log}");

    // --log-level debug: the repeats the warnings left out are there at debug.
    let log = serve_log(CONFIG, &["--log-level", "debug"]);
    assert!(log.lines().filter(|l| l.contains("DEBUG") && l.contains("retrying in")).count() >= 2, "{log}");
    // --log-level warn: no info lines.
    let log = serve_log(CONFIG, &["--log-level", "warn"]);
    assert!(!log.contains(" INFO ") && log.contains(" WARN "), "{log}");
}

#[test]
fn the_config_file_sets_the_format_and_level_and_flags_win() {
    let config = CONFIG.replace("server:\n", "server:\n  log: {format: json, level: warn}\n");
    let log = serve_log(&config, &[]);
    assert!(!log.is_empty() && log.lines().all(|l| l.starts_with('{')), "{log}");
    assert!(!log.contains("\"INFO\""), "{log}");
    let log = serve_log(&config, &["--log-format", "text", "--log-level", "info"]);
    assert!(!log.lines().any(|l| l.starts_with('{')) && log.contains(" INFO "), "{log}");
}
