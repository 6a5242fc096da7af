//! Shared pieces of the integration tests: a real RTSP server (GStreamer, on
//! loopback), the real `camhub` binary, a real HTTP client, and reading the
//! frame index that each test-clip frame carries as a barcode.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod pictures;
#[allow(unused_imports)] // not every test binary reads pictures
pub use pictures::*;

pub const CLIP_FRAMES: i64 = 300;
pub const GOP: i64 = 100;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "camhub-test-{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

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

/// The camhub binary, serving a config on a free loopback port.
pub struct Hub {
    child: Child,
    pub base: String,
    pub dir: PathBuf,
    log: Arc<Mutex<String>>,
}

impl Hub {
    pub fn start(config_yaml: &str) -> Self {
        Self::start_env(config_yaml, &[])
    }

    /// With extra environment variables for the hub process.
    pub fn start_env(config_yaml: &str, env: &[(&str, &str)]) -> Self {
        Self::start_at(config_yaml, env, "127.0.0.1:0")
    }

    /// Listening on `listen` (`--listen`), e.g. `0.0.0.0:0`.
    pub fn start_at(config_yaml: &str, env: &[(&str, &str)], listen: &str) -> Self {
        let dir = temp_dir("hub");
        let cfg = dir.join("cameras.yaml");
        std::fs::write(&cfg, config_yaml).unwrap();
        Self::spawn(Some(&cfg), dir, env, listen)
    }

    /// `camhub serve` with no config: the built-in demo cameras.
    pub fn start_demo() -> Self {
        Self::spawn(None, temp_dir("demo"), &[], "127.0.0.1:0")
    }

    /// Serving an existing config file (a restart reads what the last run left).
    pub fn start_file(cfg: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn(Some(cfg), cfg.parent().unwrap().to_owned(), env, "127.0.0.1:0")
    }

    /// Serving a config file it may read but not write: run as `nobody` when the
    /// tests run as root (root writes anything), else with the file and its
    /// folder made read-only.
    pub fn start_file_read_only(cfg: &Path) -> Self {
        let dir = cfg.parent().unwrap();
        if rustix::process::geteuid().is_root() {
            return Self::spawn_as(
                &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
                Some(cfg),
                dir.to_owned(),
                &[],
                "127.0.0.1:0",
            );
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(cfg, std::fs::Permissions::from_mode(0o444)).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        Self::start_file(cfg, &[])
    }

    fn spawn(cfg: Option<&Path>, dir: PathBuf, env: &[(&str, &str)], listen: &str) -> Self {
        Self::spawn_as(&[], cfg, dir, env, listen)
    }

    /// `camhub serve`, run through `wrapper` (a command and its arguments) if any.
    fn spawn_as(wrapper: &[&str], cfg: Option<&Path>, dir: PathBuf, env: &[(&str, &str)], listen: &str) -> Self {
        let mut cmd = match wrapper.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(env!("CARGO_BIN_EXE_camhub"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_camhub")),
        };
        cmd.arg("serve").args(["--listen", listen]);
        if let Some(c) = cfg {
            cmd.arg("--config").arg(c);
        }
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .env("CAMHUB_LOG", "camhub=debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start camhub");
        let log = Arc::new(Mutex::new(String::new()));
        let l = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut g = l.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = out.next().unwrap_or_else(|| panic!("camhub exited early: {}", log.lock().unwrap())).unwrap();
        let base = line.strip_prefix("camhub listening on ").expect("listening line").trim().to_owned();
        std::thread::spawn(move || for _ in out.map_while(Result::ok) {});
        Hub { child, base, dir, log }
    }

    pub fn get(&self, path: &str) -> Response {
        http_get(&format!("{}{}", self.base, path))
    }

    pub fn send(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        http_send(method, &format!("{}{}", self.base, path), body)
    }

    /// Rewrites the config file and sends SIGHUP.
    pub fn reload(&self, config_yaml: &str) {
        std::fs::write(self.dir.join("cameras.yaml"), config_yaml).unwrap();
        signal(self.pid(), "HUP");
    }

    /// Waits until the log contains `text`.
    pub fn wait_log(&self, text: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        while !self.log().contains(text) {
            assert!(Instant::now() < end, "log never said {text:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < end, "camhub did not exit:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn camera(&self, name: &str) -> serde_json::Value {
        let r = self.get(&format!("/api/cameras/{name}"));
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    }

    /// Waits until the camera's JSON satisfies `pred`.
    pub fn wait_camera(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let end = Instant::now() + timeout;
        loop {
            let c = self.camera(name);
            if pred(&c) {
                return c;
            }
            assert!(Instant::now() < end, "camera {name} never became {what}: {c:#}\nlog:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_streaming(&self, name: &str) -> serde_json::Value {
        self.wait_camera(name, "streaming with a keyframe", Duration::from_secs(20), |c| {
            c["state"] == "streaming" && c["gop_cache"]["units"].as_u64() > Some(0)
        })
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends a signal (`HUP`, `TERM`, `STOP`, `CONT`, ...) to a process.
pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    assert!(st.success(), "kill -{sig} {pid}");
}

/// Open file descriptors, threads and resident memory (KiB) of a process.
pub fn proc_stats(pid: u32) -> (usize, usize, usize) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> usize {
        status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap()
    };
    (fds, field("Threads:"), field("VmRSS:"))
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn frame_id(&self) -> u64 {
        self.header("x-frame-id").expect("X-Frame-Id").parse().unwrap()
    }
    pub fn age_ms(&self) -> u64 {
        self.header("x-frame-age-ms").expect("X-Frame-Age-Ms").parse().unwrap()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub fn http_get(url: &str) -> Response {
    let r = agent().get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    into_response(r)
}

/// Any request, with extra headers.
pub fn http_request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Response {
    let a = agent();
    let r = match method {
        "GET" | "DELETE" | "OPTIONS" => {
            let mut b = ureq::http::Request::builder().method(method).uri(url);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            a.run(b.body(()).unwrap())
        }
        _ => {
            let mut b =
                ureq::http::Request::builder().method(method).uri(url).header("content-type", "application/json");
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            a.run(b.body(body.unwrap_or("").to_owned()).unwrap())
        }
    };
    into_response(r.unwrap_or_else(|e| panic!("{method} {url}: {e}")))
}

/// Sends `method` with a JSON body (or none).
pub fn http_send(method: &str, url: &str, body: Option<&str>) -> Response {
    let a = agent();
    let r = match (method, body) {
        ("POST", Some(b)) => a.post(url).header("content-type", "application/json").send(b),
        ("PUT", Some(b)) => a.put(url).header("content-type", "application/json").send(b),
        ("PATCH", Some(b)) => a.patch(url).header("content-type", "application/json").send(b),
        ("DELETE", None) => a.delete(url).call(),
        _ => panic!("unsupported {method}"),
    };
    into_response(r.unwrap_or_else(|e| panic!("{method} {url}: {e}")))
}

fn into_response(mut r: ureq::http::Response<ureq::Body>) -> Response {
    let status = r.status().as_u16();
    let headers =
        r.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
    let body = r.body_mut().with_config().limit(64 << 20).read_to_vec().unwrap();
    Response { status, headers, body }
}

/// A browser-like WHEP offer (receive H.264 video), made with str0m.
pub fn whep_offer() -> String {
    str0m::crypto::from_feature_flags().install_process_default();
    let mut rtc = str0m::RtcConfig::new().clear_codecs().enable_h264(true).build(std::time::Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(str0m::media::MediaKind::Video, str0m::media::Direction::RecvOnly, None, None, None);
    let (offer, _pending) = api.apply().expect("an offer");
    offer.to_sdp_string()
}

/// The hub's established TCP connections to `port` (its sockets only, by inode).
pub fn connections_to(pid: u32, port: u16) -> usize {
    let inodes: std::collections::BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let remote_port = f.get(2).and_then(|r| r.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
            // st 01: ESTABLISHED; field 9: the socket's inode.
            remote_port == Some(port) && f.get(3) == Some(&"01") && f.get(9).is_some_and(|i| inodes.contains(*i))
        })
        .count()
}
