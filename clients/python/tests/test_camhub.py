"""The Python client against the real hub: a real RTSP server (GStreamer, loopback)
serves the indexed test clip, `camhub serve` decodes it into a ring, and the
frames' barcodes are checked against what the server sent.

Needs the hub binary (`cargo build`; or CAMHUB_BIN) and Debian's /usr/bin/python3
with GStreamer's gi bindings (for tests/support/rtsp_server.py).
"""

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request

import numpy as np
import pytest

import camhub
from conftest import PKG

REPO = os.path.dirname(os.path.dirname(PKG))
CAMHUB = os.environ.get("CAMHUB_BIN", os.path.join(REPO, "target", "debug", "camhub"))
CLIP = os.path.join(REPO, "tests", "clips", "idx-h264.h264")
CLIP_FRAMES = 300
SHM = os.environ.get("CAMHUB_SHM_DIR", "/dev/shm")


def clip_diff(a, b):
    """a - b on the looping clip's indices."""
    d = (a - b) % CLIP_FRAMES
    return d - CLIP_FRAMES if d > CLIP_FRAMES // 2 else d


class RtspServer:
    def __init__(self, fps=10, codec="h264"):
        clip = CLIP if codec == "h264" else os.path.join(REPO, "tests", "clips", f"idx-{codec}.{codec}")
        self.p = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(REPO, "tests", "support", "rtsp_server.py"), "--clip", clip,
             "--codec", codec, "--fps", str(fps), "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        first = self.p.stdout.readline()
        assert first.startswith("PORT "), f"rtsp_server.py said {first!r}"
        self.url = f"rtsp://127.0.0.1:{int(first.split()[1])}/cam"
        self._index, self.count = -1, 0
        self._lock = threading.Lock()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.p.stdout:
            if line.startswith("SENT "):
                with self._lock:
                    self._index = int(line.split()[1])
                    self.count += 1

    def sent(self):
        """The clip index of the newest frame the server pushed."""
        with self._lock:
            return self._index

    def stop(self):
        self.p.kill()
        self.p.wait()


@pytest.fixture(scope="module")
def rtsp():
    s = RtspServer()
    yield s
    s.stop()


class Hub:
    def __init__(self, directory, config_yaml):
        assert os.access(CAMHUB, os.X_OK), f"no hub binary at {CAMHUB}: run cargo build, or set CAMHUB_BIN"
        cfg = os.path.join(directory, "cameras.yaml")
        with open(cfg, "w") as f:
            f.write(config_yaml)
        self.config = config_yaml
        self.lines = []
        self.base = None
        self._listening = threading.Event()
        self.p = subprocess.Popen([CAMHUB, "serve", "--config", cfg, "--listen", "127.0.0.1:0"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=dict(os.environ, CAMHUB_LOG="camhub=debug", NO_COLOR="1"))
        for stream in (self.p.stdout, self.p.stderr):
            threading.Thread(target=self._drain, args=(stream,), daemon=True).start()
        if not self._listening.wait(30):
            self.kill()
            raise AssertionError(f"the hub never said it was listening:\n{self.log()}")

    def _drain(self, stream):
        for line in stream:
            self.lines.append(line)
            if self.base is None and "listening" in line:
                m = re.search(r"https?://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d+)", line)
                if m:
                    self.base = f"http://{m.group(1)}:{m.group(2)}"
                    self._listening.set()

    def log(self):
        return "".join(self.lines[-200:])

    def camera(self, name):
        with urllib.request.urlopen(f"{self.base}/api/cameras/{name}", timeout=10) as r:
            return json.load(r)

    def stop(self, timeout=20):
        """A clean exit (SIGINT); its exit status."""
        self.p.send_signal(signal.SIGINT)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the hub did not exit on SIGINT:\n{self.log()}")

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


@pytest.fixture
def hub(tmp_path):
    """start(config_yaml) -> Hub; killed (and its rings removed) after the test."""
    hubs, paths = [], []

    def start(config_yaml, *ring_paths):
        paths.extend(ring_paths)
        h = Hub(str(tmp_path), config_yaml)
        hubs.append(h)
        return h

    yield start
    for h in hubs:
        h.kill()
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def camera_name(tag):
    return f"t{os.getpid()}{tag}"


def config(name, url, shm, decode_linger=1):
    opts = ", ".join(f"{k}: {v}" for k, v in shm.items())
    return (f"cameras:\n  {name}:\n    url: {url}\n    decode_linger: {decode_linger}\n"
            f"    outputs:\n      ai:\n        shm: {{{opts}}}\n")


def ring_file(name):
    return os.path.join(SHM, f"camhub.{name}.ai")


def luma(frame):
    """The picture's luma (or the mean of the colour channels), 2-D."""
    if frame.format in ("rgb24", "bgr24"):
        return frame.array.mean(axis=2)
    return frame.planes[0]  # gray; Y of i420/nv12


def barcode(y, width):
    """The clip index drawn along the top: bit b is the 40x40 block at x = 40b (at 640 wide)."""
    s = width / 640
    return sum(int(y[int(20 * s), int((40 * b + 20) * s)] > 128) << b for b in range(16))


def spread(y):
    """Standard deviation below the barcode: a blank or grey picture has almost none."""
    return float(np.std(y[y.shape[0] // 8:]))


def decoder_running(cam):
    if isinstance(cam.get("decoder"), dict) and "running" in cam["decoder"]:
        return bool(cam["decoder"]["running"])
    if isinstance(cam.get("status"), dict) and "decoder_running" in cam["status"]:
        return bool(cam["status"]["decoder_running"])
    return cam.get("tier") == "decoding"


def wait_for(what, pred, timeout, show):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"never {what}:\n{show()}")
        time.sleep(0.1)


def stop_and_check_gone(h, path, ring=None):
    rc = h.stop()
    assert rc == 0, f"exit status {rc}:\n{h.log()}"
    assert not os.path.exists(path), "a clean exit removes the ring file"
    if ring is not None:
        assert ring.wait(timeout=0.3) is None and ring.readers == 0  # the reader let go


# --- tests --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,width,shape", [
    ("bgr24", None, (360, 640, 3)),
    ("gray", 320, (180, 320)),
    ("i420", 320, (270, 320)),
])
def test_frames_carry_the_clip_the_camera_sent(rtsp, hub, fmt, width, shape):
    name = camera_name(f"px{fmt}")
    shm = {"format": fmt, "slots": 4}
    if width:
        shm["width"] = width
    h = hub(config(name, rtsp.url, shm), ring_file(name))
    ring = camhub.open(name, "ai", timeout=10)
    assert ring.readers >= 1
    warmup, fresh, seen = 0, [], []
    deadline = time.monotonic() + 40
    for f in ring.frames(timeout=20):
        c = f.copy()
        sent = rtsp.sent()
        if c is None:
            continue
        y = luma(c)
        idx = barcode(y, c.width)
        seen.append((c.frame_id, idx, sent))
        if not fresh and abs(clip_diff(sent, idx)) > 2 and time.monotonic() < deadline:
            warmup += 1  # decoding starts at the cached keyframe: catching up
            continue
        assert c.array.shape == shape and c.format == fmt and c.width == shape[1]
        assert abs(clip_diff(sent, idx)) <= 2, f"frame shows clip index {idx}, server sent {sent}: {seen[-10:]}"
        assert spread(y) > 20, "the picture below the barcode is blank"
        fresh.append((c.frame_id, idx))
        if len(fresh) >= 20:
            break
    print(f"{fmt}: {warmup} catching-up frames, then {len(fresh)} fresh; missed {ring.missed}")
    assert len(fresh) >= 20, f"only {len(fresh)} fresh frames: {seen[-20:]}\n{h.log()}"
    for (id0, i0), (id1, i1) in zip(fresh, fresh[1:]):
        assert id1 > id0 and clip_diff(i1, i0) >= 1, f"indices do not increase: {fresh}"
    stop_and_check_gone(h, ring_file(name), ring)
    ring.close()


def test_attaching_starts_decoding_and_detaching_stops_it(rtsp, hub):
    name = camera_name("demand")
    h = hub(config(name, rtsp.url, {"format": "gray", "slots": 4}, decode_linger=1), ring_file(name))
    time.sleep(2)
    cam = h.camera(name)
    assert not decoder_running(cam), f"decoding with no reader:\n{json.dumps(cam, indent=1)}"
    assert os.path.exists(ring_file(name)), "the ring exists before any frame"

    ring = camhub.open(name, "ai", timeout=10)
    f = ring.wait(timeout=20)
    assert f is not None, f"no frame after attaching:\n{h.log()}"
    cam = h.camera(name)
    assert decoder_running(cam), f"a frame came but the decoder is not running?\n{json.dumps(cam, indent=1)}"

    ring.close()
    t = time.monotonic()
    wait_for("stopped decoding after the reader left", lambda: not decoder_running(h.camera(name)), 1 + 5,
             lambda: json.dumps(h.camera(name), indent=1))
    print(f"decoder stopped {time.monotonic() - t:.1f} s after close (decode_linger 1 s)")
    stop_and_check_gone(h, ring_file(name))


def test_torn_reads_are_detected_under_concurrent_writing(rtsp, hub):
    name = camera_name("torn")
    h = hub(config(name, rtsp.url, {"format": "bgr24", "slots": 2}), ring_file(name))
    ring = camhub.open(name, "ai", timeout=10)
    assert ring.wait(timeout=20) is not None, h.log()
    intact, torn, torn_visible = [], 0, 0
    for i in range(40):
        f = ring.wait(timeout=10)
        assert f is not None
        if i % 2 == 0:  # copy at once: normally whole
            c = f.copy()
            ok, px = c is not None, None if c is None else c.array
            again = None if c is None else barcode(luma(c), c.width)
        else:  # copy slowly, a band at a time, across more than two publishes (10 fps, 2 slots)
            px = np.empty_like(f.array)
            bands = np.array_split(np.arange(f.height), 6)
            for rows in bands:
                px[rows[0]:rows[-1] + 1] = f.array[rows[0]:rows[-1] + 1]
                time.sleep(0.06)
            again = barcode(luma(f), f.width)  # the barcode as the slot shows it now
            ok = f.intact()
        y = px.mean(axis=2) if px is not None else None
        if ok:
            idx = barcode(y, f.width)
            assert idx == again, f"frame {f.frame_id} said intact but its barcode moved {idx} -> {again}"
            assert spread(y) > 20, f"frame {f.frame_id} said intact but is blank"
            intact.append((f.frame_id, idx))
        else:
            torn += 1
            torn_visible += y is not None and again != barcode(y, f.width)
    print(f"intact {len(intact)}, torn {torn} (barcode visibly changed in {torn_visible}), missed {ring.missed}")
    assert intact and torn, "both whole and torn reads expected"
    for (id0, i0), (id1, i1) in zip(intact, intact[1:]):
        assert id1 > id0 and clip_diff(i1, i0) >= 1, f"intact frames out of order: {intact}"
    ring.close()
    stop_and_check_gone(h, ring_file(name))


def test_a_ring_in_camhub_shm_dir_is_found_by_name(rtsp, hub, tmp_path, monkeypatch):
    """CAMHUB_SHM_DIR moves the hub's rings; camhub.open(camera, output) follows it."""
    name = camera_name("shmdir")
    rings = tmp_path / "rings"
    rings.mkdir()
    monkeypatch.setenv("CAMHUB_SHM_DIR", str(rings))  # the hub inherits this process's environment
    path = str(rings / f"camhub.{name}.ai")
    h = hub(config(name, rtsp.url, {"format": "gray", "width": 320, "slots": 4}), path)
    ring = camhub.open(name, "ai", timeout=10)
    assert ring.path == path and not os.path.exists(os.path.join("/dev/shm", f"camhub.{name}.ai"))
    f = ring.wait(timeout=20)
    assert f is not None and spread(luma(f)) > 20, h.log()
    stop_and_check_gone(h, path, ring)
    ring.close()


def test_a_second_hub_does_not_take_over_a_running_hubs_ring(rtsp, hub, tmp_path, monkeypatch):
    """A second hub with the same camera and output names in the same CAMHUB_SHM_DIR
    is refused the ring, with the first hub's PID in its output's error; the first
    hub's ring keeps working, also after the second hub exits."""
    name = camera_name("owner")
    rings = tmp_path / "rings"
    rings.mkdir()
    monkeypatch.setenv("CAMHUB_SHM_DIR", str(rings))
    path = str(rings / f"camhub.{name}.ai")
    cfg = config(name, rtsp.url, {"format": "gray", "width": 320, "slots": 4})
    first = hub(cfg, path)
    ring = camhub.open(name, "ai", timeout=10)
    f = ring.wait(timeout=20)
    assert f is not None, first.log()
    second = hub(cfg)

    def error():
        out = next(o for o in second.camera(name)["outputs"] if o["name"] == "ai")
        return out.get("error")

    err = wait_for("the second hub's ring error", error, 10, lambda: json.dumps(second.camera(name), indent=1))
    assert f"pid {first.p.pid}" in err, err
    later = ring.wait(timeout=10)
    assert later is not None and later.frame_id > f.frame_id, "the first hub's ring keeps publishing"
    assert second.stop() == 0, second.log()
    assert os.path.exists(path), "the second hub's exit leaves the first hub's ring alone"
    last = ring.wait(timeout=10)
    assert last is not None and last.frame_id > later.frame_id, f"the ring still works:\n{first.log()}"
    stop_and_check_gone(first, path, ring)
    ring.close()


def test_fps_spaces_frames_evenly(rtsp, hub):
    name = camera_name("fps")
    h = hub(config(name, rtsp.url, {"fps": 2, "format": "gray", "width": 320, "slots": 4}), ring_file(name))
    ring = camhub.open(name, "ai", timeout=10)
    first = ring.wait(timeout=20)
    assert first is not None, h.log()
    got = []
    end = time.monotonic() + 4
    for f in ring.frames(timeout=3):
        got.append((f.frame_id, f.captured_ns))
        if time.monotonic() >= end:
            break
    gaps = [(b[1] - a[1]) / 1e9 for a, b in zip(got, got[1:])]
    print(f"{len(got)} frames in ~4 s; frame_id gaps {[b[0] - a[0] for a, b in zip(got, got[1:])]}; "
          f"captured gaps {[round(g, 3) for g in gaps]}")
    assert 6 <= len(got) <= 10, f"{len(got)} frames in 4 s at fps 2"
    assert min(gaps) >= 0.3, f"frames closer than 0.3 s: {gaps}"
    ring.close()
    stop_and_check_gone(h, ring_file(name))


def test_a_ring_is_recreated_after_a_crash_and_a_reader_follows(rtsp, hub):
    name = camera_name("crash")
    cfg = config(name, rtsp.url, {"format": "gray", "width": 320, "slots": 4})
    h = hub(cfg, ring_file(name))
    ring = camhub.open(name, "ai", timeout=10)
    first = ring.wait(timeout=20)
    assert first is not None, h.log()
    h.p.kill()  # a crash: no clean-up, the ring file stays
    h.p.wait()
    assert os.path.exists(ring_file(name)), "a crashed hub leaves its ring behind"
    stale = os.stat(ring_file(name)).st_ino
    h2 = hub(cfg)
    f = ring.wait(timeout=30)  # the reader follows the replacement by itself
    assert f is not None, h2.log()
    assert os.stat(ring_file(name)).st_ino != stale, "the stale file was replaced"
    assert spread(luma(f)) > 20 and f.width == 320
    assert ring.readers >= 1, "the reader registered in the new file"
    ring.close()
    stop_and_check_gone(h2, ring_file(name))
