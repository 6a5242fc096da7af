"""The ring file itself, for `camhub.ring`: one mapped, locked, registered file
(`_Map`), its geometry, and the frames read from it (layout: docs/shm.md)."""

from __future__ import annotations

import fcntl
import os
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import _native
from ._native import (
    HEADER, HEADER_SIZE, MAGIC, MAX_READERS, PLANE_SIZE, READER, READER_SIZE, READY, SLOT, TABLE_LOCK_BYTE, VERSION,
)
from ._waits import _alive

FORMATS = {code: name for code, (name, _) in _native.FORMATS.items()}
PLANE_COUNTS = {code: planes for code, (_, planes) in _native.FORMATS.items()}
# Word indexes (into the u32 / u64 views) of what the hot paths read.
_MODE = HEADER["mode"] // 4
_SEQ_BEGIN, _SEQ_END = SLOT["seq_begin"] // 8, SLOT["seq_end"] // 8
_SLOT_FIELDS = tuple(SLOT[k] // 8 for k in ("frame_id", "captured_ns", "published_ns", "decoded_ns"))
_SIMILARITY = SLOT["similarity"] // 8

# lockf locks belong to the process, not the fd: threads of one process would not
# exclude each other, and closing any fd of the file drops them. This lock covers both.
_TABLE_LOCK = threading.Lock()


class RingError(Exception):
    """The file is not a camhub ring this client understands."""


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

_fence = _native.fence


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
