"""camhub.redis.frames against the real hub and redis-server: pixels from the local
ring or the record's JPEG (checked by the clip's barcode), acknowledgement when the
next record is asked for, the fallback when a record's ring is not this host's."""

import os
import sys

import numpy as np
import pytest
from test_camhub import SHM, barcode, camera_name, clip_diff, hub, rtsp, wait_for  # noqa: F401 (fixtures)
from test_hub_outputs import rds  # noqa: F401 (fixture)

import camhub.redis


@pytest.fixture
def cam(rtsp, rds, hub):
    """A camera with a ring, a Redis stream of its frames (`ring-<name>`) and one of JPEGs (`jpeg-<name>`)."""
    name = camera_name("rcl")
    cfg = (f"cameras:\n  {name}:\n    url: {rtsp.url}\n    outputs:\n"
           f"      ai:\n        shm: {{format: gray, width: 320}}\n"
           f"      ev:\n        redis: {{url: \"{rds.url}\", stream: ring-{name}, ring: ai}}\n"
           f"      pics:\n        redis: {{url: \"{rds.url}\", stream: jpeg-{name}, include_jpeg: true, width: 320}}\n")
    h = hub(cfg, os.path.join(SHM, f"camhub.{name}.ai"))
    wait_for("records", lambda: rds.client.xlen(f"ring-{name}") >= 3 and rds.client.xlen(f"jpeg-{name}") >= 3,
             30, h.log)
    yield name, h
    h.stop()


def gray(frame):
    a = frame.array
    return a if a.ndim == 2 else a.mean(axis=2)


def test_ring_records_read_pixels_from_the_local_ring(cam, rds, rtsp):
    name, _ = cam
    stream = f"ring-{name}"
    got = []
    for frame in camhub.redis.frames(stream, "g", "w1", client=rds.client, timeout=10):
        pending = rds.client.xpending(stream, "g")["pending"]
        assert pending == 1, "only the record in hand is pending: the one before was acknowledged"
        assert frame.source == "ring" and frame.ring_frame.frame_id == frame.frame_id
        assert frame.camera == name and frame.format == "gray" and frame.ring == os.path.join(SHM, f"camhub.{name}.ai")
        assert frame.array.shape == (180, 320) and not frame.array.flags.writeable
        if frame.intact():
            got.append((barcode(gray(frame), 320), rtsp.sent()))
        if len(got) == 5:
            break
    assert rds.client.xpending(stream, "g")["pending"] == 0, "leaving the loop acknowledges the last one"
    assert len(got) == 5
    assert all(abs(clip_diff(sent, idx)) <= 3 for idx, sent in got), got


def test_jpeg_records_are_decoded(cam, rds, rtsp):
    name, _ = cam
    frames = camhub.redis.frames(f"jpeg-{name}", "g", "w1", url=rds.url, timeout=10)
    for i, frame in enumerate(frames):
        assert frame.source == "jpeg" and frame.ring_frame is None and frame.format == "jpeg"
        assert frame.array.shape == (180, 320, 3) and frame.intact()
        assert abs(clip_diff(rtsp.sent(), barcode(gray(frame), 320))) <= 12
        if i == 2:
            break


def test_a_ring_this_host_does_not_have_falls_back_to_the_jpeg(cam, rds):
    """Records written by hand as another host's hub would: a ring path that is not
    here, and one that is here but whose slot holds another frame."""
    name, _ = cam
    r = rds.client
    jpeg = r.xrevrange(f"jpeg-{name}", count=1)[0][1][b"jpeg"]
    newest = r.xrevrange(f"ring-{name}", count=1)[0][1]
    base = {"camera": name, "output": "ev", "captured_ns": 1, "width": 320, "height": 180, "format": "gray"}
    r.xgroup_create("remote", "g", id="0", mkstream=True)
    r.xadd("remote", {**base, "frame_id": 1, "ring": "/dev/shm/camhub.elsewhere.ai", "slot": 0, "seq": 1,
                      "jpeg": jpeg})
    r.xadd("remote", {**base, "frame_id": int(newest[b"frame_id"]) + 10**6, "ring": newest[b"ring"],
                      "slot": newest[b"slot"], "seq": newest[b"seq"], "jpeg": jpeg})
    r.xadd("remote", {**base, "frame_id": 3, "same_as": 2, "similarity": "0.001"})
    got = list(camhub.redis.frames("remote", "g", "w1", client=r, timeout=0))
    assert [f.source for f in got] == ["jpeg", "jpeg", None]
    assert got[0].array.shape == (180, 320, 3) and np.std(got[0].array) > 20
    assert got[2].array is None and got[2].same_as == 2 and got[2].similarity == 0.001
    assert r.xpending("remote", "g")["pending"] == 0


def test_timeout_zero_reads_what_is_there_and_stops(rds):
    r = rds.client
    assert list(camhub.redis.frames("empty", "g", "w1", client=r, timeout=0)) == []
    r.xadd("empty", {"frame_id": 1})
    got = list(camhub.redis.frames("empty", "g", "w1", client=r, timeout=0))
    assert [f.frame_id for f in got] == [1] and got[0].source is None


def test_redis_py_is_an_optional_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError) as e:
        next(camhub.redis.frames("s", "g", "c"))
    assert "pip install redis" in str(e.value)
