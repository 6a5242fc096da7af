"""A reference WRITER for camhub's shared-memory rings, written from docs/shm.md
alone, for the Python client's unit tests (the hub's own writer is Rust).

It does what the document asks of the hub: files created under a temporary name
and renamed into place (header-only, READY clear, until `configure`), a new file
for a new geometry with CLOSED set in the old one, publishing with seq_begin /
seq_end / write_seq / notify + FUTEX_WAKE, ENDED, and replay pacing from the
reader table. Also runnable as a process (see `main`) for tests that need a
writer that really runs in parallel with the reader.
"""

import argparse
import ctypes
import fcntl
import mmap
import os
import platform
import sys
import time

import numpy as np

MAGIC = b"CAMHUBRG"
HEADER = 4096
READY, CLOSED, ENDED = 1, 2, 4
CODES = {"gray": 1, "i420": 2, "nv12": 3, "rgb24": 4, "bgr24": 5}
SYS_FUTEX = {"x86_64": 202, "aarch64": 98}.get(platform.machine())
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def futex_wake(addr):
    if SYS_FUTEX is not None:
        _libc.syscall(ctypes.c_long(SYS_FUTEX), ctypes.c_void_p(addr), ctypes.c_int(1),
                      ctypes.c_int(2**31 - 1), None, None, ctypes.c_int(0))


def align(n, a):
    return (n + a - 1) // a * a


def layout(fmt, width, height, pad=0):
    """[(offset, stride, row_bytes, rows)] and frame_size. Packed like the hub's
    (stride = row_bytes, planes back to back); with `pad` bytes added to every row,
    plane offsets are 64-aligned instead, to exercise readers on other layouts."""
    cw, ch = (width + 1) // 2, (height + 1) // 2
    spec = {
        "gray": [(width, height)],
        "rgb24": [(3 * width, height)],
        "bgr24": [(3 * width, height)],
        "nv12": [(width, height), (2 * cw, ch)],
        "i420": [(width, height), (cw, ch), (cw, ch)],
    }[fmt]
    packed = pad == 0
    planes, off = [], 0
    for row_bytes, rows in spec:
        off = off if packed else align(off, 64)
        stride = row_bytes + pad
        planes.append((off, stride, row_bytes, rows))
        off += stride * rows
    return planes, off


def value_of(seq):
    """The byte a test writer fills frame `seq` with (never 0: blank memory is 0)."""
    return seq * 7 % 255 + 1


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


class _File:
    def __init__(self, path, size):
        self.fd = os.open(path, os.O_RDWR)
        self.mm = mmap.mmap(self.fd, size)
        self.u8 = np.frombuffer(self.mm, np.uint8)
        self.u32 = self.u8[: size // 4 * 4].view("<u4")
        self.u64 = self.u8[: size // 8 * 8].view("<u8")
        self.ino = os.fstat(self.fd).st_ino

    def bump(self):
        """notify += 1, then FUTEX_WAKE every waiter."""
        self.u32[18] = (int(self.u32[18]) + 1) & 0xFFFFFFFF
        futex_wake(self.u32.ctypes.data + 72)

    def set_flag(self, f):
        self.u32[4] = int(self.u32[4]) | f
        self.bump()

    def close(self):
        self.u8 = self.u32 = self.u64 = None
        try:
            self.mm.close()
        except BufferError:
            pass
        os.close(self.fd)


class RingWriter:
    def __init__(self, directory, camera, output, *, mode=0, permissions=0o600, fps_milli=0):
        self.path = os.path.join(directory, f"camhub.{camera}.{output}")
        self.camera, self.output, self.mode = camera, output, mode
        self.permissions, self.fps_milli = permissions, fps_milli
        self.f = None
        self.geom = None
        self.write_seq = 0
        self.replaced = 0
        if os.path.exists(self.path):  # a stale file from a "crashed" writer
            old = _File(self.path, HEADER)
            old.set_flag(CLOSED)
            self.f = old
        self._install(None)

    # -- files ------------------------------------------------------------------------

    def _install(self, geom):
        """Writes a new file under a temporary name, renames it over the ring's name,
        then sets CLOSED in the old one."""
        tmp = f"{self.path}.tmp{os.getpid()}.{self.replaced}"
        self.replaced += 1
        size = HEADER if geom is None else HEADER + geom["slots"] * geom["slot_size"]
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, self.permissions)
        os.ftruncate(fd, size)
        os.close(fd)
        f = _File(tmp, size)
        f.u8[0:8] = np.frombuffer(MAGIC, np.uint8)
        f.u32[2], f.u32[3] = 1, HEADER
        f.u32[14], f.u32[15] = os.getpid(), self.mode
        f.u64[20], f.u64[21] = self.fps_milli, time.time_ns()
        for at, name in ((256, self.camera), (320, self.output)):
            b = name.encode()
            f.u8[at:at + len(b)] = np.frombuffer(b, np.uint8)
        if geom is not None:
            f.u32[5], f.u32[6], f.u32[7] = CODES[geom["format"]], geom["width"], geom["height"]
            f.u32[8], f.u32[9] = geom["slots"], len(geom["planes"])
            f.u64[5], f.u64[6] = geom["slot_size"], geom["frame_size"]
            for i, p in enumerate(geom["planes"]):
                f.u32[20 + 4 * i:24 + 4 * i] = p
            f.u32[4] = READY
        os.rename(tmp, self.path)
        old, self.f, self.geom, self.write_seq = self.f, f, geom, 0
        if old is not None:
            old.set_flag(CLOSED)
            old.close()

    def configure(self, fmt, width, height, slots=4, pad=0):
        """A new geometry: a new READY file replaces the current one."""
        planes, frame_size = layout(fmt, width, height, pad)
        self._install({"format": fmt, "width": width, "height": height, "slots": slots,
                       "planes": planes, "frame_size": frame_size,
                       "slot_size": align(64 + frame_size, 4096)})

    def plane(self, slot, i):
        """A writable view of plane `i` of `slot`."""
        g = self.geom
        off, stride, row_bytes, rows = g["planes"][i]
        base = HEADER + slot * g["slot_size"] + 64 + off
        return np.ndarray((rows, row_bytes), np.uint8, buffer=self.f.u8, offset=base, strides=(stride, 1))

    # -- publishing ---------------------------------------------------------------------

    def live_readers(self):
        """[(entry, pid, read_seq, heartbeat_ns)] of registered readers that are alive."""
        out = []
        for k in range(32):
            pid = int(self.f.u32[(1024 + 32 * k) // 4])
            if pid and _alive(pid):
                w = (1024 + 32 * k) // 8
                out.append((k, pid, int(self.f.u64[w + 1]), int(self.f.u64[w + 2])))
        return out

    def entry(self, k):
        w = (1024 + 32 * k) // 8
        return int(self.f.u32[w * 2]), int(self.f.u64[w + 1]), int(self.f.u64[w + 2])

    def set_entry(self, k, pid, read_seq=0, heartbeat=0):
        w = (1024 + 32 * k) // 8
        self.f.u32[w * 2], self.f.u64[w + 1], self.f.u64[w + 2] = pid, read_seq, heartbeat

    def demand(self):
        """Whether a reader holds its flock (the hub's non-blocking LOCK_EX probe)."""
        try:
            fcntl.flock(self.f.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self.f.fd, fcntl.LOCK_UN)
        return False

    def _pace(self, n, timeout):
        """Replay: wait for at least one live registered reader, all of them done
        with frame n - slot_count (whose slot frame n takes)."""
        deadline = time.monotonic() + timeout
        while True:
            live = self.live_readers()
            if live and all(r[2] >= n - self.geom["slots"] for r in live):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"replay: readers {live} not done with frame {n - self.geom['slots']}")
            time.sleep(0.0005)

    def publish(self, data=None, *, frame_id=None, captured_ns=None, decoded_ns=None, timeout=10.0):
        """Publishes the next frame. `data`: a byte value for every pixel (default
        value_of(seq)), one array for a single-plane format, or a list of planes."""
        g = self.geom
        f = self.f
        n = self.write_seq + 1
        if self.mode == 1:
            self._pace(n, timeout)
        s = (n - 1) % g["slots"]
        w = (HEADER + s * g["slot_size"]) // 8
        now = time.time_ns()
        f.u64[w] = n  # seq_begin (x86 keeps stores in order: the release fences are implicit)
        if data is None:
            data = value_of(n)
        if isinstance(data, (int, np.integer)):
            for i in range(len(g["planes"])):
                self.plane(s, i)[:] = data
        else:
            planes = data if isinstance(data, (list, tuple)) else [np.asarray(data).reshape(g["height"], -1)]
            for i, p in enumerate(planes):
                self.plane(s, i)[:] = p
        f.u64[w + 1] = n if frame_id is None else frame_id
        f.u64[w + 2] = now if captured_ns is None else captured_ns
        f.u64[w + 4] = now if decoded_ns is None else decoded_ns
        f.u64[w + 3] = time.time_ns()
        f.u64[w + 7] = n  # seq_end
        f.u64[8] = n  # write_seq
        f.u64[18] = int(f.u64[w + 1])  # last_frame_id
        self.write_seq = n
        f.bump()
        return n

    def end(self):
        self.f.set_flag(ENDED)

    def close(self, unlink=True):
        """Clean exit: CLOSED, then unlink."""
        if self.f is None:
            return
        self.f.set_flag(CLOSED)
        if unlink:
            try:
                if os.stat(self.path).st_ino == self.f.ino:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
        self.f.close()
        self.f = None


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--camera", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--format", default="gray")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--height", type=int, default=48)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.01, help="seconds between publishes")
    ap.add_argument("--replay", action="store_true")
    ap.add_argument("--wait-demand", action="store_true", help="start publishing once a reader holds the lock")
    args = ap.parse_args()
    w = RingWriter(args.dir, args.camera, args.output, mode=int(args.replay))
    w.configure(args.format, args.width, args.height, args.slots)
    print("READY", flush=True)
    if args.wait_demand:
        while not w.demand():
            time.sleep(0.001)
    t0 = time.monotonic()
    for i in range(args.count):
        delay = t0 + i * args.interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        w.publish()
    if args.replay:
        w.end()
    print("DONE", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    w.close()


if __name__ == "__main__":
    main()
