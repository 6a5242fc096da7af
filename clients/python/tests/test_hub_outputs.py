"""The hub's other outputs for programs, against real parts: Redis Streams records
(a real redis-server per test, redis-py, the docs' consumer-group worker), replay
mode, the similarity skip and keyframe-only decoding.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import cv2
import numpy as np
import pytest
import redis

import camhub
from test_camhub import (  # noqa: F401 (fixtures)
    CLIP,
    REPO,
    SHM,
    barcode,
    camera_name,
    clip_diff,
    hub,
    rtsp,
    wait_for,
)

WORKER = os.path.join(REPO, "docs", "examples", "redis_worker.py")


class RedisServer:
    def __init__(self, directory):
        self.sock = os.path.join(directory, "redis.sock")
        self.start()

    def start(self):
        self.p = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.sock, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(unix_socket_path=self.sock)
        wait_for("redis-server answered", self._ping, 10, lambda: "")

    def _ping(self):
        try:
            return self.client.ping()
        except redis.ConnectionError:
            return False

    @property
    def url(self):
        return f"unix://{self.sock}"

    def stop(self):
        self.p.kill()
        self.p.wait()


@pytest.fixture
def rds(tmp_path):
    assert shutil.which("redis-server"), "redis-server is not installed (make deps installs it)"
    s = RedisServer(str(tmp_path))
    yield s
    s.stop()


def output(cam, name):
    return next(o for o in cam["outputs"] if o["name"] == name)


def fields(entry):
    return {k.decode(): v for k, v in entry[1].items()}


def test_redis_records_carry_frames_and_a_consumer_group_worker_reads_them(rtsp, rds, hub):
    name = camera_name("redis")
    cfg = (f"cameras:\n  {name}:\n    url: {rtsp.url}\n    outputs:\n"
           f"      ai:\n        shm: {{format: gray, width: 320}}\n"
           f"      ev:\n        redis: {{url: \"{rds.url}\", stream: ring-{name}, ring: ai}}\n"
           f"      pics:\n        redis: {{url: \"{rds.url}\", stream: jpeg-{name}, fps: 2, include_jpeg: true,"
           f" quality: 70, width: 320, maxlen: 50}}\n")
    h = hub(cfg, os.path.join(SHM, f"camhub.{name}.ai"))
    r = rds.client
    wait_for("records in both streams", lambda: r.xlen(f"ring-{name}") >= 20 and r.xlen(f"jpeg-{name}") >= 4, 30,
             h.log)

    # Ring records: every frame, in order, pointing at the slot that holds it.
    recs = [fields(e) for e in r.xrange(f"ring-{name}")]
    ids = [int(f["frame_id"]) for f in recs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
    last = recs[-1]
    assert last["camera"] == name.encode() and last["output"] == b"ev" and last["format"] == b"gray"
    assert (int(last["width"]), int(last["height"])) == (320, 180)
    assert last["ring"].decode() == os.path.join(SHM, f"camhub.{name}.ai")
    ring = camhub.Ring(last["ring"].decode())
    newest = [fields(e) for e in r.xrevrange(f"ring-{name}", count=1)][0]
    f = ring.get(int(newest["seq"]))
    if f is not None:  # (the hub may have written the slot again meanwhile)
        assert f.frame_id == int(newest["frame_id"]) and f.slot == int(newest["slot"])
    assert ring.get(10**9) is None

    # JPEG records: 2 per second, a real picture of the frame the camera sent.
    pics = [fields(e) for e in r.xrange(f"jpeg-{name}")]
    caps = [int(p["captured_ns"]) for p in pics]
    assert min(b - a for a, b in zip(caps, caps[1:])) > 0.3e9, "fps: 2 is evenly spaced"
    img = cv2.imdecode(np.frombuffer(pics[-1]["jpeg"], np.uint8), cv2.IMREAD_GRAYSCALE)
    assert img.shape == (180, 320) and pics[-1]["format"] == b"jpeg"
    assert abs(clip_diff(rtsp.sent(), barcode(img, 320))) <= 12, "the JPEG shows a recent frame of the clip"
    assert r.xlen(f"jpeg-{name}") <= 150, "MAXLEN ~ 50 trims the stream"

    # The worker from docs/redis.md, in a consumer group, on both streams.
    for stream, kind in ((f"jpeg-{name}", "jpeg 320x180"), (f"ring-{name}", "ring 320x180")):
        out = subprocess.run([sys.executable, WORKER, "--url", rds.url, "--stream", stream, "--group", "g",
                              "--consumer", "w1", "--count", "3"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert len(lines) == 3 and all(line.startswith("frame ") for line in lines), out.stdout
        # A ring slot may have been overwritten since the record was written (the stream starts at 0).
        assert any(kind in line for line in lines) or kind.startswith("ring"), out.stdout
        pending = r.xpending(stream, "g")["pending"]
        assert pending == 0, "the worker acknowledged what it read"
    ring.close()
    cam = h.camera(name)
    assert output(cam, "ev")["redis"]["connected"] and output(cam, "ev")["redis"]["dropped"] == 0
    h.stop()


def test_a_lost_redis_drops_the_oldest_records_and_never_blocks_the_camera(rtsp, rds, hub):
    name = camera_name("lost")
    cfg = (f"cameras:\n  {name}:\n    url: {rtsp.url}\n    outputs:\n"
           f"      ev:\n        redis: {{url: \"{rds.url}\", stream: s, buffer: 20}}\n")
    h = hub(cfg)
    wait_for("records flowing", lambda: rds.client.xlen("s") >= 10, 30, h.log)
    rds.stop()
    t = time.monotonic()
    wait_for("the buffer overflowing", lambda: output(h.camera(name), "ev")["redis"]["dropped"] > 0, 20,
             lambda: str(h.camera(name)))
    cam = h.camera(name)
    ev = output(cam, "ev")
    assert not ev["redis"]["connected"] and ev["redis"]["queued"] <= 20, ev
    assert "redis" in (ev["redis"]["error"] or ""), ev
    assert cam["state"] == "streaming" and cam["latest_frame"]["age_ms"] < 1000, "the camera goes on"
    with urllib.request.urlopen(f"{h.base}/api/cameras/{name}/snapshot.jpg", timeout=10) as resp:
        assert resp.status == 200 and int(resp.headers["X-Frame-Age-Ms"]) < 1000
    metrics = urllib.request.urlopen(f"{h.base}/metrics", timeout=10).read().decode()
    assert f'camhub_redis_records_dropped_total{{camera="{name}",output="ev"}}' in metrics
    print(f"dropped {ev['redis']['dropped']} records {time.monotonic() - t:.1f} s after redis went away")

    rds.start()  # same socket: the publisher reconnects with backoff
    wait_for("records after redis came back", lambda: rds.client.xlen("s") >= 5, 40, lambda: str(h.camera(name)))
    assert output(h.camera(name), "ev")["redis"]["connected"]
    h.stop()


def test_replay_delivers_every_frame_of_a_file_in_order_at_the_readers_pace(hub):
    name = camera_name("replay")
    cfg = (f"cameras:\n  {name}:\n    url: {CLIP}\n    mode: replay\n    outputs:\n"
           f"      ai:\n        shm: {{format: gray, slots: 2}}\n")
    h = hub(cfg, os.path.join(SHM, f"camhub.{name}.ai"))
    time.sleep(1)
    assert output(h.camera(name), "ai")["published"] == 0, "nothing is replayed before a reader attaches"
    ring = camhub.open(name, "ai", timeout=10)
    assert ring.mode == "replay"
    got = []
    for i, f in enumerate(ring.frames(timeout=20)):
        got.append(barcode(f.planes[0], f.width))
        if i % 50 == 0:
            time.sleep(0.2)  # a slow reader now and then: the hub waits for it
    assert ring.ended, "the iterator ends when the file is done"
    assert got == list(range(300)), f"{len(got)} frames; first gaps: {[(a, b) for a, b in zip(got, got[1:]) if b != a + 1][:5]}"
    assert ring.missed == 0
    ring.close()
    h.stop()


def test_similar_frames_are_skipped_on_a_still_scene_and_not_on_a_moving_one(rds, hub, tmp_path):
    still = os.path.join(tmp_path, "still.mp4")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "smptebars=s=320x240:r=10:d=4", "-c:v", "libx264", "-g", "20", "-bf", "0", still], check=True)
    name = camera_name("skip")
    cfg = "cameras:\n"
    for cam, url in ((f"{name}s", still), (f"{name}m", CLIP)):
        cfg += (f"  {cam}:\n    url: {url}\n    mode: replay\n    outputs:\n"
                f"      ev:\n        redis: {{url: \"{rds.url}\", stream: {cam}, skip_similar: 0.01, maxlen: 10000}}\n")
    h = hub(cfg)
    r = rds.client
    wait_for("both files replayed", lambda: r.xlen(f"{name}s") >= 40 and r.xlen(f"{name}m") >= 300, 60, h.log)
    time.sleep(0.5)
    s = [fields(e) for e in r.xrange(f"{name}s")]
    m = [fields(e) for e in r.xrange(f"{name}m")]
    assert len(s) == 40 and len(m) == 300, (len(s), len(m))
    first = int(s[0]["frame_id"])
    assert "same_as" not in s[0] and "width" in s[0]
    assert all(int(x["same_as"]) == first and "width" not in x for x in s[1:]), "a still scene is one picture"
    assert not any("same_as" in x for x in m), "every frame of a moving scene is published"
    # Each record says how similar: skipped ones under the threshold, published ones
    # against the previous published frame (the first has nothing to compare with).
    assert "similarity" not in s[0] and "similarity" not in m[0]
    assert all(0 <= float(x["similarity"]) < 0.01 for x in s[1:]), [x["similarity"] for x in s[1:5]]
    scores = [float(x["similarity"]) for x in m[1:]]
    assert all(0.01 <= v <= 1 for v in scores), min(scores)
    assert output(h.camera(f"{name}s"), "ev")["skipped_similar"] == 39
    metrics = urllib.request.urlopen(f"{h.base}/metrics", timeout=10).read().decode()
    assert f'camhub_output_skipped_similar_total{{camera="{name}s",output="ev"}} 39' in metrics
    h.stop()


def test_keyframes_only_decodes_one_picture_per_gop(rtsp, hub):
    name = camera_name("kf")
    cfg = (f"cameras:\n  {name}:\n    url: {rtsp.url}\n    outputs:\n"
           f"      ai:\n        shm: {{fps: keyframes, format: gray, width: 320}}\n")
    h = hub(cfg, os.path.join(SHM, f"camhub.{name}.ai"))
    wait_for("connected", lambda: h.camera(name)["state"] == "streaming", 20, h.log)
    before = h.camera(name)["counters"]
    ring = camhub.open(name, "ai", timeout=10)
    frames = []
    for f in ring.frames(timeout=15):  # the clip has a keyframe every 10 s (100 frames)
        frames.append(barcode(f.planes[0], f.width))
        if len(frames) == 2:
            break
    after = h.camera(name)["counters"]
    assert len(frames) == 2 and all(i % 100 == 0 for i in frames), f"clip indices {frames} are not keyframes"
    units = after["units_in"] - before["units_in"]
    decoded = after["frames_decoded"] - before["frames_decoded"]
    print(f"{units} units received, {decoded} decoded")
    assert units > 50 and decoded <= 3, f"{decoded} frames decoded of {units}: keyframes only"
    assert h.camera(name)["leases"]["keyframes"] == 1
    ring.close()
    h.stop()


def metric(text, name):
    """The value of one sample line `name value` on a /metrics page (0 if absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_slow_redis_flushes_are_counted_logged_and_in_a_histogram(rds, hub):
    name = camera_name("slow")
    cfg = (f"cameras:\n  {name}:\n    url: {CLIP}\n    outputs:\n"
           f"      ev:\n        redis: {{url: \"{rds.url}\", stream: s}}\n")
    h = hub(cfg)
    wait_for("records flowing", lambda: rds.client.xlen("s") >= 10, 30, h.log)
    page = urllib.request.urlopen(f"{h.base}/metrics", timeout=10).read().decode()
    hist = "camhub_redis_flush_duration_seconds"
    assert f"# TYPE {hist} histogram" in page, page
    assert metric(page, f"{hist}_count") >= 1, "every batch is observed"
    slow = f'camhub_redis_slow_flushes_total{{camera="{name}",output="ev"}}'
    assert metric(page, slow) == 0, "a local Redis is fast"

    # Redis freezes (the process is stopped) for 300 ms, twice: the batches in flight wait for it.
    for _ in range(2):
        os.kill(rds.p.pid, signal.SIGSTOP)
        time.sleep(0.3)
        os.kill(rds.p.pid, signal.SIGCONT)
        time.sleep(0.5)
    wait_for("slow flushes counted", lambda: output(h.camera(name), "ev")["redis"]["slow_flushes"] >= 2, 10,
             lambda: str(h.camera(name)))
    page = urllib.request.urlopen(f"{h.base}/metrics", timeout=10).read().decode()
    assert metric(page, slow) >= 2, page
    fast = metric(page, f'{hist}_bucket{{le="0.05"}}')
    assert metric(page, f'{hist}_bucket{{le="+Inf"}}') - fast >= 2, "the slow ones are above 50 ms in the histogram"
    assert metric(page, f'{hist}_bucket{{le="0.1"}}') <= metric(page, f'{hist}_bucket{{le="+Inf"}}') - 2
    # Logged once: the second within 10 s is only counted.
    logged = [line for line in h.lines if "slow redis" in line]
    assert len(logged) == 1, h.log()
    assert f"{name}/ev" in logged[0] and "over 50 ms" in logged[0], logged[0]
    assert output(h.camera(name), "ev")["redis"]["dropped"] == 0, "nothing lost"
    h.stop()


def test_similarity_scores_are_in_the_ring_slots_and_the_last_skip_header_field(hub, tmp_path):
    still = os.path.join(tmp_path, "still.mp4")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "smptebars=s=320x240:r=10:d=4", "-c:v", "libx264", "-g", "20", "-bf", "0", still], check=True)
    name = camera_name("sim")
    cfg = (f"cameras:\n  {name}s:\n    url: {still}\n    outputs:\n"
           f"      ai:\n        shm: {{format: gray, skip_similar: 0.01}}\n"
           f"  {name}m:\n    url: {CLIP}\n    outputs:\n"
           f"      ai:\n        shm: {{format: gray, skip_similar: 0}}\n"
           f"      plain:\n        shm: {{format: gray}}\n")
    h = hub(cfg, *(os.path.join(SHM, f"camhub.{name}{c}.{o}") for c, o in (("s", "ai"), ("m", "ai"), ("m", "plain"))))

    # A still scene: one published frame, then skips, each scored in the header.
    rs = camhub.open(f"{name}s", "ai", timeout=10)
    first = rs.wait(timeout=10)
    assert first is not None and first.similarity is None, "the first frame has nothing to compare with"
    wait_for("frames skipped as similar", lambda: rs.last_skip is not None, 10, h.log)
    fid, sim = rs.last_skip
    assert fid > first.frame_id and 0 <= sim < 0.01, rs.last_skip
    wait_for("a later skip", lambda: rs.last_skip[0] > fid, 10, h.log)
    assert 0 <= rs.last_skip[1] < 0.01

    # A moving scene measured without skipping (skip_similar: 0): every frame scored
    # against the one before it; an output without skip_similar measures nothing.
    rm, plain = camhub.open(f"{name}m", "ai", timeout=10), camhub.open(f"{name}m", "plain", timeout=10)
    got = []
    while len(got) < 10:
        f = rm.wait(timeout=10)
        assert f is not None, h.log()
        got.append(f.similarity)
    assert all(v is not None and 0 < v <= 1 for v in got[1:]), got
    assert rm.last_skip is None, "nothing skipped at 0"
    f = plain.wait(timeout=10)
    assert f is not None and f.similarity is None
    for r in (rs, rm, plain):
        r.close()
    h.stop()
