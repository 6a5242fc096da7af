"""P7: how long after decode a frame reaches a Python reader through SHM.

    shm_latency.py CAMERA OUTPUT SECONDS  -> one JSON line

Waits with the client's documented strategy (futex on the ring's notify word),
and for every frame measures now - decoded_ns (decode to Python) and
now - published_ns (the wake-up alone). Also checks the array is a view of the
shared memory (no copy).
"""

import json
import sys
import time

import numpy as np

import camhub

camera, output, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
ring = camhub.open(camera, output, timeout=10)
after_decode, after_publish = [], []
views = True
end = time.time() + seconds
for frame in ring.frames(timeout=5):
    now = time.time_ns()
    after_decode.append((now - frame.decoded_ns) / 1e6)
    after_publish.append((now - frame.published_ns) / 1e6)
    views &= frame.array.base is not None and not frame.array.flags.owndata
    if time.time() > end:
        break
ring.close()


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, round((len(v) - 1) * p))] if v else float("nan")


print(json.dumps({
    "frames": len(after_decode),
    "decode_p50": pct(after_decode, 0.5), "decode_p99": pct(after_decode, 0.99),
    "wake_p50": pct(after_publish, 0.5), "wake_p99": pct(after_publish, 0.99),
    "zero_copy": views,
}), flush=True)
