//! The URLs people bring from go2rtc, Frigate and Home Assistant answer like
//! camhub's own routes: go2rtc's `/api/frame.jpeg?src=`, `/api/stream.mjpeg?src=`
//! and `/api/streams`, Frigate's `/api/<camera>/latest.jpg?h=`; and Home
//! Assistant's Generic Camera and MJPEG camera, configured the way their docs
//! show (a still image URL and an MJPEG URL with a username and password, sent
//! as HTTP Basic), get real pictures of the camera.

mod common;

use base64::Engine;
use common::*;

const USER: (&str, &str) = ("ha", "h0me-pass");

fn basic() -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", USER.0, USER.1)))
}

/// A JPEG of the test clip (its barcode reads), of this height when given.
fn check_picture(jpeg: &[u8], height: Option<usize>) {
    let pic = Picture::decode(jpeg);
    if let Some(h) = height {
        assert_eq!(pic.height, h);
    }
    let shown = pic.barcode();
    assert!((0..CLIP_FRAMES).contains(&shown), "barcode {shown}");
    let same = reference_frame("h264", shown, pic.width, pic.height);
    assert!(pic.mean_abs_diff(&same) < 10.0, "the clip's frame {shown}");
}

fn start() -> (RtspServer, Hub) {
    let server = RtspServer::start("h264", None);
    let url = server.url().replace("rtsp://", "rtsp://cam:c4m-secret@");
    let hub = Hub::start(&format!(
        "server:\n  auth:\n    users: {{ {}: \"{}\" }}\ncameras:\n  door:\n    url: {url}\n",
        USER.0, USER.1
    ));
    // Streaming once an authenticated snapshot answers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let url = format!("{}/api/cameras/door/snapshot.jpg", hub.base);
    while http_request("GET", &url, &[("authorization", &basic())], None).status != 200 {
        assert!(std::time::Instant::now() < deadline, "the camera never streamed:\n{}", hub.log());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    (server, hub)
}

#[test]
fn go2rtc_and_frigate_urls_are_aliases_of_camhubs_own() {
    let (_server, hub) = start();
    let auth = basic();
    let get = |path: &str| http_request("GET", &format!("{}{path}", hub.base), &[("authorization", &auth)], None);

    // go2rtc's snapshot: the same contract and headers as snapshot.jpg.
    let r = get("/api/frame.jpeg?src=door&width=320");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert!(r.header("x-frame-id").is_some() && r.header("x-snapshot-source").is_some());
    assert_eq!(Picture::decode(&r.body).width, 320);
    check_picture(&r.body, None);
    let r = get("/api/frame.jpeg?name=door&h=120");
    assert_eq!(r.status, 200, "{}", r.text());
    check_picture(&r.body, Some(120));

    // Frigate's latest picture: h is the height; its drawing options are ignored.
    let r = get("/api/door/latest.jpg?h=180&quality=60&bbox=1&timestamp=0");
    assert_eq!(r.status, 200, "{}", r.text());
    check_picture(&r.body, Some(180));

    // go2rtc's MJPEG stream.
    let mut s =
        open_mjpeg_with(&format!("{}/api/stream.mjpeg?src=door&width=320", hub.base), &[("authorization", &auth)]);
    let (id, jpeg) = read_part(&mut s);
    assert!(id > 0);
    check_picture(&jpeg, None);
    drop(s);

    // go2rtc's stream list: keyed by camera, the URL without its credentials.
    let r = get("/api/streams");
    assert_eq!(r.status, 200);
    let v = r.json();
    let url = v["door"]["producers"][0]["url"].as_str().unwrap();
    assert!(url.starts_with("rtsp://") && url.ends_with("/cam") && !url.contains("c4m-secret"), "{url}");
    assert_eq!(v["door"]["consumers"], serde_json::json!([]));
    assert_eq!(get("/api/streams?src=door").json(), v["door"]);

    // Unknown cameras 404 like the native routes; a missing src or a bad query 400.
    for path in
        ["/api/frame.jpeg?src=nope", "/api/stream.mjpeg?src=nope", "/api/nope/latest.jpg", "/api/streams?src=nope"]
    {
        let r = get(path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json()["error"], "no camera named \"nope\"", "{path}");
    }
    for (path, says) in [
        ("/api/frame.jpeg", "src"),
        ("/api/frame.jpeg?src=door&w=100&width=200", "width once"),
        ("/api/frame.jpeg?src=door&rotate=90", "rotate"),
        ("/api/door/latest.jpg?h=0", "height"),
    ] {
        let r = get(path);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(r.text().contains(says), "{path}: {}", r.text());
    }
    // Behind auth like every route.
    assert_eq!(http_get(&format!("{}/api/frame.jpeg?src=door", hub.base)).status, 401);
    assert!(!hub.log().contains("c4m-secret") && !hub.log().contains(USER.1));
}

/// Home Assistant's Generic Camera (`still_image_url`, `authentication: basic`)
/// and MJPEG camera (`mjpeg_url`, no still image URL: it takes the stream's
/// first frame), with the URL templates their docs give for go2rtc and Frigate
/// as well as camhub's own.
#[test]
fn home_assistant_generic_and_mjpeg_camera_configurations_get_pictures() {
    let (_server, hub) = start();
    let auth = basic();
    let still = ["/api/cameras/door/snapshot.jpg", "/api/frame.jpeg?src=door", "/api/door/latest.jpg?h=277"];
    for path in still {
        let url = format!("{}{path}", hub.base);
        // The config flow first fetches without credentials when none are set:
        // a clear 401 with a Basic challenge, so HA asks for them.
        let r = http_get(&url);
        assert_eq!(r.status, 401, "{path}");
        assert!(r.header("www-authenticate").is_some_and(|c| c.starts_with("Basic")), "{path}");
        let r = http_request("GET", &url, &[("authorization", &auth)], None);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("image/jpeg"), "{path}");
        check_picture(&r.body, None);
    }
    for path in ["/api/cameras/door/stream.mjpeg", "/api/stream.mjpeg?src=door"] {
        let mut s = open_mjpeg_with(&format!("{}{path}", hub.base), &[("authorization", &auth)]);
        // HA's MJPEG camera reads parts until the JPEG end marker.
        let (_, jpeg) = read_part(&mut s);
        assert!(jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]), "{path}");
        check_picture(&jpeg, None);
    }
}
