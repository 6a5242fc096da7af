"""`camhub.redis`: a camera's frames from a Redis stream, through a consumer group.

    import camhub.redis
    for frame in camhub.redis.frames("camhub:door", "detectors", "worker-1",
                                     url="redis://127.0.0.1:6379/0"):
        img = frame.array        # ring pixels on this host, else the record's JPEG
        ...                      # acknowledged (XACK) when you ask for the next one

Start any number of workers with different consumer names: Redis hands each record
to one of them. A record names a ring (`ring`, `seq`: a `ring:` output) or carries
a JPEG (`include_jpeg`), or both (docs/redis.md, "Records"). Pixels come from the
local ring when this host can open it and the slot still holds the record's frame
(same `frame_id`), else from the JPEG. Needs redis-py (`pip install redis`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import _jpeg
from .ring import Frame, Ring, RingError

__all__ = ["frames", "RedisFrame"]

RETRY_OPEN = 5.0  # a ring this host could not open is tried again after this long
_BLOCK_MS = 1000  # longest single XREADGROUP block when waiting for ever


class RedisFrame:
    """One stream record: `id`, `fields` (str keys, bytes values) and the usual
    fields as attributes (`camera`, `output`, `frame_id`, `captured_ns`, `width`,
    `height`, `format`, `same_as`, `similarity`, `ring`, `slot`, `seq`; None when
    absent). `array`: the pixels, from the local ring (`source == 'ring'`: a
    read-only view, valid while `intact()`, as a ring Frame) or the decoded JPEG
    (`'jpeg'`: (h, w, 3) BGR); None for a `same_as` record or without either."""

    def __init__(self, record_id: str, fields: dict[str, bytes], ring_frame: Frame | None) -> None:
        self.id, self.fields, self.ring_frame = record_id, fields, ring_frame
        self._decoded: np.ndarray | None = None
        texts = ("camera", "output", "format", "ring")
        self.camera, self.output, self.format, self.ring = (self._text(k) for k in texts)
        self.frame_id, self.captured_ns, self.width, self.height, self.same_as, self.slot, self.seq = (
            self._int(k) for k in ("frame_id", "captured_ns", "width", "height", "same_as", "slot", "seq"))
        sim = fields.get("similarity")
        self.similarity = float(sim) if sim is not None else None

    def _text(self, key: str) -> str | None:
        v = self.fields.get(key)
        return v.decode() if v is not None else None

    def _int(self, key: str) -> int | None:
        v = self.fields.get(key)
        return int(v) if v is not None else None

    @property
    def jpeg(self) -> bytes | None:
        return self.fields.get("jpeg")

    @property
    def source(self) -> str | None:
        """Where `array` comes from: 'ring', 'jpeg' or None (no pixels)."""
        if self.ring_frame is not None:
            return "ring"
        return "jpeg" if self.jpeg is not None else None

    @property
    def array(self) -> np.ndarray | None:
        if self.ring_frame is not None:
            return self.ring_frame.array
        if self._decoded is None and self.jpeg is not None:
            self._decoded = _jpeg.decode(self.jpeg)
        return self._decoded

    def intact(self) -> bool:
        """Whether `array` is still the record's frame (always for a JPEG)."""
        return self.ring_frame is None or self.ring_frame.intact()

    def __repr__(self) -> str:
        return f"<camhub.redis.RedisFrame {self.id} {self.camera}/{self.output} frame_id={self.frame_id} {self.source}>"


class _Rings:
    """The rings records name, opened once; one this host cannot open is retried
    after RETRY_OPEN s (it may be another host's, or the hub may be restarting)."""

    def __init__(self) -> None:
        self._open: dict[str, Ring] = {}
        self._failed: dict[str, float] = {}

    def frame(self, fields: dict[str, bytes]) -> Frame | None:
        """The ring frame a record points at, if this host has it and it is intact."""
        if "ring" not in fields or "seq" not in fields or "frame_id" not in fields:
            return None
        ring = self._ring(fields["ring"].decode())
        f = ring.get(int(fields["seq"])) if ring is not None else None
        return f if f is not None and f.frame_id == int(fields["frame_id"]) else None

    def _ring(self, path: str) -> Ring | None:
        ring = self._open.get(path)
        if ring is None and time.monotonic() >= self._failed.get(path, 0.0):
            try:
                ring = self._open[path] = Ring(path, timeout=0)
            except (OSError, RingError, ValueError):
                self._failed[path] = time.monotonic() + RETRY_OPEN
        return ring

    def close(self) -> None:
        for ring in self._open.values():
            ring.close()
        self._open.clear()


def _connect(url: str) -> Any:
    try:
        import redis
    except ImportError as e:
        raise ImportError("camhub.redis needs redis-py: pip install redis") from e
    return redis.Redis.from_url(url)


def _ensure_group(r: Any, stream: str, group: str, start: str) -> None:
    try:
        r.xgroup_create(stream, group, id=start, mkstream=True)
    except Exception as e:  # redis.ResponseError; redis-py is an optional import
        if "BUSYGROUP" not in str(e):
            raise


def _records(r: Any, stream: str, group: str, consumer: str, timeout: float | None,
             batch: int) -> Iterator[tuple[Any, dict[bytes, bytes]]]:
    """New records for `consumer` until `timeout` s pass without one."""
    deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
    while True:
        block: int | None = _BLOCK_MS
        if deadline is not None:
            left = deadline - time.monotonic()
            block = None if left <= 0 else max(1, min(_BLOCK_MS, int(left * 1000)))
        reply = r.xreadgroup(group, consumer, {stream: ">"}, count=batch, block=block)
        entries = [e for _, es in reply or [] for e in es]
        if entries:
            yield from entries
            if deadline is not None:
                deadline = time.monotonic() + max(0.0, timeout)
        elif block is None:
            return


def frames(stream: str, group: str, consumer: str, *, client: Any = None, url: str = "redis://localhost",
           start: str = "$", timeout: float | None = None, batch: int = 1) -> Iterator[RedisFrame]:
    """The records of `stream` that the consumer group `group` hands `consumer`, as
    `RedisFrame`s. Each is acknowledged (XACK) when the next one is asked for, or
    when the iterator ends or is closed (a `break`); a worker that dies holding one
    leaves it pending (XPENDING / XAUTOCLAIM).

    `client`: a redis-py client (else one for `url`). `start`: where a new group
    starts: '$' (new records) or '0' (the whole stream). `timeout`: stop after that
    many seconds without a record (None: never; 0: only what is there now).
    `batch`: records fetched per XREADGROUP (1 shares them best among workers)."""
    r = client if client is not None else _connect(url)
    _ensure_group(r, stream, group, start)
    rings = _Rings()
    held = None
    try:
        for record_id, raw in _records(r, stream, group, consumer, timeout, batch):
            if held is not None:
                r.xack(stream, group, held)
            held = record_id
            fields = {k.decode(): v for k, v in raw.items()}
            rid = record_id.decode() if isinstance(record_id, bytes) else str(record_id)
            yield RedisFrame(rid, fields, rings.frame(fields))
    finally:
        if held is not None:
            r.xack(stream, group, held)
        rings.close()
