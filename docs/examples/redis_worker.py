#!/usr/bin/env python3
"""A camhub Redis Streams worker: one of any number sharing a camera's frames
through a consumer group. Each record is either a JPEG (`include_jpeg`), a
pointer to a shared-memory ring slot (`ring:` outputs, same machine), or a
"same as frame X" note (`skip_similar`).

    redis_worker.py --url redis://127.0.0.1:6379/0 --stream camhub:door \
        --group detectors --consumer worker-1 [--count N]

Prints one line per record: `frame <frame_id> <kind> <width>x<height> mean=<mean pixel>`.
"""

import argparse

import numpy as np
import redis

try:
    import cv2
except ImportError:  # JPEG records need OpenCV (or any JPEG decoder)
    cv2 = None

import camhub


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--stream", required=True)
    ap.add_argument("--group", default="workers")
    ap.add_argument("--consumer", default="worker-1")
    ap.add_argument("--count", type=int, default=0, help="stop after this many records (0: never)")
    ap.add_argument("--start", default="0", help="group start id: 0 (whole stream) or $ (new records)")
    args = ap.parse_args()

    r = redis.Redis.from_url(args.url)
    try:
        r.xgroup_create(args.stream, args.group, id=args.start, mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
    rings = {}
    done = 0
    while args.count == 0 or done < args.count:
        want = 10 if args.count == 0 else min(10, args.count - done)
        reply = r.xreadgroup(args.group, args.consumer, {args.stream: ">"}, count=want, block=1000)
        for _, entries in reply or []:
            for rid, f in entries:
                frame_id = int(f[b"frame_id"])
                if b"same_as" in f:
                    print(f"frame {frame_id} same_as {int(f[b'same_as'])}", flush=True)
                elif b"jpeg" in f and cv2 is not None:
                    img = cv2.imdecode(np.frombuffer(f[b"jpeg"], np.uint8), cv2.IMREAD_COLOR)
                    h, w = img.shape[:2]
                    print(f"frame {frame_id} jpeg {w}x{h} mean={img.mean():.1f}", flush=True)
                elif b"ring" in f:
                    path = f[b"ring"].decode()
                    ring = rings.get(path) or rings.setdefault(path, camhub.Ring(path))
                    frame = ring.get(int(f[b"seq"]))
                    if frame is None:
                        print(f"frame {frame_id} overwritten", flush=True)
                    else:
                        print(f"frame {frame_id} ring {frame.width}x{frame.height} mean={frame.array.mean():.1f}",
                              flush=True)
                r.xack(args.stream, args.group, rid)
                done += 1
    for ring in rings.values():
        ring.close()


if __name__ == "__main__":
    main()
