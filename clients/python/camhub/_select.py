"""`camhub.select`: wait for whichever of several rings has a new frame first.

    rings = [camhub.open(cam, "ai") for cam in ("door", "yard", "gate")]
    while True:
        for ring in camhub.select(rings, timeout=1.0):
            frame = ring.wait(0)   # never blocks for a ring select returned
            ...

One thread waits on all the rings' `notify` words at once (`ring._wait_any`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .ring import WAIT_SLICE, Ring, _wait_any


def _poll(rings: Sequence[Ring]) -> tuple[list[Ring], list]:
    """(the rings ready now, the `_wait_any` words of the others). A ring whose file
    is away has no word: it is looked at again after at most WAIT_SLICE."""
    ready, words = [], []
    for ring in rings:
        is_ready, word = ring._select_state()
        if is_ready:
            ready.append(ring)
        elif word is not None:
            words.append(word)
    return ready, words


def select(rings: Sequence[Ring], timeout: float | None = None) -> list[Ring]:
    """Waits until at least one of `rings` has a frame newer than the last one that
    ring returned (or its replay ended, or the Ring was closed) and returns those
    rings, in the order given; `[]` after `timeout` s (None: for ever, 0: check
    once). `ring.wait(0)` on a returned ring does not block (it returns None at the
    end of a replay: drop ended rings, `ring.ended`, from the next call)."""
    deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
    while True:
        ready, words = _poll(rings)
        if ready:
            return ready
        # A slice at most: CLOSED, a replaced or reappearing file change no word we hold.
        nap = WAIT_SLICE
        if deadline is not None:
            nap = min(nap, deadline - time.monotonic())
            if nap <= 0:
                return []
        _wait_any(words, nap)
