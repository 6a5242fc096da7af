"""The Python client against the reference writer (ringwriter.py), both written
from docs/shm.md. No hub needed."""

import fcntl
import gc
import mmap
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import camhub
from camhub import _native
from camhub import _shm
from camhub import ring as ringmod
from conftest import HERE
from ringwriter import value_of

FORMATS = ["gray", "i420", "nv12", "rgb24", "bgr24"]


def attach(shm, camera="cam", output="out", **kw):
    return camhub.open(camera, output, directory=shm, **kw)


def later(delay, fn, *args):
    """Runs fn(*args) in a thread after `delay` s; join() re-raises its error."""
    err = []

    def run():
        time.sleep(delay)
        try:
            fn(*args)
        except BaseException as e:  # noqa: BLE001
            err.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()

    def join(timeout=30):
        t.join(timeout)
        assert not t.is_alive(), "writer thread stuck"
        if err:
            raise err[0]

    return join


def table_pid(path, k):
    """Entry k's pid in the reader table of `path` (or of an open fd)."""
    fd = path if isinstance(path, int) else os.open(path, os.O_RDONLY)
    try:
        with mmap.mmap(fd, 4096, prot=mmap.PROT_READ) as mm:
            return int.from_bytes(mm[1024 + 32 * k:1024 + 32 * k + 4], "little")
    finally:
        if not isinstance(path, int):
            os.close(fd)


def exclusive_lock_free(path_or_fd):
    """The hub's probe: can a separate open file description take LOCK_EX now?"""
    fd = os.open(path_or_fd, os.O_RDONLY) if isinstance(path_or_fd, str) else os.dup(path_or_fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def dead_pid():
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(p.stdout)


# --- layout --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("size,pad", [((64, 48), 0), ((64, 48), 16), ((7, 5), 0)])
def test_every_format_round_trips_as_views(make, shm, fmt, size, pad):
    width, height = size
    w = make()
    w.configure(fmt, width, height, slots=3, pad=pad)
    rng = np.random.default_rng(1)
    sent = []
    for _ in range(2):  # slots 0 and 1
        planes = [rng.integers(0, 256, p[3] * p[2], dtype=np.uint8).reshape(p[3], p[2]) for p in w.geom["planes"]]
        w.publish(planes)
        sent.append(planes)
    with attach(shm) as r:
        assert (r.format, r.width, r.height, r.slot_count, r.mode, r.write_seq) == (fmt, width, height, 3, "live", 2)
        f = r.latest()
        assert (f.seq, f.slot, f.format, f.width, f.height) == (2, 1, fmt, width, height)
        planes = sent[1]
        assert len(f.planes) == len(planes)
        for got, want in zip(f.planes, planes):
            assert got.shape == want.shape and np.array_equal(got, want)
        packed = pad == 0 and width % 2 == 0 and height % 2 == 0
        pl = w.geom["planes"]
        if fmt == "nv12" and width % 2 == 0 and height % 2 == 0 and pl[1][0] == pl[0][1] * height:
            packed = True  # padded rows, but one block with one stride: still what OpenCV takes
        if fmt == "gray":
            assert f.array.shape == (height, width)
            assert np.array_equal(f.array, planes[0])
        elif fmt in ("rgb24", "bgr24"):
            assert f.array.shape == (height, width, 3)
            assert np.array_equal(f.array, planes[0].reshape(height, width, 3))
        elif packed:
            assert f.array.shape == (height * 3 // 2, width)
            whole = np.concatenate([p.reshape(-1) for p in planes]).reshape(height * 3 // 2, width)
            assert np.array_equal(f.array, whole)
        else:
            assert f.array.shape == (height, width)  # not packed: the Y plane
            assert np.array_equal(f.array, planes[0])

        # Views, not copies: writing the slot's memory shows through; readers cannot write.
        assert all(np.shares_memory(f.array, p) or fmt in ("i420", "nv12") and not packed and i > 0
                   for i, p in enumerate(f.planes))
        w.plane(f.slot, 0)[0, 0] = planes[0][0, 0] ^ 0xFF
        assert f.planes[0][0, 0] == planes[0][0, 0] ^ 0xFF
        assert f.array[(0,) * f.array.ndim] == planes[0][0, 0] ^ 0xFF
        with pytest.raises(ValueError):
            f.array[(0,) * f.array.ndim] = 1

        c = f.copy()
        assert c is not None and c.intact() and c.seq == f.seq
        assert not np.shares_memory(c.array, f.array)
        assert np.array_equal(c.array, f.array) and c.array.shape == f.array.shape
        for a, b in zip(c.planes, f.planes):
            assert np.array_equal(a, b)
        w.plane(f.slot, 0)[0, 0] = 0
        assert c.planes[0][0, 0] == planes[0][0, 0] ^ 0xFF  # the copy kept its pixels

        assert r.latest().seq == 2
        assert r.latest().slot == 1


def test_frame_fields_and_unpacking(make, shm):
    w = make()
    w.configure("bgr24", 32, 16)
    w.publish(9, frame_id=1234, captured_ns=1_700_000_000_123_456_789, decoded_ns=1_700_000_000_200_000_000)
    r = attach(shm)
    f = r.latest()
    frame_id, captured, img = f
    assert frame_id == 1234 and f.frame_id == 1234
    assert captured == pytest.approx(1_700_000_000.123456789) and f.captured_ns == 1_700_000_000_123_456_789
    assert f.decoded_ns == 1_700_000_000_200_000_000 and f.published_ns > f.decoded_ns
    assert img is f.array and img.shape == (16, 32, 3) and (img == 9).all()
    assert "Frame seq=1" in repr(f)
    r.close()


# --- reading semantics -----------------------------------------------------------


def test_latest_wait_frames_newest(make, shm):
    w = make()
    w.configure("gray", 16, 8, slots=4)
    for _ in range(3):
        w.publish()
    r = attach(shm)
    assert r.latest().seq == 3
    assert r.wait(timeout=0.05) is None  # nothing newer than what latest() returned
    w.publish(), w.publish()
    f = r.wait(timeout=0)
    assert f.seq == 5 and (f.array == value_of(5)).all()  # wait: the newest, skipping 4
    assert r.wait(timeout=0.05) is None

    for _ in range(3):
        w.publish()
    assert [f.seq for f in r.frames(timeout=0.05)] == [6, 7, 8]
    assert r.missed == 0
    for _ in range(10):  # 9..18: too many for 4 slots
        w.publish()
    # 15's slot is where the writer goes next, so frames() starts at 16.
    assert [f.seq for f in r.frames(timeout=0.05)] == [16, 17, 18]
    assert r.missed == 7

    for _ in range(3):
        w.publish()
    it = r.newest(timeout=0.05)
    assert next(it).seq == 21
    assert list(it) == []
    assert list(r.frames(timeout=0.05)) == []
    assert r.missed == 7

    w.end()  # ENDED: iterators end at once instead of timing out
    t = time.monotonic()
    assert list(r.frames()) == [] and r.wait() is None
    assert time.monotonic() - t < 5
    r.close()


def test_frames_before_the_first_frame_and_in_a_thread(make, shm):
    w = make()
    w.configure("gray", 16, 8, slots=4)
    r = attach(shm)
    assert r.latest() is None and r.wait(timeout=0.02) is None

    def publish_some():
        for _ in range(5):
            w.publish()
            time.sleep(0.01)

    join = later(0.05, publish_some)
    got = [f.seq for f in r.frames(timeout=2)]
    join()
    assert got == [1, 2, 3, 4, 5]
    r.close()


def test_wait_wakes_on_publish_without_spinning(make, shm):
    assert camhub.futex_available(), "x86_64/aarch64 Linux should use FUTEX_WAIT"
    w = make()
    w.configure("gray", 64, 48, slots=4)
    r = attach(shm)

    cpu = time.process_time()
    assert r.wait(timeout=1.0) is None
    used = time.process_time() - cpu
    print(f"CPU used by a 1 s idle wait: {used * 1000:.1f} ms")
    assert used < 0.3, f"an idle wait used {used:.2f} s of CPU: polling, not sleeping"

    got, lat = [], []

    def reader():
        for _ in range(50):
            f = r.wait(timeout=5)
            if f is None:
                return
            lat.append((time.time_ns() - f.published_ns) / 1e6)
            got.append(f.seq)

    t = threading.Thread(target=reader)
    t.start()
    for _ in range(50):
        time.sleep(0.02)
        w.publish()
    t.join(10)
    assert got == list(range(1, 51)), "every publish wakes the waiter, none timed out"
    print(f"wake latency ms: median {statistics.median(lat):.3f} max {max(lat):.3f}")
    r.close()


def test_torn_reads_detected(make, shm):
    """A writer process publishing as fast as it can into 2 slots while this reader
    copies: every copy the client calls intact is one whole frame."""
    width, height = 640, 480
    p = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "ringwriter.py"), "--dir", shm, "--camera", "cam", "--output", "out",
         "--format", "gray", "--width", str(width), "--height", str(height), "--slots", "2",
         "--count", "4000", "--interval", "0.0005", "--wait-demand"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "READY"
        r = attach(shm)
        rnd = random.Random(7)
        intact = torn = mixed = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and intact + torn < 600:
            f = r.wait(timeout=3)
            if f is None:
                break
            if rnd.random() < 0.5:
                c = f.copy()
                ok, pixels = c is not None, None if c is None else c.array
            else:  # a slow copy: a band at a time
                pixels = np.empty_like(f.array)
                for y in range(0, height, height // 8):
                    pixels[y:y + height // 8] = f.array[y:y + height // 8]
                    time.sleep(0.0002)
                ok = f.intact()
            if ok:
                intact += 1
                assert (pixels == value_of(f.seq)).all(), f"frame {f.seq} said intact but is not whole"
            else:
                torn += 1
                mixed += pixels is not None and not (pixels == pixels[0, 0]).all()
        print(f"intact {intact}, torn {torn} (of which visibly mixed {mixed}), missed {r.missed}")
        assert intact > 0 and torn > 0
        r.close()
    finally:
        p.kill()
        p.wait()


class _Traced:
    """A u32/u64 view that records the loads and stores of the words it names."""

    def __init__(self, view, names, trace):
        self.view, self.names, self.trace = view, names, trace

    def __getitem__(self, i):
        if i in self.names:
            self.trace.append(self.names[i])
        return self.view[i]

    def __setitem__(self, i, v):
        if i in self.names:
            self.trace.append("store " + self.names[i])
        self.view[i] = v

    def __getattr__(self, k):
        return getattr(self.view, k)


class _TracedMap:
    """The native mapping, recording its acquire loads and release stores by field."""

    def __init__(self, mm, names, trace):
        self.mm, self.names, self.trace = mm, names, trace

    def _note(self, kind, off):
        self.trace.append(f"{kind} {self.names.get(off, off)}")

    def load_u32(self, off):
        self._note("acquire", off)
        return self.mm.load_u32(off)

    def load_u64(self, off):
        self._note("acquire", off)
        return self.mm.load_u64(off)

    def store_u32(self, off, v):
        self._note("release", off)
        return self.mm.store_u32(off, v)

    def store_u64(self, off, v):
        self._note("release", off)
        return self.mm.store_u64(off, v)

    def __getattr__(self, k):
        return getattr(self.mm, k)


def test_loads_and_stores_are_ordered(make, shm, monkeypatch):
    """What ARM could reorder, the client orders with the native module's atomics:
    header words and seq_end are acquire loads (before the slot's fields), a fence
    sits between the fields and seq_begin, and read_seq is a release store after the
    frame was read. (On x86 the hardware keeps this order anyway: the torn-read tests
    cannot tell.)"""
    w = make()
    w.configure("gray", 16, 8, slots=4)
    w.publish()
    r = attach(shm)
    w.publish()
    m, trace = r._m, []
    slot = ringmod.HEADER_SIZE + 1 * m.geom.slot_size  # frame 2's slot
    words = {ringmod.HEADER[f]: f for f in ("flags", "notify", "write_seq")}
    words.update({slot + at: f for f, at in ringmod.SLOT.items() if f != "pixels"})
    words[8 * m._entry_word(m.entry, "read_seq")] = "read_seq"
    m.mm = _TracedMap(m.mm, words, trace)
    m.u64 = _Traced(m.u64, {at // 8: f for at, f in words.items() if at % 8 == 0}, trace)
    monkeypatch.setattr(_shm, "_fence", lambda: trace.append("fence"))  # the file's reads

    f = r.wait(timeout=1)  # notify, flags, write_seq, then frame 2's slot
    assert f.seq == 2 and f.frame_id == 2
    assert r.wait(timeout=0) is None  # moving on: done with frame 2, read_seq = 2
    for word in ("notify", "flags", "write_seq", "seq_end", "seq_begin"):
        assert f"acquire {word}" in trace and word not in trace, f"{word} read without acquire: {trace}"
    at = trace.index
    assert at("acquire seq_end") < at("frame_id") < at("decoded_ns") < at("fence") < at("acquire seq_begin"), trace
    assert at("acquire seq_begin") < at("release read_seq"), trace
    trace.clear()
    assert f.intact() and trace == ["fence", "seq_begin"]
    trace.clear()
    assert f.copy() is not None and trace == ["fence", "seq_begin"]
    r.close()


def test_native_mapping_shares_words_and_wakes_waiters(shm):
    """The native module on its own: two mappings of one file see each other's stores;
    a wait times out, or returns at a wake from another thread (the GIL released)."""
    path = os.path.join(shm, "words")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, 8192)
        a, b = _native.Mapping(fd), _native.Mapping(fd)
        a.store_u64(64, 1 << 40)
        assert b.load_u64(64) == 1 << 40 and len(b) == 8192
        assert np.asarray(b)[64:72].view("<u8")[0] == 1 << 40, "numpy sees the same bytes"
        with pytest.raises(IndexError):
            b.load_u64(8190)
        assert b.wait(72, 0, 0.01) is False
        join = later(0.05, lambda: (a.store_u32(72, 1), a.wake(72)))
        assert b.wait(72, 0, 10) is True
        join()
        assert _native.wait_any([(a, 76, 0), (b, 72, 0)], 10) == 1, "the second word had changed"
    finally:
        os.close(fd)


# --- following the file ------------------------------------------------------------


def test_header_only_file_then_ready(make, shm):
    w = make()
    r = attach(shm)
    assert not r.ready and r.format is None and r.latest() is None
    assert r.wait(timeout=0.05) is None
    assert r.readers == 1 and w.demand()
    old = os.open(w.path, os.O_RDONLY)  # the header-only file, about to be replaced
    try:
        assert table_pid(old, 0) == os.getpid()

        def first_frame():
            w.configure("gray", 32, 16)
            w.publish()

        join = later(0.05, first_frame)
        f = r.wait(timeout=5)
        join()
        assert f is not None and f.seq == 1 and f.width == 32 and r.ready
        assert (f.array == value_of(1)).all()
        # The old file was let go: no lock, no entry. The new one is held.
        assert exclusive_lock_free(old) and table_pid(old, 0) == 0
        assert w.demand() and [e[1] for e in w.live_readers()] == [os.getpid()]
    finally:
        os.close(old)
    r.close()


def test_closed_file_is_replaced_by_name(make, shm):
    w = make()
    w.configure("gray", 64, 48)
    r = attach(shm)
    w.publish()
    f1 = r.wait(timeout=2)
    assert f1.seq == 1 and f1.width == 64

    w.configure("rgb24", 32, 24)  # new geometry: new file, CLOSED in the old
    w.publish()
    f2 = r.wait(timeout=5)
    assert (f2.seq, f2.width, f2.format, f2.array.shape) == (1, 32, "rgb24", (24, 32, 3))
    assert f1.intact() and (f1.array == value_of(1)).all()  # the old mapping lives on with its views
    assert w.demand() and [e[1] for e in w.live_readers()] == [os.getpid()]

    # A crashed writer: the next one sets CLOSED in the stale file and replaces it.
    w2 = make()
    w2.configure("gray", 16, 16)
    w2.publish()
    w2.publish()
    f3 = r.wait(timeout=5)
    assert f3.width == 16 and f3.seq == 2
    assert [f.seq for f in r.frames(timeout=0.05)] == []

    # Clean exit (CLOSED + unlink): the reader lets go, then follows a restarted writer.
    w2.close()
    assert r.wait(timeout=0.3) is None
    assert r.readers == 0 and not r.ready
    w3 = make()
    w3.configure("gray", 8, 8)
    join = later(0.05, w3.publish)
    f4 = r.wait(timeout=5)
    join()
    assert f4 is not None and f4.width == 8 and f4.seq == 1
    r.close()


# --- attaching -------------------------------------------------------------------------


def test_reader_registration_and_cleanup(make, shm):
    w = make()
    w.configure("gray", 16, 8)
    for _ in range(5):
        w.publish()
    before = time.time_ns()
    r1, r2 = attach(shm), attach(shm)
    assert w.entry(0)[:2] == (os.getpid(), 5) and w.entry(1)[:2] == (os.getpid(), 5)
    assert w.entry(0)[2] >= before
    assert r1.readers == 2
    time.sleep(0.01)
    r1.wait(timeout=0.01)
    assert w.entry(0)[2] > w.entry(1)[2]  # heartbeat on wait
    r1.close()
    assert w.entry(0)[0] == 0 and r2.readers == 1

    gone = dead_pid()
    w.set_entry(0, gone, 3, 1)
    w.set_entry(5, gone, 3, 1)
    assert r2.readers == 1  # dead pids do not count
    r3 = attach(shm)
    assert w.entry(0)[:2] == (os.getpid(), 5)  # took the dead reader's entry
    assert r3.readers == 2
    r2.close()
    r3.close()
    assert w.entry(1)[0] == 0 and w.entry(0)[0] == 0


def test_flock_held_while_attached(make, shm):
    w = make()
    w.configure("gray", 16, 8)
    assert exclusive_lock_free(w.path) and not w.demand()
    r = attach(shm)
    assert not exclusive_lock_free(w.path) and w.demand()
    fd = os.open(w.path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # other readers still can
    os.close(fd)
    r.close()
    assert exclusive_lock_free(w.path) and not w.demand()

    with attach(shm) as r:
        assert w.demand()
    assert not w.demand() and r.closed

    r = attach(shm)
    del r
    gc.collect()
    assert not w.demand() and w.live_readers() == []


def test_killed_reader_drops_its_lock_and_entry(make, shm):
    w = make()
    w.configure("gray", 16, 8)
    code = ("import camhub, sys, time; r = camhub.open('cam', 'out', directory=sys.argv[1]); "
            "print('OPEN', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, shm], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "OPEN"
        assert w.demand() and [e[1] for e in w.live_readers()] == [p.pid]
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert not w.demand() and w.live_readers() == []
        assert w.entry(0)[0] == p.pid  # stale until reused
        r = attach(shm)
        assert w.entry(0)[0] == os.getpid()
        r.close()
    finally:
        p.kill()
        p.wait()


def test_close_with_views_outstanding(make, shm):
    w = make()
    w.configure("bgr24", 32, 16)
    w.publish()
    r = attach(shm)
    f = r.latest()
    arr, plane = f.array, f.planes[0]
    r.close()
    r.close()
    assert (arr == value_of(1)).all() and plane.shape == (16, 96) and f.intact()
    assert not w.demand() and w.live_readers() == []
    with pytest.raises(ValueError):
        r.wait(timeout=0)
    del f, arr, plane
    gc.collect()


def test_open_missing_and_waiting(make, shm):
    with pytest.raises(FileNotFoundError) as e:
        attach(shm, "nocam", "ai", timeout=0)
    msg = str(e.value)
    assert f"{shm}/camhub.nocam.ai" in msg and "running" in msg and "'nocam'" in msg
    t = time.monotonic()
    with pytest.raises(FileNotFoundError):
        attach(shm, "nocam", "ai", timeout=0.1)
    assert time.monotonic() - t >= 0.1
    with pytest.raises(ValueError):
        camhub.open("../etc", "x")

    join = later(0.1, make)
    r = attach(shm, timeout=5)
    join()
    assert not r.ready and r.readers == 1
    r.close()

    join = later(0.3, make, "late")  # timeout=None (the default) waits for the file for ever
    r = attach(shm, "late")
    join()
    assert r.readers == 1 and r.path.endswith("camhub.late.out")
    r.close()

    r = camhub.Ring(os.path.join(shm, "camhub.cam.out"))
    assert r.readers == 1
    r.close()


def test_open_by_name_follows_camhub_shm_dir(make, shm, monkeypatch):
    """The hub's rule (shm_dir() in src/output/mod.rs): $CAMHUB_SHM_DIR if set, else /dev/shm."""
    cam = f"env{os.getpid()}"
    monkeypatch.delenv("CAMHUB_SHM_DIR", raising=False)
    assert camhub.shm_dir() == "/dev/shm"
    assert camhub.ring_path(cam, "out") == f"/dev/shm/camhub.{cam}.out"
    w = make(cam)
    w.configure("gray", 16, 8)
    w.publish()
    with pytest.raises(FileNotFoundError):
        camhub.open(cam, "out", timeout=0)  # not in /dev/shm itself
    monkeypatch.setenv("CAMHUB_SHM_DIR", shm)
    assert camhub.shm_dir() == shm and camhub.ring_path(cam, "out") == w.path
    with camhub.open(cam, "out") as r:
        assert r.path == w.path and r.latest().seq == 1
    elsewhere = "/nonexistent-dir"
    assert camhub.ring_path(cam, "out", elsewhere) == f"{elsewhere}/camhub.{cam}.out"  # an explicit directory wins


def test_not_a_ring(shm):
    path = os.path.join(shm, "camhub.x.y")
    with open(path, "wb") as f:
        f.write(b"NOTARING" + bytes(4088))
    with pytest.raises(camhub.RingError):
        camhub.Ring(path)


# --- replay ------------------------------------------------------------------------------


@pytest.mark.parametrize("header_only_first", [False, True])
def test_replay_paces_the_writer(make, shm, header_only_first):
    """2 slots, a slow reader: every frame arrives once, in order, whole, and the
    iterator ends at ENDED. The writer waits for a reader to register before it
    publishes (also after replacing the header-only file)."""
    n = 40
    w = make(mode=1)
    if not header_only_first:
        w.configure("gray", 32, 16, slots=2)

    def run():
        if header_only_first:
            while not w.demand():
                time.sleep(0.001)
            w.configure("gray", 32, 16, slots=2)
        for _ in range(n):
            w.publish(timeout=10)
        w.end()

    join = later(0, run)
    time.sleep(0.1)
    r = attach(shm)
    seqs = []
    rnd = random.Random(3)
    for f in r.frames(timeout=10):
        assert r.mode == "replay"
        time.sleep(rnd.random() * 0.01)
        assert f.intact(), f"frame {f.seq} overwritten while the reader held it"
        assert (f.array == value_of(f.seq)).all()
        seqs.append(f.seq)
    join()
    assert seqs == list(range(1, n + 1))
    assert r.missed == 0 and r.ended
    assert r.wait(timeout=5) is None  # ENDED: at once
    assert w.live_readers()[0][2] == n  # done with everything
    r.close()


def test_replay_wait_goes_in_order(make, shm):
    w = make(mode=1)
    w.configure("gray", 8, 8, slots=4)
    r = attach(shm)
    for _ in range(3):
        w.publish(timeout=5)
    assert [r.wait(timeout=1).seq for _ in range(3)] == [1, 2, 3]
    r.close()
