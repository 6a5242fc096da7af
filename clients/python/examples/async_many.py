#!/usr/bin/env python3
"""Many cameras' rings in one asyncio loop: one task per camera, one waiter thread
for all of them (camhub.aio).

    async_many.py --cameras door,yard,gate [--output ai] [--seconds 10]

Prints one line per camera, `<camera> frames <n> fps <f> mean <m>` (m: the mean
pixel of its last frame), then `camhub-aio threads <n>` (the most seen at once).
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time

from camhub import aio


class Stats:
    def __init__(self) -> None:
        self.frames = 0
        self.mean = 0.0


def waiter_threads() -> int:
    return sum(t.name == "camhub-aio" for t in threading.enumerate())


async def watch(camera: str, output: str, stats: Stats, until: float) -> None:
    """Counts `camera`'s frames until the loop's clock reaches `until`."""
    ring = await aio.open(camera, output, timeout=max(0.0, until - time.monotonic()))
    try:
        while time.monotonic() < until:
            frame = await aio.wait(ring, timeout=until - time.monotonic())
            if frame is None:
                continue
            stats.frames += 1
            copy = frame.copy()  # the view may be overwritten while we are away
            if copy is not None:
                stats.mean = float(copy.array.mean())
    finally:
        ring.close()


async def sample_threads(until: float) -> int:
    most = 0
    while time.monotonic() < until:
        most = max(most, waiter_threads())
        await asyncio.sleep(0.1)
    return most


async def run(cameras: list[str], output: str, seconds: float) -> None:
    until = time.monotonic() + seconds
    stats = {cam: Stats() for cam in cameras}
    watchers = [watch(cam, output, stats[cam], until) for cam in cameras]
    *_, threads = await asyncio.gather(*watchers, sample_threads(until))
    for cam, s in stats.items():
        print(f"{cam} frames {s.frames} fps {s.frames / seconds:.1f} mean {s.mean:.1f}")
    print(f"camhub-aio threads {threads}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", required=True, help="comma-separated camera names")
    ap.add_argument("--output", default="ai", help="the cameras' shm output")
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    asyncio.run(run([c for c in args.cameras.split(",") if c], args.output, args.seconds))


if __name__ == "__main__":
    main()
