"""Files whose video has B-frames (x264 and x265 defaults: has_b_frames=2) give every
frame to the end: the decoder's delayed pictures are drained at the end of the file
in replay, and at each wrap of a looped live file. The clips are the indexed test
clip re-encoded here, so each frame's barcode says its index.
"""

import os
import subprocess

import pytest

import camhub
from test_camhub import (  # noqa: F401 (fixtures)
    CLIP,
    SHM,
    barcode,
    camera_name,
    hub,
    wait_for,
)

FRAMES = 30
FPS = 15


def make_clip(directory, codec, container):
    """The first FRAMES frames of the indexed clip, re-encoded with B-frames."""
    path = os.path.join(directory, f"b-{codec}.{container}")
    enc = (["-c:v", "libx264", "-preset", "faster", "-bf", "2"] if codec == "h264" else
           ["-c:v", "libx265", "-preset", "faster", "-x265-params", "log-level=error:bframes=2"])
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-r", str(FPS), "-i", CLIP,
                    "-frames:v", str(FRAMES), "-fps_mode", "passthrough", *enc, "-crf", "18", "-g", "15", path], check=True)
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                            "stream=has_b_frames", "-of", "csv=p=0", path], capture_output=True, text=True, check=True)
    assert int(probe.stdout.strip()) >= 1, f"{path} has no B-frames: {probe.stdout}"
    return path


CLIPS = [("h264", "mp4"), ("h264", "mkv"), ("h265", "mp4")]


@pytest.mark.parametrize("codec,container", CLIPS)
def test_replay_of_a_b_frame_file_delivers_every_frame_once_in_order(hub, tmp_path, codec, container):
    clip = make_clip(str(tmp_path), codec, container)
    name = camera_name(f"bf{codec}{container}")
    cfg = (f"cameras:\n  {name}:\n    url: {clip}\n    mode: replay\n    outputs:\n"
           f"      ai:\n        shm: {{format: gray, slots: 2}}\n")
    h = hub(cfg, os.path.join(SHM, f"camhub.{name}.ai"))
    ring = camhub.open(name, "ai", timeout=10)
    got = [barcode(f.planes[0], f.width) for f in ring.frames(timeout=20)]
    assert ring.ended, "the iterator ends when the file is done"
    assert got == list(range(FRAMES)), f"{len(got)} frames: {got}"
    assert ring.missed == 0
    ring.close()
    wait_for("finished", lambda: h.camera(name)["state"] == "finished", 10, h.log)
    h.stop()


@pytest.mark.parametrize("codec,container", CLIPS)
def test_a_looped_b_frame_file_loses_no_frame_at_its_wraps(hub, tmp_path, codec, container):
    clip = make_clip(str(tmp_path), codec, container)
    name = camera_name(f"loop{codec}{container}")
    cfg = (f"cameras:\n  {name}:\n    url: {clip}\n    outputs:\n"
           f"      ai:\n        shm: {{format: gray, slots: 16}}\n")
    h = hub(cfg, os.path.join(SHM, f"camhub.{name}.ai"))
    ring = camhub.open(name, "ai", timeout=10)
    got = []
    for f in ring.frames(timeout=10):
        got.append(barcode(f.planes[0], f.width))
        if got.count(FRAMES - 1) == 4:  # three whole wraps seen, from the first end on
            break
    assert ring.missed == 0, f"the reader kept up: {ring.missed} missed"
    # From the end of the first pass on (before it, the decoder was starting), every
    # index follows the one before, across three wraps.
    seen = got[got.index(FRAMES - 1):]
    steps = [(a, b) for a, b in zip(seen, seen[1:]) if b != (a + 1) % FRAMES]
    assert not steps, f"frames missing or repeated at {steps}: {got}"
    assert len(seen) == 3 * FRAMES + 1, got
    cam = h.camera(name)
    assert cam["counters"]["decode_errors"] == 0, cam["counters"]
    ring.close()
    h.stop()
