"""Plays an RTSP URL with GStreamer's rtspsrc and prints each decoded frame's clip
index (the test clip's barcode) and the spread of its pixels below the barcode.

    /usr/bin/python3 gst_play.py URL FRAMES [tcp|udp]   -> "FRAME <index> <spread>" lines

Run with Debian's Python (the gi bindings). Exits 1 if fewer frames came in 20 s.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

url, want = sys.argv[1], int(sys.argv[2])
protocols = sys.argv[3] if len(sys.argv) > 3 else "tcp"
Gst.init(None)
pipe = Gst.parse_launch(
    f"rtspsrc location={url} protocols={protocols} latency=0 ! decodebin ! videoconvert "
    "! video/x-raw,format=GRAY8 ! appsink name=sink sync=false max-buffers=100")
sink = pipe.get_by_name("sink")
pipe.set_state(Gst.State.PLAYING)
got = 0
while got < want:
    sample = sink.emit("try-pull-sample", 20 * Gst.SECOND)
    if sample is None:
        break
    s = sample.get_caps().get_structure(0)
    w, h = s.get_value("width"), s.get_value("height")
    buf = sample.get_buffer()
    ok, info = buf.map(Gst.MapFlags.READ)
    data = info.data
    stride = len(data) // h
    scale = w / 640
    index = sum(int(data[int(20 * scale) * stride + int((40 * b + 20) * scale)] > 128) << b for b in range(16))
    below = data[(h // 8) * stride:]
    mean = sum(below) / len(below)
    spread = (sum((v - mean) ** 2 for v in below[::97]) / len(below[::97])) ** 0.5
    buf.unmap(info)
    print(f"FRAME {index} {spread:.1f}", flush=True)
    got += 1
pipe.set_state(Gst.State.NULL)
sys.exit(0 if got >= want else 1)
