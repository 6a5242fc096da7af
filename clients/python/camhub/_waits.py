"""Futex waits on the words of rings, for `camhub.ring`, `select` and `camhub.aio`."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from . import _native


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
