"""Issue 17's client benchmark: RINGS rings read from one asyncio loop (camhub.aio),
the reader's CPU per frame; `select` mode reads them from one plain thread with
`camhub.select` instead (the reference, same run).

    aio_many.py RINGS FPS SECONDS [aio|select]  -> one JSON line

A writer process (the tests' RingWriter, the protocol written from docs/shm.md)
publishes small gray frames into RINGS rings, FPS each; this process reads every
ring in one event loop, one task per ring (a frame's pixels are looked at: its mean),
and reports frames read, frames published, and its own CPU time per frame read
(utime + stime of this process, which holds the loop and the one waiter thread).
"""

import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from camhub import aio

TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python", "tests")

WRITER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from ringwriter import RingWriter
directory, rings, fps, seconds = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
ws = [RingWriter(directory, f"c{i}", "ai") for i in range(rings)]
for w in ws:
    w.configure("gray", 64, 36, slots=4)
print("READY", flush=True)
sys.stdin.readline()
step, n, t0 = 1.0 / (fps * rings), 0, time.monotonic()
while time.monotonic() - t0 < seconds:
    ws[n % rings].publish()
    n += 1
    time.sleep(max(0.0, t0 + n * step - time.monotonic()))
print(n, flush=True)
"""


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def read(ring_name: str, directory: str, until: float, counts: dict) -> None:
    ring = await aio.open(ring_name, "ai", directory=directory, timeout=10)
    try:
        while time.monotonic() < until:
            f = await aio.wait(ring, timeout=until - time.monotonic())
            if f is not None:
                counts[ring_name] = counts.get(ring_name, 0) + 1
                float(f.array.mean())
    finally:
        ring.close()


def read_with_select(rings: int, directory: str, until: float, counts: dict) -> None:
    import camhub

    ring_list = [camhub.open(f"c{i}", "ai", directory=directory, timeout=10) for i in range(rings)]
    try:
        while time.monotonic() < until:
            for ring in camhub.select(ring_list, timeout=until - time.monotonic()):
                f = ring.wait(0)
                if f is not None:
                    counts[ring.path] = counts.get(ring.path, 0) + 1
                    float(f.array.mean())
    finally:
        for ring in ring_list:
            ring.close()


async def main(rings: int, fps: float, seconds: float, mode: str) -> dict:
    directory = tempfile.mkdtemp(prefix="camhub-aio-bench-", dir="/dev/shm")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, TESTS, directory, str(rings), str(fps), str(seconds)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "READY"
        counts: dict = {}
        until = time.monotonic() + seconds
        if mode == "select":
            tasks = [asyncio.ensure_future(asyncio.to_thread(read_with_select, rings, directory, until, counts))]
        else:
            tasks = [asyncio.ensure_future(read(f"c{i}", directory, until, counts)) for i in range(rings)]
        await asyncio.sleep(0.5)  # every ring attached
        c0, t0 = cpu(), time.monotonic()
        writer.stdin.write("go\n")
        writer.stdin.flush()
        threads = 0
        while time.monotonic() < until:
            threads = max(threads, sum(t.name == "camhub-aio" for t in threading.enumerate()))
            await asyncio.sleep(0.2)
        await asyncio.gather(*tasks)
        used, elapsed = cpu() - c0, time.monotonic() - t0
        published = int(writer.stdout.readline() or 0)
        read_total = sum(counts.values())
        return {
            "mode": mode, "rings": rings, "fps_each": fps, "seconds": round(elapsed, 2), "published": published,
            "read": read_total, "rings_read": len(counts), "waiter_threads": threads,
            "cpu_percent": round(100 * used / elapsed, 1),
            "cpu_us_per_frame": round(1e6 * used / max(1, read_total), 1),
        }
    finally:
        writer.kill()
        writer.wait()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    rings, fps, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    mode = sys.argv[4] if len(sys.argv) > 4 else "aio"
    print(json.dumps(asyncio.run(main(rings, fps, seconds, mode))), flush=True)
