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
import os
import re
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["Ring", "Frame", "RingError", "open", "ring_path", "shm_dir", "FORMATS"]

# The file's layout and constants come from the hub's own ring crate (crates/ring,
# through the native module): the offsets of every field, one dict per table of
# docs/shm.md ("Layout": the header, a slot, a reader table entry), keyed by the
# document's field names; tests/test_layout.py holds them against the document.
# The file itself (mapping, reader table, frames) is `_shm`; the futex waits, `_waits`.
from ._native import (  # noqa: F401 (the layout, re-exported for readers of ring.HEADER etc.)
    CLOSED, ENDED, HEADER, HEADER_SIZE, LIVE, MAGIC, MAX_READERS, PLANE_SIZE, READER, READER_SIZE, READY, REPLAY,
    SLOT, TABLE_LOCK_BYTE, VERSION,
)
from ._shm import FORMATS, Frame, RingError, _attach
from ._waits import _alive, _wait_any, _wake, _wake_word  # noqa: F401 (select and camhub.aio use them)

WAIT_SLICE = 0.1  # longest single futex sleep: notices CLOSED / a dead writer
DETACHED_POLL = 0.1  # while the file does not exist (hub gone)
STAT_EVERY = 1.0  # how often an idle reader checks that its file is still the named one

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


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



def futex_available():
    """Always True: waits are futex waits through the native module (kept for
    callers of earlier versions, where a pure-Python fallback polled)."""
    return True



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
