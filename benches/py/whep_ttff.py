"""Time to first frame of a WebRTC (WHEP) viewer, against waiting for the camera's
next keyframe. Runs the repo's aiortc viewer (tests/support/whep_client.py)
TRIALS times at random moments, each in this process.

    whep_ttff.py BASE_URL CAMERA TRIALS GOP_FRAMES FPS  -> one JSON line
"""

import asyncio
import json
import os
import random
import sys
import time
import urllib.request
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "support"))
import whep_client  # noqa: E402

base, camera, trials, gop, fps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
rng = random.Random(7)
first, current, wait_kf = [], [], []
for i in range(trials):
    # Stratified moments in the GOP, so a few trials cover it evenly.
    time.sleep(rng.uniform(0.3, 0.3 + gop / fps / trials))
    with urllib.request.urlopen(f"{base}/api/cameras/{camera}", timeout=10) as r:
        units = json.load(r)["gop_cache"]["units"]
    r = asyncio.run(whep_client.main(SimpleNamespace(url=f"{base}/api/cameras/{camera}/whep", frames=units + 2,
                                                     timeout=15, keep_open=0, no_delete=False)))
    if r["error"] or not r["frames"]:
        print(json.dumps({"error": r["error"] or "no frames"}), flush=True)
        sys.exit(1)
    first.append(r["ttff_ms"])
    # The cache's newest frame is the picture that was current at the request.
    current.append(r["frames"][min(units, len(r["frames"])) - 1][4])
    wait_kf.append((gop - units) / fps * 1000)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, round((len(v) - 1) * p))]


print(json.dumps({
    "trials": trials,
    "first_p50": pct(first, 0.5), "first_p90": pct(first, 0.9),
    "current_p50": pct(current, 0.5), "current_p90": pct(current, 0.9),
    "keyframe_wait_mean": sum(wait_kf) / len(wait_kf), "keyframe_wait_max": max(wait_kf),
}), flush=True)
