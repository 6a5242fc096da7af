"""Reader side of camhub's shared-memory frame rings (layout: docs/shm.md).

**`Frame.array` is read-only by design**: it is a numpy view of the ring's shared
memory, no copy, so writing into it would change what other readers see. Call
`frame.copy()` (a Frame owning its pixels) or `frame.writable()` (a writable
ndarray, e.g. for `cv2.rectangle`) to get owned arrays; both return None if the
hub overwrote the frame while it was being copied. `np.asarray(frame)` is
`frame.array`.

A `Ring` attaches to `<dir>/camhub.<camera>.<output>`, `<dir>` being
`$CAMHUB_SHM_DIR` if set, else `/dev/shm`, as for the hub: it holds a shared
`flock` on the file (that is the hub's demand signal: decoding starts), registers
in the file's reader table, and maps the whole file.

A view stays valid until the writer comes back to its slot (`slot_count - 1`
publishes after the newest frame, in live mode). `frame.intact()` tells whether it
still is. In replay mode the writer waits for its readers, so a frame from
`frames()` stays intact until the iterator is asked for the next one.

Timeouts mean the same everywhere (`open`, `wait`, `frames`, `newest`, `select`):
None waits for ever, 0 checks once and returns (or raises) at once, a number of
seconds waits at most that long.

The ring follows the hub: when the file is replaced (first frame, new geometry,
hub restart) it reattaches to the new file by name; when the hub removes the file
it waits for it to come back. A Ring is not thread-safe: use one per thread.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["Ring", "Frame", "RingError", "open", "ring_path", "shm_dir", "FORMATS"]

# The file's layout and constants come from the hub's own ring crate (crates/ring,
# through the native module): the offsets of every field, one dict per table of
# docs/shm.md ("Layout": the header, a slot, a reader table entry), keyed by the
# document's field names; tests/test_layout.py holds them against the document.
from ._native import (  # noqa: E402
    CLOSED, ENDED, HEADER, HEADER_SIZE, LIVE, MAGIC, MAX_READERS, PLANE_SIZE, READER, READER_SIZE, READY, REPLAY,
    SLOT, TABLE_LOCK_BYTE, VERSION,
)
from . import _native  # noqa: E402

FORMATS = {code: name for code, (name, _) in _native.FORMATS.items()}
PLANE_COUNTS = {code: planes for code, (_, planes) in _native.FORMATS.items()}
# Word indexes (into the u32 / u64 views) of what the hot paths read.
_MODE = HEADER["mode"] // 4
_SEQ_BEGIN, _SEQ_END = SLOT["seq_begin"] // 8, SLOT["seq_end"] // 8
_SLOT_FIELDS = tuple(SLOT[k] // 8 for k in ("frame_id", "captured_ns", "published_ns", "decoded_ns"))
_SIMILARITY = SLOT["similarity"] // 8

WAIT_SLICE = 0.1  # longest single futex sleep: notices CLOSED / a dead writer
DETACHED_POLL = 0.1  # while the file does not exist (hub gone)
STAT_EVERY = 1.0  # how often an idle reader checks that its file is still the named one

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# lockf locks belong to the process, not the fd: threads of one process would not
# exclude each other, and closing any fd of the file drops them. This lock covers both.
_TABLE_LOCK = threading.Lock()


class RingError(Exception):
    """The file is not a camhub ring this client understands."""


def shm_dir() -> str:
    """Where the hub writes its rings: `$CAMHUB_SHM_DIR` if set, else /dev/shm (the
    hub's own rule, `shm_dir()` in src/output/mod.rs). Read at each call."""
    return os.environ.get("CAMHUB_SHM_DIR", "/dev/shm")


def ring_path(camera: str, output: str, directory: str | None = None) -> str:
    """The ring file of `camera`'s output `output`, in `directory` (None: `shm_dir()`)."""
    for what, name in (("camera", camera), ("output", output)):
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{what} name {name!r}: only letters, digits, '_' and '-'")
    return os.path.join(shm_dir() if directory is None else directory, f"camhub.{camera}.{output}")


def open(camera: str, output: str, *, directory: str | None = None,  # noqa: A001 (camhub.open)
         timeout: float | None = None) -> Ring:
    """Attaches to the ring of `camera`'s shm output `output`; a `Ring`, also a
    context manager (`with camhub.open(...) as ring:` closes it).

    `directory`: where the hub writes rings (None: `$CAMHUB_SHM_DIR`, else /dev/shm).
    `timeout`: how long to wait for the file to appear: None for ever, 0 not at all,
    else that many seconds; then FileNotFoundError, naming the file and what to check.
    (Before 0.2, None meant "fail at once", which is now 0.)"""
    return Ring(ring_path(camera, output, directory), timeout=timeout, _names=(camera, output))


# --- waits and memory ordering ---------------------------------------------------
#
# The writer publishes with release stores after a release fence (docs/shm.md,
# "Writing and reading a frame"); the reader needs the other half: acquire loads of
# write_seq, flags, notify and seq_end (nothing after them may be read before them),
# seq_begin read only after the fields and pixels it vouches for, and read_seq stored
# only after the frames it releases were read. x86 keeps loads in order by itself;
# ARM (aarch64: Jetson, Raspberry Pi) does not. The native module gives real
# acquire loads, release stores and fences (Rust atomics), and futex waits that
# release the GIL.


def futex_available():
    """Always True: waits are futex waits through the native module (kept for
    callers of earlier versions, where a pure-Python fallback polled)."""
    return True


_fence = _native.fence


def _alive(pid):
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- waiting on several words ----------------------------------------------------
#
# `_wait_any(words, timeout) -> int | None` is the one primitive behind `select` and
# `camhub.aio`. Contract:
# - `words`: a list of `(mapping, offset, expected)`: `mapping` a native
#   `_native.Mapping` (a ring's `_Map.mm`, or `_wake_word()`'s), `offset` the byte
#   offset of a u32 word in it, `expected` the value the caller last read;
# - returns the index in `words` of a word that no longer equals its expected value
#   (the lowest such index when several already differ on entry), at once if one
#   differs on entry; None when `timeout` s passed with every word equal (None: no
#   limit; 0: check once). An empty list just sleeps `timeout` (None: for ever).
# - a FUTEX_WAKE on any word ends the sleep early (`_wake` makes one); the futexes
#   are shared, like the hub's `notify` wakes. A change without a wake may be noticed
#   only at the timeout: callers pass at most WAIT_SLICE when they must also notice
#   things no futex announces.
# - any number of words; safe to call from any thread (it only reads the words).
# Up to 128 words it is one futex_waitv system call without the GIL (the native
# module); beyond, it waits on the first 128 in 1 ms slices and checks the rest between.

_WAITV_MAX = 128


def _wait_any(words: Sequence[tuple[Any, int, int]], timeout: float | None) -> int | None:
    if not words:
        if timeout is None:
            threading.Event().wait()
        time.sleep(max(0.0, timeout or 0.0))
        return None
    if len(words) <= _WAITV_MAX:
        return _native.wait_any(list(words), None if timeout is None else max(0.0, timeout))
    deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
    head = list(words[:_WAITV_MAX])
    while True:
        for i, (mapping, offset, expected) in enumerate(words):
            if mapping.load_u32(offset) != expected:
                return i
        nap = 0.001
        if deadline is not None:
            nap = min(nap, deadline - time.monotonic())
            if nap <= 0:
                return None
        _native.wait_any(head, nap)


def _wake_word() -> Any:
    """A private u32 word for `_wake` (a page of anonymous shared memory)."""
    fd = os.memfd_create("camhub-wake", getattr(os, "MFD_CLOEXEC", 0))
    try:
        os.ftruncate(fd, 4096)
        return _native.Mapping(fd)
    finally:
        os.close(fd)


def _wake(mapping: Any, offset: int) -> None:
    """Changes the u32 word at `offset` of `mapping` and wakes every `_wait_any`
    sleeping on it."""
    mapping.store_u32(offset, (mapping.load_u32(offset) + 1) & 0xFFFFFFFF)
    mapping.wake(offset)


# --- frames ------------------------------------------------------------------


class _Geometry:
    """What READY makes valid in a header, plus every slot's views, built once."""

    def __init__(self, m):
        u32, u64 = m.u32, m.u64

        def h32(field):
            return int(u32[HEADER[field] // 4])

        self.header_size = h32("header_size")
        self.code = h32("format")
        self.width = h32("width")
        self.height = h32("height")
        self.slots = h32("slot_count")
        nplanes = h32("plane_count")
        self.slot_size = int(u64[HEADER["slot_size"] // 8])
        self.frame_size = int(u64[HEADER["frame_size"] // 8])
        at = [(HEADER["planes"] + PLANE_SIZE * i) // 4 for i in range(nplanes)]
        self.planes = [tuple(int(v) for v in u32[a:a + 4]) for a in at]
        if self.code not in FORMATS or nplanes != PLANE_COUNTS[self.code]:
            raise RingError(f"{m.path}: format {self.code} with {nplanes} planes is not supported")
        if self.slots < 1 or self.header_size < HEADER_SIZE or self.header_size % 8 or self.slot_size % 8:
            raise RingError(f"{m.path}: bad geometry (slots {self.slots}, slot_size {self.slot_size})")
        if self.slot_size < SLOT["pixels"] + self.frame_size:
            raise RingError(f"{m.path}: slot_size {self.slot_size} < 64 + frame_size {self.frame_size}")
        for off, stride, row_bytes, rows in self.planes:
            if rows and (row_bytes > stride or off + stride * (rows - 1) + row_bytes > self.frame_size):
                raise RingError(f"{m.path}: plane {(off, stride, row_bytes, rows)} outside the frame")
        self.format = FORMATS[self.code]
        self.size = self.header_size + self.slots * self.slot_size

    def views(self, u8, base):
        """(array, planes) of the pixels starting at byte `base` of `u8`, read-only."""
        w, h, p = self.width, self.height, self.planes

        def view(shape, off, strides):
            a = np.ndarray(shape, np.uint8, buffer=u8, offset=base + off, strides=strides)
            a.flags.writeable = False
            return a

        planes = [view((rows, row_bytes), off, (stride, 1)) for off, stride, row_bytes, rows in p]
        off0, stride0 = p[0][0], p[0][1]
        if self.format in ("rgb24", "bgr24"):
            array = view((h, w, 3), off0, (stride0, 3, 1))
        elif self.format == "gray":
            array = planes[0]
        else:
            array = planes[0]  # not packed the way OpenCV wants: the Y plane alone
            even = w % 2 == 0 and h % 2 == 0
            y_ok = p[0][2] == w and p[0][3] == h
            if self.format == "nv12" and even and y_ok:
                uv = p[1]
                if uv == (off0 + stride0 * h, stride0, w, h // 2):
                    array = view((h * 3 // 2, w), off0, (stride0, 1))
            elif self.format == "i420" and even and y_ok and stride0 == w:
                q = (w // 2) * (h // 2)
                u, v = p[1], p[2]
                if u == (off0 + w * h, w // 2, w // 2, h // 2) and v == (off0 + w * h + q, w // 2, w // 2, h // 2):
                    array = view((h * 3 // 2, w), off0, (w, 1))
        return array, planes


class Frame:
    """One frame. `array` and `planes` are views into the ring unless copied.

    Iterating yields `(frame_id, captured, array)`."""

    __slots__ = ("frame_id", "captured_ns", "published_ns", "decoded_ns", "similarity", "seq", "slot",
                 "width", "height", "format", "array", "planes", "_u64", "_word")

    def __init__(self, seq, slot, frame_id, captured_ns, published_ns, decoded_ns, similarity,
                 geom, array, planes, u64, word):
        # similarity: the luma difference from the previous published frame (0..1)
        # where the output measures it (skip_similar), else None.
        self.similarity = similarity if similarity >= 0 else None
        self.seq, self.slot, self.frame_id = seq, slot, frame_id
        self.captured_ns, self.published_ns, self.decoded_ns = captured_ns, published_ns, decoded_ns
        self.width, self.height, self.format = geom.width, geom.height, geom.format
        self.array, self.planes = array, planes
        self._u64, self._word = u64, word  # seq_begin of the slot; None once copied

    @property
    def captured(self) -> float:
        """When the frame's data arrived from the camera, Unix seconds."""
        return self.captured_ns / 1e9

    def intact(self) -> bool:
        """True while the slot still holds this frame (the views are not overwritten)."""
        if self._u64 is None:
            return True
        _fence()  # what the caller read from the views, it read before this seq_begin
        return int(self._u64[self._word]) == self.seq

    def copy(self) -> Frame | None:
        """A Frame owning copies of the pixels, or None if the writer overwrote the
        slot before the copy completed (a torn frame)."""
        if self._u64 is None:
            return self
        w, h = self.width, self.height
        array = self.array.copy()
        packed = self.format in ("i420", "nv12") and array.shape[0] != h
        planes = None if packed or self.format in ("gray", "rgb24", "bgr24") else [p.copy() for p in self.planes]
        if not self.intact():
            return None
        if planes is None and not packed:
            planes = [array.reshape(h, -1)]
        elif planes is None:  # the planes are parts of the packed (h*3/2, w) block
            flat, q = array.reshape(-1), (w // 2) * (h // 2)
            if self.format == "nv12":
                planes = [array[:h], array[h:]]
            else:
                planes = [array[:h], flat[w * h:w * h + q].reshape(h // 2, w // 2),
                          flat[w * h + q:].reshape(h // 2, w // 2)]
        c = object.__new__(Frame)
        for k in Frame.__slots__:
            setattr(c, k, getattr(self, k))
        c.array, c.planes, c._u64, c._word = array, planes, None, None
        return c

    def writable(self) -> np.ndarray | None:
        """A writable copy of `array` (what `cv2.rectangle` and other in-place drawing
        need), or None if the writer overwrote the slot before the copy completed."""
        array = self.array.copy()
        return array if self.intact() else None

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """`np.asarray(frame)`: `frame.array` itself (read-only, no copy) unless a
        dtype or `copy=True` asks for a new array (numpy 2's signature)."""
        if dtype is not None and np.dtype(dtype) != self.array.dtype:
            if copy is False:
                raise ValueError(f"a {self.array.dtype} frame cannot be viewed as {np.dtype(dtype)} without a copy")
            return self.array.astype(dtype)
        return self.array.copy() if copy else self.array

    def __iter__(self) -> Iterator[Any]:
        return iter((self.frame_id, self.captured, self.array))

    def __repr__(self) -> str:
        return (f"<Frame seq={self.seq} frame_id={self.frame_id} {self.format} {self.width}x{self.height}"
                f"{' copy' if self._u64 is None else ''}>")


# --- one mapped file -----------------------------------------------------------


class _Map:
    """One open, locked, registered and mapped ring file."""

    def __init__(self, path, fd, st):
        self.path, self.fd = path, fd
        self.ino = (st.st_dev, st.st_ino)
        self.entry = None
        self.registered_seq = 0
        self.geom = None
        self.slot_views = None
        self.mm = None
        self._map(st.st_size)

    def _map(self, size):
        old = self.mm
        # The native mapping is the base of every view: unmapped when the last goes.
        self.mm = _native.Mapping(self.fd, size)
        self.size = size
        self.u8 = np.asarray(self.mm)
        self.u32 = self.u8[: size // 4 * 4].view("<u4")
        self.u64 = self.u8[: size // 8 * 8].view("<u8")
        self.f64 = self.u8[: size // 8 * 8].view("<f8")
        del old  # (unmapped once no frame views it)

    # Header words the writer changes: acquire loads, so that what is read after
    # them (a slot's seq_end after write_seq, write_seq after ENDED) is at least as new.
    @property
    def flags(self):
        return self.mm.load_u32(HEADER["flags"])

    @property
    def write_seq(self):
        return self.mm.load_u64(HEADER["write_seq"])

    @property
    def notify(self):
        return self.mm.load_u32(HEADER["notify"])

    @property
    def mode(self):
        return int(self.u32[_MODE])

    def magic(self):
        return bytes(self.u8[HEADER["magic"]:HEADER["magic"] + len(MAGIC)])

    def update_geometry(self):
        """Builds the geometry once READY is set; remaps if the file grew. False if not yet."""
        if self.geom is not None:
            return True
        if not self.flags & READY:
            return False
        g = _Geometry(self)
        if self.size < g.size:
            size = os.fstat(self.fd).st_size
            if size < g.size:
                return False  # not grown yet
            self._map(size)
            g = _Geometry(self)
        self.slot_views = [g.views(self.u8, g.header_size + s * g.slot_size + SLOT["pixels"])
                            for s in range(g.slots)]
        self.geom = g
        return True

    def read(self, n):
        """Frame `n` if its slot holds it whole right now (seq_end, fields, seq_begin), else None."""
        g = self.geom
        s = (n - 1) % g.slots
        w = (g.header_size + s * g.slot_size) // 8
        u = self.u64
        # acquire: the fields (and the caller's pixels) are frame n's or newer
        if self.mm.load_u64(8 * (w + _SEQ_END)) != n:
            return None
        fid, cap, pub, dec = (int(u[w + k]) for k in _SLOT_FIELDS)
        similarity = float(self.f64[w + _SIMILARITY])
        _fence()  # the fields are read before seq_begin, which vouches for them
        if self.mm.load_u64(8 * (w + _SEQ_BEGIN)) != n:
            return None
        array, planes = self.slot_views[s]
        return Frame(n, s, fid, cap, pub, dec, similarity, g, array, planes, u, w + _SEQ_BEGIN)

    # Reader table.
    def _entry_word(self, k, field):
        """Entry k's u64 `field`."""
        return (HEADER["readers"] + READER_SIZE * k + READER[field]) // 8

    def _entry_pid(self, k):
        """Entry k's pid, a u32."""
        return (HEADER["readers"] + READER_SIZE * k + READER["pid"]) // 4

    def register(self):
        """Takes the first free (or dead) entry: pid, read_seq = write_seq, heartbeat."""
        with _TABLE_LOCK:
            fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, TABLE_LOCK_BYTE)
            try:
                for k in range(MAX_READERS):
                    pid = int(self.u32[self._entry_pid(k)])
                    if pid == 0 or not _alive(pid):
                        seq = self.write_seq
                        self.u64[self._entry_word(k, "read_seq")] = seq
                        self.u64[self._entry_word(k, "heartbeat_ns")] = time.time_ns()
                        # release: the writer reads the pid, then read_seq
                        self.mm.store_u32(4 * self._entry_pid(k), os.getpid())
                        self.entry, self.registered_seq = k, seq
                        return
                self.registered_seq = self.write_seq
                warnings.warn(f"{self.path}: reader table full ({MAX_READERS}); attached unregistered")
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, TABLE_LOCK_BYTE)

    def heartbeat(self):
        if self.entry is not None:
            self.u64[self._entry_word(self.entry, "heartbeat_ns")] = time.time_ns()

    def set_read_seq(self, seq):
        if self.entry is not None and seq > int(self.u64[self._entry_word(self.entry, "read_seq")]):
            # release: done reading frames up to seq before the writer may reuse their slots
            self.mm.store_u64(8 * self._entry_word(self.entry, "read_seq"), seq)

    def readers(self):
        pids = self.u32[self._entry_pid(0):self._entry_pid(MAX_READERS):READER_SIZE // 4]
        return sum(1 for p in pids if p and _alive(int(p)))

    def release(self):
        """pid 0 in our entry, unlock, close, unmap (unless views are still out)."""
        if self.fd is None:
            return
        with _TABLE_LOCK:
            try:
                if self.entry is not None:
                    fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, TABLE_LOCK_BYTE)
                    at = self._entry_pid(self.entry)
                    if int(self.u32[at]) == os.getpid():
                        self.u32[at] = 0
                    fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, TABLE_LOCK_BYTE)
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            except OSError:
                pass
            finally:
                os.close(self.fd)
                self.fd = None
        self.entry = None
        # Unmapped when the last frame viewing it goes (the mapping is their base).
        self.u8 = self.u32 = self.u64 = self.f64 = self.slot_views = self.mm = None


def _attach(path):
    """Opens, locks (LOCK_SH), maps and registers `path`. None while it does not
    exist or is not initialised yet; RingError if it is not a ring."""
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    m = None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        st = os.fstat(fd)
        if st.st_size < HEADER_SIZE:
            os.close(fd)
            return None
        m = _Map(path, fd, st)
        magic = m.magic()
        if magic != MAGIC:
            if magic == bytes(8):
                m.release()
                return None
            raise RingError(f"{path} is not a camhub ring (magic {magic!r})")
        version = int(m.u32[HEADER["version"] // 4])
        if version != VERSION:
            raise RingError(f"{path}: ring version {version}, this client reads version {VERSION}")
        m.register()
        return m
    except BaseException:
        if m is not None:
            m.release()
        else:
            os.close(fd)
        raise


# --- the ring ------------------------------------------------------------------


def _hint(names: tuple[str, str] | None) -> str:
    if names:
        return f"is the camhub hub running with camera {names[0]!r} configured with an shm output {names[1]!r}?"
    return "is the camhub hub running with that shm output configured?"


class Ring:
    """A reader attached to one ring file. See the module docstring."""

    def __init__(self, path: str | os.PathLike, *, timeout: float | None = None,
                 _names: tuple[str, str] | None = None) -> None:
        """Attaches to the ring file `path`, waiting `timeout` s for it to appear
        (None: for ever, 0: not at all; as `camhub.open`)."""
        self.path = os.fspath(path)
        self.missed = 0
        self._closed = False
        self._m = None
        self._cursor = 0  # seq of the last frame returned (or where we attached)
        self._next_stat = 0.0
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            m = _attach(self.path)
            if m is not None:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise FileNotFoundError(errno.ENOENT, f"no camhub ring at {self.path}: {_hint(_names)}", self.path)
            time.sleep(0.01)
        try:
            m.update_geometry()
        except BaseException:
            m.release()
            raise
        self._m = m
        self._cursor = m.registered_seq

    # -- state ------------------------------------------------------------------

    def _switch(self, m):
        old, self._m = self._m, m
        if m is not None:
            m.update_geometry()
            # A new file (new geometry, restarted hub): every frame in it is new to us.
            self._cursor = 0
        if old is not None:
            old.release()

    def _refresh(self):
        """Follows the file: reattach on CLOSED / replacement, build geometry on READY."""
        if self._closed:
            raise ValueError(f"{self.path}: the ring is closed")
        m = self._m
        now = time.monotonic()
        if m is None:
            m = _attach(self.path)
            if m is not None:
                self._switch(m)
            return
        flags = m.flags
        if flags & CLOSED and not (flags & ENDED and self._cursor < m.write_seq):
            # (an ENDED replay is read to its end before following the name)
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                self._switch(None)  # removed (hub exit, output gone): wait for it to come back
                return
            if (st.st_dev, st.st_ino) != m.ino:
                new = _attach(self.path)
                if new is not None and new.ino != m.ino:
                    self._switch(new)
                elif new is not None:
                    new.release()
            return
        if now >= self._next_stat:
            self._next_stat = now + STAT_EVERY
            try:
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) != m.ino:  # replaced without CLOSED (e.g. a crashed hub)
                    new = _attach(self.path)
                    if new is not None:
                        self._switch(new)
                        return
            except FileNotFoundError:
                pass
        m.update_geometry()

    def _done_with(self, seq):
        if self._m is not None:
            self._m.set_read_seq(seq)

    def _returned(self, f):
        self._cursor = f.seq
        self._m.set_read_seq(f.seq - 1)
        return f

    # -- picking a frame ----------------------------------------------------------

    def _pick_newest(self, m):
        for _ in range(100):
            n = m.write_seq
            if n <= self._cursor:
                return None
            f = m.read(n)
            if f is not None:
                return f
        return None

    def _pick_next(self, m):
        """The oldest frame after the cursor still safe to hand out; skips count as missed."""
        slots = m.geom.slots
        replay = m.mode == REPLAY
        n = self._cursor + 1
        while True:
            w = m.write_seq
            if n > w:
                return None
            # Live: the oldest slot is where the writer goes next, so leave it.
            lowest = w - slots + (1 if replay or slots < 2 else 2)
            if n < lowest:
                self.missed += lowest - n
                n = lowest
                self._cursor = n - 1
            f = m.read(n)
            if f is not None:
                return f
            self.missed += 1  # overwritten while we looked
            self._cursor = n
            n += 1

    def _wait(self, pick, timeout):
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        self._done_with(self._cursor)  # moving on: done with what we returned
        while True:
            self._refresh()
            m = self._m
            sleep = DETACHED_POLL
            if m is not None:
                v = m.notify
                m.heartbeat()
                if m.geom is not None:
                    f = pick(m)
                    if f is not None:
                        return self._returned(f)
                flags = m.flags
                if flags & ENDED:
                    f = pick(m) if m.geom is not None else None  # write_seq may have moved first
                    if f is not None:
                        return self._returned(f)
                    m.set_read_seq(m.write_seq)
                    return None
                closing = bool(flags & CLOSED)
                sleep = 0.005 if closing else WAIT_SLICE
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                sleep = min(sleep, left)
            if m is not None and not closing:
                m.mm.wait(HEADER["notify"], v, sleep)
            else:
                time.sleep(sleep)

    def _select_state(self) -> tuple[bool, tuple[Any, int, int] | None]:
        """For `select` and `camhub.aio`: `(True, None)` when `wait(0)` has something to
        say at once (a frame newer than the last returned, the end of a replay, or
        this Ring closed), else `(False, word)`: the `_wait_any` word that changes
        when that may have changed (the header's `notify`), None while the file is
        away (poll). The word's value is read before the state, so no wake is lost."""
        if self._closed:
            return True, None
        self._refresh()
        m = self._m
        if m is None:
            return False, None
        word = (m.mm, HEADER["notify"], m.notify)
        m.heartbeat()
        if m.flags & ENDED or (m.geom is not None and m.write_seq > self._cursor):
            return True, None
        return False, word

    # -- public API -----------------------------------------------------------------

    def latest(self) -> Frame | None:
        """The newest frame, or None (no frame yet). Never blocks."""
        self._refresh()
        m = self._m
        if m is None or m.geom is None:
            return None
        m.heartbeat()
        for _ in range(100):
            n = m.write_seq
            if n == 0:
                return None
            f = m.read(n)
            if f is not None:
                self._cursor = max(self._cursor, n)
                m.set_read_seq(n - 1)
                return f
        return None

    def get(self, seq: int) -> Frame | None:
        """Frame `seq` (a ring sequence number, as in Redis records' `seq`) if its slot
        still holds it whole, else None (overwritten, not written yet, or no frames)."""
        self._refresh()
        m = self._m
        if m is None or m.geom is None or seq < 1 or seq > m.write_seq:
            return None
        m.heartbeat()
        return m.read(seq)

    def wait(self, timeout: float | None = None) -> Frame | None:
        """The next frame newer than the last one returned, or None after `timeout` s
        (or at ENDED). Live: the newest such frame; replay: the next in order."""
        if self._m is not None and self._m.mode == REPLAY:
            return self._wait(self._pick_next, timeout)
        return self._wait(self._pick_newest, timeout)

    def frames(self, timeout: float | None = None) -> Iterator[Frame]:
        """Every new frame in order. Live: frames the reader was too slow for are
        skipped and counted in `missed`. Replay: paces the writer; ends at ENDED.
        Stops after `timeout` s without a frame."""
        while True:
            f = self._wait(self._pick_next, timeout)
            if f is None:
                return
            yield f

    def newest(self, timeout: float | None = None) -> Iterator[Frame]:
        """The newest frame each time (skipping any in between, not counted as missed)."""
        while True:
            f = self._wait(self._pick_newest, timeout)
            if f is None:
                return
            yield f

    __iter__ = frames

    @property
    def ready(self) -> bool:
        """Whether the ring holds a geometry (the first frame has come)."""
        return self._m is not None and self._m.geom is not None

    @property
    def write_seq(self) -> int:
        return self._m.write_seq if self._m is not None else 0

    @property
    def mode(self) -> str | None:
        """'live' or 'replay'."""
        return ("live", "replay")[self._m.mode == REPLAY] if self._m is not None else None

    @property
    def readers(self) -> int:
        """Registered readers whose process is alive (this one included)."""
        return self._m.readers() if self._m is not None else 0

    @property
    def ended(self) -> bool:
        return self._m is not None and bool(self._m.flags & ENDED)

    @property
    def last_skip(self) -> tuple[int, float] | None:
        """(frame_id, similarity) of the newest frame skipped as similar (its luma
        difference from the published frame it matched, 0..1), or None."""
        m = self._m
        if m is None:
            return None
        fid = int(m.u64[HEADER["last_skip_frame_id"] // 8])
        return (fid, float(m.f64[HEADER["last_skip_similarity"] // 8])) if fid else None

    def _geom(self, k: str) -> Any:
        m = self._m
        return getattr(m.geom, k) if m is not None and m.geom is not None else None

    @property
    def format(self) -> str | None:
        """'gray', 'i420', 'nv12', 'rgb24' or 'bgr24'; None before the first frame."""
        return self._geom("format")

    @property
    def width(self) -> int | None:
        return self._geom("width")

    @property
    def height(self) -> int | None:
        return self._geom("height")

    @property
    def slot_count(self) -> int | None:
        return self._geom("slots")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Leaves the reader table, drops the lock (the hub's demand) and unmaps.
        Frames still referenced keep their memory mapped until they go."""
        self._closed = True
        m, self._m = self._m, None
        if m is not None:
            m.release()

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self):
        try:
            if getattr(self, "_m", None) is not None:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<camhub.Ring {self.path} {self.mode} write_seq={self.write_seq} missed={self.missed}>"
