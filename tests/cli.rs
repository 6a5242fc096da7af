//! The commands for people adding cameras: `camhub probe URL` reports what a
//! camera sends or exactly why it cannot be read; `camhub snapshot URL -o f.jpg`
//! takes one picture without a server.

mod common;

use std::process::{Command, Output};

use common::*;

fn camhub(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_camhub")).args(args).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn probe_reports_what_the_camera_sends() {
    let server = RtspServer::start("h265", Some(("u", "pw-probe-1")));
    let url = format!("rtsp://u:pw-probe-1@127.0.0.1:{}/cam", server.port);
    let o = camhub(&["probe", &url, "--seconds", "3"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("codec:              h265"), "{out}");
    assert!(out.contains("resolution:         640x360"), "{out}");
    assert!(out.contains("transport:          tcp"), "{out}");
    assert!(out.contains("keyframe interval:  more than"), "the clip's GOP is 10 s: {out}");
    let fps: f64 = out.lines().find_map(|l| l.strip_prefix("fps:")).unwrap().trim().parse().unwrap();
    assert!((8.0..12.0).contains(&fps), "{out}");
    assert!(!out.contains("pw-probe-1") && !err.contains("pw-probe-1"));
}

#[test]
fn probe_says_why_a_camera_cannot_be_read() {
    let server = RtspServer::start("h264", Some(("u", "right")));
    let p = server.port;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for (url, why) in [
        (format!("rtsp://u:Wr0ngPass@127.0.0.1:{p}/cam"), "authentication failed"),
        (format!("rtsp://u:right@127.0.0.1:{p}/elsewhere"), "not found"),
        (format!("rtsp://127.0.0.1:{dead}/cam"), "unreachable"),
        ("/no/such/file.mp4".to_string(), "no such file"),
        ("ftp://example/x".to_string(), "unsupported url scheme"),
    ] {
        let o = camhub(&["probe", &url, "--seconds", "2"]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{url}: {err}");
        assert!(err.starts_with("camhub: ") && err.contains(why), "{url}: {err}");
        assert!(!err.contains("Wr0ngPass") && !err.contains("backtrace"), "{err}");
    }
}

#[test]
fn snapshot_command_writes_a_picture() {
    let server = RtspServer::start("h264", None);
    let dir = temp_dir("cli");
    let out = dir.join("one.jpg");
    let o = camhub(&["snapshot", &server.url(), "-o", out.to_str().unwrap(), "--width", "320"]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(stdout.contains("320x180"), "{stdout}");
    let pic = Picture::decode(&std::fs::read(&out).unwrap());
    assert_eq!((pic.width, pic.height), (320, 180));
    assert!((0..CLIP_FRAMES).contains(&pic.barcode()));
    assert!(pic.colour_spread() > 40.0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = camhub(&["completions", shell]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{shell}: {err}");
        for word in ["camhub", "serve", "check", "probe", "snapshot", "completions", "--config"] {
            assert!(out.contains(word), "{shell} completions lack {word}");
        }
    }
    let o = camhub(&["completions", "tcsh"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(err.contains("invalid value 'tcsh'") && err.contains("bash, elvish, fish, powershell, zsh"), "{err}");
}

#[test]
fn version_names_the_commit_and_the_libraries() {
    let (out, _) = text(&camhub(&["--version"]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with(&format!("camhub {} (git ", env!("CARGO_PKG_VERSION"))), "{out}");
    for (i, lib) in ["FFmpeg ", "libjpeg-turbo ", "GStreamer ", "OpenSSL "].into_iter().enumerate() {
        assert!(lines[i + 1].starts_with(lib), "{out}");
    }
    assert!(lines[1].contains(": libavcodec ") && lines[1].contains(", libswscale "), "{out}");
    let (short, _) = text(&camhub(&["-V"]));
    assert_eq!(short.trim(), lines[0]);
}
