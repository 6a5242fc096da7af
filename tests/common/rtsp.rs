//! A real RTSP camera on loopback: GStreamer's RTSP server serving a test clip
//! (`tests/support/rtsp_server.py`), reporting each frame it sends; over TLS too.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::{repo, temp_dir};

/// A fresh self-signed certificate for 127.0.0.1: (certificate, key) PEM files.
pub fn self_signed_cert(tag: &str) -> (PathBuf, PathBuf) {
    let dir = temp_dir(tag);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "openssl made no certificate");
    (cert, key)
}

/// The newest frame the server pushed: (clip index, how many pushed in all).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    pub index: i64,
    pub count: i64,
}

pub struct RtspServer {
    child: Child,
    pub port: u16,
    sent: Arc<Mutex<Sent>>,
    pub codec: &'static str,
    /// Served over TLS (`rtsps://`).
    pub tls: bool,
}

impl RtspServer {
    /// Serves the indexed test clip of `codec` ("h264" or "h265") at 10 fps.
    pub fn start(codec: &'static str, auth: Option<(&str, &str)>) -> Self {
        Self::start_on(codec, auth, 0)
    }

    pub fn start_on(codec: &'static str, auth: Option<(&str, &str)>, port: u16) -> Self {
        Self::spawn(codec, auth, port, &[])
    }

    /// A server that refuses RTP over UDP (`461 Unsupported Transport` to a UDP SETUP).
    pub fn start_tcp_only(codec: &'static str) -> Self {
        Self::spawn(codec, None, 0, &["--tcp-only"])
    }

    /// RTSP over TLS (`rtsps://`, as UniFi Protect serves it) with a fresh
    /// self-signed certificate.
    pub fn start_tls(codec: &'static str, auth: Option<(&str, &str)>) -> Self {
        let (cert, key) = self_signed_cert("rtsps");
        let (cert, key) = (cert.to_str().unwrap().to_owned(), key.to_str().unwrap().to_owned());
        let mut server = Self::spawn(codec, auth, 0, &["--tls", &cert, &key]);
        server.tls = true;
        server
    }

    /// Serves another Annex B clip of `codec` (say, a smaller one made for the test).
    pub fn start_clip(codec: &'static str, clip: &Path, auth: Option<(&str, &str)>) -> Self {
        Self::spawn_clip(codec, clip, auth, 0, &[])
    }

    fn spawn(codec: &'static str, auth: Option<(&str, &str)>, port: u16, extra: &[&str]) -> Self {
        let clip = repo().join(format!("tests/clips/idx-{codec}.{codec}"));
        Self::spawn_clip(codec, &clip, auth, port, extra)
    }

    fn spawn_clip(codec: &'static str, clip: &Path, auth: Option<(&str, &str)>, port: u16, extra: &[&str]) -> Self {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(repo().join("tests/support/rtsp_server.py")).arg("--clip").arg(clip).args([
            "--codec",
            codec,
            "--fps",
            "10",
            "--port",
            &port.to_string(),
        ]);
        if let Some((u, p)) = auth {
            cmd.args(["--user", u, "--password", p]);
        }
        cmd.args(extra);
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("start rtsp_server.py");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("rtsp server said nothing").unwrap();
        let port: u16 = first.strip_prefix("PORT ").expect("PORT line").trim().parse().unwrap();
        let sent = Arc::new(Mutex::new(Sent::default()));
        let s = sent.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("SENT ") {
                    let idx: i64 = rest.split(' ').next().unwrap().parse().unwrap();
                    let mut g = s.lock().unwrap();
                    g.index = idx;
                    g.count += 1;
                }
            }
        });
        RtspServer { child, port, sent, codec, tls: false }
    }

    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}/cam", if self.tls { "rtsps" } else { "rtsp" }, self.port)
    }

    pub fn sent(&self) -> Sent {
        *self.sent.lock().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.kill();
    }
}
