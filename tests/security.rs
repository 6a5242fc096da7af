//! Who may call, and what never leaves: bearer tokens and Basic auth on the API
//! and streams, /metrics and /api/health open by choice, CORS only for configured
//! origins, and a camera password fed through every path never shows up.

mod common;

use common::*;

const B64_ADMIN_OK: &str = "YWRtaW46cHctWHl6LTk="; // admin:pw-Xyz-9
const B64_ADMIN_BAD: &str = "YWRtaW46bm9wZQ=="; // admin:nope

#[test]
fn auth_guards_the_api_and_streams_and_cors_only_answers_configured_origins() {
    let hub = Hub::start(
        "server:\n  auth:\n    tokens: [\"${CAMHUB_TEST_TOKEN:-tok-123}\"]\n    users:\n      admin: pw-Xyz-9\n    protect_metrics: false\n  cors_origins: [\"https://ui.example\"]\ncameras:\n  demo: /nonexistent/clip.mp4\n",
    );
    let url = |p: &str| format!("{}{p}", hub.base);
    let get = |p: &str, h: &[(&str, &str)]| http_request("GET", &url(p), h, None);

    let r = get("/api/cameras", &[]);
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic"), "browsers get a login prompt");
    assert!(r.json()["error"].as_str().unwrap().contains("credentials required"));
    assert_eq!(get("/api/cameras", &[("authorization", "Bearer tok-123")]).status, 200);
    assert_eq!(get("/api/cameras", &[("authorization", "Bearer tok-124")]).status, 401);
    assert_eq!(get("/api/cameras", &[("authorization", &format!("Basic {B64_ADMIN_OK}"))]).status, 200);
    assert_eq!(get("/api/cameras", &[("authorization", &format!("Basic {B64_ADMIN_BAD}"))]).status, 401);
    assert_eq!(get("/api/cameras", &[("authorization", "Basic !!!")]).status, 401);
    // Players that cannot set headers pass ?token=, which handlers never see.
    let r = get("/api/cameras/demo/snapshot.jpg?token=tok-123&quality=50&cached=true", &[]);
    assert_eq!(r.status, 503, "authorized, and the token is not an unknown parameter: {}", r.text());
    assert_eq!(get("/api/cameras/demo/stream.mjpeg", &[]).status, 401);
    assert_eq!(get("/api/cameras/nope", &[]).status, 401, "no probing for names without credentials");
    let r = http_request("POST", &url("/api/cameras"), &[], Some(r#"{"name":"x","url":"rtsp://h/p"}"#));
    assert_eq!(r.status, 401);

    assert_eq!(get("/metrics", &[]).status, 200, "protect_metrics: false");
    assert_eq!(get("/api/health", &[]).status, 200, "health is open by default");

    let ok = [("authorization", "Bearer tok-123"), ("origin", "https://ui.example")];
    let r = get("/api/cameras", &ok);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://ui.example"));
    let r = get("/api/cameras", &[("authorization", "Bearer tok-123"), ("origin", "https://evil.example")]);
    assert_eq!(r.status, 403, "a page of another origin is refused, credentials or not");
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = http_request("OPTIONS", &url("/api/cameras"), &[("origin", "https://ui.example")], None);
    assert_eq!(r.status, 204);
    assert!(r.header("access-control-allow-headers").unwrap().contains("authorization"));
}

#[test]
fn without_auth_or_cors_config_the_api_is_open_and_sends_no_cors_headers() {
    let hub = Hub::start("cameras: {}\n");
    let r = http_request("GET", &format!("{}/api/cameras", hub.base), &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    // A browser page of another site is refused (issue 15, item 1); the hub's own is not.
    let r = http_request("GET", &format!("{}/api/cameras", hub.base), &[("origin", "https://ui.example")], None);
    assert_eq!(r.status, 403);
    assert_eq!(r.header("access-control-allow-origin"), None);
    // Metrics are protected by default once auth is on; here auth is off.
    assert_eq!(hub.get("/metrics").status, 200);
}

#[test]
fn a_camera_password_never_leaves_the_process() {
    const RIGHT: &str = "Sup3r-Secret-Pw";
    const WRONG: &str = "An0ther-Secret";
    let server = RtspServer::start("h264", Some(("viewer", RIGHT)));
    let p = server.port;
    let hub = Hub::start(&format!(
        "cameras:\n  good: rtsp://viewer:{RIGHT}@127.0.0.1:{p}/cam\n  bad:\n    url: rtsp://127.0.0.1:{p}/cam\n    username: viewer\n    password: {WRONG}\n  gone: rtsp://viewer:{RIGHT}@127.0.0.1:1/cam\n"
    ));
    hub.wait_streaming("good");
    hub.wait_camera("bad", "auth_failed", std::time::Duration::from_secs(10), |c| c["state"] == "auth_failed");
    hub.wait_camera("gone", "backoff", std::time::Duration::from_secs(10), |c| c["state"] == "backoff");
    let mut seen = String::new();
    for path in [
        "/api/cameras",
        "/api/cameras/good",
        "/api/cameras/bad",
        "/api/cameras/gone",
        "/api/cameras/bad/snapshot.jpg",
        "/api/cameras/gone/snapshot.jpg",
        "/api/cameras/bad/snapshot.jpg?cached=true",
        "/metrics",
        "/api/health",
    ] {
        let r = hub.get(path);
        seen.push_str(&r.text());
        for (k, v) in &r.headers {
            seen.push_str(&format!("{k}: {v}\n"));
        }
    }
    let r = hub.get("/api/cameras/good/snapshot.jpg");
    assert_eq!(r.status, 200);
    for (k, v) in &r.headers {
        seen.push_str(&format!("{k}: {v}\n"));
    }
    let body = format!(r#"{{"name":"added","url":"rtsp://viewer:{RIGHT}@127.0.0.1:{p}/cam"}}"#);
    seen.push_str(&hub.send("POST", "/api/cameras", Some(&body)).text());
    let body = format!(r#"{{"url":"rtsp://127.0.0.1:{p}/cam","username":"viewer","password":"{WRONG}"}}"#);
    seen.push_str(&hub.send("PUT", "/api/cameras/added", Some(&body)).text());
    seen.push_str(
        &hub.send("POST", "/api/cameras", Some(&format!(r#"{{"name":"x y","url":"rtsp://u:{RIGHT}@h/p"}}"#))).text(),
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    seen.push_str(&hub.log());
    assert!(seen.contains("auth_failed") && seen.contains("camhub_camera_state"), "the paths were really read");
    for secret in [RIGHT, WRONG] {
        assert!(!seen.contains(secret), "{secret} leaked:\n{seen}");
    }
}

/// A request exactly as given: no default Content-Type.
fn raw(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let r = if body.is_empty() { agent.run(b.body(()).unwrap()) } else { agent.run(b.body(body.to_owned()).unwrap()) };
    let mut r = r.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = r.status().as_u16();
    let headers = r.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned())).collect();
    Response { status, headers, body: r.body_mut().read_to_vec().unwrap() }
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[test]
fn api_bodies_are_literal_and_cross_site_writes_are_refused() {
    const LEAK: &str = "env-Secret-7Hq2";
    let hub = Hub::start_env(
        "server:\n  cors_origins: [\"https://ui.example\"]\ncameras: {}\n",
        &[("CAMHUB_TEST_LEAK", LEAK)],
    );
    let cams = format!("{}/api/cameras", hub.base);
    // ${VAR} in a body is text: it is neither echoed expanded nor used to connect.
    let body = r#"{"name":"e","url":"rtsp://127.0.0.1:1/${CAMHUB_TEST_LEAK}","username":"${CAMHUB_TEST_LEAK}","password":"${CAMHUB_SURELY_UNSET}"}"#;
    let r = raw("POST", &cams, &[JSON], body);
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.text().contains("$%7BCAMHUB_TEST_LEAK%7D"), "the URL is kept as written: {}", r.text());
    let body =
        r#"{"url":"rtsp://127.0.0.1:1/x","outputs":{"q":{"redis":{"url":"redis://127.0.0.1:1/${CAMHUB_TEST_LEAK}"}}}}"#;
    assert_eq!(raw("PUT", &format!("{cams}/r"), &[JSON], body).status, 201);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let seen = format!("{}{}{}", hub.get("/api/cameras").text(), hub.get("/metrics").text(), hub.log());
    assert!(!seen.contains(LEAK), "the environment leaked:\n{seen}");

    // Writes are JSON only: a cross-site form or text/plain POST needs no preflight.
    let body = r#"{"name":"t","url":"rtsp://127.0.0.1:1/x"}"#;
    for ctype in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let r = raw("POST", &cams, &[("content-type", ctype)], body);
        assert_eq!(r.status, 415, "{ctype}: {}", r.text());
        assert!(r.json()["error"].as_str().unwrap().contains("application/json"), "{}", r.text());
        assert_eq!(raw("PUT", &format!("{cams}/t"), &[("content-type", ctype)], body).status, 415);
    }
    assert_eq!(raw("POST", &cams, &[], body).status, 415, "no Content-Type");
    assert_eq!(hub.get("/api/cameras/t").status, 404, "nothing was added");
    let r = raw("POST", &cams, &[("content-type", "Application/JSON; charset=utf-8")], body);
    assert_eq!(r.status, 201, "{}", r.text());

    // An Origin that is neither configured nor the hub's own is refused, reads included.
    let evil = ("origin", "https://evil.example");
    let body = r#"{"name":"o","url":"rtsp://127.0.0.1:1/x"}"#;
    let r = raw("POST", &cams, &[JSON, evil], body);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("cors_origins"), "{}", r.text());
    assert_eq!(raw("GET", &cams, &[evil], "").status, 403);
    assert_eq!(raw("DELETE", &format!("{cams}/e"), &[evil], "").status, 403);
    assert_eq!(raw("OPTIONS", &cams, &[evil], "").status, 403);
    assert_eq!(raw("GET", &cams, &[("origin", "null")], "").status, 403);
    assert_eq!(hub.get("/api/cameras/o").status, 404);
    assert_eq!(hub.get("/api/cameras/e").status, 200, "the DELETE was refused");
    let r = raw("POST", &cams, &[JSON, ("origin", "https://ui.example")], body);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some("https://ui.example"));
    // The dashboard's own requests (same origin) pass.
    let own = hub.base.clone();
    let r = raw("DELETE", &format!("{cams}/o"), &[("origin", own.as_str())], "");
    assert_eq!(r.status, 204, "{}", r.text());
}

#[test]
fn api_file_sources_only_from_media_dirs_and_a_refusal_tells_nothing_about_the_disk() {
    let hub = Hub::start("server:\n  media_dirs: [media]\ncameras: {}\n");
    std::fs::create_dir_all(hub.dir.join("media")).unwrap();
    std::fs::copy(repo().join("tests/clips/idx-h264.h264"), hub.dir.join("media/clip.h264")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", hub.dir.join("media/out")).unwrap();
    let put = |url: &str| hub.send("PUT", "/api/cameras/f", Some(&format!(r#"{{"url":"{url}"}}"#)));
    let secret = hub.dir.join("cameras.yaml");
    let refused: Vec<(String, String)> = [
        "/etc/passwd".to_owned(),
        "/nonexistent-camhub/clip.mp4".to_owned(),
        "file:///etc/hostname".to_owned(),
        "file:///nonexistent-camhub/x".to_owned(),
        secret.display().to_string(),
        "media/../cameras.yaml".to_owned(),
        "media/../nonexistent.mp4".to_owned(),
        format!("{}/media/../../../etc/passwd", hub.dir.display()),
        "media/out".to_owned(),
    ]
    .into_iter()
    .map(|u| {
        let r = put(&u);
        assert_eq!(r.status, 403, "{u}: {}", r.text());
        (u, r.text())
    })
    .collect();
    for (u, text) in &refused {
        assert_eq!(text, &refused[0].1, "{u}: every refusal reads the same, existing file or not");
        assert!(text.contains("media_dirs"), "{text}");
    }
    assert_eq!(hub.get("/api/cameras/f").status, 404, "no camera, so no state to probe");
    let r = put("media/clip.h264");
    assert_eq!(r.status, 201, "{}", r.text());
    let r = put(&format!("file://{}/media/./clip.h264", hub.dir.display()));
    assert_eq!(r.status, 200, "{}", r.text());

    // No media_dirs: the API takes no files at all.
    let hub = Hub::start("cameras: {}\n");
    std::fs::copy(repo().join("tests/clips/idx-h264.h264"), hub.dir.join("clip.h264")).unwrap();
    let r = hub.send("POST", "/api/cameras", Some(r#"{"name":"f","url":"clip.h264"}"#));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("none are configured"), "{}", r.text());
}

#[test]
fn auth_schemes_are_case_insensitive() {
    let hub = Hub::start("server:\n  auth:\n    tokens: [tok-123]\n    users:\n      admin: pw-Xyz-9\ncameras: {}\n");
    let get = |a: &str| http_request("GET", &format!("{}/api/cameras", hub.base), &[("authorization", a)], None).status;
    for a in ["bearer tok-123", "BEARER tok-123", "Bearer  tok-123", &format!("basic {B64_ADMIN_OK}")] {
        assert_eq!(get(a), 200, "{a}");
    }
    for a in ["bearer tok-124", "bearertok-123", "tok-123", &format!("BASIC {B64_ADMIN_BAD}")] {
        assert_eq!(get(a), 401, "{a}");
    }
}

#[test]
fn credentials_in_a_camera_url_query_are_never_shown() {
    const PW: &str = "Qu3ry-Secret";
    // A snapshot-URL camera that never answers: the error names its URL.
    let hub =
        Hub::start(&format!("cameras:\n  snap: \"http://127.0.0.1:1/cgi-bin/snap.cgi?user=admin&PWD={PW}&chn=1\"\n"));
    let body = format!(r#"{{"name":"added","url":"rtsp://127.0.0.1:1/live?Token={PW}&auth={PW}x&key={PW}y"}}"#);
    let r = hub.send("POST", "/api/cameras", Some(&body));
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.text().contains("Token=***"), "{}", r.text());
    hub.wait_camera("snap", "failed", std::time::Duration::from_secs(10), |c| !c["last_error"].is_null());
    let mut seen = r.text();
    for path in ["/api/cameras", "/api/cameras/snap", "/api/cameras/snap/snapshot.jpg", "/metrics"] {
        seen.push_str(&hub.get(path).text());
    }
    assert!(seen.contains("PWD=***") && seen.contains("user=admin"), "{seen}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    seen.push_str(&hub.log());
    assert!(!seen.contains(PW), "{PW} leaked:\n{seen}");
}

#[test]
fn sighup_applies_auth_cors_and_media_dirs_and_names_what_needs_a_restart() {
    let cfg = |tok: &str, listen: &str, extra: &str| {
        format!(
            "server:\n  listen: \"{listen}\"\n  auth:\n    tokens: [{tok}]\n    users:\n      admin: pw-Xyz-9\n{extra}cameras: {{}}\n"
        )
    };
    let hub = Hub::start(&cfg("tok-A", "127.0.0.1:8080", ""));
    let get = |headers: &[(&str, &str)]| http_request("GET", &format!("{}/api/cameras", hub.base), headers, None);
    assert_eq!(get(&[("authorization", "Bearer tok-A")]).status, 200);
    assert_eq!(get(&[("authorization", "Bearer tok-B")]).status, 401);
    assert_eq!(hub.get("/api/health").status, 200, "health open by default");

    // Token A revoked, B added; health protected; a page origin allowed; a media dir.
    let extra = "    protect_health: true\n  cors_origins: [\"https://ui.example\"]\n  media_dirs: [media]\n";
    hub.reload(&cfg("tok-B", "127.0.0.1:8080", extra));
    hub.wait_log("config reloaded:", std::time::Duration::from_secs(10));
    assert_eq!(get(&[("authorization", "Bearer tok-A")]).status, 401, "a revoked token is refused");
    assert_eq!(get(&[("authorization", "Bearer tok-B")]).status, 200, "a new token is accepted");
    assert_eq!(get(&[("authorization", &format!("Basic {B64_ADMIN_OK}"))]).status, 200);
    assert_eq!(hub.get("/api/health").status, 401, "protect_health applied");
    let r = get(&[("authorization", "Bearer tok-B"), ("origin", "https://ui.example")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("access-control-allow-origin"), Some("https://ui.example"));
    std::fs::create_dir_all(hub.dir.join("media")).unwrap();
    std::fs::copy(repo().join("tests/clips/idx-h264.h264"), hub.dir.join("media/clip.h264")).unwrap();
    let r = http_request(
        "PUT",
        &format!("{}/api/cameras/f", hub.base),
        &[("authorization", "Bearer tok-B")],
        Some(r#"{"url":"media/clip.h264"}"#),
    );
    assert_eq!(r.status, 201, "media_dirs applied: {}", r.text());
    assert!(!hub.log().contains("tok-B"), "secrets never logged");

    // What needs a restart is said in one clear line, and the old address keeps serving.
    hub.reload(&cfg("tok-B", "127.0.0.1:9999", extra));
    hub.wait_log("server.listen changed", std::time::Duration::from_secs(10));
    assert!(hub.log().contains("restart"), "{}", hub.log());
    assert_eq!(get(&[("authorization", "Bearer tok-B")]).status, 200);
}

/// One HTTP/1.1 GET with exactly this `Host` header: (status, body).
fn get_with_host(base: &str, path: &str, host: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = base.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_owned()))
}

#[test]
fn with_auth_off_only_this_hubs_host_names_are_answered() {
    let hub = Hub::start("cameras: {}\n");
    let port = hub.base.rsplit(':').next().unwrap().to_owned();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "LOCALHOST".into(),
        "[::1]:80".into(),
        "10.1.2.3".into(),
    ] {
        let (status, body) = get_with_host(&hub.base, "/api/cameras", &host);
        assert_eq!(status, 200, "{host}: {body}");
    }
    // A rebinding page's own name is refused with a clear JSON error, reads included.
    for host in [format!("evil.example:{port}"), "evil.example".into(), "localhost.evil.example".into()] {
        let (status, body) = get_with_host(&hub.base, "/api/cameras", &host);
        assert_eq!(status, 421, "{host}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("DNS rebinding"), "{body}");
    }
    // With auth on, credentials are the defence: any name, once authorized.
    let hub = Hub::start("server:\n  auth:\n    tokens: [tok-123]\ncameras: {}\n");
    let (status, _) = get_with_host(&hub.base, "/api/cameras?token=tok-123", "evil.example");
    assert_eq!(status, 200);
}

#[test]
fn an_open_api_on_the_network_is_warned_about_at_start_and_in_health() {
    let hub = Hub::start_at("cameras: {}\n", &[], "0.0.0.0:0");
    hub.wait_log("no server.auth", std::time::Duration::from_secs(5));
    let port = hub.base.rsplit(':').next().unwrap().to_owned();
    let h = http_get(&format!("http://127.0.0.1:{port}/api/health")).json();
    let w = h["warnings"].as_array().unwrap_or_else(|| panic!("{h}"));
    assert_eq!(w.len(), 1, "{h}");
    assert!(w[0].as_str().unwrap().contains("0.0.0.0"), "{h}");
    // On loopback, or with auth, nothing to warn about.
    let hub = Hub::start("cameras: {}\n");
    assert_eq!(hub.get("/api/health").json()["warnings"], serde_json::json!([]));
    assert!(!hub.log().contains("no server.auth"), "{}", hub.log());
    let hub = Hub::start_at("server:\n  auth:\n    tokens: [tok-123]\ncameras: {}\n", &[], "0.0.0.0:0");
    let port = hub.base.rsplit(':').next().unwrap().to_owned();
    assert_eq!(http_get(&format!("http://127.0.0.1:{port}/api/health")).json()["warnings"], serde_json::json!([]));
}

#[test]
fn a_whep_socket_binds_where_the_request_came_in_not_where_host_says() {
    use std::io::{Read, Write};
    let hub = Hub::start("cameras:\n  demo: /nonexistent/clip.mp4\n");
    let offer = whep_offer();
    // 192.0.2.1 (TEST-NET-1) is no address of this machine: the Host header names it.
    let addr = hub.base.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /api/cameras/demo/whep HTTP/1.1\r\nHost: 192.0.2.1:8080\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{offer}",
        offer.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 201"), "{out}");
    let candidates: Vec<&str> = out.lines().filter(|l| l.starts_with("a=candidate")).collect();
    assert!(!candidates.is_empty(), "{out}");
    for c in &candidates {
        assert!(c.contains(" 127.0.0.1 "), "bound where the request came in: {c}");
        assert!(!c.contains("192.0.2.1"), "{c}");
    }
}
