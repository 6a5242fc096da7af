"""`camhub.aio`: frames from many rings in one asyncio loop, without a thread per ring.

    async for frame in camhub.aio.frames("door", "ai"):       # opens, iterates, closes
        ...
    ring = await camhub.aio.open("yard", "ai", timeout=5)
    frame = await camhub.aio.wait(ring, timeout=1.0)          # like ring.wait(1.0)
    ready = await camhub.aio.select([ring, other], timeout=1)  # like camhub.select

Each event loop has one background thread (named "camhub-aio", started on demand,
gone after a second without waiters) that `_wait_any`s over the `notify` words of
every ring awaited at that moment and wakes the awaiting tasks with
`loop.call_soon_threadsafe`. Rings are only touched from the loop's own thread;
the waiter thread reads the words alone. Timeouts as everywhere in camhub: None
waits for ever, 0 checks once, a number waits that long.

Frames handed to async code follow the same validity rules as sync ones: `array`
is a read-only view of the ring, valid until the hub comes back to its slot
(`frame.intact()`); in replay mode a frame from `frames()`/`next()` stays intact
until the next one is asked for. Use `frame.copy()` / `frame.writable()` to keep
pixels across awaits in live mode.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from typing import Callable

from . import ring as _ring
from ._select import _poll
from .ring import DETACHED_POLL, WAIT_SLICE, Frame, Ring, _wait_any, _wake, _wake_word

__all__ = ["open", "wait", "next", "iterate", "frames", "select"]

_OPEN_POLL = 0.05  # while the ring file does not exist yet
_IDLE_EXIT = 1.0  # the waiter thread ends after this long with nothing to wait for


class _Waiter:
    """One event loop's waiter thread and the words awaited now (a list of
    `(word, future)`; a future is resolved once a word changed or a WAIT_SLICE passed)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._entries: list = []
        self._thread: threading.Thread | None = None
        # A word of our own that `wait` changes (and wakes) to make the thread take
        # the new list: shared memory, as the rings' words are.
        self._wake_word = _wake_word()

    def wait(self, word: tuple) -> asyncio.Future:
        fut = self._loop().create_future()
        with self._lock:
            self._entries.append((word, fut))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="camhub-aio", daemon=True)
                self._thread.start()
            self._work.notify()
        _wake(self._wake_word, 0)
        return fut

    def forget(self, fut: asyncio.Future) -> None:
        with self._lock:
            self._entries = [e for e in self._entries if e[1] is not fut]

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._work.wait_for(lambda: self._entries, _IDLE_EXIT):
                    self._thread = None
                    return
                wake = (self._wake_word, 0, self._wake_word.load_u32(0))
                entries = list(self._entries)
            i = _wait_any([wake] + [word for word, _ in entries], WAIT_SLICE)
            if i == 0:
                continue  # the list changed
            # Every word that changed meanwhile, not only the first: one pass per
            # batch of frames, not per frame.
            fired = entries if i is None else [e for e in entries if e[0][0].load_u32(e[0][1]) != e[0][2]]
            gone = {id(f) for _, f in fired}
            with self._lock:
                self._entries = [e for e in self._entries if id(e[1]) not in gone]
            if not self._resolve(fired):
                return

    def _resolve(self, fired: list) -> bool:
        loop = self._loop()
        try:
            # One call into the loop for the batch.
            loop.call_soon_threadsafe(_set_all_done, [fut for _, fut in fired])
            return True
        except (AttributeError, RuntimeError):  # the loop is gone or closed
            with self._lock:
                self._entries, self._thread = [], None
            return False


def _set_done(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def _set_all_done(futs: list) -> None:
    for fut in futs:
        _set_done(fut)


_waiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Waiter] = weakref.WeakKeyDictionary()


def _waiter() -> _Waiter:
    loop = asyncio.get_running_loop()
    w = _waiters.get(loop)
    if w is None:
        w = _waiters[loop] = _Waiter(loop)
    return w


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + max(0.0, timeout)


async def _until_changed(words: list, left: float | None) -> None:
    """Returns when one of `words` changed, after a WAIT_SLICE, or after `left` s."""
    waiter = _waiter()
    futs = [waiter.wait(word) for word in words]
    try:
        if len(futs) == 1 and left is None:
            await futs[0]  # (the waiter resolves it within a WAIT_SLICE at most)
        else:
            await asyncio.wait(futs, timeout=left, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in futs:
            if fut.cancelled() or not fut.done():  # (a resolved one left the list already)
                waiter.forget(fut)


async def open(camera: str, output: str, *, directory: str | None = None,
               timeout: float | None = None) -> Ring:
    """`camhub.open` without blocking the loop: waits `timeout` s for the file."""
    deadline = _deadline(timeout)
    while True:
        try:
            return _ring.open(camera, output, directory=directory, timeout=0)
        except FileNotFoundError:
            left = _left(deadline)
            if left is not None and left <= 0:
                raise
            await asyncio.sleep(_OPEN_POLL if left is None else min(_OPEN_POLL, left))


async def _take(ring: Ring, take: Callable[[], Frame | None], timeout: float | None) -> Frame | None:
    deadline = _deadline(timeout)
    while True:
        f = take()
        if f is not None or ring.ended:
            return f
        ready, word = ring._select_state()
        left = _left(deadline)
        if ready:
            await asyncio.sleep(0)  # a frame came between take() and now
        elif left is not None and left <= 0:
            return None
        elif word is None:  # the file is away: look again later
            await asyncio.sleep(DETACHED_POLL if left is None else min(DETACHED_POLL, left))
        else:
            await _until_changed([word], left)


async def wait(ring: Ring, timeout: float | None = None) -> Frame | None:
    """`ring.wait(timeout)` for async code: the next frame newer than the last one
    returned (live: the newest), None after `timeout` s or at the end of a replay."""
    return await _take(ring, lambda: ring.wait(0), timeout)


async def next(ring: Ring, timeout: float | None = None) -> Frame | None:
    """The next frame in order, as `ring.frames()` yields them (live: frames the
    reader was too slow for are skipped and counted in `ring.missed`)."""
    return await _take(ring, lambda: ring._wait(ring._pick_next, 0), timeout)


async def iterate(ring: Ring, timeout: float | None = None) -> AsyncIterator[Frame]:
    """Every new frame of an open ring, in order; stops after `timeout` s without
    one, or at the end of a replay. The ring stays open."""
    while True:
        f = await next(ring, timeout)
        if f is None:
            return
        yield f


async def frames(camera: str, output: str, *, directory: str | None = None,
                 timeout: float | None = None) -> AsyncIterator[Frame]:
    """Opens `camera`'s ring `output` (waiting `timeout` s for it), yields every new
    frame in order (stopping after `timeout` s without one), and closes the ring."""
    ring = await open(camera, output, directory=directory, timeout=timeout)
    try:
        async for f in iterate(ring, timeout):
            yield f
    finally:
        ring.close()


async def select(rings: Sequence[Ring], timeout: float | None = None) -> list[Ring]:
    """`camhub.select` for async code: the rings with something new, `[]` after `timeout` s."""
    deadline = _deadline(timeout)
    while True:
        ready, words = _poll(rings)
        if ready:
            return ready
        left = _left(deadline)
        if left is not None and left <= 0:
            return []
        nap = WAIT_SLICE if left is None else min(WAIT_SLICE, left)
        if words:
            await _until_changed(words, nap)
        else:
            await asyncio.sleep(nap)
