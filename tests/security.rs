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
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = http_request("OPTIONS", &url("/api/cameras"), &[("origin", "https://ui.example")], None);
    assert_eq!(r.status, 204);
    assert!(r.header("access-control-allow-headers").unwrap().contains("authorization"));
}

#[test]
fn without_auth_or_cors_config_the_api_is_open_and_sends_no_cors_headers() {
    let hub = Hub::start("cameras: {}\n");
    let r = http_request("GET", &format!("{}/api/cameras", hub.base), &[("origin", "https://ui.example")], None);
    assert_eq!(r.status, 200);
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
