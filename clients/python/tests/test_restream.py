"""The hub's RTSP restream played by the clients people use from Python and
GStreamer: OpenCV's VideoCapture and GStreamer's rtspsrc decode the test clip's
frames through it (pixels checked: the clip's barcodes, in order, and real
pictures). ffmpeg's side is in tests/restream.rs."""

import json
import os
import subprocess
import urllib.request

import cv2

from test_camhub import REPO, barcode, camera_name, clip_diff, hub, rtsp, spread  # noqa: F401 (fixtures)

GST_PLAY = os.path.join(REPO, "tests", "support", "gst_play.py")


def restream(hub, rtsp, name):
    """A hub restreaming `name` from the test server; the restream URL."""
    h = hub(f"server:\n  rtsp:\n    listen: 127.0.0.1:0\ncameras:\n  {name}:\n    url: {rtsp.url}\n    keep: connected\n")
    with urllib.request.urlopen(f"{h.base}/api/health", timeout=10) as r:
        port = json.load(r)["rtsp"]["port"]
    assert port, h.log()
    return h, f"rtsp://127.0.0.1:{port}/{name}"


def assert_in_order(codes):
    assert all(clip_diff(b, a) == 1 for a, b in zip(codes, codes[1:])), f"consecutive clip frames: {codes}"


def test_opencv_videocapture_plays_the_restream(rtsp, hub):
    h, url = restream(hub, rtsp, camera_name("cv"))
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    try:
        assert cap.isOpened(), h.log()
        codes = []
        for _ in range(15):
            ok, img = cap.read()
            assert ok, h.log()
            y = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            assert y.shape == (360, 640) and spread(y) > 20, "a real picture"
            codes.append(barcode(y, 640))
        assert_in_order(codes)
    finally:
        cap.release()


def test_gstreamer_rtspsrc_plays_the_restream_over_tcp_and_udp(rtsp, hub):
    h, url = restream(hub, rtsp, camera_name("gst"))
    for protocols in ("tcp", "udp"):
        out = subprocess.run(["/usr/bin/python3", GST_PLAY, url, "12", protocols],
                             capture_output=True, text=True, timeout=60)
        frames = [line.split() for line in out.stdout.splitlines() if line.startswith("FRAME")]
        assert out.returncode == 0 and len(frames) == 12, f"{protocols}: {out.stdout}{out.stderr}\n{h.log()}"
        assert all(float(s) > 20 for _, _, s in frames), f"real pictures: {frames}"
        assert_in_order([int(i) for _, i, _ in frames])
