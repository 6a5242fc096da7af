"""PNG plots for BENCHMARKS.md from the fleet bench's results.

    plot.py target/bench-results/fleet.json docs/bench/
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
r = json.load(open(src))
pts = r["points"]
fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
for dec, label, style in ((False, "connected, nobody watching", "o-"), (True, "10% decoding", "s--")):
    sel = sorted((p for p in pts if (p["decoding"] > 0) == dec), key=lambda p: p["cameras"])
    xs = [p["cameras"] for p in sel]
    a.plot(xs, [p["cpu"] for p in sel], style, label=label)
    b.plot(xs, [p["rss"] / 2**20 for p in sel], style, label=label)
a.set_xlabel("cameras"); a.set_ylabel("CPU, % of one core"); a.set_title("camhub CPU"); a.grid(alpha=.3); a.legend()
b.set_xlabel("cameras"); b.set_ylabel("RSS, MiB"); b.set_title("camhub memory"); b.grid(alpha=.3); b.legend()
fig.tight_layout()
fig.savefig(os.path.join(out, "scale.png"), dpi=90)

snap = os.path.join(os.path.dirname(src), "snapshot.json")
if os.path.exists(snap):
    s = json.load(open(snap))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(s["camhub_ms"], bins=20, alpha=.7, label="camhub (decoder cold)")
    ax.hist(s["reference_ms"], bins=20, alpha=.5, label="libavcodec alone, same backlog + JPEG")
    ax.set_xlabel("ms"); ax.set_ylabel("snapshots"); ax.set_title("P3 fresh snapshot latency"); ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "snapshot-latency.png"), dpi=90)
print("plots in", out)
