//! `/api/openapi.json` is served, and every route and method it documents is
//! answered by a real handler (not the fallback 404, not 405).

mod common;

use common::*;

#[test]
fn every_documented_route_is_served() {
    let hub = Hub::start_demo();
    let r = hub.get("/api/openapi.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys().filter(|k| *k != "parameters") {
            // A name that does not exist, so nothing is changed; the stream gets a bad
            // query so that it answers at once instead of streaming.
            let p = path.replace("{name}", "no-such-camera").replace("{session}", "no-such-session");
            let p = if p.ends_with(".mjpeg") { format!("{p}?fps=0") } else { p };
            let url = format!("{}{p}", hub.base);
            let r = match method.as_str() {
                "get" => http_get(&url),
                "delete" => http_send("DELETE", &url, None),
                "post" => http_send("POST", &url, Some("{}")),
                "put" => http_send("PUT", &url, Some("{}")),
                "patch" => http_send("PATCH", &url, Some("{}")),
                m => panic!("undocumented method kind {m}"),
            };
            assert_ne!(r.status, 405, "{method} {path}");
            assert!(!r.text().contains("no such route"), "{method} {path}: {}", r.text());
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} operations");
    // The fallback really says "no such route", so the check above can fail.
    assert!(hub.get("/api/nothing").text().contains("no such route"));
}
