//! MQTT against a real broker: Debian's `mosquitto` on a free loopback port,
//! read with `mosquitto_sub`, and the real `camhub` binary with a real RTSP
//! camera. Availability with its will, per-camera state and attributes, Home
//! Assistant discovery, removal, a broker that is away at start, and a login.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const LONG: Duration = Duration::from_secs(60);

/// A mosquitto of our own, on loopback.
struct Broker {
    child: Child,
    port: u16,
    dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Broker {
    fn start(login: Option<(&str, &str)>) -> Broker {
        Broker::start_on(free_port(), login)
    }

    /// Anonymous, or with one user in a password file (`mosquitto_passwd`).
    fn start_on(port: u16, login: Option<(&str, &str)>) -> Broker {
        let dir = temp_dir("mosquitto");
        let mut conf = format!("listener {port} 127.0.0.1\npersistence false\n");
        match login {
            None => conf.push_str("allow_anonymous true\n"),
            Some((user, password)) => {
                let file = dir.join("passwd");
                let st = Command::new("mosquitto_passwd").args(["-b", "-c"]).arg(&file).args([user, password]).status();
                assert!(st.unwrap().success(), "mosquitto_passwd");
                conf.push_str(&format!("allow_anonymous false\npassword_file {}\n", file.display()));
            }
        }
        std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
        // Debian installs it in /usr/sbin, which a user's PATH may lack.
        let bin =
            if std::path::Path::new("/usr/sbin/mosquitto").exists() { "/usr/sbin/mosquitto" } else { "mosquitto" };
        let child = Command::new(bin)
            .arg("-c")
            .arg(dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let end = Instant::now() + LONG;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "mosquitto never listened on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child, port, dir }
    }

    fn sub_args(&self, login: Option<(&str, &str)>) -> Vec<String> {
        let mut a = vec!["-h".into(), "127.0.0.1".into(), "-p".into(), self.port.to_string()];
        if let Some((u, p)) = login {
            a.extend(["-u".into(), u.into(), "-P".into(), p.into()]);
        }
        a
    }

    /// Every message on `topics` from now on, as `RETAIN TOPIC PAYLOAD` lines.
    fn subscribe(&self, topics: &[&str], login: Option<(&str, &str)>) -> Subscriber {
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args(self.sub_args(login)).args(["-v", "-F", "%r %t %p"]);
        for t in topics {
            cmd.args(["-t", t]);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        Subscriber { child, lines }
    }

    /// The retained messages under `topic` now, as `(topic, payload)`.
    fn retained(&self, topic: &str) -> Vec<(String, String)> {
        let out = Command::new("mosquitto_sub")
            .args(self.sub_args(None))
            .args(["--retained-only", "-W", "2", "-F", "%t %p", "-t", topic])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split_once(' ').map_or((l.to_owned(), String::new()), |(t, p)| (t.to_owned(), p.to_owned())))
            .collect()
    }

    /// Waits until the retained payload of `topic` is `payload`.
    fn wait_retained(&self, topic: &str, payload: &str) {
        let end = Instant::now() + LONG;
        loop {
            let r = self.retained(topic);
            if r.iter().any(|(t, p)| t == topic && p == payload) {
                return;
            }
            assert!(Instant::now() < end, "{topic} never retained {payload:?}: {r:?}");
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Subscriber {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Subscriber {
    /// Waits for a message on `topic` whose payload satisfies `pred`; its payload.
    fn wait(&self, topic: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_from(0, topic, what, pred)
    }

    /// Messages so far (for `wait_from`: only those that come after).
    fn mark(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    fn wait_from(&self, from: usize, topic: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + LONG;
        loop {
            let found = self.lines.lock().unwrap().iter().skip(from).find_map(|l| {
                let (_, rest) = l.split_once(' ')?;
                let (t, p) = rest.split_once(' ').unwrap_or((rest, ""));
                (t == topic && pred(p)).then(|| p.to_owned())
            });
            if let Some(p) = found {
                return p;
            }
            assert!(Instant::now() < end, "no {what} on {topic}: {:#?}", self.lines.lock().unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_json(&self, topic: &str, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let p = self.wait_from(0, topic, what, |p| serde_json::from_str(p).is_ok_and(|v| pred(&v)));
        serde_json::from_str(&p).unwrap()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mqtt_yaml(port: u16, extra: &str) -> String {
    format!("mqtt:\n  url: mqtt://127.0.0.1:{port}\n  attributes_interval: 1s\n{extra}")
}

fn health_mqtt(hub: &Hub) -> serde_json::Value {
    hub.get("/api/health").json()["mqtt"].clone()
}

fn wait_health(hub: &Hub, state: &str) -> serde_json::Value {
    let end = Instant::now() + LONG;
    loop {
        let m = health_mqtt(hub);
        if m["state"] == state {
            return m;
        }
        assert!(Instant::now() < end, "mqtt never {state}: {m:#}\n{}", hub.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn states_attributes_discovery_removal_and_a_clean_stop() {
    let broker = Broker::start(None);
    let sub = broker.subscribe(&["camhub/available", "camhub/+/state", "camhub/+/attributes", "homeassistant/#"], None);
    let mut camera = RtspServer::start("h264", None);
    let extra = "  discovery: true\n  snapshot_interval: 1s\n  public_url: http://hub.lan:8080/\n";
    let mut hub = Hub::start(&format!("{}cameras:\n  door: {}\n", mqtt_yaml(broker.port, extra), camera.url()));

    sub.wait("camhub/available", "online", |p| p == "online");
    // A subscriber that comes later is told at once: the messages are retained.
    broker.wait_retained("camhub/available", "online");
    sub.wait("camhub/door/state", "streaming", |p| p == "streaming");
    assert_eq!(wait_health(&hub, "connected")["error"], serde_json::Value::Null);

    // Size and age come from decoded pictures: the snapshots decode some.
    let a = sub.wait_json("camhub/door/attributes", "h264 640x360", |a| {
        a["codec"] == "h264" && a["width"] == 640 && a["height"] == 360 && a["fps"].as_f64() > Some(0.0)
    });
    assert_eq!(a["state"], "streaming");
    assert!(a["age_ms"].is_u64() && a["bitrate_kbps"].as_f64() > Some(0.0), "{a}");
    assert_eq!(a["snapshot_url"], "http://hub.lan:8080/api/cameras/door/snapshot.jpg");
    // `snapshot_interval`: JPEGs on `camhub/door/snapshot` (Home Assistant's MQTT camera).
    let shot = Command::new("mosquitto_sub")
        .args(broker.sub_args(None))
        .args(["-C", "1", "-W", "60", "-N", "-t", "camhub/door/snapshot"])
        .output()
        .unwrap();
    let mut d = jpeg_decoder::Decoder::new(&shot.stdout[..]);
    d.decode().expect("a JPEG on camhub/door/snapshot");
    let info = d.info().unwrap();
    assert_eq!((info.width, info.height), (640, 360));

    let c = sub.wait_json("homeassistant/binary_sensor/camhub_door_connected/config", "a sensor", |_| true);
    assert_eq!(c["unique_id"], "camhub_door_connected");
    assert_eq!(c["device_class"], "connectivity");
    assert_eq!(c["state_topic"], "camhub/door/state");
    assert_eq!(c["availability_topic"], "camhub/available");
    assert_eq!(c["device"]["identifiers"][0], "camhub_door");
    assert_eq!(c["device"]["manufacturer"], "camhub");
    let cam = sub.wait_json("homeassistant/camera/camhub_door/config", "a camera", |_| true);
    assert_eq!(cam["topic"], "camhub/door/snapshot");
    assert_eq!(cam["unique_id"], "camhub_door_camera");

    // A camera added and removed through the API: its retained topics are cleared.
    let body = format!(r#"{{"name": "yard", "url": "{}"}}"#, camera.url());
    assert_eq!(hub.send("POST", "/api/cameras", Some(&body)).status, 201);
    sub.wait("camhub/yard/state", "streaming", |p| p == "streaming");
    sub.wait("homeassistant/binary_sensor/camhub_yard_connected/config", "a sensor", |p| !p.is_empty());
    let from = sub.mark();
    assert_eq!(hub.send("DELETE", "/api/cameras/yard", None).status, 204);
    sub.wait_from(from, "camhub/yard/state", "cleared", str::is_empty);
    sub.wait_from(from, "homeassistant/binary_sensor/camhub_yard_connected/config", "cleared", str::is_empty);
    let left: Vec<_> = broker.retained("camhub/yard/#");
    assert!(left.is_empty(), "{left:?}");
    assert!(broker.retained("homeassistant/+/camhub_yard/#").is_empty());
    assert!(!broker.retained("camhub/door/state").is_empty(), "the other camera keeps its state");

    // The camera goes away: the state says so, with the reason.
    let from = sub.mark();
    camera.kill();
    sub.wait_from(from, "camhub/door/state", "backoff or stalled", |p| p == "backoff" || p == "stalled");
    let reason = sub.wait_from(from, "camhub/door/attributes", "a reason", |p| p.contains(r#""reason":""#));
    let a: serde_json::Value = serde_json::from_str(&reason).unwrap();
    assert!(a["fps"].is_null() && a["state"] != "streaming", "{a}");

    // A clean stop leaves `offline` retained, and the camera's last state.
    signal(hub.pid(), "TERM");
    assert!(hub.wait_exit(LONG).success());
    broker.wait_retained("camhub/available", "offline");
    broker.wait_retained("camhub/door/state", "stopped");
}

#[test]
fn a_killed_hub_goes_offline_by_its_will_and_a_restart_clears_cameras_gone() {
    let broker = Broker::start(None);
    let sub = broker.subscribe(&["camhub/available"], None);
    let yaml = format!("{}cameras:\n  gone: rtsp://127.0.0.1:9/x\n", mqtt_yaml(broker.port, "  discovery: true\n"));
    let mut hub = Hub::start(&yaml);
    sub.wait("camhub/available", "online", |p| p == "online");
    assert!(!broker.retained("homeassistant/binary_sensor/camhub_gone_connected/config").is_empty());
    // MQTT settings apply at start: a reload that changes them says so.
    hub.reload(&yaml.replace("attributes_interval: 1s", "attributes_interval: 2s"));
    hub.wait_log("mqtt changed in the config file but applies only at start", LONG);
    signal(hub.pid(), "KILL");
    hub.wait_exit(LONG);
    sub.wait("camhub/available", "the will", |p| p == "offline");
    broker.wait_retained("camhub/available", "offline");
    assert!(!broker.retained("camhub/gone/state").is_empty(), "a killed hub clears nothing");

    // Started again without that camera: its retained topics and discovery go.
    let hub = Hub::start(&format!("{}cameras: {{}}\n", mqtt_yaml(broker.port, "  discovery: true\n")));
    broker.wait_retained("camhub/available", "online");
    let end = Instant::now() + LONG;
    while !(broker.retained("camhub/gone/#").is_empty()
        && broker.retained("homeassistant/+/camhub_gone_connected/#").is_empty())
    {
        assert!(Instant::now() < end, "camera gone's topics were never cleared:\n{}", hub.log());
    }
}

#[test]
fn a_broker_away_holds_up_nothing_and_is_reached_when_it_comes() {
    let port = free_port();
    let camera = RtspServer::start("h264", None);
    let hub = Hub::start(&format!("{}cameras:\n  door: {}\n", mqtt_yaml(port, ""), camera.url()));
    hub.wait_streaming("door");
    assert_eq!(hub.get("/api/cameras/door/snapshot.jpg").status, 200);
    let m = wait_health(&hub, "error");
    assert!(m["error"].as_str().unwrap().contains("cannot reach the broker"), "{m}");
    assert_eq!(m["broker"], format!("mqtt://127.0.0.1:{port}"));

    // The broker comes: camhub connects (after its backoff) and publishes.
    let broker = Broker::start_on(port, None);
    wait_health(&hub, "connected");
    broker.wait_retained("camhub/available", "online");
    broker.wait_retained("camhub/door/state", "streaming");
    assert!(health_mqtt(&hub)["published"].as_u64() > Some(0));
    let metrics = hub.get("/metrics").text();
    let connected = format!("camhub_mqtt_connected{{broker=\"mqtt://127.0.0.1:{port}\"}} 1");
    assert!(metrics.contains(&connected), "{metrics}");
}

#[test]
fn a_login_works_and_the_password_is_never_shown() {
    let pw = "Mq77-s3cret-pw";
    let broker = Broker::start(Some(("hub", pw)));
    let sub = broker.subscribe(&["camhub/#"], Some(("hub", pw)));
    let cfg = mqtt_yaml(broker.port, "  username: hub\n  password: ${MQTT_PW}\n") + "cameras: {}\n";
    let hub = Hub::start_env(&cfg, &[("MQTT_PW", pw)]);
    sub.wait("camhub/available", "online", |p| p == "online");
    wait_health(&hub, "connected");

    // A wrong password: refused, said so, retried slowly.
    let bad = Hub::start_env(&cfg, &[("MQTT_PW", "Wr0ng-pw-77")]);
    let m = wait_health(&bad, "error");
    assert!(m["error"].as_str().unwrap().contains("refused the login"), "{m}");
    for h in [&hub, &bad] {
        let shown = format!("{}{}{}", h.log(), h.get("/api/health").text(), h.get("/api/cameras").text());
        assert!(!shown.contains(pw) && !shown.contains("Wr0ng-pw-77"), "a password shown:\n{shown}");
    }
}

#[test]
fn a_bad_mqtt_url_is_a_config_error_naming_its_line() {
    let dir = temp_dir("mqtt-cfg");
    let check = |yaml: &str| {
        let f = dir.join("c.yaml");
        std::fs::write(&f, yaml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_camhub")).arg("check").arg(&f).output().unwrap();
        assert!(!out.status.success(), "{yaml} was taken");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = check("cameras: {}\nmqtt:\n  url: mqtts://broker:8883\n");
    assert!(e.contains("c.yaml:3:") && e.contains("mqtts:// is not supported"), "{e}");
    let e = check("cameras: {}\nmqtt:\n  topic_prefix: x\n  url: mqtt://user:Hunter2-pw@broker\n");
    assert!(e.contains("c.yaml:4:") && e.contains("mqtt.username") && !e.contains("Hunter2-pw"), "{e}");
    let e = check("mqtt:\n  url: mqtt://broker\n  topic_prefix: a/#\n");
    assert!(e.contains("c.yaml:2:") && e.contains("topic_prefix"), "{e}");
}
