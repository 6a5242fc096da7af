use std::path::PathBuf;

use url::Url;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "cams.yaml", Path::new("/etc/camhub"))
}

#[test]
fn minimal_form_is_name_to_url() {
    let c = parse("cameras:\n  front: rtsp://admin:s3cret@10.1.2.3/stream1\n  clip: demo.mp4\n").unwrap();
    assert_eq!(c.cameras.len(), 2);
    let front = c.cameras.iter().find(|c| c.name == "front").unwrap();
    assert_eq!(front.source, SourceSpec::Rtsp(Url::parse("rtsp://10.1.2.3/stream1").unwrap()));
    assert_eq!(front.username.as_deref(), Some("admin"));
    assert_eq!(front.password.as_ref().unwrap().expose(), "s3cret");
    assert_eq!(front.display_url(), "rtsp://10.1.2.3/stream1");
    let clip = c.cameras.iter().find(|c| c.name == "clip").unwrap();
    assert_eq!(clip.source, SourceSpec::File(PathBuf::from("/etc/camhub/demo.mp4")));
    assert_eq!(c.server.listen, "127.0.0.1:8080");
}

#[test]
fn long_form_takes_options() {
    let c = parse(
        "server:\n  listen: 0.0.0.0:9000\ncameras:\n  yard:\n    url: rtsp://cam/s\n    transport: udp\n    keep: on_demand\n    decode_linger: -1\n    connect_linger: 0\n    gop_cache_bytes: 2MiB\n    stall_timeout: 500ms\n",
    )
    .unwrap();
    let o = &c.cameras[0].options;
    assert_eq!(o.transport, Transport::Udp);
    assert_eq!(o.keep, Keep::OnDemand);
    assert_eq!(o.decode_linger, Linger::Forever);
    assert_eq!(o.connect_linger, Linger::After(std::time::Duration::ZERO));
    assert_eq!(o.gop_cache_bytes, ByteSize(2 << 20));
    assert_eq!(o.stall_timeout.0, std::time::Duration::from_millis(500));
    assert_eq!(c.server.listen, "0.0.0.0:9000");
}

#[test]
fn max_pixels_defaults_to_8k_and_is_validated() {
    let c = parse("cameras:\n  a: rtsp://x/y\n  b:\n    url: rtsp://x/y\n    max_pixels: 2073600\n").unwrap();
    let px = |n: &str| c.cameras.iter().find(|c| c.name == n).unwrap().options.max_pixels;
    assert_eq!((px("a"), px("b")), (7680 * 4320, 1920 * 1080));
    for bad in ["0", "268435457"] {
        let e = parse(&format!("cameras:\n  b:\n    url: rtsp://x/y\n    max_pixels: {bad}\n")).unwrap_err();
        assert!(e.0.contains("max_pixels must be 1-268435456"), "{e}");
    }
}

#[test]
fn unknown_key_names_file_line_and_column() {
    let e = parse("cameras:\n  yard:\n    url: rtsp://cam/s\n    trasnport: udp\n").unwrap_err();
    assert!(e.0.starts_with("cams.yaml:4:"), "{e}");
    assert!(e.0.contains("trasnport"), "{e}");
}

#[test]
fn bad_value_names_its_line() {
    let e = parse("cameras:\n  a: rtsp://x/y\n  b:\n    url: rtsp://cam/s\n    decode_linger: soon\n").unwrap_err();
    assert!(e.0.starts_with("cams.yaml:5:"), "{e}");
    assert!(e.0.contains("linger"), "{e}");
}

#[test]
fn semantic_errors_name_the_camera_line() {
    let e = parse("cameras:\n  ok: rtsp://x/y\n  bad: ftp://x/y\n").unwrap_err();
    assert!(e.0.starts_with("cams.yaml:3:"), "{e}");
    assert!(e.0.contains("unsupported url scheme"), "{e}");
    let e = parse("cameras:\n  \"no spaces\": rtsp://x/y\n").unwrap_err();
    assert!(e.0.contains("bad camera name"), "{e}");
}

#[test]
fn bad_url_errors_do_not_show_the_password() {
    let e = parse("cameras:\n  a: \"rtsp://u:topsecret@[bad/y\"\n").unwrap_err();
    assert!(!e.0.contains("topsecret"), "{e}");
}

#[test]
fn interpolates_secrets_from_the_environment() {
    // cargo sets CARGO_PKG_NAME for the test process.
    let c = parse("cameras:\n  a:\n    url: rtsp://cam/s\n    username: admin\n    password: x${CARGO_PKG_NAME}:@y\n")
        .unwrap();
    assert_eq!(c.cameras[0].password.as_ref().unwrap().expose(), "xcamhub:@y");
    let e = parse("cameras:\n  a:\n    url: rtsp://cam/s\n    username: admin\n    password: ${CAMHUB_NOT_SET_X}\n")
        .unwrap_err();
    assert!(e.0.contains("CAMHUB_NOT_SET_X is not set"), "{e}");
    assert!(e.0.starts_with("cams.yaml:5:"), "{e}");
    assert_eq!(interpolate("a$$b${CAMHUB_NOT_SET_Y:-dflt}").unwrap(), "a$bdflt");
}

#[test]
fn outputs_parse_with_their_options_and_defaults() {
    let c = parse(
        "cameras:\n  door:\n    url: rtsp://cam/s\n    outputs:\n      ai:\n        shm: {fps: 5, width: 640, format: rgb24, slots: 3, demand: always, skip_similar: 0.02}\n      kf:\n        shm: {fps: keyframes}\n      q:\n        redis: {url: \"redis://:hunter22@127.0.0.1:6379/0\", ring: ai, include_jpeg: true}\n",
    )
    .unwrap();
    let o = &c.cameras[0].options.outputs;
    let OutputConfig::Shm(ai) = &o["ai"] else { panic!("ai is shm") };
    assert_eq!((ai.fps, ai.width, ai.format, ai.slots), (Fps::Rate(5.0), Some(640), PixelFormat::Rgb24, 3));
    assert_eq!((ai.demand, ai.skip_similar, ai.mode()), (OutputDemand::Always, Some(0.02), 0o600));
    let OutputConfig::Shm(kf) = &o["kf"] else { panic!("kf is shm") };
    assert_eq!((kf.fps, kf.format, kf.slots), (Fps::Keyframes, PixelFormat::Bgr24, 4));
    let OutputConfig::Redis(q) = &o["q"] else { panic!("q is redis") };
    assert_eq!((q.ring.as_deref(), q.maxlen, q.buffer, q.include_jpeg), (Some("ai"), 1000, 1000, true));
    assert!(c.cameras[0].secrets().iter().any(|s| s == "hunter22"), "the redis password is scrubbed like the camera's");
    assert!(!format!("{:?}", c.cameras[0]).contains("hunter22"));
}

#[test]
fn bad_outputs_say_what_is_wrong_and_where() {
    let cases = [
        ("shm: {format: yuyv}", "yuyv"),
        ("shm: {fps: 0}", "frames per second"),
        ("shm: {slots: 1}", "slots must be 2-64"),
        ("shm: {permissions: \"rw\"}", "octal"),
        ("shm: {skip_similar: 3}", "skip_similar must be 0-1"),
        ("redis: {url: \"http://x\"}", "redis url scheme"),
        ("redis: {url: \"redis://x\", ring: nope}", "ring \"nope\" is not an shm output"),
        ("webrtc: {}", "webrtc"),
    ];
    for (out, want) in cases {
        let text = format!("cameras:\n  door:\n    url: rtsp://cam/s\n    outputs:\n      x:\n        {out}\n");
        let e = parse(&text).unwrap_err().0;
        assert!(e.contains(want), "{out}: {e}");
        assert!(e.starts_with("cams.yaml:"), "{out}: the error names the file and line: {e}");
    }
    let e =
        parse("cameras:\n  door:\n    url: rtsp://cam/s\n    mode: replay\n    outputs:\n      x:\n        shm: {}\n")
            .unwrap_err();
    assert!(e.0.contains("files only"), "{e}");
}

#[test]
fn resolve_is_literal_and_only_the_file_interpolates() {
    // Issue 15, item 1: the run-time API resolves bodies with `CameraConfig::resolve`;
    // a `${VAR}` there must stay text, or any caller reads the hub's environment.
    let mut o = CameraOptions::from_url("rtsp://cam/${CARGO_PKG_NAME}");
    o.username = Some("${CARGO_PKG_NAME}".into());
    o.password = Some("${CAMHUB_NOT_SET_Z}".into());
    let out: OutputConfig =
        serde_json::from_value(serde_json::json!({"redis": {"url": "redis://:${CARGO_PKG_NAME}@127.0.0.1/0"}}))
            .unwrap();
    o.outputs.insert("q".into(), out);
    let c = CameraConfig::resolve("a", o, Path::new("/")).unwrap();
    assert_eq!(c.username.as_deref(), Some("${CARGO_PKG_NAME}"));
    assert_eq!(c.password.as_ref().unwrap().expose(), "${CAMHUB_NOT_SET_Z}");
    assert!(!c.display_url().contains("camhub"), "{}", c.display_url());
    let OutputConfig::Redis(q) = &c.options.outputs["q"] else { panic!("q is redis") };
    assert!(q.url.expose().contains("${CARGO_PKG_NAME}"), "literal redis url");
    // The same in the file is interpolated, redis URLs included.
    let c = parse(
        "cameras:\n  a:\n    url: rtsp://cam/${CARGO_PKG_NAME}\n    outputs:\n      q:\n        redis: {url: \"redis://:${CARGO_PKG_NAME}@127.0.0.1/0\"}\n",
    )
    .unwrap();
    assert_eq!(c.cameras[0].display_url(), "rtsp://cam/camhub");
    let OutputConfig::Redis(q) = &c.cameras[0].options.outputs["q"] else { panic!("q is redis") };
    assert_eq!(q.url.expose(), "redis://:camhub@127.0.0.1/0");
    let e = parse("cameras:\n  a:\n    url: rtsp://x/y\n    outputs:\n      q:\n        redis: {url: \"redis://${CAMHUB_NOT_SET_W}/0\"}\n")
        .unwrap_err();
    assert!(e.0.contains("output \"q\"") && e.0.contains("CAMHUB_NOT_SET_W is not set"), "{e}");
}

#[test]
fn credentials_in_a_url_query_are_shown_as_stars_and_scrubbed() {
    let c = parse("cameras:\n  a: \"http://10.0.0.9/snap.cgi?user=admin&Pwd=s3cr%23t&chn=1\"\n").unwrap();
    assert_eq!(c.cameras[0].display_url(), "http://10.0.0.9/snap.cgi?user=admin&Pwd=***&chn=1");
    let s = c.cameras[0].secrets();
    assert!(s.iter().any(|x| x == "s3cr#t") && s.iter().any(|x| x == "s3cr%23t"), "{s:?}");
    let e = parse("cameras:\n  a: \"rtsp://[bad/x?token=tOk3n-9\"\n").unwrap_err();
    assert!(!e.0.contains("tOk3n-9"), "{e}");
}

#[test]
fn connection_limits_default_and_are_validated() {
    let c = parse("cameras:\n  a: rtsp://h/s\n").unwrap();
    assert_eq!(c.server.max_connections, 1024);
    assert_eq!(c.server.header_timeout, Seconds::from_secs(10));
    let c = parse("server:\n  max_connections: 16\n  header_timeout: 500ms\ncameras:\n  a: rtsp://h/s\n").unwrap();
    assert_eq!((c.server.max_connections, c.server.header_timeout.0), (16, std::time::Duration::from_millis(500)));
    let e = parse("server:\n  max_connections: 0\ncameras:\n  a: rtsp://h/s\n").unwrap_err();
    assert!(e.to_string().contains("server.max_connections must be at least 1"), "{e}");
    let e = parse("server:\n  header_timeout: 0\ncameras:\n  a: rtsp://h/s\n").unwrap_err();
    assert!(e.to_string().contains("server.header_timeout must be more than 0"), "{e}");
}

#[test]
fn decode_workers_default_to_the_cores_and_are_bounded() {
    let c = parse("cameras:\n  a: rtsp://h/s\n").unwrap();
    assert_eq!(c.server.decode.workers, None, "None: one per core");
    let c = parse("server:\n  decode:\n    workers: 1\ncameras:\n  a: rtsp://h/s\n").unwrap();
    assert_eq!(c.server.decode.workers, Some(1));
    let cores = std::thread::available_parallelism().unwrap().get();
    for bad in [0, 4 * cores + 1] {
        let e = parse(&format!("server:\n  decode:\n    workers: {bad}\ncameras:\n  a: rtsp://h/s\n")).unwrap_err();
        assert!(e.to_string().contains(&format!("server.decode.workers must be 1-{}", 4 * cores)), "{e}");
    }
}

#[test]
fn decoder_hwaccel_defaults_to_software_and_is_validated() {
    let c = parse(
        "cameras:\n  a: rtsp://x/y\n  b:\n    url: rtsp://x/y\n    decoder: {hwaccel: vaapi}\n  c:\n    url: rtsp://x/y\n    decoder:\n      hwaccel: auto\n  d:\n    url: rtsp://x/y\n    decoder: {hwaccel: cuda}\n  e:\n    url: rtsp://x/y\n    decoder: {hwaccel: none}\n",
    )
    .unwrap();
    let hw = |n: &str| c.cameras.iter().find(|c| c.name == n).unwrap().options.decoder.hwaccel;
    assert_eq!(
        [hw("a"), hw("b"), hw("c"), hw("d"), hw("e")],
        [Hwaccel::None, Hwaccel::Vaapi, Hwaccel::Auto, Hwaccel::Cuda, Hwaccel::None]
    );
    let e = parse("cameras:\n  a: rtsp://x/y\n  b:\n    url: rtsp://x/y\n    decoder: {hwaccel: nvdec}\n").unwrap_err();
    assert!(e.0.starts_with("cams.yaml:5:"), "{e}");
    assert!(e.0.contains("nvdec"), "{e}");
    let e = parse("cameras:\n  b:\n    url: rtsp://x/y\n    decoder:\n      hwacel: vaapi\n").unwrap_err();
    assert!(e.0.starts_with("cams.yaml:5:"), "{e}");
    assert!(e.0.contains("hwacel"), "{e}");
}

#[test]
fn streams_give_a_main_and_a_sub_with_their_own_credentials() {
    let c = parse(
        "cameras:\n  porch:\n    streams:\n      main: rtsp://admin:m41n@10.0.0.5/main\n      sub: \"rtsp://viewer:5ub-s3cret@10.0.0.5/sub?token=t0k3n\"\n  yard:\n    url: rtsp://admin:pw@10.0.0.6/main\n    streams: {sub: rtsp://10.0.0.6/sub}\n  plain: rtsp://10.0.0.7/s\n",
    )
    .unwrap();
    let cam = |n: &str| c.cameras.iter().find(|c| c.name == n).unwrap();
    let porch = cam("porch");
    assert_eq!(porch.display_url(), "rtsp://10.0.0.5/main");
    assert_eq!(porch.display_sub_url().as_deref(), Some("rtsp://10.0.0.5/sub?token=***"));
    let sub = porch.sub.as_ref().unwrap();
    assert_eq!((sub.username.as_deref(), sub.password.as_ref().unwrap().expose()), (Some("viewer"), "5ub-s3cret"));
    let secrets = porch.secrets();
    for s in ["m41n", "5ub-s3cret", "t0k3n"] {
        assert!(secrets.iter().any(|x| x == s), "{s} is scrubbed: {secrets:?}");
        assert!(!format!("{:?}", porch.options).contains(s) || s == "m41n", "{s} is not kept in the options");
    }
    // The sub camera runs under its own name, with the sub's source and credentials.
    let sc = porch.sub_camera().unwrap();
    assert_eq!((sc.name.as_str(), sc.display_url()), ("porch.sub", "rtsp://10.0.0.5/sub?token=***".to_owned()));
    assert_eq!(sc.password.as_ref().unwrap().expose(), "5ub-s3cret");
    assert!(sc.sub.is_none());
    // A sub URL without credentials uses the camera's.
    let yard = cam("yard");
    let ys = yard.sub.as_ref().unwrap();
    assert_eq!((ys.username.as_deref(), ys.password.as_ref().unwrap().expose()), (Some("admin"), "pw"));
    assert!(cam("plain").sub.is_none() && cam("plain").sub_camera().is_none());
}

#[test]
fn streams_errors_say_what_and_where() {
    let cases = [
        ("url: rtsp://a/b\n    streams: {main: rtsp://a/c}", "not both"),
        ("streams: {sub: rtsp://a/c}", "needs a url"),
        ("keep: on_demand", "needs a url"),
        ("streams: {main: rtsp://a/b, sub: \"ftp://u:subpw@a/c\"}", "streams.sub: unsupported url scheme"),
        ("streams: {main: rtsp://a/b, sub: \"rtsp://u:subpw@[bad/c\"}", "streams.sub: bad url"),
        ("url: rtsp://a/b\n    outputs:\n      ai:\n        shm: {from: sub}", "from: sub needs a sub-stream"),
        ("url: \"rtsps://u:subpw@a:7441/b\"\n    transport: udp", "transport: udp cannot be used with rtsps://"),
        ("streams: {main: rtsp://a/b, sub: rtsps://a/c}\n    transport: udp", "cannot be used with rtsps://"),
    ];
    for (body, want) in cases {
        let e = parse(&format!("cameras:\n  ok: rtsp://x/y\n  cam:\n    {body}\n")).unwrap_err().0;
        assert!(e.starts_with("cams.yaml:4:"), "{body}: the camera's first line: {e}");
        assert!(e.contains(want), "{body}: {e}");
        assert!(!e.contains("subpw"), "{body}: {e}");
    }
    let e = parse("cameras:\n  cam:\n    streams: {main: rtsp://a/b, side: rtsp://a/c}\n").unwrap_err().0;
    assert!(e.starts_with("cams.yaml:3:") && e.contains("side"), "{e}");
    let e = parse(
        "cameras:\n  cam:\n    streams: {main: rtsp://a/b, sub: rtsp://a/c}\n    outputs:\n      ai:\n        shm: {from: sub}\n      q:\n        redis: {url: \"redis://127.0.0.1/0\", ring: ai}\n",
    )
    .unwrap_err()
    .0;
    assert!(e.contains("give both the same from"), "{e}");
    let e = parse("cameras:\n  cam:\n    streams: {main: a.mp4, sub: b.mp4}\n    mode: replay\n    outputs:\n      x:\n        shm: {}\n")
        .unwrap_err()
        .0;
    assert!(e.contains("replay takes no streams.sub"), "{e}");
}

#[test]
fn outputs_read_the_main_stream_unless_told_sub() {
    let c = parse(
        "cameras:\n  cam:\n    streams: {main: rtsp://a/b, sub: rtsp://a/c}\n    outputs:\n      ai:\n        shm: {from: sub}\n      q:\n        redis: {url: \"redis://127.0.0.1/0\", ring: ai, from: sub}\n      full:\n        shm: {}\n",
    )
    .unwrap();
    let o = &c.cameras[0].options.outputs;
    assert_eq!(
        [o["ai"].stream(), o["q"].stream(), o["full"].stream()],
        [StreamRole::Sub, StreamRole::Sub, StreamRole::Main]
    );
}

#[test]
fn streams_interpolate_from_the_environment() {
    let c = parse("cameras:\n  a:\n    streams: {main: \"rtsp://u:${CARGO_PKG_NAME}@h/m\", sub: \"rtsp://u:${CARGO_PKG_NAME}2@h/s\"}\n")
        .unwrap();
    assert_eq!(c.cameras[0].sub.as_ref().unwrap().password.as_ref().unwrap().expose(), "camhub2");
    let e =
        parse("cameras:\n  a:\n    streams:\n      main: rtsp://h/m\n      sub: rtsp://u:${CAMHUB_NOT_SET_S}@h/s\n")
            .unwrap_err();
    assert!(e.0.starts_with("cams.yaml:5:") && e.0.contains("CAMHUB_NOT_SET_S"), "{e}");
}

#[test]
fn snapshot_default_is_fresh_server_wide_and_per_camera() {
    let c = parse("cameras:\n  a: rtsp://x/y\n").unwrap();
    assert_eq!(c.server.snapshot_default, SnapshotDefault::Fresh);
    assert_eq!(c.cameras[0].options.snapshot_default, None, "a camera that does not say takes the server's");
    let c = parse(
        "server:\n  snapshot_default: cached\ncameras:\n  a: rtsp://x/y\n  b:\n    url: rtsp://x/y\n    snapshot_default: fresh\n",
    )
    .unwrap();
    assert_eq!(c.server.snapshot_default, SnapshotDefault::Cached);
    let d = |n: &str| c.cameras.iter().find(|c| c.name == n).unwrap().options.snapshot_default;
    assert_eq!((d("a"), d("b")), (None, Some(SnapshotDefault::Fresh)));
    let e = parse("cameras:\n  b:\n    url: rtsp://x/y\n    snapshot_default: stale\n").unwrap_err();
    assert!(e.0.starts_with("cams.yaml:4:") && e.0.contains("stale"), "{e}");
}
