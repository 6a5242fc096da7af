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
mod rtsp;
#[allow(unused_imports)] // not every test binary starts a camera
pub use rtsp::*;

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
        if std::thread::panicking() {
            // A failed test shows what the hub said (CI keeps nothing else).
            let log = self.log();
            let mut from = log.len().saturating_sub(20_000);
            while !log.is_char_boundary(from) {
                from += 1;
            }
            let tail = &log[from..];
            eprintln!("---- the hub's log (last {} bytes) ----\n{tail}", tail.len());
        }
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
    // Distinct sockets, not lines: the kernel hands /proc/net/tcp out in
    // chunks and resumes each by position, so while other connections open
    // and close between two reads one socket's line can come back twice.
    let sockets: std::collections::BTreeSet<String> = ["tcp", "tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let remote_port = f.get(2).and_then(|r| r.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
            // st 01: ESTABLISHED; field 9: the socket's inode.
            let inode = f.get(9).filter(|i| inodes.contains(**i))?;
            (remote_port == Some(port) && f.get(3) == Some(&"01")).then(|| inode.to_string())
        })
        .collect();
    sockets.len()
}
