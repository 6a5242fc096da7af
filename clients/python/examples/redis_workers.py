#!/usr/bin/env python3
"""Worker processes sharing a camera's Redis stream through one consumer group
(camhub.redis): Redis hands each record to one worker; pixels come from the local
ring when the record names one this host can open, else from the record's JPEG.

    redis_workers.py --url redis://127.0.0.1:6379/0 --stream camhub:door \
        [--group detectors] [--workers 2] [--records 40] [--seconds 30]

Stops after `--records` records in all (or `--seconds`). Prints one line per
worker, `<worker> records <n> ring <r> jpeg <j> none <k> mean <m>` (m: the mean
pixel of its last picture), then `total <n>`.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import camhub.redis


def work(name: str, args: argparse.Namespace, total, results) -> None:
    """One worker: counts records by where their pixels came from."""
    counts = {"ring": 0, "jpeg": 0, None: 0}
    mean = 0.0
    until = time.monotonic() + args.seconds
    for frame in camhub.redis.frames(args.stream, args.group, name, url=args.url, start="0", timeout=1.0):
        with total.get_lock():
            if total.value >= args.records:
                break  # the count is full: this demo acknowledges the record unprocessed
            total.value += 1
        pixels = frame.array
        if pixels is not None and frame.intact():
            mean = float(pixels.mean())
        counts[frame.source] += 1
        time.sleep(args.work)  # stands for the detector's time
        if time.monotonic() >= until:
            break
    results.put((name, counts, mean))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="redis://localhost")
    ap.add_argument("--stream", required=True)
    ap.add_argument("--group", default="workers")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--records", type=int, default=40, help="stop after this many records in all")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--work", type=float, default=0.02, help="seconds each record keeps a worker busy")
    args = ap.parse_args()

    total, results = mp.Value("i", 0), mp.Queue()
    names = [f"worker-{i + 1}" for i in range(args.workers)]
    procs = [mp.Process(target=work, args=(name, args, total, results)) for name in names]
    for p in procs:
        p.start()
    report = {}
    for _ in procs:
        name, counts, mean = results.get(timeout=args.seconds + 30)
        report[name] = (counts, mean)
    for p in procs:
        p.join()
    for name in names:
        counts, mean = report[name]
        n = sum(counts.values())
        print(f"{name} records {n} ring {counts['ring']} jpeg {counts['jpeg']} none {counts[None]} mean {mean:.1f}")
    print(f"total {total.value}")


if __name__ == "__main__":
    main()
