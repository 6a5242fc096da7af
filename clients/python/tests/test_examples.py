"""The examples in clients/python/examples, run as a user would (a subprocess with a
time limit) against the real hub, RTSP server and redis-server; their output is
checked, and what it claims is checked against the hub and Redis."""

import os
import subprocess
import sys

import cv2
import numpy as np
from test_camhub import PKG, SHM, camera_name, config, hub, rtsp, wait_for  # noqa: F401 (fixtures)
from test_hub_outputs import rds  # noqa: F401 (fixture)

EXAMPLES = os.path.join(PKG, "examples")


def run_example(script, *args, timeout=120):
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), *map(str, args)],
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{script} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout.splitlines()


def test_detect_opencv_draws_on_writable_frames(rtsp, hub, tmp_path):
    name = camera_name("detect")
    h = hub(config(name, rtsp.url, {"format": "bgr24", "slots": 4}), os.path.join(SHM, f"camhub.{name}.ai"))
    saved = tmp_path / "last.png"
    lines = run_example("detect_opencv.py", name, "ai", "--frames", 30, "--timeout", 20, "--save", saved)
    frames = [line.split() for line in lines if line.startswith("frame ")]
    assert len(frames) == 30, lines
    ids = [int(f[1]) for f in frames]
    assert ids == sorted(set(ids)), "every frame once, in order"
    assert any(line.startswith("fps ") for line in lines) and lines[-1].startswith("done 30 frames"), lines
    boxes = [f[3:] for f in frames if f[3] != "none"]
    assert len(boxes) >= 20, f"the clip moves: most frames have a box: {frames}"
    assert frames[-1][3] != "none", "the last frame changed from the one before"
    img = cv2.imread(str(saved))
    x, y, w, hgt = map(int, frames[-1][3:])
    assert img.shape == (360, 640, 3)
    assert tuple(img[y, x]) == (0, 255, 0) and tuple(img[y + hgt - 1, x + w - 1]) == (0, 255, 0), "the box is drawn"
    assert np.std(img) > 20, "on a real picture"
    h.stop()


def test_redis_workers_share_a_consumer_group(rtsp, rds, hub):
    name = camera_name("workers")
    stream = f"ring-{name}"
    cfg = (f"cameras:\n  {name}:\n    url: {rtsp.url}\n    outputs:\n"
           f"      ai:\n        shm: {{format: gray, width: 320}}\n"
           f"      ev:\n        redis: {{url: \"{rds.url}\", stream: {stream}, ring: ai, include_jpeg: true}}\n")
    h = hub(cfg, os.path.join(SHM, f"camhub.{name}.ai"))
    lines = run_example("redis_workers.py", "--url", rds.url, "--stream", stream, "--group", "g",
                        "--workers", 2, "--records", 40, "--seconds", 60)
    rows = [line.split() for line in lines if line.startswith("worker-")]
    workers = {p[0]: dict(zip(p[1::2], p[2::2])) for p in rows}
    assert set(workers) == {"worker-1", "worker-2"}, lines
    assert lines[-1] == "total 40", lines
    counts = [int(w["records"]) for w in workers.values()]
    assert sum(counts) == 40 and min(counts) > 0, f"both workers got records: {lines}"
    for w in workers.values():
        assert int(w["ring"]) + int(w["jpeg"]) == int(w["records"]) and int(w["none"]) == 0, lines
        assert float(w["mean"]) > 20, f"real pictures: {lines}"
    assert sum(int(w["ring"]) for w in workers.values()) > 0, f"pixels from the local ring: {lines}"
    assert rds.client.xpending(stream, "g")["pending"] == 0, "every record handed out was acknowledged"
    consumers = {c["name"].decode(): c for c in rds.client.xinfo_consumers(stream, "g")}
    assert set(consumers) == {"worker-1", "worker-2"}
    h.stop()


def test_async_many_reads_eight_cameras_with_one_waiter_thread(rtsp, hub):
    names = [camera_name(f"many{i}") for i in range(8)]
    cfg = "cameras:\n" + "".join(
        f"  {n}:\n    url: {rtsp.url}\n    decode_linger: 1\n    outputs:\n"
        f"      ai:\n        shm: {{format: gray, width: 320}}\n" for n in names)
    h = hub(cfg, *(os.path.join(SHM, f"camhub.{n}.ai") for n in names))
    # The RTSP server shares one media: a camera that joins mid-GOP gets pictures from
    # the next keyframe (every 10 s); once it is cached, decoding starts at once.
    for n in names:
        wait_for(f"a keyframe cached for {n}", lambda n=n: h.camera(n)["gop_cache"]["units"] > 0, 30, h.log)
    lines = run_example("async_many.py", "--cameras", ",".join(names), "--seconds", 8)
    stats = {p[0]: p for p in (line.split() for line in lines) if p[0] in names}
    assert set(stats) == set(names), lines
    for cam, p in stats.items():
        frames, mean = int(p[2]), float(p[6])
        assert frames >= 5 and mean > 20, f"{cam}: {lines}\n{h.log()}"
    assert lines[-1] == "camhub-aio threads 1", lines
    h.stop()
